"""Synthetic DICOM instances for ingest tests, built in code: fake patients only."""

from __future__ import annotations

import io
from dataclasses import dataclass

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

PATIENT_ID = "SYNTH-MRN-70311"
ACCESSION = "SYNTH-ACC-55120"
PATIENT_NAME = "SYNTHETIC^TESTPATIENT"


@dataclass(frozen=True, kw_only=True)
class SyntheticStudy:
    """UIDs of one fake study: a CT series and an MR series."""

    study_uid: str
    ct_series_uid: str
    mr_series_uid: str
    accession: str = ACCESSION
    patient_id: str = PATIENT_ID

    @classmethod
    def new(cls, *, accession: str = ACCESSION, patient_id: str = PATIENT_ID) -> SyntheticStudy:
        """A study with fresh random UIDs."""
        return cls(
            study_uid=_uid(),
            ct_series_uid=_uid(),
            mr_series_uid=_uid(),
            accession=accession,
            patient_id=patient_id,
        )

    def sop_uid(self, modality: str, number: int) -> str:
        """The SOP Instance UID of instance ``number`` of the CT or MR series."""
        series = self.ct_series_uid if modality == "CT" else self.mr_series_uid
        return f"{series}.{number}"

    def dataset(
        self, modality: str = "CT", number: int = 1, *, sop_class: str | None = None
    ) -> Dataset:
        """A small image of this study (8x8, 16-bit), CT or MR, with File Meta Information."""
        ds = Dataset()
        ds.SOPClassUID = sop_class or (CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE)
        ds.SOPInstanceUID = self.sop_uid(modality, number)
        ds.StudyInstanceUID = self.study_uid
        ds.SeriesInstanceUID = self.ct_series_uid if modality == "CT" else self.mr_series_uid
        ds.Modality = modality
        ds.PatientName = PATIENT_NAME
        ds.PatientID = self.patient_id
        ds.AccessionNumber = self.accession
        ds.StudyDate = "20240105"
        ds.SeriesNumber = 1 if modality == "CT" else 2
        ds.InstanceNumber = number
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 8
        ds.Columns = 8
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = bytes(range(128))
        return with_file_meta(ds)

    def instance(
        self, modality: str = "CT", number: int = 1, *, sop_class: str | None = None
    ) -> bytes:
        """The Part 10 bytes of :meth:`dataset`."""
        return to_part10(self.dataset(modality, number, sop_class=sop_class))


def _uid() -> str:
    # Short enough that "<series>.<number>" stays within the 64 characters of a UI value.
    return generate_uid(prefix="2.25.")[:48]


def with_file_meta(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """Give ``ds`` the File Meta Information a sender needs to pick a presentation context."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def to_part10(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """Encode ``ds`` as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    dcmwrite(buffer, with_file_meta(ds, transfer_syntax), enforce_file_format=True)
    return buffer.getvalue()
