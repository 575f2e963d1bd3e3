"""The review task index: a named, durable key from task id to manifest, first decision wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from radstream.common.blobstore import BlobRef
from radstream.common.errors import MisconfiguredError
from radstream.deid.review_store import ReviewIndexUnavailableError, open_review_index

MANIFEST = BlobRef(
    uri="file:///phi/aa/bb/m", sha256="a" * 64, size=321, media_type="application/json"
)
OTHER = BlobRef(uri="file:///phi/cc/dd/n", sha256="c" * 64, size=99, media_type="application/json")


async def test_a_task_is_found_by_its_id_after_a_restart(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'deid.sqlite3'}"
    index = open_review_index(dsn)
    await index.open()
    await index.record_task("task-1", MANIFEST)
    await index.record_task("task-1", OTHER)  # a redelivered study event: the first stays
    await index.close()

    restarted = open_review_index(dsn)
    await restarted.open()
    try:
        entry = await restarted.find("task-1")
        assert entry is not None
        assert entry.manifest == MANIFEST
        assert entry.decision is None
        assert await restarted.find("task-2") is None
    finally:
        await restarted.close()


async def test_the_first_decision_is_kept_and_later_ones_are_refused(tmp_path: Path) -> None:
    index = open_review_index(f"sqlite:///{tmp_path / 'deid.sqlite3'}")
    await index.open()
    try:
        await index.record_task("task-1", MANIFEST)
        assert await index.record_decision("task-1", "approve", "event-1")
        assert not await index.record_decision("task-1", "reject", "event-2")
        assert not await index.record_decision("task-1", "approve", "event-3")
        assert not await index.record_decision("task-9", "approve", "event-4")
        entry = await index.find("task-1")
        assert entry is not None
        assert (entry.decision, entry.decision_event_id) == ("approve", "event-1")
        await index.check()
    finally:
        await index.close()


def test_a_dsn_that_names_no_database_is_a_configuration_error() -> None:
    with pytest.raises(MisconfiguredError, match="IDEMPOTENCY_DSN"):
        open_review_index("mysql://somewhere")


async def test_an_unreachable_index_is_transient(tmp_path: Path) -> None:
    index = open_review_index(f"sqlite:///{tmp_path}")  # a directory, not a database file
    with pytest.raises(ReviewIndexUnavailableError):
        await index.open()
    await index.close()
