"""The SQL engine module on SQLite: DSNs, connections, transactions, errors, its worker thread."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.sql import (
    EngineThread,
    PostgresDsn,
    PostgresEngine,
    SqliteDsn,
    SqliteEngine,
    SqliteOptions,
    open_engine,
    parse_dsn,
    write_transaction,
)


class StoreAwayError(TransientError):
    """A store's own error family, as each store defines one."""


def engine_at(path: Path, *, every_error: bool = False, **options: object) -> SqliteEngine:
    return SqliteEngine(
        path,
        options=SqliteOptions(**options),  # type: ignore[arg-type]
        unavailable=StoreAwayError,
        every_error=every_error,
    )


def pragma(db: sqlite3.Connection, name: str) -> object:
    return db.execute(f"PRAGMA {name}").fetchone()[0]


class TestDsns:
    def test_a_sqlite_dsn_names_a_relative_or_an_absolute_path(self) -> None:
        assert parse_dsn("sqlite:///data/a.db", setting="S", invalid=ValueError) == SqliteDsn(
            Path("data/a.db")
        )
        assert parse_dsn("sqlite:////var/a.db", setting="S", invalid=ValueError) == SqliteDsn(
            Path("/var/a.db")
        )

    def test_a_postgresql_dsn_is_passed_on_as_it_is(self) -> None:
        for dsn in ("postgresql://u@db/x?sslmode=require", "postgres://db/x"):
            assert parse_dsn(dsn, setting="S", invalid=ValueError) == PostgresDsn(dsn)

    def test_another_dsn_is_refused_naming_the_setting_never_the_value(self) -> None:
        with pytest.raises(MisconfiguredError) as refused:
            parse_dsn(
                "mysql://user:s3cret@db/x", setting="RADSTREAM_X_DSN", invalid=MisconfiguredError
            )
        assert "RADSTREAM_X_DSN" in str(refused.value)
        assert "s3cret" not in str(refused.value)

    def test_open_engine_picks_the_engine_the_dsn_names(self, tmp_path: Path) -> None:
        kwargs = {"setting": "S", "invalid": ValueError, "unavailable": StoreAwayError}
        sqlite = open_engine(f"sqlite:///{tmp_path}/a.db", **kwargs)  # type: ignore[arg-type]
        postgres = open_engine("postgresql://db/x", **kwargs)  # type: ignore[arg-type]
        assert isinstance(sqlite, SqliteEngine) and sqlite.paramstyle == "qmark"
        assert isinstance(postgres, PostgresEngine) and postgres.paramstyle == "format"


class TestConnections:
    def test_a_connection_is_in_wal_mode_with_the_projects_pragmas(self, tmp_path: Path) -> None:
        db = engine_at(tmp_path / "a.db").new_connection()
        try:
            assert pragma(db, "journal_mode") == "wal"
            assert pragma(db, "synchronous") == 1  # NORMAL
            assert pragma(db, "busy_timeout") == 10_000
        finally:
            db.close()

    def test_a_new_file_takes_the_options_page_size_and_checkpoint(self, tmp_path: Path) -> None:
        engine = engine_at(
            tmp_path / "a.db", synchronous="FULL", page_size=8192, wal_autocheckpoint=2_500
        )
        db = engine.new_connection(busy_timeout_ms=0)
        try:
            assert pragma(db, "page_size") == 8192
            assert pragma(db, "wal_autocheckpoint") == 2_500
            assert pragma(db, "synchronous") == 2  # FULL
            assert pragma(db, "busy_timeout") == 0, "the call's timeout wins over the options'"
        finally:
            db.close()

    def test_the_directory_is_made_and_an_owner_only_file_is_0600(self, tmp_path: Path) -> None:
        path = tmp_path / "deeper" / "store.db"
        engine = engine_at(path, owner_only=True)
        engine.connect()
        engine.close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_a_statement_outside_a_transaction_commits_at_once(self, tmp_path: Path) -> None:
        engine = engine_at(tmp_path / "a.db")
        engine.connect()
        try:
            engine.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
            assert engine.execute("INSERT INTO t VALUES (?, ?)", ("a", 1)) == []
            with sqlite3.connect(engine.path) as other:
                assert other.execute("SELECT k, v FROM t").fetchall() == [("a", 1)]
        finally:
            engine.close()

    def test_a_store_used_before_it_was_opened_is_misconfigured(self, tmp_path: Path) -> None:
        with pytest.raises(MisconfiguredError):
            engine_at(tmp_path / "a.db").execute("SELECT 1")


class TestWriteTransactions:
    @pytest.fixture
    def engine(self, tmp_path: Path) -> SqliteEngine:
        engine = engine_at(tmp_path / "a.db")
        engine.connect()
        engine.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        return engine

    def test_the_block_commits_on_leaving(self, engine: SqliteEngine) -> None:
        with engine.transaction():
            engine.execute("INSERT INTO t VALUES (?)", ("a",))
            engine.execute("INSERT INTO t VALUES (?)", ("b",))
        assert engine.execute("SELECT k FROM t ORDER BY k") == [("a",), ("b",)]

    def test_an_error_in_the_block_rolls_all_of_it_back(self, engine: SqliteEngine) -> None:
        def insert_twice() -> None:
            with engine.transaction():
                engine.execute("INSERT INTO t VALUES (?)", ("a",))
                engine.execute("INSERT INTO t VALUES (?)", ("a",))

        with pytest.raises(sqlite3.IntegrityError):
            insert_twice()
        assert engine.execute("SELECT k FROM t") == []

    def test_the_write_lock_is_taken_at_the_start(self, engine: SqliteEngine) -> None:
        other = engine.new_connection(busy_timeout_ms=0)
        try:
            with engine.transaction(), pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()

    def test_a_rollback_sqlite_did_itself_is_not_done_twice(self, tmp_path: Path) -> None:
        db = engine_at(tmp_path / "b.db").new_connection()
        try:

            def fail_after_sqlites_own_rollback() -> None:
                with write_transaction(db):
                    db.execute("ROLLBACK")  # as SQLite does on a full disk
                    raise ValueError("handler")

            with pytest.raises(ValueError, match="handler"):
                fail_after_sqlites_own_rollback()
            assert not db.in_transaction
        finally:
            db.close()


class TestErrors:
    def test_a_locked_or_unusable_database_is_the_stores_transient_error(
        self, tmp_path: Path
    ) -> None:
        engine = engine_at(tmp_path / "a.db")
        translated = engine.translate(sqlite3.OperationalError("database is locked"))
        assert isinstance(translated, StoreAwayError)
        assert "locked" not in str(translated), "the driver's text is not passed on"
        assert "OperationalError" in str(translated)

    def test_other_driver_errors_are_the_stores_only_when_every_error_is(
        self, tmp_path: Path
    ) -> None:
        corrupt = sqlite3.DatabaseError("file is not a database")
        assert engine_at(tmp_path / "a.db").translate(corrupt) is None
        assert isinstance(
            engine_at(tmp_path / "a.db", every_error=True).translate(corrupt), StoreAwayError
        )
        assert engine_at(tmp_path / "a.db", every_error=True).translate(ValueError()) is None


class TestEngineThread:
    async def test_statements_run_on_one_thread_of_their_own(self, tmp_path: Path) -> None:
        engine = engine_at(tmp_path / "a.db")
        thread = EngineThread(engine, name="test-store")
        await thread.call(engine.connect)
        try:
            names = {await thread.call(lambda: threading.current_thread().name) for _ in range(3)}
            assert len(names) == 1 and names.pop().startswith("test-store")
            assert await thread.execute("SELECT ? + 1", (41,)) == [(42,)]
        finally:
            await thread.close()

    async def test_a_driver_error_on_the_thread_becomes_the_stores(self, tmp_path: Path) -> None:
        path = tmp_path / "a.db"
        engine = engine_at(path, busy_timeout_ms=0)
        thread = EngineThread(engine, name="test-store")
        await thread.call(engine.connect)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            with pytest.raises(StoreAwayError):
                await thread.execute("CREATE TABLE t (k TEXT)")
            holder.execute("ROLLBACK")
            assert await thread.execute("CREATE TABLE t (k TEXT)") == [], "it works again"
        finally:
            holder.close()
            await thread.close()

    async def test_a_closed_store_opens_again(self, tmp_path: Path) -> None:
        engine = engine_at(tmp_path / "a.db")
        thread = EngineThread(engine, name="test-store")
        await thread.call(engine.connect)
        await thread.close()
        await thread.call(engine.connect)
        try:
            assert await thread.execute("SELECT 1") == [(1,)]
        finally:
            await thread.close()
