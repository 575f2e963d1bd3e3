"""UID remapping, date shifting and pseudonyms: consistent, unique, valid."""

from __future__ import annotations

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from radstream.deid.dates import (
    MAX_OFFSET_DAYS,
    MIN_OFFSET_DAYS,
    date_offset_days,
    is_valid_tm,
    shift_da,
    shift_dt,
)
from radstream.deid.profile import DeidKeys
from radstream.deid.pseudonyms import patient_identity, patient_pseudonym
from radstream.deid.uids import UID_PATTERN, UidRemapper, is_well_known_uid, remap_uid
from tests.unit.deid.profile_builders import KEYS, deidentify, instance, uid

OTHER_KEYS = DeidKeys.from_secret(b"another-project-secret-0123456789")


class TestUidRemap:
    def test_same_uid_and_key_give_the_same_replacement(self) -> None:
        assert remap_uid(uid("1"), KEYS.uid_key) == remap_uid(uid("1"), KEYS.uid_key)

    def test_another_key_gives_another_replacement(self) -> None:
        assert remap_uid(uid("1"), KEYS.uid_key) != remap_uid(uid("1"), OTHER_KEYS.uid_key)

    def test_replacements_are_valid_2_25_uids(self) -> None:
        for n in range(500):
            new = remap_uid(uid(str(n)), KEYS.uid_key)
            digits = new.removeprefix("2.25.")
            assert new.startswith("2.25.")
            assert UID_PATTERN.fullmatch(new)
            assert len(digits) <= 39
            assert not digits.startswith("0")
            assert len(new) <= 64

    def test_distinct_uids_get_distinct_replacements(self) -> None:
        originals = [uid(f"{a}.{b}") for a in range(100) for b in range(50)]
        assert len({remap_uid(o, KEYS.uid_key) for o in originals}) == len(originals)

    @pytest.mark.parametrize(
        "well_known",
        [
            CTImageStorage,
            ExplicitVRLittleEndian,
            "1.2.840.10008.2.16.4",  # DICOM coding scheme (DCM)
            "2.16.840.1.113883.6.96",  # SNOMED CT
            "1.2.840.10008.1.2.4.50",
        ],
    )
    def test_well_known_uids_are_never_remapped(self, well_known: str) -> None:
        assert is_well_known_uid(well_known)
        assert remap_uid(well_known, KEYS.uid_key) == well_known

    def test_any_input_string_becomes_a_valid_uid(self) -> None:
        for bad in ["1.2.03.4", "not a uid", "1." * 40, "1.2.3\x00"]:
            assert UID_PATTERN.fullmatch(UidRemapper(KEYS.uid_key)(bad))

    def test_the_remapper_records_only_what_it_changed(self) -> None:
        remap = UidRemapper(KEYS.uid_key)
        remap(uid("1"))
        remap(CTImageStorage)
        assert set(remap.changed) == {uid("1")}

    def test_uids_stay_consistent_across_instances_and_studies(self) -> None:
        a = deidentify(instance(sop_uid=uid("1.1.1"), study_uid=uid("1"))).dataset
        b = deidentify(instance(sop_uid=uid("1.1.2"), study_uid=uid("1"))).dataset
        c = deidentify(instance(sop_uid=uid("2.1.1"), study_uid=uid("2"))).dataset
        assert a.StudyInstanceUID == b.StudyInstanceUID != c.StudyInstanceUID
        assert a.SeriesInstanceUID == b.SeriesInstanceUID
        assert a.FrameOfReferenceUID == c.FrameOfReferenceUID  # same source frame of reference
        assert len({a.SOPInstanceUID, b.SOPInstanceUID, c.SOPInstanceUID}) == 3
        assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID

    def test_class_uids_are_kept_outside_and_instance_uids_remapped(self) -> None:
        out = deidentify(instance(MultiFrameSourceSOPInstanceUID=uid("6"))).dataset
        assert out.SOPClassUID == CTImageStorage
        assert out.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert out.MultiFrameSourceSOPInstanceUID == remap_uid(uid("6"), KEYS.uid_key)


class TestDates:
    def test_the_offset_is_a_whole_number_of_days_in_the_documented_range(self) -> None:
        offsets = [date_offset_days(f"patient-{n}", KEYS.date_key) for n in range(300)]
        assert all(MIN_OFFSET_DAYS <= -offset <= MAX_OFFSET_DAYS for offset in offsets)
        assert len(set(offsets)) > 250
        assert date_offset_days("patient-1", KEYS.date_key) == offsets[1]

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("20240301", "20240229"),
            ("2024.03.01", "20240229"),  # ACR-NEMA form
            ("20241301", None),
            ("2024031", None),
            ("", None),
        ],
    )
    def test_da_values_shift_or_are_rejected(self, value: str, expected: str | None) -> None:
        assert shift_da(value, -1) == expected

    @pytest.mark.parametrize(
        ("value", "days", "expected"),
        [
            ("20240301101530", -1, "20240229101530"),
            ("20240301101530.5-0500", -1, "20240229101530.5-0500"),
            ("20240301", -1, "20240229"),
            ("202403", -200, "202308"),  # shifted from mid-month, month precision kept
            ("2024", -200, "2023"),  # shifted from mid-year
            ("2024+0100", -200, "2023+0100"),
            ("2024031", -1, None),
            ("20240230", -1, None),
            ("2024030110", -1, "2024022910"),
        ],
    )
    def test_dt_values_keep_precision_time_and_zone(
        self, value: str, days: int, expected: str | None
    ) -> None:
        assert shift_dt(value, days) == expected

    @pytest.mark.parametrize(
        ("value", "valid"),
        [("101530", True), ("1015", True), ("10", True), ("10:15:30.25", True), ("2460", False)],
    )
    def test_tm_values_are_checked(self, value: str, valid: bool) -> None:
        assert is_valid_tm(value) is valid


class TestPseudonyms:
    def test_the_pseudonym_depends_on_id_issuer_and_key(self) -> None:
        base = patient_pseudonym(patient_identity("MRN1", "HOSP", fallback=""), KEYS.patient_key)
        assert base == patient_pseudonym(
            patient_identity(" MRN1 ", "HOSP", fallback=""), KEYS.patient_key
        )
        assert base != patient_pseudonym(
            patient_identity("MRN1", "OTHER", fallback=""), KEYS.patient_key
        )
        assert base != patient_pseudonym(
            patient_identity("MRN1", "HOSP", fallback=""), OTHER_KEYS.patient_key
        )
        assert len(base) <= 64
        assert base.isalnum()


class TestKeys:
    def test_keys_are_derived_independently_and_hidden_from_repr(self) -> None:
        assert len({KEYS.uid_key, KEYS.patient_key, KEYS.date_key}) == 3
        assert "key" not in repr(KEYS).lower().replace("deidkeys", "")

    def test_short_secrets_and_keys_are_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 16 bytes"):
            DeidKeys.from_secret(b"short")
        with pytest.raises(ValueError, match="uid_key"):
            DeidKeys(uid_key=b"x", patient_key=b"y" * 16, date_key=b"z" * 16)
