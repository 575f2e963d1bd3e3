"""The consume loop behind each ``Bus.subscribe``: one record at a time, committed after it.

For each record the loop hands the raw record to the bus's delivery (decode, idempotency guard,
handler, retries, dead letters: :func:`radstream.common.delivery.deliver`) and then commits
``offset + 1`` for its partition. When delivery raises, the event was not at fault and could not
be handled now (a dependency down past the retries, the dead-letter topic unwritable): the loop
does not commit, seeks the partition back to the record, pauses and meets it again. A failed
commit (a rebalance took the partition) is counted and left: the partition's next owner gets
the record again and the idempotency guard recognises it.

A stop is graceful: a record in flight finishes and is committed; a loop that is waiting for a
record or pausing is cancelled, since nothing of it is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from radstream.common.bus_telemetry import BusTelemetry
from radstream.common.delivery import RawRecord

log = logging.getLogger(__name__)


class ConsumeLoop:
    """One topic, one consumer group, one record at a time."""

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        deliver: Callable[[RawRecord], Awaitable[None]],
        telemetry: BusTelemetry,
        consumer_options: dict[str, Any],
        retry_after_s: float,
    ) -> None:
        self.topic, self.group = topic, group
        self._deliver = deliver
        self._telemetry = telemetry
        self._consumer_options = consumer_options
        self._retry_after_s = retry_after_s
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = False
        self._stopping = False

    def running(self) -> bool:
        """Whether the loop's task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Join the group and start the loop; starting a running loop does nothing."""
        if self.running():
            return  # a second consumer would join the group again
        self._stopping = False
        self.consumer = AIOKafkaConsumer(
            self.topic,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._consumer_options,
        )
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consume {self.group}:{self.topic}")

    async def stop(self, graceful_timeout_s: float) -> None:
        """Let the record in flight finish (or cancel it after the timeout), leave the group."""
        self._stopping = True
        task, consumer = self._task, self.consumer
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
            await asyncio.wait({task})  # done, cancelled, or failed (and logged by _run)
            if not task.cancelled():
                task.exception()  # retrieved: a failure was logged when the loop stopped
        if consumer is not None:
            await consumer.stop()  # leaves the group at once, so partitions move on
        self._task = self.consumer = None

    async def _run(self) -> None:
        try:
            await self._consume()
        except Exception as exc:
            # The loop handles what Kafka and handlers raise; anything else is a defect. The
            # service stops being ready (Bus.consuming) instead of idling with a dead loop.
            log.error(
                "consume loop stopped",
                extra={
                    "topic": self.topic,
                    "group": self.group,
                    "error_type": type(exc).__name__,
                },
            )
            raise

    async def _consume(self) -> None:
        consumer, telemetry = self.consumer, self._telemetry
        assert consumer is not None
        topic, group = self.topic, self.group
        retry_after = self._retry_after_s
        while not self._stopping:
            self._idle = True
            try:
                message = await consumer.getone()
            except KafkaError as exc:
                telemetry.consumer_error(topic, group, "poll", exc)
                log.warning(
                    "fetch failed, will retry",
                    extra={"topic": topic, "group": group, "error_type": type(exc).__name__},
                )
                await asyncio.sleep(retry_after)
                continue
            finally:
                self._idle = False
            if self._stopping:
                return  # not started, not committed: the group's next owner gets it
            record = RawRecord(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value,
                headers=tuple(message.headers),
            )
            partition = TopicPartition(message.topic, message.partition)
            try:
                await self._deliver(record)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # deliver raises only when the record must come again
                telemetry.consumer_error(topic, group, "redeliver", exc)
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
                with contextlib.suppress(IllegalStateError):  # the partition moved on meanwhile
                    consumer.seek(partition, record.offset)
                self._idle = True  # a stop may cancel the wait: the record is not committed
                await asyncio.sleep(retry_after)
                self._idle = False
                continue
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
