"""What every idempotency store is: the guard protocol, the claim, and the table they share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from radstream.common.errors import RadstreamError, TransientError

TABLE = "radstream_processed_events"
# One row per (scope, partition): the records a consumer started last there, and what the
# records at its head cost so far (consumers that died with it in flight, when it began failing).
ATTEMPTS_TABLE = "radstream_delivery_attempts"
COMPLETED_AT_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_completed_at ON {TABLE} (completed_at)"
# The attempt log's statements, the same on both engines ("?" placeholders: the PostgreSQL
# guard swaps in "%s"). One statement per partition of a batch: the crash is counted against
# the partition's first record only when another owner started a range holding it and never
# released it.
ATTEMPT_STARTED = (
    f"INSERT INTO {ATTEMPTS_TABLE} AS a (scope, kafka_partition, first_offset, last_offset, "
    "owner, crash_offset, crashes) VALUES (?, ?, ?, ?, ?, ?, 0) "
    "ON CONFLICT (scope, kafka_partition) DO UPDATE SET crashes = CASE "
    "WHEN a.owner IS NOT NULL AND a.owner <> excluded.owner "
    "AND excluded.first_offset BETWEEN a.first_offset AND a.last_offset "
    "THEN (CASE WHEN a.crash_offset = excluded.first_offset THEN a.crashes ELSE 0 END) + 1 "
    "WHEN a.crash_offset = excluded.first_offset THEN a.crashes ELSE 0 END, "
    "crash_offset = excluded.first_offset, first_offset = excluded.first_offset, "
    "last_offset = excluded.last_offset, owner = excluded.owner RETURNING crashes"
)
ATTEMPT_FAILING_SINCE = (
    f"INSERT INTO {ATTEMPTS_TABLE} AS a (scope, kafka_partition, first_offset, last_offset, "
    "failing_offset, failing_since) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (scope, kafka_partition) DO UPDATE SET failing_since = CASE "
    "WHEN a.failing_offset = excluded.failing_offset THEN a.failing_since "
    "ELSE excluded.failing_since END, failing_offset = excluded.failing_offset "
    "RETURNING failing_since"
)
ATTEMPT_RELEASE = f"UPDATE {ATTEMPTS_TABLE} SET owner = NULL WHERE owner = ?"
# Marks deleted per statement when pruning: short enough that consumers' marks wait little.
PRUNE_CHUNK = 1000
SqlParams = Sequence[object]


class IdempotencyStoreError(TransientError):
    """The idempotency store failed a read or a write: the store is at fault, never the event.

    Delivery never dead-letters an event for it, however long it lasts: the record waits
    uncommitted, and readiness reports the store.
    """


class StagedEffectError(RadstreamError):
    """A statement the handler staged on its claim failed: the handler's failure, not the store's.

    Delivery retries it and then dead-letters the event like any other handler failure.
    """

    def __init__(self, error_type: str) -> None:
        super().__init__(
            f"a statement the handler staged failed ({error_type}); its effects were rolled back "
            "with the done mark"
        )


@dataclass(kw_only=True)
class Claim:
    """A handler's hold on one event: the side effects to commit together with the done mark."""

    scope: str
    event_id: str
    paramstyle: Literal["qmark", "format"]
    staged: list[tuple[str, SqlParams]] = field(default_factory=list)

    def stage(self, sql: str, params: SqlParams = ()) -> None:
        """Queue a statement to run in the transaction that marks the event done.

        Use the guard's placeholder style (``paramstyle``: ``?`` for SQLite, ``%s`` for
        PostgreSQL).
        """
        self.staged.append((sql, tuple(params)))


class IdempotencyGuard(Protocol):
    """What the delivery layer needs from an idempotency store."""

    paramstyle: Literal["qmark", "format"]

    async def open(self) -> None:
        """Connect and create the table if needed."""

    async def close(self) -> None:
        """Release connections."""

    async def is_done(self, scope: str, event_id: str) -> bool:
        """Whether ``scope`` (a consumer group + topic) already finished ``event_id``."""

    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` ``scope`` already finished: one query for a fetched batch."""

    async def complete(self, claim: Claim) -> bool:
        """Commit the claim's staged effects and its done mark; False if it was already done."""

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        """Mark events done that staged nothing, in one transaction (ids already done are kept)."""

    async def prune(self, completed_before: datetime, *, chunk: int = PRUNE_CHUNK) -> int:
        """Delete the marks of every scope completed before ``completed_before``; how many went.

        Deletes ``chunk`` marks per statement. An event whose mark is gone runs its handler
        again if it ever comes again.
        """

    async def oldest_mark(self) -> datetime | None:
        """When the oldest mark was completed (None when there is none): how far back it knows."""

    async def check(self) -> None:
        """Raise if the store cannot be reached (readiness probes, ``radstream doctor``)."""


def claim_for(guard: IdempotencyGuard, scope: str, event_id: str) -> Claim:
    """Start a claim on ``event_id`` for ``scope`` with the guard's placeholder style."""
    return Claim(scope=scope, event_id=event_id, paramstyle=guard.paramstyle)


@dataclass(frozen=True, kw_only=True)
class PartitionStart:
    """The records of one partition a batch starts and who starts them (see :class:`AttemptLog`)."""

    partition: int
    first_offset: int
    last_offset: int
    owner: str


@runtime_checkable
class AttemptLog(Protocol):
    """What a record's attempts cost so far, kept where a crash cannot lose it.

    Retry counts in memory die with the process, so a record that kills its consumer (out of
    memory, a segfault in a native library) would be delivered again for ever. Before a batch's
    records of a partition are handed over, the consumer writes which offsets it starts and who
    it is (one write per partition per batch); the next consumer that meets the partition's
    first record inside a range another consumer started and never left counts a crash against
    that record alone: the records after it in the batch were never started.
    """

    async def started(
        self, scope: str, partition: int, first_offset: int, last_offset: int, owner: str
    ) -> int:
        """Note that ``owner`` starts these offsets; how often ``first_offset`` killed a consumer.

        A crash is counted when the range was last started by another owner that did not
        release it and ``first_offset`` lies in it (that consumer died with it in flight).
        """

    async def failing_since(
        self, scope: str, partition: int, offset: int, now: datetime
    ) -> datetime:
        """When the record at ``offset`` first failed for want of a dependency (else ``now``)."""

    async def release(self, owner: str) -> None:
        """``owner`` stops cleanly: what it started and left was not in flight when it stopped."""


@runtime_checkable
class BatchStartLog(IdempotencyGuard, AttemptLog, Protocol):
    """A guard whose store keeps the attempt log too, so a batch's start costs one round trip.

    A fetched batch needs two answers before its first handler runs: which of its events are
    done, and the crashes of its first partition's first record. Where the store is remote
    (PostgreSQL) they come in one statement.
    """

    async def start_batch(
        self, scope: str, event_ids: Sequence[str], start: PartitionStart
    ) -> tuple[set[str], int]:
        """``done_among(scope, event_ids)`` and ``started`` for ``start``, at once.

        Only the batch's first partition is started here: the others are started as their
        first record comes, so a crash on one partition's record never counts against another's.
        """
