"""The Tesseract engine: sparse layout, polarity, words grouped into lines, the real files."""

from __future__ import annotations

import numpy as np
import pytest

from radstream.common.errors import MisconfiguredError
from radstream.ocr.engines import load_engine, shared_engine
from radstream.ocr.engines.tesseract import TesseractEngine
from tests.unit.ocr.real_images import TOP_BAND_PHI, ultrasound
from tests.unit.ocr.text_images import Line, draw, read_text


@pytest.fixture(scope="module")
def engine() -> TesseractEngine:
    loaded = shared_engine("tesseract")
    assert isinstance(loaded, TesseractEngine)
    return loaded


@pytest.mark.parametrize("name", sorted(TOP_BAND_PHI))
def test_reads_the_burned_in_phi_of_the_real_ultrasound_files(
    engine: TesseractEngine, name: str
) -> None:
    regions = engine.recognize(ultrasound(name))

    text = read_text(regions)
    for token in TOP_BAND_PHI[name]:
        assert token.upper() in text, f"{name}: a PHI token was not read"
    band = [r for r in regions if r.box.bottom <= 60]
    assert any("00079241539" in r.text or "00047431395" in r.text for r in band)


def test_words_of_one_line_make_one_region_and_lines_stay_apart(engine: TesseractEngine) -> None:
    image = draw(
        [Line("LEFT  BREAST  LATERAL", 30, 20, 26), Line("GAIN 58", 30, 120, 26)],
        width=480,
        height=180,
    )

    regions = engine.recognize(image.pixels)

    assert [r.text for r in regions] == ["LEFT BREAST LATERAL", "GAIN 58"]
    for region, line in zip(regions, image.lines, strict=True):
        assert line.box.covered_by([region.box]) >= 0.95
        assert region.detection_score == region.confidence  # Tesseract's one score


def test_the_settings_column_beside_the_image_is_read(engine: TesseractEngine) -> None:
    """Sparse text (psm 11): the probe and gain labels down the grayscale file's left side.

    The default layout analysis (psm 3) reads the top band of this file but none of these.
    """
    text = read_text(engine.recognize(ultrasound("GREYSCALE_IMAGE.dcm")))

    for label in ("L12-5", "36HZ", "60%", "DYN R 58", "P MED", "TAC1"):
        assert label in text


def test_psm_is_an_option_and_named_in_the_engine_info() -> None:
    assert "psm 11" in shared_engine("tesseract").info.models
    assert "psm 6" in load_engine("tesseract", psm=6).info.models


def test_a_language_without_data_is_a_configuration_error() -> None:
    with pytest.raises(MisconfiguredError, match="language data"):
        TesseractEngine(language="xx-not-a-language")


def test_detect_is_recognition_without_the_text(engine: TesseractEngine) -> None:
    image = draw([Line("PORTABLE", 40, 40, 30)], width=320, height=120)

    detected = engine.detect(image.pixels)
    recognized = engine.recognize(image.pixels)

    assert [r.box for r in detected] == [r.box for r in recognized]
    assert [r.detection_score for r in detected] == [r.detection_score for r in recognized]
    assert all(r.text == "" for r in detected)
    assert np.isclose(recognized[0].confidence, recognized[0].detection_score)
