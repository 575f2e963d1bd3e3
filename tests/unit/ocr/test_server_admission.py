"""The server's admission: engine slots, a bounded queue, deadlines, and slots held by work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from radstream.ocr.admission import Admission, Job, OverloadedError, QueueDeadlineError


class Gate:
    """Work that blocks in its thread until opened, counting who ran."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.started = 0
        self.ran = 0

    def __call__(self, job: Job) -> str:
        self.started += 1
        self.opened.wait(10)
        self.ran += 1
        return "done"


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def hold(admission: Admission, work, deadline: float | None = None):
    async with admission.slot(deadline=deadline) as slot:
        return await slot.run(work)


async def test_calls_beyond_the_slots_wait_and_beyond_the_queue_are_refused() -> None:
    admission = Admission(slots=1, queue_limit=1)
    gate = Gate()
    first = asyncio.create_task(hold(admission, gate))
    await until(lambda: gate.started == 1)
    second = asyncio.create_task(hold(admission, gate))
    await until(lambda: admission.waiting == 1)

    with pytest.raises(OverloadedError, match="1 engine call"):
        await hold(admission, gate)

    gate.opened.set()
    assert await asyncio.gather(first, second) == ["done", "done"]
    assert gate.ran == 2
    admission.close()


async def test_a_queue_limit_of_zero_refuses_whatever_finds_no_free_slot() -> None:
    admission = Admission(slots=2, queue_limit=0)
    gate = Gate()
    running = [asyncio.create_task(hold(admission, gate)) for _ in range(2)]
    await until(lambda: gate.started == 2)

    with pytest.raises(OverloadedError):
        await hold(admission, gate)

    gate.opened.set()
    await asyncio.gather(*running)
    admission.close()


async def test_a_call_whose_deadline_passes_in_the_queue_never_runs() -> None:
    admission = Admission(slots=1, queue_limit=4)
    gate = Gate()
    first = asyncio.create_task(hold(admission, gate))
    await until(lambda: gate.started == 1)
    late = Gate()

    started = time.monotonic()
    with pytest.raises(QueueDeadlineError, match="waited for an engine slot"):
        await hold(admission, late, deadline=time.monotonic() + 0.1)

    assert 0.09 <= time.monotonic() - started < 2
    assert admission.waiting == 0
    gate.opened.set()
    await first
    assert late.started == 0
    assert await hold(admission, gate) == "done", "the slot is free again"
    admission.close()


async def test_a_call_arriving_after_its_deadline_is_refused_at_once() -> None:
    admission = Admission(slots=1, queue_limit=1)
    gate = Gate()

    with pytest.raises(QueueDeadlineError, match="had passed"):
        await hold(admission, gate, deadline=time.monotonic() - 1)

    assert gate.started == 0
    admission.close()


async def test_a_cancelled_call_keeps_its_slot_until_its_thread_ends() -> None:
    admission = Admission(slots=1, queue_limit=1)
    gate = Gate()
    first = asyncio.create_task(hold(admission, gate))
    await until(lambda: gate.started == 1)

    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first

    assert admission.running == 1, "the engine still runs in its thread"
    waiting = asyncio.create_task(hold(admission, gate))
    await until(lambda: admission.waiting == 1)
    assert gate.started == 1
    gate.opened.set()
    assert await waiting == "done"
    await until(lambda: admission.running == 0)
    admission.close()


async def test_work_learns_that_its_call_was_given_up() -> None:
    admission = Admission(slots=1, queue_limit=0)
    seen: list[bool] = []
    release = threading.Event()
    entered = threading.Event()

    def batch(job: Job) -> None:
        entered.set()
        release.wait(10)
        seen.append(job.cancelled)
        with pytest.raises(QueueDeadlineError):
            job.check()

    task = asyncio.create_task(hold(admission, batch))
    await until(entered.is_set)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await until(lambda: admission.running == 0)

    assert seen == [True]
    admission.close()


async def test_work_that_raises_frees_its_slot_and_the_error_reaches_the_caller() -> None:
    admission = Admission(slots=1, queue_limit=0)

    def broken(job: Job) -> None:
        raise RuntimeError("engine exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        await hold(admission, broken)

    assert admission.running == 0
    assert await hold(admission, lambda job: 7) == 7
    admission.close()


def test_an_admission_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        Admission(slots=0, queue_limit=1)
