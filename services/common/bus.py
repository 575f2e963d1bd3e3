"""The bus: radstream's envelope, delivery and telemetry on Kafka.

Services talk to Kafka only through :class:`Bus`:

* ``await bus.publish(topic, message, caused_by=event)`` -- encodes the protobuf body with
  CloudEvents headers, keys the record by the topic's ordering key, and (when ``caused_by``
  is given) derives the new event's id from the cause, so a replayed handler republishes the
  same ids and downstream guards drop the repeats;
* ``@bus.subscribe(topic, group="deid")`` -- registers ``async def handler(event, claim)``
  behind :func:`radstream.common.delivery.deliver` (retries, DLQ, idempotency). Offsets are
  committed only after the handler succeeded or the record reached the DLQ.

Services run as FastStream apps (:func:`radstream.common.service.service_app`), whose
``KafkaBroker`` gives them lifecycle and signal handling. The records themselves go through the
bus's own aiokafka producer and one plain consume loop per subscription, traced and counted by
:mod:`radstream.common.bus_telemetry`: FastStream's generic consume path and its middlewares
cost more CPU per record than the whole plumbing may (``make bench``; docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from google.protobuf.message import Message
from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from radstream.common.bus_telemetry import BusTelemetry
from radstream.common.consume_loop import ConsumeLoop
from radstream.common.delivery import (
    DeadLetter,
    DeliveryObserver,
    Handler,
    Outcome,
    RawRecord,
    RetryPolicy,
    deliver,
    event_id_of,
    scope_of,
)
from radstream.common.envelope import Event, derived_event_id, encode, new_event_id
from radstream.common.errors import TransientError
from radstream.common.idempotency import (
    AttemptLog,
    BatchGuard,
    BatchStartLog,
    IdempotencyGuard,
    PartitionStart,
    open_guard,
    prefetch,
    prefetch_started,
)
from radstream.common.kafka_client import aiokafka_options, faststream_security
from radstream.common.metrics import per_registry
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.common.tallies import CounterTally, HistogramTally
from radstream.common.topics import Topic

M = TypeVar("M", bound=Message)

log = logging.getLogger(__name__)


class DeadLetterUnavailableError(TransientError):
    """The dead-letter topic could not be written; the record stays uncommitted."""


class DeliveryMetrics:
    """Prometheus counters for delivery outcomes; also logs retries and dead letters (no PHI)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = CounterTally(
            "radstream_events_consumed_total",
            "Records delivered to a handler, by outcome (processed, duplicate, dead_lettered).",
            ["topic", "group", "outcome"],
            registry,
        )
        self.retries = Counter(
            "radstream_event_retries_total",
            "Failed handler attempts that were retried.",
            ["topic", "group", "error_type"],
            registry=registry,
        )
        self.seconds = HistogramTally(
            "radstream_event_handling_seconds",
            "Time from first attempt to outcome, retries and backoff included.",
            ["topic", "group"],
            registry,
        )
        self._retries = functools.cache(self.retries.labels)

    def on_outcome(
        self, record: RawRecord, group: str, outcome: Outcome, attempts: int, seconds: float
    ) -> None:
        """Count the outcome and time it."""
        self.events.inc((record.topic, group, outcome.value))
        self.seconds.observe((record.topic, group), seconds)
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
    """Everything a :class:`Bus` needs besides its clients."""

    source: str
    policy: RetryPolicy
    guard: IdempotencyGuard
    registry: CollectorRegistry
    # Extra observers (audit trails, test probes) told of every outcome after the metrics.
    observers: tuple[DeliveryObserver, ...] = ()
    fetch_max_wait_ms: int = 500
    session_timeout_ms: int = 10_000
    # Records a consume loop takes per poll; the guard is asked about each batch in one query.
    fetch_max_records: int = 100
    # How long a stop waits for records in flight before it cancels them (they are redelivered).
    graceful_timeout_s: float = 30.0
    # Done marks older than this are pruned while the bus consumes; None keeps them for ever.
    mark_retention_s: float | None = 30 * 86_400.0
    prune_interval_s: float = 3600.0
    # Where records' crashes and first failures are kept (the guard's store); None keeps none,
    # so a record that kills its consumer comes again for ever and transient errors never end.
    attempts: AttemptLog | None = None


class PublishFailedError(TransientError):
    """The broker did not acknowledge a publish; the caller's input is delivered again."""


class Bus:
    """Publish and subscribe radstream events on Kafka with radstream's own thin clients.

    ``broker`` is the FastStream ``KafkaBroker`` that anchors the service's FastStream app
    (lifecycle, signals, ``faststream run``). Events do not pass through it: the bus publishes
    with its own ``AIOKafkaProducer`` and runs one consume loop per subscription, instrumented by
    :mod:`radstream.common.bus_telemetry`.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        config: BusConfig,
        client_options: dict[str, Any],
        *,
        producer_options: dict[str, Any] | None = None,
        tracer_provider: TracerProvider | None = None,
    ):
        self.broker = broker
        self.config = config
        self._client_options = client_options
        self._producer = AIOKafkaProducer(**(producer_options or {}), **client_options)
        self._dead_letters = _KafkaDeadLetters(client_options)
        self._observer = _Observers((delivery_metrics(config.registry), *config.observers))
        self._telemetry = BusTelemetry(tracer_provider=tracer_provider, registry=config.registry)
        self._subscriptions: list[ConsumeLoop] = []
        self._pruning: asyncio.Task[None] | None = None
        # Who this bus is in the attempt log: a consumer that meets a record another owner
        # started and never released counts a crash against it.
        self._owner = uuid.uuid4().hex

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer every :meth:`publish` goes through (for diagnostics)."""
        return self._producer

    @property
    def consumers(self) -> tuple[AIOKafkaConsumer, ...]:
        """The consumers of the running subscriptions (for diagnostics)."""
        return tuple(s.consumer for s in self._subscriptions if s.consumer is not None)

    async def open(self) -> None:
        """Open the idempotency store and the producers (consuming starts apart)."""
        await self.config.guard.open()
        await self._producer.start()
        await self._dead_letters.start()

    async def close(self) -> None:
        """Close what :meth:`open` opened."""
        await self._dead_letters.stop()
        await self._producer.stop()
        await self.config.guard.close()

    async def start_consuming(self) -> None:
        """Join each subscription's consumer group and start its consume loop.

        A bus that consumes also prunes old done marks from its guard, at once and then every
        ``prune_interval_s`` (unless ``mark_retention_s`` is None).
        """
        for subscription in self._subscriptions:
            await subscription.start()
        if self._subscriptions and self.config.mark_retention_s is not None and not self._pruning:
            self._pruning = asyncio.create_task(
                self._prune_marks(self.config.mark_retention_s), name="prune done marks"
            )

    async def stop_consuming(self) -> None:
        """Let records in flight finish, commit them, and leave the consumer groups."""
        pruning, self._pruning = self._pruning, None
        if pruning is not None:
            pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruning
        clean = await asyncio.gather(
            *(s.stop(self.config.graceful_timeout_s) for s in self._subscriptions)
        )
        if all(clean):
            await self._release()

    async def _release(self) -> None:
        """Tell the attempt log that no record this bus started was in flight when it stopped.

        Without it the next owner of a partition whose batch a stop cut short would count a
        crash against the first record this bus left. A record cancelled at the stop's timeout
        keeps its count: it hung for that long.
        """
        attempts = self.config.attempts
        if attempts is None or not self._subscriptions:
            return
        try:
            await attempts.release(self._owner)
        except Exception as exc:
            log.warning(
                "attempt log not released; the records this consumer left may each count one crash",
                extra={"error_type": type(exc).__name__},
            )

    async def _prune_marks(self, retention_s: float) -> None:
        """Delete the guard's marks older than ``retention_s``, once per interval, until cancelled.

        A failure is counted and logged and the next round tries again: the store only grows
        meanwhile.
        """
        metrics = self._telemetry.metrics
        while True:
            cutoff = datetime.now(UTC) - timedelta(seconds=retention_s)
            try:
                pruned = await self.config.guard.prune(cutoff)
            except Exception as exc:
                metrics.prune_failures.labels(type(exc).__name__).inc()
                log.warning("old done marks not pruned", extra={"error_type": type(exc).__name__})
            else:
                metrics.marks_pruned.inc(pruned)
                if pruned:
                    log.info("old done marks pruned", extra={"count": pruned})
            await asyncio.sleep(self.config.prune_interval_s)

    async def start(self) -> None:
        """Open resources, then start consuming."""
        await self.open()
        await self.start_consuming()

    async def stop(self) -> None:
        """Stop consuming, then close resources."""
        await self.stop_consuming()
        await self.close()

    async def ping(self, within_s: float = 2.0) -> bool:
        """Whether the Kafka cluster answers a metadata request from the bus's producer."""
        try:
            async with asyncio.timeout(within_s):
                await self._producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError, OSError):
            return False
        return True

    def consuming(self) -> bool:
        """Whether every subscription's consume loop is running."""
        return all(s.running() for s in self._subscriptions)

    def alive(self) -> bool:
        """False once a consume loop has died for good (liveness: the pod must be restarted).

        A loop that fails restarts itself a few times (:class:`ConsumeLoop`); one that keeps
        failing gives up, and only a new process can be expected to do better.
        """
        return not any(s.dead() for s in self._subscriptions)

    def assigned_partitions(self) -> set[tuple[str, int]]:
        """The ``(topic, partition)`` pairs this bus's consumers hold right now."""
        assigned: set[tuple[str, int]] = set()
        for consumer in self.consumers:
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
        one event per series); it only matters with ``caused_by``. A publish the broker does
        not acknowledge raises :class:`PublishFailedError`, a transient error: inside a handler
        it leads to a retry and, at worst, to the input being delivered again.
        """
        if topic.message is not type(message):
            raise TypeError(f"{topic.name} carries {topic.event_type}, not {type(message)}")
        if event_id is not None:
            ce_id = event_id
        elif caused_by is not None:
            ce_id = derived_event_id(caused_by.id, f"{topic.name}/{purpose}")
        else:
            ce_id = new_event_id()
        value, headers = encode(
            message,
            source=self.config.source,
            event_id=ce_id,
            subject=subject,
            causation_id=caused_by.id if caused_by is not None else None,
            inject_trace=False,  # the publish span below writes traceparent
        )
        with self._telemetry.publishing(topic.name, ce_id, len(value)) as scope:
            headers.update(scope.headers)
            try:
                await self._producer.send_and_wait(
                    topic.name, value, key=topic.key_of(message), headers=list(headers.items())
                )
            except KafkaError as exc:
                raise PublishFailedError(
                    f"could not publish to {topic.name}: {type(exc).__name__}"
                ) from exc
        return ce_id

    def subscribe(self, topic: Topic, *, group: str) -> Callable[[Handler[M]], Handler[M]]:
        """Register ``handler(event, claim)`` for ``topic`` in consumer group ``group``.

        Each subscription has its own consumer and handles one record at a time, in partition
        order (fetched in batches, the guard asked about each batch at once); its offset is
        committed once the handler succeeded or the record reached the dead-letter topic. A
        record whose delivery raises (a dependency down, the dead-letter topic unwritable) is
        not committed: the loop seeks back to it and tries again later.
        """

        def register(handler: Handler[M]) -> Handler[M]:
            if any(s.running() for s in self._subscriptions):
                raise RuntimeError("subscribe before the bus starts consuming")
            typed = cast(Handler[Message], handler)
            self._subscriptions.append(
                ConsumeLoop(
                    topic=topic.name,
                    group=group,
                    deliverer=functools.partial(self._batch, topic, group, typed),
                    telemetry=self._telemetry,
                    consumer_options={
                        "fetch_max_wait_ms": self.config.fetch_max_wait_ms,
                        "session_timeout_ms": self.config.session_timeout_ms,
                        **self._client_options,
                    },
                    retry_after_s=self.config.policy.max_s,
                    max_records=self.config.fetch_max_records,
                )
            )
            return handler

        return register

    async def _batch(
        self, topic: Topic, group: str, handler: Handler[Message], records: Sequence[RawRecord]
    ) -> _BatchDelivery:
        """The delivery of one fetched batch, its events asked of the guard all at once.

        When the guard's store keeps the attempt log too, the same round trip starts the
        batch's first partition (see :func:`prefetch_started`); the other partitions are
        started as their first record comes.
        """
        scope, guard = scope_of(group, topic.name), self.config.guard
        started: dict[int, int] = {}
        if records and isinstance(guard, BatchStartLog) and self.config.attempts is guard:
            first = records[0]
            start = PartitionStart(
                partition=first.partition,
                first_offset=first.offset,
                last_offset=_last_offset(records, first.partition),
                owner=self._owner,
            )
            view, crashes = await prefetch_started(guard, scope, map(event_id_of, records), start)
            if crashes is not None:
                started[first.partition] = crashes
        else:
            view = await prefetch(guard, scope, map(event_id_of, records))
        return _BatchDelivery(
            topic,
            group,
            handler,
            view,
            telemetry=self._telemetry,
            dead_letters=self._dead_letters,
            policy=self.config.policy,
            observer=self._observer,
            attempts=self.config.attempts,
            owner=self._owner,
            records=records,
            started=started,
        )


def _last_offset(records: Sequence[RawRecord], partition: int) -> int:
    """The last offset of ``partition`` among a batch's records."""
    return max(r.offset for r in records if r.partition == partition)


class _BatchDelivery:
    """One fetched batch on its way to a handler: each record delivered, then the marks written."""

    def __init__(
        self,
        topic: Topic,
        group: str,
        handler: Handler[Message],
        guard: BatchGuard,
        *,
        telemetry: BusTelemetry,
        dead_letters: _KafkaDeadLetters,
        policy: RetryPolicy,
        observer: DeliveryObserver,
        attempts: AttemptLog | None,
        owner: str,
        records: Sequence[RawRecord],
        started: dict[int, int],
    ) -> None:
        self._topic, self._group, self._handler, self._guard = topic, group, handler, guard
        self._telemetry, self._dead_letters = telemetry, dead_letters
        self._policy, self._observer = policy, observer
        self._attempts, self._owner = attempts, owner
        self._records = records
        self._started: set[int] = set()  # partitions whose records the attempt log was told of
        # Partitions started with the batch's done marks (the first one), and their crash counts.
        self._started_ahead = started

    async def _start_partition(self, record: RawRecord) -> int:
        """Tell the attempt log which of the partition's records this batch starts (one write).

        Written as the partition's first record is about to be handled, not at the batch's
        start: a crash on one partition's record must not count against another's. The batch's
        own first record is the exception: nothing comes between the batch's start and it, so
        its partition was started with the batch's done marks (``started``). Returns how
        often that first record was in flight when a consumer died.
        """
        self._started.add(record.partition)
        ahead = self._started_ahead.pop(record.partition, None)
        if ahead is not None:
            return ahead
        if self._attempts is None:
            return 0
        last = _last_offset(self._records, record.partition)
        return await self._attempts.started(
            scope_of(self._group, record.topic), record.partition, record.offset, last, self._owner
        )

    async def deliver(self, record: RawRecord) -> None:
        """Deliver one record inside its process span (see :func:`deliver`)."""
        group = self._group
        crashes = 0
        if record.partition not in self._started:
            crashes = await self._start_partition(record)
        with self._telemetry.processing(
            topic=record.topic,
            group=group,
            partition=record.partition,
            offset=record.offset,
            headers=record.headers,
            size=len(record.value or b""),
        ):
            await deliver(
                record,
                message_type=self._topic.message,
                handler=self._handler,
                group=group,
                guard=self._guard,
                dead_letters=self._dead_letters,
                policy=self._policy,
                observer=self._observer,
                crashes=crashes,
                attempts=self._attempts,
            )

    async def finish(self) -> None:
        """Write the done marks of the records that staged nothing, in one transaction."""
        await self._guard.write_marks()


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
    guard = guard if guard is not None else open_guard(delivery.idempotency_dsn)
    client_id = f"{kafka.client_id}-{service}"
    broker = KafkaBroker(
        kafka.require_bootstrap(),
        client_id=client_id,
        security=faststream_security(kafka),
        # FastStream's access log goes through the root handler and its PhiFilter.
        logger=logging.getLogger("radstream.faststream"),
        log_level=logging.DEBUG,
        # It only anchors the app: records go through the bus's own clients, so it opens no
        # producer or admin connection of its own.
        consumer_only=True,
    )
    config = BusConfig(
        source=f"/radstream/{service}",
        policy=RetryPolicy(
            max_attempts=delivery.max_attempts,
            initial_s=delivery.backoff_initial_s,
            max_s=delivery.backoff_max_s,
            multiplier=delivery.backoff_multiplier,
            max_crashes=delivery.max_crashes,
            max_retry_s=delivery.max_retry_s or None,
        ),
        guard=guard,
        registry=registry,
        observers=observers,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        session_timeout_ms=kafka.session_timeout_ms,
        mark_retention_s=delivery.idempotency_retention_days * 86_400.0 or None,
        prune_interval_s=delivery.idempotency_prune_interval_s,
        # The guard's store keeps the attempts too, when it can (both of radstream's do).
        attempts=guard if isinstance(guard, AttemptLog) else None,
    )
    return Bus(
        broker,
        config,
        {**aiokafka_options(kafka), "client_id": client_id},
        producer_options={
            "acks": kafka.producer_acks,
            "enable_idempotence": kafka.enable_idempotence,
        },
        tracer_provider=tracer_provider,
    )
