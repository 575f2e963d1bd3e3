"""PostgreSQL through psycopg 3 (extra ``postgres``), for replicas that share one database.

Connections autocommit: one statement is one round trip, and a transaction is asked for
explicitly. A connection is made on first use and, once the server drops it (a restart, a
failover, ``pg_terminate_backend``), made again on the next call: the call that met the loss
fails with the store's ``unavailable`` error (a TransientError, so the work is retried or
redelivered), the one after it works again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from types import ModuleType
from typing import Any

from radstream.common.errors import MissingExtraError
from radstream.common.sql.base import Row, SqlEngine, Unavailable


def psycopg_driver() -> ModuleType:
    """The psycopg module; :class:`MissingExtraError` naming the extra when it is missing."""
    try:
        import psycopg  # noqa: PLC0415 -- optional extra
    except ImportError as exc:
        raise MissingExtraError("psycopg", "postgres") from exc
    return psycopg


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection failed, rather than the statement."""
    try:
        import psycopg  # noqa: PLC0415 -- optional extra
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def _problem(exc: BaseException, *, every_error: bool) -> str | None:
    """What failed, if ``exc`` is the store's (see :class:`SqlEngine`)."""
    try:
        import psycopg  # noqa: PLC0415 -- optional extra
    except ImportError:
        return None
    if isinstance(exc, psycopg.OperationalError):
        return f"PostgreSQL is unreachable ({type(exc).__name__})"
    if every_error and isinstance(exc, psycopg.Error):
        return f"PostgreSQL failed ({type(exc).__name__})"
    return None


# libpq waits for ever on a server that takes the SYN and never answers (a firewall dropping
# packets, a failed-over address): every store of ours gets a bound unless its DSN sets one.
DEFAULT_CONNECT_TIMEOUT_S = 10


def _timeout(dsn: str, connect_timeout_s: int | None) -> dict[str, int]:
    """``connect_timeout`` for psycopg: the caller's, else the DSN's own, else the default."""
    if connect_timeout_s is not None:
        return {"connect_timeout": connect_timeout_s}
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415 -- optional extra

    try:
        in_dsn = "connect_timeout" in conninfo_to_dict(dsn)
    except Exception:  # psycopg names what is wrong with the DSN when it connects
        in_dsn = False
    return {} if in_dsn else {"connect_timeout": DEFAULT_CONNECT_TIMEOUT_S}


class PostgresEngine(SqlEngine):
    """A blocking psycopg connection (see :class:`~radstream.common.sql.EngineThread`).

    ``connect_timeout_s`` overrides the DSN's ``connect_timeout``; with neither, 10 s.
    """

    dialect = "postgresql"
    paramstyle = "format"
    seq_type = "BIGSERIAL PRIMARY KEY"
    lock_clause = " FOR UPDATE"

    def __init__(
        self,
        dsn: str,
        *,
        unavailable: Unavailable,
        every_error: bool = False,
        connect_timeout_s: int | None = None,
    ) -> None:
        super().__init__(unavailable=unavailable, every_error=every_error)
        self.dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        self._conn: Any = None

    def connect(self) -> None:
        """Open the connection, unless one is open."""
        psycopg = psycopg_driver()
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.dsn, autocommit=True, **_timeout(self.dsn, self._connect_timeout_s)
            )

    def close(self) -> None:
        """Close the connection, if one is open."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement (``?`` placeholders) and return its rows.

        After a lost connection, the next statement reconnects. ``?`` is replaced by ``%s``
        wherever it stands, so the SQL must not hold one in a literal.
        """
        self.connect()
        cursor = self._conn.execute(sql.replace("?", "%s"), tuple(params))
        return list(cursor.fetchall()) if cursor.description is not None else []

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.connect()
        with self._conn.transaction():
            yield

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Run the block in one transaction (``BEGIN`` … ``COMMIT``)."""
        return self._transaction()

    def problem(self, exc: BaseException) -> str | None:
        """What failed, if ``exc`` is the store's; the connection is dropped then."""
        problem = _problem(exc, every_error=self.every_error)
        if problem is not None:
            self.close()  # reconnect on the next call
        return problem


class AsyncPostgresEngine:
    """A psycopg ``AsyncConnection`` for a store whose statements run on the event loop.

    ``ddl`` runs on every new connection (``CREATE TABLE IF NOT EXISTS``...), so a store works
    on a database its tables were dropped from. Statements use psycopg's ``%s`` placeholders.
    A driver error in :meth:`connection` or inside :meth:`session` that is the store's (see
    ``every_error`` in :class:`SqlEngine`) drops the connection and raises ``unavailable``.
    """

    dialect = "postgresql"
    paramstyle = "format"

    def __init__(
        self,
        dsn: str,
        *,
        ddl: str,
        unavailable: Unavailable,
        every_error: bool = False,
        connect_timeout_s: int | None = None,
    ) -> None:
        self.dsn = dsn
        self._ddl = ddl
        self._unavailable = unavailable
        self.every_error = every_error
        self._connect_timeout_s = connect_timeout_s
        self._conn: Any = None

    def translate(self, exc: BaseException) -> Exception | None:
        """The store's ``unavailable`` error for a driver error, or None when it is not one."""
        problem = _problem(exc, every_error=self.every_error)
        return None if problem is None else self._unavailable(problem)

    async def connection(self) -> Any:
        """The open connection, connecting (and running the DDL) if there is none."""
        psycopg = psycopg_driver()
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn: Any = None
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, **_timeout(self.dsn, self._connect_timeout_s)
            )
            await conn.execute(self._ddl)
        except Exception as exc:
            if conn is not None:
                await conn.close()
            translated = self.translate(exc)
            if translated is None:
                raise
            raise translated from exc
        self._conn = conn
        return conn

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """The connection for a block; the store's driver errors there drop it and raise."""
        conn = await self.connection()
        try:
            yield conn
        except Exception as exc:
            translated = self.translate(exc)
            if translated is None:
                raise
            await self.close()  # reconnect on the next call
            raise translated from exc

    async def close(self) -> None:
        """Close the connection, if one is open."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
