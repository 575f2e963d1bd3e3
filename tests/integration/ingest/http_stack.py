"""The ingest receiving stack for the HTTP and MLLP tests, built from real parts.

A filesystem PHI blob store and a SQLite study assembly under a temporary directory, a JSON
lines audit trail, and a real :class:`~radstream.common.bus.Bus` on the embedded broker
publishing to isolated one-partition topics (one total order per topic, so a "fence" event
proves that nothing was published before it). :class:`EventLog` reads the topics back.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from radstream.common import topics
from radstream.common.blobstore import FilesystemBlobStore
from radstream.common.bus import Bus, create_bus
from radstream.common.kafka_client import ensure_topics
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.common.topics import Topic
from radstream.contracts.v1 import clinical_pb2, imaging_pb2, reports_pb2
from radstream.dicom import ReaderLimits
from radstream.ingest.assembly import StudyAssembler, StudyAssembly, StudyReady
from radstream.ingest.audit import JsonLinesAuditSink, ReceiptAudit
from radstream.ingest.metrics import IngestMetrics
from radstream.ingest.receipt import InstanceReceiver, instance_event_id
from radstream.ingest.rejections import Rejections, rejections
from radstream.ingest.reports import ReportSink
from tests.integration.ingest.dicom_peers import EventLog
from tests.unit.ingest.instances import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE


def isolated(template: Topic, label: str) -> Topic:
    """A uniquely named one-partition copy of a registered topic."""
    suffix = "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])
    return dataclasses.replace(
        template,
        name=f"radstream.{label}{suffix}.{template.name.split('.')[2]}.v1",
        partitions=1,
    )


@dataclass(frozen=True, kw_only=True)
class StackTopics:
    instance_stored: Topic
    study_received: Topic
    report_received: Topic
    clinical_observation: Topic

    def all(self) -> list[Topic]:
        return [
            self.instance_stored,
            self.study_received,
            self.report_received,
            self.clinical_observation,
        ]


@dataclass
class ReceivingStack:
    """Everything a receiving server is built from, plus what tests read back."""

    root: Path
    topics: StackTopics
    registry: CollectorRegistry
    bus: Bus
    events: EventLog
    assembly: StudyAssembly
    assembler: StudyAssembler
    audit: ReceiptAudit
    receiver: InstanceReceiver
    sink: ReportSink
    rejections: Rejections

    @property
    def audit_path(self) -> Path:
        return self.root / "audit" / "receipts.jsonl"

    def counted(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def refused(self, channel: str, reason: str) -> float:
        return self.counted("radstream_ingest_refused_total", channel=channel, reason=reason)

    def receipts(self, channel: str, outcome: str) -> float:
        return self.counted("radstream_ingest_receipts_total", channel=channel, outcome=outcome)


@asynccontextmanager
async def receiving_stack(
    root: Path, kafka: KafkaSettings, *, label: str
) -> AsyncIterator[ReceivingStack]:
    """Open the stack under ``root``; publish to fresh topics; close it all afterwards."""
    chosen = StackTopics(
        instance_stored=isolated(topics.INSTANCE_STORED_V1, label),
        study_received=isolated(topics.STUDY_RECEIVED_V1, label),
        report_received=isolated(topics.REPORT_RECEIVED_V1, label),
        clinical_observation=isolated(topics.CLINICAL_OBSERVATION_V1, label),
    )
    await ensure_topics(kafka, chosen.all())
    registry = CollectorRegistry()
    delivery = DeliverySettings(idempotency_dsn=f"sqlite:///{root / 'idempotency.sqlite3'}")
    bus = create_bus(kafka, delivery, service="ingest", registry=registry)
    # Built directly, not via ingest_metrics(): that caches by id(), which a new registry can reuse.
    metrics = IngestMetrics(registry)
    audit = ReceiptAudit(JsonLinesAuditSink(root / "audit" / "receipts.jsonl"), metrics)
    # A long quiet period: studies complete only when a test says so.
    assembly = StudyAssembly.open_dsn(f"sqlite:///{root / 'assembly.sqlite3'}", quiet_period_s=3600)

    async def publish_instance(message: imaging_pb2.InstanceStored) -> None:
        await bus.publish(chosen.instance_stored, message, event_id=instance_event_id(message))

    async def publish_study(ready: StudyReady) -> None:
        await bus.publish(chosen.study_received, ready.to_proto(), event_id=ready.event_id)

    async def publish_report(message: reports_pb2.ReportReceived, event_id: str) -> Any:
        return await bus.publish(chosen.report_received, message, event_id=event_id)

    async def publish_observation(message: clinical_pb2.ClinicalObservation, event_id: str) -> Any:
        return await bus.publish(chosen.clinical_observation, message, event_id=event_id)

    phi = FilesystemBlobStore(root / "phi", "phi")
    stack = ReceivingStack(
        root=root,
        topics=chosen,
        registry=registry,
        bus=bus,
        events=EventLog(kafka.require_bootstrap(), chosen.all()),
        assembly=assembly,
        assembler=StudyAssembler(assembly, publish_study, poll_interval_s=0.2, metrics=metrics),
        audit=audit,
        receiver=InstanceReceiver(
            phi_store=phi,
            assembly=assembly,
            publish_instance=publish_instance,
            audit=audit,
            limits=ReaderLimits(),
            accepted_sop_classes=frozenset({CT_IMAGE_STORAGE, MR_IMAGE_STORAGE}),
        ),
        sink=ReportSink(
            audit=audit,
            publish_report=publish_report,
            publish_observation=publish_observation,
            phi_store=phi,
            max_inline_text_bytes=4096,
        ),
        rejections=rejections(registry),
    )
    await assembly.open()
    await bus.start()
    await stack.events.start()
    await stack.assembler.start()
    try:
        yield stack
    finally:
        await stack.assembler.stop()
        await stack.events.stop()
        await bus.stop()
        await assembly.close()
        await audit.close()
