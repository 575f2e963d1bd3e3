"""`radstream run ocr` as a Deployment runs it: a process that loads its engine and answers.

The service is started as a subprocess of the real CLI with an operator's environment (ports,
no Kafka: the ocr service needs none), then probed, called over gRPC, and stopped with SIGTERM,
which it must take as a graceful stop (exit code 0).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from radstream.common.embedded_broker import free_loopback_port
from radstream.ocr.client import GrpcOcrEngine, OcrClient
from tests.integration.operator import RADSTREAM
from tests.unit.ocr.text_images import Line, draw, read_text

pytestmark = pytest.mark.integration

PHI_LINE = Line("QUIXBERG ZANTHEA", 20, 20, 30)


@dataclass
class Running:
    process: subprocess.Popen[str]
    grpc_port: int
    health_port: int
    log: Path

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2).is_success
        except httpx.HTTPError:
            return False


def start(tmp_path: Path, **env: str) -> Running:
    grpc_port, health_port = free_loopback_port(), free_loopback_port()
    log = tmp_path / "ocr.log"
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("RADSTREAM_")
    }
    environment |= {
        "RADSTREAM_OCR_PORT": str(grpc_port),
        "RADSTREAM_OBS_HEALTH_PORT": str(health_port),
        "RADSTREAM_OCR_ENGINE_THREADS": "1",
        **env,
    }
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*RADSTREAM, "run", "ocr"],
            env=environment,
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return Running(process, grpc_port, health_port, log)


@pytest.fixture
def ocr_process(tmp_path: Path) -> Iterator[Running]:
    running = start(tmp_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def test_radstream_run_ocr_serves_reads_text_and_stops_on_sigterm(ocr_process: Running) -> None:
    deadline = time.monotonic() + 120
    while not ocr_process.ready():
        assert ocr_process.process.poll() is None, ocr_process.log.read_text()
        assert time.monotonic() < deadline, "ocr never became ready: " + ocr_process.log.read_text()
        time.sleep(0.2)
    target = f"127.0.0.1:{ocr_process.grpc_port}"
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="radstream.v1.TextRecognition"), timeout=10
        )
    image = draw([PHI_LINE, Line("MRN 00412377", 20, 70, 24)], width=420, height=110)
    remote = GrpcOcrEngine(OcrClient(target, timeout_s=60))

    regions = remote.recognize(image.pixels)
    info = remote.info
    remote.client.close()
    metrics = httpx.get(f"http://127.0.0.1:{ocr_process.health_port}/metrics", timeout=5).text
    ocr_process.process.send_signal(signal.SIGTERM)
    code = ocr_process.process.wait(timeout=60)
    log = ocr_process.log.read_text()

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "QUIXBERG" in read_text(regions)
    assert "00412377" in read_text(regions)
    assert info.name == "rapidocr"
    assert (
        'radstream_ocr_requests_total{call="recognize",code="OK",engine="rapidocr"} 1.0' in metrics
    )
    assert code == 0, log
    assert "ocr service stopping" in log
    assert "QUIXBERG" not in log.upper() and "00412377" not in log, "read text never logged"


def test_an_engine_that_cannot_load_stops_the_process_saying_why(tmp_path: Path) -> None:
    running = start(tmp_path, RADSTREAM_OCR_ENGINE="nosuch")
    try:
        code = running.process.wait(timeout=120)
    finally:
        if running.process.poll() is None:
            running.process.kill()
    output = running.log.read_text()

    assert code == 1
    assert "unknown OCR engine 'nosuch'" in output
