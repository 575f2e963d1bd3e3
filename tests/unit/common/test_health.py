"""Kubernetes probes and the Prometheus scrape, over real HTTP on a loopback port."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.health import HealthApp, HealthServer
from radstream.common.settings import ObservabilitySettings


class Dependency:
    """A readiness check the test can break, slow down and repair."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.delay_s = 0.0

    async def __call__(self) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error


@pytest.fixture
def kafka() -> Dependency:
    return Dependency()


@pytest.fixture
def blobs() -> Dependency:
    return Dependency()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def server(
    kafka: Dependency, blobs: Dependency, registry: CollectorRegistry
) -> AsyncIterator[HealthServer]:
    checks = {"kafka": kafka, "blob_phi": blobs}
    async with HealthServer("127.0.0.1", 0, checks, registry, check_timeout_s=0.2) as running:
        yield running


@pytest.fixture
async def client(server: HealthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        yield http


class TestLiveness:
    async def test_answers_200_while_the_event_loop_runs(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "alive", "checks": {}}

    async def test_fails_when_a_liveness_check_says_only_a_restart_can_help(
        self, server: HealthServer, client: httpx.AsyncClient
    ) -> None:
        server.add_liveness("consume-loops", lambda: False)

        response = await client.get("/healthz")

        assert response.status_code == 503
        assert response.json() == {"status": "dead", "checks": {"consume-loops": "failed"}}

    async def test_does_not_depend_on_readiness_checks(
        self, client: httpx.AsyncClient, kafka: Dependency
    ) -> None:
        kafka.error = TransientError("broker away")

        assert (await client.get("/healthz")).status_code == 200


class TestReadiness:
    async def test_is_200_with_every_check_ok_when_all_pass(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/readyz")

        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checks": {"kafka": "ok", "blob_phi": "ok"}}

    async def test_is_503_naming_the_failing_check_and_its_error_type(
        self, client: httpx.AsyncClient, kafka: Dependency
    ) -> None:
        kafka.error = TransientError("no broker answered on 127.0.0.1:9092")

        response = await client.get("/readyz")

        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert body["checks"]["blob_phi"] == "ok"
        assert body["checks"]["kafka"]["error_type"] == "TransientError"
        assert "no broker answered" in body["checks"]["kafka"]["message"]

    async def test_is_503_when_a_check_outlives_its_timeout(
        self, client: httpx.AsyncClient, blobs: Dependency
    ) -> None:
        blobs.delay_s = 30

        response = await asyncio.wait_for(client.get("/readyz"), timeout=5)

        assert response.status_code == 503
        assert response.json()["checks"]["blob_phi"]["error_type"] == "TimeoutError"

    async def test_returns_to_200_once_the_check_passes_again(
        self, client: httpx.AsyncClient, kafka: Dependency
    ) -> None:
        kafka.error = TransientError("broker away")
        assert (await client.get("/readyz")).status_code == 503

        kafka.error = None

        assert (await client.get("/readyz")).status_code == 200

    async def test_error_messages_are_scrubbed_of_phi(
        self, client: httpx.AsyncClient, blobs: Dependency
    ) -> None:
        blobs.error = TransientError("cannot read study of DOE^JOHN, MRN 12345678")

        response = await client.get("/readyz")

        assert "DOE^JOHN" not in response.text
        assert "12345678" not in response.text
        assert response.json()["checks"]["blob_phi"]["message"] == (
            "cannot read study of [name], MRN [id]"
        )

    async def test_a_library_error_is_named_by_its_type_and_place_not_its_message(
        self, client: httpx.AsyncClient, blobs: Dependency
    ) -> None:
        blobs.error = RuntimeError("cannot read study of John Smith")

        response = await client.get("/readyz")

        assert "Smith" not in response.text
        assert response.json()["checks"]["blob_phi"]["message"].startswith(
            "RuntimeError raised in "
        )

    async def test_checks_registered_after_start_are_run(
        self, server: HealthServer, client: httpx.AsyncClient
    ) -> None:
        late = Dependency()
        late.error = MisconfiguredError("no model")
        server.add_check("triton", late)

        response = await client.get("/readyz")

        assert response.json()["checks"]["triton"]["error_type"] == "MisconfiguredError"

    async def test_a_failing_check_is_logged_once_until_it_recovers(
        self, client: httpx.AsyncClient, kafka: Dependency, caplog: pytest.LogCaptureFixture
    ) -> None:
        kafka.error = TransientError("broker away")
        with caplog.at_level("INFO", logger="radstream.common.health"):
            for _ in range(3):
                await client.get("/readyz")
            kafka.error = None
            await client.get("/readyz")

        messages = [record.getMessage() for record in caplog.records]
        assert messages.count("readiness check kafka is failing") == 1
        assert messages.count("readiness check kafka passes again") == 1

    async def test_without_checks_the_service_is_ready(self) -> None:
        async with (
            HealthServer("127.0.0.1", 0, registry=CollectorRegistry()) as running,
            httpx.AsyncClient(base_url=running.url) as http,
        ):
            response = await http.get("/readyz")

        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checks": {}}


class TestMetrics:
    async def test_expose_a_counter_from_the_given_registry(
        self, client: httpx.AsyncClient, registry: CollectorRegistry
    ) -> None:
        events = Counter("radstream_test_events", "Events handled.", registry=registry)
        events.inc(3)

        response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "radstream_test_events_total 3.0" in response.text

    async def test_speak_openmetrics_when_the_scraper_asks(
        self, client: httpx.AsyncClient, registry: CollectorRegistry
    ) -> None:
        Counter("radstream_test_openmetrics", "Scraped.", registry=registry).inc()

        response = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )

        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.rstrip().endswith("# EOF")


class TestHttpSurface:
    async def test_an_unknown_path_is_404(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/admin")).status_code == 404

    async def test_writes_are_405(self, client: httpx.AsyncClient) -> None:
        assert (await client.post("/readyz")).status_code == 405

    async def test_head_answers_without_a_body(self, client: httpx.AsyncClient) -> None:
        response = await client.head("/healthz")

        assert response.status_code == 200
        assert response.content == b""

    async def test_responses_are_not_cached(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/readyz")).headers["cache-control"] == "no-store"


class TestHealthServer:
    async def test_port_zero_binds_a_free_port_and_reports_it(self, server: HealthServer) -> None:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"

    async def test_a_taken_port_fails_start_with_a_clear_error(self, server: HealthServer) -> None:
        second = HealthServer("127.0.0.1", server.port, registry=CollectorRegistry())

        with pytest.raises(MisconfiguredError, match="RADSTREAM_OBS_HEALTH_PORT"):
            await second.start()

    async def test_leaving_the_context_releases_the_port(self) -> None:
        async with HealthServer("127.0.0.1", 0, registry=CollectorRegistry()) as running:
            url = running.url

        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{url}/healthz")

    async def test_it_can_be_stopped_twice_and_started_again(self) -> None:
        health = HealthServer("127.0.0.1", 0, registry=CollectorRegistry())
        await health.start()
        await health.stop()
        await health.stop()

        await health.start()
        try:
            async with httpx.AsyncClient(base_url=health.url) as http:
                assert (await http.get("/healthz")).status_code == 200
        finally:
            await health.stop()

    async def test_starting_twice_is_a_programming_error(self, server: HealthServer) -> None:
        with pytest.raises(RuntimeError, match="called twice"):
            await server.start()

    async def test_it_leaves_shutdown_signals_to_the_host_process(self) -> None:
        before = signal.getsignal(signal.SIGTERM)

        async with HealthServer("127.0.0.1", 0, registry=CollectorRegistry()):
            during = signal.getsignal(signal.SIGTERM)

        assert during is before

    def test_from_settings_uses_the_observability_host_and_port(self) -> None:
        settings = ObservabilitySettings(health_host="127.0.0.1", health_port=9464)

        health = HealthServer.from_settings(settings, registry=CollectorRegistry())

        assert (health.port, health.url) == (9464, "http://127.0.0.1:9464")


class TestHealthAppWithoutAServer:
    async def test_acknowledges_lifespan_events(self) -> None:
        inbox: list[dict[str, object]] = [
            {"type": "lifespan.startup"},
            {"type": "lifespan.shutdown"},
        ]
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return inbox.pop(0)

        async def send(message: dict[str, object]) -> None:
            sent.append(dict(message))

        await HealthApp()({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]

        assert [message["type"] for message in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
