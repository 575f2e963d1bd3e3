"""SQLite: one file in WAL mode, one writer at a time (every store's embedded default)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from radstream.common.errors import MisconfiguredError
from radstream.common.sql.base import Row, SqlEngine, Unavailable


@dataclass(frozen=True, kw_only=True)
class SqliteOptions:
    """How a store's SQLite connections are made.

    WAL lets readers go on while one connection writes. ``synchronous=NORMAL`` with WAL
    survives a killed process (the restart and SIGKILL tests) but not a power cut; ``FULL``
    adds power-loss durability at several times the commit cost, for a store that commits
    rarely.
    """

    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout_ms: int = 10_000  # how long a statement waits for another writer's lock
    page_size: int | None = None  # applies only to a file created with it
    wal_autocheckpoint: int | None = None  # pages of WAL before a checkpoint (SQLite: 1,000)
    owner_only: bool = False  # the file is made 0600 (a store that holds patient identifiers)


def connect_sqlite(
    path: Path, options: SqliteOptions, *, busy_timeout_ms: int | None = None
) -> sqlite3.Connection:
    """A connection to ``path`` with ``options`` (its directory made if needed).

    It autocommits (``isolation_level=None``: a statement outside :func:`write_transaction` is
    its own transaction) and may be used from another thread than the one that made it, one
    thread at a time. ``busy_timeout_ms`` overrides the options' (0: never wait for a lock).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if options.owner_only:
        # WAL and shared-memory files inherit the database file's mode.
        path.touch(mode=0o600, exist_ok=True)
        os.chmod(path, 0o600)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if options.page_size is not None:
        db.execute(f"PRAGMA page_size={int(options.page_size)}")  # before WAL: only a new file
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={options.synchronous}")
    timeout = options.busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
    db.execute(f"PRAGMA busy_timeout={int(timeout)}")
    if options.wal_autocheckpoint is not None:
        db.execute(f"PRAGMA wal_autocheckpoint={int(options.wal_autocheckpoint)}")
    return db


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction, locked from its start: committed on leaving, else rolled back.

    ``BEGIN IMMEDIATE`` takes the write lock now (waiting up to the busy timeout), so two
    writers never both read and then deadlock upgrading to write. A rollback SQLite already did
    itself (on a full disk, an I/O error) is not done twice.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteEngine(SqlEngine):
    """SQLite through the standard library's driver."""

    dialect = "sqlite"
    paramstyle = "qmark"
    seq_type = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(
        self,
        path: Path,
        *,
        options: SqliteOptions | None = None,
        unavailable: Unavailable,
        every_error: bool = False,
    ) -> None:
        super().__init__(unavailable=unavailable, every_error=every_error)
        self.path = path
        self.options = options or SqliteOptions()
        self._db: sqlite3.Connection | None = None

    def new_connection(self, *, busy_timeout_ms: int | None = None) -> sqlite3.Connection:
        """Another connection to the file with the engine's options (:func:`connect_sqlite`)."""
        return connect_sqlite(self.path, self.options, busy_timeout_ms=busy_timeout_ms)

    def connect(self) -> None:
        """Open the engine's connection."""
        if self._db is None:
            self._db = self.new_connection()

    def close(self) -> None:
        """Close the engine's connection."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise MisconfiguredError("a SQLite store was used before it was opened")
        return self._db

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement and return its rows."""
        return self._require().execute(sql, tuple(params)).fetchall()

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """A write transaction (:func:`write_transaction`)."""
        return write_transaction(self._require())

    def problem(self, exc: BaseException) -> str | None:
        """What failed, if ``exc`` is the store's: a file locked, unreadable, full or gone."""
        store_errors = sqlite3.Error if self.every_error else sqlite3.OperationalError
        if not isinstance(exc, store_errors):
            return None
        return f"the SQLite database is unusable ({type(exc).__name__})"
