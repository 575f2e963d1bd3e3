"""The memory budget: limits derived from the container's memory, and the bytes in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from radstream.common.errors import MisconfiguredError, PoisonEventError
from radstream.common.memory_budget import (
    MemoryBudget,
    MemoryBudgetExceededError,
    MemorySettings,
    OverBudgetError,
    cgroup_memory_limit,
    plan_memory,
)

GiB = 1024**3
MiB = 1024**2


def cgroup(root: Path, relative: str, content: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return root


class TestDerivedLimits:
    def test_the_budget_is_a_fraction_of_the_cgroup_v2_memory_max(self, tmp_path: Path) -> None:
        root = cgroup(tmp_path, "memory.max", "3221225472\n")  # 3 GiB
        plan = plan_memory(MemorySettings(), copies=4, cgroup_root=root)
        assert plan.budget_bytes == 3 * GiB // 2
        assert plan.max_instance_bytes == 384 * MiB
        assert "memory.max" in plan.source

    def test_the_budget_is_a_fraction_of_the_cgroup_v1_limit(self, tmp_path: Path) -> None:
        root = cgroup(tmp_path, "memory/memory.limit_in_bytes", "2147483648\n")  # 2 GiB
        plan = plan_memory(MemorySettings(budget_fraction=0.75), copies=2, cgroup_root=root)
        assert plan.budget_bytes == 3 * GiB // 2
        assert plan.max_instance_bytes == 768 * MiB

    @pytest.mark.parametrize(
        ("relative", "content"),
        [("memory.max", "max\n"), ("memory/memory.limit_in_bytes", "9223372036854771712\n")],
    )
    def test_no_container_limit_gives_the_stated_fallback(
        self, tmp_path: Path, relative: str, content: str
    ) -> None:
        root = cgroup(tmp_path, relative, content)
        assert cgroup_memory_limit(root) is None
        settings = MemorySettings(unlimited_budget_bytes=GiB)
        plan = plan_memory(settings, copies=4, cgroup_root=root)
        assert plan.budget_bytes == GiB
        assert "RADSTREAM_MEMORY_UNLIMITED_BUDGET_BYTES" in plan.source

    def test_the_budget_setting_wins_over_the_container_limit(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        root = cgroup(tmp_path, "memory.max", "3221225472\n")
        monkeypatch.setenv("RADSTREAM_MEMORY_BUDGET_BYTES", str(800 * MiB))
        plan = plan_memory(MemorySettings(), copies=4, cgroup_root=root)
        assert (plan.budget_bytes, plan.max_instance_bytes) == (800 * MiB, 200 * MiB)

    def test_an_unset_instance_limit_is_the_budget_over_the_copies(self, tmp_path: Path) -> None:
        root = cgroup(tmp_path, "memory.max", "3221225472\n")
        plan = plan_memory(MemorySettings(), copies=4, cgroup_root=root)
        assert plan.instance_limit(None, setting="RADSTREAM_DEID_MAX_FILE_BYTES") == 384 * MiB
        assert plan.instance_limit(100 * MiB, setting="RADSTREAM_DEID_MAX_FILE_BYTES") == (
            100 * MiB
        )

    def test_a_configured_limit_the_budget_cannot_hold_is_refused_naming_the_settings(
        self, tmp_path: Path
    ) -> None:
        # The chart's deid pod (3 GiB) with the old 1 GiB default: four copies are 4 GiB.
        root = cgroup(tmp_path, "memory.max", "3221225472\n")
        plan = plan_memory(MemorySettings(), copies=4, cgroup_root=root)
        with pytest.raises(MemoryBudgetExceededError) as refused:
            plan.instance_limit(GiB, setting="RADSTREAM_DEID_MAX_FILE_BYTES")
        assert isinstance(refused.value, MisconfiguredError)
        message = str(refused.value)
        assert "RADSTREAM_DEID_MAX_FILE_BYTES" in message
        assert "RADSTREAM_MEMORY_BUDGET_BYTES" in message
        assert str(384 * MiB) in message  # what it may be at most


class TestBytesInFlight:
    async def test_a_second_large_instance_waits_until_the_first_is_released(self) -> None:
        budget = MemoryBudget(100)
        first_done = asyncio.Event()
        order: list[str] = []

        async def first() -> None:
            async with budget.reserve(70):
                order.append("first in")
                await first_done.wait()
                order.append("first out")

        async def second() -> None:
            async with budget.reserve(70):
                order.append("second in")

        first_task = asyncio.create_task(first())
        await asyncio.sleep(0)
        second_task = asyncio.create_task(second())
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == ["first in"]
        assert (budget.in_use, budget.waiting) == (70, 1)
        first_done.set()
        await asyncio.gather(first_task, second_task)
        assert order == ["first in", "first out", "second in"]
        assert budget.in_use == 0

    async def test_an_instance_larger_than_the_whole_budget_is_refused_at_once(self) -> None:
        budget = MemoryBudget(100)
        async with budget.reserve(60):
            with pytest.raises(OverBudgetError) as refused:
                async with budget.reserve(101):
                    pytest.fail("granted a reservation larger than the budget")
        assert isinstance(refused.value, PoisonEventError)  # dead-lettered, never retried
        assert "RADSTREAM_MEMORY_BUDGET_BYTES" in str(refused.value)
        assert (budget.in_use, budget.waiting) == (0, 0)

    async def test_small_instances_queue_behind_a_waiting_large_one(self) -> None:
        budget = MemoryBudget(100)
        order: list[str] = []
        release_first = asyncio.Event()

        async def hold(name: str, weight: int, until: asyncio.Event | None = None) -> None:
            async with budget.reserve(weight):
                order.append(name)
                if until is not None:
                    await until.wait()

        tasks = [asyncio.create_task(hold("a", 50, release_first))]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(hold("big", 90)))
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(hold("small", 10)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == ["a"]  # "small" would fit, but "big" came first
        release_first.set()
        await asyncio.gather(*tasks)
        assert order == ["a", "big", "small"]

    async def test_a_cancelled_waiter_lets_the_ones_behind_it_go(self) -> None:
        budget = MemoryBudget(100)
        release = asyncio.Event()
        got_in: list[str] = []

        async def hold(name: str, weight: int, until: asyncio.Event | None = None) -> None:
            async with budget.reserve(weight):
                got_in.append(name)
                if until is not None:
                    await until.wait()

        holder = asyncio.create_task(hold("holder", 60, release))
        await asyncio.sleep(0)
        blocked = asyncio.create_task(hold("blocked", 80))
        await asyncio.sleep(0)
        fits = asyncio.create_task(hold("fits", 40))
        await asyncio.sleep(0)
        assert got_in == ["holder"]
        blocked.cancel()
        await fits
        assert got_in == ["holder", "fits"]
        release.set()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert (budget.in_use, budget.waiting) == (0, 0)
