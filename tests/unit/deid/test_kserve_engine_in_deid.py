"""deid with the kserve engine: its model server's URL from the settings or --ocr-url, and a
calibrated threshold (kserve reads with RapidOCR's models and processing, so it uses RapidOCR's
calibration instead of failing closed).

The model server is away here (a loopback port nobody listens on): what is checked is that the
URL reaches the engine and the threshold; reading through a real server is
tests/integration/ocr/test_kserve_deid.py.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radstream.cli.main import app
from radstream.common.embedded_broker import free_loopback_port
from radstream.deid import clean
from radstream.deid.config import DeidSettings
from radstream.deid.errors import DeidConfigurationError
from radstream.deid.pixels.calibration import FAIL_CLOSED, load_calibration
from radstream.deid.pixels.risk import threshold_for
from radstream.ocr.engines.kserve import KServeEngine
from tests.unit.deid.pixels.builders import burn, ct_instance, ct_slice
from tests.unit.deid.study_builder import PATIENT_NAME, shared_text_cleaner, to_bytes


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KEY", "KEY_FILE", "OCR_ENGINE", "OCR_KSERVE_URL", "LEAK_RATE"):
        monkeypatch.delenv(f"RADSTREAM_DEID_{name}", raising=False)
    monkeypatch.setattr(clean, "build_text_cleaner", shared_text_cleaner)  # loaded once


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command configures logging onto the runner's stream, closed once it returns."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    hooks = warnings.showwarning, sys.excepthook, threading.excepthook
    yield
    root.handlers, level = saved
    root.setLevel(level)
    warnings.showwarning, sys.excepthook, threading.excepthook = hooks


def nowhere() -> str:
    return f"grpc://127.0.0.1:{free_loopback_port()}"


class TestSettings:
    def test_the_kserve_engine_gets_the_url_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url = nowhere()
        monkeypatch.setenv("RADSTREAM_DEID_OCR_ENGINE", "kserve")
        monkeypatch.setenv("RADSTREAM_DEID_OCR_KSERVE_URL", url)
        engine = DeidSettings().ocr()
        assert isinstance(engine, KServeEngine)
        assert engine.url == url

    def test_kserve_without_a_url_stops_the_start_saying_what_to_set(self) -> None:
        with pytest.raises(DeidConfigurationError, match="RADSTREAM_DEID_OCR_KSERVE_URL"):
            DeidSettings(ocr_engine="kserve").ocr()


class TestCalibration:
    def test_kserve_is_calibrated_as_rapidocr_not_failed_closed(self) -> None:
        assert load_calibration("kserve") == load_calibration("rapidocr") is not None
        for leak_rate in (0.01, 0.05):
            kserve = threshold_for(leak_rate, "kserve")
            assert kserve.method != FAIL_CLOSED
            assert kserve == threshold_for(leak_rate, "rapidocr")

    def test_an_engine_without_calibration_still_fails_closed(self) -> None:
        assert threshold_for(0.01, "tesseract").method == FAIL_CLOSED


class TestCommandLine:
    def test_ocr_url_reaches_the_engine_and_an_outage_leaves_the_file(self, tmp_path: Path) -> None:
        in_dir, out_dir = tmp_path / "in", tmp_path / "out"
        in_dir.mkdir()
        pixels = ct_slice(4, size=256)
        burn(pixels, PATIENT_NAME, (6, 4), 14, 4095)
        (in_dir / "ct.dcm").write_bytes(to_bytes(ct_instance(pixels)))

        result = CliRunner().invoke(
            app,
            [
                "deid",
                str(in_dir),
                str(out_dir),
                "--ephemeral-key",
                "--ocr-engine",
                "kserve",
                "--ocr-url",
                nowhere(),
            ],
            terminal_width=200,
        )

        assert result.exit_code == 0, result.output
        calibrated = threshold_for(0.01, "rapidocr").value
        assert f"risk threshold {calibrated:.3f}" in result.output, "not failed closed"
        assert "ocr_unavailable (1)" in result.output
        assert (out_dir / "rejected.json").read_text().count("run again") == 1

    def test_ocr_url_without_kserve_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "in").mkdir()
        result = CliRunner().invoke(
            app,
            [
                *("deid", str(tmp_path / "in"), str(tmp_path / "out"), "--ephemeral-key"),
                *("--ocr-url", nowhere()),
            ],
        )
        assert result.exit_code == 2
        assert "--ocr-engine kserve" in result.output
