"""The attempt log of the SQLite store: crashes counted against the record in flight only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

SCOPE = "deid/radstream.study.received.v1"


async def test_a_record_another_consumer_started_and_never_left_counts_one_crash(guard) -> None:
    assert await guard.started(SCOPE, 0, 10, 19, "first") == 0

    assert await guard.started(SCOPE, 0, 14, 19, "second") == 1, "14 was in flight at the death"


async def test_each_consumer_that_died_on_it_counts_again(guard) -> None:
    await guard.started(SCOPE, 0, 10, 19, "a")
    await guard.started(SCOPE, 0, 14, 19, "b")
    await guard.started(SCOPE, 0, 14, 19, "c")

    assert await guard.started(SCOPE, 0, 14, 19, "d") == 3


async def test_the_records_behind_the_culprit_start_with_no_crash(guard) -> None:
    await guard.started(SCOPE, 0, 14, 19, "a")
    await guard.started(SCOPE, 0, 14, 19, "b")  # 14 killed a
    await guard.started(SCOPE, 0, 14, 14, "c")  # 14 killed b, c sets it aside

    assert await guard.started(SCOPE, 0, 15, 19, "c") == 0


async def test_the_same_consumer_meeting_a_record_again_is_no_crash(guard) -> None:
    await guard.started(SCOPE, 0, 10, 19, "a")
    await guard.started(SCOPE, 0, 14, 19, "b")  # one crash on 14

    assert await guard.started(SCOPE, 0, 14, 19, "b") == 1, "a redelivery keeps the count"


async def test_a_consumer_that_stopped_cleanly_leaves_no_crash(guard) -> None:
    await guard.started(SCOPE, 0, 10, 19, "a")
    await guard.release("a")

    assert await guard.started(SCOPE, 0, 14, 19, "b") == 0


async def test_a_batch_past_the_last_one_started_is_no_crash(guard) -> None:
    await guard.started(SCOPE, 0, 10, 19, "a")

    assert await guard.started(SCOPE, 0, 20, 29, "b") == 0


async def test_partitions_and_scopes_count_apart(guard) -> None:
    await guard.started(SCOPE, 0, 10, 19, "a")
    await guard.started("other/topic", 1, 10, 19, "a")

    assert await guard.started(SCOPE, 1, 10, 19, "b") == 0
    assert await guard.started(SCOPE, 0, 10, 19, "b") == 1


async def test_the_first_failure_of_a_record_is_kept_until_another_fails(guard) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)

    assert await guard.failing_since(SCOPE, 0, 7, start) == start
    later = start + timedelta(minutes=5)
    assert await guard.failing_since(SCOPE, 0, 7, later) == start
    assert await guard.failing_since(SCOPE, 0, 8, later) == later
