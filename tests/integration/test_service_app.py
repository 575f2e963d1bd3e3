"""A service's FastStream app around the bus: lifecycle and readiness against the real broker."""

from __future__ import annotations

import asyncio
import logging

import pytest
from faststream.exceptions import IncorrectState
from prometheus_client import CollectorRegistry

from radstream.common import topics
from radstream.common.bus import create_bus
from radstream.common.envelope import Event
from radstream.common.health import HealthServer
from radstream.common.idempotency import Claim
from radstream.common.service import service_app
from radstream.common.settings import DeliverySettings
from radstream.contracts.v1.imaging_pb2 import StudyReceived

pytestmark = pytest.mark.integration


async def test_the_app_consumes_once_started_and_is_ready_only_while_its_loops_run(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    registry = CollectorRegistry()
    bus = create_bus(
        kafka_settings,
        DeliverySettings(idempotency_dsn=idempotency_dsn),
        service="deid",
        registry=registry,
    )
    seen: list[str] = []
    handled = asyncio.Event()

    @bus.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        seen.append(event.message.study_instance_uid)
        handled.set()

    health = HealthServer("127.0.0.1", 0, registry=registry)
    app = service_app(bus, health)
    publisher = create_bus(
        kafka_settings,
        DeliverySettings(idempotency_dsn=idempotency_dsn),
        service="ingest",
        registry=CollectorRegistry(),
    )

    await app.start()
    await publisher.start()
    try:
        ready, results = await health.app.readiness()
        assert ready, results
        assert set(results) >= {"kafka", "idempotency-store"}

        await publisher.publish(topic, StudyReceived(study_instance_uid="2.25.1"))
        await asyncio.wait_for(handled.wait(), 30)
        assert seen == ["2.25.1"]
        with pytest.raises(IncorrectState):  # the anchor broker opened no producer of its own
            await bus.broker.publish(b"", topic=topic.name)

        await bus.stop_consuming()
        ready, results = await health.app.readiness()
        assert not ready
        assert "consume loop" in str(results["kafka"])
    finally:
        await publisher.stop()
        await app.stop()


async def test_the_apps_own_lines_go_through_the_filtered_root_handler(
    kafka_settings, idempotency_dsn, caplog: pytest.LogCaptureFixture
) -> None:
    bus = create_bus(
        kafka_settings,
        DeliverySettings(idempotency_dsn=idempotency_dsn),
        service="deid",
        registry=CollectorRegistry(),
    )
    app = service_app(bus, HealthServer("127.0.0.1", 0, registry=CollectorRegistry()))
    assert app.logger is not None

    await app.start()
    try:
        with caplog.at_level(logging.INFO):
            app.logger.info("FastStream app started successfully!")  # as its run() logs it
    finally:
        await app.stop()

    [line] = [r for r in caplog.records if "FastStream app" in r.getMessage()]
    assert line.name.startswith("radstream."), "in JSON, through the PHI filter, like the rest"
