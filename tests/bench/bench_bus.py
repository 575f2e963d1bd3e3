"""Benchmark: radstream's bus plumbing next to bare aiokafka, on the embedded broker.

Run with ``make bench`` (``python -m tests.bench.bench_bus``); ``--quick`` for a smaller run,
``--json PATH`` to choose where the results go (default ``.build/bench/bus.json``).

Both sides run the same chain in one process, on one embedded Tansu broker::

    producer --(topic A)--> worker: consume, republish --(topic B)--> sink

* **bare aiokafka**: an ``AIOKafkaProducer`` sends to A; a consumer in a group on A takes one
  record at a time (``getone``), parses it, ``send_and_wait``\\ s it to B and commits the offset
  after the send was acknowledged; no envelope headers, tracing, metrics or idempotency.
* **radstream**: ``Bus.publish`` to A; an ``@bus.subscribe`` handler republishes the event to B
  with ``caused_by``; the bus as ``create_bus`` builds it: CloudEvents envelope, OpenTelemetry
  and Prometheus middlewares, SQLite idempotency guard (``is_done`` before the handler,
  ``complete`` after it), delivery metrics, offset committed after the handler returned.
  Variant ``radstream`` configures an SDK ``TracerProvider`` with a ``BatchSpanProcessor``
  (spans are recorded and batched, then discarded instead of exported over the network);
  ``radstream-notrace`` passes no tracer provider (OpenTelemetry's no-op API).

The sink is the same plain consumer on B for every variant. Payload: one serialized
``radstream.v1.StudyReceived`` with a few ``InstanceRef``\\ s; producers use the same ``acks``
(read back from the live radstream producer and printed). Rounds alternate the variants (the
order rotates each round) so machine noise hits all of them, and the report takes the median
of the per-round figures.

Measured with ``time.perf_counter_ns`` in-process, keyed by the event's sequence number:

* hop 1: just before publishing to A -> handler entry;
* hop 2: just before the handler publishes to B -> sink receipt;
* end to end: publishing to A -> sink receipt;

latency with paced publishing (so queueing does not dominate), throughput (events/s) with a
burst published all at once, timed until the sink holds every event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import math
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from radstream.common import topics
from radstream.common.bus import Bus, create_bus
from radstream.common.embedded_broker import EmbeddedBroker
from radstream.common.envelope import Event
from radstream.common.idempotency import Claim
from radstream.common.kafka_client import aiokafka_options, ensure_topics
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.common.topics import Topic
from radstream.contracts.v1.common_pb2 import BlobRef, InstanceRef
from radstream.contracts.v1.imaging_pb2 import StudyReceived

DEFAULT_JSON = Path(".build/bench/bus.json")
TARGET = 0.20  # radstream may cost at most 20% over bare aiokafka
BARE = "bare"
RADSTREAM = "radstream"
RADSTREAM_NOTRACE = "radstream-notrace"
VARIANTS = (BARE, RADSTREAM, RADSTREAM_NOTRACE)
DESCRIPTIONS = {
    BARE: "AIOKafkaProducer -> consumer group getone, parse, send_and_wait, commit -> sink",
    RADSTREAM: "Bus.publish -> @bus.subscribe handler (guard, middlewares, SDK tracer) "
    "-> Bus.publish(caused_by) -> sink",
    RADSTREAM_NOTRACE: "as radstream, tracer_provider=None (no-op OpenTelemetry API)",
}
MS = 1e6  # nanoseconds per millisecond


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Sizes of one benchmark run."""

    rounds: int = 3
    warmup_events: int = 50
    latency_events: int = 200
    rate_per_s: float = 100.0
    burst_events: int = 2000
    instances: int = 4
    partitions: int = topics.STUDY_RECEIVED_V1.partitions
    # Tansu answers a long-poll Fetch only when fetch_max_wait_ms runs out, even when records
    # arrived meanwhile; at the clients' default (500 ms) every hop would wait ~100-250 ms for
    # the broker, on both sides alike. Every consumer of the benchmark uses this value instead.
    fetch_max_wait_ms: int = 10
    drain_timeout_s: float = 60.0


FULL = BenchConfig()
QUICK = BenchConfig(rounds=1, warmup_events=20, latency_events=60, burst_events=400)


# -- payload -----------------------------------------------------------------------------------


def study(seq: int, instances: int) -> StudyReceived:
    """A realistic ``StudyReceived`` whose study UID (the record key) ends in ``seq``."""
    uid = f"2.25.{uuid.uuid4().int % 10**20}.{seq}"
    stamp = Timestamp(seconds=1_767_225_600, nanos=123_000_000)
    refs = []
    for n in range(instances):
        sop = f"{uid}.1.{n + 1}"
        digest = uuid.uuid5(uuid.NAMESPACE_OID, sop).hex * 2
        refs.append(
            InstanceRef(
                study_instance_uid=uid,
                series_instance_uid=f"{uid}.1",
                sop_instance_uid=sop,
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                modality="CT",
                blob=BlobRef(
                    uri=f"file:///var/lib/radstream/phi/{digest[:2]}/{digest[2:4]}/{digest}",
                    sha256=digest,
                    size=524_288 + n,
                    media_type="application/dicom",
                ),
            )
        )
    return StudyReceived(
        study_instance_uid=uid,
        accession_number=f"ACC{seq:08d}",
        patient_id=f"PID{seq:08d}",
        instances=refs,
        revision=0,
        first_received_at=stamp,
        last_received_at=stamp,
    )


def seq_of_key(key: bytes | None) -> int:
    """The sequence number at the end of a record key (the study UID)."""
    assert key is not None
    return int(key[key.rfind(b".") + 1 :])


def seq_of_uid(uid: str) -> int:
    """The sequence number at the end of a study UID."""
    return int(uid[uid.rfind(".") + 1 :])


# -- probes ------------------------------------------------------------------------------------


class Probe:
    """In-process timestamps (``perf_counter_ns``) of one phase, keyed by sequence number."""

    def __init__(self) -> None:
        self.expected: range = range(0)
        self.sent: dict[int, int] = {}
        self.entered: dict[int, int] = {}
        self.forwarded: dict[int, int] = {}
        self.sunk: dict[int, int] = {}
        self.done = asyncio.Event()

    def reset(self, expected: range) -> None:
        """Start a phase that waits for the sequence numbers in ``expected``."""
        self.expected = expected
        self.sent, self.entered, self.forwarded, self.sunk = {}, {}, {}, {}
        self.done = asyncio.Event()

    def enter(self, seq: int) -> None:
        """The worker's handler saw ``seq`` (first delivery only)."""
        self.entered.setdefault(seq, time.perf_counter_ns())

    def forward(self, seq: int) -> None:
        """The worker is about to publish ``seq`` to the output topic."""
        self.forwarded.setdefault(seq, time.perf_counter_ns())

    def sink(self, seq: int) -> None:
        """The sink received ``seq``."""
        if seq in self.expected and seq not in self.sunk:
            self.sunk[seq] = time.perf_counter_ns()
            if len(self.sunk) == len(self.expected):
                self.done.set()


class DiscardingExporter(SpanExporter):
    """Counts and drops spans: the SDK's in-process cost without a collector to talk to."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Count ``spans`` and report success."""
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""


# -- the chains --------------------------------------------------------------------------------


class Chain(Protocol):
    """A producer and a republishing worker, started and stopped together."""

    async def start(self) -> None:
        """Connect everything and start the worker."""

    async def stop(self) -> None:
        """Stop the worker and close every client."""

    def ready(self) -> bool:
        """Whether the worker holds every partition of the input topic."""

    async def publish(self, message: StudyReceived) -> None:
        """Publish ``message`` to the input topic and wait for the broker's acknowledgement."""

    def facts(self) -> dict[str, Any]:
        """Settings read back from the live clients, for the report."""


class BareChain:
    """Plain aiokafka: producer to A; worker consumes A, sends to B, commits after the ack."""

    def __init__(
        self,
        settings: KafkaSettings,
        source: Topic,
        target: Topic,
        group: str,
        probe: Probe,
        *,
        fetch_max_wait_ms: int,
    ) -> None:
        options = aiokafka_options(settings)
        self.source, self.target, self.probe = source, target, probe
        self.producer = AIOKafkaProducer(acks=1, enable_idempotence=False, **options)
        self.worker_producer = AIOKafkaProducer(acks=1, enable_idempotence=False, **options)
        self.consumer = AIOKafkaConsumer(
            source.name,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms,
            **options,
        )
        self._task: asyncio.Task[None] | None = None
        self._facts: dict[str, Any] = {}

    async def start(self) -> None:
        """Start the clients and the worker loop."""
        await self.producer.start()
        await self.worker_producer.start()
        await self.consumer.start()
        self._facts = producer_facts(self.producer)
        self._facts["fetch_max_wait_ms"] = self.consumer._fetcher._fetch_max_wait_ms
        self._task = asyncio.create_task(self._work())

    async def _work(self) -> None:
        consumer, producer, probe, target = (
            self.consumer,
            self.worker_producer,
            self.probe,
            self.target.name,
        )
        while True:
            record: ConsumerRecord[bytes, bytes] = await consumer.getone()
            seq = seq_of_key(record.key)
            probe.enter(seq)
            message = StudyReceived.FromString(record.value)
            probe.forward(seq)
            await producer.send_and_wait(target, message.SerializeToString(), key=record.key)
            await consumer.commit()

    async def stop(self) -> None:
        """Cancel the worker loop and close the clients."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()
        await self.worker_producer.stop()
        await self.producer.stop()

    def ready(self) -> bool:
        """Whether the worker's consumer holds every partition of A."""
        return len(self.consumer.assignment()) == self.source.partitions

    async def publish(self, message: StudyReceived) -> None:
        """Serialize and ``send_and_wait`` to A, keyed by study UID."""
        await self.producer.send_and_wait(
            self.source.name,
            message.SerializeToString(),
            key=message.study_instance_uid.encode(),
        )

    def facts(self) -> dict[str, Any]:
        """The producer settings in effect."""
        return self._facts


class RadstreamChain:
    """radstream: ``Bus.publish`` to A; a subscribed handler republishes to B (``caused_by``)."""

    def __init__(
        self,
        settings: KafkaSettings,
        source: Topic,
        target: Topic,
        group: str,
        probe: Probe,
        workdir: Path,
        *,
        tracing: bool,
        fetch_max_wait_ms: int,
    ) -> None:
        self.source, self.target, self.probe = source, target, probe
        self.exporter: DiscardingExporter | None = None
        self.tracer_provider: TracerProvider | None = None
        if tracing:
            self.exporter = DiscardingExporter()
            self.tracer_provider = TracerProvider()
            self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self._facts: dict[str, Any] = {}
        self.publisher = self._bus(settings, workdir / "ingest.sqlite3", "bench-ingest")
        self.worker = self._bus(settings, workdir / "deid.sqlite3", "bench-deid")
        worker = self.worker
        with_fetch_wait(worker, fetch_max_wait_ms)

        @worker.subscribe(source, group=group)
        async def forward(event: Event[StudyReceived], claim: Claim) -> None:
            seq = seq_of_uid(event.message.study_instance_uid)
            probe.enter(seq)
            probe.forward(seq)
            await worker.publish(target, event.message, caused_by=event)

    def _bus(self, settings: KafkaSettings, db: Path, service: str) -> Bus:
        delivery = DeliverySettings(idempotency_dsn=f"sqlite:///{db}")
        return create_bus(
            settings,
            delivery,
            service=service,
            tracer_provider=self.tracer_provider,
            registry=CollectorRegistry(),
        )

    async def start(self) -> None:
        """Start both buses (guards, dead-letter producers, FastStream brokers)."""
        await self.publisher.start()
        await self.worker.start()
        producer = self.publisher.broker.config.broker_config.producer._producer.producer
        self._facts = producer_facts(producer)
        [subscriber] = self.worker.broker.subscribers
        self._facts["fetch_max_wait_ms"] = subscriber.consumer._fetcher._fetch_max_wait_ms

    async def stop(self) -> None:
        """Stop both buses and flush the tracer."""
        await self.worker.stop()
        await self.publisher.stop()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()

    def ready(self) -> bool:
        """Whether the worker bus holds every partition of A."""
        return len(self.worker.assigned_partitions()) == self.source.partitions

    async def publish(self, message: StudyReceived) -> None:
        """``Bus.publish`` to A."""
        await self.publisher.publish(self.source, message)

    def facts(self) -> dict[str, Any]:
        """The FastStream producer's settings and the spans the tracer recorded."""
        facts = dict(self._facts)
        if self.exporter is not None:
            facts["spans_exported"] = self.exporter.spans
        return facts


def with_fetch_wait(bus: Bus, fetch_max_wait_ms: int) -> None:
    """Make ``bus.subscribe`` pass ``fetch_max_wait_ms`` to FastStream (it passes no such option).

    The only change to the bus the benchmark makes; see ``BenchConfig.fetch_max_wait_ms``.
    """
    original = bus.broker.subscriber

    def subscriber(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("fetch_max_wait_ms", fetch_max_wait_ms)
        return original(*args, **kwargs)

    bus.broker.subscriber = subscriber  # type: ignore[method-assign]


def producer_facts(producer: AIOKafkaProducer) -> dict[str, Any]:
    """``acks``, ``linger_ms`` and compression of a live aiokafka producer."""
    return {
        "acks": producer._sender._acks,
        "linger_ms": round(producer._message_accumulator._linger_time * 1000),
        "compression": producer._compression_type,
    }


class Sink:
    """The same plain consumer on B for every variant: records when each event arrives."""

    def __init__(
        self, settings: KafkaSettings, target: Topic, probe: Probe, *, fetch_max_wait_ms: int
    ) -> None:
        self.target, self.probe = target, probe
        self.consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms,
            **aiokafka_options(settings),
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition of B and start reading."""
        await self.consumer.start()
        self.consumer.assign(
            [TopicPartition(self.target.name, p) for p in range(self.target.partitions)]
        )
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        consumer, probe = self.consumer, self.probe
        while True:
            record = await consumer.getone()
            probe.sink(seq_of_key(record.key))

    async def stop(self) -> None:
        """Stop reading and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


# -- one round ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RoundResult:
    """Figures of one variant in one round; latencies in milliseconds."""

    variant: str
    round: int
    latency: dict[str, dict[str, float]]
    events_per_s: float
    publish_burst_s: float
    setup_s: float
    facts: dict[str, Any] = field(default_factory=dict)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples_ns: list[int]) -> dict[str, float]:
    """p50, p99 and mean of nanosecond samples, in milliseconds."""
    ms = [s / MS for s in samples_ns]
    return {
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms),
        "n": len(ms),
    }


def bench_topic(role: str) -> Topic:
    """A fresh copy of ``radstream.study.received.v1`` (same message, key and partitions)."""
    letters = "".join(chr(ord("a") + int(d, 16)) for d in uuid.uuid4().hex[:10])
    template = topics.STUDY_RECEIVED_V1
    return Topic(
        name=f"radstream.bench{letters}.{role}.v1",
        message=template.message,
        key_field=template.key_field,
        partitions=template.partitions,
        zone=template.zone,
        description="benchmark copy of " + template.name,
    )


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 20 ms; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        await asyncio.sleep(0.02)


async def drained(probe: Probe, timeout: float, what: str) -> None:
    """Wait until the sink holds every event of the phase."""
    try:
        await asyncio.wait_for(probe.done.wait(), timeout)
    except TimeoutError:
        raise TimeoutError(
            f"{what}: sink got {len(probe.sunk)} of {len(probe.expected)} events "
            f"within {timeout:.0f}s"
        ) from None


async def paced(chain: Chain, probe: Probe, messages: Sequence[StudyReceived], rate: float) -> None:
    """Publish one message every ``1/rate`` seconds, each awaited, stamping its send time."""
    start = time.perf_counter()
    for i, message in enumerate(messages):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        probe.sent[seq_of_uid(message.study_instance_uid)] = time.perf_counter_ns()
        await chain.publish(message)


def make_chain(
    variant: str,
    settings: KafkaSettings,
    source: Topic,
    target: Topic,
    probe: Probe,
    workdir: Path,
    fetch_max_wait_ms: int,
) -> Chain:
    """Build the chain of ``variant``."""
    group = f"bench-{variant}-{uuid.uuid4().hex[:8]}"
    if variant == BARE:
        return BareChain(
            settings, source, target, group, probe, fetch_max_wait_ms=fetch_max_wait_ms
        )
    return RadstreamChain(
        settings,
        source,
        target,
        group,
        probe,
        workdir,
        tracing=variant == RADSTREAM,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )


@contextlib.contextmanager
def maybe_profile(profiler: cProfile.Profile | None) -> Iterator[None]:
    """Enable ``profiler`` inside the block when one is given."""
    if profiler is None:
        yield
        return
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()


async def run_round(
    variant: str,
    number: int,
    settings: KafkaSettings,
    config: BenchConfig,
    workdir: Path,
    *,
    profiler: cProfile.Profile | None = None,
    on_ready: Callable[[Chain], Awaitable[None]] | None = None,
) -> RoundResult:
    """Warm up, then measure paced latency and burst throughput of one variant."""
    started = time.perf_counter()
    source, target = bench_topic("in"), bench_topic("out")
    await ensure_topics(settings, [source, target], with_dlq=variant != BARE)
    probe = Probe()
    chain = make_chain(
        variant, settings, source, target, probe, workdir, config.fetch_max_wait_ms
    )
    sink = Sink(settings, target, probe, fetch_max_wait_ms=config.fetch_max_wait_ms)
    total = config.warmup_events + config.latency_events + config.burst_events
    messages = [study(seq, config.instances) for seq in range(total)]
    warm = messages[: config.warmup_events]
    paced_messages = messages[config.warmup_events : config.warmup_events + config.latency_events]
    burst = messages[config.warmup_events + config.latency_events :]
    await sink.start()
    await chain.start()
    try:
        await wait_for(chain.ready, 30.0, f"{variant}: partition assignment")
        if on_ready is not None:
            await on_ready(chain)
        probe.reset(range(0, len(warm)))
        await paced(chain, probe, warm, config.rate_per_s * 4)
        await drained(probe, config.drain_timeout_s, f"{variant} warm-up")
        setup_s = time.perf_counter() - started

        first = config.warmup_events
        probe.reset(range(first, first + len(paced_messages)))
        await paced(chain, probe, paced_messages, config.rate_per_s)
        await drained(probe, config.drain_timeout_s, f"{variant} latency")
        seqs = sorted(probe.sunk)
        latency = {
            "hop1": summarize([probe.entered[s] - probe.sent[s] for s in seqs]),
            "hop2": summarize([probe.sunk[s] - probe.forwarded[s] for s in seqs]),
            "e2e": summarize([probe.sunk[s] - probe.sent[s] for s in seqs]),
        }

        first += len(paced_messages)
        probe.reset(range(first, first + len(burst)))
        with maybe_profile(profiler):
            t0 = time.perf_counter_ns()
            await asyncio.gather(*(chain.publish(m) for m in burst))
            published = time.perf_counter_ns()
            await drained(probe, config.drain_timeout_s, f"{variant} burst")
        elapsed_s = (max(probe.sunk.values()) - t0) / 1e9
    finally:
        await chain.stop()
        await sink.stop()
    return RoundResult(
        variant=variant,
        round=number,
        latency=latency,
        events_per_s=len(burst) / elapsed_s,
        publish_burst_s=(published - t0) / 1e9,
        setup_s=setup_s,
        facts=chain.facts(),
    )


# -- the report --------------------------------------------------------------------------------


def median_of(results: list[RoundResult]) -> dict[str, Any]:
    """Median over rounds of every per-round figure."""
    merged: dict[str, Any] = {
        "latency": {
            hop: {
                stat: statistics.median(r.latency[hop][stat] for r in results)
                for stat in ("p50", "p99", "mean")
            }
            for hop in ("hop1", "hop2", "e2e")
        },
        "events_per_s": statistics.median(r.events_per_s for r in results),
        "publish_burst_s": statistics.median(r.publish_burst_s for r in results),
    }
    return merged


def ratios(of: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """``of / base`` for throughput and every latency percentile."""
    out = {"events_per_s": of["events_per_s"] / base["events_per_s"]}
    for hop, stats in of["latency"].items():
        for stat in ("p50", "p99"):
            out[f"{hop}_{stat}"] = stats[stat] / base["latency"][hop][stat]
    return out


def verdict(ratio: dict[str, float]) -> tuple[str, bool]:
    """The one-line summary and whether radstream is within the target."""
    worst_hop = max(ratio["hop1_p50"], ratio["hop2_p50"])
    ok = ratio["events_per_s"] >= 1 - TARGET and worst_hop <= 1 + TARGET
    line = (
        f"overhead vs bare aiokafka: throughput x{ratio['events_per_s']:.2f}, "
        f"hop p50 x{worst_hop:.2f} (hop1 x{ratio['hop1_p50']:.2f}, "
        f"hop2 x{ratio['hop2_p50']:.2f}; e2e x{ratio['e2e_p50']:.2f}) "
        f"(target: within {TARGET:.0%}) -> {'OK' if ok else 'OVER TARGET'}"
    )
    return line, ok


def table(medians: dict[str, dict[str, Any]]) -> str:
    """The compact results table."""
    head = (
        f"{'variant':<19}{'hop1 p50':>9}{'p99':>8}{'hop2 p50':>10}{'p99':>8}"
        f"{'e2e p50':>9}{'p99':>8}{'events/s':>10}"
    )
    lines = [head, "-" * len(head)]
    for variant, m in medians.items():
        lat = m["latency"]
        lines.append(
            f"{variant:<19}{lat['hop1']['p50']:>9.2f}{lat['hop1']['p99']:>8.2f}"
            f"{lat['hop2']['p50']:>10.2f}{lat['hop2']['p99']:>8.2f}"
            f"{lat['e2e']['p50']:>9.2f}{lat['e2e']['p99']:>8.2f}{m['events_per_s']:>10.0f}"
        )
    for variant in (RADSTREAM, RADSTREAM_NOTRACE):
        r = ratios(medians[variant], medians[BARE])
        label = f"{variant}/bare"
        lines.append(
            f"{label:<19}{'x' + format(r['hop1_p50'], '.2f'):>9}"
            f"{'x' + format(r['hop1_p99'], '.2f'):>8}"
            f"{'x' + format(r['hop2_p50'], '.2f'):>10}{'x' + format(r['hop2_p99'], '.2f'):>8}"
            f"{'x' + format(r['e2e_p50'], '.2f'):>9}{'x' + format(r['e2e_p99'], '.2f'):>8}"
            f"{'x' + format(r['events_per_s'], '.2f'):>10}"
        )
    return "\n".join(lines)


def describe(config: BenchConfig, facts: dict[str, dict[str, Any]], payload_bytes: int) -> str:
    """What each side does, and the conditions of the run."""
    acks = {variant: f.get("acks") for variant, f in facts.items()}
    lines = [
        f"radstream bus benchmark: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, embedded Tansu broker on loopback, one process, one event loop",
        f"payload: radstream.v1.StudyReceived with {config.instances} InstanceRefs, "
        f"{payload_bytes} B; topics of {config.partitions} partitions; producer acks {acks}",
        "each worker takes one record at a time and commits its offset after the output "
        "publish is acknowledged; the sink is the same plain consumer for every variant",
        f"latency: {config.latency_events} events paced at {config.rate_per_s:.0f}/s; "
        f"throughput: burst of {config.burst_events}, until the sink has all; "
        f"{config.rounds} round(s) per variant, order rotated per round, median of rounds",
        "hop1 = publish to A -> handler entry; hop2 = handler's publish to B -> sink; "
        "e2e = publish to A -> sink (milliseconds)",
    ]
    lines += [f"  {variant:<18} {text}" for variant, text in DESCRIPTIONS.items()]
    return "\n".join(lines)


# -- profiling ---------------------------------------------------------------------------------


def profile_text(profiler: cProfile.Profile, limit: int = 25) -> str:
    """The top functions by own time, radstream's plumbing and its libraries only."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    return out.getvalue()


# -- main --------------------------------------------------------------------------------------


async def run(config: BenchConfig, *, profile: bool) -> dict[str, Any]:
    """Run every round of every variant and return the results."""
    results: dict[str, list[RoundResult]] = {variant: [] for variant in VARIANTS}
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="radstream-bench-") as tmp,
        EmbeddedBroker(log_path=Path(tmp) / "tansu.log") as broker,
    ):
        settings = KafkaSettings(bootstrap=broker.bootstrap)
        for number in range(config.rounds):
            shift = number % len(VARIANTS)
            order = VARIANTS[shift:] + VARIANTS[:shift]
            for variant in order:
                workdir = Path(tmp) / f"{variant}-{number}"
                result = await run_round(variant, number, settings, config, workdir)
                results[variant].append(result)
                print(
                    f"  round {number + 1}/{config.rounds} {variant:<18} "
                    f"e2e p50 {result.latency['e2e']['p50']:6.2f} ms  "
                    f"{result.events_per_s:7.0f} events/s  (setup {result.setup_s:.1f}s)",
                    flush=True,
                )
        medians = {variant: median_of(rounds) for variant, rounds in results.items()}
        profile_report: dict[str, Any] | None = None
        line, ok = verdict(ratios(medians[RADSTREAM], medians[BARE]))
        if profile or not ok:
            profiler = cProfile.Profile()
            workdir = Path(tmp) / "profile"
            await run_round(RADSTREAM, -1, settings, config, workdir, profiler=profiler)
            profile_report = {"cprofile_burst": profile_text(profiler)}
    payload = len(study(0, config.instances).SerializeToString())
    return {
        "config": asdict(config),
        "payload_bytes": payload,
        "rounds": {v: [asdict(r) for r in rs] for v, rs in results.items()},
        "median": medians,
        "ratio_vs_bare": {
            v: ratios(medians[v], medians[BARE]) for v in (RADSTREAM, RADSTREAM_NOTRACE)
        },
        "facts": {v: rs[-1].facts for v, rs in results.items()},
        "summary": line,
        "within_target": ok,
        "profile": profile_report,
        "wall_s": time.perf_counter() - started,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tests.bench.bench_bus``."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_bus", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller run, for development")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    parser.add_argument("--rounds", type=int, help="rounds per variant (default 3, quick 1)")
    parser.add_argument(
        "--profile", action="store_true", help="profile radstream even within the target"
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.rounds:
        config = BenchConfig(**{**asdict(config), "rounds": args.rounds})
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("faststream").setLevel(logging.WARNING)  # start/stop chatter only
    report = asyncio.run(run(config, profile=args.profile))
    print()
    print(describe(config, report["facts"], report["payload_bytes"]))
    print()
    print(table(report["median"]))
    print()
    print(report["summary"])
    if report["profile"]:
        print()
        print(report["profile"]["cprofile_burst"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {args.json}  (wall {report['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
