"""OcrClient and GrpcOcrEngine against a real loopback server with a scripted engine.

The client is synchronous, so each call runs in a worker thread while the server serves on the
test's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest

from radstream.common.errors import PoisonEventError, TransientError
from radstream.contracts.v1 import ocr_pb2
from radstream.deid.config import REMOTE_OCR_ENGINE, DeidSettings
from radstream.ocr.client import (
    GrpcOcrEngine,
    OcrClient,
    OcrEngineFailedError,
    OcrRefusedError,
    OcrUnavailableError,
    raw_image,
)
from radstream.ocr.config import OcrClientSettings
from radstream.ocr.engine import OcrEngine, sorted_regions
from radstream.ocr.images import ImageLimits
from tests.unit.ocr.scripted import ScriptedEngine, raw_request, region, serving, until

REGIONS = [region(30, 2, 20, 8, "B", 0.8, 0.7), region(2, 2, 20, 8, "A", 0.9, 0.6)]


class Sleeps:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        time.sleep(seconds)


async def test_the_client_retries_unavailable_until_the_engine_has_loaded() -> None:
    sleeps = Sleeps()
    async with serving(None) as ocr:
        client = OcrClient(ocr.server.address, attempts=10, backoff_s=0.05, sleep=sleeps)
        call = asyncio.create_task(asyncio.to_thread(client.detect, raw_request()))
        await until(lambda: len(sleeps.slept) >= 2)
        await ocr.server.service.attach(ScriptedEngine(REGIONS))
        response = await call
        client.close()

    assert [r.detection_score for r in response.regions] == [pytest.approx(0.6), pytest.approx(0.7)]
    assert sleeps.slept[:2] == [0.05, 0.1], "exponential backoff"


async def test_the_client_gives_up_after_its_attempts_with_a_transient_error() -> None:
    sleeps = Sleeps()
    async with serving(None) as ocr:
        client = OcrClient(ocr.server.address, attempts=3, backoff_s=0.01, sleep=sleeps)
        with pytest.raises(OcrUnavailableError) as failed:
            await asyncio.to_thread(client.recognize, raw_request())
        client.close()

    assert isinstance(failed.value, TransientError)
    assert failed.value.status == "UNAVAILABLE"
    assert failed.value.code == "ERROR_CODE_OCR_ENGINE_NOT_READY"
    assert len(sleeps.slept) == 2


async def test_a_refused_image_is_raised_at_once_as_poison_with_its_code() -> None:
    sleeps = Sleeps()
    bad = ocr_pb2.RecognizeRequest(encoded=b"not an image")
    async with serving(ScriptedEngine()) as ocr:
        client = OcrClient(ocr.server.address, attempts=5, sleep=sleeps)
        with pytest.raises(OcrRefusedError) as refused:
            await asyncio.to_thread(client.recognize, bad)
        client.close()

    assert isinstance(refused.value, PoisonEventError)
    assert refused.value.code == "ERROR_CODE_OCR_IMAGE_UNDECODABLE"
    assert sleeps.slept == [], "never retried"


async def test_an_engine_failure_is_neither_poison_nor_transient() -> None:
    async with serving(ScriptedEngine(failure=RuntimeError("boom"))) as ocr:
        client = OcrClient(ocr.server.address, attempts=5)
        with pytest.raises(OcrEngineFailedError) as failed:
            await asyncio.to_thread(client.recognize, raw_request())
        client.close()

    assert not isinstance(failed.value, TransientError | PoisonEventError)
    assert failed.value.code == "ERROR_CODE_OCR_ENGINE_FAILED"


async def test_a_call_over_its_deadline_is_a_transient_error() -> None:
    gate = threading.Event()
    async with serving(ScriptedEngine(gate=gate)) as ocr:
        client = OcrClient(ocr.server.address, timeout_s=0.2)
        with pytest.raises(OcrUnavailableError) as failed:
            await asyncio.to_thread(client.detect, raw_request())
        gate.set()
        client.close()

    assert failed.value.status == "DEADLINE_EXCEEDED"


async def test_a_request_larger_than_the_client_sends_is_refused_before_sending() -> None:
    client = OcrClient("127.0.0.1:1", max_message_bytes=1024)

    with pytest.raises(OcrRefusedError) as refused:
        client.recognize(raw_request(100, 100))
    client.close()

    assert refused.value.code == "ERROR_CODE_OCR_IMAGE_TOO_LARGE"


def test_nothing_listening_is_unavailable_after_the_retries() -> None:
    sleeps = Sleeps()
    with (
        OcrClient("127.0.0.1:1", attempts=2, backoff_s=0.01, sleep=sleeps) as client,
        pytest.raises(OcrUnavailableError),
    ):
        client.describe()
    assert len(sleeps.slept) == 1


async def test_deid_builds_the_remote_engine_from_the_environment(monkeypatch) -> None:
    async with serving(ScriptedEngine(REGIONS)) as ocr:
        monkeypatch.setenv("RADSTREAM_OCR_CLIENT_TARGET", ocr.server.address)
        monkeypatch.setenv("RADSTREAM_OCR_CLIENT_TIMEOUT_S", "5")
        remote = DeidSettings(ocr_engine=REMOTE_OCR_ENGINE).ocr()
        assert isinstance(remote, GrpcOcrEngine)
        found = await asyncio.to_thread(remote.detect, np.zeros((20, 60), np.uint8))
        remote.client.close()

    assert (remote.client.target, remote.client.timeout_s) == (ocr.server.address, 5)
    assert [r.box.x for r in found] == [2, 30]


def test_client_settings_read_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RADSTREAM_OCR_CLIENT_TARGET", "ocr.example:50051")
    monkeypatch.setenv("RADSTREAM_OCR_CLIENT_TIMEOUT_S", "4.5")

    settings = OcrClientSettings()
    client = OcrClient.from_settings(settings)
    client.close()

    assert (client.target, client.timeout_s, settings.tls) == ("ocr.example:50051", 4.5, False)


# -- the remote engine ------------------------------------------------------------------------


async def test_the_remote_engine_answers_as_the_engine_in_process_does() -> None:
    local = ScriptedEngine(REGIONS)
    image = np.arange(60 * 90, dtype=np.uint32).reshape(60, 90).astype(np.uint8)
    async with serving(local) as ocr:
        remote = GrpcOcrEngine(OcrClient(ocr.server.address), languages=["en"])
        info = await asyncio.to_thread(lambda: remote.info)
        read = await asyncio.to_thread(remote.recognize, image)
        detected = await asyncio.to_thread(remote.detect, image, max_side=32)
        remote.client.close()

    assert isinstance(remote, OcrEngine)
    assert remote.concurrent
    assert (info.name, info.version, info.models) == ("scripted", "1.2", "det-v1+rec-v1")
    assert read == sorted_regions(local.recognize(image))  # an engine's answer is sorted
    assert detected == sorted_regions(local.detect(image))
    assert [call[2] for call in local.calls[:2]] == [0, 32], "0: full resolution, as in-process"


async def test_the_remote_engine_sends_the_pixels_it_is_given() -> None:
    local = ScriptedEngine()
    rgb = np.random.default_rng(7).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    seen: list[np.ndarray] = []
    original = local.recognize

    def keep(image, *, max_side=0):
        seen.append(image.copy())
        return original(image, max_side=max_side)

    local.recognize = keep  # type: ignore[method-assign]
    async with serving(local) as ocr:
        remote = GrpcOcrEngine(OcrClient(ocr.server.address))
        await asyncio.to_thread(remote.recognize, rgb)
        remote.client.close()

    assert np.array_equal(seen[0], rgb)


async def test_many_images_go_in_batches_of_the_servers_limit() -> None:
    local = ScriptedEngine(REGIONS)
    images = [np.full((10 + i, 60), i, np.uint8) for i in range(5)]
    async with serving(local, max_batch_images=2) as ocr:
        remote = GrpcOcrEngine(OcrClient(ocr.server.address))
        detected = await asyncio.to_thread(remote.detect_many, images)
        read = await asyncio.to_thread(remote.recognize_many, images[:1])
        batches = ocr.sample(
            "radstream_ocr_requests_total", call="detect_batch", engine="scripted", code="OK"
        )
        remote.client.close()

    assert len(detected) == 5 and len(read) == 1
    assert [shape for _, shape, _ in local.calls[:5]] == [(10 + i, 60) for i in range(5)]
    assert batches == 3
    assert [r.text for r in read[0]] == ["A", "B"]


async def test_the_remote_engine_checks_its_languages_when_first_asked_who_it_is() -> None:
    async with serving(ScriptedEngine(), languages=("en",)) as ocr:
        remote = GrpcOcrEngine(OcrClient(ocr.server.address), languages=["de"])
        with pytest.raises(OcrRefusedError) as refused:
            await asyncio.to_thread(lambda: remote.info)
        remote.client.close()

    assert refused.value.code == "ERROR_CODE_OCR_UNSUPPORTED_LANGUAGE"


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4), np.uint16), np.zeros((4, 4, 4), np.uint8), np.zeros((4,), np.uint8)],
    ids=["16-bit", "rgba", "1-d"],
)
def test_only_engine_images_go_on_the_wire(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 of shape"):
        raw_image(image)


async def test_an_image_over_the_servers_limit_is_refused_by_the_server() -> None:
    async with serving(ScriptedEngine(), limits=ImageLimits(max_pixels=100, max_side=100)) as ocr:
        remote = GrpcOcrEngine(OcrClient(ocr.server.address))
        with pytest.raises(OcrRefusedError) as refused:
            await asyncio.to_thread(remote.detect, np.zeros((20, 20), np.uint8))
        remote.client.close()

    assert refused.value.code == "ERROR_CODE_OCR_IMAGE_TOO_LARGE"
    assert refused.value.status == grpc.StatusCode.INVALID_ARGUMENT.name
