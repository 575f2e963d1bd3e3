"""A scripted OCR engine and a loopback ocr server around it, for the server's unit tests.

The engine returns the regions a test gives it (and can be held at a gate), so a test can say
exactly what the server must make of them. The contract tests (tests/integration/ocr) run the
same calls on the real engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2_grpc
from prometheus_client import CollectorRegistry

from radstream.contracts.v1 import ocr_pb2, ocr_pb2_grpc
from radstream.ocr.engine import Box, EngineInfo, Image, TextRegion
from radstream.ocr.metrics import OcrMetrics
from radstream.ocr.server import OcrServer, ServiceOptions

PHI = "QUIXBERG ZANTHEA"


@dataclass
class ScriptedEngine:
    """Answers with ``regions`` (text dropped by detect); records each call; may wait at a gate."""

    regions: Sequence[TextRegion] = ()
    gate: threading.Event | None = None
    failure: Exception | None = None
    concurrent: bool = True
    calls: list[tuple[str, tuple[int, ...], int]] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(name="scripted", version="1.2", models="det-v1+rec-v1")

    def _answer(self, kind: str, image: Image, max_side: int) -> list[TextRegion]:
        self.calls.append((kind, image.shape, max_side))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.failure is not None:
            raise self.failure
        if kind == "detect":
            return [
                TextRegion(box=r.box, detection_score=r.detection_score, polygon=r.polygon)
                for r in self.regions
            ]
        return list(self.regions)

    def detect(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        return self._answer("detect", image, max_side)

    def recognize(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        return self._answer("recognize", image, max_side)


@dataclass
class Serving:
    server: OcrServer
    stub: ocr_pb2_grpc.TextRecognitionStub
    health: health_pb2_grpc.HealthStub
    registry: CollectorRegistry

    def sample(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def serving(
    engine: ScriptedEngine | None, *, phi_store=None, **options: object
) -> AsyncIterator[Serving]:
    registry = CollectorRegistry()
    server = OcrServer(
        ServiceOptions(**options),  # type: ignore[arg-type]
        metrics=OcrMetrics(registry),
        phi_store=phi_store,
    )
    await server.start()
    if engine is not None:
        await server.service.attach(engine)
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield Serving(
            server,
            ocr_pb2_grpc.TextRecognitionStub(channel),
            health_pb2_grpc.HealthStub(channel),
            registry,
        )
    finally:
        await channel.close()
        await server.stop(1)


def raw_request(
    height: int = 50, width: int = 80, *, max_side: int = 0, min_confidence: float = 0.0
) -> ocr_pb2.RecognizeRequest:
    return ocr_pb2.RecognizeRequest(
        raw=ocr_pb2.RawImage(
            pixels=bytes(height * width), width=width, height=height, channels=1, bits=8
        ),
        options=ocr_pb2.RecognizeOptions(max_side=max_side, min_confidence=min_confidence),
    )


def region(x: int, y: int, w: int, h: int, text: str, confidence: float, score: float = 0.9):
    corners = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
    return TextRegion(Box(x, y, w, h), text, confidence, score, tuple(map(tuple, corners)))


async def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    return failed.value.code(), failed.value.details() or ""


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)
