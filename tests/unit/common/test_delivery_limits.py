"""Where retrying ends: records that kill their consumer, dependencies away for too long, and
a store that fails (never the event's fault). Real SQLite stores, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from radstream.common.delivery import Outcome, RetryPolicy
from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.idempotency import Claim, SqliteIdempotencyGuard
from tests.unit.common.delivery_doubles import CollectedDeadLetters, deliver_record, record

SCOPE = "g/radstream.test.event.v1"
POLICY = RetryPolicy(max_attempts=2, initial_s=0.1, max_s=0.3, max_crashes=3, max_retry_s=60.0)


async def deliver_once(rec, handler, guard, *, now=None, crashes=0, policy=POLICY):
    outcome, sink, _ = await deliver_record(
        rec,
        handler,
        guard,
        policy=policy,
        crashes=crashes,
        attempts=guard,
        now=now or (lambda: datetime.now(UTC)),
    )
    return outcome, sink


def kind(letter) -> bytes:
    return dict(letter.headers())["x-radstream-error-kind"]


async def test_a_record_that_killed_its_consumer_max_crashes_times_is_set_aside_unread(
    guard,
) -> None:
    called: list[str] = []

    async def handler(event, claim: Claim) -> None:
        called.append(event.id)

    outcome, sink = await deliver_once(record(), handler, guard, crashes=3)

    assert outcome is Outcome.DEAD_LETTERED
    assert called == [], "the handler that killed three consumers is not run a fourth time"
    [letter] = sink.letters
    headers = dict(letter.headers())
    assert kind(letter) == b"crashed"
    assert headers["x-radstream-attempts"] == b"3"
    assert headers["x-radstream-error-type"] == b"radstream.common.delivery.ConsumerCrashedError"
    assert not await guard.is_done(SCOPE, "e-1"), "set aside, not done: a replay runs it"


async def test_a_record_that_killed_fewer_consumers_is_handled(guard) -> None:
    async def handler(event, claim: Claim) -> None:
        return None

    outcome, sink = await deliver_once(record(), handler, guard, crashes=2)

    assert outcome is Outcome.PROCESSED
    assert sink.letters == []


@pytest.mark.parametrize("error", [TransientError("PACS answers 503"), MisconfiguredError("403")])
async def test_a_dependency_away_longer_than_the_retry_time_dead_letters_the_record(
    guard, error
) -> None:
    async def handler(event, claim: Claim) -> None:
        raise error

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(type(error)):  # first failure: delivered again later
        await deliver_once(record(), handler, guard, now=lambda: start)
    with pytest.raises(type(error)):  # still within the retry time
        await deliver_once(record(), handler, guard, now=lambda: start + timedelta(seconds=59))

    later = start + timedelta(seconds=60)
    outcome, sink = await deliver_once(record(), handler, guard, now=lambda: later)

    assert outcome is Outcome.DEAD_LETTERED
    [letter] = sink.letters
    headers = dict(letter.headers())
    assert kind(letter) == b"retry-time-exhausted"
    assert headers["x-radstream-error-type"].endswith(type(error).__name__.encode())


async def test_the_first_failure_survives_a_restart_of_the_consumer(tmp_path: Path) -> None:
    async def handler(event, claim: Claim) -> None:
        raise TransientError("research PACS answers 500")

    start = datetime(2026, 1, 1, tzinfo=UTC)
    path = tmp_path / "guard.sqlite3"
    first = SqliteIdempotencyGuard(path)
    await first.open()
    with pytest.raises(TransientError):
        await deliver_once(record(), handler, first, now=lambda: start)
    await first.close()

    second = SqliteIdempotencyGuard(path)  # the restarted process
    await second.open()
    try:
        outcome, sink = await deliver_once(
            record(), handler, second, now=lambda: start + timedelta(hours=1)
        )
    finally:
        await second.close()

    assert outcome is Outcome.DEAD_LETTERED
    assert kind(sink.letters[0]) == b"retry-time-exhausted"


async def test_a_later_record_of_the_partition_starts_its_own_retry_time(guard) -> None:
    async def handler(event, claim: Claim) -> None:
        raise TransientError("away")

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(TransientError):
        await deliver_once(record(offset=4), handler, guard, now=lambda: start)
    with pytest.raises(TransientError):
        await deliver_once(record(offset=5), handler, guard, now=lambda: start + timedelta(hours=2))


def refuse_done_marks(guard: SqliteIdempotencyGuard) -> None:
    """Make the store refuse every done mark while it still reads (as a damaged file may)."""
    trigger = (
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON radstream_processed_events "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    guard._fast.execute(trigger)
    guard._db.execute(trigger)


async def test_a_done_mark_the_store_refuses_after_the_handler_never_dead_letters_the_event(
    guard,
) -> None:
    refuse_done_marks(guard)
    ran: list[str] = []

    async def handler(event, claim: Claim) -> None:
        ran.append(event.id)

    sink = CollectedDeadLetters()
    with pytest.raises(TransientError):  # delivered again, however long the store fails
        await deliver_record(
            record(),
            handler,
            guard,
            policy=RetryPolicy(max_attempts=2, initial_s=0.0, max_s=0.0),
            sink=sink,
        )

    assert ran, "the handler ran; only its done mark failed"
    assert sink.letters == [], "the event is not at fault for the store"


async def test_a_store_that_fails_every_write_is_not_ready(guard) -> None:
    refuse_done_marks(guard)
    await guard.check()  # reads still work

    for n in range(3):
        with pytest.raises(TransientError):
            await guard.mark_done(SCOPE, [f"e-{n}"])

    with pytest.raises(TransientError, match="writes failed"):
        await guard.check()


async def test_a_staged_statement_that_fails_is_the_handlers_failure(guard) -> None:
    async def handler(event, claim: Claim) -> None:
        claim.stage("INSERT INTO no_such_table VALUES (?)", (event.id,))

    outcome, sink = await deliver_once(record(), handler, guard)

    assert outcome is Outcome.DEAD_LETTERED
    assert kind(sink.letters[0]) == b"handler-failed"
