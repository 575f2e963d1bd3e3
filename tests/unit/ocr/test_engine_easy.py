"""The EasyOCR engine: offline weights, lazy torch, detection scores, a real file's top band."""

from __future__ import annotations

import sys

import pytest

from radstream.common.errors import MissingExtraError
from radstream.ocr.engines import shared_engine
from radstream.ocr.engines.easy import EasyOcrEngine, default_threads
from tests.unit.ocr.real_images import TOP_BAND_PHI, ultrasound
from tests.unit.ocr.text_images import read_text


def test_without_easyocr_loading_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "easyocr", None)  # what an import of a missing package does

    with pytest.raises(MissingExtraError, match=r"pip install 'radstream\[easyocr\]'"):
        EasyOcrEngine()


def test_default_threads_are_at_most_two() -> None:
    assert 1 <= default_threads() <= 2


@pytest.mark.slow
def test_reads_the_phi_in_the_top_band_of_the_real_rgb_file() -> None:
    """The band alone (1024 x 60): EasyOCR on the full frame takes ten seconds and more."""
    import torch

    engine = shared_engine("easyocr")
    band = ultrasound("RGB_IMAGE.dcm")[:60]

    regions = engine.recognize(band)
    detected = engine.detect(band)

    text = read_text(regions)
    for token in TOP_BAND_PHI["RGB_IMAGE.dcm"]:
        assert token.upper().replace(":", ".") in text.replace(":", ".")
    assert all(r.detection_score >= 0.7 for r in regions)  # CRAFT's text threshold
    assert [r.box for r in detected] == [r.box for r in regions]
    assert torch.get_num_threads() == default_threads()
    assert not engine.concurrent
