"""The SQL engines the study assembly runs on: SQLite (embedded default) and PostgreSQL.

Each wraps one blocking DB-API connection, used from a single worker thread (see
:class:`~radstream.ingest.assembly_db.AssemblyDatabase`). Statements are written once with
``?`` placeholders; an engine supplies connecting, transactions, the placeholder style, the
sequence column type, row locking, and the translation of its driver's errors.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from radstream.common.errors import MissingExtraError
from radstream.ingest.errors import AssemblyStoreUnavailableError, IngestConfigurationError

__all__ = ["PostgresEngine", "Row", "SqlEngine", "SqliteEngine"]

Row = tuple[Any, ...]


class SqlEngine(ABC):
    """The engine-specific part: connecting, transactions, placeholders, errors."""

    seq_type: str
    lock_clause: str = ""  # appended to a SELECT that must lock the row (PostgreSQL)

    @abstractmethod
    def connect(self) -> None:
        """Open the connection."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement and return its rows (empty for statements without rows)."""

    @abstractmethod
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one transaction."""

    @abstractmethod
    def translate(self, exc: Exception) -> Exception | None:
        """The radstream error for a driver error, or None when it is not the driver's."""


class SqliteEngine(SqlEngine):
    """SQLite in WAL mode: one file, one writer at a time (the embedded default)."""

    seq_type = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def connect(self) -> None:
        """Open the connection."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The assembly holds patient IDs and accession numbers: owner-only, like the blobs.
        # (WAL and shared-memory files inherit the database file's mode.)
        self.path.touch(mode=0o600, exist_ok=True)
        os.chmod(self.path, 0o600)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL + NORMAL survives a killed process (the restart test); FULL would add power-loss
        # durability at several times the commit cost.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        self._db = db

    def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise IngestConfigurationError("study assembly used before open()")
        return self._db

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement and return its rows."""
        return self._require().execute(sql, tuple(params)).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one transaction."""
        db = self._require()
        db.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def translate(self, exc: Exception) -> Exception | None:
        """The radstream error for a driver error, or None."""
        if isinstance(exc, sqlite3.OperationalError):
            return AssemblyStoreUnavailableError(
                f"the study assembly database {self.path} is unusable ({type(exc).__name__}); "
                "check RADSTREAM_INGEST_ASSEMBLY_DSN and its volume"
            )
        return None


class PostgresEngine(SqlEngine):
    """PostgreSQL via psycopg 3, for several replicas sharing one assembly."""

    seq_type = "BIGSERIAL PRIMARY KEY"
    lock_clause = " FOR UPDATE"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None

    def connect(self) -> None:
        """Open the connection."""
        try:
            import psycopg  # noqa: PLC0415 -- optional extra
        except ImportError as exc:
            raise MissingExtraError("psycopg", "postgres") from exc
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement and return its rows."""
        self.connect()  # after a lost connection, the next statement reconnects
        cursor = self._conn.execute(sql.replace("?", "%s"), tuple(params))
        return list(cursor.fetchall()) if cursor.description is not None else []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one transaction."""
        self.connect()
        with self._conn.transaction():
            yield

    def translate(self, exc: Exception) -> Exception | None:
        """The radstream error for a driver error, or None."""
        import psycopg  # noqa: PLC0415 -- optional extra

        if isinstance(exc, psycopg.OperationalError):
            self.close()  # reconnect on the next call
            return AssemblyStoreUnavailableError(
                "the study assembly's PostgreSQL is unreachable; check "
                "RADSTREAM_INGEST_ASSEMBLY_DSN and the server"
            )
        return None
