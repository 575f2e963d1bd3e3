"""The PostgreSQL guard: production's, one table shared by a consumer's replicas."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Literal

from radstream.common.idempotency.base import (
    ATTEMPT_FAILING_SINCE,
    ATTEMPT_RELEASE,
    ATTEMPT_STARTED,
    ATTEMPTS_TABLE,
    COMPLETED_AT_INDEX,
    PRUNE_CHUNK,
    TABLE,
    Claim,
    IdempotencyStoreError,
    PartitionStart,
    StagedEffectError,
)
from radstream.common.sql import AsyncPostgresEngine, connection_lost
from radstream.common.store_health import WriteFailures

# PostgreSQL's column defaults to now().
_PG_MARK_DONE = f"INSERT INTO {TABLE} (scope, event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
_PG_PRUNE = (
    f"DELETE FROM {TABLE} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {TABLE} "
    "WHERE completed_at < %s ORDER BY completed_at LIMIT %s))"
)
_PG_MARK_ALL_DONE = (
    f"INSERT INTO {TABLE} (scope, event_id) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING"
)
_PG_CREATE_ATTEMPTS = (
    f"CREATE TABLE IF NOT EXISTS {ATTEMPTS_TABLE} (scope TEXT NOT NULL, "
    "kafka_partition INTEGER NOT NULL, first_offset BIGINT NOT NULL, "
    "last_offset BIGINT NOT NULL, owner TEXT, crash_offset BIGINT, "
    "crashes INTEGER NOT NULL DEFAULT 0, failing_offset BIGINT, failing_since TIMESTAMPTZ, "
    "PRIMARY KEY (scope, kafka_partition))"
)
# The attempt log's statements (see base), each one autocommitted statement, one round trip.
_PG_STARTED = ATTEMPT_STARTED.replace("?", "%s")
_PG_FAILING_SINCE = ATTEMPT_FAILING_SINCE.replace("?", "%s")
_PG_RELEASE = ATTEMPT_RELEASE.replace("?", "%s")
# A batch's start in one statement: the first partition's ``started`` upsert and the batch's
# done marks. A data-modifying CTE runs whether or not the query reads it; the marks are read
# from another table, so the upsert's snapshot does not matter to them.
_PG_START_BATCH = (
    f"WITH started AS ({_PG_STARTED}) SELECT (SELECT crashes FROM started), "
    f"ARRAY(SELECT event_id FROM {TABLE} WHERE scope=%s AND event_id = ANY(%s))"
)


def store_failure(error: Exception) -> bool:
    """Whether an error of one of the guard's own statements is the store's: every psycopg one.

    A handler's staged statement that fails raises :class:`StagedEffectError` instead.
    """
    try:
        import psycopg  # noqa: PLC0415 -- optional extra
    except ImportError:
        return False
    return isinstance(error, psycopg.Error)


class PostgresIdempotencyGuard:
    """PostgreSQL-backed guard (psycopg 3), for replicas that share one table.

    A lost or closed connection, or any other failure of the server's, is an
    :class:`IdempotencyStoreError` (the record is redelivered, never dead-lettered) and the
    next call reconnects.
    """

    paramstyle: Literal["qmark", "format"] = "format"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        # Every failure of the guard's own statements is the store's (see store_failure).
        self._pg = AsyncPostgresEngine(
            dsn,
            ddl=f"CREATE TABLE IF NOT EXISTS {TABLE} (scope TEXT NOT NULL, "
            "event_id TEXT NOT NULL, completed_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
            f"PRIMARY KEY (scope, event_id)); {COMPLETED_AT_INDEX}; {_PG_CREATE_ATTEMPTS}",
            unavailable=lambda problem: IdempotencyStoreError(f"idempotency store: {problem}"),
            every_error=True,
        )
        self._lock = asyncio.Lock()
        self.write_failures = WriteFailures()

    @contextlib.asynccontextmanager
    async def _session(self, *, write: bool = False) -> AsyncIterator[Any]:
        """The connection under the lock; the store's failures are IdempotencyStoreError.

        Writes count their outcome for readiness (:meth:`check`).
        """
        try:
            async with self._lock, self._pg.session() as conn:
                yield conn
        except IdempotencyStoreError as exc:
            if write:
                self.write_failures.failed(exc)
            raise
        if write:
            self.write_failures.succeeded()

    async def open(self) -> None:
        """Connect and create the table if needed."""
        async with self._lock:
            await self._pg.connection()

    async def close(self) -> None:
        """Close the connection."""
        await self._pg.close()

    async def is_done(self, scope: str, event_id: str) -> bool:
        """Whether ``scope`` already finished ``event_id``."""
        async with self._session() as conn:
            cur = await conn.execute(
                f"SELECT 1 FROM {TABLE} WHERE scope=%s AND event_id=%s", (scope, event_id)
            )
            return await cur.fetchone() is not None

    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` ``scope`` already finished, in one round trip."""
        async with self._session() as conn:
            cur = await conn.execute(
                f"SELECT event_id FROM {TABLE} WHERE scope=%s AND event_id = ANY(%s)",
                (scope, list(event_ids)),
            )
            return {row[0] for row in await cur.fetchall()}

    async def complete(self, claim: Claim) -> bool:
        """Commit the staged effects and the done mark in one transaction.

        The connection autocommits, so the mark alone is one statement and one round trip; a
        transaction block would add a ``BEGIN`` and a ``COMMIT``, two more.
        """
        async with self._session(write=True) as conn:
            if not claim.staged:
                cur = await conn.execute(_PG_MARK_DONE, (claim.scope, claim.event_id))
                return bool(cur.rowcount == 1)
            async with conn.transaction():
                cur = await conn.execute(_PG_MARK_DONE, (claim.scope, claim.event_id))
                if cur.rowcount != 1:
                    return False  # nothing was written: leaving the block commits a no-op
                for sql, params in claim.staged:
                    try:
                        await conn.execute(sql, params)
                    except Exception as exc:
                        if not store_failure(exc) or connection_lost(exc):
                            raise
                        raise StagedEffectError(type(exc).__name__) from exc
        return True

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        """Mark ``event_ids`` done: one autocommitted statement, one round trip."""
        if not event_ids:
            return
        async with self._session(write=True) as conn:
            await conn.execute(_PG_MARK_ALL_DONE, (scope, list(event_ids)))

    async def prune(self, completed_before: datetime, *, chunk: int = PRUNE_CHUNK) -> int:
        """Delete marks completed before ``completed_before``, one chunk per statement."""
        pruned = 0
        while True:
            async with self._session() as conn:
                cur = await conn.execute(_PG_PRUNE, (completed_before, chunk))
            deleted: int = cur.rowcount
            pruned += deleted
            if deleted < chunk:
                return pruned

    async def oldest_mark(self) -> datetime | None:
        """When the oldest mark was completed (the ``completed_at`` index's first entry)."""
        async with self._session() as conn:
            cur = await conn.execute(f"SELECT min(completed_at) FROM {TABLE}")
            row = await cur.fetchone()
        oldest: datetime | None = None if row is None else row[0]
        return oldest

    async def check(self) -> None:
        """Raise if PostgreSQL cannot be reached, or the last writes all failed."""
        await self.is_done("radstream.check", "-")
        self.write_failures.raise_if_failing(IdempotencyStoreError)

    async def started(
        self, scope: str, partition: int, first_offset: int, last_offset: int, owner: str
    ) -> int:
        """Note the range ``owner`` starts; the crashes its first record caused so far."""
        row = (scope, partition, first_offset, last_offset, owner, first_offset)
        async with self._session(write=True) as conn:
            cur = await conn.execute(_PG_STARTED, row)
            found = await cur.fetchone()
        return int(found[0])

    async def start_batch(
        self, scope: str, event_ids: Sequence[str], start: PartitionStart
    ) -> tuple[set[str], int]:
        """Which of ``event_ids`` are done, and ``start`` noted: one statement, one round trip."""
        row = (
            scope,
            start.partition,
            start.first_offset,
            start.last_offset,
            start.owner,
            start.first_offset,
        )
        async with self._session(write=True) as conn:
            cur = await conn.execute(_PG_START_BATCH, (*row, scope, list(event_ids)))
            found = await cur.fetchone()
        return set(found[1]), int(found[0])

    async def failing_since(
        self, scope: str, partition: int, offset: int, now: datetime
    ) -> datetime:
        """When the record at ``offset`` first failed (written now if it had not)."""
        row = (scope, partition, offset, offset, offset, now)
        async with self._session(write=True) as conn:
            cur = await conn.execute(_PG_FAILING_SINCE, row)
            found = await cur.fetchone()
        since: datetime = found[0]
        return since

    async def release(self, owner: str) -> None:
        """Forget ``owner`` as the one with records in flight: it stopped cleanly."""
        async with self._session(write=True) as conn:
            await conn.execute(_PG_RELEASE, (owner,))
