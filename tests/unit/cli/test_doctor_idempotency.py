"""``radstream doctor`` says how far back the idempotency store's done marks go."""

from __future__ import annotations

import sqlite3

import pytest

from radstream.cli.doctor import Status, check_idempotency_store
from radstream.common.idempotency import TABLE, SqliteIdempotencyGuard


@pytest.fixture
async def store(tmp_path, monkeypatch) -> SqliteIdempotencyGuard:
    path = tmp_path / "idempotency.sqlite3"
    monkeypatch.setenv("RADSTREAM_DELIVERY_IDEMPOTENCY_DSN", f"sqlite:///{path}")
    monkeypatch.setenv("RADSTREAM_DELIVERY_IDEMPOTENCY_RETENTION_DAYS", "30")
    return SqliteIdempotencyGuard(path)


async def mark(store: SqliteIdempotencyGuard, completed_at: str | None) -> None:
    await store.open()
    await store.mark_done("deid/t", ["e-1"])
    await store.close()
    if completed_at is not None:
        with sqlite3.connect(store.path) as db:
            db.execute(f"UPDATE {TABLE} SET completed_at=?", (completed_at,))


async def test_an_empty_store_is_reachable_with_no_marks(store) -> None:
    finding = await check_idempotency_store()

    assert finding.status is Status.OK
    assert finding.detail == "sqlite reachable, no marks"


async def test_marks_within_the_retention_are_fine(store) -> None:
    await mark(store, None)

    finding = await check_idempotency_store()

    assert finding.status is Status.OK
    assert finding.detail == "sqlite reachable, marks from the last 0.0 days"


async def test_marks_past_the_retention_are_a_warning_that_nothing_prunes(store) -> None:
    await mark(store, "2020-01-01T00:00:00.000Z")

    finding = await check_idempotency_store()

    assert finding.status is Status.WARN
    assert "past the 30-day retention" in finding.detail
