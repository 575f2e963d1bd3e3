"""What every idempotency store is: the guard protocol, the claim, and the table they share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

TABLE = "radstream_processed_events"
COMPLETED_AT_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_completed_at ON {TABLE} (completed_at)"
# Marks deleted per statement when pruning: short enough that consumers' marks wait little.
PRUNE_CHUNK = 1000
SqlParams = Sequence[object]


@dataclass(kw_only=True)
class Claim:
    """A handler's hold on one event: the side effects to commit together with the done mark."""

    scope: str
    event_id: str
    paramstyle: Literal["qmark", "format"]
    staged: list[tuple[str, SqlParams]] = field(default_factory=list)

    def stage(self, sql: str, params: SqlParams = ()) -> None:
        """Queue a statement to run in the transaction that marks the event done.

        Use the guard's placeholder style (``paramstyle``: ``?`` for SQLite, ``%s`` for
        PostgreSQL).
        """
        self.staged.append((sql, tuple(params)))


class IdempotencyGuard(Protocol):
    """What the delivery layer needs from an idempotency store."""

    paramstyle: Literal["qmark", "format"]

    async def open(self) -> None:
        """Connect and create the table if needed."""

    async def close(self) -> None:
        """Release connections."""

    async def is_done(self, scope: str, event_id: str) -> bool:
        """Whether ``scope`` (a consumer group + topic) already finished ``event_id``."""

    async def done_among(self, scope: str, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` ``scope`` already finished: one query for a fetched batch."""

    async def complete(self, claim: Claim) -> bool:
        """Commit the claim's staged effects and its done mark; False if it was already done."""

    async def mark_done(self, scope: str, event_ids: Sequence[str]) -> None:
        """Mark events done that staged nothing, in one transaction (ids already done are kept)."""

    async def prune(self, completed_before: datetime, *, chunk: int = PRUNE_CHUNK) -> int:
        """Delete the marks of every scope completed before ``completed_before``; how many went.

        Deletes ``chunk`` marks per statement. An event whose mark is gone runs its handler
        again if it ever comes again.
        """

    async def oldest_mark(self) -> datetime | None:
        """When the oldest mark was completed (None when there is none): how far back it knows."""

    async def check(self) -> None:
        """Raise if the store cannot be reached (readiness probes, ``radstream doctor``)."""


def claim_for(guard: IdempotencyGuard, scope: str, event_id: str) -> Claim:
    """Start a claim on ``event_id`` for ``scope`` with the guard's placeholder style."""
    return Claim(scope=scope, event_id=event_id, paramstyle=guard.paramstyle)
