"""The bus: a FastStream ``KafkaBroker`` with radstream's envelope, delivery and telemetry.

Services talk to Kafka only through :class:`Bus`:

* ``await bus.publish(topic, message, caused_by=event)`` -- encodes the protobuf body with
  CloudEvents headers, keys the record by the topic's ordering key, and (when ``caused_by``
  is given) derives the new event's id from the cause, so a replayed handler republishes the
  same ids and downstream guards drop the repeats;
* ``@bus.subscribe(topic, group="deid")`` -- registers ``async def handler(event, claim)``
  behind :func:`radstream.common.delivery.deliver` (retries, DLQ, idempotency). Offsets are
  committed only after the handler succeeded or the record reached the DLQ.

OpenTelemetry (trace context in ``traceparent``, continued across every hop) and Prometheus
metrics come from FastStream's Kafka middlewares plus radstream's own delivery counters.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from aiokafka import AIOKafkaProducer
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from google.protobuf.message import Message
from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from radstream.common.delivery import (
    DeadLetter,
    DeliveryObserver,
    Handler,
    Outcome,
    RawRecord,
    RetryPolicy,
    deliver,
)
from radstream.common.envelope import Event, derived_event_id, encode
from radstream.common.errors import TransientError
from radstream.common.idempotency import IdempotencyGuard, open_guard
from radstream.common.kafka_client import aiokafka_options, faststream_security
from radstream.common.metrics import per_registry
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.common.topics import Topic

M = TypeVar("M", bound=Message)

log = logging.getLogger(__name__)


class DeadLetterUnavailableError(TransientError):
    """The dead-letter topic could not be written; the record stays uncommitted."""


class DeliveryMetrics:
    """Prometheus counters for delivery outcomes; also logs retries and dead letters (no PHI)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "radstream_events_consumed_total",
            "Records delivered to a handler, by outcome (processed, duplicate, dead_lettered).",
            ["topic", "group", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "radstream_event_retries_total",
            "Failed handler attempts that were retried.",
            ["topic", "group", "error_type"],
            registry=registry,
        )
        self.seconds = Histogram(
            "radstream_event_handling_seconds",
            "Time from first attempt to outcome, retries and backoff included.",
            ["topic", "group"],
            registry=registry,
        )

        # Label lookups cost more than the increments; cache the children per label tuple.
        self._events = functools.cache(self.events.labels)
        self._seconds = functools.cache(self.seconds.labels)
        self._retries = functools.cache(self.retries.labels)

    def on_outcome(
        self, record: RawRecord, group: str, outcome: Outcome, attempts: int, seconds: float
    ) -> None:
        """Count the outcome and time it."""
        self._events(record.topic, group, outcome.value).inc()
        self._seconds(record.topic, group).observe(seconds)
        if outcome is Outcome.DEAD_LETTERED:
            log.warning(
                "event dead-lettered",
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "group": group,
                    "attempts": attempts,
                },
            )

    def on_retry(self, record: RawRecord, group: str, attempt: int, error: BaseException) -> None:
        """Count the retry."""
        self._retries(record.topic, group, type(error).__name__).inc()
        log.info(
            "handler failed, will retry",
            extra={
                "topic": record.topic,
                "offset": record.offset,
                "group": group,
                "attempt": attempt,
                "error_type": type(error).__name__,
            },
        )


class _Observers:
    """Fans delivery notifications out to several observers."""

    def __init__(self, observers: tuple[DeliveryObserver, ...]) -> None:
        self._observers = observers

    def on_outcome(
        self, record: RawRecord, group: str, outcome: Outcome, attempts: int, seconds: float
    ) -> None:
        for observer in self._observers:
            observer.on_outcome(record, group, outcome, attempts, seconds)

    def on_retry(self, record: RawRecord, group: str, attempt: int, error: BaseException) -> None:
        for observer in self._observers:
            observer.on_retry(record, group, attempt, error)


delivery_metrics = per_registry(DeliveryMetrics)
"""The delivery metrics of a registry, registered on first use."""


class _KafkaDeadLetters:
    """Writes dead letters with a plain producer, so the original bytes and headers stay exact."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._producer = AIOKafkaProducer(acks="all", **options)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, letter: DeadLetter) -> None:
        try:
            await self._producer.send_and_wait(
                letter.dlq_topic,
                value=letter.record.value,
                key=letter.record.key,
                headers=letter.headers(),
            )
        except Exception as exc:
            raise DeadLetterUnavailableError(
                f"could not write to {letter.dlq_topic}: {type(exc).__name__}"
            ) from exc


@dataclass(frozen=True, kw_only=True)
class BusConfig:
    """Everything a :class:`Bus` needs besides the broker."""

    source: str
    policy: RetryPolicy
    guard: IdempotencyGuard
    registry: CollectorRegistry
    # Extra observers (audit trails, test probes) told of every outcome after the metrics.
    observers: tuple[DeliveryObserver, ...] = ()
    fetch_max_wait_ms: int = 500
    session_timeout_ms: int = 10_000


class Bus:
    """Publish and subscribe radstream events over one FastStream ``KafkaBroker``."""

    def __init__(self, broker: KafkaBroker, config: BusConfig, client_options: dict[str, Any]):
        self.broker = broker
        self.config = config
        self._dead_letters = _KafkaDeadLetters(client_options)
        self._observer = _Observers((delivery_metrics(config.registry), *config.observers))

    async def open(self) -> None:
        """Open the idempotency store and the dead-letter producer (the broker starts apart)."""
        await self.config.guard.open()
        await self._dead_letters.start()

    async def close(self) -> None:
        """Close what :meth:`open` opened."""
        await self._dead_letters.stop()
        await self.config.guard.close()

    async def start(self) -> None:
        """Open resources, then connect the broker and start consuming."""
        await self.open()
        await self.broker.start()

    async def stop(self) -> None:
        """Stop consuming, then close resources."""
        await self.broker.stop()
        await self.close()

    def assigned_partitions(self) -> set[tuple[str, int]]:
        """The ``(topic, partition)`` pairs this bus's consumers hold right now."""
        assigned: set[tuple[str, int]] = set()
        for subscriber in self.broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            if consumer is not None:
                assigned.update((tp.topic, tp.partition) for tp in consumer.assignment())
        return assigned

    async def publish(
        self,
        topic: Topic,
        message: Message,
        *,
        caused_by: Event[Any] | None = None,
        purpose: str = "",
        event_id: str | None = None,
        subject: str | None = None,
    ) -> str:
        """Publish ``message`` to ``topic`` and return its event id once the broker has it.

        ``purpose`` tells apart several outputs of one input on the same topic (for instance
        one event per series); it only matters with ``caused_by``.
        """
        if topic.message is not type(message):
            raise TypeError(f"{topic.name} carries {topic.event_type}, not {type(message)}")
        if event_id is None and caused_by is not None:
            event_id = derived_event_id(caused_by.id, f"{topic.name}/{purpose}")
        value, headers = encode(
            message,
            source=self.config.source,
            event_id=event_id,
            subject=subject,
            causation_id=caused_by.id if caused_by is not None else None,
            inject_trace=False,  # the telemetry middleware writes traceparent for its own span
        )
        ce_id = headers["ce_id"].decode()
        await self.broker.publish(
            value,
            topic.name,
            key=topic.key_of(message),
            headers={name: raw.decode() for name, raw in headers.items()},
            correlation_id=ce_id,
        )
        return ce_id

    def subscribe(self, topic: Topic, *, group: str) -> Callable[[Handler[M]], Handler[M]]:
        """Register ``handler(event, claim)`` for ``topic`` in consumer group ``group``."""

        def register(handler: Handler[M]) -> Handler[M]:
            subscriber = self.broker.subscriber(
                topic.name,
                group_id=group,
                ack_policy=AckPolicy.NACK_ON_ERROR,
                auto_offset_reset="earliest",
                title=f"{group}:{topic.name}",
                fetch_max_wait_ms=self.config.fetch_max_wait_ms,
                session_timeout_ms=self.config.session_timeout_ms,
                # Decoding is ours (radstream.common.envelope); FastStream must not guess it
                # from content-type, or a malformed record fails before it can be dead-lettered.
                # The handler gets FastStream's message itself (no dependency injection).
                decoder=_whole_message,
            )

            async def on_record(msg: StreamMessage[Any]) -> None:
                raw = msg.raw_message
                if isinstance(raw, tuple):  # only batch subscribers get tuples
                    raise TypeError("radstream subscribers consume one record at a time")
                record = RawRecord(
                    topic=raw.topic,
                    partition=raw.partition,
                    offset=raw.offset,
                    key=raw.key,
                    value=raw.value,
                    headers=tuple(raw.headers),
                )
                await deliver(
                    record,
                    message_type=topic.message,
                    handler=cast(Handler[Message], handler),
                    group=group,
                    guard=self.config.guard,
                    dead_letters=self._dead_letters,
                    policy=self.config.policy,
                    observer=self._observer,
                )

            subscriber(on_record)
            return handler

        return register


async def _whole_message(message: StreamMessage[Any]) -> StreamMessage[Any]:
    return message


def create_bus(
    kafka: KafkaSettings,
    delivery: DeliverySettings,
    *,
    service: str,
    tracer_provider: TracerProvider | None = None,
    registry: CollectorRegistry | None = None,
    guard: IdempotencyGuard | None = None,
    observers: tuple[DeliveryObserver, ...] = (),
) -> Bus:
    """Build the bus for ``service`` from settings; nothing connects until :meth:`Bus.start`."""
    registry = registry if registry is not None else REGISTRY
    broker = KafkaBroker(
        kafka.require_bootstrap(),
        client_id=f"{kafka.client_id}-{service}",
        security=faststream_security(kafka),
        enable_idempotence=kafka.enable_idempotence,
        middlewares=(
            KafkaTelemetryMiddleware(tracer_provider=tracer_provider),
            KafkaPrometheusMiddleware(registry=registry, app_name=service),
        ),
        acks=kafka.producer_acks,
        # Handlers take the raw message and decode it themselves, so FastStream's dependency
        # injection (a thread hop per record) has nothing to do.
        apply_types=False,
        # FastStream's access log goes through the root handler and its PhiFilter (it quotes
        # exception messages); per-message lines are debug noise, outcomes are metrics.
        logger=logging.getLogger("radstream.faststream"),
        log_level=logging.DEBUG,
    )
    config = BusConfig(
        source=f"/radstream/{service}",
        policy=RetryPolicy(
            max_attempts=delivery.max_attempts,
            initial_s=delivery.backoff_initial_s,
            max_s=delivery.backoff_max_s,
            multiplier=delivery.backoff_multiplier,
        ),
        guard=guard if guard is not None else open_guard(delivery.idempotency_dsn),
        registry=registry,
        observers=observers,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        session_timeout_ms=kafka.session_timeout_ms,
    )
    return Bus(broker, config, aiokafka_options(kafka))
