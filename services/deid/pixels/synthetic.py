"""Labelled synthetic instances with burned-in text: the calibration and held-out data.

Every instance is a function of one integer seed: the same seed gives the same bytes. An
instance is drawn like the images the pixel stage meets -- ultrasound (RGB or monochrome,
single frames and cine loops), computed radiography (12-bit, MONOCHROME1 or 2), secondary
capture (screenshots of text) and CT (16-bit, a phantom body and its table) -- with text in
the places devices put it (a top band, the corners, a bottom band, beside the image) and now
and then over the anatomy, in DejaVu Sans, Mono or Serif from 9 to 28 pixels, bright on dark,
grey on grey, anti-aliased or not, in colour on RGB.

The header carries the PHI values the pixels show, so matching the instance's own header
works as on real data; a quarter of the PHI-bearing instances also show PHI that is *not* in
the header (a referring physician, a prior study's date), which only entity recognition can
find. Non-PHI annotations (laterality markers, PORTABLE, probe names, gain and depth, kV and
mAs, window settings, scale marks) are there to be kept. Some instances carry no text.

Ground truth per instance (``labels.json``): every drawn string's box per frame, tight around
its ink, with its text, whether it is PHI, and its kind. A field label drawn beside a value
("MRN:", "DOB") gets its own box of kind ``"context"``: not PHI, and not an annotation a
redactor must keep either (filling the whole line is fine). The labels hold the synthetic
patients' values: they are test data of invented people, generated here.

Splits draw from disjoint seed ranges (:data:`SPLIT_SEEDS`), so calibration and held-out
instances never share a seed::

    python -m radstream.deid.pixels.synthetic OUT_DIR --split calibration --count 300
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

__all__ = [
    "GENERATOR_VERSION",
    "INSTANCES_DIR",
    "LABELS_FILE",
    "SPLIT_SEEDS",
    "InstanceLabels",
    "LabelBox",
    "SplitLabels",
    "SyntheticInstance",
    "generate_instance",
    "load_split",
    "main",
    "write_split",
]

GENERATOR_VERSION = 2
LABELS_FILE = "labels.json"
INSTANCES_DIR = "dicom"
"""The split's DICOM files sit in this folder beside ``labels.json``: the folder to de-identify."""
SPLIT_SEEDS = {"calibration": 1_000_000, "held-out": 2_000_000, "test": 3_000_000}
"""First seed of each split; a split of ``count`` instances uses ``first .. first + count - 1``."""

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf")
_BOX_GAP = 8  # pixels kept free between two strings: a padded fill of one never reaches another

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

Pixels = npt.NDArray[np.float64]

_FAMILY = (
    "ABERNATHY", "BALDWIN", "CASTELLANOS", "DOE", "EKWUEME", "FITZGERALD", "GRUBER",
    "HOLLOWAY", "IVANOVA", "JOHANSSON", "KOWALSKI", "LINDQVIST", "MORENO", "NAKAMURA",
    "OKONKWO", "PETROVIC", "QUINLAN", "ROSSI", "SANTIAGO", "THORNBURY", "UMBERTO", "VANCE",
    "WHITAKER", "XAVIER", "YAMADA", "ZIELINSKI", "MCALLISTER", "OCONNELL", "BRANDT", "HUANG",
)  # fmt: skip
_GIVEN_F = (
    "JANE", "MARIA", "AISHA", "INGRID", "LUCY", "PRIYA", "NORA", "ELENA", "GRACE", "HANNA",
    "SOFIA", "MEI", "OLIVIA", "ROSA", "TAMARA",
)  # fmt: skip
_GIVEN_M = (
    "JOHN", "CARLOS", "DMITRI", "KENJI", "OMAR", "PETER", "LUCAS", "ANDRE", "SAMUEL", "VIKRAM",
    "ERIK", "HUGO", "THEO", "FELIX", "MARCUS",
)  # fmt: skip
_TOWNS = (
    "Riverside", "Lakeview", "Northgate", "Ashford", "Millbrook", "Westfield", "Harborview",
    "Pinecrest", "Stonebridge", "Fairhaven", "Oakdale", "Brookline",
)  # fmt: skip
_INSTITUTION_KINDS = (
    "General Hospital", "Medical Center", "Imaging Clinic", "Memorial Hospital",
    "Radiology Associates", "University Hospital",
)  # fmt: skip
_DATE_FORMATS = (
    "%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%d-%b-%Y", "%b %d %Y", "%Y%m%d", "%d/%m/%Y",
    "%Y/%m/%d",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class LabelBox:
    """One drawn string in one frame: its ink's bounding box, its text, what it is."""

    frame: int
    x: int
    y: int
    width: int
    height: int
    text: str
    is_phi: bool
    kind: str  # "PatientName", "PatientID", ..., "ReferringPhysician", "marker", "context"
    in_header: bool  # PHI whose value the instance's header also carries
    # The image columns [left, right) of the words that identify (PHI boxes only): a redactor
    # may leave a middle initial, a "Dr" or "Medical Center" readable, never these.
    spans: tuple[tuple[int, int], ...] = ()

    @property
    def key_text(self) -> str:
        """The identifying words (all of the text when the box has no spans)."""
        words = [w for w in self.text.split(" ") if _identifying(self.kind, w)]
        return " ".join(words) if self.spans else self.text

    def __repr__(self) -> str:  # the text is (synthetic) PHI: keep it out of test output
        return (
            f"LabelBox(frame={self.frame}, x={self.x}, y={self.y}, width={self.width}, "
            f"height={self.height}, text=<{len(self.text)} chars>, is_phi={self.is_phi}, "
            f"kind={self.kind!r})"
        )


@dataclass(frozen=True, kw_only=True)
class InstanceLabels:
    """The ground truth of one instance."""

    file: str
    seed: int
    layout: str  # "us", "us_cine", "cr", "sc", "ct"
    modality: str
    frames: int
    photometric: str
    boxes: tuple[LabelBox, ...]

    @property
    def phi_bearing(self) -> bool:
        """True when some PHI is drawn into the pixels."""
        return any(box.is_phi for box in self.boxes)

    @property
    def has_text(self) -> bool:
        """True when anything is drawn."""
        return bool(self.boxes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceLabels:
        """Read one entry of ``labels.json``."""
        boxes = tuple(
            LabelBox(**{**box, "spans": tuple(tuple(span) for span in box.get("spans", ()))})
            for box in data["boxes"]
        )
        return cls(**{**data, "boxes": boxes})


@dataclass(frozen=True, kw_only=True)
class SplitLabels:
    """``labels.json``: how a split was made, and every instance's ground truth."""

    split: str
    first_seed: int
    count: int
    generator_version: int
    instances: tuple[InstanceLabels, ...]


@dataclass(frozen=True, kw_only=True)
class SyntheticInstance:
    """A generated instance: the dataset, its labels, and its frames with and without text.

    ``pixels`` and ``background`` are ``(frames, rows, columns[, 3])`` arrays of the stored
    values; ``background`` is what the pixels would be if nothing had been drawn.
    """

    dataset: Dataset
    labels: InstanceLabels
    pixels: npt.NDArray[Any]
    background: npt.NDArray[Any]

    def to_bytes(self) -> bytes:
        """The instance as a DICOM Part 10 file."""
        buffer = io.BytesIO()
        dcmwrite(buffer, self.dataset, enforce_file_format=True)
        return buffer.getvalue()


@dataclass(frozen=True)
class _Patient:
    family: str
    given: str
    middle: str
    sex: str
    birth: dt.date
    mrn: str
    accession: str
    institution: str
    study: dt.datetime
    referring: tuple[str, str]  # never in the header
    prior: dt.date  # never in the header


@dataclass(frozen=True)
class _Text:
    """A string to draw: one or two parts (a context label, then the value)."""

    value: str
    is_phi: bool
    kind: str
    in_header: bool
    region: str  # where it goes: "top_left", "top_right", "bottom_left", ..., "anatomy"
    label: str = ""  # drawn before the value, its own non-PHI "context" box


@dataclass
class _Canvas:
    """The frames being drawn, as floats in the stored value range, and their geometry."""

    frames: list[Pixels]
    maximum: float  # the largest stored value (255, 4095, ...)
    bands: dict[str, tuple[int, int, int, int]]  # region -> (left, top, right, bottom)
    ink: tuple[float, ...]  # the text's value (grey) or colour (RGB)
    placed: list[tuple[int, int, int, int]] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)


def generate_instance(seed: int, *, file: str = "") -> SyntheticInstance:
    """The instance of ``seed`` (deterministic: same seed, same bytes)."""
    rng = np.random.default_rng(seed)
    layout = str(rng.choice(["us", "us", "us_cine", "cr", "sc", "ct", "ct"]))
    patient = _patient(rng)
    content = rng.random()
    texts: list[_Text] = []
    if content < 0.72:
        texts = _phi_texts(rng, patient, layout) + _annotations(rng, layout)
    elif content < 0.88:
        texts = _annotations(rng, layout)
    canvas, photometric, modality = _background(rng, layout)
    background = [frame.copy() for frame in canvas.frames]
    font = _font(rng, canvas.frames[0].shape[1])
    antialias = bool(rng.random() < 0.8)
    boxes = _draw(canvas, texts, font, antialias, rng)
    pixels = _stored(canvas.frames, canvas.maximum, photometric)
    clean = _stored(background, canvas.maximum, photometric)
    dataset = _dataset(seed, layout, modality, photometric, patient, pixels, canvas.maximum, rng)
    labels = InstanceLabels(
        file=file,
        seed=seed,
        layout=layout,
        modality=modality,
        frames=len(canvas.frames),
        photometric=photometric,
        boxes=tuple(boxes),
    )
    return SyntheticInstance(dataset=dataset, labels=labels, pixels=pixels, background=clean)


# -- who and what ---------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def _patient(rng: np.random.Generator) -> _Patient:
    sex = "F" if rng.random() < 0.5 else "M"
    given = _pick(rng, _GIVEN_F if sex == "F" else _GIVEN_M)
    birth = dt.date(1930, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 85)))
    study = dt.datetime(2015, 1, 1, 7) + dt.timedelta(
        days=int(rng.integers(0, 365 * 10)), minutes=int(rng.integers(0, 12 * 60))
    )
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, size=int(rng.integers(6, 9))))
    return _Patient(
        family=_pick(rng, _FAMILY),
        given=given,
        middle=_pick(rng, "ABCDEFGHJKLMNPRSTW"),
        sex=sex,
        birth=birth,
        mrn=digits if rng.random() < 0.6 else f"MR{digits}",
        accession=f"A{int(rng.integers(10**7, 10**8))}",
        institution=f"{_pick(rng, _TOWNS)} {_pick(rng, _INSTITUTION_KINDS)}",
        study=study,
        referring=(_pick(rng, _FAMILY), _pick(rng, _GIVEN_F + _GIVEN_M)),
        prior=study.date() - dt.timedelta(days=int(rng.integers(30, 2000))),
    )


def _name(rng: np.random.Generator, family: str, given: str, middle: str) -> str:
    forms = (
        f"{family}, {given}",
        f"{given} {family}",
        f"{family} {given}",
        f"{family}^{given}",
        f"{family}, {given} {middle}",
        f"{given} {middle}. {family}",
    )
    name = _pick(rng, forms)
    case = rng.random()
    if case < 0.35:
        return name.title()
    if case < 0.45:
        return name.lower()
    return name


def _date(rng: np.random.Generator, value: dt.date) -> str:
    text = value.strftime(_pick(rng, _DATE_FORMATS))
    return text.upper() if rng.random() < 0.5 else text


def _phi_texts(rng: np.random.Generator, patient: _Patient, layout: str) -> list[_Text]:
    """1 to 4 header PHI strings, and sometimes PHI the header does not have."""
    regions = _phi_regions(layout)
    name = _name(rng, patient.family, patient.given, patient.middle)
    candidates = [
        _Text(name, True, "PatientName", True, "", _pick(rng, ("", "", "Name:", "Pt:"))),
        _Text(patient.mrn, True, "PatientID", True, "", _pick(rng, ("MRN:", "ID:", "", "PID"))),
        _Text(
            _date(rng, patient.birth),
            True,
            "PatientBirthDate",
            True,
            "",
            _pick(rng, ("DOB:", "DOB", "Born", "")),
        ),
        _Text(_date(rng, patient.study.date()), True, "StudyDate", True, ""),
        _Text(patient.accession, True, "AccessionNumber", True, "", _pick(rng, ("Acc:", "ACC"))),
        _Text(patient.institution, True, "InstitutionName", True, ""),
    ]
    order = rng.permutation(len(candidates))
    chosen = [candidates[int(i)] for i in order[: int(rng.integers(1, 5))]]
    if rng.random() < 0.25:
        if rng.random() < 0.5:
            family, given = patient.referring
            doctor = _pick(rng, (f"Dr. {given.title()} {family.title()}", f"DR {family}"))
            chosen.append(_Text(doctor, True, "ReferringPhysician", False, "", "Ref:"))
        else:
            chosen.append(_Text(_date(rng, patient.prior), True, "PriorDate", False, "", "Prior"))
    placed = []
    for text in chosen:
        region = "anatomy" if rng.random() < 0.06 else _pick(rng, regions)
        placed.append(_Text(text.value, True, text.kind, text.in_header, region, text.label))
    return placed


def _phi_regions(layout: str) -> tuple[str, ...]:
    if layout in {"us", "us_cine"}:
        return ("top_left", "top_right")
    if layout == "sc":
        return ("top_left", "top_left", "bottom_left")
    if layout == "ct":
        return ("top_left", "top_right", "bottom_left")
    return ("top_left", "bottom_left", "top_right")  # cr


def _annotations(rng: np.random.Generator, layout: str) -> list[_Text]:
    """Non-PHI annotations of the kind each modality shows, 1 to 4 of them."""
    organ = _pick(rng, ("LIVER", "KIDNEY RT", "GALLBLADDER", "THYROID", "ABDOMEN"))
    exposure = f"{int(rng.integers(60, 125))} kV  {rng.integers(10, 400) / 10:.1f} mAs"
    window = f"W {int(rng.choice([400, 1500, 80]))} L {int(rng.choice([40, 300, 35]))}"
    title = _pick(rng, ("DOSE REPORT", "3D RECON", "Page 1 of 1", "SCREEN CAPTURE"))
    options: dict[str, list[tuple[str, str]]] = {
        "us": [
            (_pick(rng, ("C5-1", "L12-5", "P4-2", "C1-6", "9L4")), "right"),
            (f"Gain {int(rng.integers(20, 90))}", "right"),
            (f"Depth {int(rng.integers(4, 24))} cm", "right"),
            (f"FR {int(rng.integers(12, 60))}Hz", "right"),
            (organ, "bottom_left"),
            (f"MI {rng.integers(2, 15) / 10:.1f}  TIS {rng.integers(1, 9) / 10:.1f}", "top_right"),
        ],
        "cr": [
            (_pick(rng, ("L", "R")), "marker"),
            ("PORTABLE", "top_right"),
            (_pick(rng, ("AP", "PA", "LAT")), "top_right"),
            ("SUPINE", "bottom_right"),
            (exposure, "bottom_right"),
        ],
        "sc": [
            (title, "top_right"),
            (f"CTDIvol {rng.integers(10, 400) / 10:.1f} mGy", "bottom_left"),
            (f"DLP {int(rng.integers(50, 1500))} mGy-cm", "bottom_left"),
            ("Series 2  Image 14", "bottom_right"),
        ],
        "ct": [
            (f"{int(rng.choice([80, 100, 120, 140]))} kV", "bottom_right"),
            (f"{int(rng.integers(50, 400))} mAs", "bottom_right"),
            (window, "bottom_left"),
            (f"SL {rng.choice([0.625, 1.25, 2.5, 5.0]):.2f} mm", "bottom_left"),
            (_pick(rng, ("R", "L")), "marker"),
        ],
    }  # fmt: skip
    kind = "us" if layout == "us_cine" else layout
    pool = options[kind]
    order = rng.permutation(len(pool))
    return [
        _Text(pool[int(i)][0], False, "annotation", False, pool[int(i)][1])
        for i in order[: int(rng.integers(1, min(4, len(pool)) + 1))]
    ]


# -- pixels ------------------------------------------------------------------------------


def _background(rng: np.random.Generator, layout: str) -> tuple[_Canvas, str, str]:
    if layout in {"us", "us_cine"}:
        return _ultrasound(rng, cine=layout == "us_cine")
    if layout == "cr":
        return _radiograph(rng)
    if layout == "sc":
        return _screen(rng)
    return _ct(rng)


def _regions(
    rows: int, columns: int, top: int, bottom: int
) -> dict[str, tuple[int, int, int, int]]:
    """Where each region's text may go: (left, top, right, bottom)."""
    margin = max(4, columns // 64)
    return {
        "top_left": (margin, margin, columns // 2 - margin, top),
        "top_right": (columns // 2 + margin, margin, columns - margin, top),
        "bottom_left": (margin, rows - bottom, columns // 2 - margin, rows - margin),
        "bottom_right": (columns // 2 + margin, rows - bottom, columns - margin, rows - margin),
        "right": (columns * 3 // 4, top, columns - margin, rows - bottom),
        "marker": (margin, rows // 3, columns // 6, rows * 2 // 3),
        "anatomy": (columns // 4, rows // 3, columns * 3 // 4, rows * 2 // 3),
    }


def _ultrasound(rng: np.random.Generator, *, cine: bool) -> tuple[_Canvas, str, str]:
    rows, columns = (300, 400) if cine else (int(rng.choice([360, 420, 480])), 560)
    rgb = bool(rng.random() < 0.65)
    frames = 4 if cine else 1
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float64)
    apex_x, apex_y = columns / 2, rows * 0.12
    angle = np.arctan2(xx - apex_x, yy - apex_y)
    radius = np.hypot(xx - apex_x, yy - apex_y)
    sector = (np.abs(angle) < 0.6) & (radius < rows * 0.85) & (radius > rows * 0.05)
    images = []
    for _ in range(frames):
        speckle = rng.gamma(1.5, 40.0, size=(rows, columns))
        organ = 60.0 * np.exp(
            -(((xx - apex_x) / (columns / 5)) ** 2 + ((yy - rows * 0.5) / (rows / 6)) ** 2)
        )
        image = np.where(sector, np.clip(speckle * 0.8 + organ, 0, 200), 0.0)
        images.append(np.repeat(image[..., None], 3, axis=2) if rgb else image)
    ink = _pick_ink(rng, rgb, 255.0)
    top = int(rows * 0.22)
    canvas = _Canvas(images, 255.0, _regions(rows, columns, top, int(rows * 0.15)), ink)
    return canvas, "RGB" if rgb else "MONOCHROME2", "US"


def _pick_ink(rng: np.random.Generator, rgb: bool, maximum: float) -> tuple[float, ...]:
    if not rgb:
        return (maximum * float(rng.choice([1.0, 1.0, 0.85, 0.7])),)
    colours = ((255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 170, 0))
    return tuple(float(c) for c in colours[int(rng.integers(len(colours)))])


def _radiograph(rng: np.random.Generator) -> tuple[_Canvas, str, str]:
    rows, columns = 512, 416
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float64)
    body = 2600.0 - 900.0 * ((xx - columns / 2) / (columns / 2)) ** 2
    lungs = sum(
        900.0
        * np.exp(-(((xx - cx) / (columns * 0.16)) ** 2 + ((yy - rows * 0.45) / (rows * 0.25)) ** 2))
        for cx in (columns * 0.32, columns * 0.68)
    )
    image = np.clip(body - lungs + rng.normal(0, 40, size=(rows, columns)), 200, 3800)
    grey_on_grey = rng.random() < 0.3
    ink = (4095.0,) if not grey_on_grey else (3300.0,)
    monochrome1 = bool(rng.random() < 0.3)
    canvas = _Canvas([image], 4095.0, _regions(rows, columns, rows // 6, rows // 6), ink)
    return canvas, "MONOCHROME1" if monochrome1 else "MONOCHROME2", "CR"


def _screen(rng: np.random.Generator) -> tuple[_Canvas, str, str]:
    rows, columns = 400, 560
    rgb = bool(rng.random() < 0.6)
    grey = float(rng.choice([40, 70, 100]))
    image = np.full((rows, columns), grey)
    image[rows // 4 : rows * 3 // 4, columns // 6 : columns * 5 // 6] = grey + 40
    image += rng.normal(0, 3, size=(rows, columns))
    image = np.clip(image, 0, 255)
    ink = _pick_ink(rng, rgb, 255.0)
    if not rgb and rng.random() < 0.4:
        ink = (min(255.0, grey + 110.0),)  # grey on grey
    data = np.repeat(image[..., None], 3, axis=2) if rgb else image
    canvas = _Canvas([data], 255.0, _regions(rows, columns, rows // 4, rows // 4), ink)
    return canvas, "RGB" if rgb else "MONOCHROME2", "OT"


def _ct(rng: np.random.Generator) -> tuple[_Canvas, str, str]:
    rows = columns = 512
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float64)
    cx, cy = columns / 2 + rng.normal(0, 8), rows * 0.47
    ax, ay = columns * rng.uniform(0.30, 0.38), rows * rng.uniform(0.22, 0.28)
    r = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    image = np.zeros((rows, columns))  # air: stored 0 is -1024 HU
    image[r < 1.0] = 1024.0 + 40.0  # soft tissue
    image[(r < 1.0) & (r > 0.86)] = 1024.0 - 100.0  # fat
    image[((xx - cx) / (ax * 0.12)) ** 2 + ((yy - cy - ay * 0.55) / (ay * 0.12)) ** 2 < 1] = (
        1024 + 700
    )
    table = (yy > cy + ay + 18) & (yy < cy + ay + 30) & (np.abs(xx - columns / 2) < columns * 0.42)
    image[table] = 1024.0 + 300.0
    image += rng.normal(0, 12, size=(rows, columns))
    image = np.clip(image, 0, 4095)
    ink = (4095.0,) if rng.random() < 0.8 else (2400.0,)
    canvas = _Canvas([image], 4095.0, _regions(rows, columns, rows // 6, rows // 6), ink)
    return canvas, "MONOCHROME2", "CT"


def _font(rng: np.random.Generator, columns: int) -> ImageFont.FreeTypeFont:
    largest = 16 if columns <= 420 else 22
    sizes = [9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22]
    weights = np.array([0.3, 0.5, 1, 1.4, 1.4, 1.4, 1.2, 1, 0.8, 0.6, 0.5])
    allowed = [i for i, size in enumerate(sizes) if size <= largest]
    p = weights[allowed] / weights[allowed].sum()
    size = sizes[int(rng.choice(allowed, p=p))]
    return ImageFont.truetype(str(FONT_DIR / _pick(rng, FONTS)), size)


def _draw(
    canvas: _Canvas,
    texts: list[_Text],
    font: ImageFont.FreeTypeFont,
    antialias: bool,
    rng: np.random.Generator,
) -> list[LabelBox]:
    """Draw every string into every frame; return the ground-truth boxes (all frames)."""
    rows, columns = canvas.frames[0].shape[:2]
    drawn: list[_Drawn] = []
    for text in texts:
        size = font.size * 2 if text.region == "marker" else font.size
        face = font.font_variant(size=min(28, size))
        parts = [(text.label, False, "context", False)] if text.label else []
        parts.append((text.value, text.is_phi, text.kind, text.in_header))
        width = int(face.getlength(" ".join(p[0] for p in parts))) + 2
        height = int(sum(face.getmetrics())) + 2
        origin = _place(canvas, text.region, width, height, rows=rows, columns=columns, rng=rng)
        if origin is None:
            continue
        ink = canvas.ink
        if text.region == "anatomy":  # over anatomy: mid grey or a dimmer ink
            ink = tuple(value * float(rng.choice([0.75, 1.0])) for value in ink)
        x = origin[0]
        for value, is_phi, kind, in_header in parts:
            alpha = _render(value, face, (x, origin[1]), (columns, rows), antialias)
            box = _ink_box(alpha)
            if box is not None:
                spans = _spans(value, kind, face, x, alpha) if is_phi else ()
                drawn.append(_Drawn(value, is_phi, kind, in_header, box, alpha, ink, spans))
            x += int(face.getlength(value + " "))
    boxes: list[LabelBox] = []
    for index, frame in enumerate(canvas.frames):
        for item in drawn:
            _composite(frame, item.alpha, item.ink)
            left, top, right, bottom = item.box
            boxes.append(
                LabelBox(
                    frame=index,
                    x=left,
                    y=top,
                    width=right - left,
                    height=bottom - top,
                    text=item.value,
                    is_phi=item.is_phi,
                    kind=item.kind,
                    in_header=item.in_header,
                    spans=item.spans,
                )
            )
    return boxes


@dataclass(frozen=True)
class _Drawn:
    value: str
    is_phi: bool
    kind: str
    in_header: bool
    box: tuple[int, int, int, int]
    alpha: npt.NDArray[np.float64]
    ink: tuple[float, ...]
    spans: tuple[tuple[int, int], ...]


_NOT_IDENTIFYING = {"DR", "DR.", *(w.upper() for kind in _INSTITUTION_KINDS for w in kind.split())}


def _identifying(kind: str, word: str) -> bool:
    """Whether a word of a PHI string identifies: not a title, an initial or a generic noun."""
    squashed = "".join(ch for ch in word if ch.isalnum())
    if not squashed or word.upper() in _NOT_IDENTIFYING:
        return False
    return not (kind in {"PatientName", "ReferringPhysician"} and len(squashed) == 1)


def _spans(
    value: str,
    kind: str,
    face: ImageFont.FreeTypeFont,
    x: int,
    alpha: npt.NDArray[np.float64],
) -> tuple[tuple[int, int], ...]:
    """The ink columns of each identifying word of ``value`` drawn at ``x``."""
    columns = np.nonzero(alpha.max(axis=0) > 0)[0]
    spans = []
    start = 0
    for word in value.split(" "):
        end = start + len(word)
        if _identifying(kind, word):
            left = x + int(np.floor(face.getlength(value[:start])))
            right = x + int(np.ceil(face.getlength(value[:end])))
            inked = columns[(columns >= left - 1) & (columns < right + 1)]
            if len(inked):
                spans.append((int(inked.min()), int(inked.max()) + 1))
        start = end + 1
    return tuple(spans)


def _place(
    canvas: _Canvas,
    region: str,
    width: int,
    height: int,
    *,
    rows: int,
    columns: int,
    rng: np.random.Generator,
) -> tuple[int, int] | None:
    """Top-left corner for a string in ``region`` that touches no other string (None: no room).

    Strings stack down from the region's top (right-aligned on the right half), so the
    layouts look like device overlays; anatomy and marker text goes at a random free spot.
    """
    left, top, right, bottom = canvas.bands[region]
    right_aligned = region in {"top_right", "bottom_right", "right"}
    for attempt in range(40):
        if region in {"anatomy", "marker"}:
            if right - left <= width or bottom - top <= height:
                return None
            x = int(rng.integers(left, right - width))
            y = int(rng.integers(top, bottom - height))
        else:
            y = canvas.cursors.get(region, top) + attempt * 3
            x = max(left, right - width) if right_aligned else left
        if x + width > columns or y + height > rows or y < 0 or x < 0:
            return None
        if y + height > max(bottom, top + height) and region not in {"anatomy", "marker"}:
            return None
        rect = (x, y, x + width, y + height)
        if all(not _touch(rect, other) for other in canvas.placed):
            canvas.placed.append(rect)
            canvas.cursors[region] = y + height + _BOX_GAP
            return x, y
    return None


def _touch(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return not (
        a[2] + _BOX_GAP <= b[0]
        or b[2] + _BOX_GAP <= a[0]
        or a[3] + _BOX_GAP <= b[1]
        or b[3] + _BOX_GAP <= a[1]
    )


def _render(
    text: str,
    font: ImageFont.FreeTypeFont,
    origin: tuple[int, int],
    size: tuple[int, int],
    antialias: bool,
) -> npt.NDArray[np.float64]:
    """The string's coverage in [0, 1] over the whole image."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    draw.fontmode = "L" if antialias else "1"
    draw.text(origin, text, font=font, fill=255)
    return np.asarray(mask, dtype=np.float64) / 255.0


def _ink_box(alpha: npt.NDArray[np.float64]) -> tuple[int, int, int, int] | None:
    """The tight (left, top, right, bottom) around every pixel the string touched."""
    ys, xs = np.nonzero(alpha > 0)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _composite(frame: Pixels, alpha: npt.NDArray[np.float64], ink: tuple[float, ...]) -> None:
    if frame.ndim == 3:
        a = alpha[..., None]
        frame *= 1.0 - a
        frame += a * np.asarray(ink if len(ink) == 3 else ink * 3)
    else:
        frame *= 1.0 - alpha
        frame += alpha * ink[0]


def _stored(frames: list[Pixels], maximum: float, photometric: str) -> npt.NDArray[Any]:
    """The frames as stored values: 8-bit or 16-bit, MONOCHROME1 inverted."""
    stack = np.stack(frames)
    if photometric == "MONOCHROME1":
        stack = maximum - stack
    dtype = np.uint8 if maximum <= 255 else np.uint16
    return np.clip(np.rint(stack), 0, maximum).astype(dtype)


# -- header ------------------------------------------------------------------------------


def _uid(seed: int, what: str) -> str:
    digest = hashlib.sha256(f"radstream-synthetic:{seed}:{what}".encode()).hexdigest()
    return f"2.25.{int(digest[:30], 16)}"


def _dataset(  # noqa: PLR0917, PLR0915 -- one header, all of it written here
    seed: int,
    layout: str,
    modality: str,
    photometric: str,
    patient: _Patient,
    pixels: npt.NDArray[Any],
    maximum: float,
    rng: np.random.Generator,
) -> Dataset:
    sop_class = {
        "us": US_IMAGE,
        "us_cine": US_MULTIFRAME,
        "cr": CR_IMAGE,
        "sc": SC_IMAGE,
        "ct": CT_IMAGE,
    }[layout]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if layout != "sc" else ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid(seed, "instance")
    study_date = patient.study.strftime("%Y%m%d")
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = patient.study.strftime("%H%M%S")
    ds.ContentTime = patient.study.strftime("%H%M%S")
    ds.AccessionNumber = patient.accession
    ds.Modality = modality
    ds.Manufacturer = "SynthCorp"
    ds.InstitutionName = patient.institution
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = {"us": "US ABDOMEN", "cr": "CHEST", "sc": "DOSE", "ct": "CT CHEST"}[
        layout.removesuffix("_cine")
    ]
    ds.PatientName = f"{patient.family}^{patient.given}^{patient.middle}"
    ds.PatientID = patient.mrn
    ds.PatientBirthDate = patient.birth.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = _uid(seed, "study")
    ds.SeriesInstanceUID = _uid(seed, "series")
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if layout in {"us", "us_cine", "sc"}:
        flag = rng.random()
        if flag < 0.5:
            ds.BurnedInAnnotation = "YES"
    elif rng.random() < 0.3:
        ds.BurnedInAnnotation = "NO"  # the flag is often wrong: the pixels are what count
    if layout == "ct":
        ds.FrameOfReferenceUID = _uid(seed, "frame-of-reference")
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.KVP = 120
        ds.SliceThickness = 5
        ds.ImagePositionPatient = [-250, -250, -float(rng.integers(0, 300))]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.9765625, 0.9765625]
        ds.WindowCenter = 40
        ds.WindowWidth = 400
    frames, rows, columns = pixels.shape[:3]
    ds.Rows = rows
    ds.Columns = columns
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
    if maximum <= 255:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if layout == "us_cine":
        ds.NumberOfFrames = frames
        ds.FrameTime = 33.3
        ds.FrameIncrementPointer = 0x00181063
    ds.PixelData = np.ascontiguousarray(pixels if frames > 1 else pixels[0]).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


# -- splits ------------------------------------------------------------------------------


def write_split(
    out_dir: Path, split: str, count: int, *, first_seed: int | None = None
) -> SplitLabels:
    """Write ``count`` instances of ``split`` and their ``labels.json`` into ``out_dir``.

    The files go to ``out_dir/dicom/`` (what ``radstream deid`` reads), named by split and
    index (``held-out-0007.dcm``), never by anything in them; ``labels.json`` beside that
    folder names them relative to it.
    """
    if split not in SPLIT_SEEDS and first_seed is None:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_SEEDS)}")
    start = SPLIT_SEEDS[split] if first_seed is None else first_seed
    (out_dir / INSTANCES_DIR).mkdir(parents=True, exist_ok=True)
    instances = []
    for index in range(count):
        name = f"{split}-{index:04d}.dcm"
        instance = generate_instance(start + index, file=name)
        (out_dir / INSTANCES_DIR / name).write_bytes(instance.to_bytes())
        instances.append(instance.labels)
    labels = SplitLabels(
        split=split,
        first_seed=start,
        count=count,
        generator_version=GENERATOR_VERSION,
        instances=tuple(instances),
    )
    text = json.dumps(asdict(labels), indent=1, ensure_ascii=False)
    fd = os.open(out_dir / LABELS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text + "\n")
    return labels


def load_split(directory: Path) -> SplitLabels:
    """Read a split's ``labels.json``."""
    data = json.loads((directory / LABELS_FILE).read_text(encoding="utf-8"))
    return SplitLabels(
        split=data["split"],
        first_seed=int(data["first_seed"]),
        count=int(data["count"]),
        generator_version=int(data["generator_version"]),
        instances=tuple(InstanceLabels.from_dict(item) for item in data["instances"]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m radstream.deid.pixels.synthetic OUT_DIR --split NAME --count N``."""
    parser = argparse.ArgumentParser(
        prog="python -m radstream.deid.pixels.synthetic",
        description="Write labelled synthetic DICOM instances with burned-in text.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--split", choices=sorted(SPLIT_SEEDS), required=True)
    parser.add_argument("--count", type=int, default=200)
    arguments = parser.parse_args(argv)
    labels = write_split(arguments.out_dir, arguments.split, arguments.count)
    phi = sum(item.phi_bearing for item in labels.instances)
    text = sum(item.has_text for item in labels.instances)
    print(
        f"{labels.count} instances ({phi} with PHI in the pixels, {text} with text) "
        f"-> {arguments.out_dir / INSTANCES_DIR}, {arguments.out_dir / LABELS_FILE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
