"""The review task index: which manifest a review task id names, and its first decision.

A decision carries only the task id, and deid must act on it weeks and restarts later. What a
task held (the original instances and the proposed boxes) is a manifest in the PHI blob store
(:class:`~radstream.deid.review_tasks.ReviewManifest`); that store is content-addressed, so a
blob is found from its hash, never from a name. This index is the named key: one row per task,
``task_id -> the manifest's BlobRef``, in SQL because deid already has a durable database (its
idempotency DSN: SQLite embedded, PostgreSQL shared by replicas in production) and because the
row gives the one place where "first decision wins" is an atomic update.

The rows hold no PHI: a task id (a UUID), a blob URI named by a hash, a size, the decision's
name and the id of the event that carried it. Rows are not pruned with the idempotency marks:
a task may wait for a reviewer far longer than a redelivery may come.

The first decision recorded for a task is its decision. A later decision event for the same
task and decision is a duplicate (the guard knows event ids, not tasks, so a decision published
twice by the review service reaches the handler twice); a later different one is refused as
already decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from radstream.common.blobstore import BlobRef
from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.sql import EngineThread, SqlEngine, open_engine

__all__ = [
    "TABLE",
    "ReviewIndexUnavailableError",
    "ReviewTaskEntry",
    "ReviewTaskIndex",
    "SqlReviewTaskIndex",
    "open_review_index",
]

TABLE = "radstream_deid_review_tasks"
_DDL = {
    "sqlite": f"CREATE TABLE IF NOT EXISTS {TABLE} (task_id TEXT PRIMARY KEY, "
    "manifest_uri TEXT NOT NULL, manifest_sha256 TEXT NOT NULL, manifest_size INTEGER NOT NULL, "
    "created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, decision TEXT, decision_event_id TEXT, "
    "decided_at TEXT)",
    "postgresql": f"CREATE TABLE IF NOT EXISTS {TABLE} (task_id TEXT PRIMARY KEY, "
    "manifest_uri TEXT NOT NULL, manifest_sha256 TEXT NOT NULL, manifest_size BIGINT NOT NULL, "
    "created_at TIMESTAMPTZ NOT NULL DEFAULT now(), decision TEXT, decision_event_id TEXT, "
    "decided_at TIMESTAMPTZ)",
}
# First write wins: a redelivered study event derives the same task id and, the pipeline being
# deterministic, the same manifest; the task the reviewer saw first is the one recorded.
_RECORD = (
    f"INSERT INTO {TABLE} (task_id, manifest_uri, manifest_sha256, manifest_size) "  # noqa: S608 -- the table is a constant
    "VALUES (?, ?, ?, ?) ON CONFLICT (task_id) DO NOTHING"
)
_FIND = (
    f"SELECT manifest_uri, manifest_sha256, manifest_size, decision, decision_event_id "  # noqa: S608 -- the table is a constant
    f"FROM {TABLE} WHERE task_id = ?"
)
_DECIDE = (
    f"UPDATE {TABLE} SET decision = ?, decision_event_id = ?, decided_at = CURRENT_TIMESTAMP "  # noqa: S608 -- the table is a constant
    "WHERE task_id = ? AND decision IS NULL"
)
_MANIFEST_MEDIA_TYPE = "application/json"


class ReviewIndexUnavailableError(TransientError):
    """The review task index did not answer; the decision is retried, never dead-lettered."""


def _unavailable(problem: str) -> ReviewIndexUnavailableError:
    return ReviewIndexUnavailableError(
        f"deid review task index: {problem}; check RADSTREAM_DELIVERY_IDEMPOTENCY_DSN and the "
        "server or disk it names"
    )


@dataclass(frozen=True, kw_only=True)
class ReviewTaskEntry:
    """One task's row: where its manifest is, and its decision once one was acted on."""

    manifest: BlobRef
    decision: str | None = None
    decision_event_id: str | None = None


class ReviewTaskIndex(Protocol):
    """A durable ``task id -> manifest`` map with each task's first decision."""

    async def open(self) -> None:
        """Connect and create the table if needed."""

    async def close(self) -> None:
        """Release the connection."""

    async def record_task(self, task_id: str, manifest: BlobRef) -> None:
        """Remember ``manifest`` for ``task_id`` (a task already recorded keeps its first)."""

    async def find(self, task_id: str) -> ReviewTaskEntry | None:
        """The task's entry, or None when deid never raised that task."""

    async def record_decision(self, task_id: str, decision: str, event_id: str) -> bool:
        """Record the task's decision; False when it already had one (which is kept)."""

    async def check(self) -> None:
        """Raise if the index cannot be reached (readiness)."""


class SqlReviewTaskIndex:
    """The index in one table, its statements on a worker thread of their own."""

    def __init__(self, engine: SqlEngine) -> None:
        self._engine = engine
        self._thread = EngineThread(engine, name="deid-review-index")

    def _open(self) -> None:
        self._engine.connect()
        self._engine.execute(_DDL[self._engine.dialect])

    async def open(self) -> None:
        """Connect and create the table if needed."""
        await self._thread.call(self._open)

    async def close(self) -> None:
        """Close the connection."""
        await self._thread.close()

    async def record_task(self, task_id: str, manifest: BlobRef) -> None:
        """Remember ``manifest`` for ``task_id`` (one autocommitted statement, first wins)."""
        await self._thread.execute(_RECORD, (task_id, manifest.uri, manifest.sha256, manifest.size))

    async def find(self, task_id: str) -> ReviewTaskEntry | None:
        """The task's entry, or None when deid never raised that task."""
        rows = await self._thread.execute(_FIND, (task_id,))
        if not rows:
            return None
        uri, sha256, size, decision, event_id = rows[0]
        return ReviewTaskEntry(
            manifest=BlobRef(
                uri=str(uri), sha256=str(sha256), size=int(size), media_type=_MANIFEST_MEDIA_TYPE
            ),
            decision=None if decision is None else str(decision),
            decision_event_id=None if event_id is None else str(event_id),
        )

    async def record_decision(self, task_id: str, decision: str, event_id: str) -> bool:
        """Record the task's first decision; False when it already had one."""

        def decide() -> bool:
            with self._engine.transaction():
                self._engine.execute(_DECIDE, (decision, event_id, task_id))
                rows = self._engine.execute(_FIND, (task_id,))
            return bool(rows) and rows[0][4] == event_id and rows[0][3] == decision

        return await self._thread.call(decide)

    async def check(self) -> None:
        """Raise :class:`ReviewIndexUnavailableError` if the table cannot be read."""
        await self._thread.execute(f"SELECT 1 FROM {TABLE} LIMIT 1")  # noqa: S608 -- a constant


def open_review_index(dsn: str) -> SqlReviewTaskIndex:
    """The index in the database a DSN names: ``sqlite:///path`` or ``postgresql://...``."""
    engine = open_engine(
        dsn,
        setting="RADSTREAM_DELIVERY_IDEMPOTENCY_DSN",
        invalid=MisconfiguredError,
        unavailable=_unavailable,
        every_error=True,
    )
    return SqlReviewTaskIndex(engine)
