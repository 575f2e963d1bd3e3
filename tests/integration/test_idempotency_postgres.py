"""The PostgreSQL idempotency guard against the machine's real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from radstream.common import topics
from radstream.common.bus import Bus, create_bus
from radstream.common.delivery import RawRecord
from radstream.common.envelope import encode
from radstream.common.errors import TransientError
from radstream.common.idempotency import (
    ATTEMPTS_TABLE,
    TABLE,
    IdempotencyStoreError,
    PartitionStart,
    PostgresIdempotencyGuard,
    claim_for,
    open_guard,
)
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.contracts.v1.imaging_pb2 import StudyReceived
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


class StatementCounter:
    """Counts the statements the guard's connection sends: each one is a round trip."""

    def __init__(self) -> None:
        self.statements = 0

    async def attach(self, guard: PostgresIdempotencyGuard, monkeypatch) -> None:
        conn = await guard._pg.connection()
        execute = conn.execute

        async def counted(*args: object, **kwargs: object) -> object:
            self.statements += 1
            return await execute(*args, **kwargs)

        monkeypatch.setattr(conn, "execute", counted)


def attempts_row(database: str, partition: int) -> tuple[int, int, str] | None:
    """The attempt log's (first_offset, crashes, owner) for a partition of ATTEMPT_SCOPE."""
    with psycopg.connect(database) as conn:
        return conn.execute(
            f"SELECT first_offset, crashes, owner FROM {ATTEMPTS_TABLE} "
            "WHERE scope = %s AND kafka_partition = %s",
            (ATTEMPT_SCOPE, partition),
        ).fetchone()


def start(partition: int, first: int, last: int, owner: str) -> PartitionStart:
    return PartitionStart(partition=partition, first_offset=first, last_offset=last, owner=owner)


async def test_a_batchs_done_marks_and_its_first_partitions_start_take_one_round_trip(
    guard, monkeypatch
) -> None:
    await guard.mark_done(ATTEMPT_SCOPE, ["e-1", "e-3"])
    counter = StatementCounter()
    await counter.attach(guard, monkeypatch)

    done, crashes = await guard.start_batch(
        ATTEMPT_SCOPE, ["e-1", "e-2", "e-3"], start(0, 10, 19, "replica-a")
    )

    assert (done, crashes) == ({"e-1", "e-3"}, 0)
    assert counter.statements == 1
    assert await guard.start_batch(ATTEMPT_SCOPE, [], start(1, 0, 0, "replica-a")) == (set(), 0)


async def test_a_batch_started_with_its_done_marks_counts_crashes_as_started_does(guard) -> None:
    await guard.start_batch(ATTEMPT_SCOPE, ["e-1"], start(0, 10, 19, "replica-a"))

    assert (await guard.start_batch(ATTEMPT_SCOPE, ["e-1"], start(0, 14, 19, "replica-b")))[1] == 1
    assert await guard.started(ATTEMPT_SCOPE, 0, 14, 19, "replica-b") == 1, "same owner again"
    assert (await guard.start_batch(ATTEMPT_SCOPE, [], start(0, 14, 19, "replica-c")))[1] == 2
    await guard.release("replica-c")
    assert (await guard.start_batch(ATTEMPT_SCOPE, [], start(0, 14, 19, "replica-d")))[1] == 2, (
        "a clean stop adds none and keeps the count"
    )


TOPIC = topics.STUDY_RECEIVED_V1


def fetched(partition: int, offset: int, study: str) -> RawRecord:
    """A record of TOPIC as the consume loop hands it over."""
    value, headers = encode(
        StudyReceived(study_instance_uid=study), source="/radstream/test", event_id=f"ev-{study}"
    )
    return RawRecord(
        topic=TOPIC.name,
        partition=partition,
        offset=offset,
        key=None,
        value=value,
        headers=tuple(headers.items()),
    )


@pytest.fixture
async def bus_on_postgres(database: str) -> AsyncIterator[Bus]:
    """A deid bus whose guard (and attempt log) is PostgreSQL; nothing connects to Kafka."""
    bus = create_bus(
        KafkaSettings(bootstrap="127.0.0.1:9"),
        DeliverySettings(idempotency_dsn=database),
        service="deid",
        registry=CollectorRegistry(),
    )
    await bus.config.guard.open()
    yield bus
    await bus.config.guard.close()


async def test_a_fetched_record_reaches_its_handler_after_one_round_trip(
    bus_on_postgres, monkeypatch
) -> None:
    guard = bus_on_postgres.config.guard
    assert isinstance(guard, PostgresIdempotencyGuard)
    counter = StatementCounter()
    await counter.attach(guard, monkeypatch)
    before_handler: list[int] = []

    async def handler(event: object, claim: object) -> None:
        before_handler.append(counter.statements)

    record = fetched(0, 7, "2.25.1")
    delivery = await bus_on_postgres._batch(TOPIC, "deid", handler, [record])
    await delivery.deliver(record)

    assert before_handler == [1], "the done mark and the attempt log's start in one statement"
    assert attempts_row(bus_on_postgres.config.guard.dsn, 0) == (7, 0, bus_on_postgres._owner)


async def test_a_batchs_other_partitions_are_started_as_their_first_record_comes(
    bus_on_postgres, database
) -> None:
    partition_1: list[tuple[int, int, str] | None] = []

    async def handler(event: object, claim: object) -> None:
        partition_1.append(attempts_row(database, 1))

    records = [fetched(0, 3, "2.25.1"), fetched(0, 4, "2.25.2"), fetched(1, 8, "2.25.3")]
    delivery = await bus_on_postgres._batch(TOPIC, "deid", handler, records)
    for record in records:
        await delivery.deliver(record)

    owner = bus_on_postgres._owner
    assert partition_1 == [None, None, (8, 0, owner)], "started as its record came, not before"
    assert attempts_row(database, 0) == (3, 0, owner)


async def test_a_record_in_flight_when_its_bus_died_counts_a_crash_for_the_next_bus(
    bus_on_postgres, database
) -> None:
    async def handler(event: object, claim: object) -> None:
        pass

    died = create_bus(
        KafkaSettings(bootstrap="127.0.0.1:9"),
        DeliverySettings(idempotency_dsn=database),
        service="deid",
        registry=CollectorRegistry(),
    )
    await died.config.guard.open()
    try:
        records = [fetched(0, 5, "2.25.5"), fetched(0, 6, "2.25.6"), fetched(1, 2, "2.25.7")]
        await died._batch(TOPIC, "deid", handler, records)  # started, then never released
    finally:
        await died.config.guard.close()

    delivery = await bus_on_postgres._batch(TOPIC, "deid", handler, records)
    await delivery.deliver(records[0])
    await delivery.deliver(records[2])

    assert attempts_row(database, 0) == (5, 1, bus_on_postgres._owner)
    assert attempts_row(database, 1) == (2, 0, bus_on_postgres._owner), (
        "partition 1 was never started by the bus that died: no crash against its record"
    )
