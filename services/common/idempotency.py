"""The idempotency guard: remembers which events a consumer has finished, keyed by event id.

Delivery is at-least-once, so any event may arrive twice (a crash between the work and the
offset commit, a rebalance). The guard turns that into effectively-once:

1. ``is_done(scope, event_id)`` -- skip the handler if this consumer already finished the event
   (for a fetched batch, ``done_among`` asks about all its events at once: :func:`prefetch`);
2. the handler runs and *stages* any database side effects on its :class:`Claim`;
3. ``complete(claim)`` writes the staged effects and the "done" mark in **one transaction**.
   If another delivery of the same event completed first, the insert of the mark conflicts,
   the transaction rolls back and the staged effects are dropped.

A claim that staged nothing has only its mark to write, and the consume loop writes those of a
fetched batch together once the batch is through (``mark_done``, see :class:`BatchGuard`),
after the records' offset commits rather than before each: an event whose offset is committed
is not delivered again, so its mark only matters for a copy published again upstream.

Effects outside the database (blobs, published events) must be idempotent themselves: the blob
store is content-addressed and output events get ids derived from the input's id, so the
guards of downstream consumers drop repeats. No lock is held while the handler runs.

A mark matters only while its event may still come again, so marks older than a retention
(``RADSTREAM_DELIVERY_IDEMPOTENCY_RETENTION_DAYS``) are deleted (``prune``); both stores index
``completed_at`` for that, and delete in short chunks so consumers keep marking meanwhile.

SQLite is the embedded default (one file, WAL); PostgreSQL is for production (several replicas
of a consumer share one table).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.postgres import ReconnectingConnection

TABLE = "radstream_processed_events"
_COMPLETED_AT_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_completed_at ON {TABLE} (completed_at)"
# Marks deleted per statement when pruning: short enough that consumers' marks wait little.
PRUNE_CHUNK = 1000
# SQLite writes the time itself: one Python datetime fewer to make and format per record.
_MARK_DONE = (
    f"INSERT OR IGNORE INTO {TABLE} (scope, event_id, completed_at) "
    "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
)
# PostgreSQL's column defaults to now().
_PG_MARK_DONE = f"INSERT INTO {TABLE} (scope, event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
_PG_PRUNE = (
    f"DELETE FROM {TABLE} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {TABLE} "
    "WHERE completed_at < %s ORDER BY completed_at LIMIT %s))"
)
_PG_MARK_ALL_DONE = (
    f"INSERT INTO {TABLE} (scope, event_id) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING"
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
# Ids per batch query: under SQLite's oldest limit of 999 bound parameters.
_IDS_PER_QUERY = 500
SqlParams = Sequence[object]


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


class BatchGuard:
    """The guard as one fetched batch sees it: asked about all its events at once, marks last.

    The consume loop handles a batch's records one after another. Instead of one ``is_done``
    query per record (a PostgreSQL round trip each), :func:`prefetch` asks about every event of
    the batch in one query; this view answers ``is_done`` for those events from the answer, and
    remembers the events completed since, so an event that comes twice in one batch runs once.

    A claim that staged nothing is not written when it completes: its mark waits for
    :meth:`write_marks`, which the loop calls once the batch is through, so a batch of records
    costs one write instead of one per record (one round trip with PostgreSQL). Each record's
    offset is committed before its mark is written. That is safe for redelivery, because
    an event whose offset is committed is not delivered again, and a crash before the commit
    delivers it again either way. What a crash before :meth:`write_marks` does lose is the
    marks themselves: a copy of one of those events published again upstream runs its handler
    again, and its outputs, whose ids derive from the input's, are dropped by the guards
    downstream. A claim with staged effects completes at once, as the guard does it.

    It answers as of the batch's start: another replica that finishes one of its events
    meanwhile is the race every ``is_done`` has. ``complete`` settles it for staged effects
    (the mark conflicts and they are dropped); a deferred mark reports the event processed and
    leaves the other replica's mark as it is.
    """

    def __init__(
        self, guard: IdempotencyGuard, scope: str, asked: set[str], done: set[str]
    ) -> None:
        self._guard, self._scope = guard, scope
        self._asked, self._done = asked, done
        self._unwritten: list[str] = []
        self.paramstyle = guard.paramstyle

    async def open(self) -> None:
        """The guard is opened by its owner, not by a batch."""

    async def close(self) -> None:
        """The guard is closed by its owner, not by a batch."""

    async def is_done(self, scope: str, event_id: str) -> bool:
        """From the batch's answer for its events; from the guard for any other."""
        if scope == self._scope and event_id in self._asked:
            return event_id in self._done
        return await self._guard.is_done(scope, event_id)

    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
        """Asked of the guard itself."""
        return await self._guard.done_among(scope, event_ids)

    async def complete(self, claim: Claim) -> bool:
        """Staged effects: complete in the guard now. The mark alone: at :meth:`write_marks`.

        Either way the event is done for the rest of the batch, whoever finished it.
        """
        if claim.scope != self._scope:
            return await self._guard.complete(claim)
        if claim.staged:
            completed = await self._guard.complete(claim)
        elif claim.event_id in self._done:
            completed = False  # the batch finished it already
        else:
            self._unwritten.append(claim.event_id)
            completed = True
        self._asked.add(claim.event_id)
        self._done.add(claim.event_id)
        return completed

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        """Written by the guard itself."""
        await self._guard.mark_done(scope, event_ids)

    async def prune(self, completed_before: datetime, *, chunk: int = PRUNE_CHUNK) -> int:
        """Pruned by the guard itself."""
        return await self._guard.prune(completed_before, chunk=chunk)

    async def oldest_mark(self) -> datetime | None:
        """Asked of the guard itself."""
        return await self._guard.oldest_mark()

    async def write_marks(self) -> None:
        """Write the marks the batch's completed claims left, in one transaction.

        On failure they stay unwritten and the store's error propagates; a later call tries
        them again.
        """
        if self._unwritten:
            await self._guard.mark_done(self._scope, self._unwritten)
            self._unwritten = []

    @property
    def unwritten(self) -> int:
        """How many marks wait for :meth:`write_marks`."""
        return len(self._unwritten)

    async def check(self) -> None:
        """Check the guard itself."""
        await self._guard.check()


async def prefetch(
    guard: IdempotencyGuard, scope: str, event_ids: Iterable[str | None]
) -> BatchGuard:
    """The guard as a fetched batch sees it: :class:`BatchGuard`, asked about every event at once.

    A batch of one event asks nothing in advance (the record asks as it comes). When the store
    cannot answer, each record asks on its own and meets the failure there (it is redelivered,
    not lost).
    """
    asked = {event_id for event_id in event_ids if event_id}
    done: set[str] = set()
    if len(asked) < 2:
        asked = set()
    else:
        try:
            done = await guard.done_among(scope, sorted(asked))
        except TransientError:
            asked = set()
    return BatchGuard(guard, scope, asked, done)


class SqliteIdempotencyGuard:
    """SQLite-backed guard.

    Its statements take tens of microseconds, less than a hop to a worker thread, so they run
    on the event loop on a connection that never waits for a lock. When another process holds
    the write lock, the call falls back to a dedicated thread whose connection waits for it.
    """

    paramstyle: Literal["qmark", "format"] = "qmark"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idempotency")
        self._db: sqlite3.Connection | None = None  # used on the worker thread only
        self._fast: sqlite3.Connection | None = None  # used on the event loop only

    async def _call(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:
            raise TransientError(f"idempotency store unavailable: {type(exc).__name__}") from exc

    def _connection(self, busy_timeout_ms: int) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL + NORMAL survives a killed process (the SIGKILL test); FULL would add power-loss
        # durability at several times the commit cost.
        db.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # before WAL: only a new file takes it
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
        return db

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connection(busy_timeout_ms=10_000)
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (scope TEXT NOT NULL, event_id TEXT NOT NULL, "
            "completed_at TEXT NOT NULL, PRIMARY KEY (scope, event_id)) WITHOUT ROWID"
        )
        # Marks come in time order, so the index grows at its right edge: about half a
        # microsecond more per mark in batches of 20, nine for a mark on its own.
        db.execute(_COMPLETED_AT_INDEX)
        self._db = db
        self._fast = self._connection(busy_timeout_ms=0)

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
        except sqlite3.OperationalError:  # locked: wait for it off the loop
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
        try:
            return self._done_among(self._require_fast(), scope, event_ids)
        except sqlite3.OperationalError:  # locked: wait for it off the loop
            return set(await self._call(self._done_among, self._require(), scope, event_ids))

    @staticmethod
    def _complete(db: sqlite3.Connection, claim: Claim) -> bool:
        mark = (claim.scope, claim.event_id)
        if not claim.staged:  # the mark alone: one statement is its own transaction
            return bool(db.execute(_MARK_DONE, mark).rowcount == 1)
        with _write_transaction(db):
            if db.execute(_MARK_DONE, mark).rowcount != 1:
                return False  # nothing was written: leaving the block commits a no-op
            for sql, params in claim.staged:
                db.execute(sql, params)
        return True

    async def complete(self, claim: Claim) -> bool:
        """Commit the staged effects and the done mark in one transaction."""
        try:
            return self._complete(self._require_fast(), claim)
        except sqlite3.OperationalError:  # locked (or failed): redo it off the loop, waiting
            return bool(await self._call(self._complete, self._require(), claim))

    @staticmethod
    def _mark_done(db: sqlite3.Connection, scope: str, event_ids: Sequence[str]) -> None:
        if len(event_ids) == 1:  # one statement is its own transaction
            db.execute(_MARK_DONE, (scope, event_ids[0]))
            return
        with _write_transaction(db):
            db.executemany(_MARK_DONE, [(scope, event_id) for event_id in event_ids])

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        """Mark ``event_ids`` done in one transaction."""
        if not event_ids:
            return
        try:
            self._mark_done(self._require_fast(), scope, event_ids)
        except sqlite3.OperationalError:  # locked (or failed): redo it off the loop, waiting
            await self._call(self._mark_done, self._require(), scope, event_ids)

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
        try:
            text = self._oldest_mark(self._require_fast())
        except sqlite3.OperationalError:  # locked: wait for it off the loop
            text = await self._call(self._oldest_mark, self._require())
        return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))

    async def check(self) -> None:
        """Raise if the database file cannot be read."""
        await self.is_done("radstream.check", "-")


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
            f"PRIMARY KEY (scope, event_id)); {_COMPLETED_AT_INDEX}",
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


@contextlib.contextmanager
def _write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """A SQLite write transaction, locked from its start: committed on leaving, else rolled back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _sqlite_time(when: datetime) -> str:
    """``when`` as the SQLite guard writes ``completed_at`` (UTC, milliseconds, ``Z``)."""
    utc = when.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def open_guard(dsn: str) -> IdempotencyGuard:
    """Build the guard a DSN names: ``sqlite:///relative``, ``sqlite:////absolute``, ``postgresql://``.

    SQLite DSNs follow the SQLAlchemy convention: what follows ``sqlite:///`` is the path.
    """
    scheme = urlsplit(dsn).scheme
    if scheme == "sqlite" and dsn.startswith("sqlite:///"):
        return SqliteIdempotencyGuard(Path(dsn.removeprefix("sqlite:///")))
    if scheme in {"postgresql", "postgres"}:
        return PostgresIdempotencyGuard(dsn)
    raise MisconfiguredError(
        "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN must be sqlite:///path or postgresql://..."
    )
