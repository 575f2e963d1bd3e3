"""The pixel benchmark's inputs: labelled images, a CT series, slices with a name, US instances.

Every input is made here, in memory, from two sources:

* the two real ultrasound files of the ``deid-data`` package with their hand-labelled boxes
  (``tests/bench/real_file_labels.json``). Their labels carry no text; the ink of a box is
  estimated from the file itself (:func:`ink_background`);
* the labelled generator (:mod:`radstream.deid.pixels.synthetic`), seeds from the ``test``
  split's range (disjoint from the calibration split the risk threshold was fitted on), each
  seed used once. The generator draws each instance's layout by chance, so seeds are scanned
  in order until every bucket is full; the same counts give the same inputs.

The CT series is one patient's header (the generator's CT instance) over the text-free pixels
(the generator's ``background``) of several phantom slices, fresh noise per slice so no two
slices are equal: a CT series as the pixel stage meets it, with no text in the pixels.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import deid_data
import numpy as np
import numpy.typing as npt
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.uid import UID

from radstream.deid.pixels.synthetic import (
    SPLIT_SEEDS,
    InstanceLabels,
    LabelBox,
    SyntheticInstance,
    generate_instance,
)

REAL_LABELS = Path(__file__).with_name("real_file_labels.json")
REAL_FILES = ("ultrasounds/GREYSCALE_IMAGE.dcm", "ultrasounds/RGB_IMAGE.dcm")
FIRST_SEED = SPLIT_SEEDS["test"]
COMPARISON_LAYOUTS = ("us", "cr", "sc", "ct")
INK_TOLERANCE = 0.02
"""A real box's pixel is ink when it differs from the band around it by more than this share of
the value range (the same share the judge counts as a change, eval_pixels)."""
INK_STROKE = 9
"""Pixels: wider than the strokes of the real files' text (bold 13 to 17 px fonts, 2-4 px
strokes), narrower than their bands (the top banner is 23 rows)."""


@dataclass(frozen=True, kw_only=True)
class LabelledImage:
    """One image the tools are compared on: the file, its labels and its ink ground truth.

    ``original`` and ``background`` are the stored frames ``(frames, rows, columns[, 3])`` with
    and without the text, as :func:`radstream.deid.eval_pixels.score_proposal` wants them.
    """

    name: str  # "real/GREYSCALE_IMAGE", "synthetic/us-3000006": no PHI in names
    source: str  # "real" or "synthetic"
    data: bytes
    labels: InstanceLabels
    original: npt.NDArray[Any]
    background: npt.NDArray[Any]

    @property
    def dataset(self) -> Dataset:
        """The file, read again (callers may change what they get)."""
        return dcmread(io.BytesIO(self.data))


@dataclass(frozen=True, kw_only=True)
class StudyInputs:
    """What the timing parts run on (DICOM Part 10 bytes, no labels needed)."""

    ct_series: tuple[bytes, ...]  # text-free slices of one patient
    ct_named: tuple[bytes, ...]  # CT slices with the patient's name burned in
    us: tuple[bytes, ...]  # generator US instances, as drawn (most with text)
    us_has_text: tuple[bool, ...]  # per instance of ``us``: whether text is drawn on it


@dataclass(kw_only=True)
class _Buckets:
    """Seeds scanned so far, sorted into what each part needs."""

    comparison: int
    named: int
    us: int
    templates: int
    picked: dict[str, SyntheticInstance] = field(default_factory=dict)
    named_ct: list[SyntheticInstance] = field(default_factory=list)
    us_items: list[SyntheticInstance] = field(default_factory=list)
    ct_templates: list[SyntheticInstance] = field(default_factory=list)

    def full(self) -> bool:
        return (
            len(self.picked) >= self.comparison
            and len(self.named_ct) >= self.named
            and len(self.us_items) >= self.us
            and len(self.ct_templates) >= self.templates
        )

    def wanted_layouts(self) -> list[str]:
        return [
            f"{layout}-{n}"
            for n in range(-(-self.comparison // len(COMPARISON_LAYOUTS)))
            for layout in COMPARISON_LAYOUTS
        ][: self.comparison]

    def offer(self, instance: SyntheticInstance) -> None:
        labels = instance.labels
        if labels.phi_bearing:
            for slot in self.wanted_layouts():
                if slot.rsplit("-", 1)[0] == labels.layout and slot not in self.picked:
                    self.picked[slot] = instance
                    return
        if labels.layout == "ct":
            if len(self.named_ct) < self.named and any(
                box.kind == "PatientName" for box in labels.boxes
            ):
                self.named_ct.append(instance)
            elif len(self.ct_templates) < self.templates:
                self.ct_templates.append(instance)
        elif labels.layout == "us" and len(self.us_items) < self.us:
            self.us_items.append(instance)


def _instances(first_seed: int) -> Iterator[SyntheticInstance]:
    seed = first_seed
    while True:
        yield generate_instance(seed, file=f"{seed}.dcm")
        seed += 1


def build_inputs(
    *,
    synthetic: int,
    ct_slices: int,
    ct_named: int,
    us_instances: int,
    ct_templates: int = 8,
    first_seed: int = FIRST_SEED,
    max_seeds: int = 5000,
) -> tuple[list[LabelledImage], StudyInputs]:
    """The labelled comparison images (real files first) and the timing parts' inputs."""
    buckets = _Buckets(
        comparison=synthetic, named=ct_named, us=us_instances, templates=ct_templates
    )
    for index, instance in enumerate(_instances(first_seed)):
        if buckets.full():
            break
        if index >= max_seeds:
            raise RuntimeError(f"{max_seeds} seeds did not fill the benchmark's inputs")
        buckets.offer(instance)
    images = [*real_images()]
    for slot in buckets.wanted_layouts():
        instance = buckets.picked[slot]
        images.append(
            LabelledImage(
                name=f"synthetic/{instance.labels.layout}-{instance.labels.seed}",
                source="synthetic",
                data=instance.to_bytes(),
                labels=instance.labels,
                original=instance.pixels,
                background=instance.background,
            )
        )
    study = StudyInputs(
        ct_series=tuple(ct_series(buckets.ct_templates, ct_slices)),
        ct_named=tuple(item.to_bytes() for item in buckets.named_ct),
        us=tuple(item.to_bytes() for item in buckets.us_items),
        us_has_text=tuple(item.labels.has_text for item in buckets.us_items),
    )
    return images, study


def ct_series(templates: list[SyntheticInstance], count: int, *, seed: int = 7) -> Iterator[bytes]:
    """``count`` text-free slices: the first template's header, every template's pixels in turn.

    Each slice gets its own SOP Instance UID, instance number and position, and fresh noise
    (sigma 12 stored values, as the generator draws it) over its template's text-free pixels.
    """
    if not templates:
        raise ValueError("no CT template to build a series from")
    rng = np.random.default_rng(seed)
    header = templates[0].dataset
    for number in range(count):
        background = templates[number % len(templates)].background[0].astype(np.float64)
        pixels = np.clip(background + rng.normal(0, 12, size=background.shape), 0, 4095)
        ds = copy.deepcopy(header)
        uid = UID(f"2.25.{1_000_000_000 + templates[0].labels.seed}{number:05d}")
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = number + 1
        ds.ImagePositionPatient = [-250, -250, -2.5 * number]
        ds.BurnedInAnnotation = "NO"
        ds.PixelData = pixels.astype(np.uint16).tobytes()
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        yield buffer.getvalue()


# -- the real files ------------------------------------------------------------------------


def real_labels(path: Path = REAL_LABELS) -> dict[str, tuple[LabelBox, ...]]:
    """The hand-labelled boxes per real file: PHI boxes (their kind) and kept annotations.

    The labels hold no text, so a judge cannot ask whether OCR still reads a PHI box of a real
    file: ink coverage alone decides there. Where an annotation's box shares rows or columns
    with a PHI box (the hand-drawn boxes of two stacked lines touch), the shared pixels are the
    PHI's -- hiding the PHI must fill them -- and the annotation's box is trimmed off them
    (:func:`trimmed_off`).
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    found: dict[str, tuple[LabelBox, ...]] = {}
    for name, entry in data["files"].items():
        phi = [_label_box(item["box"], is_phi=True, kind=item["kind"]) for item in entry["phi"]]
        keep = [
            trimmed_off(_label_box(item["box"], is_phi=False, kind="annotation"), phi)
            for item in entry["keep"]
        ]
        found[name] = (*phi, *(box for box in keep if box is not None))
    return found


def trimmed_off(box: LabelBox, others: Sequence[LabelBox]) -> LabelBox | None:
    """``box`` cut back from each box of ``others`` it overlaps, on the side that costs least.

    None when nothing of ``box`` is left.
    """
    left, top, right, bottom = box.x, box.y, box.x + box.width, box.y + box.height
    for other in others:
        o_left, o_top = other.x, other.y
        o_right, o_bottom = other.x + other.width, other.y + other.height
        if min(right, o_right) <= max(left, o_left) or min(bottom, o_bottom) <= max(top, o_top):
            continue
        cuts = [  # (area kept, new left, top, right, bottom)
            ((right - left) * (bottom - o_bottom), left, o_bottom, right, bottom),
            ((right - left) * (o_top - top), left, top, right, o_top),
            ((right - o_right) * (bottom - top), o_right, top, right, bottom),
            ((o_left - left) * (bottom - top), left, top, o_left, bottom),
        ]
        kept, left, top, right, bottom = max(cuts)
        if kept <= 0:
            return None
    return replace(box, x=left, y=top, width=right - left, height=bottom - top)


def _label_box(box: list[int], *, is_phi: bool, kind: str) -> LabelBox:
    x, y, width, height = (int(v) for v in box)
    return LabelBox(
        frame=0,
        x=x,
        y=y,
        width=width,
        height=height,
        text="",
        is_phi=is_phi,
        kind=kind,
        in_header=False,
    )


def deid_data_root() -> Path:
    """Where the ``deid-data`` package keeps its files."""
    return Path(deid_data.__file__).parent / "data"


def real_images() -> Iterator[LabelledImage]:
    """The two labelled real ultrasound files, with their ink estimated per box."""
    labels = real_labels()
    for name in REAL_FILES:
        data = (deid_data_root() / name).read_bytes()
        ds = dcmread(io.BytesIO(data))
        original = stored_frames(ds)
        boxes = labels[name]
        stem = Path(name).stem
        yield LabelledImage(
            name=f"real/{stem}",
            source="real",
            data=data,
            labels=InstanceLabels(
                file=stem,
                seed=0,
                layout="us-real",
                modality=str(ds.Modality),
                frames=original.shape[0],
                photometric=str(ds.PhotometricInterpretation),
                boxes=boxes,
            ),
            original=original,
            background=ink_background(original, boxes),
        )


def stored_frames(ds: Dataset) -> npt.NDArray[Any]:
    """The stored pixel values with a frame axis, as the judge compares them."""
    pixels = np.asarray(ds.pixel_array)
    return pixels[None] if int(ds.get("NumberOfFrames") or 1) == 1 else pixels


def ink_background(
    original: npt.NDArray[Any],
    boxes: Sequence[LabelBox],
    *,
    tolerance: float = INK_TOLERANCE,
    stroke: int = INK_STROKE,
) -> npt.NDArray[Any]:
    """``original`` with the ink inside each labelled box replaced by its surroundings.

    A real file has no text-free twin, so a box's ink is estimated: text is thin strokes on a
    flat band, so a grey-level opening (closing, for dark text on a bright box) with a window
    wider than any stroke is the band without the text; the pixels that differ from it by more
    than ``tolerance`` of the value range (in any channel) are ink, and take the band's value.
    A band edge inside a box (a grey banner over a black field) is flat on both sides and is
    not ink.
    """
    background = original.copy()
    top = 255.0 if original.dtype == np.uint8 else float(np.iinfo(original.dtype).max)
    kernel = np.ones((stroke, stroke), np.uint8)
    for frame in range(original.shape[0]):
        image = original[frame]
        opened = cv2.morphologyEx(image, cv2.MORPH_OPEN, kernel)
        closed = cv2.morphologyEx(image, cv2.MORPH_CLOSE, kernel)
        for box in boxes:
            if box.frame != frame:
                continue
            window = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
            patch = image[window].astype(np.float64)
            dark_box = float(np.median(patch)) < top / 2
            band = (opened if dark_box else closed)[window]
            deviation = np.abs(patch - band.astype(np.float64))
            ink = (deviation.max(axis=-1) if patch.ndim == 3 else deviation) > tolerance * top
            background[frame][window][ink] = band[ink]
    return background
