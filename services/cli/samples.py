"""Synthetic sample events for ``radstream demo``: no real patient, ever.

Until the ingest service lands, the demo publishes what ingest would: a study whose synthetic
DICOM instances sit in the PHI blob store (claim check), a radiology report, and two clinical
observations.
"""

from __future__ import annotations

import io
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
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
STUDY_UID = "2.25.112233445566778899001122334455667788"
PATIENT = "SYNTH-0001"
PATIENT_NAME = "SYNTHETIC^DEMO"
ACCESSION = "SYNTH-ACC-1"
REPORT_TEXT = (
    "CT ABDOMEN WITH CONTRAST. Liver: normal size, no focal lesion. Pancreas: 2.1 cm "
    "hypodense mass in the head. Spleen: unremarkable. IMPRESSION: pancreatic head mass."
)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def synthetic_instance(number: int, *, modality: str, sop_class: str) -> bytes:
    """A small DICOM P10 instance of the fake demo patient, with identifying header values."""
    # Imported here: pydicom and numpy come with the deid extra, the CLI must start without it.
    import numpy as np  # noqa: PLC0415
    from pydicom import dcmwrite  # noqa: PLC0415
    from pydicom.dataset import Dataset, FileMetaDataset  # noqa: PLC0415
    from pydicom.uid import UID, ExplicitVRLittleEndian  # noqa: PLC0415

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{STUDY_UID}.{number}.1"
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = f"{STUDY_UID}.{number}"
    ds.Modality = modality
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20261102"
    ds.StudyTime = "093000"
    ds.AccessionNumber = ACCESSION
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT
    ds.PatientBirthDate = "19580214"
    ds.PatientSex = "M"
    ds.InstitutionName = "Synthetic General Hospital"
    ds.ReferringPhysicianName = "ROE^RICHARD"
    ds.StudyDescription = "CT ABDOMEN W CONTRAST"
    ds.StudyID = "1"
    ds.SeriesNumber = number
    ds.InstanceNumber = 1
    ds.Manufacturer = "SynthCorp"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(256, dtype=np.uint16) * number).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


async def sample_events(phi_store: BlobStore) -> list[tuple[Topic, Message]]:
    """Build the demo's events; instances go to the PHI store, events carry refs (claim check).

    The study has two CT instances, which de-identification releases, and one ultrasound
    instance without a BurnedInAnnotation flag, which it holds for review.
    """
    instances = []
    for number, (modality, sop_class) in enumerate(
        [("CT", CT_IMAGE_STORAGE), ("CT", CT_IMAGE_STORAGE), ("US", US_IMAGE_STORAGE)], start=1
    ):
        payload = synthetic_instance(number, modality=modality, sop_class=sop_class)
        ref = await phi_store.put(payload, media_type="application/dicom")
        instances.append(
            common_pb2.InstanceRef(
                study_instance_uid=STUDY_UID,
                series_instance_uid=f"{STUDY_UID}.{number}",
                sop_instance_uid=f"{STUDY_UID}.{number}.1",
                sop_class_uid=sop_class,
                transfer_syntax_uid=EXPLICIT_VR_LITTLE_ENDIAN,
                modality=modality,
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
