"""Each action code of PS3.15 Table E.1-1 (D, Z, X, K, C, U and the compound ones)."""

from __future__ import annotations

import pytest
from pydicom.uid import CTImageStorage, RTPlanStorage

from radstream.deid.dates import shift_da
from radstream.deid.dummies import DUMMY_TEXT
from radstream.deid.profile import ProfileOption
from radstream.deid.rules import resolve_code
from radstream.deid.uids import UID_PATTERN, remap_uid
from tests.unit.deid.profile_builders import (
    ACCESSION,
    KEYS,
    PATIENT_NAME,
    actions_for,
    deidentify,
    instance,
    item,
    pet_instance,
    segmentation_instance,
    sr_instance,
    uid,
)


class TestSingleCodes:
    def test_x_removes_the_attribute(self) -> None:
        result = deidentify(instance())
        assert "InstitutionAddress" not in result.dataset
        assert "PatientAddress" not in result.dataset
        assert actions_for(result, "(0008,0081)") == ["X"]

    def test_z_keeps_the_attribute_with_zero_length(self) -> None:
        result = deidentify(instance())
        assert result.dataset["AccessionNumber"].value == ""
        assert result.dataset["PatientBirthDate"].value == ""
        assert actions_for(result, "(0008,0050)") == ["Z"]

    def test_d_replaces_text_with_a_dummy_valid_for_the_vr(self) -> None:
        result = deidentify(instance(ClinicalTrialSponsorName="Fictional Pharma"))
        assert result.dataset.ClinicalTrialSponsorName == DUMMY_TEXT
        assert actions_for(result, "(0012,0010)") == ["D"]

    def test_d_on_a_date_gives_a_valid_dummy_date(self) -> None:
        result = deidentify(sr_instance())
        # Content Date is Z/D and Type 1 in SR Document General: D.
        assert result.dataset.ContentDate == "19000101"
        assert actions_for(result, "(0008,0023)") == ["D"]

    def test_d_on_a_uid_remaps_it(self) -> None:
        result = deidentify(instance(AnnotationGroupUID=uid("77")))
        assert result.dataset.AnnotationGroupUID == remap_uid(uid("77"), KEYS.uid_key)

    def test_d_on_a_sequence_replaces_its_free_text(self) -> None:
        observer = item(
            VerifyingObserverName="CHECKER^CARL",
            VerifyingOrganization=f"{PATIENT_NAME} clinic",
            VerificationDateTime="20240115120000",
            VerifyingObserverIdentificationCodeSequence=[
                item(CodeValue="E123", CodingSchemeDesignator="L", CodeMeaning="CHECKER^CARL")
            ],
        )
        result = deidentify(sr_instance(VerifyingObserverSequence=[observer]))
        out = result.dataset.VerifyingObserverSequence[0]
        assert out.VerifyingObserverName == DUMMY_TEXT
        assert out.VerifyingOrganization == DUMMY_TEXT
        assert out.VerificationDateTime == "19000101000000"
        assert len(out.VerifyingObserverIdentificationCodeSequence) == 0  # Z

    def test_u_replaces_instance_uids_consistently(self) -> None:
        result = deidentify(instance())
        assert result.dataset.SOPInstanceUID == remap_uid(uid("1.1.1"), KEYS.uid_key)
        assert result.dataset.StudyInstanceUID == remap_uid(uid("1"), KEYS.uid_key)
        assert UID_PATTERN.fullmatch(result.dataset.SOPInstanceUID)
        assert result.uid_map[uid("1.1.1")] == result.dataset.SOPInstanceUID

    def test_k_from_an_option_keeps_the_value_and_is_recorded(self) -> None:
        result = deidentify(instance(), ProfileOption.RETAIN_DEVICE_IDENTITY)
        assert result.dataset.DeviceSerialNumber == "SN-4711"
        assert actions_for(result, "(0018,1000)") == ["K"]

    def test_c_cleans_the_text_with_the_injected_cleaner(self) -> None:
        result = deidentify(instance(), ProfileOption.CLEAN_DESCRIPTORS)
        assert result.dataset.StudyDescription == "CT chest for "
        assert actions_for(result, "(0008,1030)") == ["C"]

    def test_untouched_attributes_outside_the_table_are_not_recorded(self) -> None:
        result = deidentify(instance())
        assert result.dataset.Manufacturer == "ACME"
        assert result.dataset.ImageType == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert actions_for(result, "(0008,0070)") == []


class TestCompoundCodes:
    @pytest.mark.parametrize(
        ("code", "attr_type", "expected"),
        [
            ("X/Z", 3, "X"),
            ("X/Z", 2, "Z"),
            ("X/Z", 1, "D"),
            ("X/D", 3, "X"),
            ("X/D", 2, "D"),
            ("X/D", 1, "D"),
            ("Z/D", 3, "Z"),
            ("Z/D", 2, "Z"),
            ("Z/D", 1, "D"),
            ("X/Z/D", 3, "X"),
            ("X/Z/D", 2, "Z"),
            ("X/Z/D", 1, "D"),
            ("X/Z/U*", 3, "X"),
            ("X/Z/U*", 2, "Z"),
            ("X/Z/U*", 1, "U"),
            ("Z", 1, "D"),
            ("Z", 2, "Z"),
            ("X", 1, "X"),
        ],
    )
    def test_compound_code_resolves_by_type(self, code: str, attr_type: int, expected: str) -> None:
        assert resolve_code(code, attr_type) == expected

    def test_acquisition_date_is_removed_from_ct_where_it_is_type_3(self) -> None:
        result = deidentify(instance())
        assert "AcquisitionDate" not in result.dataset

    def test_acquisition_date_is_emptied_in_pet_where_it_is_type_2(self) -> None:
        result = deidentify(pet_instance())
        assert result.dataset.AcquisitionDate == ""
        assert actions_for(result, "(0008,0022)") == ["Z"]

    def test_series_date_gets_a_dummy_in_pet_where_it_is_type_1(self) -> None:
        result = deidentify(pet_instance())
        assert result.dataset.SeriesDate == "19000101"
        assert "SeriesDate" not in deidentify(instance()).dataset

    def test_content_date_is_emptied_in_ct_and_dummied_in_sr(self) -> None:
        assert deidentify(instance()).dataset.ContentDate == ""
        assert deidentify(sr_instance()).dataset.ContentDate == "19000101"

    def test_device_serial_number_is_dummied_where_enhanced_equipment_makes_it_type_1(
        self,
    ) -> None:
        assert "DeviceSerialNumber" not in deidentify(instance()).dataset
        assert deidentify(segmentation_instance()).dataset.DeviceSerialNumber == DUMMY_TEXT

    def test_operators_name_is_emptied_in_rt_series_where_it_is_type_2(self) -> None:
        plan = instance(RTPlanStorage, Modality="RTPLAN", RTPlanLabel="PLAN1")
        assert deidentify(plan).dataset.OperatorsName == ""
        assert "OperatorsName" not in deidentify(instance()).dataset

    def test_referenced_image_sequence_is_removed_where_it_is_type_3(self) -> None:
        ref = item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=uid("5"))
        result = deidentify(instance(ReferencedImageSequence=[ref]))
        assert "ReferencedImageSequence" not in result.dataset

    def test_referenced_image_sequence_keeps_remapped_uids_where_it_is_type_1(self) -> None:
        ref = item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=uid("5"))
        series = item(SeriesInstanceUID=uid("1.1"), ReferencedImageSequence=[ref])
        result = deidentify(instance(ReferencedSeriesSequence=[series]))
        out = result.dataset.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
        assert out.ReferencedSOPInstanceUID == remap_uid(uid("5"), KEYS.uid_key)
        assert out.ReferencedSOPClassUID == CTImageStorage
        assert actions_for(result, "(0008,1115)[0]/(0008,1140)") == ["U"]

    def test_unknown_sop_classes_use_the_common_modules(self) -> None:
        result = deidentify(instance("1.2.3.4.5.6.7", AccessionNumber=ACCESSION))
        assert result.dataset.AccessionNumber == ""  # General Study Type 2
        assert "AcquisitionDate" not in result.dataset  # Type 3 by default


class TestPatientIdentity:
    def test_patient_id_and_name_become_the_pseudonym(self) -> None:
        result = deidentify(instance())
        assert result.dataset.PatientID == result.patient_pseudonym
        assert result.dataset.PatientName == result.patient_pseudonym
        assert result.patient_pseudonym.startswith("ANON")

    def test_the_pseudonym_is_the_same_across_studies_of_one_patient(self) -> None:
        first = deidentify(instance(study_uid=uid("1")))
        second = deidentify(instance(study_uid=uid("2"), sop_uid=uid("2.1.1")))
        other = deidentify(instance(patient_id="MRN0099"))
        assert first.patient_pseudonym == second.patient_pseudonym
        assert first.patient_pseudonym != other.patient_pseudonym

    def test_a_patient_without_an_id_gets_a_per_study_pseudonym(self) -> None:
        first = deidentify(instance(patient_id="", study_uid=uid("1")))
        second = deidentify(instance(patient_id="", study_uid=uid("2")))
        assert first.patient_pseudonym != second.patient_pseudonym

    def test_dates_shift_by_the_reported_offset(self) -> None:
        result = deidentify(instance(), ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES)
        assert result.dataset.StudyDate == shift_da("20240115", result.date_offset_days)
