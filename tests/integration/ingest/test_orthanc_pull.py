"""Pull mode against a real Orthanc: stable studies in the PACS become events on the real broker.

Studies are uploaded to Orthanc through its REST API (``POST /instances``), as a modality's
C-STORE would leave them. The puller follows Orthanc's changes feed, fetches each stable study
and hands it to ingest's core; ``InstanceStored`` and ``StudyReceived`` appear on the broker.
The assembly's quiet period is long (60 s), so a ``StudyReceived`` within the test can only come
from the puller's explicit completion.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry

from radstream.common import topics
from radstream.common.bus import create_bus
from radstream.common.embedded_broker import free_loopback_port
from radstream.common.memory_budget import MemorySettings
from radstream.common.settings import BlobSettings, DeliverySettings, KafkaSettings
from radstream.common.spool import SpoolFile
from radstream.contracts.v1 import imaging_pb2
from radstream.ingest.app import IngestCore, IngestTopics, build_core
from radstream.ingest.config import AssemblySettings, DicomSettings, IngestSettings
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.pacs import OrthancPuller, PacsSettings, PacsUnavailableError, pacs_metrics
from radstream.ingest.pull_cursor import open_pull_cursor
from radstream.ingest.receipt import Receipt, Sender
from tests.integration.ingest.conftest import StartOrthanc
from tests.orthanc import OrthancOptions, OrthancServer, synthetic_ct_study

pytestmark = pytest.mark.integration

QUIET_PERIOD_S = 60.0
MiB = 1024 * 1024


def ingest_settings(root: Path, kafka: KafkaSettings, idempotency_dsn: str) -> IngestSettings:
    return IngestSettings(
        kafka=kafka,
        delivery=DeliverySettings(idempotency_dsn=idempotency_dsn),
        blob=BlobSettings(phi_uri=f"file://{root}/phi", release_uri=f"file://{root}/release"),
        assembly=AssemblySettings(
            quiet_period_s=QUIET_PERIOD_S,
            dsn=f"sqlite:///{root}/assembly.sqlite3",
            poll_interval_s=0.2,
        ),
        dicom=DicomSettings(enabled=False),
        audit_path=root / "audit.jsonl",
        memory=MemorySettings(spool_dir=root / "spool"),
    )


def pull_settings(orthanc: OrthancServer, root: Path, **overrides: object) -> PacsSettings:
    values: dict[str, object] = {
        "mode": "pull",
        "orthanc_url": orthanc.url,
        "start_at": "beginning",
        "poll_interval_s": 0.2,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "cursor_dsn": f"sqlite:///{root}/pacs-cursor.sqlite3",
    }
    values.update(overrides)
    return PacsSettings.model_validate(values)


@dataclass(frozen=True, kw_only=True)
class Ingest:
    core: IngestCore
    registry: CollectorRegistry
    settings: IngestSettings


@asynccontextmanager
async def running_ingest(
    settings: IngestSettings, topic_set: IngestTopics
) -> AsyncIterator[Ingest]:
    """The ingest core (bus, stores, assembly, assembler) without any receiving server."""
    registry = CollectorRegistry()
    bus = create_bus(settings.kafka, settings.delivery, service="ingest", registry=registry)
    core = build_core(settings, bus, registry=registry, topic_set=topic_set)
    await bus.start()
    await core.assembly.open()
    await core.assembler.start()
    try:
        yield Ingest(core=core, registry=registry, settings=settings)
    finally:
        await core.assembler.stop()
        await bus.stop()
        await core.assembly.close()
        await core.audit.close()


@asynccontextmanager
async def running_puller(
    settings: PacsSettings, ingest: Ingest, receiver: TracedReceiver | None = None
) -> AsyncIterator[OrthancPuller]:
    puller = OrthancPuller(
        settings=settings,
        receiver=receiver or ingest.core.receiver,
        assembly=ingest.core.assembler,
        cursor=open_pull_cursor(settings.cursor_dsn),
        metrics=pacs_metrics(ingest.registry),
        spool_dir=ingest.settings.memory.spool_dir,
        max_instance_bytes=ingest.settings.reader_limits().max_file_bytes,
    )
    await puller.start()
    try:
        yield puller
    finally:
        await puller.stop()


@dataclass(frozen=True, kw_only=True)
class Handed:
    """What the puller handed the receiver, and the memory peak while it was downloaded."""

    spooled: bool
    size: int
    peak: int
    receipt: Receipt


class TracedReceiver:
    """The real receiver, noting the peak of traced allocations up to each hand-over.

    The receiver reads a spooled instance into memory once its reservation is granted; what is
    measured here is everything before that: the download, outside the memory budget.
    """

    def __init__(self, ingest: Ingest) -> None:
        self._receiver = ingest.core.receiver
        self.handed: list[Handed] = []

    async def receive(self, data: bytes | SpoolFile, *, sender: Sender) -> Receipt:
        _, peak = tracemalloc.get_traced_memory()
        size = data.size if isinstance(data, SpoolFile) else len(data)
        receipt = await self._receiver.receive(data, sender=sender)
        self.handed.append(
            Handed(spooled=isinstance(data, SpoolFile), size=size, peak=peak, receipt=receipt)
        )
        tracemalloc.reset_peak()
        return receipt


def large_instance() -> bytes:
    """One 16 MiB CT instance (2048 x 4096 16-bit pixels)."""
    [instance] = synthetic_ct_study(1, rows=2048, columns=4096)
    return instance


async def until_counted(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    """Wait (up to 60 s) until the counter ``name`` with ``labels`` is at least 1."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        value = registry.get_sample_value(name, labels)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} {labels} was never counted")


class TopicReader:
    """Reads a topic from the beginning, keeping everything seen so far."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=settings.bootstrap, auto_offset_reset="earliest"
        )
        self.values: list[bytes] = []

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def until(self, count: int, timeout: float = 30.0) -> list[bytes]:
        """Wait until ``count`` records were seen (or ``timeout``); return all seen."""
        deadline = time.monotonic() + timeout
        while len(self.values) < count and time.monotonic() < deadline:
            await self.poll(0.2)
        return self.values

    async def poll(self, seconds: float) -> list[bytes]:
        """Read whatever arrives within ``seconds``."""
        batches = await self._consumer.getmany(timeout_ms=round(seconds * 1000))
        for batch in batches.values():
            self.values.extend(record.value for record in batch if record.value is not None)
        return self.values


def studies(values: list[bytes]) -> list[imaging_pb2.StudyReceived]:
    return [imaging_pb2.StudyReceived.FromString(value) for value in values]


async def new_topics(new_topic) -> IngestTopics:
    return IngestTopics(
        instance_stored=await new_topic(topics.INSTANCE_STORED_V1),
        study_received=await new_topic(topics.STUDY_RECEIVED_V1),
    )


async def test_a_stable_study_in_orthanc_is_pulled_and_published_then_amended_by_a_late_instance(
    orthanc: OrthancServer,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    chosen = await new_topics(new_topic)
    study = synthetic_ct_study(3)
    settings = ingest_settings(tmp_path, kafka_settings, idempotency_dsn)

    async with (
        running_ingest(settings, chosen) as ingest,
        running_puller(pull_settings(orthanc, tmp_path), ingest),
        TopicReader(kafka_settings, chosen.instance_stored.name) as instances,
        TopicReader(kafka_settings, chosen.study_received.name) as received,
    ):
        await asyncio.to_thread(orthanc.upload, study)
        [first] = studies(await received.until(1))
        stored = [imaging_pb2.InstanceStored.FromString(v) for v in await instances.until(3)]

        # A late instance: Orthanc calls the study stable again, the puller fetches all four,
        # three are duplicates, and the amendment carries every instance.
        late = synthetic_ct_study(1, study_uid=first.study_instance_uid)
        await asyncio.to_thread(orthanc.upload, late)
        amended = studies(await received.until(2))[1]
        await instances.poll(0.5)

    assert first.revision == 0 and not first.amended
    assert len(first.instances) == 3
    assert {ref.sop_instance_uid for ref in first.instances} == {
        message.instance.sop_instance_uid for message in stored
    }
    assert all(message.source == imaging_pb2.InstanceStored.SOURCE_PACS_PULL for message in stored)
    assert {message.sender_id for message in stored} == {orthanc.ae_title}
    assert all(ref.blob.uri.startswith(f"file://{tmp_path}/phi") for ref in first.instances)

    assert amended.revision == 1 and amended.amended
    assert amended.study_instance_uid == first.study_instance_uid
    assert len(amended.instances) == 4
    assert len(instances.values) == 4  # the re-fetched three were not announced again

    def count(outcome: str) -> float | None:
        return ingest.registry.get_sample_value(
            "radstream_ingest_pacs_instances_total", {"outcome": outcome}
        )

    assert (count("accepted"), count("duplicate")) == (4, 3)


async def test_a_restarted_puller_continues_where_it_stopped_and_republishes_nothing(
    orthanc: OrthancServer,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    chosen = await new_topics(new_topic)
    settings = ingest_settings(tmp_path, kafka_settings, idempotency_dsn)
    pull = pull_settings(orthanc, tmp_path)

    async with (
        TopicReader(kafka_settings, chosen.instance_stored.name) as instances,
        TopicReader(kafka_settings, chosen.study_received.name) as received,
    ):
        async with running_ingest(settings, chosen) as ingest, running_puller(pull, ingest):
            await asyncio.to_thread(orthanc.upload, synthetic_ct_study(2))
            await received.until(1)
            await instances.until(2)

        # A new process: fresh metrics, same cursor, assembly and stores on disk.
        async with running_ingest(settings, chosen) as ingest, running_puller(pull, ingest):
            await asyncio.to_thread(orthanc.upload, synthetic_ct_study(3))
            await received.until(2)
            await instances.until(5)
            await received.poll(1.0)
            await instances.poll(0.5)
            fetched = ingest.registry.get_sample_value(
                "radstream_ingest_pacs_instances_total", {"outcome": "accepted"}
            )
            refetched = ingest.registry.get_sample_value(
                "radstream_ingest_pacs_instances_total", {"outcome": "duplicate"}
            )

    published = studies(received.values)
    assert [len(study.instances) for study in published] == [2, 3]
    assert len({study.study_instance_uid for study in published}) == 2
    assert len(instances.values) == 5
    assert fetched == 3  # only the new study: the first one was not fetched again
    assert refetched is None


async def test_start_at_latest_skips_what_the_pacs_held_before_the_first_start(
    orthanc: OrthancServer,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    chosen = await new_topics(new_topic)
    settings = ingest_settings(tmp_path, kafka_settings, idempotency_dsn)
    await asyncio.to_thread(orthanc.upload, synthetic_ct_study(2))
    await asyncio.to_thread(orthanc.wait_until_stable)
    pull = pull_settings(orthanc, tmp_path, start_at="latest")

    async with (
        TopicReader(kafka_settings, chosen.study_received.name) as received,
        running_ingest(settings, chosen) as ingest,
        running_puller(pull, ingest),
    ):
        new_study = synthetic_ct_study(1)
        await asyncio.to_thread(orthanc.upload, new_study)
        await received.until(1)
        await received.poll(1.5)

    [only] = studies(received.values)
    assert len(only.instances) == 1


async def test_orthanc_credentials_are_used_and_wrong_ones_are_a_configuration_error(
    start_orthanc: StartOrthanc, tmp_path: Path
) -> None:
    orthanc = start_orthanc(OrthancOptions(users={"radstream": "synthetic-secret"}))
    right = pull_settings(orthanc, tmp_path, username="radstream", password="synthetic-secret")
    wrong = pull_settings(orthanc, tmp_path, username="radstream", password="guessed")
    registry = CollectorRegistry()

    async def poll(settings: PacsSettings) -> None:
        puller = OrthancPuller(
            settings=settings,
            receiver=_NoReceiver(),
            assembly=_NoAssembly(),
            cursor=open_pull_cursor(settings.cursor_dsn),
            metrics=pacs_metrics(registry),
            spool_dir=tmp_path / "spool",
            max_instance_bytes=MiB,
        )
        await puller.start()
        try:
            await puller.check()
            await puller.poll_once()
        finally:
            await puller.stop()

    await poll(right)
    with pytest.raises(IngestConfigurationError, match="USERNAME and RADSTREAM_INGEST_PACS_PASS"):
        await poll(wrong)


async def test_an_unreachable_orthanc_is_retried_with_backoff_and_counted(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_loopback_port()}"
    settings = PacsSettings(
        mode="pull",
        orthanc_url=url,
        backoff_initial_s=0.02,
        backoff_max_s=0.05,
        cursor_dsn=f"sqlite:///{tmp_path}/cursor.sqlite3",
    )
    registry = CollectorRegistry()
    puller = OrthancPuller(
        settings=settings,
        receiver=_NoReceiver(),
        assembly=_NoAssembly(),
        cursor=open_pull_cursor(settings.cursor_dsn),
        metrics=pacs_metrics(registry),
        spool_dir=tmp_path / "spool",
        max_instance_bytes=MiB,
    )
    await puller.start()
    try:
        with pytest.raises(PacsUnavailableError):
            await puller.poll_once()
        deadline = time.monotonic() + 10
        errors = 0.0
        while errors < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            errors = (
                registry.get_sample_value(
                    "radstream_ingest_pacs_errors_total", {"error_type": "PacsUnavailableError"}
                )
                or 0.0
            )
    finally:
        await puller.stop()
    assert errors >= 3


class _NoReceiver:
    """Stands in where no instance may arrive (the tests above poll empty or refused feeds)."""

    async def receive(self, data: bytes | SpoolFile, *, sender: object) -> object:
        raise AssertionError("no instance was expected")


class _NoAssembly:
    async def complete(self, study_uid: str) -> bool:
        raise AssertionError("no study was expected")


async def test_a_large_pulled_instance_downloads_to_a_spool_file_not_into_memory(
    orthanc: OrthancServer,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    instance = large_instance()
    await asyncio.to_thread(orthanc.upload, [instance])
    settings = ingest_settings(tmp_path, kafka_settings, idempotency_dsn)

    async with running_ingest(settings, await new_topics(new_topic)) as ingest:
        traced = TracedReceiver(ingest)
        tracemalloc.start()
        try:
            async with running_puller(pull_settings(orthanc, tmp_path), ingest, traced):
                await until_counted(
                    ingest.registry, "radstream_ingest_pacs_studies_total", {"outcome": "pulled"}
                )
        finally:
            tracemalloc.stop()

    [handed] = traced.handed
    # Joined in memory (httpx's .content), the download alone peaked at twice the instance.
    assert handed.peak < 4 * MiB
    assert handed.spooled and handed.size == len(instance)
    assert handed.receipt.accepted
    assert handed.receipt.sha256 == hashlib.sha256(instance).hexdigest()
    assert list((tmp_path / "spool").iterdir()) == []  # unnamed spool files: nothing left


async def test_a_pulled_instance_over_the_limit_is_refused_before_it_is_downloaded_whole(
    orthanc: OrthancServer,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    instance = large_instance()
    await asyncio.to_thread(orthanc.upload, [instance])
    settings = ingest_settings(tmp_path, kafka_settings, idempotency_dsn).model_copy(
        update={"max_file_bytes": 4 * MiB}
    )

    async with running_ingest(settings, await new_topics(new_topic)) as ingest:
        traced = TracedReceiver(ingest)
        tracemalloc.start()
        try:
            async with running_puller(pull_settings(orthanc, tmp_path), ingest, traced):
                await until_counted(
                    ingest.registry,
                    "radstream_ingest_pacs_studies_total",
                    {"outcome": "nothing_accepted"},
                )
        finally:
            tracemalloc.stop()
        refused = ingest.registry.get_sample_value(
            "radstream_ingest_pacs_instances_total", {"outcome": "refused"}
        )

    [handed] = traced.handed
    assert handed.receipt.failure == "file_too_large"  # the receiver's own reason
    assert 4 * MiB < handed.size < 8 * MiB  # the download stopped past the limit
    assert handed.peak < 4 * MiB
    assert refused == 1
