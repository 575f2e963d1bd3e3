"""ingest's receiving parts, in process, for the MLLP, STOW-RS and FHIR fuzz targets.

Real parts wherever they are cheap enough to run thousands of times: the JSON-lines receipt
audit, the filesystem PHI blob store, the SQLite study assembly, the instance receiver (the
strict reader included), the report sink, the refusal counter, the FastAPI app with its
authentication and error rendering. Only the bus is replaced: published events are kept in
a list (they belong to the PHI zone and may carry PHI; fuzzing checks everything else).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from radstream.common.blobstore import FilesystemBlobStore
from radstream.contracts.v1 import clinical_pb2, imaging_pb2, reports_pb2
from radstream.dicom import ReaderLimits
from radstream.ingest.assembly import StudyAssembly
from radstream.ingest.audit import JsonLinesAuditSink, ReceiptAudit, ReceiptRecord
from radstream.ingest.fhir import FhirEndpoints
from radstream.ingest.http_app import create_http_app
from radstream.ingest.http_auth import HttpSettings
from radstream.ingest.metrics import IngestMetrics
from radstream.ingest.receipt import InstanceReceiver
from radstream.ingest.rejections import Rejections
from radstream.ingest.reports import ReportSink
from radstream.ingest.stow import StowEndpoints

MAX_BODY_BYTES = 4 * 1024 * 1024


class RecordingAuditSink(JsonLinesAuditSink):
    """The JSON-lines audit file, and the lines it wrote, for the oracle to read."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.lines: list[bytes] = []

    async def write(self, record: ReceiptRecord) -> None:
        await super().write(record)
        self.lines.append(record.to_json())


@dataclass
class IngestStack:
    """The parts, and what they produced."""

    audit_sink: RecordingAuditSink
    receiver: InstanceReceiver
    sink: ReportSink
    rejections: Rejections
    assembly: StudyAssembly
    app: Any
    metrics: IngestMetrics
    published: list[Any] = field(default_factory=list)

    def take_audit(self) -> list[bytes]:
        """The audit lines written since the last call."""
        lines, self.audit_sink.lines = self.audit_sink.lines, []
        return lines


@asynccontextmanager
async def ingest_stack(root: Path) -> AsyncIterator[IngestStack]:
    """Open the parts under ``root`` (see the module doc); close them afterwards."""
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    audit_sink = RecordingAuditSink(root / "audit" / "receipts.jsonl")
    audit = ReceiptAudit(audit_sink, metrics)
    assembly = StudyAssembly.open_dsn(f"sqlite:///{root / 'assembly.sqlite3'}", quiet_period_s=3600)
    published: list[Any] = []
    phi_store = FilesystemBlobStore(root / "phi", "phi")

    async def publish_instance(message: imaging_pb2.InstanceStored) -> None:
        published.append(message)

    async def publish_report(message: reports_pb2.ReportReceived, event_id: str) -> None:
        published.append(message)

    async def publish_observation(message: clinical_pb2.ClinicalObservation, event_id: str) -> None:
        published.append(message)

    async def complete_study(study: str) -> bool:
        return False

    receiver = InstanceReceiver(
        phi_store=phi_store,
        assembly=assembly,
        publish_instance=publish_instance,
        audit=audit,
        limits=ReaderLimits(),
    )
    sink = ReportSink(
        audit=audit,
        publish_report=publish_report,
        publish_observation=publish_observation,
        phi_store=phi_store,
        max_inline_text_bytes=4096,
    )
    rejections = Rejections(registry)
    app = create_http_app(
        HttpSettings(port=0, auth="open"),
        rejections=rejections,
        stow=StowEndpoints(
            receiver=receiver,
            assembly=assembly,
            complete_study=complete_study,
            audit=audit,
            rejections=rejections,
            max_request_bytes=MAX_BODY_BYTES,
            max_part_bytes=MAX_BODY_BYTES // 2,
        ),
        fhir=FhirEndpoints(sink=sink, rejections=rejections, max_body_bytes=MAX_BODY_BYTES),
    )
    await assembly.open()
    try:
        yield IngestStack(
            audit_sink=audit_sink,
            receiver=receiver,
            sink=sink,
            rejections=rejections,
            assembly=assembly,
            app=app,
            metrics=metrics,
            published=published,
        )
    finally:
        await assembly.close()
        await audit.close()
