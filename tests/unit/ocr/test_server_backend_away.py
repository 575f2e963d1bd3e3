"""An ocr server whose engine's model server is away: retryable answers, and not ready.

The engine is the real kserve engine (tritonclient) pointed at a loopback port nobody listens
on: Triton away, as a deployment sees it when the model server restarts.
"""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry

from radstream.common.embedded_broker import free_loopback_port
from radstream.common.errors import TransientError
from radstream.common.settings import ObservabilitySettings
from radstream.ocr.app import create_app
from radstream.ocr.client import OcrClient, OcrUnavailableError
from radstream.ocr.config import OcrSettings
from radstream.ocr.engine import BackendProbe
from radstream.ocr.engines.kserve import KServeEngine, KServeUnavailableError
from tests.unit.ocr.scripted import ScriptedEngine, raw_request, serving, status_of, until


def triton_away() -> KServeEngine:
    return KServeEngine(f"grpc://127.0.0.1:{free_loopback_port()}", timeout_s=5)


async def test_the_engines_backend_away_is_unavailable_and_the_client_retries_it() -> None:
    async with serving(triton_away()) as ocr:  # type: ignore[arg-type]
        code, details = await status_of(ocr.stub.Recognize(raw_request(), timeout=10))
        client = OcrClient(ocr.server.address, attempts=3, backoff_s=0.01)
        with pytest.raises(OcrUnavailableError) as failed:
            await asyncio.to_thread(client.detect, raw_request())
        client.close()
        answered = ocr.sample(
            "radstream_ocr_requests_total", call="recognize", engine="kserve", code="UNAVAILABLE"
        )

    assert code == grpc.StatusCode.UNAVAILABLE, details
    assert details.startswith("ERROR_CODE_DEPENDENCY_UNAVAILABLE: ")
    assert "KServeUnavailableError" in details
    assert isinstance(failed.value, TransientError)
    assert failed.value.code == "ERROR_CODE_DEPENDENCY_UNAVAILABLE"
    assert answered == 1


def test_the_kserve_engine_offers_a_backend_probe_that_fails_while_the_server_is_away() -> None:
    engine = triton_away()
    assert isinstance(engine, BackendProbe)
    assert not isinstance(ScriptedEngine(), BackendProbe)
    with pytest.raises(KServeUnavailableError, match="unavailable"):
        engine.check_backend()


async def test_the_app_is_not_ready_while_the_model_server_is_away() -> None:
    engine = triton_away()
    settings = OcrSettings(
        port=0,
        engine="kserve",
        kserve_url=engine.url,
        observability=ObservabilitySettings(health_port=0, service_name="ocr"),
    )
    app = create_app(settings, registry=CollectorRegistry(), engine_factory=lambda: engine)
    running = asyncio.create_task(app.run())
    try:
        await until(lambda: app.server.service.engine is engine and app.health.port != 0)
        async with httpx.AsyncClient(base_url=app.health.url) as http:
            answer = await http.get("/readyz")
    finally:
        app.stop()
        await asyncio.wait_for(running, timeout=30)

    assert answer.status_code == 503
    check = answer.json()["checks"]["ocr-engine"]
    assert "is unavailable" in check["message"], check
