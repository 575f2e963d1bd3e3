"""The consume loop's handling of a fetched batch: commits, rewinds, stops (a fake consumer).

The loop against the real broker is in tests/integration/test_bus.py; these pin down what it
does with a batch when a record must come again, when it is told to stop, and when a partition
is taken away, which a real broker cannot be made to do on cue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import CollectorRegistry

from radstream.common.bus_telemetry import BusTelemetry
from radstream.common.consume_loop import ConsumeLoop
from radstream.common.delivery import RawRecord
from radstream.common.errors import TransientError

TOPIC = "radstream.study.received.v1"
P0, P1, P2 = (TopicPartition(TOPIC, n) for n in range(3))
REGISTRY = CollectorRegistry()


class FakeConsumer:
    """Records commits and seeks; the assignment can change under the loop."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[tuple[int, int]] = []
        self.seeks: list[tuple[int, int]] = []
        self.refused: set[int] = set()
        self.paused_now: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def pause(self, *partitions: TopicPartition) -> None:
        assert set(partitions) <= self.assigned, "only assigned partitions can be paused"
        self.paused_now |= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return self.paused_now & self.assigned

    def resume(self, *partitions: TopicPartition) -> None:
        assert set(partitions) <= self.assigned, "aiokafka refuses to resume what is not ours"
        self.paused_now -= set(partitions)

    def highwater(self, partition: TopicPartition) -> int:
        return 100

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition.partition, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        [(partition, offset)] = offsets.items()
        if partition.partition in self.refused:
            raise CommitFailedError("a rebalance took the partition")
        self.commits.append((partition.partition, offset))


def fetched(**offsets: Sequence[int]) -> dict[TopicPartition, list[Any]]:
    """A getmany result: ``p0=[10, 11]`` is partition 0's records at offsets 10 and 11."""
    return {
        TopicPartition(TOPIC, int(name[1:])): [
            SimpleNamespace(
                topic=TOPIC, partition=int(name[1:]), offset=o, key=None, value=b"", headers=[]
            )
            for o in numbers
        ]
        for name, numbers in offsets.items()
    }


class Batch:
    """A prepared batch: delivers with ``deliver``, notes when it was finished."""

    def __init__(self, deliver: Any, events: list[str], finish_fails: bool) -> None:
        self._deliver, self._events, self._finish_fails = deliver, events, finish_fails

    async def deliver(self, record: RawRecord) -> None:
        await self._deliver(record)

    async def finish(self) -> None:
        self._events.append("finished")
        if self._finish_fails:
            raise TransientError("idempotency store unavailable")


def make_loop(
    deliver: Any, *, events: list[str] | None = None, finish_fails: bool = False
) -> tuple[ConsumeLoop, list[list[tuple[int, int]]]]:
    """A loop whose deliverer records each batch it was asked to prepare."""
    prepared: list[list[tuple[int, int]]] = []

    async def deliverer(records: Sequence[RawRecord]) -> Batch:
        prepared.append([(r.partition, r.offset) for r in records])
        return Batch(deliver, events if events is not None else [], finish_fails)

    return loop_with(deliverer), prepared


def loop_with(deliverer: Any) -> ConsumeLoop:
    """The loop under test: group deid on TOPIC, preparing each batch with ``deliverer``."""
    return ConsumeLoop(
        topic=TOPIC,
        group="deid",
        deliverer=deliverer,
        telemetry=BusTelemetry(tracer_provider=None, registry=REGISTRY),
        consumer_options={},
        retry_after_s=0.0,
    )


def consumer_errors(stage: str) -> float:
    labels = {"topic": TOPIC, "group": "deid", "stage": stage, "error_type": "TransientError"}
    return REGISTRY.get_sample_value("radstream_consumer_errors_total", labels) or 0.0


async def test_a_batch_is_prepared_once_and_each_record_committed_after_it() -> None:
    seen: list[tuple[int, int]] = []

    async def deliver(record: RawRecord) -> None:
        seen.append((record.partition, record.offset))

    loop, prepared = make_loop(deliver)
    consumer = FakeConsumer({P0, P1})

    await loop._handle(consumer, fetched(p0=[10, 11], p1=[5]))  # type: ignore[arg-type]

    assert prepared == [[(0, 10), (0, 11), (1, 5)]]
    assert seen == [(0, 10), (0, 11), (1, 5)]
    assert consumer.commits == [(0, 11), (0, 12), (1, 6)]


async def test_a_record_that_must_come_again_rewinds_every_partition_not_yet_done() -> None:
    async def deliver(record: RawRecord) -> None:
        if (record.partition, record.offset) == (1, 6):
            raise TransientError("blob store unreachable")

    loop, _ = make_loop(deliver)
    consumer = FakeConsumer({P0, P1, P2})

    await loop._handle(consumer, fetched(p0=[10], p1=[5, 6, 7], p2=[3, 4]))  # type: ignore[arg-type]

    assert consumer.commits == [(0, 11), (1, 6)], "nothing after the failure is committed"
    assert consumer.seeks == [(1, 6), (2, 3)], "the failed record, and the partition after it"


async def test_a_stop_ends_the_batch_after_the_record_in_flight() -> None:
    loops: list[ConsumeLoop] = []

    async def deliver(record: RawRecord) -> None:
        loops[0]._stopping = True  # stop() arrives while this record is handled

    loop, _ = make_loop(deliver)
    loops.append(loop)
    consumer = FakeConsumer({P0})

    await loop._handle(consumer, fetched(p0=[10, 11, 12]))  # type: ignore[arg-type]

    assert consumer.commits == [(0, 11)], "the record in flight is committed, the rest left"
    assert consumer.seeks == [], "the group's next owner starts from the last commit"


async def test_a_partition_taken_away_mid_batch_is_left_to_its_next_owner() -> None:
    consumer = FakeConsumer({P0, P1})
    seen: list[tuple[int, int]] = []

    async def deliver(record: RawRecord) -> None:
        seen.append((record.partition, record.offset))
        consumer.assigned = {P1}  # a rebalance while the first record was handled

    loop, _ = make_loop(deliver)

    await loop._handle(consumer, fetched(p0=[10, 11], p1=[5]))  # type: ignore[arg-type]

    assert seen == [(0, 10), (1, 5)]
    assert consumer.commits == [(0, 11), (1, 6)]


class RecordingConsumer(FakeConsumer):
    def __init__(self, assigned: set[TopicPartition], events: list[str]) -> None:
        super().__init__(assigned)
        self.events = events

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await super().commit(offsets)
        self.events.append("commit")


async def test_a_batch_is_finished_once_after_its_last_commit() -> None:
    events: list[str] = []

    async def deliver(record: RawRecord) -> None:
        events.append(f"deliver {record.offset}")

    loop, _ = make_loop(deliver, events=events)

    await loop._handle(RecordingConsumer({P0}, events), fetched(p0=[10, 11]))  # type: ignore[arg-type]

    assert events == ["deliver 10", "commit", "deliver 11", "commit", "finished"]


async def test_a_batch_cut_short_is_finished_too() -> None:
    events: list[str] = []
    loops: list[ConsumeLoop] = []

    async def deliver(record: RawRecord) -> None:
        if record.offset == 11:
            raise TransientError("blob store unreachable")
        if record.partition == 1:
            loops[0]._stopping = True

    loop, _ = make_loop(deliver, events=events)
    loops.append(loop)

    await loop._handle(FakeConsumer({P0}), fetched(p0=[10, 11, 12]))  # type: ignore[arg-type]
    await loop._handle(FakeConsumer({P1}), fetched(p1=[3, 4]))  # type: ignore[arg-type]

    assert events == ["finished", "finished"], "after the rewind, and after the stop"


async def test_marks_that_cannot_be_written_are_counted_and_the_loop_goes_on() -> None:
    before = consumer_errors("mark")
    loop, prepared = make_loop(lambda record: asyncio.sleep(0), finish_fails=True)
    consumer = FakeConsumer({P0})

    await loop._handle(consumer, fetched(p0=[10]))  # type: ignore[arg-type]
    await loop._handle(consumer, fetched(p0=[11]))  # type: ignore[arg-type]

    assert consumer.commits == [(0, 11), (0, 12)], "the records stay committed"
    assert len(prepared) == 2
    assert consumer_errors("mark") == before + 2


async def test_a_failed_commit_has_the_marks_so_far_written_at_once() -> None:
    events: list[str] = []

    async def deliver(record: RawRecord) -> None:
        events.append(f"deliver {record.partition}:{record.offset}")

    loop, _ = make_loop(deliver, events=events)
    consumer = FakeConsumer({P0, P1})
    consumer.refused = {0}

    await loop._handle(consumer, fetched(p0=[10], p1=[5]))  # type: ignore[arg-type]

    assert events == ["deliver 0:10", "finished", "deliver 1:5", "finished"]
    assert consumer.commits == [(1, 6)]


async def test_nothing_is_fetched_while_a_batch_is_handled_and_everything_held_resumes() -> None:
    consumer = FakeConsumer({P0, P1})
    paused_while_handled: list[set[TopicPartition]] = []

    async def deliver(record: RawRecord) -> None:
        paused_while_handled.append(set(consumer.paused()))

    loop, _ = make_loop(deliver)

    await loop._handle(consumer, fetched(p0=[10], p1=[5]))  # type: ignore[arg-type]

    assert paused_while_handled == [{P0, P1}, {P0, P1}], "all it holds, not only the batch's"
    assert consumer.paused() == set(), "the next getmany fetches again"


async def test_a_batch_that_must_come_again_resumes_its_partitions_too() -> None:
    async def deliver(record: RawRecord) -> None:
        raise TransientError("blob store unreachable")

    loop, _ = make_loop(deliver)
    consumer = FakeConsumer({P0})

    await loop._handle(consumer, fetched(p0=[10, 11]))  # type: ignore[arg-type]

    assert consumer.seeks == [(0, 10)]
    assert consumer.paused() == set(), "the rewound partition is fetched again"


async def test_a_partition_taken_away_mid_batch_stays_paused_and_a_new_one_never_was() -> None:
    consumer = FakeConsumer({P0, P1})

    async def deliver(record: RawRecord) -> None:
        consumer.assigned = {P1, P2}  # a rebalance: P0 went elsewhere, P2 came

    loop, _ = make_loop(deliver)

    await loop._handle(consumer, fetched(p0=[10]))  # type: ignore[arg-type]

    assert consumer.paused_now == {P0}, "P0 is not ours to resume; P1 resumed; P2 never paused"


async def test_a_batch_that_cannot_be_prepared_comes_again_and_the_loop_goes_on() -> None:
    import sqlite3

    async def deliver(record: RawRecord) -> None:
        raise AssertionError("nothing is delivered from a batch that was not prepared")

    async def deliverer(records: Sequence[RawRecord]) -> Batch:
        raise sqlite3.DatabaseError("database disk image is malformed")

    loop = loop_with(deliverer)
    consumer = FakeConsumer({P0, P1})

    await loop._handle(consumer, fetched(p0=[10, 11], p1=[5]))  # type: ignore[arg-type]

    assert consumer.commits == []
    assert consumer.seeks == [(0, 10), (1, 5)], "every record of the batch comes again"


class FailingConsumer(FakeConsumer):
    """A consumer whose every fetch fails with something the loop does not expect."""

    def __init__(self, made: list[FailingConsumer]) -> None:
        super().__init__({P0})
        self.fetches = 0
        self.started = self.stopped = False
        made.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Any]]:
        self.fetches += 1
        raise RuntimeError("a defect")


async def test_a_loop_that_keeps_failing_restarts_a_bounded_number_of_times_then_is_dead() -> None:
    loop, _ = make_loop(None)
    made: list[FailingConsumer] = []
    loop.consumer = FailingConsumer(made)  # type: ignore[assignment]
    loop._make_consumer = lambda: FailingConsumer(made)  # type: ignore[method-assign,assignment,return-value]

    task = asyncio.create_task(loop._run())
    await asyncio.wait({task}, timeout=10)

    assert isinstance(task.exception(), RuntimeError)
    assert [c.fetches for c in made] == [1, 1, 1, 1], "the first run and three restarts"
    assert all(c.stopped for c in made[:3]), "each restart leaves the group with the old one"
    assert all(c.started for c in made[1:]), "and joins it anew (the committed offsets)"
    assert loop.dead(), "liveness fails: the process must be restarted"


async def test_a_stalled_partition_shows_how_long_it_has_been_stuck_until_it_flows() -> None:
    failing = {"on": True}

    async def deliver(record: RawRecord) -> None:
        if failing["on"]:
            raise TransientError("research PACS answers 503")

    loop, _ = make_loop(deliver)
    consumer = FakeConsumer({P2})
    labels = {"topic": TOPIC, "group": "deid", "partition": "2"}

    await loop._handle(consumer, fetched(p2=[3]))  # type: ignore[arg-type]
    await loop._handle(consumer, fetched(p2=[3]))  # type: ignore[arg-type]
    stuck = REGISTRY.get_sample_value("radstream_consumer_stalled_seconds", labels)
    failing["on"] = False
    await loop._handle(consumer, fetched(p2=[3]))  # type: ignore[arg-type]

    assert stuck is not None
    assert stuck > 0
    assert REGISTRY.get_sample_value("radstream_consumer_stalled_seconds", labels) == 0
