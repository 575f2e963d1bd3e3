"""One PostgreSQL connection that comes back after the server went away.

The idempotency guard and ingest's PACS pull cursor each keep a single autocommit psycopg
connection: made on first use (creating their table), dropped when the server is lost, and made
again on the next call. A lost or unreachable server is the caller's own transient error, so the
work is retried or redelivered rather than failed for good.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from radstream.common.errors import MissingExtraError


class ReconnectingConnection:
    """A lazily made, remade-after-loss psycopg ``AsyncConnection`` (extra ``postgres``)."""

    def __init__(self, dsn: str, *, ddl: str, unavailable: Callable[[], Exception]) -> None:
        self.dsn = dsn
        self._ddl = ddl
        self._unavailable = unavailable
        self._conn: Any = None

    async def connection(self) -> Any:
        """The open connection, connecting (and creating the table) if there is none."""
        try:
            import psycopg  # noqa: PLC0415 -- optional extra
        except ImportError as exc:
            raise MissingExtraError("psycopg", "postgres") from exc
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            await conn.execute(self._ddl)
        except psycopg.OperationalError as exc:
            raise self._unavailable() from exc
        self._conn = conn
        return conn

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        """The connection for a block; a lost server there drops it and raises ``unavailable``."""
        import psycopg  # noqa: PLC0415 -- optional extra

        conn = await self.connection()
        try:
            yield conn
        except psycopg.OperationalError as exc:
            await self.close()  # reconnect on the next call
            raise self._unavailable() from exc

    async def close(self) -> None:
        """Close the connection, if one is open."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
