"""The RapidOCR engine: rapidocr's own reading, the real ultrasound files, cost bounds, threads."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from radstream.ocr.engine import Box, TextRegion
from radstream.ocr.engines import shared_engine
from radstream.ocr.engines.ppocr import PpOcrParameters, model_files, recognizer_classes
from radstream.ocr.engines.rapid import RapidOcrEngine, detector_limit
from tests.unit.ocr.real_images import TOP_BAND_PHI, ultrasound
from tests.unit.ocr.text_images import Line, draw, read_text


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    loaded = shared_engine("rapidocr")
    assert isinstance(loaded, RapidOcrEngine)
    return loaded


def _corners(box: Box) -> tuple[int, int, int, int]:
    return (box.x, box.y, box.right, box.bottom)


def _lines_holding(regions: list[TextRegion], token: str) -> list[TextRegion]:
    return [r for r in regions if token.upper() in r.text.upper()]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOP_BAND_PHI))
def test_reads_the_burned_in_phi_of_the_real_ultrasound_files(
    engine: RapidOcrEngine, name: str
) -> None:
    regions = engine.recognize(ultrasound(name))

    for token in TOP_BAND_PHI[name]:
        holding = _lines_holding(regions, token)
        assert holding, f"{name}: a PHI token was not read"
        assert all(r.box.bottom <= 60 for r in holding)  # in the top band, where it is drawn
        assert all(r.confidence >= 0.9 and r.detection_score >= 0.5 for r in holding)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOP_BAND_PHI))
def test_reads_what_rapidocr_itself_reads(engine: RapidOcrEngine, name: str) -> None:
    """Without max_side the engine is rapidocr's pipeline: same boxes, same text."""
    from rapidocr import RapidOCR

    files = model_files()
    params = PpOcrParameters().rapidocr_params() | {
        "Global.log_level": "warning",
        "Det.model_path": str(files.detector),
        "Rec.model_path": str(files.recognizer),
        "Cls.model_path": str(files.classifier),
    }
    level = logging.getLogger("RapidOCR").level
    try:
        pixels = ultrasound(name)
        bgr = np.ascontiguousarray(pixels[..., ::-1]) if pixels.ndim == 3 else pixels
        reference = RapidOCR(params=params)(bgr)
    finally:
        logging.getLogger("RapidOCR").setLevel(level)
    expected = sorted(
        (_corners(Box.around([tuple(p) for p in quad])), text)
        for quad, text in zip(reference.boxes, reference.txts, strict=True)
    )

    read = sorted((_corners(r.box), r.text) for r in engine.recognize(ultrasound(name)) if r.text)

    assert read == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOP_BAND_PHI))
def test_detection_at_half_resolution_still_finds_the_phi_lines(
    engine: RapidOcrEngine, name: str
) -> None:
    """The cheap check (max_side 512 on 1024-wide frames) covers every line that holds PHI."""
    image = ultrasound(name)
    full = engine.recognize(image)
    phi_boxes = [r.box for token in TOP_BAND_PHI[name] for r in _lines_holding(full, token)]

    found = [r.box for r in engine.detect(image, max_side=512)]

    for box in phi_boxes:
        assert box.covered_by(found) >= 0.8


def test_detector_limit_follows_pp_ocr_and_is_capped_by_max_side() -> None:
    parameters = PpOcrParameters()

    # PP-OCR: the shorter side up to 736, never down
    assert detector_limit(480, 640, parameters, 0) == (736, "min")
    assert detector_limit(768, 1024, parameters, 0) == (768, "min")
    # max_side caps the longer side: no upscaling past it, and scaling down to it
    assert detector_limit(256, 512, parameters, 512) == (256, "min")
    assert detector_limit(384, 512, parameters, 512) == (384, "min")
    assert detector_limit(768, 1024, parameters, 512) == (512, "max")
    assert detector_limit(100, 200, parameters, 400) == (200, "min")


def test_a_wide_strip_is_padded_for_the_detector_and_mapped_back(engine: RapidOcrEngine) -> None:
    """A band cut from an image's top (1000 x 40) is read, its box inside the band."""
    image = draw([Line("JONES MARY  ACC 5567123", 10, 6, 24)], width=1000, height=40)

    regions = engine.recognize(image.pixels)

    assert "JONES MARY" in read_text(regions)
    assert "5567123" in read_text(regions)
    assert all(r.box.bottom <= 40 for r in regions)
    assert image.lines[0].box.covered_by([r.box for r in regions]) >= 0.9


@pytest.mark.slow
def test_threads_calling_one_engine_get_what_one_thread_gets(engine: RapidOcrEngine) -> None:
    image = draw(
        [Line("SMITH JOHN", 20, 16, 28), Line("MRN 00412377", 20, 70, 24)], width=400, height=120
    )
    calls = [engine.detect, engine.recognize] * 3
    expected = [call(image.pixels) for call in calls]

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda call: call(image.pixels), calls))

    assert results == expected
    assert engine.concurrent


def test_loading_logs_nothing_and_leaves_rapidocr_logger_as_it_was(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logger = logging.getLogger("RapidOCR")
    before = logger.level

    RapidOcrEngine(threads=1)

    assert logger.level == before
    assert "INFO" not in capfd.readouterr().err


def test_parameters_are_rapidocrs_own_defaults() -> None:
    """PpOcrParameters mirrors rapidocr's config.yaml except the two documented choices."""
    import rapidocr

    config = yaml.safe_load((Path(rapidocr.__file__).parent / "config.yaml").read_text())
    mapped = PpOcrParameters().rapidocr_params()

    differences = {}
    for key, value in mapped.items():
        section, name = key.split(".")
        if config[section][name] != value:
            differences[key] = (config[section][name], value)

    assert differences == {"Global.use_cls": (True, False), "Global.text_score": (0.5, 0.0)}


def test_model_files_and_recognizer_classes_match_the_onnx_models() -> None:
    import onnxruntime

    files = model_files()
    classes = recognizer_classes()
    session = onnxruntime.InferenceSession(
        str(files.recognizer), providers=["CPUExecutionProvider"]
    )

    assert files.detector.is_file() and files.classifier.is_file()
    assert session.get_outputs()[0].shape[2] == len(classes)
    assert classes[0] == "" and classes[-1] == " "
    assert {"A", "z", "0", "9", "/", ":", "-"} <= set(classes)
    assert files.names == "PP-OCRv6_det_small+PP-OCRv6_rec_small"
