"""The TextRecognition contract over a real loopback gRPC channel, with the real engines.

Every call goes through grpc.aio on a TCP port, as deid's calls do: bad images and oversized
requests get the status and ErrorCode the contract names, a deadline too short is answered
DEADLINE_EXCEEDED and the server goes on serving, a full queue RESOURCE_EXHAUSTED, health says
SERVING once the engine has loaded, and each engine (RapidOCR, Tesseract, EasyOCR) reads and
detects known text drawn on generated images -- answering over the wire what it answers in
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image as PilImage
from prometheus_client import CollectorRegistry

from radstream.contracts.v1 import ocr_pb2, ocr_pb2_grpc
from radstream.ocr.app import server_credentials
from radstream.ocr.client import GrpcOcrEngine, OcrClient, OcrUnavailableError
from radstream.ocr.config import OcrClientSettings, OcrSettings
from radstream.ocr.engine import Box, EngineInfo, Image, OcrEngine, TextRegion
from radstream.ocr.engines import load_engine, shared_engine
from radstream.ocr.images import ImageLimits
from radstream.ocr.metrics import OcrMetrics
from radstream.ocr.server import SERVICE_NAME, OcrServer, ServiceOptions
from tests.integration.ingest.dicom_peers import make_pki
from tests.unit.ocr.text_images import DrawnLine, Line, draw, read_text

pytestmark = pytest.mark.integration

LINES = (Line("SMITH JOHN", 20, 16, 28), Line("MRN 00412377", 20, 70, 24))
TOKENS = ("SMITH", "JOHN", "MRN", "00412377")


class CountingEngine:
    """A real engine, passed through, counting the images it was given (thread-safe)."""

    def __init__(self, engine: OcrEngine) -> None:
        self.engine = engine
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def info(self) -> EngineInfo:
        return self.engine.info

    @property
    def concurrent(self) -> bool:
        return self.engine.concurrent

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def detect(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        self._count()
        return self.engine.detect(image, max_side=max_side)

    def recognize(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        self._count()
        return self.engine.recognize(image, max_side=max_side)


@dataclass
class Served:
    server: OcrServer
    stub: ocr_pb2_grpc.TextRecognitionStub
    health: health_pb2_grpc.HealthStub


@contextlib.asynccontextmanager
async def served(
    engine: OcrEngine | None, *, send_limit: int = 64 * 1024 * 1024, **options: object
) -> AsyncIterator[Served]:
    server = OcrServer(ServiceOptions(**options), metrics=OcrMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    await server.start()
    if engine is not None:
        await server.service.attach(engine)
    channel = grpc.aio.insecure_channel(
        server.address, options=[("grpc.max_send_message_length", send_limit)]
    )
    try:
        yield Served(
            server, ocr_pb2_grpc.TextRecognitionStub(channel), health_pb2_grpc.HealthStub(channel)
        )
    finally:
        await channel.close()
        await server.stop(2)


async def refused(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    return failed.value.code(), failed.value.details() or ""


async def until(condition, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PilImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PilImage.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def raw(pixels: np.ndarray) -> ocr_pb2.RawImage:
    return ocr_pb2.RawImage(
        pixels=pixels.tobytes(),
        width=pixels.shape[1],
        height=pixels.shape[0],
        channels=1 if pixels.ndim == 2 else 3,
        bits=8,
    )


def regions_of(response: ocr_pb2.RecognizeResponse) -> list[TextRegion]:
    return [
        TextRegion(
            box=Box(r.box.x, r.box.y, r.box.width, r.box.height),
            text=r.text,
            confidence=r.confidence,
            detection_score=r.detection_score,
        )
        for r in response.regions
    ]


def unshaped(regions: Sequence[TextRegion]) -> list[TextRegion]:
    """The regions without their polygons (float32 on the wire, float64 in process)."""
    return [TextRegion(r.box, r.text, r.confidence, r.detection_score) for r in regions]


def assert_around(regions: Sequence[TextRegion], drawn: Sequence[DrawnLine]) -> None:
    """Every drawn line is covered by the boxes, and every box lies on a drawn line."""
    boxes = [r.box for r in regions]
    for line in drawn:
        assert line.box.covered_by(boxes) >= 0.9, f"{line.text!r} not covered by {boxes}"
    for box in boxes:
        assert max(box.intersection(line.box) for line in drawn) >= 0.5 * box.area, box


@pytest.fixture(scope="module")
def rapidocr() -> OcrEngine:
    return shared_engine("rapidocr")


# -- bad images and oversized requests --------------------------------------------------------


async def test_malformed_and_truncated_images_are_invalid_argument(rapidocr: OcrEngine) -> None:
    image = draw(LINES, width=320, height=110).pixels
    broken_png = bytearray(png(image))
    idat = broken_png.index(b"IDAT") + 4
    broken_png[idat : idat + 16] = b"\xff" * 16
    truncated_jpeg = jpeg(image)[:900]
    engine = CountingEngine(rapidocr)

    async with served(engine) as ocr:
        answers = [
            await refused(ocr.stub.Recognize(ocr_pb2.RecognizeRequest(encoded=data), timeout=30))
            for data in (bytes(broken_png), truncated_jpeg, b"GIF89a" + bytes(64))
        ]

    for code, details in answers:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("ERROR_CODE_OCR_IMAGE_UNDECODABLE: ")
    assert engine.calls == 0


async def test_raw_pixels_of_the_wrong_size_are_invalid_argument(rapidocr: OcrEngine) -> None:
    message = raw(draw(LINES, width=320, height=110).pixels)
    message.pixels = message.pixels[:-7]

    async with served(rapidocr) as ocr:
        code, details = await refused(
            ocr.stub.Detect(ocr_pb2.RecognizeRequest(raw=message), timeout=30)
        )

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("ERROR_CODE_OCR_IMAGE_UNDECODABLE: RawImage.pixels holds 35193")


async def test_an_image_over_the_pixel_limit_is_refused_by_its_header(rapidocr: OcrEngine) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(64)))
        + chunk(b"IEND", b"")
    )
    limits = ImageLimits(max_pixels=4_000_000, max_side=16_384)
    big_raw = raw(np.zeros((2100, 2000), np.uint8))

    async with served(rapidocr, limits=limits) as ocr:
        answers = [
            await refused(ocr.stub.Recognize(request, timeout=30))
            for request in (
                ocr_pb2.RecognizeRequest(encoded=bomb),
                ocr_pb2.RecognizeRequest(raw=big_raw),
            )
        ]

    for code, details in answers:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("ERROR_CODE_OCR_IMAGE_TOO_LARGE: ")
    assert "30000 x 30000" in answers[0][1]


async def test_a_message_over_the_size_limit_is_resource_exhausted_and_serving_goes_on(
    rapidocr: OcrEngine,
) -> None:
    small = draw(LINES, width=320, height=110).pixels
    too_big = ocr_pb2.RecognizeRequest(raw=raw(np.zeros((1200, 1000), np.uint8)))

    async with served(rapidocr, max_message_bytes=1024 * 1024) as ocr:
        code, _ = await refused(ocr.stub.Recognize(too_big, timeout=30))
        after = await ocr.stub.Detect(ocr_pb2.RecognizeRequest(raw=raw(small)), timeout=60)

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert after.regions, "the next call is served"


# -- deadlines, slots, health -----------------------------------------------------------------


async def test_a_deadline_too_short_is_deadline_exceeded_and_the_next_call_is_served(
    rapidocr: OcrEngine,
) -> None:
    engine = CountingEngine(rapidocr)
    busy = draw(LINES * 6, width=1024, height=768).pixels
    small = ocr_pb2.RecognizeRequest(raw=raw(draw(LINES, width=320, height=110).pixels))

    async with served(engine, max_concurrency=1, queue_limit=4) as ocr:
        running = asyncio.ensure_future(
            ocr.stub.Recognize(ocr_pb2.RecognizeRequest(raw=raw(busy)), timeout=120)
        )
        await until(lambda: engine.calls == 1)
        code, _ = await refused(ocr.stub.Recognize(small, timeout=0.05))
        await running
        calls_after_the_deadline = engine.calls
        served_next = await ocr.stub.Recognize(small, timeout=60)

    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert calls_after_the_deadline == 1, "the late call never reached the engine"
    assert "SMITH" in read_text(regions_of(served_next))


async def test_the_concurrency_limit_refuses_what_the_queue_cannot_hold(
    rapidocr: OcrEngine,
) -> None:
    engine = CountingEngine(rapidocr)
    busy = ocr_pb2.RecognizeRequest(raw=raw(draw(LINES * 6, width=1024, height=768).pixels))

    async with served(engine, max_concurrency=1, queue_limit=1) as ocr:
        first = asyncio.ensure_future(ocr.stub.Recognize(busy, timeout=120))
        await until(lambda: engine.calls == 1)
        second = asyncio.ensure_future(ocr.stub.Recognize(busy, timeout=120))
        admission = ocr.server.service.admission
        assert admission is not None
        await until(lambda: admission.waiting == 1)
        code, details = await refused(ocr.stub.Recognize(busy, timeout=120))
        answers = await asyncio.gather(first, second)

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.startswith("ERROR_CODE_OCR_OVERLOADED: ")
    assert all("SMITH" in read_text(regions_of(answer)) for answer in answers)
    assert engine.calls == 2


async def test_health_says_serving_once_the_engine_has_loaded() -> None:
    async with served(None) as ocr:
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        before = await ocr.health.Check(request, timeout=30)
        code, details = await refused(
            ocr.stub.Detect(ocr_pb2.RecognizeRequest(raw=raw(np.zeros((8, 8), np.uint8))))
        )
        await ocr.server.service.load(lambda: load_engine("rapidocr"))
        after = await ocr.health.Check(request, timeout=30)
        overall = await ocr.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)

    assert before.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details.startswith("ERROR_CODE_OCR_ENGINE_NOT_READY: ")
    assert after.status == overall.status == health_pb2.HealthCheckResponse.SERVING


# -- each engine, over the wire ---------------------------------------------------------------

ENGINES = [
    pytest.param("rapidocr", id="rapidocr"),
    pytest.param("tesseract", id="tesseract"),
    pytest.param("easyocr", id="easyocr", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name", ENGINES)
async def test_each_engine_recognizes_and_detects_known_text(name: str) -> None:
    engine = shared_engine(name)
    image = draw(LINES, width=360, height=110)
    rgb = draw(
        LINES, width=360, height=110, background=(230, 230, 215), foreground=(20, 20, 90), rgb=True
    )

    async with served(engine) as ocr:
        read = await ocr.stub.Recognize(
            ocr_pb2.RecognizeRequest(encoded=png(image.pixels)), timeout=300
        )
        read_rgb = await ocr.stub.Recognize(
            ocr_pb2.RecognizeRequest(raw=raw(rgb.pixels)), timeout=300
        )
        detected = await ocr.stub.Detect(
            ocr_pb2.RecognizeRequest(raw=raw(image.pixels)), timeout=300
        )

    regions = regions_of(read)
    for token in TOKENS:
        assert token in read_text(regions), f"{name} did not read {token}"
        assert token in read_text(regions_of(read_rgb)), f"{name} did not read {token} (RGB)"
    assert_around(regions, image.lines)
    assert regions == unshaped(engine.recognize(image.pixels)), "as the engine reads in process"
    assert read.engine.name == name and read.engine.version
    assert (read.image_width, read.image_height) == (360, 110)
    found = regions_of(detected)
    assert found and all(r.text == "" and 0 < r.detection_score <= 1 for r in found)
    assert_around(found, image.lines)


async def test_a_batch_of_frames_is_read_frame_by_frame(rapidocr: OcrEngine) -> None:
    frames = [draw(LINES, width=360, height=110).pixels, np.zeros((110, 360), np.uint8)]
    batch = ocr_pb2.RecognizeBatchRequest(
        requests=[ocr_pb2.RecognizeRequest(raw=raw(frame)) for frame in frames], detect_only=True
    )

    async with served(rapidocr) as ocr:
        answer = await ocr.stub.RecognizeBatch(batch, timeout=120)

    with_text, blank = answer.responses
    assert len(with_text.regions) >= 2
    assert list(blank.regions) == []


# -- TLS, and the remote engine as deid uses it -----------------------------------------------


async def test_over_tls_the_remote_engine_reads_and_a_caller_without_a_certificate_is_refused(
    rapidocr: OcrEngine, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    settings = OcrSettings(
        tls_certfile=pki.server_cert, tls_keyfile=pki.server_key, tls_client_ca_file=pki.ca
    )
    server = OcrServer(
        ServiceOptions(),
        metrics=OcrMetrics(CollectorRegistry()),
        credentials=server_credentials(settings),
    )
    await server.start()
    await server.service.attach(rapidocr)
    image = draw(LINES, width=360, height=110).pixels
    with_certificate = OcrClientSettings(
        target=server.address,
        tls_ca_file=pki.ca,
        tls_certfile=pki.client_cert,
        tls_keyfile=pki.client_key,
        attempts=1,
    )
    try:
        remote = GrpcOcrEngine.from_settings(with_certificate, languages=["en"])
        regions = await asyncio.to_thread(remote.recognize, image)
        remote.client.close()
        anonymous = OcrClient.from_settings(
            OcrClientSettings(target=server.address, tls_ca_file=pki.ca, attempts=1)
        )
        with pytest.raises(OcrUnavailableError):
            await asyncio.to_thread(anonymous.describe)
        anonymous.close()
        plaintext = OcrClient(server.address, attempts=1)
        with pytest.raises(OcrUnavailableError):
            await asyncio.to_thread(plaintext.describe)
        plaintext.close()
    finally:
        await server.stop(2)

    assert "SMITH" in read_text(regions)
    assert unshaped(regions) == unshaped(rapidocr.recognize(image))
