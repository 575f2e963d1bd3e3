"""What every local engine promises (radstream.ocr.engine.OcrEngine), checked on each of them.

The images are drawn here with known strings at known places (text_images), so the checks are
about the engines' behaviour -- the words read, the boxes around them, the coordinates they come
back in -- and fail when an engine reads something else or puts its boxes elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from radstream.ocr.engine import Box, OcrEngine, TextRegion, sorted_regions
from radstream.ocr.engines import shared_engine
from tests.unit.ocr.text_images import DrawnLine, Line, draw, read_text

ENGINES = [
    pytest.param("rapidocr", id="rapidocr"),
    pytest.param("tesseract", id="tesseract"),
    pytest.param("easyocr", id="easyocr", marks=pytest.mark.slow),
]

PATIENT_LINES = (
    Line("SMITH JOHN", 20, 16, 28),
    Line("MRN 00412377", 20, 70, 24),
    Line("DOB 1951-08-29", 300, 130, 22),
)
TOKENS = ("SMITH", "JOHN", "MRN", "00412377", "DOB", "1951-08-29")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> OcrEngine:
    return shared_engine(request.param)


def _iou(a: Box, b: Box) -> float:
    shared = a.intersection(b)
    return shared / (a.area + b.area - shared)


def assert_boxes_around(regions: Sequence[TextRegion], drawn: Sequence[DrawnLine]) -> None:
    """Every drawn line is covered by the regions, and every region sits on a drawn line."""
    boxes = [r.box for r in regions]
    for line in drawn:
        assert line.box.covered_by(boxes) >= 0.9, f"{line.text!r} not covered by {boxes}"
    for box in boxes:
        best = max(_iou(box, line.box) for line in drawn)
        assert best >= 0.5, f"{box} lies on no drawn line (best IoU {best:.2f})"


def test_reads_light_text_on_black(engine: OcrEngine) -> None:
    image = draw(PATIENT_LINES, width=560, height=180)

    regions = engine.recognize(image.pixels)

    text = read_text(regions)
    for token in TOKENS:
        assert token in text
    assert regions == sorted_regions(regions)
    assert all(0.5 <= r.confidence <= 1.0 for r in regions)
    assert_boxes_around(regions, image.lines)


def test_reads_dark_text_on_a_light_rgb_image(engine: OcrEngine) -> None:
    image = draw(
        PATIENT_LINES,
        width=560,
        height=180,
        background=(235, 235, 220),
        foreground=(20, 20, 120),
        rgb=True,
    )

    regions = engine.recognize(image.pixels)

    text = read_text(regions)
    for token in TOKENS:
        assert token in text
    assert_boxes_around(regions, image.lines)


def test_detect_finds_the_boxes_with_scores_and_reads_nothing(engine: OcrEngine) -> None:
    image = draw(PATIENT_LINES, width=560, height=180)

    regions = engine.detect(image.pixels)

    assert regions
    assert all(r.text == "" and r.confidence == 0.0 for r in regions)
    assert all(0.0 < r.detection_score <= 1.0 for r in regions)
    assert_boxes_around(regions, image.lines)


def test_max_side_returns_boxes_in_the_original_frame(engine: OcrEngine) -> None:
    lines = (Line("ACCESSION 7731", 40, 30, 44), Line("PORTABLE", 560, 300, 44))
    image = draw(lines, width=1000, height=400)

    regions = engine.recognize(image.pixels, max_side=500)

    assert "ACCESSION" in read_text(regions)
    assert "PORTABLE" in read_text(regions)
    assert all(r.box.right <= image.width and r.box.bottom <= image.height for r in regions)
    assert_boxes_around(regions, image.lines)
    for region in regions:  # the outline is in the original frame too
        outline = Box.around(region.polygon).clipped(width=image.width, height=image.height)
        assert outline is not None
        assert abs(outline.x - region.box.x) <= 2 and abs(outline.right - region.box.right) <= 2
        assert abs(outline.y - region.box.y) <= 2
        assert abs(outline.bottom - region.box.bottom) <= 2


@pytest.mark.parametrize(
    "pixels",
    [
        pytest.param(np.zeros((240, 320), np.uint8), id="black-gray"),
        pytest.param(np.zeros((240, 320, 3), np.uint8), id="black-rgb"),
        pytest.param(np.full((240, 320), 128, np.uint8), id="flat-gray"),
    ],
)
def test_an_image_without_text_has_no_regions(engine: OcrEngine, pixels: np.ndarray) -> None:
    assert engine.detect(pixels) == []
    assert engine.recognize(pixels) == []


@pytest.mark.parametrize(
    ("pixels", "error"),
    [
        pytest.param(np.zeros((64, 64), np.uint16), TypeError, id="16-bit"),
        pytest.param(np.zeros((64, 64, 3), np.uint16), TypeError, id="16-bit-rgb"),
        pytest.param(np.zeros((64, 64), np.float32), TypeError, id="float"),
        pytest.param(np.zeros((64, 64, 4), np.uint8), ValueError, id="rgba"),
        pytest.param(np.zeros((0, 64), np.uint8), ValueError, id="empty"),
        pytest.param([[0, 0], [0, 0]], TypeError, id="list"),
    ],
)
def test_only_8_bit_gray_or_rgb_arrays_are_accepted(
    engine: OcrEngine, pixels: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        engine.recognize(pixels)  # type: ignore[arg-type]
    with pytest.raises(error):
        engine.detect(pixels)  # type: ignore[arg-type]


def test_16_bit_refusal_names_the_type_not_the_pixels(engine: OcrEngine) -> None:
    with pytest.raises(TypeError, match="uint16"):
        engine.recognize(np.full((32, 32), 4000, np.uint16))


def test_engine_describes_itself(engine: OcrEngine) -> None:
    info = engine.info

    assert isinstance(engine, OcrEngine)
    assert info.name in {"rapidocr", "tesseract", "easyocr"}
    assert info.version[0].isdigit()
    assert info.models
    assert isinstance(engine.concurrent, bool)
