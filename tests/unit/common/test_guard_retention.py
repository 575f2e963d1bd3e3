"""Done marks older than the retention are pruned; the rest stay (SQLite guard, no broker)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from radstream.common.idempotency import TABLE, SqliteIdempotencyGuard, claim_for

SCOPE = "deid/radstream.study.received.v1"


def backdate(guard: SqliteIdempotencyGuard, event_id: str, completed_at: str) -> None:
    with sqlite3.connect(guard.path) as db:
        db.execute(f"UPDATE {TABLE} SET completed_at=? WHERE event_id=?", (completed_at, event_id))


async def test_marks_completed_before_the_cutoff_are_deleted_in_every_scope(guard) -> None:
    for event_id in ("old-1", "old-2", "old-3", "new"):
        await guard.complete(claim_for(guard, SCOPE, event_id))
    await guard.mark_done("other/scope", ["old-4"])
    for event_id in ("old-1", "old-2", "old-3", "old-4"):
        backdate(guard, event_id, "2026-10-01T08:00:00.000Z")

    pruned = await guard.prune(datetime(2026, 10, 2, tzinfo=UTC), chunk=2)

    assert pruned == 4
    assert await guard.done_among(SCOPE, ["old-1", "old-2", "old-3", "new"]) == {"new"}
    assert not await guard.is_done("other/scope", "old-4")


async def test_the_cutoff_compares_as_the_guard_writes_its_times(guard) -> None:
    await guard.mark_done(SCOPE, ["before", "at", "after"])
    backdate(guard, "before", "2026-11-28T09:59:59.999Z")
    backdate(guard, "at", "2026-11-28T10:00:00.000Z")
    backdate(guard, "after", "2026-11-28T10:00:00.001Z")
    cutoff = datetime(2026, 11, 28, 11, 0, tzinfo=UTC) - timedelta(hours=1)  # 10:00:00 UTC

    assert await guard.prune(cutoff) == 1
    assert await guard.done_among(SCOPE, ["before", "at", "after"]) == {"at", "after"}


async def test_a_fresh_mark_is_not_pruned_by_a_cutoff_in_the_past(guard) -> None:
    await guard.mark_done(SCOPE, ["just-now"])

    assert await guard.prune(datetime.now(UTC) - timedelta(minutes=1)) == 0
    assert await guard.is_done(SCOPE, "just-now")


async def test_a_guard_file_made_before_pruning_gets_its_index(tmp_path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # as guards created their table before pruning existed
        db.execute(
            f"CREATE TABLE {TABLE} (scope TEXT NOT NULL, event_id TEXT NOT NULL, "
            "completed_at TEXT NOT NULL, PRIMARY KEY (scope, event_id)) WITHOUT ROWID"
        )
    guard = SqliteIdempotencyGuard(path)
    await guard.open()
    try:
        with sqlite3.connect(path) as db:
            plan = db.execute(
                f"EXPLAIN QUERY PLAN SELECT event_id FROM {TABLE} WHERE completed_at < ?", ("x",)
            ).fetchall()
        assert any("completed_at" in str(row) and "INDEX" in str(row) for row in plan), plan
    finally:
        await guard.close()


async def test_the_oldest_mark_says_how_far_back_the_guard_knows(guard) -> None:
    assert await guard.oldest_mark() is None

    await guard.mark_done(SCOPE, ["a", "b"])
    backdate(guard, "a", "2026-10-01T08:00:00.250Z")

    assert await guard.oldest_mark() == datetime(2026, 10, 1, 8, 0, 0, 250_000, tzinfo=UTC)
