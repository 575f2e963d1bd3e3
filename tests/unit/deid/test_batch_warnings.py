"""``radstream deid`` reports pydicom's warnings as their place, never the value they quote."""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataelem import DataElement
from typer.testing import CliRunner

from radstream.cli.main import app
from radstream.deid import clean
from tests.unit.deid.study_builder import shared_text_cleaner, synthetic_instance, to_bytes

FAKE_PHI = "Zelda Quuxington MRN Q81726"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    hooks = warnings.showwarning, sys.excepthook, threading.excepthook
    yield
    root.handlers, level = saved
    root.setLevel(level)
    warnings.showwarning, sys.excepthook, threading.excepthook = hooks


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.filterwarnings("always")
def test_the_batch_command_reports_a_pydicom_warning_without_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    ds = synthetic_instance()
    with warnings.catch_warnings():  # writing the crafted value warns too; not under test
        warnings.simplefilter("ignore")
        ds.add(DataElement(0x00200052, "UI", FAKE_PHI))  # not a UID: pydicom warns on reading
        data = to_bytes(ds)
    source = tmp_path / "in"
    source.mkdir()
    (source / "slice.dcm").write_bytes(data)
    monkeypatch.setattr(clean, "build_text_cleaner", shared_text_cleaner)
    monkeypatch.setenv("RADSTREAM_DEID_KEY", "radstream-cli-test-key-0123456789abcdef")

    result = CliRunner().invoke(app, ["deid", str(source), str(tmp_path / "out")])

    captured = capfd.readouterr()
    output = result.output + captured.out + captured.err
    assert result.exit_code == 0, output
    for fragment in ("Zelda", "Quuxington", "Q81726"):
        assert fragment not in output
    assert "radstream.warnings: UserWarning at pydicom/" in output
