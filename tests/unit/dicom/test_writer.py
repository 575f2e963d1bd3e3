"""radstream's writer writes, byte for byte, the file pydicom's ``dcmwrite`` writes.

The de-identifier writes every released instance with :func:`encode_part10` instead of
``dcmwrite(..., enforce_file_format=True)``; it must be a speed-up and nothing else. Checked on
every file pydicom and deid-data ship that the strict reader accepts -- as read (raw elements
carried over), fully converted, and de-identified by the Basic Profile (new strings, numbers,
sequences and code items beside raw elements) -- and on the cases it hands to ``dcmwrite``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmwrite
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from radstream.deid.phi import PhiValues
from radstream.deid.profile import DeidKeys, DeidProfile, apply_profile
from radstream.dicom import writer
from radstream.dicom.reader import parse_dataset, read_instance
from radstream.dicom.writer import encode_part10
from tests.unit.deid.study_builder import (
    TEST_KEYS_SECRET,
    instance_bytes,
    shared_text_cleaner,
    synthetic_instance,
    to_bytes,
)
from tests.unit.dicom.sample_files import READABLE


def _dcmwrite(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def _both(make: object) -> tuple[bytes, bytes]:
    """``encode_part10`` and ``dcmwrite`` on two copies made alike (dcmwrite alters its input)."""
    assert callable(make)
    return encode_part10(make()), _dcmwrite(make())


@pytest.fixture
def handed_to_dcmwrite(monkeypatch: pytest.MonkeyPatch) -> list[Dataset]:
    """The data sets :func:`encode_part10` hands to ``dcmwrite`` (which still writes them)."""
    handed: list[Dataset] = []

    def recording(fp: object, dataset: Dataset, **kwargs: object) -> None:
        handed.append(dataset)
        dcmwrite(fp, dataset, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "dcmwrite", recording)
    return handed


def _complete(dataset: Dataset) -> Dataset:
    """As the de-identifier's output: a full meta header, Pixel Data's VR resolved."""
    dataset["PixelData"].VR = "OW"
    dataset.file_meta.FileMetaInformationVersion = b"\x00\x01"
    dataset.file_meta.ImplementationVersionName = "RADSTREAM_TEST"
    return dataset


def _deidentified(data: bytes) -> Dataset:
    result = apply_profile(
        parse_dataset(data, convert=False),
        DeidProfile(),
        DeidKeys.from_secret(TEST_KEYS_SECRET),
        clean_text=shared_text_cleaner(),
        phi=PhiValues(),
    )
    return result.dataset


def _converted(data: bytes) -> Dataset:
    return read_instance(data)


def test_the_sample_files_are_many_and_varied() -> None:
    assert len(READABLE) >= 90
    syntaxes = {str(read_instance(p.read_bytes()).file_meta.TransferSyntaxUID) for p in READABLE}
    assert {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian} <= syntaxes


@pytest.mark.parametrize("path", READABLE, ids=lambda path: path.name)
def test_a_de_identified_sample_file_is_written_as_dcmwrite_writes_it(path: Path) -> None:
    data = path.read_bytes()
    ours, theirs = _both(lambda: _deidentified(data))
    assert ours == theirs


def test_most_sample_files_are_written_by_radstream_s_writer_itself(
    handed_to_dcmwrite: list[Dataset],
) -> None:
    # dcmwrite writes the big-endian and deflated ones, and those pydicom must convert: data
    # sets read implicitly inside an explicit-VR file (the first element decides, per item).
    for path in READABLE:
        encode_part10(_deidentified(path.read_bytes()))
    assert len(handed_to_dcmwrite) <= len(READABLE) // 5


@pytest.mark.parametrize("path", READABLE, ids=lambda path: path.name)
def test_a_converted_sample_file_is_written_as_dcmwrite_writes_it(path: Path) -> None:
    data = path.read_bytes()
    ours, theirs = _both(lambda: _converted(data))
    assert ours == theirs


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_a_synthetic_instance_is_written_alike_in_each_syntax(
    syntax: str, handed_to_dcmwrite: list[Dataset]
) -> None:
    data = instance_bytes(transfer_syntax=syntax)
    ours, theirs = _both(lambda: _deidentified(data))
    assert ours == theirs
    assert ours.startswith(b"\x00" * 128 + b"DICM")
    assert len(handed_to_dcmwrite) == (syntax == ExplicitVRBigEndian)


def test_raw_elements_are_copied_as_read(handed_to_dcmwrite: list[Dataset]) -> None:
    data = to_bytes(_complete(synthetic_instance()))
    dataset = parse_dataset(data, convert=False)
    assert dataset.get_item(0x00100010).__class__.__name__ == "RawDataElement"
    written = encode_part10(dataset)
    assert written == _dcmwrite(parse_dataset(data, convert=False))
    # The pixel data is carried over verbatim, not re-encoded.
    assert dataset.get_item(0x7FE00010).value in written
    assert handed_to_dcmwrite == []


def test_text_outside_the_character_set_is_written_as_pydicom_writes_it(
    handed_to_dcmwrite: list[Dataset],
) -> None:
    def make() -> Dataset:
        dataset = _complete(synthetic_instance())
        dataset.SpecificCharacterSet = "ISO_IR 100"
        dataset.StudyDescription = "\u4e2d\u6587"  # not in Latin-1: pydicom replaces it
        return dataset

    ours, theirs = _both(make)
    assert ours == theirs
    assert handed_to_dcmwrite == []


def test_a_code_string_pydicom_cannot_encode_is_refused_as_dcmwrite_refuses_it() -> None:
    def make() -> Dataset:
        dataset = _complete(synthetic_instance())
        dataset.Modality = "\u4e2d"  # CS is ASCII, written as Latin-1
        return dataset

    # pydicom's own wrapper, which adds the tag, fails for this error and raises a TypeError.
    with pytest.raises((UnicodeEncodeError, TypeError)):
        _dcmwrite(make())
    with pytest.raises(UnicodeEncodeError):
        encode_part10(make())


def test_sequences_nest_with_their_items_lengths(handed_to_dcmwrite: list[Dataset]) -> None:
    def make() -> Dataset:
        dataset = _complete(synthetic_instance())
        inner = Dataset()
        inner.CodeValue, inner.CodingSchemeDesignator = "113100", "DCM"
        outer = Dataset()
        outer.ConceptNameCodeSequence = Sequence([inner])
        outer.TextValue = "odd"
        dataset.ContentSequence = Sequence([outer, Dataset()])
        return dataset

    ours, theirs = _both(make)
    assert ours == theirs
    assert handed_to_dcmwrite == []


def test_a_file_it_does_not_handle_is_written_by_dcmwrite(
    handed_to_dcmwrite: list[Dataset],
) -> None:
    data = to_bytes(_complete(synthetic_instance(transfer_syntax=ExplicitVRBigEndian)))
    dataset = parse_dataset(data, convert=False)
    assert encode_part10(dataset) == _dcmwrite(parse_dataset(data, convert=False))
    assert handed_to_dcmwrite == [dataset]
