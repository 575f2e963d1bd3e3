"""deid's instance limit comes from its memory budget; a limit the budget cannot hold is refused."""

from __future__ import annotations

import pytest

from radstream.common.memory_budget import MemoryBudgetExceededError
from radstream.deid.config import DEID_STAGE_COPIES, DeidSettings

MiB = 1024 * 1024


def test_the_file_limit_defaults_to_the_budget_over_the_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RADSTREAM_MEMORY_BUDGET_BYTES", str(1536 * MiB))
    limits = DeidSettings().reader_limits()
    assert limits.max_file_bytes == 1536 * MiB // DEID_STAGE_COPIES


def test_a_file_limit_the_budget_cannot_hold_is_refused_at_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RADSTREAM_MEMORY_BUDGET_BYTES", str(1536 * MiB))
    monkeypatch.setenv("RADSTREAM_DEID_MAX_FILE_BYTES", str(1024 * MiB))
    with pytest.raises(MemoryBudgetExceededError, match="RADSTREAM_DEID_MAX_FILE_BYTES"):
        DeidSettings().reader_limits()


def test_a_file_limit_within_the_budget_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADSTREAM_MEMORY_BUDGET_BYTES", str(1536 * MiB))
    monkeypatch.setenv("RADSTREAM_DEID_MAX_FILE_BYTES", str(100 * MiB))
    assert DeidSettings().reader_limits().max_file_bytes == 100 * MiB
