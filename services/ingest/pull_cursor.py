"""Where the PACS puller is in a PACS's changes feed, kept durably across restarts.

The puller reads Orthanc's ``/changes`` feed, whose entries carry an increasing sequence
number. After a stable study has been fetched, handed to the receiver and completed, the
puller saves the change's sequence number here; a restarted puller continues after it instead
of fetching every study again. Saving after the work (not before) makes a crash re-fetch at
most the study in flight, and re-received instances are duplicates the assembly ignores.

SQLite is the embedded default (one small table, WAL); PostgreSQL is for a deployment whose
replicas share state. DSNs follow the assembly's and the idempotency guard's convention:
``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``postgresql://...``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from radstream.common.errors import TransientError
from radstream.common.postgres import ReconnectingConnection
from radstream.ingest.errors import IngestConfigurationError, IngestError

__all__ = [
    "PostgresPullCursor",
    "PullCursor",
    "PullCursorUnavailableError",
    "SqlitePullCursor",
    "open_pull_cursor",
]

TABLE = "radstream_ingest_pull_cursor"


class PullCursorUnavailableError(IngestError, TransientError):
    """The cursor database did not answer; the puller backs off and tries again."""


class PullCursor(Protocol):
    """A durable ``source -> last handled sequence number`` map."""

    async def open(self) -> None:
        """Connect and create the table if needed."""

    async def close(self) -> None:
        """Release the connection."""

    async def load(self, source: str) -> int | None:
        """The last sequence number saved for ``source``, or None if there is none yet."""

    async def save(self, source: str, sequence: int) -> None:
        """Remember ``sequence`` as handled for ``source`` (durably, before returning)."""


class SqlitePullCursor:
    """The cursor in a SQLite file; every statement runs on one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (source TEXT PRIMARY KEY, "
            "sequence INTEGER NOT NULL, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        return db

    async def _run(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            try:
                return await asyncio.to_thread(fn, *args)
            except sqlite3.Error as exc:
                raise PullCursorUnavailableError(
                    f"PACS pull cursor at {self.path} failed ({type(exc).__name__}); "
                    "check the disk and RADSTREAM_INGEST_PACS_CURSOR_DSN"
                ) from exc

    async def open(self) -> None:
        """Connect and create the table if needed."""
        if self._db is None:
            self._db = await self._run(self._connect)

    async def close(self) -> None:
        """Close the connection."""
        db, self._db = self._db, None
        if db is not None:
            await self._run(db.close)

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise IngestConfigurationError("PACS pull cursor used before open()")
        return self._db

    async def load(self, source: str) -> int | None:
        """The last sequence number saved for ``source``, or None if there is none yet."""
        db = self._require()

        def select() -> int | None:
            row = db.execute(
                "SELECT sequence FROM radstream_ingest_pull_cursor WHERE source = ?", (source,)
            ).fetchone()
            return None if row is None else int(row[0])

        result: int | None = await self._run(select)
        return result

    async def save(self, source: str, sequence: int) -> None:
        """Remember ``sequence`` as handled for ``source``."""
        db = self._require()
        await self._run(
            db.execute,
            "INSERT INTO radstream_ingest_pull_cursor (source, sequence) VALUES (?, ?) "
            "ON CONFLICT (source) DO UPDATE SET sequence = excluded.sequence, "
            "updated_at = CURRENT_TIMESTAMP",
            (source, sequence),
        )


class PostgresPullCursor:
    """The cursor in PostgreSQL (psycopg 3); a lost connection reconnects on the next call."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pg = ReconnectingConnection(
            dsn,
            ddl=f"CREATE TABLE IF NOT EXISTS {TABLE} (source TEXT PRIMARY KEY, "
            "sequence BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            unavailable=lambda: PullCursorUnavailableError(
                "PostgreSQL PACS pull cursor unreachable"
            ),
        )

    async def _execute(self, sql: str, params: tuple[object, ...]) -> Any:
        async with self._pg.session() as conn:
            return await conn.execute(sql, params)

    async def open(self) -> None:
        """Connect and create the table if needed."""
        await self._pg.connection()

    async def close(self) -> None:
        """Close the connection."""
        await self._pg.close()

    async def load(self, source: str) -> int | None:
        """The last sequence number saved for ``source``, or None if there is none yet."""
        cursor = await self._execute(
            "SELECT sequence FROM radstream_ingest_pull_cursor WHERE source = %s", (source,)
        )
        row = await cursor.fetchone()
        return None if row is None else int(row[0])

    async def save(self, source: str, sequence: int) -> None:
        """Remember ``sequence`` as handled for ``source``."""
        await self._execute(
            "INSERT INTO radstream_ingest_pull_cursor (source, sequence) VALUES (%s, %s) "
            "ON CONFLICT (source) DO UPDATE SET sequence = excluded.sequence, updated_at = now()",
            (source, sequence),
        )


def open_pull_cursor(dsn: str) -> PullCursor:
    """Build the cursor a DSN names: ``sqlite:///path`` or ``postgresql://...``."""
    scheme = urlsplit(dsn).scheme
    if scheme == "sqlite" and dsn.startswith("sqlite:///"):
        return SqlitePullCursor(Path(dsn.removeprefix("sqlite:///")))
    if scheme in {"postgresql", "postgres"}:
        return PostgresPullCursor(dsn)
    raise IngestConfigurationError(
        "RADSTREAM_INGEST_PACS_CURSOR_DSN must be sqlite:///path or postgresql://..."
    )
