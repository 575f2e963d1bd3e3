"""Fixtures shared by the tests of radstream.common."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from radstream.common.idempotency import SqliteIdempotencyGuard


@pytest.fixture
async def guard(tmp_path: Path) -> AsyncIterator[SqliteIdempotencyGuard]:
    """A real SQLite idempotency guard in a fresh file."""
    store = SqliteIdempotencyGuard(tmp_path / "idempotency.sqlite3")
    await store.open()
    yield store
    await store.close()
