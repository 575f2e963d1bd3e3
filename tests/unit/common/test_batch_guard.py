"""Asking the idempotency guard about a fetched batch at once (no broker needed)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from radstream.common.delivery import RawRecord, event_id_of
from radstream.common.errors import TransientError
from radstream.common.idempotency import (
    BatchGuard,
    Claim,
    SqliteIdempotencyGuard,
    claim_for,
    prefetch,
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
        return await self.inner.complete(claim)


class UnreachableGuard(CountingGuard):
    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
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
        assert not await view.complete(claim_for(view, SCOPE, "raced")), "complete settles it"
        assert await view.is_done(SCOPE, "raced")

    async def test_events_outside_the_batch_are_asked_of_the_guard(self, guard) -> None:
        counting = CountingGuard(guard)
        view = await prefetch(counting, SCOPE, ["a", "b"])

        await view.is_done(SCOPE, "c")
        await view.is_done("other/scope", "a")

        assert counting.queries == ["done_among 2", "is_done c", "is_done a"]

    async def test_a_batch_of_one_asks_nothing_in_advance(self, guard) -> None:
        counting = CountingGuard(guard)

        assert await prefetch(counting, SCOPE, ["only", None, "only"]) is counting
        assert counting.queries == []

    async def test_a_store_that_cannot_answer_leaves_each_record_to_ask_alone(self, guard) -> None:
        unreachable = UnreachableGuard(guard)

        assert await prefetch(unreachable, SCOPE, ["a", "b"]) is unreachable

    async def test_the_view_keeps_the_guards_placeholder_style(self, guard) -> None:
        view = await prefetch(guard, SCOPE, ["a", "b"])

        assert isinstance(view, BatchGuard) and view.paramstyle == "qmark"


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
