"""radstream's own header codec reads every value pydicom reads; it refuses what the reader does.

The verifier searches the de-identified output through this codec instead of a second pydicom
parse, so the two must agree value for value: a value the codec missed would be a value never
searched. The agreement is checked over every file pydicom and deid-data ship that the strict
reader accepts (charsets, implicit and big-endian files, nested and private sequences,
encapsulated pixels), and over synthetic instances in every transfer syntax radstream writes.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from radstream.deid.header import HeaderValue, header_values, raw_header_values
from radstream.dicom.errors import InvalidInstanceError, TruncatedDicomError
from radstream.dicom.raw_header import read_raw_instance
from radstream.dicom.reader import read_instance
from tests.unit.deid.study_builder import PATIENT_NAME, instance_bytes, synthetic_instance, to_bytes
from tests.unit.dicom.sample_files import READABLE, SAMPLE_FILES

Value = tuple[str, str, str, tuple[str, ...], tuple[str, ...], bool]


def _values(items: list[HeaderValue]) -> set[Value]:
    """What the verifier searches: where, what, and the texts (padding is never searched)."""
    return {
        (item.path, item.keyword, str(item.vr), _texts(item), item.parents, item.binary)
        for item in items
    }


def _texts(item: HeaderValue) -> tuple[str, ...]:
    return tuple(text.strip(" \x00") for text in item.texts)


def _both(data: bytes) -> tuple[set[Value], set[Value]]:
    by_pydicom = read_instance(data)
    by_codec = read_raw_instance(data)
    return (
        _values(list(header_values(by_pydicom, include_meta=True, numbers=True))),
        _values(list(raw_header_values(by_codec, include_meta=True, numbers=True))),
    )


class TestAgreementWithPydicom:
    def test_the_sample_files_are_many_and_varied(self) -> None:
        assert len(READABLE) >= 100
        names = {path.name for path in READABLE}
        assert {"chrX1.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"} <= names
        assert {"GREYSCALE_IMAGE.dcm", "JPEG2000.dcm", "rtdose_rle.dcm"} <= names

    @pytest.mark.parametrize("path", READABLE, ids=lambda path: path.name)
    def test_every_value_of_every_sample_file_is_read_alike(self, path: Path) -> None:
        by_pydicom, by_codec = _both(path.read_bytes())
        assert by_codec == by_pydicom

    @pytest.mark.parametrize(
        "syntax",
        [
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
            ExplicitVRBigEndian,
            DeflatedExplicitVRLittleEndian,
        ],
    )
    def test_a_synthetic_instance_in_each_syntax_is_read_alike(self, syntax: str) -> None:
        def nest(ds: Dataset) -> None:
            item = Dataset()
            item.PatientName = PATIENT_NAME
            item.ReferencedSOPInstanceUID = "1.2.3.4"
            ds.ReferencedStudySequence = Sequence([item, Dataset()])
            ds.add_new(0x00291010, "LO", "SYNTHCORP PRIVATE")
            ds.add_new(0x00291011, "UT", "a note that names " + PATIENT_NAME)

        data = instance_bytes(transfer_syntax=syntax, customize=nest)
        by_pydicom, by_codec = _both(data)
        assert by_codec == by_pydicom
        assert any(PATIENT_NAME in text for *_, texts, _, _ in by_codec for text in texts)


class TestWhatTheCodecGives:
    def test_the_pixel_data_is_the_bytes_pydicom_reads(self) -> None:
        data = instance_bytes(rows=16, columns=16)
        assert read_raw_instance(data).pixel_data == read_instance(data).PixelData

    def test_encapsulated_pixel_data_is_its_items_as_pydicom_reads_them(self) -> None:
        data = (Path(pydicom.__file__).parent / "data" / "test_files" / "JPEG2000.dcm").read_bytes()
        assert read_raw_instance(data).pixel_data == dcmread(io.BytesIO(data)).PixelData

    def test_top_level_values_are_at_hand(self) -> None:
        ds = synthetic_instance(rows=12, columns=10)
        raw = read_raw_instance(to_bytes(ds))
        assert raw.text(0x00080018) == ds.SOPInstanceUID
        assert raw.number(0x00280010) == 12
        assert raw.number(0x00280011) == 10
        assert raw.has(0x7FE00010)
        assert not raw.has(0x00880200)

    def test_pydicom_parses_it_only_when_asked(self) -> None:
        ds = synthetic_instance()
        raw = read_raw_instance(to_bytes(ds))
        assert "parsed" not in vars(raw)
        assert raw.parsed.SOPInstanceUID == ds.SOPInstanceUID


class TestRefusals:
    def test_a_cut_off_file_is_refused_as_the_reader_refuses_it(self) -> None:
        data = instance_bytes(rows=16, columns=16)
        with pytest.raises(TruncatedDicomError):
            read_raw_instance(data[:-10])

    @pytest.mark.parametrize(
        "path", sorted(set(SAMPLE_FILES) - set(READABLE)), ids=lambda path: path.name
    )
    def test_what_the_reader_refuses_the_codec_refuses_or_pydicom_would(self, path: Path) -> None:
        # The reader also refuses files pydicom cannot convert (a value, not the structure);
        # the codec checks the structure, so either it refuses too or pydicom's parse does.
        data = path.read_bytes()
        try:
            raw = read_raw_instance(data)
        except InvalidInstanceError:
            return
        with pytest.raises(InvalidInstanceError):
            raw.parsed  # noqa: B018 -- the parse is the check
