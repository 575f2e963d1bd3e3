"""Synthetic sample events for ``radstream demo``: no real patient, ever.

Until the ingest service lands, the demo publishes what ingest would: a study whose synthetic
DICOM instances sit in the PHI blob store (claim check), a radiology report, and two clinical
observations.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
# A fresh study per run: ingest remembers what it received, so a repeated study would be a
# duplicate (ignored idempotently) and the demo would have nothing new to show.
STUDY_UID = f"2.25.{uuid.uuid4().int}"
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
    """A DICOM P10 instance of the fake demo patient, with identifying header values.

    CT instances carry a small 16-bit test pattern; the ultrasound instance an 8-bit frame
    with the patient's name, ID and birth date burned into its top band beside settings that
    are not PHI, as ultrasound machines write them (no BurnedInAnnotation flag).
    """
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
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    if modality == "US":
        frame = ultrasound_frame()
        ds.Rows, ds.Columns = frame.shape
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = frame.tobytes()
    else:
        ds.Rows = ds.Columns = 16
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelData = (np.arange(256, dtype=np.uint16) * number).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


# What the demo's ultrasound machine burns into the top band: PHI on the first line, settings
# (not PHI, kept) below. Same values as the header, as on real machines.
US_BANNER_PHI = ("SYNTHETIC, DEMO", "ID SYNTH-0001", "DOB 02/14/1958", "11/02/2026")
US_BANNER_KEPT = ("Abd General", "C5-1", "FR 24Hz", "PORTABLE")


def ultrasound_frame() -> npt.NDArray[np.uint8]:
    """A 640x480 grayscale ultrasound-like frame: a speckled sector and the burned-in banner."""
    import numpy as np  # noqa: PLC0415
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    height, width = 480, 640
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = np.arctan2(xx - width / 2, yy - 40.0)
    radius = np.hypot(xx - width / 2, yy - 40.0)
    sector = (np.abs(angle) < 0.6) & (radius > 60) & (radius < 440)
    pixels = np.zeros((height, width), dtype=np.uint8)
    pixels[sector] = rng.integers(20, 140, size=int(sector.sum()), dtype=np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=16)
    x = 8
    for text in US_BANNER_PHI:
        draw.text((x, 6), text, fill=235, font=font)
        x += int(draw.textlength(text, font=font)) + 28
    for row, text in enumerate(US_BANNER_KEPT):
        draw.text((8, 40 + 22 * row), text, fill=200, font=font)
    return np.asarray(image, dtype=np.uint8)


def synthetic_study() -> list[bytes]:
    """The demo study as DICOM P10 files, one per instance.

    Two CT instances, which de-identification releases, and one ultrasound instance without a
    BurnedInAnnotation flag whose pixels carry the patient's name, ID and birth date: the pixel
    stage finds the text, fills the PHI boxes, keeps the settings, verifies and releases it (or
    holds it for review, with its reasons, when it is unsure).
    """
    kinds = [("CT", CT_IMAGE_STORAGE), ("CT", CT_IMAGE_STORAGE), ("US", US_IMAGE_STORAGE)]
    return [
        synthetic_instance(number, modality=modality, sop_class=sop_class)
        for number, (modality, sop_class) in enumerate(kinds, start=1)
    ]


def oru_r01() -> bytes:
    """The demo report as an HL7 v2.5 ORU^R01 message, segments carriage-return separated."""
    segments = [
        "MSH|^~\\&|SYNTH_RIS|SYNTH_HOSP|RADSTREAM|RADSTREAM|20261102093000||ORU^R01^ORU_R01|"
        "SYNTH-MSG-1|P|2.5",
        f"PID|1||{PATIENT}^^^SYNTH||{PATIENT_NAME}||19580214|M",
        f"OBR|1|SYNTH-ORD-1|{ACCESSION}|CTABD^CT ABDOMEN|||20261102093000|||||||||||||||||CT|F",
        f"OBX|1|TX|REPORT^Report||{REPORT_TEXT}||||||F",
    ]
    return "\r".join(segments).encode()


def fhir_observations() -> list[dict[str, object]]:
    """The demo's labs and vitals as FHIR R4 Observation resources."""
    return [
        _observation("SYNTH-OBS-1", "29463-7", "Body weight", 61.5, "kg"),
        _observation("SYNTH-OBS-2", "1751-7", "Albumin", 3.1, "g/dL"),
    ]


def _observation(
    identifier: str, code: str, display: str, value: float, unit: str
) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:radstream:demo:lab", "value": identifier}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": "2026-11-02T09:30:00Z",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }
