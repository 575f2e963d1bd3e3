"""``radstream tail``: read a topic and show decoded events, like kcat for radstream contracts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from radstream.common.kafka_client import aiokafka_options
from radstream.common.settings import KafkaSettings


async def records(
    settings: KafkaSettings,
    topics: Sequence[str],
    *,
    from_beginning: bool,
    max_events: int | None,
    idle_timeout_s: float | None,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Yield records of ``topics`` without joining a consumer group (nothing is committed).

    Stops after ``max_events`` records, or when nothing arrived for ``idle_timeout_s``.
    """
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **aiokafka_options(settings),
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            await consumer.force_metadata_update()
            partitions = [
                TopicPartition(topic, partition)
                for topic in topics
                for partition in sorted(consumer.partitions_for_topic(topic) or ())
            ]
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        seen = 0
        last = time.monotonic()
        while max_events is None or seen < max_events:
            batch = await consumer.getmany(timeout_ms=200)
            items = sorted(
                (record for part in batch.values() for record in part),
                key=lambda record: record.timestamp,
            )
            for record in items:
                yield record
                seen += 1
                last = time.monotonic()
                if max_events is not None and seen >= max_events:
                    return
            if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                return
    finally:
        await consumer.stop()
