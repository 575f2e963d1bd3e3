"""Strict reading: every kind of bad input is a specific, value-free error; nothing crashes."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from radstream.common.errors import PoisonEventError
from radstream.dicom.errors import (
    InvalidInstanceError,
    MalformedDicomError,
    MissingFileMetaError,
    NotDicomError,
    OversizedElementError,
    OversizedFileError,
    OversizedPrivateDataError,
    TruncatedDicomError,
    UnsupportedTransferSyntaxError,
)
from radstream.dicom.reader import ReaderLimits, read_instance
from tests.unit.deid.study_builder import (
    PATIENT_NAME,
    PHI_TEXTS,
    bare_dataset_bytes,
    instance_bytes,
    synthetic_instance,
    to_bytes,
)

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
EXPLICIT_LE = b"1.2.840.10008.1.2.1\x00"


def pydicom_file(name: str) -> bytes:
    return (PYDICOM_FILES / name).read_bytes()


def assert_no_phi(error: BaseException) -> None:
    text = str(error)
    for value in PHI_TEXTS:
        assert value not in text


class TestWellFormedInput:
    def test_a_part10_file_is_read_with_every_element_parsed(self) -> None:
        ds = read_instance(instance_bytes())
        assert ds.PatientName == PATIENT_NAME
        assert all(not hasattr(element, "value_tell") for element in ds.iterall())

    @pytest.mark.parametrize(
        "transfer_syntax",
        [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian],
    )
    def test_every_rewritable_transfer_syntax_is_accepted(self, transfer_syntax: str) -> None:
        ds = read_instance(instance_bytes(transfer_syntax=transfer_syntax))
        assert ds.file_meta.TransferSyntaxUID == transfer_syntax
        assert ds.PatientID

    @pytest.mark.parametrize(
        "name",
        ["CT_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "image_dfl.dcm", "SC_rgb_jpeg.dcm"],
    )
    def test_pydicom_sample_files_are_accepted(self, name: str) -> None:
        assert read_instance(pydicom_file(name)).SOPInstanceUID


class TestNotDicom:
    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"hello, this is a text file\n" * 40,
            b"\x89PNG\r\n\x1a\n" + bytes(200),
            random.Random(7).randbytes(4096),
            bytes(128) + b"DIC",
        ],
        ids=["empty", "text", "png", "random", "cut-marker"],
    )
    def test_bytes_that_are_not_dicom_are_not_dicom(self, data: bytes) -> None:
        with pytest.raises((NotDicomError, TruncatedDicomError)):
            read_instance(data)

    def test_not_dicom_is_a_poison_error_so_it_is_never_retried(self) -> None:
        with pytest.raises(PoisonEventError):
            read_instance(b"not dicom at all")


class TestTruncated:
    def test_a_file_cut_inside_a_text_value_is_truncated(self) -> None:
        data = instance_bytes(with_pixels=False)
        cut = data.index(PATIENT_NAME.encode()) + 3
        with pytest.raises(TruncatedDicomError) as caught:
            read_instance(data[:cut])
        assert "declares" in str(caught.value)
        assert_no_phi(caught.value)

    def test_a_file_cut_inside_the_pixel_data_is_truncated(self) -> None:
        data = instance_bytes(rows=32, columns=32)
        with pytest.raises(TruncatedDicomError, match=r"\(7FE0,0010\)"):
            read_instance(data[: len(data) - 100])

    def test_a_file_cut_inside_an_element_header_is_truncated_though_pydicom_accepts_it(
        self,
    ) -> None:
        data = instance_bytes()
        cut = data + b"\x10\x00\x10\x00PN"  # the first 6 bytes of another element's header
        dcmread(io.BytesIO(cut))  # pydicom stops silently at fewer than 8 header bytes
        with pytest.raises(TruncatedDicomError, match="header"):
            read_instance(cut)

    def test_a_file_cut_inside_an_undefined_length_sequence_is_truncated(self) -> None:
        def undefined_length_sequence(ds: Dataset) -> None:
            item = Dataset()
            item.CodeValue = "T-D0050"
            item.CodingSchemeDesignator = "SRT"
            ds.AnatomicRegionSequence = Sequence([item])
            ds["AnatomicRegionSequence"].is_undefined_length = True
            ds.AnatomicRegionSequence.is_undefined_length = True
            item.is_undefined_length_sequence_item = True

        data = instance_bytes(with_pixels=False, customize=undefined_length_sequence)
        delimiter = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
        assert delimiter in data
        with pytest.raises(TruncatedDicomError):
            read_instance(data[: data.index(delimiter)])

    def test_native_pixel_data_shorter_than_rows_times_columns_is_truncated(self) -> None:
        def short_pixels(ds: Dataset) -> None:
            ds.PixelData = bytes(ds.Rows * ds.Columns)  # 8 bits' worth, but 16 allocated

        with pytest.raises(TruncatedDicomError, match="Pixel Data holds"):
            read_instance(instance_bytes(customize=short_pixels))

    @pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
    def test_pydicoms_truncated_samples_are_truncated(self, name: str) -> None:
        pydicom.dcmread(PYDICOM_FILES / name)  # pydicom reads them without complaint
        with pytest.raises(TruncatedDicomError):
            read_instance(pydicom_file(name))

    def test_a_deflated_data_set_cut_short_is_refused(self) -> None:
        data = instance_bytes(transfer_syntax=DeflatedExplicitVRLittleEndian, rows=16)
        with pytest.raises((TruncatedDicomError, MalformedDicomError)):
            read_instance(data[: len(data) - 40])

    def test_cutting_a_file_anywhere_gives_an_invalid_instance_error_or_a_shorter_file(
        self,
    ) -> None:
        data = pydicom_file("CT_small.dcm")
        for cut in range(0, len(data), 311):
            try:
                ds = read_instance(data[:cut])
            except InvalidInstanceError:
                continue
            # Cut exactly between two elements: a shorter but whole data set.
            assert ds.SOPInstanceUID


class TestMissingFileMeta:
    def test_a_bare_data_set_is_refused_not_guessed(self) -> None:
        with pytest.raises(MissingFileMetaError, match="transfer syntax is unknown"):
            read_instance(bare_dataset_bytes(synthetic_instance()))

    @pytest.mark.parametrize("name", ["ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm"])
    def test_pydicoms_samples_without_meta_are_refused(self, name: str) -> None:
        with pytest.raises(MissingFileMetaError):
            read_instance(pydicom_file(name))

    def test_a_meta_header_without_transfer_syntax_is_refused(self) -> None:
        with pytest.raises(MissingFileMetaError, match=r"\(0002,0010\)"):
            read_instance(pydicom_file("meta_missing_tsyntax.dcm"))


class TestTransferSyntax:
    def test_an_unknown_transfer_syntax_uid_is_unsupported(self) -> None:
        data = instance_bytes()
        assert EXPLICIT_LE in data
        unknown = data.replace(EXPLICIT_LE, b"1.2.840.99999.1.2.1\x00", 1)
        with pytest.raises(UnsupportedTransferSyntaxError, match="unknown"):
            read_instance(unknown)

    def test_a_syntax_whose_pixels_live_elsewhere_is_unsupported(self) -> None:
        jpip_referenced = "1.2.840.10008.1.2.4.94"
        data = instance_bytes(with_pixels=False, transfer_syntax=jpip_referenced)
        with pytest.raises(UnsupportedTransferSyntaxError, match="a known syntax"):
            read_instance(data)


class TestSizeLimits:
    def test_a_huge_private_block_is_refused(self) -> None:
        def private_block(ds: Dataset) -> None:
            block = ds.private_block(0x0019, "SYNTH_VENDOR", create=True)
            block.add_new(0x10, "OB", bytes(300_000))

        limits = ReaderLimits(max_private_bytes=256 * 1024)
        with pytest.raises(OversizedPrivateDataError, match="private elements"):
            read_instance(instance_bytes(customize=private_block), limits=limits)

    def test_many_private_elements_count_together(self) -> None:
        def private_blocks(ds: Dataset) -> None:
            block = ds.private_block(0x0029, "SYNTH_VENDOR", create=True)
            for offset in range(0x10, 0x30):
                block.add_new(offset, "OB", bytes(10_000))

        limits = ReaderLimits(max_private_bytes=200_000)
        with pytest.raises(OversizedPrivateDataError):
            read_instance(instance_bytes(customize=private_blocks), limits=limits)

    def test_a_private_block_under_the_limit_is_read(self) -> None:
        def private_block(ds: Dataset) -> None:
            ds.private_block(0x0019, "SYNTH_VENDOR", create=True).add_new(0x10, "OB", bytes(10))

        assert read_instance(instance_bytes(customize=private_block))

    def test_an_oversized_public_element_is_refused(self) -> None:
        def long_comment(ds: Dataset) -> None:
            ds.add_new(0x00204000, "LT", "x" * 5000)  # Image Comments

        with pytest.raises(OversizedElementError, match=r"\(0020,4000\)"):
            read_instance(
                instance_bytes(customize=long_comment), limits=ReaderLimits(max_element_bytes=4096)
            )

    def test_pixel_data_is_bounded_by_the_file_limit_only(self) -> None:
        data = instance_bytes(rows=64, columns=64)  # 8 KiB of pixels
        assert read_instance(data, limits=ReaderLimits(max_element_bytes=4096))

    def test_an_oversized_file_is_refused_before_parsing(self) -> None:
        data = instance_bytes()
        with pytest.raises(OversizedFileError):
            read_instance(data, limits=ReaderLimits(max_file_bytes=len(data) - 1))


class TestMalformed:
    def test_an_instance_without_sop_instance_uid_is_not_storable(self) -> None:
        def drop_uid(ds: Dataset) -> None:
            del ds.SOPInstanceUID

        data = to_bytes(synthetic_instance(customize=drop_uid))
        with pytest.raises(MalformedDicomError, match="SOPInstanceUID"):
            read_instance(data)

    def test_sequences_nested_beyond_reason_are_refused(self) -> None:
        def deep(ds: Dataset) -> None:
            inner = Dataset()
            inner.CodeValue = "X"
            for _ in range(80):
                outer = Dataset()
                outer.ContentSequence = Sequence([inner])
                inner = outer
            ds.ContentSequence = inner.ContentSequence

        with pytest.raises(MalformedDicomError, match="nest"):
            read_instance(instance_bytes(customize=deep))

    def test_an_item_tag_where_an_element_belongs_is_malformed(self) -> None:
        data = instance_bytes(with_pixels=False)
        broken = data + struct.pack("<HHL", 0xFFFE, 0xE000, 0)
        with pytest.raises(MalformedDicomError):
            read_instance(broken)


def test_no_error_message_quotes_a_value_from_the_file() -> None:
    data = instance_bytes(rows=16, columns=16)
    for cut in range(150, len(data), 37):
        try:
            read_instance(data[:cut])
        except InvalidInstanceError as error:
            assert_no_phi(error)
