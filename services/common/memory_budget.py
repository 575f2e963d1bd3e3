"""A service's memory budget: the instance size limits it implies, and the bytes in flight.

A DICOM instance is held in memory several times over while it is handled (the received or
fetched bytes, pydicom's data set, the written output, the output read back for verification),
so an instance limit set without regard to the pod's memory limit lets one large instance, or a
few concurrent ones, OOM-kill the process; the record is then redelivered and kills it again.
Three things prevent that:

* **The budget** (:func:`plan_memory`): ``RADSTREAM_MEMORY_BUDGET_BYTES`` when set, otherwise
  the container's cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) times
  ``RADSTREAM_MEMORY_BUDGET_FRACTION``, otherwise (no limit)
  ``RADSTREAM_MEMORY_UNLIMITED_BUDGET_BYTES``.
  The rest of the limit is for the interpreter, libraries, models and client buffers.
* **Derived limits** (:meth:`MemoryPlan.instance_limit`): a service states how many copies of
  an instance it holds (its measured *copies factor*); the largest instance it accepts is the
  budget divided by that factor. A limit configured above that is refused at startup with a
  :class:`MemoryBudgetExceededError` naming the settings: a pod that would be OOM-killed by
  its own accepted input should not start.
* **Bytes in flight** (:class:`MemoryBudget`): every handler reserves an instance's weight (its
  size times the factor) before it reads the instance and releases it when done, so concurrent
  large instances wait for each other instead of adding up past the limit. Waiters are served
  first come, first served. A reservation larger than the whole budget can never be granted:
  it raises :class:`OverBudgetError` (poison: retrying cannot help) instead of waiting forever.

**Metrics** (:class:`MemoryBudgetMetrics`, labelled by ``service``): the budget, the bytes
reserved, the reservations waiting, how long reservations waited, and instances refused for
memory by reason (``too_large``: over the derived instance limit, refused unread;
``over_budget``: heavier than the whole budget; ``abandoned``: its caller gave up while it
waited, e.g. a C-STORE whose sender's timeout ran out).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from radstream.common.errors import MisconfiguredError, PoisonEventError
from radstream.common.metrics import per_registry
from radstream.common.settings import RadstreamSettings

__all__ = [
    "CGROUP_ROOT",
    "MemoryBudget",
    "MemoryBudgetExceededError",
    "MemoryBudgetMetrics",
    "MemoryPlan",
    "MemorySettings",
    "OverBudgetError",
    "RefusalReason",
    "cgroup_memory_limit",
    "memory_budget_metrics",
    "plan_memory",
]

RefusalReason = Literal["too_large", "over_budget", "abandoned"]
# From a grant at once to a C-STORE sender's timeout (30 s) and well past it.
_WAIT_BUCKETS: Final = (0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

GiB: Final = 1024**3
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as the largest page-aligned signed 64-bit value; anything this
# large is no limit a process could reach.
_UNLIMITED_ABOVE: Final = 1 << 60


class MemorySettings(RadstreamSettings):
    """A service's memory budget and spool directory (``RADSTREAM_MEMORY_*``)."""

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_MEMORY_", extra="ignore")

    # Bytes of instances the process may hold at once, copies counted. Unset: derived from the
    # container's memory limit (budget_fraction of it).
    budget_bytes: int | None = Field(default=None, gt=0)
    budget_fraction: float = Field(default=0.5, gt=0, le=1)
    # The budget when the container has no memory limit (a workstation, `radstream up`).
    unlimited_budget_bytes: int = Field(default=4 * GiB, gt=0)
    # Where large payloads wait on disk instead of in memory (STOW-RS parts, C-STORE data sets,
    # blobs fetched from S3). Must be disk, not a memory-backed tmpfs; files are 0600.
    spool_dir: Path = Path(".radstream/spool")


class MemoryBudgetExceededError(MisconfiguredError):
    """A configured instance limit needs more memory than the budget has."""


class OverBudgetError(PoisonEventError):
    """An instance weighs more than the whole budget: it can never be handled by this process."""

    def __init__(self, weight: int, capacity: int) -> None:
        super().__init__(
            f"the instance needs {weight} bytes of the memory budget, which holds {capacity} in "
            "all; it can never be handled here. Raise the container's memory limit or "
            "RADSTREAM_MEMORY_BUDGET_BYTES if such instances are expected"
        )
        self.weight = weight
        self.capacity = capacity


@dataclass(frozen=True, kw_only=True)
class CgroupLimit:
    """A container memory limit and the file it was read from."""

    limit_bytes: int
    source: str


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> CgroupLimit | None:
    """The memory limit of this process's cgroup, or None when there is none (or no cgroup).

    cgroup v2 (the unified hierarchy, one file ``memory.max``: a number or ``max``) is tried
    first, then v1 (``memory/memory.limit_in_bytes``, or ``memory.limit_in_bytes`` when the
    memory controller is mounted at ``root`` itself). A container sees its own cgroup there.
    """
    for relative in ("memory.max", "memory/memory.limit_in_bytes", "memory.limit_in_bytes"):
        path = root / relative
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text == "max":
            return None
        if not text.isdigit():
            continue
        value = int(text)
        return (
            None if value >= _UNLIMITED_ABOVE else CgroupLimit(limit_bytes=value, source=str(path))
        )
    return None


@dataclass(frozen=True, kw_only=True)
class MemoryPlan:
    """The budget a service works with, where it came from, and the service's copies factor."""

    budget_bytes: int
    source: str
    copies: float

    @property
    def max_instance_bytes(self) -> int:
        """The largest instance whose copies fit the budget."""
        return int(self.budget_bytes // self.copies)

    def weight(self, size: int) -> int:
        """The budget an instance of ``size`` bytes takes while it is handled."""
        return math.ceil(max(size, 0) * self.copies)

    def instance_limit(self, configured: int | None, *, setting: str) -> int:
        """The instance limit to use: ``configured``, or the budget's when unset.

        Raises
        ------
        MemoryBudgetExceededError
            ``configured`` is larger than the budget allows.
        """
        allowed = self.max_instance_bytes
        if configured is None:
            return allowed
        if configured > allowed:
            raise MemoryBudgetExceededError(
                f"{setting}={configured} needs {self.weight(configured)} bytes of memory (the "
                f"service holds {self.copies:g} copies of an instance), more than the memory "
                f"budget of {self.budget_bytes} bytes ({self.source}). Lower {setting} to at "
                f"most {allowed} or unset it, or raise the container's memory limit or "
                "RADSTREAM_MEMORY_BUDGET_BYTES"
            )
        return configured


def plan_memory(
    settings: MemorySettings, *, copies: float, cgroup_root: Path = CGROUP_ROOT
) -> MemoryPlan:
    """The budget the settings and the container give a service holding ``copies`` copies."""
    if settings.budget_bytes is not None:
        return MemoryPlan(
            budget_bytes=settings.budget_bytes,
            source="RADSTREAM_MEMORY_BUDGET_BYTES",
            copies=copies,
        )
    limit = cgroup_memory_limit(cgroup_root)
    if limit is None:
        return MemoryPlan(
            budget_bytes=settings.unlimited_budget_bytes,
            source="no container memory limit: RADSTREAM_MEMORY_UNLIMITED_BUDGET_BYTES",
            copies=copies,
        )
    return MemoryPlan(
        budget_bytes=int(limit.limit_bytes * settings.budget_fraction),
        source=f"{settings.budget_fraction:g} x the limit in {limit.source}",
        copies=copies,
    )


class MemoryBudgetMetrics:
    """The memory budget's series, one set per registry, told apart by the ``service`` label."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.capacity = Gauge(
            "radstream_memory_budget_bytes",
            "Bytes of instances (copies counted) the process may hold at once.",
            ["service"],
            registry=registry,
        )
        self.reserved = Gauge(
            "radstream_memory_budget_reserved_bytes",
            "Bytes of the memory budget reserved by instances being handled now.",
            ["service"],
            registry=registry,
        )
        self.waiting = Gauge(
            "radstream_memory_budget_waiting",
            "Reservations queued until the memory budget has room for them.",
            ["service"],
            registry=registry,
        )
        self.wait_seconds = Histogram(
            "radstream_memory_budget_wait_seconds",
            "Seconds a granted reservation waited for room in the memory budget.",
            ["service"],
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self.refusals = Counter(
            "radstream_memory_budget_refusals_total",
            "Instances refused for memory, by reason (too_large: over the instance limit the "
            "budget implies; over_budget: heavier than the whole budget; abandoned: given up "
            "while waiting for room).",
            ["service", "reason"],
            registry=registry,
        )


memory_budget_metrics = per_registry(MemoryBudgetMetrics)


class MemoryBudget:
    """A process-wide budget of bytes in flight: an asyncio semaphore counted in bytes.

    Reservations are granted first come, first served, so a large instance is not starved by a
    stream of small ones. A waiter that is cancelled (its sender gave up) leaves the queue and
    lets the ones behind it go. With ``metrics``, the budget reports as ``service``.
    """

    def __init__(
        self, capacity: int, *, metrics: MemoryBudgetMetrics | None = None, service: str = ""
    ) -> None:
        if capacity <= 0:
            raise ValueError("MemoryBudget capacity must be positive")
        self._capacity = capacity
        self._in_use = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._metrics = metrics
        self._service = service
        if metrics is not None:
            metrics.capacity.labels(service).set(capacity)
            metrics.reserved.labels(service).set_function(lambda: self._in_use)
            metrics.waiting.labels(service).set_function(lambda: len(self._waiters))
            self._waited = metrics.wait_seconds.labels(service)

    @property
    def capacity(self) -> int:
        """Bytes the budget holds in all."""
        return self._capacity

    @property
    def in_use(self) -> int:
        """Bytes reserved now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Reservations queued for room."""
        return len(self._waiters)

    def count_refusal(self, reason: RefusalReason) -> None:
        """Count an instance refused for memory (``too_large`` is refused by the caller)."""
        if self._metrics is not None:
            self._metrics.refusals.labels(self._service, reason).inc()

    @contextlib.asynccontextmanager
    async def reserve(self, weight: int) -> AsyncIterator[None]:
        """Hold ``weight`` bytes of the budget for the ``async with`` block.

        Raises
        ------
        OverBudgetError
            ``weight`` is more than the whole budget (at once, without waiting).
        """
        await self._acquire(weight)
        try:
            yield
        finally:
            self._release(weight)

    async def _acquire(self, weight: int) -> None:
        weight = max(weight, 0)
        if weight > self._capacity:
            self.count_refusal("over_budget")
            raise OverBudgetError(weight, self._capacity)
        if not self._waiters and self._in_use + weight <= self._capacity:
            self._in_use += weight
            self._observe_wait(0.0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (weight, waiter)
        self._waiters.append(entry)
        queued = time.monotonic()
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release(weight)  # granted just as it was cancelled: give it back
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove(entry)
                self._wake()  # the ones behind it may fit now
            self.count_refusal("abandoned")
            raise
        self._observe_wait(time.monotonic() - queued)

    def _observe_wait(self, seconds: float) -> None:
        if self._metrics is not None:
            self._waited.observe(seconds)

    def _release(self, weight: int) -> None:
        self._in_use -= max(weight, 0)
        self._wake()

    def _wake(self) -> None:
        """Grant queued reservations in order while the head of the queue fits."""
        while self._waiters:
            weight, waiter = self._waiters[0]
            if self._in_use + weight > self._capacity:
                return
            self._waiters.popleft()
            if not waiter.done():
                self._in_use += weight
                waiter.set_result(None)
