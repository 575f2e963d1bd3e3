"""Fixtures of the ingest integration tests: a real Orthanc PACS on loopback."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.orthanc import (
    OrthancOptions,
    OrthancServer,
    finish_stopping,
    orthanc_missing_reason,
)

StartOrthanc = Callable[..., OrthancServer]


@pytest.fixture(scope="session")
def orthanc_reaper() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Orthanc processes told to stop; each winds down (about 3 s) while the next test runs."""
    stopping: list[subprocess.Popen[bytes]] = []
    yield stopping
    for process in stopping:
        finish_stopping(process)


@pytest.fixture
def start_orthanc(
    tmp_path: Path, orthanc_reaper: list[subprocess.Popen[bytes]]
) -> Iterator[StartOrthanc]:
    """Start Orthanc servers with chosen options; all are stopped after the test.

    Skips the test when Orthanc or its DICOMweb plugin is not installed.
    """
    reason = orthanc_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    servers: list[OrthancServer] = []

    def start(options: OrthancOptions | None = None) -> OrthancServer:
        server = OrthancServer(tmp_path / f"orthanc-{len(servers)}", options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        process = server.stop_nowait()
        if process is not None:
            orthanc_reaper.append(process)


@pytest.fixture
def orthanc(start_orthanc: StartOrthanc) -> OrthancServer:
    """An Orthanc with default options (open REST API on loopback, StableAge 1 s)."""
    return start_orthanc()
