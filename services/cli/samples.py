"""Synthetic sample events for ``radstream demo``: no real patient, ever.

Until the ingest service lands, the demo publishes what ingest would: a study whose instances
sit in the PHI blob store (claim check), a radiology report, and two clinical observations.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from radstream.common.blobstore import BlobStore
from radstream.common.topics import (
    CLINICAL_OBSERVATION_V1,
    REPORT_RECEIVED_V1,
    STUDY_RECEIVED_V1,
    Topic,
)
from radstream.contracts.v1 import clinical_pb2, common_pb2, imaging_pb2, reports_pb2

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
STUDY_UID = "2.25.112233445566778899001122334455667788"
PATIENT = "SYNTH-0001"
ACCESSION = "SYNTH-ACC-1"
REPORT_TEXT = (
    "CT ABDOMEN WITH CONTRAST. Liver: normal size, no focal lesion. Pancreas: 2.1 cm "
    "hypodense mass in the head. Spleen: unremarkable. IMPRESSION: pancreatic head mass."
)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


async def sample_events(phi_store: BlobStore) -> list[tuple[Topic, Message]]:
    """Build the demo's events; instance payloads go to the PHI store, events carry refs."""
    instances = []
    for number in range(1, 4):
        payload = f"synthetic CT slice {number} of demo study (placeholder, not DICOM)".encode()
        ref = await phi_store.put(payload)
        instances.append(
            common_pb2.InstanceRef(
                study_instance_uid=STUDY_UID,
                series_instance_uid=f"{STUDY_UID}.1",
                sop_instance_uid=f"{STUDY_UID}.1.{number}",
                sop_class_uid=CT_IMAGE_STORAGE,
                transfer_syntax_uid=EXPLICIT_VR_LITTLE_ENDIAN,
                modality="CT",
                blob=common_pb2.BlobRef(
                    uri=ref.uri, sha256=ref.sha256, size=ref.size, media_type=ref.media_type
                ),
            )
        )
    now = _now()
    study = imaging_pb2.StudyReceived(
        study_instance_uid=STUDY_UID,
        accession_number=ACCESSION,
        patient_id=PATIENT,
        instances=instances,
        revision=0,
        first_received_at=now,
        last_received_at=now,
    )
    report = reports_pb2.ReportReceived(
        report_id="SYNTH-RPT-1",
        accession_number=ACCESSION,
        patient_id=PATIENT,
        modality="CT",
        text=REPORT_TEXT,
        source=reports_pb2.ReportReceived.SOURCE_HL7_ORU,
        observed_at=now,
    )
    weight = clinical_pb2.ClinicalObservation(
        patient_id=PATIENT,
        observation_id="SYNTH-OBS-1",
        code=clinical_pb2.Code(system="http://loinc.org", code="29463-7", display="Body weight"),
        quantity=clinical_pb2.Quantity(value=61.5, unit="kg"),
        effective_time=now,
        source=clinical_pb2.ClinicalObservation.SOURCE_FHIR,
    )
    albumin = clinical_pb2.ClinicalObservation(
        patient_id=PATIENT,
        observation_id="SYNTH-OBS-2",
        code=clinical_pb2.Code(system="http://loinc.org", code="1751-7", display="Albumin"),
        quantity=clinical_pb2.Quantity(value=3.1, unit="g/dL"),
        effective_time=now,
        source=clinical_pb2.ClinicalObservation.SOURCE_FHIR,
    )
    return [
        (STUDY_RECEIVED_V1, study),
        (REPORT_RECEIVED_V1, report),
        (CLINICAL_OBSERVATION_V1, weight),
        (CLINICAL_OBSERVATION_V1, albumin),
    ]
