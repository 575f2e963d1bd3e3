"""The pixel stage on real files: the deid-data ultrasounds with PHI burned into the top band.

Ground truth: the hand-labelled boxes of ``tests/bench/real_file_labels.json`` (PHI to hide,
annotations to keep). The engine is the real RapidOCR; the whole pipeline runs, and the output
is read again here, independently of the stage's own verification.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import deid_data
import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread

from radstream.deid.pipeline import InstanceOutcome, InstanceStatus
from radstream.deid.pixels.findings import PixelDecision
from radstream.deid.pixels.frames import decode_frames
from radstream.ocr.engine import Box
from tests.unit.deid.pixels.builders import deidentify, phi_of, stage, texts_read, written

pytestmark = pytest.mark.slow

DATA = Path(os.path.dirname(deid_data.__file__)) / "data"
LABELS = json.loads((Path(__file__).parents[2] / "bench" / "real_file_labels.json").read_text())
FILES = ["ultrasounds/GREYSCALE_IMAGE.dcm", "ultrasounds/RGB_IMAGE.dcm"]
# What must not be readable afterwards (from the files' headers and the labels), and
# annotations a reader needs that must still be read.
GONE = {
    "ultrasounds/GREYSCALE_IMAGE.dcm": [
        "ZZZ",
        "PATIENTF",
        "00079241539",
        "1951",
        "2017",
        "CLEVELAN",
    ],
    "ultrasounds/RGB_IMAGE.dcm": [
        "ZZZDOWNTIME",
        "MARY",
        "120907058",
        "00047431395",
        "2020",
        "CLEVELAND",
    ],
}
KEPT = {
    "ultrasounds/GREYSCALE_IMAGE.dcm": ["Adv Breast", "L12-5", "36Hz", "Dyn R 58", "TAC1"],
    "ultrasounds/RGB_IMAGE.dcm": ["SIEMENS", "6C1 HD", "General", "19fps", "Sag Liver L-M"],
}


@dataclass(frozen=True)
class Run:
    name: str
    original: npt.NDArray[np.uint8]
    output: npt.NDArray[np.uint8]
    outcome: InstanceOutcome


@pytest.fixture(scope="module", params=FILES)
def run(request: pytest.FixtureRequest) -> Run:
    name = request.param
    ds = dcmread(DATA / name)
    outcome = deidentify(ds, stage())
    original = decode_frames(ds).frames[0]
    output = decode_frames(written(outcome)).frames[0]
    return Run(name=name, original=original, output=output, outcome=outcome)


def box_of(entry: dict[str, object]) -> Box:
    x, y, width, height = entry["box"]  # type: ignore[misc]
    return Box(x, y, width, height)


def annotation_ink(
    image: npt.NDArray[np.uint8], box: Box, phi_boxes: list[Box]
) -> npt.NDArray[np.bool_]:
    """The pixels of ``box`` that stand out from its background, less those of PHI boxes.

    The labelled annotation boxes are loose (OCR's): "Adv Breast"'s reaches into the last
    row of the PHI line above it, which is filled.
    """
    crop = image[box.y : box.bottom, box.x : box.right].astype(np.int16)
    flat = crop.reshape(-1, crop.shape[-1]) if crop.ndim == 3 else crop.reshape(-1, 1)
    background = np.median(flat, axis=0)
    ink = (np.abs(flat - background) > 48).any(axis=1).reshape(crop.shape[:2])
    for phi in phi_boxes:
        top, bottom = max(phi.y, box.y) - box.y, min(phi.bottom, box.bottom) - box.y
        left, right = max(phi.x, box.x) - box.x, min(phi.right, box.right) - box.x
        if bottom > top and right > left:
            ink[top:bottom, left:right] = False
    return ink


def squashed(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


class TestRealUltrasounds:
    def test_is_released_redacted_and_verified(self, run: Run) -> None:
        assert run.outcome.status is InstanceStatus.RELEASED, run.outcome.reasons
        report = run.outcome.pixel_report
        assert report is not None and report.decision is PixelDecision.REDACTED
        assert "verified" in report.reasons and report.residual == ()

    def test_every_labelled_phi_box_is_filled(self, run: Run) -> None:
        for entry in LABELS["files"][run.name]["phi"]:
            box = box_of(entry)
            inside = run.output[box.y : box.bottom, box.x : box.right]
            assert (inside == 0).all(), entry["kind"]  # black: the background of these files

    def test_every_labelled_annotation_keeps_its_ink(self, run: Run) -> None:
        labels = LABELS["files"][run.name]
        phi_boxes = [box_of(entry) for entry in labels["phi"]]
        for entry in labels["keep"]:
            box = box_of(entry)
            ink = annotation_ink(run.original, box, phi_boxes)
            assert ink.any(), entry["text"]
            window = (slice(box.y, box.bottom), slice(box.x, box.right))
            assert np.array_equal(run.output[window][ink], run.original[window][ink]), entry["text"]

    def test_nothing_outside_the_filled_boxes_changed(self, run: Run) -> None:
        report = run.outcome.pixel_report
        assert report is not None
        changed = (
            np.any(run.output != run.original, axis=-1)
            if run.output.ndim == 3
            else (run.output != run.original)
        )
        filled = np.zeros(changed.shape, bool)
        for box in report.redacted_boxes[0]:
            grown = box.padded(3, width=changed.shape[1], height=changed.shape[0])
            filled[grown.y : grown.bottom, grown.x : grown.right] = True
        assert not (changed & ~filled).any()

    def test_reading_the_output_again_finds_no_phi_and_the_annotations(self, run: Run) -> None:
        lines = texts_read(run.output)
        read = squashed(" ".join(lines))
        for fragment in GONE[run.name]:
            assert squashed(fragment) not in read, fragment
        classifier = stage().classifier
        phi = phi_of(dcmread(DATA / run.name))
        assert [line for line in lines if classifier.classify(line, phi).phi] == []
        for annotation in KEPT[run.name]:
            assert squashed(annotation) in read, annotation

    def test_the_phi_was_there_to_be_read_before(self, run: Run) -> None:
        read = squashed(" ".join(texts_read(run.original)))
        for fragment in GONE[run.name]:
            assert squashed(fragment) in read, fragment
