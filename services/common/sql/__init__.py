"""The SQL engines the project's stores run on: SQLite (embedded default) and PostgreSQL.

Three stores keep state in SQL: the idempotency guard (:mod:`radstream.common.idempotency`),
ingest's study assembly and ingest's PACS pull cursor. Each is named by a DSN
(:func:`parse_dsn`: ``sqlite:///relative``, ``sqlite:////absolute``, ``postgresql://...``) and
runs on one of two engines behind one interface, :class:`SqlEngine`:

* connecting with the project's settings: SQLite in WAL mode with ``synchronous=NORMAL`` and a
  busy timeout (:class:`SqliteOptions`), PostgreSQL in autocommit;
* a write transaction (:func:`write_transaction`: ``BEGIN IMMEDIATE`` for SQLite, so a writer
  takes the lock at the start and never deadlocks upgrading it);
* statements written once with ``?`` placeholders (``paramstyle`` says what a driver wants);
* the driver's errors mapped to the store's own error family (a :class:`TransientError`
  subclass: the store is away, retry), and a dropped PostgreSQL connection made again on the
  next call.

A blocking engine runs on one worker thread (:class:`EngineThread`), so the event loop never
waits on the disk or the network. :class:`AsyncPostgresEngine` is the PostgreSQL engine for a
store whose statements run on the event loop itself (the PostgreSQL idempotency guard: a round
trip costs no thread hop there). The SQLite guard, whose statements take microseconds, uses the
engine's connections directly: see :mod:`radstream.common.idempotency.sqlite`.
"""

from __future__ import annotations

from radstream.common.sql.base import (
    Dialect,
    EngineThread,
    Paramstyle,
    Row,
    SqlEngine,
    Unavailable,
)
from radstream.common.sql.dsn import PostgresDsn, SqliteDsn, parse_dsn
from radstream.common.sql.postgres import AsyncPostgresEngine, PostgresEngine, connection_lost
from radstream.common.sql.sqlite import SqliteEngine, SqliteOptions, write_transaction

__all__ = [
    "AsyncPostgresEngine",
    "Dialect",
    "EngineThread",
    "Paramstyle",
    "PostgresDsn",
    "PostgresEngine",
    "Row",
    "SqlEngine",
    "SqliteDsn",
    "SqliteEngine",
    "SqliteOptions",
    "Unavailable",
    "connection_lost",
    "open_engine",
    "parse_dsn",
    "write_transaction",
]


def open_engine(
    dsn: str,
    *,
    setting: str,
    invalid: type[Exception],
    unavailable: Unavailable,
    every_error: bool = False,
    sqlite: SqliteOptions | None = None,
    connect_timeout_s: int | None = None,
) -> SqlEngine:
    """The blocking engine a DSN names (see :func:`parse_dsn` and the engines' arguments)."""
    target = parse_dsn(dsn, setting=setting, invalid=invalid)
    if isinstance(target, SqliteDsn):
        return SqliteEngine(
            target.path,
            options=sqlite or SqliteOptions(),
            unavailable=unavailable,
            every_error=every_error,
        )
    return PostgresEngine(
        target.dsn,
        unavailable=unavailable,
        every_error=every_error,
        connect_timeout_s=connect_timeout_s,
    )
