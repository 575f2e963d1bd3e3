"""``radstream replay``: dead letters back to the topic they came from, once their cause is fixed.

A dead letter (:class:`radstream.common.delivery.DeadLetter`) is the original record (key, value
bytes, every original header, ``ce_id`` included) followed by ``x-radstream-*`` headers that say
what went wrong. Replaying one re-publishes the original, without those headers, to
``x-radstream-original-topic``. It keeps its ``ce_id``: the group that dead-lettered it never
marked it done, so its idempotency guard lets it through, and the groups that had processed it
drop it as a duplicate.

The replay group (``radstream-replay`` unless told otherwise) remembers how far it got: a run
reads each partition of the dead-letter topic from the group's committed offset up to the end as
it was when the run started, replays the letters the filters select, and commits its position
past every letter it looked at once the replays before it were acknowledged. A letter passed
over by the filters is not looked at again unless a later run starts ``--from-beginning``. A dry
run reports what a run would do and neither publishes nor commits.

Nothing here prints an identifier from a letter's key or body: a report names the letter by its
partition and offset, its ``ce_id`` and what the dead-letter headers say.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from radstream.common import delivery
from radstream.common.delivery import ERROR_HEADER_PREFIX, KIND_HANDLER_FAILED
from radstream.common.envelope import H_ID
from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.kafka_client import aiokafka_options
from radstream.common.settings import KafkaSettings
from radstream.common.topics import DLQ_SUFFIX

DEFAULT_GROUP = "radstream-replay"
REPLAYED_FROM = ERROR_HEADER_PREFIX + "replayed-from"
# The kinds (x-radstream-error-kind) a run may select: handler-failed, poison, crashed (the
# consumer died with the record in flight; replay once the cause, e.g. a memory limit, is
# fixed) and retry-time-exhausted (a dependency was away for too long).
KINDS = delivery.KINDS


class Action(StrEnum):
    """What a run did (or, dry, would do) with one dead letter."""

    REPLAYED = "replayed"
    SKIPPED = "skipped"  # a dead letter the filters did not select
    REFUSED = "refused"  # not a dead letter of this topic: never published anywhere


@dataclass(frozen=True, kw_only=True)
class Letter:
    """A dead letter as its ``x-radstream-*`` headers describe it."""

    partition: int
    offset: int
    event_id: str | None
    original_topic: str | None
    kind: str | None
    error_type: str | None
    attempts: str | None
    group: str | None
    failed_at: str | None
    original_headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which dead letters to replay: by kind, error type and the group that gave up."""

    kinds: frozenset[str] = frozenset({KIND_HANDLER_FAILED})
    error_type: str | None = None
    group: str | None = None

    def reason_to_skip(self, letter: Letter) -> str | None:
        """Why ``letter`` is not selected, or None when it is."""
        if letter.kind not in self.kinds:
            return f"kind {letter.kind} (not selected: --kind)"
        if self.error_type is not None and not _same_type(letter.error_type, self.error_type):
            return f"error type {letter.error_type} (not selected: --error-type)"
        if self.group is not None and letter.group != self.group:
            return f"group {letter.group} (not selected: --group-of)"
        return None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One dead letter and what became of it."""

    letter: Letter
    action: Action
    reason: str = ""

    def line(self, dlq: str) -> str:
        """A one-line report without an identifier from the record's key or body."""
        letter = self.letter
        where = f"{dlq}[{letter.partition}]@{letter.offset}"
        detail = (
            f"ce_id={letter.event_id} kind={letter.kind} error={letter.error_type} "
            f"attempts={letter.attempts} group={letter.group} failed_at={letter.failed_at}"
        )
        if self.action is Action.REPLAYED:
            return f"{self.action:<8} {where} -> {letter.original_topic} {detail}"
        return f"{self.action:<8} {where} {self.reason}; {detail}"

    def as_dict(self, dlq: str) -> dict[str, object]:
        """The report as JSON-ready data."""
        letter = self.letter
        return {
            "action": str(self.action),
            "reason": self.reason,
            "dlq": dlq,
            "partition": letter.partition,
            "offset": letter.offset,
            "ce_id": letter.event_id,
            "original_topic": letter.original_topic,
            "kind": letter.kind,
            "error_type": letter.error_type,
            "attempts": letter.attempts,
            "group": letter.group,
            "failed_at": letter.failed_at,
        }


def read_letter(partition: int, offset: int, headers: Sequence[tuple[str, bytes]]) -> Letter:
    """Split a dead-letter record's headers into the original ones and what went wrong."""
    ours: dict[str, str] = {}
    original: list[tuple[str, bytes]] = []
    for name, value in headers:
        if name.startswith(ERROR_HEADER_PREFIX):
            ours[name.removeprefix(ERROR_HEADER_PREFIX)] = (value or b"").decode("utf-8", "replace")
        else:
            original.append((name, value))
    ids = [value for name, value in original if name == H_ID and value]
    return Letter(
        partition=partition,
        offset=offset,
        event_id=ids[-1].decode("utf-8", "replace") if ids else None,
        original_topic=ours.get("original-topic"),
        kind=ours.get("error-kind"),
        error_type=ours.get("error-type"),
        attempts=ours.get("attempts"),
        group=ours.get("consumer-group"),
        failed_at=ours.get("failed-at"),
        original_headers=tuple(original),
    )


def refusal(letter: Letter, dlq: str) -> str | None:
    """Why ``letter`` must not be published anywhere, or None when it may be replayed."""
    if letter.original_topic is None or letter.kind is None:
        return "not a radstream dead letter (no x-radstream-original-topic or -error-kind)"
    if letter.original_topic + DLQ_SUFFIX != dlq:
        return f"its original topic {letter.original_topic} is not the one {dlq} belongs to"
    return None


def _same_type(actual: str | None, wanted: str) -> bool:
    """``wanted`` names ``actual`` by its qualified or its bare class name."""
    return actual is not None and (actual == wanted or actual.endswith("." + wanted))


async def replay(
    settings: KafkaSettings,
    dlq: str,
    *,
    selection: Selection,
    group: str = DEFAULT_GROUP,
    from_beginning: bool = False,
    dry_run: bool = False,
) -> AsyncIterator[Outcome]:
    """Replay the selected dead letters of ``dlq``, yielding each letter's outcome in order.

    Raises :class:`TransientError` when a replay is not acknowledged: the run stops there, and
    its position stays before that letter, so the next run tries it again.
    """
    if not dlq.endswith(DLQ_SUFFIX):
        raise MisconfiguredError(f"{dlq} is not a dead-letter topic (no {DLQ_SUFFIX} suffix)")
    options = aiokafka_options(settings)
    consumer = AIOKafkaConsumer(
        group_id=group,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **options,
    )
    producer = (
        None
        if dry_run
        else AIOKafkaProducer(acks="all", enable_idempotence=settings.enable_idempotence, **options)
    )
    try:
        await consumer.start()
        if producer is not None:
            await producer.start()
        partitions = await _partitions(consumer, dlq)
        ends = await _start_positions(consumer, partitions, from_beginning=from_beginning)
        async for record in _letters_up_to(consumer, ends):
            outcome = _decide(record, dlq, selection)
            if producer is not None:  # not a dry run
                if outcome.action is Action.REPLAYED:
                    await _publish(producer, outcome.letter, record, dlq)
                tp = TopicPartition(dlq, record.partition)
                await consumer.commit({tp: record.offset + 1})
            yield outcome
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()


def _decide(record: ConsumerRecord[bytes, bytes], dlq: str, selection: Selection) -> Outcome:
    letter = read_letter(record.partition, record.offset, list(record.headers))
    refused = refusal(letter, dlq)
    if refused is not None:
        return Outcome(letter=letter, action=Action.REFUSED, reason=refused)
    skip = selection.reason_to_skip(letter)
    if skip is not None:
        return Outcome(letter=letter, action=Action.SKIPPED, reason=skip)
    return Outcome(letter=letter, action=Action.REPLAYED)


async def _publish(
    producer: AIOKafkaProducer,
    letter: Letter,
    record: ConsumerRecord[bytes, bytes],
    dlq: str,
) -> None:
    assert letter.original_topic is not None  # refusal() let only those through
    headers = [
        *letter.original_headers,
        (REPLAYED_FROM, f"{dlq}/{record.partition}/{record.offset}".encode()),
    ]
    try:
        await producer.send_and_wait(
            letter.original_topic, record.value, key=record.key, headers=headers
        )
    except KafkaError as exc:
        raise TransientError(
            f"replay of {dlq}[{record.partition}]@{record.offset} to {letter.original_topic} "
            f"not acknowledged: {type(exc).__name__}"
        ) from exc


async def _partitions(consumer: AIOKafkaConsumer, dlq: str) -> list[TopicPartition]:
    known = consumer.partitions_for_topic(dlq)
    if not known:
        await consumer.force_metadata_update()
        known = consumer.partitions_for_topic(dlq)
    if not known:
        raise MisconfiguredError(f"the cluster has no topic {dlq}")
    return [TopicPartition(dlq, partition) for partition in sorted(known)]


async def _start_positions(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], *, from_beginning: bool
) -> dict[TopicPartition, int]:
    """Seek each partition to the group's position (or the start); return where each ends now."""
    consumer.assign(partitions)
    for tp in partitions:
        committed = None if from_beginning else await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    return ends


async def _letters_up_to(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """The records before ``ends``, partition by partition in offset order."""
    pending = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, records in batch.items():
            for record in records:
                if record.offset >= ends[tp]:
                    break
                yield record
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
