"""The ocr service's settings, its registry entry and its app's lifecycle (probes, load, stop)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from radstream.common.errors import MisconfiguredError
from radstream.common.service import service_named
from radstream.common.settings import ObservabilitySettings
from radstream.ocr.app import create_app, engine_options, server_credentials, service_options
from radstream.ocr.config import OcrClientSettings, OcrSettings
from tests.unit.ocr.scripted import ScriptedEngine, until


def test_the_registry_knows_ocr_by_its_spec_and_grpc_port() -> None:
    spec = service_named("ocr")

    assert spec.app_factory == "radstream.ocr.app:create_app"
    assert list(spec.ports.values()) == ["RADSTREAM_OCR_PORT"]


def test_settings_come_from_radstream_ocr_variables(monkeypatch) -> None:
    monkeypatch.setenv("RADSTREAM_OCR_ENGINE", "tesseract")
    monkeypatch.setenv("RADSTREAM_OCR_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("RADSTREAM_OCR_LANGUAGES", "en, de")
    monkeypatch.setenv("RADSTREAM_OCR_MAX_IMAGE_PIXELS", "1000")

    settings = OcrSettings()
    options = service_options(settings)

    assert (settings.engine, settings.max_concurrency) == ("tesseract", 3)
    assert options.languages == ("en", "de")
    assert options.limits.max_pixels == 1000
    assert options.limits.max_encoded_bytes == settings.max_message_bytes


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tls_certfile": Path("/c.pem")}, "needs both"),
        ({"tls_client_ca_file": Path("/ca.pem")}, "needs RADSTREAM_OCR_TLS_CERTFILE"),
    ],
)
def test_half_a_tls_setup_is_refused(fields: dict[str, Path], message: str) -> None:
    with pytest.raises(MisconfiguredError, match=message):
        OcrSettings(**fields)


def test_a_client_certificate_needs_the_servers_ca() -> None:
    with pytest.raises(MisconfiguredError, match="TLS_CA_FILE"):
        OcrClientSettings(tls_certfile=Path("/c.pem"), tls_keyfile=Path("/k.pem"))


def test_an_unreadable_certificate_stops_startup_naming_the_setting(tmp_path: Path) -> None:
    settings = OcrSettings(tls_certfile=tmp_path / "none.pem", tls_keyfile=tmp_path / "none.key")

    with pytest.raises(MisconfiguredError, match="RADSTREAM_OCR_TLS_KEYFILE"):
        server_credentials(settings)


def test_claim_checks_are_read_only_where_a_phi_store_is_configured(monkeypatch) -> None:
    monkeypatch.delenv("RADSTREAM_BLOB_PHI_URI", raising=False)
    assert not OcrSettings().reads_blob_refs
    monkeypatch.setenv("RADSTREAM_BLOB_PHI_URI", "file:///tmp/radstream-ocr-test-phi")
    assert OcrSettings().reads_blob_refs


def test_engine_options_follow_the_engine() -> None:
    assert engine_options(OcrSettings(engine="rapidocr", engine_threads=2)) == {"threads": 2}
    assert engine_options(OcrSettings(engine="easyocr", engine_threads=4)) == {"threads": 4}
    assert engine_options(OcrSettings(engine="tesseract", engine_threads=4)) == {}
    assert engine_options(OcrSettings(engine="kserve", kserve_url="triton:8001")) == {
        "url": "triton:8001"
    }
    with pytest.raises(MisconfiguredError, match="RADSTREAM_OCR_KSERVE_URL"):
        engine_options(OcrSettings(engine="kserve"))


async def test_the_app_probes_while_loading_serves_once_loaded_and_stops_when_told() -> None:
    loading = threading.Event()
    engine = ScriptedEngine()

    def slow_factory() -> ScriptedEngine:
        loading.wait(10)
        return engine

    settings = OcrSettings(
        port=0, observability=ObservabilitySettings(health_port=0, service_name="ocr")
    )
    app = create_app(settings, registry=CollectorRegistry(), engine_factory=slow_factory)
    running = asyncio.create_task(app.run())
    await until(lambda: app.server.port != 0 and app.health.port != 0)
    async with httpx.AsyncClient(base_url=app.health.url) as http:
        await until(lambda: app.server._server is not None)
        not_ready = await http.get("/readyz")
        alive = await http.get("/healthz")
        loading.set()
        await until(lambda: app.server.service.engine is engine)
        ready = await http.get("/readyz")
    async with grpc.aio.insecure_channel(app.server.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    app.stop()
    await asyncio.wait_for(running, timeout=30)

    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["ocr-engine"]["message"] == "the rapidocr engine is loading"
    assert alive.status_code == 200
    assert ready.status_code == 200
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert app.server._server is None, "the gRPC server has stopped"


async def test_an_engine_that_fails_to_load_ends_run_with_its_error() -> None:
    def broken() -> ScriptedEngine:
        raise MisconfiguredError("unknown OCR engine 'nosuch'")

    settings = OcrSettings(
        port=0, observability=ObservabilitySettings(health_port=0, service_name="ocr")
    )
    app = create_app(settings, registry=CollectorRegistry(), engine_factory=broken)

    with pytest.raises(MisconfiguredError, match="nosuch"):
        await asyncio.wait_for(app.run(), timeout=30)
