"""The ingest service edge: receiving servers beside the bus, study assembly behind them.

Ingest runs network servers (the DICOM SCP, the HTTP endpoints for STOW-RS and FHIR, the MLLP
listener and the PACS puller) that hand what they receive to the core
(:class:`~radstream.ingest.receipt.InstanceReceiver` for DICOM), and the
:class:`~radstream.ingest.assembly.StudyAssembler`, which publishes ``study.received`` once a
study is quiet. Its one subscription is optional: each configured research-PACS export target
consumes ``deid.completed``. Every server is an async start/stop object run beside the bus:

* startup: bus and assembly database open, broker connects, then servers start listening and
  the assembler starts polling;
* shutdown: servers stop accepting (open DICOM associations are aborted; senders re-send what
  was not acknowledged), the assembler stops, then the broker and the databases close.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from faststream import FastStream
from prometheus_client import REGISTRY, CollectorRegistry

from radstream.common import topics
from radstream.common.blobstore import BlobStores, open_blob_stores
from radstream.common.bus import Bus, create_bus
from radstream.common.health import HealthServer
from radstream.common.memory_budget import MemoryBudget, memory_budget_metrics
from radstream.common.service import service_app
from radstream.common.topics import Topic
from radstream.contracts.v1 import clinical_pb2, imaging_pb2, reports_pb2
from radstream.ingest.assembly import StudyAssembler, StudyAssembly, StudyReady
from radstream.ingest.audit import (
    AuditSink,
    BlobStoreAuditSink,
    JsonLinesAuditSink,
    ReceiptAudit,
)
from radstream.ingest.config import IngestSettings
from radstream.ingest.export import (
    ResearchExporter,
    export_metrics,
    open_transport,
    register_export,
)
from radstream.ingest.fhir import FhirEndpoints
from radstream.ingest.http_app import HttpServer, create_http_app
from radstream.ingest.metrics import IngestMetrics, ingest_metrics
from radstream.ingest.mllp import MllpServer
from radstream.ingest.pacs import OrthancPuller, pacs_metrics
from radstream.ingest.pull_cursor import open_pull_cursor
from radstream.ingest.receipt import Clock, InstanceReceiver, instance_event_id, utc_now
from radstream.ingest.rejections import rejections
from radstream.ingest.reports import ReportSink
from radstream.ingest.scp import DicomScp
from radstream.ingest.stow import StowEndpoints

__all__ = [
    "IngestCore",
    "IngestServer",
    "IngestTopics",
    "attach_servers",
    "build_core",
    "create_app",
]

log = logging.getLogger(__name__)


class IngestServer(Protocol):
    """A receiving server run beside the bus (DICOM SCP, HTTP, MLLP, PACS watcher)."""

    async def start(self) -> None:
        """Start listening (or polling); return once it does."""

    async def stop(self) -> None:
        """Stop accepting work and release the port."""


@dataclass(frozen=True, kw_only=True)
class IngestTopics:
    """The topics ingest publishes to (tests substitute isolated copies)."""

    instance_stored: Topic = topics.INSTANCE_STORED_V1
    study_received: Topic = topics.STUDY_RECEIVED_V1
    report_received: Topic = topics.REPORT_RECEIVED_V1
    clinical_observation: Topic = topics.CLINICAL_OBSERVATION_V1


@dataclass(frozen=True, kw_only=True)
class IngestCore:
    """What every receiving server shares: stores, assembly, receiver, audit, metrics."""

    bus: Bus
    topics: IngestTopics
    stores: BlobStores
    assembly: StudyAssembly
    assembler: StudyAssembler
    receiver: InstanceReceiver
    audit: ReceiptAudit
    metrics: IngestMetrics


def build_core(
    settings: IngestSettings,
    bus: Bus,
    *,
    registry: CollectorRegistry,
    topic_set: IngestTopics | None = None,
    clock: Clock = utc_now,
) -> IngestCore:
    """Build the core from settings; nothing connects until the app starts."""
    chosen = topic_set or IngestTopics()
    stores = open_blob_stores(settings.blob)
    metrics = ingest_metrics(registry)
    sink: AuditSink = (
        BlobStoreAuditSink(stores.phi)
        if settings.audit_sink == "phi-store"
        else JsonLinesAuditSink(settings.audit_path)
    )
    audit = ReceiptAudit(sink, metrics)
    assembly = StudyAssembly.open_dsn(
        settings.assembly.dsn, quiet_period_s=settings.assembly.quiet_period_s
    )

    async def publish_instance(message: imaging_pb2.InstanceStored) -> None:
        await bus.publish(chosen.instance_stored, message, event_id=instance_event_id(message))

    async def publish_study(ready: StudyReady) -> None:
        await bus.publish(chosen.study_received, ready.to_proto(), event_id=ready.event_id)

    accepted = settings.dicom.accepted_sop_classes or None
    memory = settings.memory_plan()
    limits = settings.reader_limits()  # fails at startup if the budget cannot hold it
    log.info(
        "memory budget",
        extra={
            "budget_bytes": memory.budget_bytes,
            "budget_source": memory.source,
            "copies": memory.copies,
            "max_file_bytes": limits.max_file_bytes,
        },
    )
    return IngestCore(
        bus=bus,
        topics=chosen,
        stores=stores,
        assembly=assembly,
        assembler=StudyAssembler(
            assembly,
            publish_study,
            poll_interval_s=settings.assembly.poll_interval_s,
            clock=clock,
            metrics=metrics,
        ),
        receiver=InstanceReceiver(
            phi_store=stores.phi,
            assembly=assembly,
            publish_instance=publish_instance,
            audit=audit,
            limits=limits,
            accepted_sop_classes=accepted,
            clock=clock,
            budget=MemoryBudget(
                memory.budget_bytes, metrics=memory_budget_metrics(registry), service="ingest"
            ),
            copies=memory.copies,
        ),
        audit=audit,
        metrics=metrics,
    )


def attach_servers(app: FastStream, core: IngestCore, servers: Sequence[IngestServer]) -> None:
    """Run ``servers`` and the assembler beside the bus for the app's lifetime."""

    @app.on_startup
    async def open_assembly() -> None:
        await core.assembly.open()

    @app.after_startup
    async def start_servers() -> None:
        # After the broker connected: a receipt publishes as soon as a server accepts it.
        for server in servers:
            await server.start()
        await core.assembler.start()

    @app.on_shutdown
    async def stop_servers() -> None:
        for server in reversed(servers):
            await server.stop()
        await core.assembler.stop()

    @app.after_shutdown
    async def close_core() -> None:
        await core.assembly.close()
        await core.audit.close()


def create_app(
    settings: IngestSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    topic_set: IngestTopics | None = None,
    clock: Clock = utc_now,
) -> FastStream:
    """Build the ingest service: validate settings, build the core, attach the servers."""
    settings = settings if settings is not None else IngestSettings()
    registry = registry if registry is not None else REGISTRY
    # pydicom's lines reach the log with their message withheld (radstream.common.logs);
    # pynetdicom's association chatter stays below WARNING.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    bus = create_bus(settings.kafka, settings.delivery, service="ingest", registry=registry)
    core = build_core(settings, bus, registry=registry, topic_set=topic_set, clock=clock)
    health = HealthServer.from_settings(settings.observability, registry=registry)
    health.add_check("phi-blob-store", core.stores.phi.check)
    health.add_check("study-assembly", core.assembly.check)
    servers: list[IngestServer] = []
    if settings.dicom.enabled:
        scp = DicomScp(
            settings.dicom,
            core.receiver,
            metrics=core.metrics,
            spool_dir=settings.memory.spool_dir,
            max_dataset_bytes=settings.reader_limits().max_file_bytes,
        )
        health.add_check("dicom-scp", scp.check)
        servers.append(scp)
    servers.extend(_report_and_http_servers(settings, core, health, registry))
    if settings.pacs.mode == "pull":
        # Not a readiness check: a PACS outage must not take the SCP out of service.
        servers.append(
            OrthancPuller(
                settings=settings.pacs,
                receiver=core.receiver,
                assembly=core.assembler,
                cursor=open_pull_cursor(settings.pacs.cursor_dsn),
                metrics=pacs_metrics(registry),
                spool_dir=settings.memory.spool_dir,
                max_instance_bytes=settings.reader_limits().max_file_bytes,
            )
        )
    exporters = [
        ResearchExporter(
            target=target.name,
            transport=open_transport(target),
            release_store=core.stores.release,
            metrics=export_metrics(registry),
            batch_size=target.batch_size,
        )
        for target in settings.pacs.export_targets
    ]
    for exporter in exporters:
        register_export(bus, exporter)  # deid.completed, group ingest-export-<target>
    app = service_app(bus, health)
    attach_servers(app, core, servers)

    @app.after_shutdown
    async def close_exporters() -> None:
        for exporter in exporters:
            await exporter.close()

    return app


def _report_and_http_servers(
    settings: IngestSettings,
    core: IngestCore,
    health: HealthServer,
    registry: CollectorRegistry,
) -> list[IngestServer]:
    """The HTTP server (STOW-RS, status, FHIR) and the HL7 MLLP listener, as configured."""
    refused = rejections(registry)
    bus = core.bus

    async def publish_report(message: reports_pb2.ReportReceived, event_id: str) -> str:
        return await bus.publish(core.topics.report_received, message, event_id=event_id)

    async def publish_observation(message: clinical_pb2.ClinicalObservation, event_id: str) -> str:
        return await bus.publish(core.topics.clinical_observation, message, event_id=event_id)

    reports = ReportSink(
        audit=core.audit,
        publish_report=publish_report,
        publish_observation=publish_observation,
        phi_store=core.stores.phi,
    )
    servers: list[IngestServer] = []
    if settings.http.enabled:
        stow = StowEndpoints(
            receiver=core.receiver,
            assembly=core.assembly,
            complete_study=core.assembler.complete,
            audit=core.audit,
            rejections=refused,
            max_request_bytes=settings.http.max_request_bytes,
            max_part_bytes=settings.reader_limits().max_file_bytes,
            spool_dir=settings.memory.spool_dir,
            max_parts=settings.http.max_stow_parts,
        )
        fhir = FhirEndpoints(
            sink=reports,
            rejections=refused,
            max_body_bytes=settings.http.max_fhir_bytes,
            public_base_url=settings.http.public_base_url,
        )
        app = create_http_app(
            settings.http, rejections=refused, stow=stow, fhir=fhir, audit=core.audit
        )
        http = HttpServer(settings.http, app)
        health.add_check("ingest-http", http.check)
        servers.append(http)
    if settings.mllp.enabled:
        mllp = MllpServer(settings.mllp, sink=reports, rejections=refused)
        health.add_check("ingest-mllp", mllp.check)
        servers.append(mllp)
    return servers
