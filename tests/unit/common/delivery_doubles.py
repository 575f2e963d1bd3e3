"""What the delivery tests hand to :func:`deliver`: a record, a dead-letter sink, a sleep.

The sink and the sleep record what delivery did with them, so a test reads the letters sent
and the backoff delays waited without a broker or a clock.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.wrappers_pb2 import StringValue

from radstream.common.delivery import DeadLetter, Outcome, RawRecord, RetryPolicy, deliver
from radstream.common.envelope import encode
from radstream.common.errors import TransientError


class CollectedDeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


class BrokenDeadLetters:
    async def send(self, letter: DeadLetter) -> None:
        raise TransientError("dlq topic unavailable")


class RecordedSleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def record(text: str = "ok", *, event_id: str = "e-1", offset: int = 0) -> RawRecord:
    value, headers = encode(StringValue(value=text), source="/test", event_id=event_id)
    return RawRecord(
        topic="radstream.test.event.v1",
        partition=0,
        offset=offset,
        key=b"k",
        value=value,
        headers=tuple(headers.items()),
    )


async def deliver_record(
    rec: RawRecord,
    handler: Any,
    guard: Any,
    *,
    policy: RetryPolicy,
    sink: Any = None,
    sleep: RecordedSleeps | None = None,
    **options: Any,
) -> tuple[Outcome, CollectedDeadLetters, RecordedSleeps]:
    """Deliver ``rec`` to ``handler`` in group ``g``; the outcome, the sink and the sleeps.

    ``options`` go to :func:`deliver` as they are (``crashes``, ``attempts``, ``now``).
    """
    sink = sink if sink is not None else CollectedDeadLetters()
    sleep = sleep if sleep is not None else RecordedSleeps()
    outcome = await deliver(
        rec,
        message_type=StringValue,
        handler=handler,
        group="g",
        guard=guard,
        dead_letters=sink,
        policy=policy,
        sleep=sleep,
        **options,
    )
    return outcome, sink, sleep
