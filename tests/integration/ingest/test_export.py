"""Export of released studies to a research PACS: a real Orthanc over C-STORE and STOW-RS.

A ``DeidCompleted`` event is published on the real broker; the exporter subscribed to it reads
the released copies from a filesystem release store and sends them to Orthanc, which then holds
exactly those SOP instances. Refs outside the release store are refused, and nothing is sent.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydicom import dcmread

from radstream.common import topics
from radstream.common.blobstore import BlobRef, BlobStores, FilesystemBlobStore
from radstream.common.bus import Bus, create_bus
from radstream.common.embedded_broker import free_loopback_port
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.common.topics import Topic
from radstream.contracts.v1 import common_pb2, deid_pb2
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.export import (
    ExportTarget,
    ExportUnavailableError,
    ResearchExporter,
    export_metrics,
    open_transport,
    register_export,
)
from tests.integration.buses import running
from tests.integration.topic_reader import read_records
from tests.orthanc import OrthancServer, synthetic_ct_study

pytestmark = pytest.mark.integration

Completed = deid_pb2.DeidCompleted


def stores_in(root: Path) -> BlobStores:
    phi = FilesystemBlobStore(root / "phi", "phi")
    release = FilesystemBlobStore(root / "release", "release", refused_roots=[phi.root_uri])
    return BlobStores(phi=phi, release=release)


def released_result(data: bytes, ref: BlobRef) -> Completed.InstanceResult:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return Completed.InstanceResult(
        outcome=Completed.OUTCOME_RELEASED,
        released=common_pb2.InstanceRef(
            study_instance_uid=ds.StudyInstanceUID,
            series_instance_uid=ds.SeriesInstanceUID,
            sop_instance_uid=ds.SOPInstanceUID,
            sop_class_uid=ds.SOPClassUID,
            transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
            modality="CT",
            blob=common_pb2.BlobRef(
                uri=ref.uri, sha256=ref.sha256, size=ref.size, media_type=ref.media_type
            ),
        ),
        min_confidence=1.0,
    )


async def completed_study(stores: BlobStores, count: int) -> tuple[Completed, set[str]]:
    """A DeidCompleted with ``count`` released instances in the release store and one held."""
    results = []
    uids = set()
    for data in synthetic_ct_study(count):
        ref = await stores.release.put(data, media_type="application/dicom")
        result = released_result(data, ref)
        results.append(result)
        uids.add(result.released.sop_instance_uid)
    results.append(
        Completed.InstanceResult(
            outcome=Completed.OUTCOME_HELD, reasons=["possible burned-in text"]
        )
    )
    study_uid = results[0].released.study_instance_uid
    return Completed(study_instance_uid=study_uid, results=results), uids


def export_bus(kafka_settings: KafkaSettings, idempotency_dsn: str) -> Bus:
    delivery = DeliverySettings(
        idempotency_dsn=idempotency_dsn, max_attempts=2, backoff_initial_s=0.05
    )
    return create_bus(kafka_settings, delivery, service="ingest", registry=CollectorRegistry())


async def wait_for_instances(orthanc: OrthancServer, count: int, timeout: float = 30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    held = await asyncio.to_thread(orthanc.sop_instance_uids)
    while len(held) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        held = await asyncio.to_thread(orthanc.sop_instance_uids)
    return held


async def exported_through(
    target: ExportTarget,
    orthanc: OrthancServer,
    *,
    stores: BlobStores,
    topic: Topic,
    kafka_settings: KafkaSettings,
    idempotency_dsn: str,
) -> tuple[set[str], set[str], CollectorRegistry]:
    """Publish one study's DeidCompleted twice; return (expected, held by Orthanc, registry)."""
    registry = CollectorRegistry()
    exporter = ResearchExporter(
        target=target.name,
        transport=open_transport(target),
        release_store=stores.release,
        metrics=export_metrics(registry),
        batch_size=2,  # three instances: two batches, so batching is exercised too
    )
    completed, expected = await completed_study(stores, 3)
    bus = export_bus(kafka_settings, idempotency_dsn)
    register_export(bus, exporter, topic=topic)
    async with running(bus):
        await bus.publish(topic, completed)
        held = await wait_for_instances(orthanc, len(expected))
        # A redelivery with a new event id (a replay) sends again; the PACS keeps one copy each.
        await bus.publish(topic, completed)
        await wait_for_sent(registry, target.name, 2 * len(expected))
        held = await asyncio.to_thread(orthanc.sop_instance_uids)
    await exporter.close()
    return expected, held, registry


async def wait_for_sent(
    registry: CollectorRegistry, target: str, count: int, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = registry.get_sample_value(
            "radstream_ingest_export_instances_total", {"target": target, "outcome": "sent"}
        )
        if (sent or 0) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} instances were sent within {timeout}s")


async def test_released_instances_reach_the_research_pacs_over_c_store(
    orthanc: OrthancServer,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    target = ExportTarget(
        name="research",
        transport="c-store",
        host="127.0.0.1",
        port=orthanc.dicom_port,
        ae_title=orthanc.ae_title,
        calling_ae_title="RADSTREAM-EXP",
    )
    expected, held, registry = await exported_through(
        target,
        orthanc,
        stores=stores_in(tmp_path),
        topic=await new_topic(topics.DEID_COMPLETED_V1),
        kafka_settings=kafka_settings,
        idempotency_dsn=idempotency_dsn,
    )

    assert held == expected  # exactly the released instances; the held one never left
    labels = {"target": "research", "outcome": "sent"}
    assert registry.get_sample_value("radstream_ingest_export_instances_total", labels) == 6


async def test_released_instances_reach_the_research_pacs_over_stow_rs(
    orthanc: OrthancServer,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    target = ExportTarget(name="research-web", transport="stow-rs", stow_url=orthanc.dicomweb_url)
    expected, held, _ = await exported_through(
        target,
        orthanc,
        stores=stores_in(tmp_path),
        topic=await new_topic(topics.DEID_COMPLETED_V1),
        kafka_settings=kafka_settings,
        idempotency_dsn=idempotency_dsn,
    )

    assert held == expected


async def test_a_released_ref_into_the_phi_store_is_refused_and_nothing_is_sent(
    orthanc: OrthancServer,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    stores = stores_in(tmp_path)
    completed, _ = await completed_study(stores, 2)
    # A forged or buggy event: one "released" copy actually lives in the PHI store.
    leaked = synthetic_ct_study(1)[0]
    phi_ref = await stores.phi.put(leaked, media_type="application/dicom")
    completed.results.append(released_result(leaked, phi_ref))
    topic = await new_topic(topics.DEID_COMPLETED_V1)
    registry = CollectorRegistry()
    target = ExportTarget(
        name="research",
        transport="c-store",
        host="127.0.0.1",
        port=orthanc.dicom_port,
        ae_title=orthanc.ae_title,
    )
    exporter = ResearchExporter(
        target=target.name,
        transport=open_transport(target),
        release_store=stores.release,
        metrics=export_metrics(registry),
    )
    bus = export_bus(kafka_settings, idempotency_dsn)
    register_export(bus, exporter, topic=topic)

    async with running(bus):
        event_id = await bus.publish(topic, completed)
        [letter] = await read_records(kafka_settings, f"{topic.name}.dlq", 1)

    headers = dict(letter.headers)
    assert headers["ce_id"] == event_id.encode()
    assert headers["x-radstream-error-type"].endswith(b"ExportRefusedError")
    assert await asyncio.to_thread(orthanc.sop_instance_uids) == set()
    labels = {"target": "research", "outcome": "refused"}
    assert registry.get_sample_value("radstream_ingest_export_instances_total", labels) == 1


async def test_an_unreachable_target_is_a_transient_failure_retried_by_the_bus(
    tmp_path: Path,
) -> None:
    stores = stores_in(tmp_path)
    completed, _ = await completed_study(stores, 1)
    target = ExportTarget(
        name="research",
        transport="c-store",
        host="127.0.0.1",
        port=free_loopback_port(),
        ae_title="NOBODY",
    )
    registry = CollectorRegistry()
    exporter = ResearchExporter(
        target=target.name,
        transport=open_transport(target),
        release_store=stores.release,
        metrics=export_metrics(registry),
    )

    with pytest.raises(ExportUnavailableError):
        await exporter.export(completed)
    labels = {"target": "research", "outcome": "retry"}
    assert registry.get_sample_value("radstream_ingest_export_instances_total", labels) == 1


async def test_the_exporter_refuses_to_read_from_the_phi_store(tmp_path: Path) -> None:
    stores = stores_in(tmp_path)
    target = ExportTarget(name="research", transport="stow-rs", stow_url="http://127.0.0.1:9")
    transport = open_transport(target)
    with pytest.raises(IngestConfigurationError, match="release store only"):
        ResearchExporter(
            target=target.name,
            transport=transport,
            release_store=stores.phi,
            metrics=export_metrics(CollectorRegistry()),
        )
    await transport.close()
