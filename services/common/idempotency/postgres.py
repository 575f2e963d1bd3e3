"""The PostgreSQL guard: production's, one table shared by a consumer's replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from radstream.common.errors import TransientError
from radstream.common.idempotency.base import (
    COMPLETED_AT_INDEX,
    PRUNE_CHUNK,
    TABLE,
    Claim,
)
from radstream.common.postgres import ReconnectingConnection

# PostgreSQL's column defaults to now().
_PG_MARK_DONE = f"INSERT INTO {TABLE} (scope, event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
_PG_PRUNE = (
    f"DELETE FROM {TABLE} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {TABLE} "
    "WHERE completed_at < %s ORDER BY completed_at LIMIT %s))"
)
_PG_MARK_ALL_DONE = (
    f"INSERT INTO {TABLE} (scope, event_id) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING"
)


class PostgresIdempotencyGuard:
    """PostgreSQL-backed guard (psycopg 3), for replicas that share one table.

    A lost connection is a :class:`TransientError` (the record is redelivered, not
    dead-lettered) and the next call reconnects.
    """

    paramstyle: Literal["qmark", "format"] = "format"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pg = ReconnectingConnection(
            dsn,
            ddl=f"CREATE TABLE IF NOT EXISTS {TABLE} (scope TEXT NOT NULL, "
            "event_id TEXT NOT NULL, completed_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
            f"PRIMARY KEY (scope, event_id)); {COMPLETED_AT_INDEX}",
            unavailable=lambda: TransientError("PostgreSQL idempotency store unavailable"),
        )
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Connect and create the table if needed."""
        async with self._lock:
            await self._pg.connection()

    async def close(self) -> None:
        """Close the connection."""
        await self._pg.close()

    async def is_done(self, scope: str, event_id: str) -> bool:
        """Whether ``scope`` already finished ``event_id``."""
        async with self._lock, self._pg.session() as conn:
            cur = await conn.execute(
                f"SELECT 1 FROM {TABLE} WHERE scope=%s AND event_id=%s", (scope, event_id)
            )
            return await cur.fetchone() is not None

    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` ``scope`` already finished, in one round trip."""
        async with self._lock, self._pg.session() as conn:
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
        async with self._lock, self._pg.session() as conn:
            if not claim.staged:
                cur = await conn.execute(_PG_MARK_DONE, (claim.scope, claim.event_id))
                return bool(cur.rowcount == 1)
            async with conn.transaction():
                cur = await conn.execute(_PG_MARK_DONE, (claim.scope, claim.event_id))
                if cur.rowcount != 1:
                    return False  # nothing was written: leaving the block commits a no-op
                for sql, params in claim.staged:
                    await conn.execute(sql, params)
        return True

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        """Mark ``event_ids`` done: one autocommitted statement, one round trip."""
        if not event_ids:
            return
        async with self._lock, self._pg.session() as conn:
            await conn.execute(_PG_MARK_ALL_DONE, (scope, list(event_ids)))

    async def prune(self, completed_before: datetime, *, chunk: int = PRUNE_CHUNK) -> int:
        """Delete marks completed before ``completed_before``, one chunk per statement."""
        pruned = 0
        while True:
            async with self._lock, self._pg.session() as conn:
                cur = await conn.execute(_PG_PRUNE, (completed_before, chunk))
            deleted: int = cur.rowcount
            pruned += deleted
            if deleted < chunk:
                return pruned

    async def oldest_mark(self) -> datetime | None:
        """When the oldest mark was completed (the ``completed_at`` index's first entry)."""
        async with self._lock, self._pg.session() as conn:
            cur = await conn.execute(f"SELECT min(completed_at) FROM {TABLE}")
            row = await cur.fetchone()
        oldest: datetime | None = None if row is None else row[0]
        return oldest

    async def check(self) -> None:
        """Raise if PostgreSQL cannot be reached."""
        await self.is_done("radstream.check", "-")
