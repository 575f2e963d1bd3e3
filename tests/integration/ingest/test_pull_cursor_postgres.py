"""The PACS pull cursor in PostgreSQL, against the machine's real PostgreSQL server."""

from __future__ import annotations

import psycopg
import pytest

from radstream.common.errors import TransientError
from radstream.ingest.pull_cursor import PostgresPullCursor, open_pull_cursor
from tests.conftest import drop_postgres_connections

pytestmark = pytest.mark.integration


async def test_the_position_is_saved_per_source_and_survives_a_restart(postgres_dsn) -> None:
    cursor = open_pull_cursor(postgres_dsn)
    assert isinstance(cursor, PostgresPullCursor)
    await cursor.open()
    try:
        assert await cursor.load("orthanc-a") is None
        await cursor.save("orthanc-a", 41)
        await cursor.save("orthanc-a", 42)
        await cursor.save("orthanc-b", 7)
    finally:
        await cursor.close()

    restarted = open_pull_cursor(postgres_dsn)
    await restarted.open()
    try:
        assert await restarted.load("orthanc-a") == 42
        assert await restarted.load("orthanc-b") == 7
    finally:
        await restarted.close()


async def test_a_lost_server_is_transient_and_the_cursor_reconnects(postgres_dsn) -> None:
    cursor = open_pull_cursor(postgres_dsn)
    await cursor.open()
    try:
        await cursor.save("orthanc", 5)
        drop_postgres_connections(postgres_dsn)
        with pytest.raises(TransientError):
            await cursor.load("orthanc")
        assert await cursor.load("orthanc") == 5  # reconnected
    finally:
        await cursor.close()


async def test_an_unreachable_server_is_a_transient_error() -> None:
    cursor = open_pull_cursor("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(TransientError):
        await cursor.open()


async def test_a_database_that_refuses_writes_is_transient(postgres_dsn) -> None:
    cursor = open_pull_cursor(postgres_dsn)
    await cursor.open()
    try:
        await cursor.save("orthanc", 5)
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            name = postgres_dsn.rsplit("/", 1)[1]
            admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        drop_postgres_connections(postgres_dsn)  # as a failover to a standby would
        with pytest.raises(TransientError):
            await cursor.load("orthanc")
        with pytest.raises(TransientError):  # a standby refuses the write: the cursor's failure
            await cursor.save("orthanc", 6)
        assert await cursor.load("orthanc") == 5
    finally:
        await cursor.close()
