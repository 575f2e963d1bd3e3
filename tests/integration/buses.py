"""Buses for integration tests: quick retries, a registry of their own, started and stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from radstream.common.bus import Bus, create_bus
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.common.topics import Topic

# Retries a test can wait out: three attempts within a fraction of a second.
FAST_RETRIES = {"max_attempts": 3, "backoff_initial_s": 0.05, "backoff_max_s": 0.1}


@asynccontextmanager
async def running(bus: Bus) -> AsyncIterator[Bus]:
    """The bus started for the block, stopped after it."""
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


def make_bus(
    settings: KafkaSettings,
    dsn: str,
    service: str,
    registry: CollectorRegistry | None = None,
    **kwargs: Any,
) -> Bus:
    """A bus of ``service`` with :data:`FAST_RETRIES` and the idempotency guard at ``dsn``."""
    delivery = DeliverySettings(idempotency_dsn=dsn, **FAST_RETRIES)
    registry = registry if registry is not None else CollectorRegistry()
    return create_bus(settings, delivery, service=service, registry=registry, **kwargs)


async def publish_all(
    settings: KafkaSettings, dsn: str, topic: Topic, messages: Iterable[Message]
) -> list[str]:
    """Publish ``messages`` in order from an ingest bus started for them; their event ids."""
    async with running(make_bus(settings, dsn, "ingest")) as publisher:
        return [await publisher.publish(topic, message) for message in messages]
