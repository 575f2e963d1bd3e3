"""Ingest: where hospital systems meet radstream (DICOM, DICOMweb, HL7 v2, FHIR).

Public names are imported lazily, on first use: ``import radstream.ingest`` loads neither
pydicom nor pynetdicom, so the service registry and the CLI stay light, and a missing extra
surfaces as "pip install 'radstream[ingest]'" only where ingest is actually used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radstream.common.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from radstream.ingest.app import (
        IngestCore,
        IngestServer,
        IngestTopics,
        attach_servers,
        build_core,
        create_app,
    )
    from radstream.ingest.assembly import (
        StudyAssembler,
        StudyAssembly,
        StudyMeta,
        StudyReady,
        StudyStatus,
        complete_study,
        study_event_id,
    )
    from radstream.ingest.audit import (
        AuditSink,
        AuditUnavailableError,
        BlobStoreAuditSink,
        JsonLinesAuditSink,
        ReceiptAudit,
        ReceiptRecord,
    )
    from radstream.ingest.config import AssemblySettings, DicomSettings, IngestSettings
    from radstream.ingest.errors import (
        AssemblyStoreUnavailableError,
        IngestConfigurationError,
        IngestError,
    )
    from radstream.ingest.metrics import IngestMetrics, ingest_metrics
    from radstream.ingest.receipt import (
        Channel,
        InstanceReceiver,
        Receipt,
        Sender,
        instance_event_id,
        storage_sop_classes,
    )
    from radstream.ingest.scp import DicomScp

__all__ = [
    "AssemblySettings",
    "AssemblyStoreUnavailableError",
    "AuditSink",
    "AuditUnavailableError",
    "BlobStoreAuditSink",
    "Channel",
    "DicomScp",
    "DicomSettings",
    "IngestConfigurationError",
    "IngestCore",
    "IngestError",
    "IngestMetrics",
    "IngestServer",
    "IngestSettings",
    "IngestTopics",
    "InstanceReceiver",
    "JsonLinesAuditSink",
    "Receipt",
    "ReceiptAudit",
    "ReceiptRecord",
    "Sender",
    "StudyAssembler",
    "StudyAssembly",
    "StudyMeta",
    "StudyReady",
    "StudyStatus",
    "attach_servers",
    "build_core",
    "complete_study",
    "create_app",
    "ingest_metrics",
    "instance_event_id",
    "storage_sop_classes",
    "study_event_id",
]

_MODULE_OF = {
    "IngestCore": "app",
    "IngestServer": "app",
    "attach_servers": "app",
    "build_core": "app",
    "IngestTopics": "app",
    "create_app": "app",
    "StudyAssembler": "assembly",
    "StudyAssembly": "assembly",
    "StudyMeta": "assembly",
    "StudyReady": "assembly",
    "StudyStatus": "assembly",
    "complete_study": "assembly",
    "study_event_id": "assembly",
    "AuditSink": "audit",
    "AuditUnavailableError": "audit",
    "BlobStoreAuditSink": "audit",
    "JsonLinesAuditSink": "audit",
    "ReceiptAudit": "audit",
    "ReceiptRecord": "audit",
    "AssemblySettings": "config",
    "DicomSettings": "config",
    "IngestSettings": "config",
    "AssemblyStoreUnavailableError": "errors",
    "IngestConfigurationError": "errors",
    "IngestError": "errors",
    "IngestMetrics": "metrics",
    "ingest_metrics": "metrics",
    "Channel": "receipt",
    "InstanceReceiver": "receipt",
    "Receipt": "receipt",
    "Sender": "receipt",
    "instance_event_id": "receipt",
    "storage_sop_classes": "receipt",
    "DicomScp": "scp",
}

# Third-party packages of the ``ingest`` extra; an ImportError naming one means it is missing.
_EXTRA_PACKAGES = frozenset(
    {"pydicom", "pynetdicom", "hl7", "fhir", "fastapi", "starlette", "multipart"}
)


__getattr__ = lazy_exports(
    __name__, globals(), _MODULE_OF, extra="ingest", extra_packages=_EXTRA_PACKAGES
)


def __dir__() -> list[str]:
    return sorted(__all__)
