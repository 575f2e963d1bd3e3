"""The consume loop behind each ``Bus.subscribe``: records in partition order, each committed.

The loop takes what the consumer has fetched (``getmany``, up to ``max_records``) and asks the
bus to prepare that batch's delivery, which queries the idempotency guard about all of its
events at once (:func:`radstream.common.idempotency.prefetch`). Then it hands each record to
the batch (decode, guard, handler, retries, dead letters:
:func:`radstream.common.delivery.deliver`) and commits ``offset + 1`` for its partition after
each one, so a crash repeats at most the record in flight. When the batch is through, however
it ends, the loop has the batch write the done marks its records left
(:meth:`~radstream.common.idempotency.BatchGuard.write_marks`): one write for the batch, after
the commits, or at once when a commit fails (the partition's next owner may soon ask). A failure
to write them is counted and logged; the records stay committed.

When delivery raises, the event was not at fault and could not be handled now (a dependency
down past the retries, the dead-letter topic unwritable): the loop does not commit, seeks every
partition of the batch back to its first record not yet handled, pauses and meets them again. A
failed commit (a rebalance took the partition) is counted and left: the partition's next owner
gets the record again and the idempotency guard recognises it. A partition taken away in the
middle of a batch is left there: its next owner starts from the last committed offset.

A stop is graceful: a record in flight finishes and is committed, and the rest of its batch is
left uncommitted for the group's next owner; a loop that is waiting for records or pausing is
cancelled, since nothing of it is in flight.

A batch that cannot be prepared (the store failing) is delivered again like a record that must
come again. Anything else that escapes the loop is a defect or a broken dependency: the loop
restarts itself with a new consumer (which leaves the group and joins it again, so it resumes
from the committed offsets), up to ``max_restarts`` times in a row (a batch handled in between
starts the count again); then it stays dead, and :meth:`dead` tells liveness, so the process is
restarted rather than idling with a dead loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from radstream.common.bus_telemetry import BusTelemetry
from radstream.common.delivery import RawRecord
from radstream.common.frozen import build_frozen


class BatchDelivery(Protocol):
    """The delivery of one fetched batch, as the bus prepared it."""

    async def deliver(self, record: RawRecord) -> None:
        """Deliver one record of the batch; raises only when the record must come again."""

    async def finish(self) -> None:
        """Write what the batch's records left to write once it is through (the done marks)."""


Deliverer = Callable[[Sequence[RawRecord]], Awaitable[BatchDelivery]]
"""Prepares a fetched batch (asks the guard about all of it) for delivery."""

# How long one poll waits for records when none are buffered; it returns as soon as some are.
_POLL_WAIT_MS = 1000
# How long a restart waits for the failed consumer to leave the group before it starts anew.
_OLD_CONSUMER_STOP_S = 10.0

log = logging.getLogger(__name__)


class ConsumeLoop:
    """One topic, one consumer group, one record at a time, fetched in batches."""

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        deliverer: Deliverer,
        telemetry: BusTelemetry,
        consumer_options: dict[str, Any],
        retry_after_s: float,
        max_records: int = 100,
        max_restarts: int = 3,
    ) -> None:
        self.topic, self.group = topic, group
        self._deliverer = deliverer
        self._max_records = max_records
        self._telemetry = telemetry
        self._consumer_options = consumer_options
        self._retry_after_s = retry_after_s
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = False
        self._stopping = False
        self._max_restarts = max_restarts
        self._failures = 0  # consecutive failures of the loop itself
        self._dead = False
        # Partitions whose next record is being delivered again: since when (monotonic).
        self._failing_since: dict[int, float] = {}

    def running(self) -> bool:
        """Whether the loop's task is alive."""
        return self._task is not None and not self._task.done()

    def dead(self) -> bool:
        """Whether the loop failed more than ``max_restarts`` times in a row and gave up."""
        return self._dead

    async def start(self) -> None:
        """Join the group and start the loop; starting a running loop does nothing."""
        if self.running():
            return  # a second consumer would join the group again
        self._stopping = False
        self._failures, self._dead = 0, False
        self.consumer = self._make_consumer()
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consume {self.group}:{self.topic}")

    def _make_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            self.topic,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._consumer_options,
        )

    async def stop(self, graceful_timeout_s: float) -> bool:
        """Let the record in flight finish (or cancel it after the timeout), leave the group.

        Returns False when a record in flight had to be cancelled.
        """
        self._stopping = True
        task, consumer = self._task, self.consumer
        clean = True
        if task is not None:
            if self._idle:
                task.cancel()  # waiting for a record or a retry: nothing in flight
            else:
                _, pending = await asyncio.wait({task}, timeout=graceful_timeout_s)
                if pending:
                    log.warning(
                        "a record is still in flight at stop; it will be redelivered",
                        extra={"topic": self.topic, "group": self.group},
                    )
                    task.cancel()
                    clean = False
            await asyncio.wait({task})  # done, cancelled, or failed (and logged by _run)
            if not task.cancelled():
                task.exception()  # retrieved: a failure was logged when the loop stopped
        if consumer is not None:
            await consumer.stop()  # leaves the group at once, so partitions move on
        self._task = self.consumer = None
        return clean

    async def _run(self) -> None:
        renew = False
        while True:
            try:
                if renew:
                    await self._renew_consumer()
                await self._consume()
            except Exception as exc:
                # The loop handles what Kafka and handlers raise; anything else is a defect or
                # a broken dependency. It restarts from the committed offsets a few times; then
                # liveness fails (dead()) instead of the process idling with a dead loop.
                self._failures += 1
                self._telemetry.consumer_error(self.topic, self.group, "loop", exc)
                extra = {"topic": self.topic, "group": self.group, "error_type": type(exc).__name__}
                if self._failures > self._max_restarts or self._stopping:
                    self._dead = not self._stopping
                    log.error("consume loop stopped; liveness fails", extra=extra)
                    raise
                log.error("consume loop failed, restarting it", extra=extra)
                self._idle = True  # nothing in flight: a stop may cancel the wait
                await asyncio.sleep(self._retry_after_s * self._failures)
                self._idle = False
                renew = True
            else:
                return

    async def _renew_consumer(self) -> None:
        """Replace the consumer: the new one joins the group and starts at the committed offsets.

        What the old one fetched and did not commit comes again; the old one may be broken, so
        its stop is bounded and its failure ignored.
        """
        old, self.consumer = self.consumer, None
        if old is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_OLD_CONSUMER_STOP_S):
                    await old.stop()
        consumer = self._make_consumer()
        await consumer.start()
        self.consumer = consumer

    async def _consume(self) -> None:
        consumer, telemetry = self.consumer, self._telemetry
        assert consumer is not None
        topic, group = self.topic, self.group
        while not self._stopping:
            self._idle = True
            try:
                fetched = await consumer.getmany(
                    timeout_ms=_POLL_WAIT_MS, max_records=self._max_records
                )
            except KafkaError as exc:
                telemetry.consumer_error(topic, group, "poll", exc)
                log.warning(
                    "fetch failed, will retry",
                    extra={"topic": topic, "group": group, "error_type": type(exc).__name__},
                )
                await asyncio.sleep(self._retry_after_s)
                continue
            finally:
                self._idle = False
            if self._stopping:
                return  # not started, not committed: the group's next owner gets them
            if fetched:
                await self._handle(consumer, fetched)
                self._failures = 0

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        """Deliver and commit a fetched batch, partition by partition, record by record.

        The consumer's partitions are paused meanwhile, so the next fetch leaves when the batch
        is through (see :func:`_fetch_after_batch`).
        """
        with _fetch_after_batch(consumer):
            await self._handle_batch(consumer, fetched)

    async def _handle_batch(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        batch = [
            (partition, [raw_record(message) for message in messages])
            for partition, messages in fetched.items()
        ]
        try:
            delivery = await self._deliverer([record for _, records in batch for record in records])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the guard could not be asked: deliver the batch again
            self._telemetry.consumer_error(self.topic, self.group, "prepare", exc)
            log.warning(
                "batch not prepared, will redeliver",
                extra={"topic": self.topic, "group": self.group, "error_type": type(exc).__name__},
            )
            _rewind(consumer, batch)
            await self._pause()
            return
        try:
            await self._deliver_all(consumer, delivery, batch)
        finally:
            await self._finish(delivery)

    async def _deliver_all(
        self,
        consumer: AIOKafkaConsumer,
        delivery: BatchDelivery,
        batch: list[tuple[TopicPartition, list[RawRecord]]],
    ) -> None:
        deliver = delivery.deliver
        telemetry, topic, group = self._telemetry, self.topic, self.group
        for index, (partition, records) in enumerate(batch):
            for position, record in enumerate(records):
                if self._stopping:
                    return  # the record in flight was committed; the next owner gets the rest
                if partition not in consumer.assignment():
                    break  # taken away meanwhile: its next owner starts from the last commit
                try:
                    await deliver(record)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # deliver raises only when the record must come again
                    telemetry.consumer_error(topic, group, "redeliver", exc)
                    self._note_stalled(record.partition)
                    log.warning(
                        "record not handled, will redeliver",
                        extra={
                            "topic": topic,
                            "partition": record.partition,
                            "offset": record.offset,
                            "group": group,
                            "error_type": type(exc).__name__,
                        },
                    )
                    _rewind(consumer, [(partition, records[position:]), *batch[index + 1 :]])
                    await self._pause()
                    return
                if self._failing_since:
                    self._flowing(record.partition)
                if not await self._commit(consumer, partition, record):
                    # The partition's next owner may get the record before the batch ends:
                    # the marks so far should be there when it asks.
                    await self._finish(delivery)

    async def _pause(self) -> None:
        """Wait before meeting the records again; a stop may cancel it: nothing is in flight."""
        self._idle = True
        await asyncio.sleep(self._retry_after_s)
        self._idle = False

    def _note_stalled(self, partition: int) -> None:
        """The partition's next record comes again: how long it has been stuck (a metric)."""
        now = time.monotonic()
        since = self._failing_since.setdefault(partition, now)
        self._telemetry.stalled(self.topic, self.group, partition, now - since)

    def _flowing(self, partition: int) -> None:
        """A record of the partition got through: it is not stalled any more."""
        if self._failing_since.pop(partition, None) is not None:
            self._telemetry.stalled(self.topic, self.group, partition, 0.0)

    async def _finish(self, delivery: BatchDelivery) -> None:
        """Let the batch write its done marks; its records are committed whatever happens."""
        try:
            await delivery.finish()
        except Exception as exc:
            # Committed records are not delivered again; only a copy published again upstream
            # would run its handler a second time (its outputs are dropped downstream).
            self._telemetry.consumer_error(self.topic, self.group, "mark", exc)
            log.warning(
                "done marks not written",
                extra={"topic": self.topic, "group": self.group, "error_type": type(exc).__name__},
            )

    async def _commit(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, record: RawRecord
    ) -> bool:
        """Commit ``offset + 1`` for the record's partition; False when the commit failed."""
        telemetry, topic, group = self._telemetry, self.topic, self.group
        with contextlib.suppress(IllegalStateError):  # unless the partition just moved
            highwater = consumer.highwater(partition)
            if highwater is not None:
                telemetry.handled(topic, group, record.partition, highwater - record.offset - 1)
        try:
            await consumer.commit({partition: record.offset + 1})
        except (KafkaError, IllegalStateError) as exc:
            # A rebalance took the partition; its next owner redelivers the record and the
            # idempotency guard recognises it.
            telemetry.consumer_error(topic, group, "commit", exc)
            log.info(
                "offset commit failed",
                extra={"topic": topic, "group": group, "error_type": type(exc).__name__},
            )
            return False
        return True


@contextlib.contextmanager
def _fetch_after_batch(consumer: AIOKafkaConsumer) -> Iterator[None]:
    """Pause the consumer's partitions while a batch is handled; resume those it still holds.

    ``getmany`` hands over everything fetched, and aiokafka sends the next fetch at once, while
    the batch's first handler runs. That fetch ahead saves at most one round trip per batch,
    and a handler here spends longer than that publishing and committing each record. Meanwhile
    its request and response compete with the handler for the event loop and the broker: the
    handler's publish and commit answer later, and records that arrive during the batch wait
    for the fetch ahead to end, for the whole ``fetch_max_wait_ms`` where the broker answers a
    waiting fetch only then (Tansu). So the loop fetches when the batch is through, as a
    consumer taking one record at a time with ``getone`` does: a record fetched ahead is not
    handled any sooner.

    Pausing drops nothing: the batch was taken whole, and what a fetch already on its way
    brings is kept for the next ``getmany``. A partition taken away meanwhile is not resumed:
    it is no longer ours, and one assigned meanwhile was never paused.
    """
    consumer.pause(*consumer.assignment())
    try:
        yield
    finally:
        consumer.resume(*consumer.paused())


def raw_record(message: ConsumerRecord[bytes, bytes]) -> RawRecord:
    """A consumed record as delivery takes it: undecoded, its headers a tuple."""
    return build_frozen(
        RawRecord,
        {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": message.key,
            "value": message.value,
            "headers": tuple(message.headers),
        },
    )


def _rewind(
    consumer: AIOKafkaConsumer, pending: Sequence[tuple[TopicPartition, list[RawRecord]]]
) -> None:
    """Seek each partition back to its first record not handled, so none is skipped."""
    for partition, records in pending:
        if records:
            with contextlib.suppress(IllegalStateError):  # the partition moved on meanwhile
                consumer.seek(partition, records[0].offset)
