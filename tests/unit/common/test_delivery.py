"""Delivery of one record: retries with backoff, dead letters, idempotency (no broker needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from radstream.common.delivery import Outcome, RawRecord, RetryPolicy
from radstream.common.errors import TransientError
from radstream.common.idempotency import Claim
from tests.unit.common.delivery_doubles import (
    BrokenDeadLetters,
    CollectedDeadLetters,
    RecordedSleeps,
    deliver_record,
    record,
)

POLICY = RetryPolicy(max_attempts=3, initial_s=0.1, max_s=0.3, multiplier=2)


async def run(
    rec: RawRecord, handler, guard, sink=None, sleep=None
) -> tuple[Outcome, CollectedDeadLetters, RecordedSleeps]:
    return await deliver_record(rec, handler, guard, policy=POLICY, sink=sink, sleep=sleep)


async def test_successful_handler_sees_the_decoded_event(guard) -> None:
    seen: list[str] = []

    async def handler(event, claim: Claim) -> None:
        seen.append(event.message.value)

    outcome, sink, _ = await run(record("liver"), handler, guard)
    assert outcome is Outcome.PROCESSED
    assert seen == ["liver"]
    assert sink.letters == []


async def test_same_event_delivered_twice_runs_the_handler_once(guard) -> None:
    calls: list[str] = []

    async def handler(event, claim: Claim) -> None:
        calls.append(event.id)

    first, _, _ = await run(record(event_id="dup"), handler, guard)
    second, _, _ = await run(record(event_id="dup", offset=5), handler, guard)
    assert (first, second) == (Outcome.PROCESSED, Outcome.DUPLICATE)
    assert calls == ["dup"]


async def test_failing_handler_is_retried_with_backoff_then_dead_lettered(guard) -> None:
    attempts: list[int] = []

    async def handler(event, claim: Claim) -> None:
        attempts.append(1)
        raise ValueError("segmentation mask empty")

    outcome, sink, sleeps = await run(record(), handler, guard)
    assert outcome is Outcome.DEAD_LETTERED
    assert len(attempts) == 3
    assert sleeps.delays == [0.1, 0.2]
    [letter] = sink.letters
    headers = dict(letter.headers())
    assert headers["x-radstream-error-type"] == b"builtins.ValueError"
    # A library's (here: a builtin) exception is named by its type and place, never its text.
    assert headers["x-radstream-error-message"].startswith(b"ValueError raised in ")
    assert headers["x-radstream-attempts"] == b"3"
    assert headers["x-radstream-original-offset"] == b"0"
    assert letter.record.value == record().value
    assert headers["ce_id"] == b"e-1"


async def test_handler_that_recovers_on_retry_is_processed(guard) -> None:
    attempts: list[int] = []

    async def handler(event, claim: Claim) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("model server restarting")

    outcome, sink, _ = await run(record(), handler, guard)
    assert outcome is Outcome.PROCESSED
    assert len(attempts) == 2
    assert sink.letters == []


async def test_undecodable_record_goes_straight_to_the_dlq(guard) -> None:
    called: list[int] = []

    async def handler(event, claim: Claim) -> None:
        called.append(1)

    rec = record()
    broken = RawRecord(**{**rec.__dict__, "value": b"\xff\xff\xff"})
    outcome, sink, sleeps = await run(broken, handler, guard)
    assert outcome is Outcome.DEAD_LETTERED
    assert called == []
    assert sleeps.delays == []
    assert dict(sink.letters[0].headers())["x-radstream-error-kind"] == b"poison"


async def test_transient_error_outlasting_retries_is_redelivered_not_dead_lettered(guard) -> None:
    async def handler(event, claim: Claim) -> None:
        raise TransientError("triton unavailable")

    with pytest.raises(TransientError):
        await run(record(), handler, guard)
    assert not await guard.is_done("g/radstream.test.event.v1", "e-1")


async def test_unwritable_dlq_propagates_so_the_offset_is_not_committed(guard) -> None:
    async def handler(event, claim: Claim) -> None:
        raise ValueError("boom")

    with pytest.raises(TransientError):
        await run(record(), handler, guard, sink=BrokenDeadLetters())


async def test_staged_effects_commit_with_the_done_mark_and_only_once(guard) -> None:
    guard._db.execute("CREATE TABLE findings (event_id TEXT)")

    async def handler(event, claim: Claim) -> None:
        claim.stage("INSERT INTO findings VALUES (?)", (event.id,))

    await run(record(event_id="a"), handler, guard)
    await run(record(event_id="a"), handler, guard)
    rows = guard._db.execute("SELECT event_id FROM findings").fetchall()
    assert rows == [("a",)]


async def test_effects_of_a_failed_attempt_are_not_committed(guard) -> None:
    guard._db.execute("CREATE TABLE findings (event_id TEXT)")
    attempts: list[int] = []

    async def handler(event, claim: Claim) -> None:
        attempts.append(1)
        claim.stage("INSERT INTO findings VALUES (?)", (event.id,))
        if len(attempts) == 1:
            raise ValueError("first attempt fails after staging")

    await run(record(event_id="b"), handler, guard)
    assert guard._db.execute("SELECT count(*) FROM findings").fetchone() == (1,)


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, initial_s=0.5, max_s=3.0, multiplier=2)
    assert [policy.delay_after(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_the_done_mark_records_when_the_event_completed_in_utc(guard) -> None:
    async def handler(event, claim: Claim) -> None:
        return None

    before = datetime.now(UTC)
    await run(record(event_id="c"), handler, guard)
    [(completed_at,)] = guard._db.execute(
        "SELECT completed_at FROM radstream_processed_events WHERE event_id = 'c'"
    ).fetchall()
    stamped = datetime.fromisoformat(completed_at.replace("Z", "+00:00"))
    assert completed_at.endswith("Z")
    assert before - timedelta(seconds=1) <= stamped <= datetime.now(UTC) + timedelta(seconds=1)
