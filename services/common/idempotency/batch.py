"""The guard as one fetched batch sees it: one query for the batch's events, one write of marks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from radstream.common.errors import TransientError
from radstream.common.idempotency.base import (
    PRUNE_CHUNK,
    BatchStartLog,
    Claim,
    IdempotencyGuard,
    PartitionStart,
)


class BatchGuard:
    """The guard as one fetched batch sees it: asked about all its events at once, marks last.

    The consume loop handles a batch's records one after another. Instead of one ``is_done``
    query per record (a PostgreSQL round trip each), :func:`prefetch` asks about every event of
    the batch in one query; this view answers ``is_done`` for those events from the answer, and
    remembers the events completed since, so an event that comes twice in one batch runs once.

    A claim that staged nothing is not written when it completes: its mark waits for
    :meth:`write_marks`, which the loop calls once the batch is through, so a batch of records
    costs one write instead of one per record (one round trip with PostgreSQL). Each record's
    offset is committed before its mark is written. That is safe for redelivery, because
    an event whose offset is committed is not delivered again, and a crash before the commit
    delivers it again either way. What a crash before :meth:`write_marks` does lose is the
    marks themselves: a copy of one of those events published again upstream runs its handler
    again, and its outputs, whose ids derive from the input's, are dropped by the guards
    downstream. A claim with staged effects completes at once, as the guard does it.

    It answers as of the batch's start: another replica that finishes one of its events
    meanwhile is the race every ``is_done`` has. ``complete`` settles it for staged effects
    (the mark conflicts and they are dropped); a deferred mark reports the event processed and
    leaves the other replica's mark as it is.
    """

    def __init__(
        self, guard: IdempotencyGuard, scope: str, asked: set[str], done: set[str]
    ) -> None:
        self._guard, self._scope = guard, scope
        self._asked, self._done = asked, done
        self._unwritten: list[str] = []
        self.paramstyle = guard.paramstyle

    async def open(self) -> None:
        """The guard is opened by its owner, not by a batch."""

    async def close(self) -> None:
        """The guard is closed by its owner, not by a batch."""

    async def is_done(self, scope: str, event_id: str) -> bool:
        """From the batch's answer for its events; from the guard for any other."""
        if scope == self._scope and event_id in self._asked:
            return event_id in self._done
        return await self._guard.is_done(scope, event_id)

    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
        """Asked of the guard itself."""
        return await self._guard.done_among(scope, event_ids)

    async def complete(self, claim: Claim) -> bool:
        """Staged effects: complete in the guard now. The mark alone: at :meth:`write_marks`.

        Either way the event is done for the rest of the batch, whoever finished it.
        """
        if claim.scope != self._scope:
            return await self._guard.complete(claim)
        if claim.staged:
            completed = await self._guard.complete(claim)
        elif claim.event_id in self._done:
            completed = False  # the batch finished it already
        else:
            self._unwritten.append(claim.event_id)
            completed = True
        self._asked.add(claim.event_id)
        self._done.add(claim.event_id)
        return completed

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        """Written by the guard itself."""
        await self._guard.mark_done(scope, event_ids)

    async def prune(self, completed_before: datetime, *, chunk: int = PRUNE_CHUNK) -> int:
        """Pruned by the guard itself."""
        return await self._guard.prune(completed_before, chunk=chunk)

    async def oldest_mark(self) -> datetime | None:
        """Asked of the guard itself."""
        return await self._guard.oldest_mark()

    async def write_marks(self) -> None:
        """Write the marks the batch's completed claims left, in one transaction.

        On failure they stay unwritten and the store's error propagates; a later call tries
        them again.
        """
        if self._unwritten:
            await self._guard.mark_done(self._scope, self._unwritten)
            self._unwritten = []

    @property
    def unwritten(self) -> int:
        """How many marks wait for :meth:`write_marks`."""
        return len(self._unwritten)

    async def check(self) -> None:
        """Check the guard itself."""
        await self._guard.check()


async def prefetch(
    guard: IdempotencyGuard, scope: str, event_ids: Iterable[str | None]
) -> BatchGuard:
    """The guard as a fetched batch sees it: :class:`BatchGuard`, asked about every event at once.

    A batch of one event asks nothing in advance (the record asks as it comes). When the store
    cannot answer, each record asks on its own and meets the failure there (it is redelivered,
    not lost).
    """
    asked = {event_id for event_id in event_ids if event_id}
    done: set[str] = set()
    if len(asked) < 2:
        asked = set()
    else:
        try:
            done = await guard.done_among(scope, sorted(asked))
        except TransientError:
            asked = set()
    return BatchGuard(guard, scope, asked, done)


async def prefetch_started(
    guard: BatchStartLog, scope: str, event_ids: Iterable[str | None], start: PartitionStart
) -> tuple[BatchGuard, int | None]:
    """:func:`prefetch` and the attempt log's ``started`` for the batch's first partition, at once.

    One round trip with PostgreSQL (:meth:`BatchStartLog.start_batch`). A batch of one event is
    asked about too: the round trip is paid anyway. Returns the view and how often ``start``'s
    first record was in flight when a consumer died. When the store cannot answer, the view
    knows nothing and the count is None: the partition is not started, so its first record
    starts it as the others' do and meets the failure there (it is redelivered, not lost).
    """
    asked = {event_id for event_id in event_ids if event_id}
    try:
        done, crashes = await guard.start_batch(scope, sorted(asked), start)
    except TransientError:
        return BatchGuard(guard, scope, set(), set()), None
    return BatchGuard(guard, scope, asked, done), crashes
