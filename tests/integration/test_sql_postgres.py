"""The SQL engine module on the machine's real PostgreSQL server: statements, transactions,
errors, and a connection made again after the server dropped it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from radstream.common.errors import TransientError
from radstream.common.sql import AsyncPostgresEngine, EngineThread, PostgresEngine
from tests.conftest import drop_postgres_connections

pytestmark = pytest.mark.integration

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"


class StoreAwayError(TransientError):
    """A store's own error family, as each store defines one."""


@pytest.fixture
async def thread(postgres_dsn: str) -> AsyncIterator[EngineThread]:
    engine = PostgresEngine(postgres_dsn, unavailable=StoreAwayError, connect_timeout_s=5)
    runner = EngineThread(engine, name="test-store")
    await runner.call(engine.connect)
    await runner.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT)")
    yield runner
    await runner.close()


class TestBlockingEngine:
    async def test_statements_are_written_with_question_marks(self, thread) -> None:
        assert await thread.execute("INSERT INTO t VALUES (?, ?) RETURNING n", ("a", 7)) == [(7,)]
        assert await thread.execute("UPDATE t SET n = ? WHERE k = ?", (8, "a")) == []
        assert await thread.execute("SELECT k, n FROM t") == [("a", 8)]

    async def test_a_statement_outside_a_transaction_commits_at_once(
        self, thread, postgres_dsn
    ) -> None:
        await thread.execute("INSERT INTO t VALUES (?, ?)", ("a", 1))
        with psycopg.connect(postgres_dsn) as other:
            assert other.execute("SELECT k FROM t").fetchall() == [("a",)]

    async def test_a_transaction_commits_whole_or_not_at_all(self, thread) -> None:
        engine = thread.engine

        def insert(*keys: str) -> None:
            with engine.transaction():
                for key in keys:
                    engine.execute("INSERT INTO t (k) VALUES (?)", (key,))

        await thread.call(insert, "a", "b")
        with pytest.raises(psycopg.errors.UniqueViolation):
            await thread.call(insert, "c", "a")
        assert await thread.execute("SELECT k FROM t ORDER BY k") == [("a",), ("b",)]

    async def test_a_dropped_connection_is_transient_and_the_next_call_reconnects(
        self, thread, postgres_dsn
    ) -> None:
        await thread.execute("INSERT INTO t VALUES (?, ?)", ("a", 1))
        drop_postgres_connections(postgres_dsn)

        with pytest.raises(StoreAwayError):
            await thread.execute("SELECT n FROM t")
        assert await thread.execute("SELECT n FROM t") == [(1,)]

    async def test_a_statement_error_is_the_stores_only_when_every_error_is(
        self, postgres_dsn
    ) -> None:
        for every_error, expected in (
            (False, psycopg.errors.UndefinedTable),
            (True, StoreAwayError),
        ):
            engine = PostgresEngine(
                postgres_dsn, unavailable=StoreAwayError, every_error=every_error
            )
            runner = EngineThread(engine, name="test-store")
            try:
                with pytest.raises(expected):
                    await runner.execute("SELECT * FROM no_such_table")
            finally:
                await runner.close()

    async def test_an_unreachable_server_is_transient(self) -> None:
        engine = PostgresEngine(UNREACHABLE, unavailable=StoreAwayError)
        runner = EngineThread(engine, name="test-store")
        try:
            with pytest.raises(StoreAwayError):
                await runner.call(engine.connect)
        finally:
            await runner.close()


DDL = "CREATE TABLE IF NOT EXISTS marks (k TEXT PRIMARY KEY)"


@pytest.fixture
async def engine(postgres_dsn: str) -> AsyncIterator[AsyncPostgresEngine]:
    engine = AsyncPostgresEngine(postgres_dsn, ddl=DDL, unavailable=StoreAwayError)
    await engine.connection()
    yield engine
    await engine.close()


class TestEventLoopEngine:
    async def test_a_new_connection_runs_the_ddl_and_autocommits(
        self, engine, postgres_dsn
    ) -> None:
        async with engine.session() as conn:
            await conn.execute("INSERT INTO marks VALUES (%s)", ("a",))
        with psycopg.connect(postgres_dsn) as other:
            assert other.execute("SELECT k FROM marks").fetchall() == [("a",)]

    async def test_a_dropped_connection_is_transient_and_the_next_session_reconnects(
        self, engine, postgres_dsn
    ) -> None:
        async with engine.session() as conn:
            await conn.execute("INSERT INTO marks VALUES (%s)", ("a",))
        drop_postgres_connections(postgres_dsn)

        with pytest.raises(StoreAwayError):
            async with engine.session() as conn:
                await conn.execute("SELECT k FROM marks")
        async with engine.session() as conn:
            cursor = await conn.execute("SELECT k FROM marks")
            assert await cursor.fetchall() == [("a",)]

    async def test_the_ddl_runs_again_on_a_new_connection(self, engine, postgres_dsn) -> None:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("DROP TABLE marks")
        await engine.close()

        async with engine.session() as conn:
            await conn.execute("INSERT INTO marks VALUES (%s)", ("b",))

    async def test_a_statement_error_is_the_stores_only_when_every_error_is(
        self, engine, postgres_dsn
    ) -> None:
        with pytest.raises(psycopg.errors.UndefinedTable):
            async with engine.session() as conn:
                await conn.execute("SELECT * FROM no_such_table")

        strict = AsyncPostgresEngine(
            postgres_dsn, ddl=DDL, unavailable=StoreAwayError, every_error=True
        )
        try:
            with pytest.raises(StoreAwayError):
                async with strict.session() as conn:
                    await conn.execute("SELECT * FROM no_such_table")
            async with strict.session() as conn:  # made again
                await conn.execute("SELECT 1")
        finally:
            await strict.close()

    async def test_an_unreachable_server_is_transient(self) -> None:
        engine = AsyncPostgresEngine(UNREACHABLE, ddl=DDL, unavailable=StoreAwayError)
        with pytest.raises(StoreAwayError):
            await engine.connection()
