"""A real MLServer serving PP-OCR's ONNX files over KServe v2, for the remote engine's tests.

MLServer runs from its own venv (``.venv-mlserver``, ``make mlserver-venv``): it cannot share
radstream's (its fastapi pin conflicts with flwr's), nor one process with ``tritonclient.grpc``.
The model repository is the one production's Triton gets, written by
:func:`radstream.ocr.triton_repository.build` (the wheel's ONNX files and their config.pbtxt),
plus each model's ``model-settings.json`` and the server's ``settings.json`` from
``deploy/mlserver/``, whose ``onnx_runtime.OnnxRuntime`` serves the files with onnxruntime.

The server listens on free loopback ports; it is ready when its HTTP health check and both models
say so (about 6 s). A missing venv fails the test with what to run -- it is never skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from radstream.common.embedded_broker import die_with_parent, free_loopback_port
from radstream.ocr.triton_repository import MODELS, build

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
MLSERVER_VENV = REPOSITORY_ROOT / ".venv-mlserver"
MLSERVER = MLSERVER_VENV / "bin" / "mlserver"
DEPLOY = REPOSITORY_ROOT / "deploy" / "mlserver"


@dataclass(frozen=True)
class MLServer:
    """A running MLServer: where to reach it, and its log."""

    http_port: int
    grpc_port: int
    log: Path

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def _ready(http_port: int) -> bool:
    paths = ["/v2/health/ready", *(f"/v2/models/{m.name}/ready" for m in MODELS)]
    for path in paths:
        try:
            with urllib.request.urlopen(  # loopback, our own server
                f"http://127.0.0.1:{http_port}{path}", timeout=2
            ) as answer:
                if answer.status != 200:
                    return False
        except (urllib.error.URLError, OSError):
            return False
    return True


def _log_tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@contextlib.contextmanager
def running_mlserver(folder: Path, *, timeout: float = 90.0) -> Iterator[MLServer]:
    """Build the model repository in ``folder``, start MLServer on it, stop it afterwards."""
    if not MLSERVER.exists():
        pytest.fail(
            f"{MLSERVER} is missing: the remote OCR engine is tested against MLServer in its own "
            "venv; run `make install` (or `make mlserver-venv`)",
            pytrace=False,
        )
    build(folder)
    for model in MODELS:
        shutil.copyfile(
            DEPLOY / "models" / model.name / "model-settings.json",
            folder / model.name / "model-settings.json",
        )
    http_port, grpc_port, metrics_port = (free_loopback_port() for _ in range(3))
    settings = json.loads((DEPLOY / "settings.json").read_text())
    settings |= {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port}
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    log = folder / "mlserver.log"
    env = {
        "PATH": f"{MLSERVER_VENV / 'bin'}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(DEPLOY),  # onnx_runtime.OnnxRuntime
        "HOME": str(folder),
        "OMP_NUM_THREADS": "2",
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(MLSERVER), "start", "."],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 -- no threads run MLServer's start
        )
    try:
        deadline = time.monotonic() + timeout
        while not _ready(http_port):
            if process.poll() is not None:
                pytest.fail(
                    f"MLServer exited with {process.returncode}:\n{_log_tail(log)}", pytrace=False
                )
            if time.monotonic() > deadline:
                pytest.fail(f"MLServer not ready in {timeout} s:\n{_log_tail(log)}", pytrace=False)
            time.sleep(0.2)
        yield MLServer(http_port=http_port, grpc_port=grpc_port, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
