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

from pathlib import Path
from typing import Protocol

from radstream.common.errors import TransientError
from radstream.common.sql import (
    EngineThread,
    PostgresEngine,
    SqlEngine,
    SqliteDsn,
    SqliteEngine,
    SqliteOptions,
    parse_dsn,
)
from radstream.ingest.errors import IngestConfigurationError, IngestError

__all__ = [
    "PostgresPullCursor",
    "PullCursor",
    "PullCursorUnavailableError",
    "SqlPullCursor",
    "SqlitePullCursor",
    "open_pull_cursor",
]

TABLE = "radstream_ingest_pull_cursor"
_DDL = {
    "sqlite": f"CREATE TABLE IF NOT EXISTS {TABLE} (source TEXT PRIMARY KEY, "
    "sequence INTEGER NOT NULL, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    "postgresql": f"CREATE TABLE IF NOT EXISTS {TABLE} (source TEXT PRIMARY KEY, "
    "sequence BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())",
}
_LOAD = f"SELECT sequence FROM {TABLE} WHERE source = ?"  # noqa: S608 -- the table is a constant
_SAVE = (
    f"INSERT INTO {TABLE} (source, sequence) VALUES (?, ?) "  # noqa: S608 -- the table is a constant
    "ON CONFLICT (source) DO UPDATE SET sequence = excluded.sequence, "
    "updated_at = CURRENT_TIMESTAMP"
)
# The cursor commits once per study, so SQLite's FULL costs nothing that matters here.
_SQLITE = SqliteOptions(synchronous="FULL")


class PullCursorUnavailableError(IngestError, TransientError):
    """The cursor database did not answer; the puller backs off and tries again."""


def _unavailable(problem: str) -> PullCursorUnavailableError:
    return PullCursorUnavailableError(
        f"PACS pull cursor: {problem}; check RADSTREAM_INGEST_PACS_CURSOR_DSN and the server "
        "or disk it names"
    )


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


class SqlPullCursor:
    """The cursor in one table, its statements on a worker thread of its own.

    Every driver error is the cursor's (:class:`PullCursorUnavailableError`); after a lost
    PostgreSQL connection the next call reconnects.
    """

    def __init__(self, engine: SqlEngine) -> None:
        self._engine = engine
        self._thread = EngineThread(engine, name="pull-cursor")

    def _open(self) -> None:
        self._engine.connect()
        self._engine.execute(_DDL[self._engine.dialect])

    async def open(self) -> None:
        """Connect and create the table if needed."""
        await self._thread.call(self._open)

    async def close(self) -> None:
        """Close the connection."""
        await self._thread.close()

    async def load(self, source: str) -> int | None:
        """The last sequence number saved for ``source``, or None if there is none yet."""
        rows = await self._thread.execute(_LOAD, (source,))
        return int(rows[0][0]) if rows else None

    async def save(self, source: str, sequence: int) -> None:
        """Remember ``sequence`` as handled for ``source`` (one autocommitted statement)."""
        await self._thread.execute(_SAVE, (source, sequence))


class SqlitePullCursor(SqlPullCursor):
    """The cursor in a SQLite file (WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            SqliteEngine(path, options=_SQLITE, unavailable=_unavailable, every_error=True)
        )


class PostgresPullCursor(SqlPullCursor):
    """The cursor in PostgreSQL (psycopg 3)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        super().__init__(PostgresEngine(dsn, unavailable=_unavailable, every_error=True))


def open_pull_cursor(dsn: str) -> PullCursor:
    """Build the cursor a DSN names: ``sqlite:///path`` or ``postgresql://...``."""
    target = parse_dsn(
        dsn, setting="RADSTREAM_INGEST_PACS_CURSOR_DSN", invalid=IngestConfigurationError
    )
    if isinstance(target, SqliteDsn):
        return SqlitePullCursor(target.path)
    return PostgresPullCursor(target.dsn)
