"""Each profile option changes exactly the rows its column of Table E.1-1 names."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from radstream.deid._annex_e import OPTION_COLUMNS, ROWS
from radstream.deid.dates import MAX_OFFSET_DAYS, MIN_OFFSET_DAYS, shift_da
from radstream.deid.dummies import DUMMY_TEXT
from radstream.deid.profile import (
    BASIC_PROFILE_CODE,
    DeidProfile,
    ProfileOption,
)
from radstream.deid.rules import RuleBook, TableRule, compile_rules
from tests.unit.deid.profile_builders import (
    INSTITUTION,
    PATIENT_NAME,
    actions_for,
    deidentify,
    instance,
    item,
    sr_instance,
    uid,
)


class TestOptionData:
    def test_every_option_has_its_dcm_code_and_a_kebab_case_name(self) -> None:
        codes = {option.code for option in ProfileOption}
        assert codes == {f"1131{n:02d}" for n in range(3, 13)}
        assert all(option.value == option.value.lower() for option in ProfileOption)
        assert ProfileOption("retain-uids") is ProfileOption.RETAIN_UIDS

    @pytest.mark.parametrize("option", list(ProfileOption))
    def test_option_applies_its_column_to_every_row_it_names(self, option: ProfileOption) -> None:
        column = OPTION_COLUMNS.index(option.value)
        basic = compile_rules(frozenset())
        with_option = compile_rules(frozenset({option.value}))
        named = [row for row in ROWS if row.options[column] != "."]
        assert named, f"{option} names no rows"
        for row in ROWS:
            before = _rule(basic, row.tag)
            after = _rule(with_option, row.tag)
            if row.options[column] != ".":
                assert (after.code, after.decided_by) == (row.options[column], option.value)
            else:
                assert (after.code, after.decided_by) == (before.code, "basic")

    def test_k_wins_when_two_options_name_one_row(self) -> None:
        book = compile_rules(
            frozenset(
                {
                    ProfileOption.RETAIN_DEVICE_IDENTITY.value,
                    ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES.value,
                }
            )
        )
        calibration = book.exact[0x0018700C]  # Date of Last Detector Calibration: K and C
        assert calibration.code == "K"

    def test_both_longitudinal_date_options_at_once_are_refused(self) -> None:
        with pytest.raises(ValueError, match="dates are either kept or shifted"):
            DeidProfile(
                options=frozenset(
                    {
                        ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES,
                        ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
                    }
                )
            )

    def test_options_may_be_given_by_name(self) -> None:
        profile = DeidProfile(options=frozenset({"retain-uids"}))  # type: ignore[arg-type]
        assert profile.options == {ProfileOption.RETAIN_UIDS}


def _rule(book: RuleBook, tag: str) -> TableRule:
    if tag.startswith("(GGGG"):
        return book.private
    if tag == "(50XX,XXXX)":
        return book.curve
    if tag.startswith("(60XX"):
        return book.overlay[int(tag[6:10], 16)]
    return book.exact[int(tag[1:5] + tag[6:10], 16)]


class TestMarkers:
    def test_the_output_says_which_profile_and_options_were_applied(self) -> None:
        options = (ProfileOption.RETAIN_UIDS, ProfileOption.CLEAN_DESCRIPTORS)
        result = deidentify(instance(), *options)
        out = result.dataset
        assert out.PatientIdentityRemoved == "YES"
        codes = [code.CodeValue for code in out.DeidentificationMethodCodeSequence]
        assert codes == [BASIC_PROFILE_CODE, "113105", "113110"]
        assert {code.CodingSchemeDesignator for code in out.DeidentificationMethodCodeSequence} == {
            "DCM"
        }
        assert "Retain UIDs Option" in out.DeidentificationMethod
        assert out.LongitudinalTemporalInformationModified == "REMOVED"


class TestRetainOptions:
    def test_retain_safe_private_is_covered_in_test_profile_private(self) -> None:
        assert ProfileOption.RETAIN_SAFE_PRIVATE.code == "113111"

    def test_retain_uids_keeps_every_instance_uid(self) -> None:
        ref = item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=uid("5"))
        ds = instance(ReferencedImageSequence=[ref], MultiFrameSourceSOPInstanceUID=uid("6"))
        out = deidentify(ds, ProfileOption.RETAIN_UIDS).dataset
        assert out.SOPInstanceUID == uid("1.1.1")
        assert out.StudyInstanceUID == uid("1")
        assert out.file_meta.MediaStorageSOPInstanceUID == uid("1.1.1")
        assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == uid("5")
        assert out.MultiFrameSourceSOPInstanceUID == uid("6")

    def test_retain_device_identity_keeps_device_attributes_and_cleans_ae_titles(self) -> None:
        ds = instance(StationAETitle=f"AE {PATIENT_NAME}")
        basic = deidentify(ds).dataset
        out = deidentify(ds, ProfileOption.RETAIN_DEVICE_IDENTITY).dataset
        assert "DeviceSerialNumber" not in basic
        assert "StationName" not in basic
        assert out.DeviceSerialNumber == "SN-4711"
        assert out.StationName == "CTSTATION1"
        assert out.StationAETitle == "AE "  # C: cleaned, not kept verbatim

    def test_retain_institution_identity_keeps_institution_attributes(self) -> None:
        basic = deidentify(instance()).dataset
        out = deidentify(instance(), ProfileOption.RETAIN_INSTITUTION_IDENTITY).dataset
        assert "InstitutionName" not in basic
        assert out.InstitutionName == INSTITUTION
        assert out.InstitutionAddress == "2 Fictional Road"

    def test_retain_patient_characteristics_keeps_sex_age_and_weight_not_birth_date(self) -> None:
        basic = deidentify(instance()).dataset
        out = deidentify(instance(), ProfileOption.RETAIN_PATIENT_CHARACTERISTICS).dataset
        assert basic.PatientSex == ""
        assert "PatientAge" not in basic
        assert (out.PatientSex, out.PatientAge, out.PatientWeight) == ("F", "054Y", "70")
        assert out.PatientBirthDate == ""

    def test_retain_full_dates_keeps_dates_and_times(self) -> None:
        result = deidentify(instance(), ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES)
        out = result.dataset
        assert (out.StudyDate, out.StudyTime, out.AcquisitionDate) == (
            "20240115",
            "101500",
            "20240115",
        )
        assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"
        assert result.date_offset_days == 0


class TestModifiedDates:
    option = ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES

    def test_dates_shift_by_the_patients_offset_and_times_stay(self) -> None:
        result = deidentify(instance(), self.option)
        out = result.dataset
        assert MIN_OFFSET_DAYS <= -result.date_offset_days <= MAX_OFFSET_DAYS
        assert out.StudyDate == shift_da("20240115", result.date_offset_days)
        assert out.AcquisitionDate == out.StudyDate
        assert out.StudyTime == "101500"
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"

    def test_two_studies_of_one_patient_keep_their_interval(self) -> None:
        first = deidentify(instance(study_uid=uid("1"), study_date="20240115"), self.option)
        second = deidentify(
            instance(study_uid=uid("2"), sop_uid=uid("2.1.1"), study_date="20240315"),
            self.option,
        )
        assert first.date_offset_days == second.date_offset_days
        assert first.dataset.StudyDate == shift_da("20240115", first.date_offset_days)
        assert second.dataset.StudyDate == shift_da("20240315", first.date_offset_days)

    def test_another_patient_gets_another_offset(self) -> None:
        offsets = {
            deidentify(instance(patient_id=f"MRN{n:04d}"), self.option).date_offset_days
            for n in range(5)
        }
        assert len(offsets) > 1

    def test_datetimes_keep_their_time_and_utc_offset(self) -> None:
        ds = instance(AcquisitionDateTime="20240115101530.123456+0100")
        result = deidentify(ds, self.option)
        shifted = shift_da("20240115", result.date_offset_days)
        assert result.dataset.AcquisitionDateTime == f"{shifted}101530.123456+0100"

    def test_each_value_of_a_multi_valued_date_is_shifted(self) -> None:
        ds = instance(SelectorDAValue=["20240101", "20240201"])
        result = deidentify(ds, self.option)
        days = result.date_offset_days
        assert list(result.dataset.SelectorDAValue) == [
            shift_da("20240101", days),
            shift_da("20240201", days),
        ]

    @pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
    def test_a_malformed_date_is_removed_and_reported(self) -> None:
        result = deidentify(instance(StudyDate="2024-13-45"), self.option)
        assert "StudyDate" not in result.dataset
        (action,) = [a for a in result.actions if a.path == "(0008,0020)"]
        assert action.action == "X"
        assert "malformed" in action.rule


class TestCleanOptions:
    def test_clean_descriptors_cleans_instead_of_removing(self) -> None:
        ds = instance(AdmittingDiagnosesDescription=["fracture", f"{PATIENT_NAME} fell"])
        basic = deidentify(ds).dataset
        out = deidentify(ds, ProfileOption.CLEAN_DESCRIPTORS).dataset
        assert "StudyDescription" not in basic
        assert out.StudyDescription == "CT chest for "
        assert list(out.AdmittingDiagnosesDescription) == ["fracture", " fell"]

    def test_clean_structured_content_cleans_sr_text_instead_of_dummying_it(self) -> None:
        basic = deidentify(sr_instance()).dataset
        out = deidentify(sr_instance(), ProfileOption.CLEAN_STRUCTURED_CONTENT).dataset
        assert basic.ContentSequence[0].TextValue == DUMMY_TEXT
        assert out.ContentSequence[0].TextValue == "Findings discussed with "
        # Codes are kept by cleaning; the person name row (D) still applies inside.
        assert out.ContentSequence[0].ConceptNameCodeSequence[0].CodeValue == "121071"
        assert out.ContentSequence[1].PersonName == DUMMY_TEXT

    def test_clean_structured_content_keeps_the_acquisition_context(self) -> None:
        context = item(ValueType="TEXT", TextValue=f"positioned by {PATIENT_NAME}")
        ds = instance(AcquisitionContextSequence=[context])
        assert "AcquisitionContextSequence" not in deidentify(ds).dataset
        out = deidentify(ds, ProfileOption.CLEAN_STRUCTURED_CONTENT).dataset
        assert out.AcquisitionContextSequence[0].TextValue == "positioned by "

    def test_clean_graphics_cleans_annotation_text(self) -> None:
        text = item(UnformattedTextValue=f"{PATIENT_NAME} L", AnchorPointAnnotationUnits="PIXEL")
        ds = instance(GraphicAnnotationSequence=[item(TextObjectSequence=[text])])
        basic = deidentify(ds).dataset
        out = deidentify(ds, ProfileOption.CLEAN_GRAPHICS).dataset
        path = "GraphicAnnotationSequence"
        assert basic[path][0].TextObjectSequence[0].UnformattedTextValue == DUMMY_TEXT
        assert out[path][0].TextObjectSequence[0].UnformattedTextValue == " L"

    def test_clean_graphics_cleans_overlay_comments_but_removes_overlay_bitmaps(self) -> None:
        ds = _with_overlay(instance())
        result = deidentify(ds, ProfileOption.CLEAN_GRAPHICS)
        out = result.dataset
        assert 0x60003000 not in out
        assert out[0x60004000].value == "drawn for "
        assert actions_for(result, "(6000,3000)") == ["X"]


def _with_overlay(ds: Dataset) -> Dataset:
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60000011, "US", 2)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\x0f\x00")
    ds.add_new(0x60004000, "LT", f"drawn for {PATIENT_NAME}")
    return ds
