"""The interface every blocking SQL engine offers, and the worker thread that runs one."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

Row = tuple[Any, ...]
Dialect = Literal["sqlite", "postgresql"]
Paramstyle = Literal["qmark", "format"]
# Makes a store's own error (a TransientError) from what failed, e.g. "PostgreSQL is
# unreachable (OperationalError)": the driver's own text is never passed on (it may quote values).
Unavailable = Callable[[str], Exception]

T = TypeVar("T")


class SqlEngine(ABC):
    """One blocking DB-API connection, used from one thread at a time (see :class:`EngineThread`).

    Statements are written once with ``?`` placeholders; the engine supplies connecting,
    transactions, the placeholder style, the sequence column type, row locking, and the
    translation of its driver's errors into the store's ``unavailable`` error.

    ``every_error`` says which driver errors are the store's: with it, every one (the store's
    statements are fixed, so a failure is the store's: locked, corrupt, read-only, gone);
    without it, only those that say the database is away (``OperationalError``), and any other
    goes up as it is.
    """

    dialect: Dialect
    paramstyle: Paramstyle
    seq_type: str  # an increasing integer key: AUTOINCREMENT / BIGSERIAL
    lock_clause: str = ""  # appended to a SELECT that must lock the row (PostgreSQL)

    def __init__(self, *, unavailable: Unavailable, every_error: bool = False) -> None:
        self._unavailable = unavailable
        self.every_error = every_error

    @abstractmethod
    def connect(self) -> None:
        """Open the connection (a no-op while one is open)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection, if one is open."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one statement (``?`` placeholders); its rows, empty for statements without rows."""

    @abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Run the block in one write transaction: committed on leaving, rolled back on error."""

    @abstractmethod
    def problem(self, exc: BaseException) -> str | None:
        """What failed, in words for an operator, if ``exc`` is the store's; else None.

        An engine whose connection ``exc`` may have broken drops it here, so the next call
        connects again.
        """

    def translate(self, exc: BaseException) -> Exception | None:
        """The store's ``unavailable`` error for a driver error, or None when it is not one."""
        problem = self.problem(exc)
        return None if problem is None else self._unavailable(problem)


class EngineThread:
    """A blocking engine's statements, run one at a time on a worker thread of their own.

    The event loop never waits on the disk or the network, and a SQLite connection never
    crosses threads. A driver error is translated on the worker thread, so an engine that drops
    a broken connection does so on the thread that uses it.
    """

    def __init__(self, engine: SqlEngine, *, name: str) -> None:
        self.engine = engine
        self._name = name
        self._executor: ThreadPoolExecutor | None = None

    def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return fn(*args)
        except Exception as exc:
            translated = self.engine.translate(exc)
            if translated is None:
                raise
            raise translated from exc

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the worker thread; a driver error becomes the store's error."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, fn, *args)

    async def execute(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """One statement on the worker thread (see :meth:`SqlEngine.execute`)."""
        return await self.call(self.engine.execute, sql, params)

    async def close(self) -> None:
        """Close the engine's connection on its thread, then let the thread go."""
        if self._executor is None:
            return
        try:
            await self.call(self.engine.close)
        finally:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False)
