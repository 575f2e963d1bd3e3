"""Synthetic DICOM instances built in code: fake patients only, never real PHI."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from radstream.deid.clean import PresidioTextCleaner, build_text_cleaner

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"

STUDY_UID = "2.25.301122334455667788990011223344556677"
SERIES_UID = "2.25.301122334455667788990011223344556678"

PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "SYNTH-MRN-48213"
BIRTH_DATE = "19610317"
ACCESSION = "SYNTH-ACC-90417"
INSTITUTION = "Synthetic General Hospital"
REFERRING = "ROE^RICHARD^^DR"

PHI_TEXTS = (PATIENT_NAME, PATIENT_ID, BIRTH_DATE, ACCESSION, INSTITUTION, REFERRING)


def synthetic_instance(
    *,
    number: int = 1,
    modality: str = "CT",
    sop_class: str = CT_IMAGE_STORAGE,
    burned_in: str | None = None,
    rows: int = 8,
    columns: int = 8,
    transfer_syntax: str = ExplicitVRLittleEndian,
    with_pixels: bool = True,
    customize: Callable[[Dataset], None] | None = None,
) -> Dataset:
    """A small instance of a fake patient, with the usual identifying attributes filled in."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{SERIES_UID}.{number}"
    ds.StudyDate = "20240105"
    ds.SeriesDate = "20240105"
    ds.ContentDate = "20240105"
    ds.StudyTime = "101500"
    ds.ContentTime = "101512"
    ds.AccessionNumber = ACCESSION
    ds.Modality = modality
    ds.Manufacturer = "SynthCorp"
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = REFERRING
    ds.StationName = "SYNTHSTATION1"
    ds.StudyDescription = "CT ABDOMEN"
    ds.SeriesDescription = "AXIAL 5MM"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientSex = "F"
    ds.PatientAge = "062Y"
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.StudyID = "SYN1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.FrameOfReferenceUID = f"{STUDY_UID}.9"
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = sop_class
    referenced.ReferencedSOPInstanceUID = f"{SERIES_UID}.{number + 1000}"
    ds.ReferencedImageSequence = Sequence([referenced])
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    if with_pixels:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = bytes((i * 7) % 251 for i in range(rows * columns * 2))
    if customize is not None:
        customize(ds)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = f"{SERIES_UID}.{number}"
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """Write ``ds`` as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def instance_bytes(**kwargs: object) -> bytes:
    """A synthetic instance as Part 10 bytes (see :func:`synthetic_instance`)."""
    return to_bytes(synthetic_instance(**kwargs))  # type: ignore[arg-type]


def with_unknown_elements(ds: Dataset) -> None:
    """Plant text about someone in elements no data dictionary knows, top level and in an item.

    Nothing in the instance's own values matches it, so the verifier cannot find it: only
    removing unknown elements keeps it out of a release.
    """
    ds.add_new(0x44440010, "LO", "SMITH^JOHN MRN 12345678")
    ds.add_new(0x00089999, "UT", "Patient John Smith seen at St Mary hospital")
    region = Dataset()
    region.CodeValue = "T-D4000"
    region.CodingSchemeDesignator = "SRT"
    region.CodeMeaning = "Abdomen"
    region.add_new(0x44440012, "LO", "SMITH^JOHN")
    ds.AnatomicRegionSequence = Sequence([region])


def assert_no_unknown_element_in(released: bytes) -> None:
    """Neither the elements :func:`with_unknown_elements` planted nor any of their text is left."""
    for fragment in (b"SMITH", b"Smith", b"12345678", b"St Mary"):
        assert fragment not in released
    ds = dcmread(io.BytesIO(released))
    assert 0x44440010 not in ds
    assert 0x00089999 not in ds
    assert 0x44440012 not in ds.AnatomicRegionSequence[0]


def bare_dataset_bytes(ds: Dataset) -> bytes:
    """``ds`` without preamble or File Meta Information, implicit VR little endian."""
    bare = Dataset()
    bare.update(ds)  # the elements only: no file_meta, no preamble
    buffer = io.BytesIO()
    dcmwrite(buffer, bare, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


@functools.cache
def shared_text_cleaner() -> PresidioTextCleaner:
    """The Presidio cleaner, loaded once per test process (spaCy takes a second or two)."""
    return build_text_cleaner()


TEST_KEYS_SECRET = b"radstream-unit-test-key-not-a-secret-0001"
