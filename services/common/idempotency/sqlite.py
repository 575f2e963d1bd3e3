"""The SQLite guard: the embedded default, one file in WAL mode."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from radstream.common.errors import MisconfiguredError
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
from radstream.common.sql import SqliteEngine, SqliteOptions, write_transaction
from radstream.common.store_health import WriteFailures

# SQLite writes the time itself: one Python datetime fewer to make and format per record.
_MARK_DONE = (
    f"INSERT OR IGNORE INTO {TABLE} (scope, event_id, completed_at) "
    "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
)
# Each mark dirties a b-tree leaf, which a commit appends to the WAL whole, one write for the
# frame header and one for the page. With 1 KiB pages a leaf holds a few marks, so a quarter of
# the commits also split a page and write three or four frames; with SQLite's default 4 KiB,
# splits are four times rarer: 2.8 writes per mark instead of 4.5. Warm, both cost the same
# (~13 us a mark); under load each system call costs several times more, and 4 KiB took about
# 18 us of CPU per event off the bus benchmark (five runs side by side). The checkpoint threshold
# counts pages, so a checkpoint (two fsyncs, on the thread that commits) comes at ~10 MiB of WAL
# either way. A page size applies only to a file created with it; older guard files keep theirs.
_PAGE_SIZE = 4096
_CHECKPOINT_PAGES = 2_500
# WAL + NORMAL survives a killed process (the SIGKILL test); FULL would add power-loss
# durability at several times the commit cost.
_OPTIONS = SqliteOptions(
    synchronous="NORMAL", page_size=_PAGE_SIZE, wal_autocheckpoint=_CHECKPOINT_PAGES
)
# Ids per batch query: under SQLite's oldest limit of 999 bound parameters.
_IDS_PER_QUERY = 500
_CREATE_ATTEMPTS = (
    f"CREATE TABLE IF NOT EXISTS {ATTEMPTS_TABLE} (scope TEXT NOT NULL, "
    "kafka_partition INTEGER NOT NULL, first_offset INTEGER NOT NULL, "
    "last_offset INTEGER NOT NULL, owner TEXT, crash_offset INTEGER, "
    "crashes INTEGER NOT NULL DEFAULT 0, failing_offset INTEGER, failing_since TEXT, "
    "PRIMARY KEY (scope, kafka_partition)) WITHOUT ROWID"
)


def store_failure(error: sqlite3.Error) -> bool:
    """Whether ``error``, raised by one of the guard's own statements, is the store's failure.

    It always is (locked, unreadable, corrupt, closed, refusing writes): a handler's staged
    statement that fails raises :class:`StagedEffectError` instead, the handler's failure.
    """
    return isinstance(error, sqlite3.Error)


class SqliteIdempotencyGuard:
    """SQLite-backed guard.

    Its statements take tens of microseconds, less than a hop to a worker thread, so they run
    on the event loop on a connection that never waits for a lock. When another process holds
    the write lock, the call falls back to a dedicated thread whose connection waits for it.
    """

    paramstyle: Literal["qmark", "format"] = "qmark"

    def __init__(self, path: Path) -> None:
        self.path = path
        # Every failure of the guard's own statements is the store's (see store_failure).
        self._sql = SqliteEngine(
            path,
            options=_OPTIONS,
            unavailable=lambda problem: IdempotencyStoreError(f"idempotency store: {problem}"),
            every_error=True,
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idempotency")
        self._db: sqlite3.Connection | None = None  # used on the worker thread only
        self._fast: sqlite3.Connection | None = None  # used on the event loop only
        self.write_failures = WriteFailures()

    async def _call(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            translated = self._sql.translate(exc)
            if translated is None:
                raise
            raise translated from exc

    async def _read(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(connection, *args)`` on the loop's connection, or on the thread if that fails.

        The thread's connection waits for a lock; any other failure there is the store's.
        """
        try:
            return fn(self._require_fast(), *args)
        except sqlite3.Error as exc:
            if not store_failure(exc):
                raise
        return await self._call(fn, self._require(), *args)

    async def _write(self, fn: Any, *args: Any) -> Any:
        """As :meth:`_read`, counting the outcome for readiness (:meth:`check`)."""
        try:
            result = await self._read(fn, *args)
        except IdempotencyStoreError as exc:
            self.write_failures.failed(exc)
            raise
        self.write_failures.succeeded()
        return result

    def _connect(self) -> None:
        db = self._sql.new_connection(busy_timeout_ms=10_000)
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (scope TEXT NOT NULL, event_id TEXT NOT NULL, "
            "completed_at TEXT NOT NULL, PRIMARY KEY (scope, event_id)) WITHOUT ROWID"
        )
        # Marks come in time order, so the index grows at its right edge: about half a
        # microsecond more per mark in batches of 20, nine for a mark on its own.
        db.execute(COMPLETED_AT_INDEX)
        db.execute(_CREATE_ATTEMPTS)
        self._db = db
        self._fast = self._sql.new_connection(busy_timeout_ms=0)

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise MisconfiguredError("idempotency guard used before open()")
        return self._db

    def _require_fast(self) -> sqlite3.Connection:
        if self._fast is None:
            raise MisconfiguredError("idempotency guard used before open()")
        return self._fast

    async def open(self) -> None:
        """Connect and create the table if needed."""
        if self._db is None:
            await self._call(self._connect)

    async def close(self) -> None:
        """Close the connection and its thread."""
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        if self._db is not None:
            await self._call(self._require().close)
            self._db = None
        self._executor.shutdown(wait=True)

    @staticmethod
    def _is_done(db: sqlite3.Connection, scope: str, event_id: str) -> bool:
        row = db.execute(
            f"SELECT 1 FROM {TABLE} WHERE scope=? AND event_id=?", (scope, event_id)
        ).fetchone()
        return row is not None

    async def is_done(self, scope: str, event_id: str) -> bool:
        """Whether ``scope`` already finished ``event_id``."""
        try:
            return self._is_done(self._require_fast(), scope, event_id)
        except sqlite3.Error as exc:  # locked: wait for it off the loop
            if not store_failure(exc):
                raise
        return bool(await self._call(self._is_done, self._require(), scope, event_id))

    @staticmethod
    def _done_among(db: sqlite3.Connection, scope: str, event_ids: Sequence[str]) -> set[str]:
        done: set[str] = set()
        for start in range(0, len(event_ids), _IDS_PER_QUERY):
            chunk = event_ids[start : start + _IDS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT event_id FROM {TABLE} WHERE scope=? AND event_id IN ({marks})",
                (scope, *chunk),
            )
            done.update(row[0] for row in rows)
        return done

    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` ``scope`` already finished, in one query per 500 ids."""
        return set(await self._read(self._done_among, scope, event_ids))

    @staticmethod
    def _complete(db: sqlite3.Connection, claim: Claim) -> bool:
        mark = (claim.scope, claim.event_id)
        if not claim.staged:  # the mark alone: one statement is its own transaction
            return bool(db.execute(_MARK_DONE, mark).rowcount == 1)
        with write_transaction(db):
            if db.execute(_MARK_DONE, mark).rowcount != 1:
                return False  # nothing was written: leaving the block commits a no-op
            for sql, params in claim.staged:
                try:
                    db.execute(sql, params)
                except sqlite3.Error as exc:
                    raise StagedEffectError(type(exc).__name__) from exc
        return True

    async def complete(self, claim: Claim) -> bool:
        """Commit the staged effects and the done mark in one transaction."""
        try:
            completed = self._complete(self._require_fast(), claim)
        except sqlite3.Error as exc:  # locked (or failed): redo it off the loop, waiting
            if not store_failure(exc):
                raise
            return bool(await self._write(self._complete, claim))
        self.write_failures.consecutive = 0
        return completed

    @staticmethod
    def _mark_done(db: sqlite3.Connection, scope: str, event_ids: Sequence[str]) -> None:
        if len(event_ids) == 1:  # one statement is its own transaction
            db.execute(_MARK_DONE, (scope, event_ids[0]))
            return
        with write_transaction(db):
            db.executemany(_MARK_DONE, [(scope, event_id) for event_id in event_ids])

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        """Mark ``event_ids`` done in one transaction."""
        if not event_ids:
            return
        await self._write(self._mark_done, scope, event_ids)

    @staticmethod
    def _prune_chunk(db: sqlite3.Connection, cutoff: str, chunk: int) -> int:
        return int(
            db.execute(
                f"DELETE FROM {TABLE} WHERE (scope, event_id) IN (SELECT scope, event_id "
                f"FROM {TABLE} WHERE completed_at < ? ORDER BY completed_at LIMIT ?)",
                (cutoff, chunk),
            ).rowcount
        )

    async def prune(self, completed_before: datetime, *, chunk: int = PRUNE_CHUNK) -> int:
        """Delete marks completed before ``completed_before``, on the guard's thread.

        Each chunk is its own transaction and its own call on the thread, so the loop's marks
        take the write lock in between, and one that met a chunk's lock and fell back to the
        thread waits for that chunk only.
        """
        db, cutoff = self._require(), _sqlite_time(completed_before)
        pruned = 0
        while True:
            deleted = int(await self._call(self._prune_chunk, db, cutoff, chunk))
            pruned += deleted
            if deleted < chunk:
                return pruned

    @staticmethod
    def _oldest_mark(db: sqlite3.Connection) -> str | None:
        row = db.execute(f"SELECT min(completed_at) FROM {TABLE}").fetchone()
        return None if row is None else row[0]

    async def oldest_mark(self) -> datetime | None:
        """When the oldest mark was completed (the ``completed_at`` index's first entry)."""
        text = await self._read(self._oldest_mark)
        return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))

    async def check(self) -> None:
        """Raise if the database file cannot be read, or its last writes all failed."""
        await self.is_done("radstream.check", "-")
        self.write_failures.raise_if_failing(IdempotencyStoreError)

    @staticmethod
    def _started(db: sqlite3.Connection, *row: object) -> int:
        return int(db.execute(ATTEMPT_STARTED, (*row, row[2])).fetchone()[0])

    async def started(
        self, scope: str, partition: int, first_offset: int, last_offset: int, owner: str
    ) -> int:
        """Note the range ``owner`` starts; the crashes its first record caused so far."""
        return int(
            await self._write(self._started, scope, partition, first_offset, last_offset, owner)
        )

    async def start_batch(
        self, scope: str, event_ids: Sequence[str], start: PartitionStart
    ) -> tuple[set[str], int]:
        """Which of ``event_ids`` are done, and ``start`` noted: two local statements.

        Each takes tens of microseconds on the event loop, so joining them would gain nothing.
        """
        crashes = await self.started(
            scope, start.partition, start.first_offset, start.last_offset, start.owner
        )
        done = await self.done_among(scope, event_ids) if event_ids else set()
        return done, crashes

    @staticmethod
    def _failing_since(db: sqlite3.Connection, *row: object) -> str:
        return str(db.execute(ATTEMPT_FAILING_SINCE, row).fetchone()[0])

    async def failing_since(
        self, scope: str, partition: int, offset: int, now: datetime
    ) -> datetime:
        """When the record at ``offset`` first failed (written now if it had not)."""
        text = await self._write(
            self._failing_since, scope, partition, offset, offset, offset, now.isoformat()
        )
        return datetime.fromisoformat(text)

    @staticmethod
    def _release(db: sqlite3.Connection, owner: str) -> None:
        db.execute(ATTEMPT_RELEASE, (owner,))

    async def release(self, owner: str) -> None:
        """Forget ``owner`` as the one with records in flight: it stopped cleanly."""
        await self._write(self._release, owner)


def _sqlite_time(when: datetime) -> str:
    """``when`` as the SQLite guard writes ``completed_at`` (UTC, milliseconds, ``Z``)."""
    utc = when.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"
