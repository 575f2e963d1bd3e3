"""Who gets the engine next: a fixed number of engine slots, a bounded queue, deadlines.

An OCR call holds a decoded image and the engine's buffers (tens to hundreds of MB for a large
radiograph) and a CPU core for tens of milliseconds to seconds, so the server runs at most
``slots`` engine calls at once, in a thread pool of that size, and lets at most
``queue_limit`` more wait. A call that finds the queue full is refused at once
(:class:`OverloadedError`: RESOURCE_EXHAUSTED), which tells a client to back off instead of
stacking up latency and memory. A call whose deadline passes while it waits is answered
without running the engine (:class:`QueueDeadlineError`: DEADLINE_EXCEEDED): its caller has
gone, and the work would only delay the calls behind it.

Engine work cannot be interrupted once it runs in its thread. A call cancelled while its work
runs (its deadline passed, its client went away) keeps the slot until the thread finishes, so
the number of engine calls really running never exceeds ``slots``; work on several images
calls :meth:`Job.check` between them and stops early.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from radstream.common.errors import RadstreamError, TransientError

__all__ = ["Admission", "Job", "OverloadedError", "QueueDeadlineError", "Slot"]

T = TypeVar("T")


class OverloadedError(TransientError):
    """Every slot is busy and the queue is full; retry later, with backoff."""


class QueueDeadlineError(RadstreamError):
    """The call's deadline passed before an engine slot was free; nothing ran."""


@dataclass(frozen=True)
class Job:
    """What the work in the thread may ask: whether its call has been given up."""

    _cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() value, None: no deadline

    @property
    def cancelled(self) -> bool:
        """True once the call was cancelled or its deadline passed; stop at the next image."""
        if self._cancelled.is_set():
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def check(self) -> None:
        """Raise :class:`QueueDeadlineError` when the call has been given up (see ``cancelled``)."""
        if self.cancelled:
            raise QueueDeadlineError("the call was given up before all its images ran")


class Admission:
    """Engine slots and the queue in front of them (see the module doc)."""

    def __init__(self, slots: int, queue_limit: int) -> None:
        if slots < 1 or queue_limit < 0:
            raise ValueError("an admission needs at least one slot and a queue limit >= 0")
        self.slots = slots
        self.queue_limit = queue_limit
        self._free = asyncio.Semaphore(slots)
        self._waiting = 0
        self._running = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=slots, thread_name_prefix="ocr-engine"
        )

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return self._waiting

    @property
    def running(self) -> int:
        """Engine calls running (or finishing after their call was given up)."""
        return self._running

    @contextlib.asynccontextmanager
    async def slot(self, *, deadline: float | None = None) -> AsyncIterator[Slot]:
        """Wait for a slot (or refuse); hold it for the block and any engine work it started.

        ``deadline`` is a :func:`time.monotonic` value. Raises :class:`OverloadedError` when
        the queue is full, :class:`QueueDeadlineError` when the deadline passes first.
        """
        await self._acquire(deadline)
        held = Slot(self._pool, Job(deadline=deadline))
        if held.job.cancelled:  # the wait ended with the deadline
            self._free.release()
            raise QueueDeadlineError("the deadline passed while the call waited for an engine slot")
        self._running += 1
        try:
            yield held
        finally:
            held.release_when_idle(self._release)

    def _release(self) -> None:
        self._running -= 1
        self._free.release()

    async def _acquire(self, deadline: float | None) -> None:
        if self._free.locked() and self._waiting >= self.queue_limit:
            raise OverloadedError(
                f"{self.slots} engine call(s) run and {self._waiting} wait, the queue limit"
            )
        if deadline is not None and time.monotonic() >= deadline:
            raise QueueDeadlineError("the deadline had passed when the call arrived")
        self._waiting += 1
        try:
            if deadline is None:
                await self._free.acquire()
            else:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._free.acquire()
        except TimeoutError as exc:
            raise QueueDeadlineError(
                "the deadline passed while the call waited for an engine slot"
            ) from exc
        finally:
            self._waiting -= 1

    def close(self, *, wait: bool = True) -> None:
        """Stop the engine threads (after the work they run when ``wait``)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


class Slot:
    """A held engine slot: runs work in the engine pool, frees itself once that work ends."""

    def __init__(self, pool: concurrent.futures.ThreadPoolExecutor, job: Job) -> None:
        self._pool = pool
        self.job = job
        self._work: concurrent.futures.Future[Any] | None = None

    async def run(self, work: Callable[[Job], T]) -> T:
        """Run ``work(job)`` in an engine thread and return its result."""
        if self._work is not None:
            raise RuntimeError("a slot runs one piece of work")
        future = self._pool.submit(work, self.job)
        self._work = future
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self.job._cancelled.set()  # the thread goes on to its next check
            raise

    def release_when_idle(self, release: Callable[[], None]) -> None:
        """Call ``release`` now, or on the event loop once the running work ends."""
        work = self._work
        if work is None or work.done():
            release()
            return
        loop = asyncio.get_running_loop()

        def from_thread(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop has nothing left to admit
                loop.call_soon_threadsafe(release)

        work.add_done_callback(from_thread)
