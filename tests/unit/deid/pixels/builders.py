"""Images and instances for the pixel stage's tests: CT-like phantoms, drawn text, the engine.

Everything is synthetic (a fake patient from :mod:`tests.unit.deid.study_builder`) except the
engine, which is the real RapidOCR (PP-OCR ONNX models in its wheel).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset

from radstream.deid.burned_in import PixelPolicy
from radstream.deid.phi import PhiValues, collect_phi_values
from radstream.deid.pipeline import InstanceOutcome, deidentify_instance
from radstream.deid.pixels.calibration import RiskThreshold
from radstream.deid.pixels.classify import PhiClassifier
from radstream.deid.pixels.settings import PixelSettings
from radstream.deid.pixels.stage import PixelStage
from radstream.deid.profile import DeidKeys, DeidProfile
from radstream.ocr.engine import Box, EngineInfo, OcrEngine, TextRegion
from radstream.ocr.engine import Image as EngineImage
from radstream.ocr.engines import shared_engine
from tests.unit.deid.study_builder import (
    CT_IMAGE_STORAGE,
    TEST_KEYS_SECRET,
    US_IMAGE_STORAGE,
    shared_text_cleaner,
    synthetic_instance,
    to_bytes,
)

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
KEYS = DeidKeys.from_secret(TEST_KEYS_SECRET)
HU_OFFSET = 1024  # stored = HU + 1024 (Rescale Intercept -1024)

Pixels = npt.NDArray[np.generic]


def text_mask(shape: tuple[int, int], text: str, origin: tuple[int, int], size: int) -> Pixels:
    """Where ``text`` in DejaVu Sans ``size`` px at ``origin`` (x, y) puts ink: a bool mask."""
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(canvas).text(origin, text, fill=255, font=ImageFont.truetype(FONT, size))
    return np.asarray(canvas) > 127


def ink_box(mask: Pixels) -> Box:
    """The tight box around a mask's ink."""
    rows, columns = np.nonzero(mask)
    top, left = int(rows.min()), int(columns.min())
    return Box(left, top, int(columns.max()) - left + 1, int(rows.max()) - top + 1)


def ct_slice(
    seed: int = 0, *, size: int = 512, noise_hu: float = 12.0, body: float = 0.8
) -> npt.NDArray[np.uint16]:
    """A CT-like slice in stored units: air, a body with lungs, spine and ribs, a table."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = size / 2
    hu = np.full((size, size), -1000.0, np.float32)
    a, b = size * 0.42 * body, size * 0.30 * body
    hu[((x - centre) / a) ** 2 + ((y - centre) / b) ** 2 <= 1] = 40
    for side in (-0.45, 0.45):
        lung = ((x - centre - side * a) / (a * 0.35)) ** 2 + (
            (y - centre + 0.1 * b) / (b * 0.6)
        ) ** 2
        hu[lung <= 1] = -850
    spine = ((x - centre) ** 2 + (y - centre - 0.55 * b) ** 2) <= (size * 0.04) ** 2
    hu[spine] = 700
    for angle in np.linspace(0.2, 2.9, 8):
        rx, ry = centre - 0.92 * a * np.cos(angle), centre - 0.92 * b * np.sin(angle)
        hu[((x - rx) ** 2 + (y - ry) ** 2) <= (size * 0.012) ** 2] = 900
    table_y = centre + b + size * 0.05
    table = (np.abs(y - table_y - 0.0004 * (x - centre) ** 2) < size * 0.012) & (
        np.abs(x - centre) < size * 0.4
    )
    hu[table] = 200
    hu += rng.normal(0, noise_hu, hu.shape).astype(np.float32) * (hu > -950)
    hu += rng.normal(0, 4, hu.shape).astype(np.float32) * (hu <= -950)
    hu[((x - centre) ** 2 + (y - centre) ** 2) > (size * 0.5) ** 2] = -2000  # outside the FOV
    return np.clip(hu + HU_OFFSET, 0, 4095).astype(np.uint16)


def burn(pixels: Pixels, text: str, origin: tuple[int, int], size: int, value: float) -> Box:
    """Burn ``text`` into ``pixels`` (in place) at ``value``; return its ink box."""
    mask = text_mask((pixels.shape[0], pixels.shape[1]), text, origin, size)
    pixels[mask] = value
    return ink_box(mask)


def ct_instance(
    pixels: npt.NDArray[np.uint16],
    *,
    number: int = 1,
    window: tuple[float, float] | None = (40.0, 400.0),
    customize: Callable[[Dataset], None] | None = None,
) -> Dataset:
    """A CT instance of the fake patient with ``pixels`` (16-bit, 12 stored), no flag."""

    def pixel_module(ds: Dataset) -> None:
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept, ds.RescaleSlope = -HU_OFFSET, 1
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
        if customize is not None:
            customize(ds)

    return synthetic_instance(number=number, customize=pixel_module)


def us_instance(stack: Pixels, *, customize: Callable[[Dataset], None] | None = None) -> Dataset:
    """An 8-bit ultrasound instance of the fake patient: ``stack`` is (F, H, W) or (F, H, W, 3)."""
    colour = stack.ndim == 4

    def pixel_module(ds: Dataset) -> None:
        ds.Rows, ds.Columns = stack.shape[1], stack.shape[2]
        ds.SamplesPerPixel = 3 if colour else 1
        ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
        if colour:
            ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelRepresentation = 0
        if stack.shape[0] > 1:
            ds.NumberOfFrames = stack.shape[0]
        ds.PixelData = np.ascontiguousarray(stack, dtype=np.uint8).tobytes()
        if customize is not None:
            customize(ds)

    return synthetic_instance(modality="US", sop_class=US_IMAGE_STORAGE, customize=pixel_module)


def dataset(data: bytes) -> Dataset:
    """The data set in Part 10 bytes."""
    return dcmread(io.BytesIO(data))


def phi_of(ds: Dataset) -> PhiValues:
    """The instance's PHI values as the pipeline collects them (default profile)."""
    return collect_phi_values(ds)


@functools.cache
def engine() -> OcrEngine:
    """The real RapidOCR engine, loaded once per test process."""
    return shared_engine("rapidocr")


@dataclass
class CountingEngine:
    """The real engine, with its calls counted (how often the triage used the detector)."""

    inner: OcrEngine
    detect_calls: list[tuple[int, int]] = field(default_factory=list)  # (height, width)
    recognize_calls: list[tuple[int, int]] = field(default_factory=list)

    @property
    def info(self) -> EngineInfo:
        return self.inner.info

    @property
    def concurrent(self) -> bool:
        return self.inner.concurrent

    def detect(self, image: EngineImage, *, max_side: int = 0) -> list[TextRegion]:
        self.detect_calls.append((image.shape[0], image.shape[1]))
        return self.inner.detect(image, max_side=max_side)

    def recognize(self, image: EngineImage, *, max_side: int = 0) -> list[TextRegion]:
        self.recognize_calls.append((image.shape[0], image.shape[1]))
        return self.inner.recognize(image, max_side=max_side)


def releasing_threshold() -> RiskThreshold:
    """A threshold that holds only what fails verification (risk 1.0): the stage's own checks.

    The shipped calibration decides in production; these tests are about what the stage
    fills, keeps and verifies, so the threshold stays out of the way.
    """
    return RiskThreshold(
        value=0.999, leak_rate=0.01, engine="rapidocr", n_calibration=0, method="test"
    )


def stage(
    *,
    ocr: OcrEngine | None = None,
    settings: PixelSettings | None = None,
    threshold: RiskThreshold | None = None,
) -> PixelStage:
    """A pixel stage on the real engine and the real Presidio analyzer."""
    return PixelStage(
        ocr if ocr is not None else engine(),
        classifier=PhiClassifier(shared_text_cleaner().analyzer),
        threshold=threshold if threshold is not None else releasing_threshold(),
        settings=settings,
    )


def deidentify(
    ds: Dataset,
    policy: PixelPolicy,
    *,
    reviewed_boxes: dict[int, Sequence[Box]] | None = None,
) -> InstanceOutcome:
    """Run the whole pipeline on ``ds`` with ``policy``."""
    return deidentify_instance(
        to_bytes(ds),
        profile=DeidProfile(),
        keys=KEYS,
        clean_text=shared_text_cleaner(),
        pixel_policy=policy,
        reviewed_boxes=reviewed_boxes,
    )


def written(outcome: InstanceOutcome) -> Dataset:
    """The released output, or the held candidate."""
    data = outcome.output if outcome.output is not None else outcome.candidate
    assert data is not None, outcome.reasons
    return dataset(data)


def texts_read(image: EngineImage) -> list[str]:
    """What the engine reads in ``image``, line by line."""
    return [region.text for region in engine().recognize(image)]


__all__ = [
    "CT_IMAGE_STORAGE",
    "FONT",
    "KEYS",
    "CountingEngine",
    "burn",
    "ct_instance",
    "ct_slice",
    "dataset",
    "deidentify",
    "engine",
    "ink_box",
    "phi_of",
    "releasing_threshold",
    "stage",
    "text_mask",
    "texts_read",
    "us_instance",
    "written",
]
