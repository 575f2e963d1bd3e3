"""Non-conformant input: wrong VRs, UN, raw and undecodable values, odd encodings, stray groups.

The engine never crashes on what pydicom reads and never keeps what it cannot process.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from radstream.deid.dates import shift_da
from radstream.deid.profile import DeidProfile, ProfileOption, apply_profile
from tests.unit.deid.profile_builders import (
    KEYS,
    PATIENT_NAME,
    actions_for,
    all_strings,
    as_read,
    deidentify,
    deleting_cleaner,
    instance,
    item,
    phi_of,
    written,
)

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _apply(ds: Dataset, *options: ProfileOption) -> Dataset:
    return apply_profile(
        ds,
        DeidProfile(options=frozenset(options)),
        KEYS,
        clean_text=deleting_cleaner,
        phi=phi_of(PATIENT_NAME),
    ).dataset


class TestWrongVr:
    def test_a_date_written_with_a_text_vr_is_emptied_as_a_date(self) -> None:
        ds = instance()
        del ds.StudyDate
        ds.add_new(0x00080020, "LO", "20240115")
        out = written(deidentify(ds).dataset)
        assert out["StudyDate"].VR == "DA"
        assert out.StudyDate == ""

    def test_a_date_written_with_a_text_vr_is_still_shifted(self) -> None:
        ds = instance()
        del ds.StudyDate
        ds.add_new(0x00080020, "LO", "20240115")
        result = deidentify(ds, ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES)
        assert result.dataset.StudyDate == shift_da("20240115", result.date_offset_days)

    def test_a_patient_name_encoded_as_un_is_replaced(self) -> None:
        ds = instance()
        del ds.PatientName
        ds.add_new(0x00100010, "UN", PATIENT_NAME.encode())
        result = deidentify(ds)
        out = written(result.dataset)
        assert out.PatientName == result.patient_pseudonym
        assert PATIENT_NAME not in "".join(all_strings(out))

    def test_an_unknown_public_element_with_an_opaque_value_is_removed(self) -> None:
        ds = instance()
        ds.add_new(0x00060001, "UN", PATIENT_NAME.encode())
        result = deidentify(ds)
        assert 0x00060001 not in result.dataset
        assert actions_for(result, "(0006,0001)") == ["X"]

    def test_a_value_that_cannot_be_read_as_its_action_needs_is_removed(self) -> None:
        ds = instance()
        value = b"1.2.3.4\x00"
        # Frame of Reference UID (U) arriving as opaque bytes: it cannot be remapped, so it
        # must not be kept either.
        ds[0x00200052] = RawDataElement(Tag(0x00200052), "OB", len(value), value, 0, False, True)
        ds.set_original_encoding(False, True, "iso8859")
        result = apply_profile(
            ds, DeidProfile(), KEYS, clean_text=deleting_cleaner, phi=phi_of(PATIENT_NAME)
        )
        assert 0x00200052 not in result.dataset
        (action,) = [a for a in result.actions if a.path == "(0020,0052)"]
        assert action.action == "X"
        assert "fail closed" in action.rule


class TestEncodings:
    @pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
    def test_other_transfer_syntaxes_round_trip(self, syntax: str) -> None:
        ds = instance(ProcedureCodeSequence=[item(CodeValue="P1", PatientName=PATIENT_NAME)])
        ds.file_meta.TransferSyntaxUID = syntax
        result = deidentify(ds)
        out = written(result.dataset)
        assert out.file_meta.TransferSyntaxUID == syntax
        assert out.PatientName == result.patient_pseudonym
        assert out.ProcedureCodeSequence[0].PatientName == ""
        assert out.ProcedureCodeSequence[0].CodeValue == "P1"

    def test_non_ascii_text_carried_over_inside_items_survives(self) -> None:
        meaning = "Ébauche scanner thoracique, côté gauche"
        ds = instance(ProcedureCodeSequence=[item(CodeValue="P1", CodeMeaning=meaning)])
        ds.SpecificCharacterSet = "ISO_IR 192"
        out = written(deidentify(ds).dataset)
        assert out.ProcedureCodeSequence[0].CodeMeaning == meaning

    def test_a_data_set_without_file_meta_gets_one(self) -> None:
        ds = instance()
        del ds.file_meta
        out = _apply(ds)
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        assert written(out).SOPInstanceUID == out.SOPInstanceUID


class TestStrayElements:
    def test_group_lengths_are_removed(self) -> None:
        ds = instance()
        ds.add_new(0x00080000, "UL", 1234)
        ds.add_new(0x00100000, "UL", 56)
        result = apply_profile(
            ds, DeidProfile(), KEYS, clean_text=deleting_cleaner, phi=phi_of(PATIENT_NAME)
        )
        assert 0x00080000 not in result.dataset
        assert actions_for(result, "(0010,0000)") == ["X"]

    def test_file_meta_elements_inside_the_data_set_are_removed(self) -> None:
        ds = instance()
        ds.add_new(0x00020016, "AE", "SENDER")
        out = _apply(ds)
        assert 0x00020016 not in out
        assert "SourceApplicationEntityTitle" not in out.file_meta

    def test_command_elements_are_removed_so_the_output_can_be_stored(self) -> None:
        ds = instance()
        ds.add_new(0x00001001, "UI", "1.2.3.4")  # Requested SOP Instance UID
        out = _apply(ds)
        assert 0x00001001 not in out
        assert written(out).SOPInstanceUID == out.SOPInstanceUID

    def test_the_input_data_set_is_not_modified(self) -> None:
        ds = as_read(instance(ProcedureCodeSequence=[item(PatientName=PATIENT_NAME)]))
        before = list(all_strings(ds))
        _apply(ds, ProfileOption.CLEAN_DESCRIPTORS)
        assert list(all_strings(ds)) == before


def _small_pydicom_files() -> list[Path]:
    return [p for p in sorted(PYDICOM_FILES.glob("*.dcm")) if p.stat().st_size < 2_000_000]


def test_every_pydicom_test_file_is_processed_without_an_exception() -> None:
    processed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in _small_pydicom_files():
            try:
                ds = dcmread(path, force=True)
            except Exception:  # not ours to read: the reader rejects these
                continue
            out = _apply(ds, *(set(ProfileOption) - {ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES}))
            if "SOPInstanceUID" in out and "SOPClassUID" in out:
                buffer = io.BytesIO()
                dcmwrite(buffer, out, enforce_file_format=True)
                processed += 1
    assert processed > 30
