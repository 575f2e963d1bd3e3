"""pydicom's warnings quote values from the file: they reach the log as a location, never a value.

The reader runs in worker threads (ingest's receiver, deid's pipeline), so it must not touch the
process-wide warning state per call (``warnings.catch_warnings`` is not thread-safe): pydicom's
warnings are routed once, by :func:`~radstream.common.logs.configure_logging`.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pydicom.config
import pytest
from pydicom.dataelem import DataElement

from radstream.common.logs import configure_logging
from radstream.common.settings import ObservabilitySettings
from radstream.dicom.reader import read_instance
from tests.unit.deid.study_builder import synthetic_instance, to_bytes

# Not a UID, so pydicom warns quoting it when it reads it as one.
FAKE_PHI = "Zelda Quuxington MRN Q81726"


def instance_with_invalid_uid() -> bytes:
    ds = synthetic_instance()
    with warnings.catch_warnings():  # writing the crafted value warns too; not under test
        warnings.simplefilter("ignore")
        ds.add(DataElement(0x00200052, "UI", FAKE_PHI))  # Frame of Reference UID
        return to_bytes(ds)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logging configured as a service configures it, restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    saved_hook, saved_thread_hook = __import__("sys").excepthook, threading.excepthook
    saved_showwarning = warnings.showwarning
    stream = io.StringIO()
    configure_logging(ObservabilitySettings(service_name="deid"), stream=stream)
    yield stream
    warnings.showwarning = saved_showwarning
    __import__("sys").excepthook, threading.excepthook = saved_hook, saved_thread_hook
    root.handlers = handlers
    root.setLevel(level)


@pytest.mark.filterwarnings("always")
def test_a_pydicom_warning_in_a_worker_thread_is_logged_as_its_location_without_the_value(
    log_stream: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    data = instance_with_invalid_uid()

    with ThreadPoolExecutor(max_workers=1) as pool:
        dataset = pool.submit(read_instance, data).result()

    assert (
        dataset.FrameOfReferenceUID == FAKE_PHI
    )  # read as it is; judging it is de-identification's job
    captured = capfd.readouterr()
    output = log_stream.getvalue() + captured.out + captured.err
    assert "Zelda" not in output
    assert "Quuxington" not in output
    assert "Q81726" not in output
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    warned = [line for line in lines if line["logger"] == "radstream.warnings"]
    assert warned, "the warning was not reported"
    assert any(
        "UserWarning" in line["msg"] and "pydicom/" in line["msg"] and "line" in line["msg"]
        for line in warned
    )


@pytest.mark.filterwarnings("always")
def test_reading_an_instance_does_not_silence_another_threads_warnings(
    log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one thread reads, a warning raised by another thread is still reported."""
    reading, warned = threading.Event(), threading.Event()

    def pause_while_reading(raw: object) -> object:
        reading.set()
        warned.wait(timeout=10)
        return raw

    monkeypatch.setattr(pydicom.config, "data_element_callback", pause_while_reading)
    data = instance_with_invalid_uid()

    def warn_from_another_thread() -> None:
        reading.wait(timeout=10)
        warnings.warn("radstream test: raised beside a read", RuntimeWarning, stacklevel=1)
        warned.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        read = pool.submit(read_instance, data)
        other = pool.submit(warn_from_another_thread)
        other.result()
        read.result()

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert any("RuntimeWarning" in line["msg"] for line in lines)
