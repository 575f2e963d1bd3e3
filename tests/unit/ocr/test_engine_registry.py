"""Engines by name: lazy imports, clear errors, one shared instance per name and options."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from radstream.common.errors import MisconfiguredError
from radstream.ocr.engine import OcrEngine
from radstream.ocr.engines import DEFAULT_ENGINE, ENGINE_NAMES, load_engine, shared_engine
from radstream.ocr.engines.registry import _factory


def test_importing_the_engines_package_imports_no_engine_library() -> None:
    heavy = ("torch", "easyocr", "rapidocr", "pytesseract", "onnxruntime", "tritonclient")
    script = (
        "import sys, radstream.ocr.engines, radstream.ocr.engines.ppocr\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout

    assert loaded.strip() == "[]"


def test_every_name_resolves_to_an_engine_class() -> None:
    assert set(ENGINE_NAMES) == {"rapidocr", "tesseract", "easyocr", "kserve"}
    assert DEFAULT_ENGINE == "rapidocr"
    for name in ENGINE_NAMES:
        assert callable(_factory(name))


def test_an_unknown_engine_is_a_configuration_error_naming_the_choices() -> None:
    with pytest.raises(MisconfiguredError, match="rapidocr, tesseract, easyocr, kserve"):
        load_engine("paddle")


def test_an_option_the_engine_does_not_take_is_a_configuration_error() -> None:
    with pytest.raises(MisconfiguredError, match="colour"):
        load_engine("tesseract", colour="blue")


def test_load_engine_builds_a_new_engine_with_its_options() -> None:
    engine = load_engine("tesseract", psm=6)

    assert isinstance(engine, OcrEngine)
    assert engine.info.name == "tesseract"
    assert engine is not load_engine("tesseract", psm=6)


def test_shared_engine_is_one_instance_per_name_and_options() -> None:
    results: list[OcrEngine] = []
    threads = [
        threading.Thread(target=lambda: results.append(shared_engine("tesseract", psm=4)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({id(engine) for engine in results}) == 1
    assert shared_engine("tesseract", psm=4) is results[0]
    assert shared_engine("tesseract", psm=12) is not results[0]
