"""Scoring for the pixel benchmark, on eval_pixels' own definitions (none is redefined here).

* A tool's output for one image is judged by :func:`radstream.deid.eval_pixels.score_proposal`
  (PHI box *hidden*: at least 95% of its ink gone and not read again by OCR; annotation *kept*:
  at most 5% of its ink changed) and counted by :func:`radstream.deid.eval_pixels.summarize`
  (field labels of kind ``context`` count neither way; review rate over text-bearing images).
* An engine's reading of an image is scored per labelled PHI box: *found* when the engine's
  lines, grown by the stage's fill padding, cover at least
  :data:`~radstream.deid.eval_pixels.COVERAGE_REQUIRED` of the box (had the classifier called
  them PHI, the fill would have hidden the box); *read* when eval_pixels' "read again" test
  says the engine read the box's text there. Only labels that carry text can be *read*: the
  generator's, not the real files'.

The peer writes the redacted first frame as an array; :func:`peer_proposal` puts it back into a
copy of the original file, so the same judge scores both tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from radstream.deid.eval_pixels import (
    COVERAGE_REQUIRED,
    EvalSummary,
    InstanceVerdict,
    _read_again,  # the judge's own "read again" test, reused for engine recall
    score_proposal,
    summarize,
)
from radstream.deid.pixels.synthetic import GENERATOR_VERSION, InstanceLabels, SplitLabels
from radstream.ocr.engine import Box, OcrEngine, TextRegion
from tests.bench.pixel_inputs import LabelledImage


@dataclass(frozen=True, kw_only=True)
class EngineRecall:
    """PHI boxes of some images, and how many an engine found and read."""

    phi_boxes: int = 0
    found: int = 0
    readable: int = 0  # PHI boxes whose label carries text (synthetic ones)
    read: int = 0

    def __add__(self, other: EngineRecall) -> EngineRecall:
        return EngineRecall(
            phi_boxes=self.phi_boxes + other.phi_boxes,
            found=self.found + other.found,
            readable=self.readable + other.readable,
            read=self.read + other.read,
        )

    @property
    def found_rate(self) -> float:
        """Found over PHI boxes (1.0 when there are none)."""
        return self.found / self.phi_boxes if self.phi_boxes else 1.0

    @property
    def read_rate(self) -> float:
        """Read over PHI boxes with text (1.0 when there are none)."""
        return self.read / self.readable if self.readable else 1.0


def engine_recall(
    labels: InstanceLabels,
    regions: Sequence[TextRegion],
    *,
    width: int,
    height: int,
    padding: int,
) -> EngineRecall:
    """How many of frame 0's PHI boxes the engine's ``regions`` (of frame 0) found and read."""
    grown = [region.box.padded(padding, width=width, height=height) for region in regions]
    phi = [box for box in labels.boxes if box.is_phi and box.frame == 0]
    found = sum(
        Box(box.x, box.y, box.width, box.height).covered_by(grown) >= COVERAGE_REQUIRED
        for box in phi
    )
    readable = [box for box in phi if box.text]
    return EngineRecall(
        phi_boxes=len(phi),
        found=found,
        readable=len(readable),
        read=sum(_read_again(box, regions) for box in readable),
    )


def judge(
    image: LabelledImage,
    *,
    status: str,
    proposal: Dataset | None,
    judge_engine: OcrEngine | None,
    risk: float | None = None,
    decision: str | None = None,
) -> InstanceVerdict:
    """One tool's outcome for ``image`` judged against its labels.

    ``status`` is "released", "held" (``proposal`` is then the candidate a reviewer would
    approve), "rejected" or "missing" (no proposal: every PHI box counts as not hidden).
    """
    boxes = (
        score_proposal(image.labels, image.original, image.background, proposal, judge_engine)
        if proposal is not None
        else ()
    )
    return InstanceVerdict(
        file=image.name,
        layout=image.labels.layout,
        phi_bearing=image.labels.phi_bearing,
        has_text=image.labels.has_text,
        status=status,
        risk=risk,
        pixel_decision=decision,
        boxes=boxes,
    )


def summary(
    images: Sequence[LabelledImage],
    verdicts: Sequence[InstanceVerdict],
    *,
    tool: str,
    seconds: float = 0.0,
) -> EvalSummary:
    """eval_pixels' counts over ``verdicts`` (one per image, in the same order)."""
    if [v.file for v in verdicts] != [image.name for image in images]:
        raise ValueError("one verdict per image, in the images' order")
    split = SplitLabels(
        split="bench",
        first_seed=0,
        count=len(images),
        generator_version=GENERATOR_VERSION,
        instances=tuple(image.labels for image in images),
    )
    return summarize(split, verdicts, engine=tool, seconds=seconds, leak_rate_bound=None)


def peer_proposal(image: LabelledImage, first_frame: npt.NDArray[Any]) -> Dataset:
    """A copy of ``image``'s file whose pixels are the peer's redacted first frame.

    Raises
    ------
    ValueError
        The peer changed the frame's geometry (the judge could match nothing) or its values no
        longer fit the stored type, or the image has more than one frame (the peer reports
        only the first).
    """
    original = image.original
    if original.shape[0] != 1:
        raise ValueError("the peer reports the first frame only; judge single-frame images")
    if first_frame.shape != original.shape[1:]:
        raise ValueError(
            f"the peer returned a {first_frame.shape} frame for a {original.shape[1:]} image"
        )
    stored = first_frame.astype(original.dtype)
    if not np.array_equal(stored, first_frame):
        raise ValueError(f"the peer's {first_frame.dtype} values do not fit {original.dtype}")
    ds = image.dataset
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    return ds
