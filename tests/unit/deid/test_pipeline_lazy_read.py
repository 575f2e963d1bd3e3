"""The pipeline's lazy read decides every instance exactly as the strict read does.

``deidentify_instance`` reads with :func:`~radstream.dicom.raw_header.read_instance_lazily`:
the structure walked strictly, every value proved convertible and read by radstream's codec for
the PHI collection, pydicom converting each element when first used. It is a speed-up and must
be nothing else: for every sample file pydicom and deid-data ship, and for the inputs the fuzzer
found, the outcome -- status, reasons, error, released or held bytes -- equals the one the
strict read (every element converted by pydicom first, PHI collected from pydicom's values)
gives.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from radstream.deid import pipeline
from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY
from radstream.deid.clean import PresidioTextCleaner
from radstream.deid.pipeline import InstanceOutcome, deidentify_instance
from radstream.deid.profile import DeidKeys, DeidProfile
from radstream.dicom.errors import MalformedDicomError
from radstream.dicom.raw_header import read_instance_lazily
from radstream.dicom.reader import DEFAULT_READER_LIMITS, ReaderLimits, read_instance
from tests.unit.deid.study_builder import (
    PATIENT_NAME,
    TEST_KEYS_SECRET,
    instance_bytes,
    shared_text_cleaner,
    with_unknown_elements,
)
from tests.unit.dicom.sample_files import SAMPLE_FILES

KEYS = DeidKeys.from_secret(TEST_KEYS_SECRET)


@pytest.fixture(scope="module")
def cleaner() -> PresidioTextCleaner:
    return shared_text_cleaner()


def _strict_read(
    data: bytes, limits: ReaderLimits = DEFAULT_READER_LIMITS
) -> tuple[Dataset, Dataset]:
    dataset = read_instance(data, limits=limits)
    return dataset, dataset


def _run(data: bytes, cleaner: PresidioTextCleaner) -> InstanceOutcome:
    return deidentify_instance(
        data,
        profile=DeidProfile(),
        keys=KEYS,
        clean_text=cleaner,
        pixel_policy=DEFAULT_PIXEL_POLICY,
    )


def _decision(outcome: InstanceOutcome) -> tuple[object, ...]:
    error = outcome.error
    return (
        outcome.status,
        outcome.reasons,
        None if error is None else (error.type, error.reason, error.message, error.step),
        outcome.output,
        outcome.candidate,
        outcome.residual_phi,
    )


def _both(data: bytes, cleaner: PresidioTextCleaner, monkeypatch: pytest.MonkeyPatch) -> tuple:
    lazily = _decision(_run(data, cleaner))
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "read_instance_lazily", _strict_read)
        strictly = _decision(_run(data, cleaner))
    return lazily, strictly


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.name)
def test_every_sample_file_is_decided_as_the_strict_read_decides_it(
    path: Path, cleaner: PresidioTextCleaner, monkeypatch: pytest.MonkeyPatch
) -> None:
    lazily, strictly = _both(path.read_bytes(), cleaner, monkeypatch)
    assert lazily == strictly


def test_an_instance_with_phi_everywhere_is_decided_alike(
    cleaner: PresidioTextCleaner, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = instance_bytes(customize=with_unknown_elements)
    lazily, strictly = _both(data, cleaner, monkeypatch)
    assert lazily == strictly
    assert PATIENT_NAME.encode() not in (lazily[3] or lazily[4] or b"")


def test_a_value_read_leniently_but_unwritable_is_refused_as_before(
    cleaner: PresidioTextCleaner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fuzzer's full-width digits in an IS value: pydicom reads them, cannot write them.
    def count_rate(ds: Dataset) -> None:
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.CountRate = "999999999"

    data = instance_bytes(customize=count_rate).replace(
        b"999999999", "\uff11\uff12\uff13".encode(), 1
    )
    lazily, strictly = _both(data, cleaner, monkeypatch)
    assert lazily == strictly
    assert lazily[2] is not None and lazily[2][1] == "unwritable_element"


class TestTheLazyRead:
    def test_numbers_of_a_broken_length_are_refused_naming_the_tag(self) -> None:
        def matrix(ds: Dataset) -> None:
            ds.add_new(0x00181310, "US", [1, 2, 3, 4])  # Acquisition Matrix

        whole = b"\x18\x00\x10\x13US\x08\x00\x01\x00\x02\x00\x03\x00\x04\x00"
        cut = b"\x18\x00\x10\x13US\x07\x00\x01\x00\x02\x00\x03\x00\x04"
        data = instance_bytes(customize=matrix)
        assert whole in data
        with pytest.raises(MalformedDicomError, match=r"\(0018,1310\)"):
            read_instance_lazily(data.replace(whole, cut, 1))

    def test_it_leaves_conversion_to_first_use(self) -> None:
        dataset, raw = read_instance_lazily(instance_bytes())
        assert dataset.get_item(0x00100010).__class__.__name__ == "RawDataElement"
        assert str(dataset.PatientName) == PATIENT_NAME
        assert raw.text(0x00080018) == dataset.SOPInstanceUID
