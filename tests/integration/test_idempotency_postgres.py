"""The PostgreSQL idempotency guard against the machine's real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from radstream.common.errors import TransientError
from radstream.common.idempotency import (
    TABLE,
    IdempotencyStoreError,
    PostgresIdempotencyGuard,
    claim_for,
    open_guard,
)
from tests.conftest import drop_postgres_connections

pytestmark = pytest.mark.integration


@pytest.fixture
def database(postgres_dsn: str) -> str:
    return postgres_dsn


@pytest.fixture
async def guard(database: str) -> AsyncIterator[PostgresIdempotencyGuard]:
    store = open_guard(database)
    assert isinstance(store, PostgresIdempotencyGuard)
    await store.open()
    yield store
    await store.close()


async def test_completed_event_is_done_for_its_scope_only(guard) -> None:
    claim = claim_for(guard, "deid/radstream.study.received.v1", "e-1")
    assert not await guard.is_done(claim.scope, "e-1")
    assert await guard.complete(claim)
    assert await guard.is_done(claim.scope, "e-1")
    assert not await guard.is_done("restructure/radstream.study.received.v1", "e-1")


async def test_a_batch_is_asked_about_in_one_query_per_scope(guard) -> None:
    for scope, event_id in (("deid/t", "e-1"), ("deid/t", "e-3"), ("other/t", "e-2")):
        await guard.complete(claim_for(guard, scope, event_id))

    assert await guard.done_among("deid/t", ["e-1", "e-2", "e-3", "e-4"]) == {"e-1", "e-3"}
    assert await guard.done_among("deid/t", []) == set()


async def test_a_batchs_marks_are_written_in_one_statement_keeping_those_done(guard) -> None:
    await guard.complete(claim_for(guard, "deid/t", "e-1"))

    await guard.mark_done("deid/t", ["e-1", "e-2", "e-3"])
    await guard.mark_done("deid/t", [])

    assert await guard.done_among("deid/t", ["e-1", "e-2", "e-3", "e-4"]) == {"e-1", "e-2", "e-3"}
    assert await guard.done_among("other/t", ["e-2"]) == set()


async def test_marks_older_than_the_cutoff_are_pruned_in_chunks(guard, database) -> None:
    await guard.mark_done("deid/t", ["old-1", "old-2", "old-3", "new"])
    await guard.mark_done("other/t", ["old-4"])
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {TABLE} SET completed_at = now() - interval '40 days' "
            "WHERE event_id LIKE 'old-%'"
        )

    oldest = await guard.oldest_mark()
    assert oldest is not None and datetime.now(UTC) - oldest > timedelta(days=39)

    pruned = await guard.prune(datetime.now(UTC) - timedelta(days=30), chunk=2)

    assert pruned == 4
    assert await guard.done_among("deid/t", ["old-1", "old-2", "old-3", "new"]) == {"new"}
    assert not await guard.is_done("other/t", "old-4")


async def test_second_completion_loses_and_its_staged_effects_are_dropped(guard, database) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE findings (event_id TEXT)")
    for _ in range(2):
        claim = claim_for(guard, "g/t", "e-2")
        claim.stage("INSERT INTO findings VALUES (%s)", ("e-2",))
        await guard.complete(claim)
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM findings").fetchone() == (1,)


async def test_two_replicas_sharing_the_table_complete_an_event_once(database) -> None:
    first, second = open_guard(database), open_guard(database)
    await first.open()
    await second.open()
    try:
        assert await first.complete(claim_for(first, "g/t", "e-3"))
        assert not await second.complete(claim_for(second, "g/t", "e-3"))
        assert await second.is_done("g/t", "e-3")
    finally:
        await first.close()
        await second.close()


async def test_lost_connection_is_transient_and_the_guard_reconnects(guard, database) -> None:
    drop_postgres_connections(database)
    with pytest.raises(TransientError):
        await guard.is_done("g/t", "e-4")
    assert not await guard.is_done("g/t", "e-4")  # reconnected


async def test_unreachable_server_is_a_transient_error() -> None:
    store = open_guard("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(TransientError):
        await store.open()


ATTEMPT_SCOPE = "deid/radstream.study.received.v1"


async def test_a_record_in_flight_when_its_consumers_died_counts_a_crash_each_time(
    guard,
) -> None:
    assert await guard.started(ATTEMPT_SCOPE, 0, 10, 19, "replica-a") == 0
    assert await guard.started(ATTEMPT_SCOPE, 0, 14, 19, "replica-b") == 1
    assert await guard.started(ATTEMPT_SCOPE, 0, 14, 19, "replica-b") == 1, "same owner again"
    assert await guard.started(ATTEMPT_SCOPE, 0, 14, 19, "replica-c") == 2
    assert await guard.started(ATTEMPT_SCOPE, 0, 15, 19, "replica-c") == 0, "behind it: none"


async def test_a_replica_that_stopped_cleanly_leaves_no_crash_to_the_next(guard) -> None:
    await guard.started(ATTEMPT_SCOPE, 1, 10, 19, "replica-a")
    await guard.release("replica-a")

    assert await guard.started(ATTEMPT_SCOPE, 1, 12, 19, "replica-b") == 0


async def test_the_first_failure_is_shared_by_the_replicas(guard, database) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert await guard.failing_since(ATTEMPT_SCOPE, 2, 7, start) == start

    other = open_guard(database)  # the replica that gets the partition next
    await other.open()
    try:
        later = start + timedelta(minutes=30)
        assert await other.failing_since(ATTEMPT_SCOPE, 2, 7, later) == start
    finally:
        await other.close()


async def test_a_database_that_refuses_writes_is_the_stores_failure_never_the_events(
    guard, database
) -> None:
    name = database.rsplit("/", 1)[1]
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    await guard.close()  # the next connection is read-only: as a failed-over standby would be

    for n in range(3):
        with pytest.raises(IdempotencyStoreError):
            await guard.mark_done(ATTEMPT_SCOPE, [f"e-{n}"])
    with pytest.raises(IdempotencyStoreError):  # readiness sees it
        await guard.check()
