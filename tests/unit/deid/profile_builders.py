"""Synthetic instances (fake PHI only) and helpers shared by the profile engine's tests."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator

from pydicom import dcmread, dcmwrite
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import (
    ComprehensiveSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    SegmentationStorage,
)

from radstream.deid.phi import PhiValue, PhiValues
from radstream.deid.profile import (
    DeidKeys,
    DeidProfile,
    ProfileOption,
    ProfileResult,
    apply_profile,
)

KEYS = DeidKeys.from_secret(b"unit-test-secret-not-a-real-key!")
UID_ROOT = "1.2.826.0.1.3680043.10.1234"  # a private-looking root for synthetic UIDs

PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "MRN0042"
ACCESSION = "ACC8800123"
INSTITUTION = "Saint Fictional Hospital"


def uid(suffix: str) -> str:
    """A synthetic instance UID."""
    return f"{UID_ROOT}.{suffix}"


def item(**attributes: object) -> Dataset:
    """A sequence item with the given keyword attributes."""
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def instance(
    sop_class: str = CTImageStorage,
    *,
    sop_uid: str | None = None,
    study_uid: str = uid("1"),
    series_uid: str = uid("1.1"),
    patient_id: str = PATIENT_ID,
    patient_name: str = PATIENT_NAME,
    study_date: str = "20240115",
    **extra: object,
) -> Dataset:
    """An instance with the usual identifying attributes (CT unless told otherwise)."""
    sop_uid = sop_uid or uid("1.1.1")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.SourceApplicationEntityTitle = "CT_SCANNER_7"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = uid("9")
    ds.Modality = "CT"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "054Y"
    ds.PatientWeight = "70"
    ds.PatientAddress = "1 Imaginary Lane, Nowhere"
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.SeriesDate = study_date
    ds.AcquisitionDate = study_date
    ds.AcquisitionTime = "101530"
    ds.ContentDate = study_date
    ds.ContentTime = "101600"
    ds.AccessionNumber = ACCESSION
    ds.ReferringPhysicianName = "SMITH^JOHN"
    ds.StudyID = "S1"
    ds.StudyDescription = f"CT chest for {patient_name}"
    ds.SeriesDescription = "AXIAL 5MM"
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = "2 Fictional Road"
    ds.StationName = "CTSTATION1"
    ds.StationAETitle = "CTAE01"
    ds.DeviceSerialNumber = "SN-4711"
    ds.OperatorsName = "TECH^TOM"
    ds.Manufacturer = "ACME"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = b"\x00\x01" * 4
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def pet_instance(**extra: object) -> Dataset:
    """A PET image instance."""
    ds = instance(PositronEmissionTomographyImageStorage, **extra)
    ds.Modality = "PT"
    return ds


def sr_instance(**extra: object) -> Dataset:
    """A Comprehensive SR with a text and a person name in its content tree."""
    ds = instance(ComprehensiveSRStorage, **extra)
    ds.Modality = "SR"
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelData"):
        delattr(ds, keyword)
    ds.ValueType = "CONTAINER"
    ds.ContentSequence = [
        item(
            RelationshipType="CONTAINS",
            ValueType="TEXT",
            TextValue=f"Findings discussed with {PATIENT_NAME}",
            ConceptNameCodeSequence=[
                item(CodeValue="121071", CodingSchemeDesignator="DCM", CodeMeaning="Finding")
            ],
        ),
        item(RelationshipType="CONTAINS", ValueType="PNAME", PersonName="RADIOLOGIST^RITA"),
    ]
    return ds


def segmentation_instance(**extra: object) -> Dataset:
    """A Segmentation instance (Enhanced General Equipment: Device Serial Number is Type 1)."""
    ds = instance(SegmentationStorage, **extra)
    ds.Modality = "SEG"
    ds.ContentCreatorName = "SEGMENTER^SAM"
    return ds


def as_read(ds: Dataset) -> Dataset:
    """The dataset as pydicom reads it from a file (raw elements), like production input."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def written(ds: Dataset) -> Dataset:
    """Write a de-identified dataset as a DICOM file and read it back, fully decoded."""
    back = as_read(ds)
    for elem in back.iterall():
        _ = elem.value
    return back


def phi_of(*texts: str) -> PhiValues:
    """PHI values a test plants, for the cleaner to find."""
    return PhiValues(values=tuple(PhiValue(kind="PatientName", text=text) for text in texts))


def deleting_cleaner(text: str, phi: PhiValues) -> str:
    """A stand-in for the Presidio cleaner: deletes every known PHI value (any case)."""
    for known in sorted(phi.texts(), key=len, reverse=True):
        if known:
            text = re.sub(re.escape(known), "", text, flags=re.IGNORECASE)
    return text


def deidentify(
    ds: Dataset,
    *options: ProfileOption,
    keys: DeidKeys = KEYS,
    phi: PhiValues | None = None,
    profile: DeidProfile | None = None,
) -> ProfileResult:
    """Apply the profile (with options) the way the pipeline does, to the as-read dataset."""
    profile = profile or DeidProfile(options=frozenset(options))
    return apply_profile(
        as_read(ds),
        profile,
        keys,
        clean_text=deleting_cleaner,
        phi=phi or phi_of(PATIENT_NAME, PATIENT_ID, ACCESSION, INSTITUTION),
    )


def all_strings(ds: Dataset) -> Iterator[str]:
    """Every value of every element, sequences and file meta included, as text."""
    datasets: Iterable[Dataset] = [ds, getattr(ds, "file_meta", Dataset())]
    for top in datasets:
        for elem in top.iterall():
            value = elem.value
            if isinstance(value, Sequence):
                continue
            values = value if isinstance(value, MultiValue | list | tuple) else [value]
            for single in values:
                if isinstance(single, bytes | bytearray):
                    yield single.decode("latin-1")
                else:
                    yield str(single)


def actions_for(result: ProfileResult, path: str) -> list[str]:
    """The actions recorded for an element path, e.g. ``"(0010,0010)"``."""
    return [action.action for action in result.actions if action.path == path]


def element(ds: Dataset, tag: int) -> DataElement | None:
    """The element or None."""
    return ds.get(tag)
