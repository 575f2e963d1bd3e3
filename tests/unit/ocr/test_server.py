"""The TextRecognition servicer over a loopback gRPC channel, with a scripted engine.

The engine returns the regions a test gives it (tests/unit/ocr/scripted.py), so each test can
say what the server must make of them: order, clipping, thresholds, statuses, slots,
deadlines. The contract tests (tests/integration/ocr) run the same calls on the real engines.
"""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from PIL import Image as PilImage

from radstream.common.blobstore import FilesystemBlobStore
from radstream.contracts.v1 import ocr_pb2
from radstream.ocr.images import ImageLimits
from radstream.ocr.server import SERVICE_NAME
from tests.unit.ocr.scripted import (
    PHI,
    ScriptedEngine,
    raw_request,
    region,
    serving,
    status_of,
    until,
)

# -- answers ----------------------------------------------------------------------------------


async def test_recognize_answers_regions_in_reading_order_with_the_engine_named() -> None:
    engine = ScriptedEngine(
        [
            region(40, 30, 30, 10, "right", 0.8),
            region(60, 2, 10, 10, "second", 0.7),
            region(2, 31, 30, 10, "left", 0.9),
            region(5, 3, 30, 10, "first", 0.6),
        ]
    )
    async with serving(engine) as ocr:
        response = await ocr.stub.Recognize(raw_request(), timeout=10)

    assert [r.text for r in response.regions] == ["first", "second", "left", "right"]
    assert response.regions[0].confidence == pytest.approx(0.6)
    assert response.regions[0].detection_score == pytest.approx(0.9)
    assert [(p.x, p.y) for p in response.regions[0].polygon] == [(5, 3), (35, 3), (35, 13), (5, 13)]
    assert (response.engine.name, response.engine.version) == ("scripted", "1.2")
    assert response.models == "det-v1+rec-v1"
    assert (response.image_width, response.image_height) == (80, 50)
    assert response.elapsed_ms >= 0
    assert engine.calls == [("recognize", (50, 80), 0)]


async def test_boxes_are_clipped_to_the_image_and_boxes_outside_it_dropped() -> None:
    engine = ScriptedEngine([region(70, 45, 30, 20, "edge", 0.9), region(90, 60, 5, 5, "out", 0.9)])
    async with serving(engine) as ocr:
        response = await ocr.stub.Recognize(raw_request(), timeout=10)

    [kept] = response.regions
    assert (kept.box.x, kept.box.y, kept.box.width, kept.box.height) == (70, 45, 10, 5)


async def test_detect_reads_nothing_and_its_threshold_is_the_detection_score() -> None:
    engine = ScriptedEngine(
        [region(1, 1, 20, 8, PHI, 0.99, score=0.2), region(1, 20, 20, 8, PHI, 0.1, score=0.8)]
    )
    async with serving(engine) as ocr:
        detected = await ocr.stub.Detect(raw_request(min_confidence=0.5), timeout=10)
        read = await ocr.stub.Recognize(raw_request(min_confidence=0.5), timeout=10)

    assert [(r.box.y, r.text, r.detection_score) for r in detected.regions] == [(20, "", 0.8)]
    assert [(r.box.y, r.confidence) for r in read.regions] == [(1, 0.99)]
    assert [call[0] for call in engine.calls] == ["detect", "recognize"]


@pytest.mark.parametrize(("requested", "engine_gets"), [(0, 640), (-1, 0), (300, 300)])
async def test_max_side_zero_is_the_default_and_negative_the_full_resolution(
    requested: int, engine_gets: int
) -> None:
    engine = ScriptedEngine()
    async with serving(engine, default_max_side=640) as ocr:
        await ocr.stub.Detect(raw_request(max_side=requested), timeout=10)

    assert engine.calls[0][2] == engine_gets


async def test_describe_names_the_engine_and_the_limits() -> None:
    options = {
        "limits": ImageLimits(max_pixels=123_456, max_side=789, max_encoded_bytes=2048),
        "max_batch_images": 5,
        "default_max_side": 640,
        "languages": ("en", "de"),
        "max_message_bytes": 4096,
    }
    async with serving(ScriptedEngine(), **options) as ocr:
        described = await ocr.stub.DescribeEngine(
            ocr_pb2.DescribeEngineRequest(languages=["de"]), timeout=10
        )
        refused = await status_of(
            ocr.stub.DescribeEngine(ocr_pb2.DescribeEngineRequest(languages=["fr"]), timeout=10)
        )

    assert described.engine.name == "scripted"
    assert described.models == "det-v1+rec-v1"
    assert list(described.languages) == ["en", "de"]
    assert (described.max_image_pixels, described.max_image_side) == (123_456, 789)
    assert (described.max_message_bytes, described.max_batch_images) == (4096, 5)
    assert described.default_max_side == 640
    assert refused[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert refused[1].startswith("ERROR_CODE_OCR_UNSUPPORTED_LANGUAGE:")


# -- refusals ---------------------------------------------------------------------------------


async def test_an_undecodable_image_is_invalid_argument_and_the_engine_never_runs() -> None:
    engine = ScriptedEngine()
    request = ocr_pb2.RecognizeRequest(encoded=b"\x89PNG\r\n\x1a\n" + PHI.encode() * 4)
    async with serving(engine) as ocr:
        code, details = await status_of(ocr.stub.Recognize(request, timeout=10))
        counted = ocr.sample(
            "radstream_ocr_requests_total",
            call="recognize",
            engine="scripted",
            code="INVALID_ARGUMENT",
        )

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("ERROR_CODE_OCR_IMAGE_UNDECODABLE:")
    assert "QUIXBERG" not in details
    assert engine.calls == []
    assert counted == 1


async def test_a_language_the_server_does_not_read_is_refused() -> None:
    request = raw_request()
    request.options.languages.extend(["en", "xx"])
    async with serving(ScriptedEngine(), languages=("en",)) as ocr:
        code, details = await status_of(ocr.stub.Recognize(request, timeout=10))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("ERROR_CODE_OCR_UNSUPPORTED_LANGUAGE:")


async def test_an_engine_failure_is_internal_without_its_message_and_the_server_goes_on() -> None:
    engine = ScriptedEngine(failure=ValueError(f"could not read {PHI}"))
    async with serving(engine) as ocr:
        code, details = await status_of(ocr.stub.Recognize(raw_request(), timeout=10))
        engine.failure = None
        again = await ocr.stub.Recognize(raw_request(), timeout=10)

    assert code == grpc.StatusCode.INTERNAL
    assert details == "ERROR_CODE_OCR_ENGINE_FAILED: the engine failed on the image (ValueError)"
    assert again.engine.name == "scripted"


async def test_a_claim_check_needs_a_store_the_server_reads(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "phi", "phi")
    buffer = io.BytesIO()
    PilImage.fromarray(np.zeros((12, 34), np.uint8)).save(buffer, format="PNG")
    ref = (await store.put(buffer.getvalue(), media_type="image/png")).to_proto()
    request = ocr_pb2.RecognizeRequest(ref=ref)
    engine = ScriptedEngine()

    async with serving(engine, phi_store=store) as ocr:
        read = await ocr.stub.Recognize(request, timeout=10)
    async with serving(engine) as ocr:
        code, details = await status_of(ocr.stub.Recognize(request, timeout=10))

    assert (read.image_width, read.image_height) == (34, 12)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("ERROR_CODE_INVALID_EVENT: this server reads no blob store")


# -- readiness and health ---------------------------------------------------------------------


async def test_until_the_engine_is_attached_calls_are_unavailable_and_health_not_serving() -> None:
    async with serving(None) as ocr:
        code, details = await status_of(ocr.stub.Recognize(raw_request(), timeout=10))
        before = await ocr.health.Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10
        )
        await ocr.server.service.attach(ScriptedEngine())
        after = await ocr.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        served = await ocr.stub.Recognize(raw_request(), timeout=10)

    assert code == grpc.StatusCode.UNAVAILABLE
    assert details.startswith("ERROR_CODE_OCR_ENGINE_NOT_READY:")
    assert before.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert after.status == health_pb2.HealthCheckResponse.SERVING
    assert served.engine.name == "scripted"


async def test_a_stop_lets_the_call_in_flight_finish_and_says_not_serving() -> None:
    gate = threading.Event()
    engine = ScriptedEngine([region(1, 1, 5, 5, "x", 0.9)], gate=gate)
    async with serving(engine) as ocr:
        call = asyncio.ensure_future(ocr.stub.Recognize(raw_request(), timeout=10))
        await until(engine.started.is_set)
        stopping = asyncio.create_task(ocr.server.stop(5))
        await until(lambda: ocr.server.health._gracefully_shutting_down)
        status = await ocr.server.health.Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), None
        )
        gate.set()
        response = await call
        await stopping

    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert [r.text for r in response.regions] == ["x"]


# -- slots, queue, deadlines ------------------------------------------------------------------


async def test_a_full_queue_is_resource_exhausted_and_the_queued_calls_are_served() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    async with serving(engine, max_concurrency=1, queue_limit=1) as ocr:
        running = asyncio.ensure_future(ocr.stub.Detect(raw_request(), timeout=10))
        await until(engine.started.is_set)
        queued = asyncio.ensure_future(ocr.stub.Detect(raw_request(), timeout=10))
        admission = ocr.server.service.admission
        assert admission is not None
        await until(lambda: admission.waiting == 1)

        code, details = await status_of(ocr.stub.Detect(raw_request(), timeout=10))
        gate.set()
        await asyncio.gather(running, queued)

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.startswith("ERROR_CODE_OCR_OVERLOADED:")
    assert len(engine.calls) == 2


async def test_a_deadline_passing_in_the_queue_never_reaches_the_engine() -> None:
    gate = threading.Event()
    engine = ScriptedEngine(gate=gate)
    async with serving(engine, max_concurrency=1, queue_limit=4) as ocr:
        running = asyncio.ensure_future(ocr.stub.Detect(raw_request(), timeout=10))
        await until(engine.started.is_set)

        code, _ = await status_of(ocr.stub.Detect(raw_request(), timeout=0.2))
        gate.set()
        await running
        after = await ocr.stub.Detect(raw_request(), timeout=10)
        admission = ocr.server.service.admission

    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(engine.calls) == 2, "the first call and the one after; never the late one"
    assert after.engine.name == "scripted"
    assert admission is not None and admission.waiting == 0


async def test_an_engine_that_is_not_thread_safe_gets_one_slot_whatever_the_setting() -> None:
    engine = ScriptedEngine(concurrent=False)
    async with serving(engine, max_concurrency=4) as ocr:
        admission = ocr.server.service.admission

    assert admission is not None and admission.slots == 1


# -- batches ----------------------------------------------------------------------------------


async def test_a_batch_answers_each_image_in_order_on_one_admission() -> None:
    engine = ScriptedEngine([region(1, 1, 5, 5, "a", 0.9)])
    batch = ocr_pb2.RecognizeBatchRequest(
        requests=[raw_request(10, 20), raw_request(30, 40), raw_request(50, 60)]
    )
    async with serving(engine) as ocr:
        read = await ocr.stub.RecognizeBatch(batch, timeout=10)
        batch.detect_only = True
        detected = await ocr.stub.RecognizeBatch(batch, timeout=10)
        counted = ocr.sample("radstream_ocr_regions_count", call="detect_batch", engine="scripted")

    assert [(r.image_width, r.image_height) for r in read.responses] == [
        (20, 10),
        (40, 30),
        (60, 50),
    ]
    assert [r.regions[0].text for r in read.responses] == ["a", "a", "a"]
    assert [r.regions[0].text for r in detected.responses] == ["", "", ""]
    assert [call[0] for call in engine.calls] == ["recognize"] * 3 + ["detect"] * 3
    assert counted == 3


async def test_a_batch_with_a_bad_image_fails_naming_its_index() -> None:
    batch = ocr_pb2.RecognizeBatchRequest(
        requests=[raw_request(), ocr_pb2.RecognizeRequest(encoded=b"GIF89a" + bytes(20))]
    )
    async with serving(ScriptedEngine()) as ocr:
        code, details = await status_of(ocr.stub.RecognizeBatch(batch, timeout=10))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("ERROR_CODE_OCR_IMAGE_UNDECODABLE: images[1]: ")


async def test_a_batch_beyond_the_limit_is_refused_before_anything_runs() -> None:
    engine = ScriptedEngine()
    batch = ocr_pb2.RecognizeBatchRequest(requests=[raw_request() for _ in range(3)])
    async with serving(engine, max_batch_images=2) as ocr:
        code, details = await status_of(ocr.stub.RecognizeBatch(batch, timeout=10))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 2" in details
    assert engine.calls == []


# -- metrics ----------------------------------------------------------------------------------


async def test_metrics_count_calls_regions_and_confidences_and_nothing_stays_in_flight() -> None:
    engine = ScriptedEngine([region(1, 1, 5, 5, PHI, 0.97), region(1, 20, 5, 5, PHI, 0.42)])
    async with serving(engine) as ocr:
        await ocr.stub.Recognize(raw_request(), timeout=10)
        await ocr.stub.Detect(raw_request(), timeout=10)
        await status_of(ocr.stub.Detect(ocr_pb2.RecognizeRequest(), timeout=10))
        labels = {"engine": "scripted"}
        seen = {
            "ok": ocr.sample("radstream_ocr_requests_total", call="detect", code="OK", **labels),
            "invalid": ocr.sample(
                "radstream_ocr_requests_total", call="detect", code="INVALID_ARGUMENT", **labels
            ),
            "timed": ocr.sample("radstream_ocr_request_seconds_count", call="recognize", **labels),
            "regions": ocr.sample("radstream_ocr_regions_sum", call="recognize", **labels),
            "confidences": ocr.sample("radstream_ocr_confidence_count", **labels),
            "high": ocr.sample("radstream_ocr_confidence_bucket", le="0.5", **labels),
            "inflight": ocr.sample("radstream_ocr_inflight"),
        }
        exposition = "\n".join(
            f"{sample.name} {sample.labels}"
            for metric in ocr.registry.collect()
            for sample in metric.samples
        )

    assert seen == {
        "ok": 1,
        "invalid": 1,
        "timed": 1,
        "regions": 2,
        "confidences": 2,  # read regions only; detect reads none
        "high": 1,
        "inflight": 0,
    }
    assert "QUIXBERG" not in exposition
