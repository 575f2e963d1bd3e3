"""Asking the idempotency guard about a fetched batch at once (no broker needed)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import pytest

from radstream.common.delivery import RawRecord, event_id_of
from radstream.common.errors import TransientError
from radstream.common.idempotency import (
    BatchGuard,
    Claim,
    IdempotencyStoreError,
    PartitionStart,
    SqliteIdempotencyGuard,
    claim_for,
    prefetch,
    prefetch_started,
)

SCOPE = "deid/radstream.study.received.v1"


class CountingGuard:
    """Wraps a guard and counts the queries that reach it."""

    def __init__(self, inner: SqliteIdempotencyGuard) -> None:
        self.inner, self.paramstyle = inner, inner.paramstyle
        self.queries: list[str] = []

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None: ...

    async def is_done(self, scope: str, event_id: str) -> bool:
        self.queries.append(f"is_done {event_id}")
        return await self.inner.is_done(scope, event_id)

    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
        self.queries.append(f"done_among {len(event_ids)}")
        return await self.inner.done_among(scope, event_ids)

    async def complete(self, claim: Claim) -> bool:
        self.queries.append(f"complete {claim.event_id}")
        return await self.inner.complete(claim)

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        self.queries.append(f"mark_done {' '.join(event_ids)}")
        await self.inner.mark_done(scope, event_ids)


class UnreachableGuard(CountingGuard):
    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
        raise TransientError("idempotency store unavailable")

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        raise TransientError("idempotency store unavailable")


def raw(*headers: tuple[str, bytes | None]) -> RawRecord:
    return RawRecord(topic="t", partition=0, offset=0, key=None, value=b"", headers=headers)  # type: ignore[arg-type]


class TestDoneAmong:
    async def test_names_the_events_finished_in_that_scope_only(self, guard) -> None:
        await guard.complete(claim_for(guard, SCOPE, "e-1"))
        await guard.complete(claim_for(guard, "other/scope", "e-2"))

        assert await guard.done_among(SCOPE, ["e-1", "e-2", "e-3"]) == {"e-1"}

    async def test_answers_for_more_ids_than_one_query_may_bind(self, guard) -> None:
        ids = [f"e-{n}" for n in range(1200)]
        for event_id in ids[::7]:
            await guard.complete(claim_for(guard, SCOPE, event_id))

        assert await guard.done_among(SCOPE, ids) == set(ids[::7])


class TestPrefetch:
    async def test_one_query_answers_every_event_of_the_batch(self, guard) -> None:
        await guard.complete(claim_for(guard, SCOPE, "old"))
        counting = CountingGuard(guard)

        view = await prefetch(counting, SCOPE, ["old", "new", None, "new-2"])

        assert [await view.is_done(SCOPE, e) for e in ("old", "new", "new-2")] == [
            True,
            False,
            False,
        ]
        assert counting.queries == ["done_among 3"]

    async def test_an_event_completed_in_the_batch_is_done_for_its_repeat(self, guard) -> None:
        view = await prefetch(guard, SCOPE, ["twice", "other"])

        assert not await view.is_done(SCOPE, "twice")
        assert await view.complete(claim_for(view, SCOPE, "twice"))
        assert await view.is_done(SCOPE, "twice"), "the second copy in the batch is a duplicate"

    async def test_an_event_another_replica_finished_first_is_done_after_complete(
        self, guard
    ) -> None:
        view = await prefetch(guard, SCOPE, ["raced", "other"])
        await guard.complete(claim_for(guard, SCOPE, "raced"))  # the other replica

        assert not await view.is_done(SCOPE, "raced"), "answered as of the batch's start"
        claim = claim_for(view, SCOPE, "raced")
        claim.stage("CREATE TABLE effect_of_raced (x)")
        assert not await view.complete(claim), "complete settles it for staged effects"
        assert await view.is_done(SCOPE, "raced")
        assert await guard.done_among(SCOPE, ["raced"]) == {"raced"}
        with sqlite3.connect(guard.path) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert "effect_of_raced" not in tables, "its staged effects were dropped"

    async def test_a_mark_another_replica_wrote_first_is_kept(self, guard) -> None:
        view = await prefetch(guard, SCOPE, ["raced", "other"])
        await guard.complete(claim_for(guard, SCOPE, "raced"))  # the other replica

        assert await view.complete(claim_for(view, SCOPE, "raced")), "processed here too"
        await view.write_marks()

        assert await guard.done_among(SCOPE, ["raced"]) == {"raced"}

    async def test_events_outside_the_batch_are_asked_of_the_guard(self, guard) -> None:
        counting = CountingGuard(guard)
        view = await prefetch(counting, SCOPE, ["a", "b"])

        await view.is_done(SCOPE, "c")
        await view.is_done("other/scope", "a")

        assert counting.queries == ["done_among 2", "is_done c", "is_done a"]

    async def test_a_batch_of_one_asks_nothing_in_advance(self, guard) -> None:
        counting = CountingGuard(guard)

        view = await prefetch(counting, SCOPE, ["only", None, "only"])
        assert counting.queries == []

        assert not await view.is_done(SCOPE, "only")
        assert counting.queries == ["is_done only"], "the record asks as it comes"

    async def test_a_store_that_cannot_answer_leaves_each_record_to_ask_alone(self, guard) -> None:
        unreachable = UnreachableGuard(guard)
        view = await prefetch(unreachable, SCOPE, ["a", "b"])

        await view.is_done(SCOPE, "a")

        assert unreachable.queries == ["is_done a"]

    async def test_the_view_keeps_the_guards_placeholder_style(self, guard) -> None:
        view = await prefetch(guard, SCOPE, ["a", "b"])

        assert isinstance(view, BatchGuard) and view.paramstyle == "qmark"


class RefusingStore(SqliteIdempotencyGuard):
    """A SQLite guard whose store fails the batch's start."""

    async def start_batch(
        self, scope: str, event_ids: Sequence[str], start: PartitionStart
    ) -> tuple[set[str], int]:
        raise IdempotencyStoreError("idempotency store: unavailable")


def first_partition(first: int, last: int, owner: str) -> PartitionStart:
    return PartitionStart(partition=0, first_offset=first, last_offset=last, owner=owner)


class TestPrefetchStarted:
    async def test_answers_the_batchs_events_and_starts_its_first_partition(self, guard) -> None:
        await guard.complete(claim_for(guard, SCOPE, "old"))

        view, crashes = await prefetch_started(
            guard, SCOPE, ["old", "new", None], first_partition(10, 19, "a")
        )

        assert crashes == 0
        assert [await view.is_done(SCOPE, e) for e in ("old", "new")] == [True, False]
        assert await guard.started(SCOPE, 0, 14, 19, "b") == 1, "a's range was noted"

    async def test_counts_the_crashes_of_the_first_record(self, guard) -> None:
        await guard.started(SCOPE, 0, 10, 19, "a")

        _, crashes = await prefetch_started(guard, SCOPE, ["e"], first_partition(14, 19, "b"))

        assert crashes == 1

    async def test_a_batch_of_one_is_answered_with_the_start(self, guard) -> None:
        await guard.complete(claim_for(guard, SCOPE, "only"))

        view, _ = await prefetch_started(guard, SCOPE, ["only"], first_partition(0, 0, "a"))
        await guard.close()  # the view answers without the store

        assert await view.is_done(SCOPE, "only")

    async def test_a_store_that_cannot_answer_starts_nothing_and_leaves_records_to_ask(
        self, tmp_path
    ) -> None:
        store = RefusingStore(tmp_path / "refusing.sqlite3")
        await store.open()
        try:
            view, crashes = await prefetch_started(
                store, SCOPE, ["a", "b"], first_partition(0, 1, "a")
            )

            assert crashes is None, "the partition is started by its first record instead"
            assert not await view.is_done(SCOPE, "a")
            assert await store.started(SCOPE, 0, 0, 1, "b") == 0, "nothing was noted"
        finally:
            await store.close()


class TestMarksWrittenPerBatch:
    async def test_a_claim_that_staged_nothing_is_marked_when_the_batch_writes_its_marks(
        self, guard
    ) -> None:
        counting = CountingGuard(guard)
        view = await prefetch(counting, SCOPE, ["a", "b", "c"])

        for event_id in ("a", "b"):
            assert await view.complete(claim_for(view, SCOPE, event_id))
        assert await guard.done_among(SCOPE, ["a", "b"]) == set(), "not written yet"
        assert await view.is_done(SCOPE, "a"), "yet done for the rest of the batch"

        await view.write_marks()

        assert await guard.done_among(SCOPE, ["a", "b", "c"]) == {"a", "b"}
        assert counting.queries == ["done_among 3", "mark_done a b"], "one write for the batch"
        await view.write_marks()
        assert counting.queries[-1] == "mark_done a b", "each mark is written once"

    async def test_a_claim_with_staged_effects_completes_at_once(self, guard) -> None:
        counting = CountingGuard(guard)
        view = await prefetch(counting, SCOPE, ["a", "b"])
        claim = claim_for(view, SCOPE, "a")
        claim.stage("CREATE TABLE effect_of_a (x)")

        assert await view.complete(claim)

        assert await guard.is_done(SCOPE, "a")
        assert view.unwritten == 0

    async def test_a_claim_in_another_scope_completes_at_once(self, guard) -> None:
        view = await prefetch(guard, SCOPE, ["a", "b"])

        assert await view.complete(claim_for(view, "other/scope", "a"))

        assert await guard.is_done("other/scope", "a")
        assert not await view.is_done(SCOPE, "a")

    async def test_marks_the_store_refused_stay_for_the_next_write(self, guard) -> None:
        unreachable = UnreachableGuard(guard)
        view = await prefetch(unreachable, SCOPE, ["a"])
        await view.complete(claim_for(view, SCOPE, "a"))

        with pytest.raises(TransientError):
            await view.write_marks()

        assert view.unwritten == 1

    async def test_an_event_the_batch_finished_is_not_completed_twice(self, guard) -> None:
        view = await prefetch(guard, SCOPE, ["a", "b"])

        assert await view.complete(claim_for(view, SCOPE, "a"))
        assert not await view.complete(claim_for(view, SCOPE, "a"))
        assert view.unwritten == 1


class TestMarkDone:
    async def test_marks_every_event_and_keeps_those_already_done(self, guard) -> None:
        await guard.complete(claim_for(guard, SCOPE, "old"))

        await guard.mark_done(SCOPE, ["old", "new-1", "new-2"])
        await guard.mark_done(SCOPE, ["one"])
        await guard.mark_done(SCOPE, [])

        assert await guard.done_among(SCOPE, ["old", "new-1", "new-2", "one"]) == {
            "old",
            "new-1",
            "new-2",
            "one",
        }


class TestEventIdOf:
    def test_is_the_last_ce_id_as_decoding_reads_it(self) -> None:
        assert event_id_of(raw(("ce_id", b"first"), ("x", b"\xff"), ("ce_id", b"last"))) == "last"

    def test_ignores_a_header_without_a_value_as_decoding_does(self) -> None:
        assert event_id_of(raw(("ce_id", b"kept"), ("ce_id", None))) == "kept"

    @pytest.mark.parametrize(
        "headers", [(), (("ce_id", b""),), (("ce_id", b"\xff\xfe"),), (("ce_type", b"x"),)]
    )
    def test_is_none_when_there_is_no_readable_id(self, headers) -> None:
        assert event_id_of(raw(*headers)) is None
