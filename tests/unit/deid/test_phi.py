"""Collecting an instance's PHI values: every element, every sequence item, every value."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from radstream.deid.header import header_values
from radstream.deid.phi import (
    PhiCategory,
    PhiValue,
    PhiValues,
    collect_phi_values,
)


def texts_of(phi: PhiValues, kind: str) -> set[str]:
    return {value.text for value in phi.values if value.kind == kind}


def item(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.fixture
def header() -> Dataset:
    ds = item(
        PatientName="DOE^JANE^MARIE",
        PatientID="00123456",
        IssuerOfPatientID="SPRINGFIELD HOSP",
        PatientBirthDate="19610312",
        AccessionNumber="ACC998877",
        StudyID="S4711",
        StudyDate="20240105",
        AcquisitionDateTime="20240105101500.000",
        InstitutionName="Springfield General",
        InstitutionAddress="1 Main Street, Springfield",
        InstitutionalDepartmentName="Nuclear Medicine East",
        ReferringPhysicianName="SMITH^JOHN",
        PatientTelephoneNumbers="+1 555 123-4567",
        StationName="CTSCAN07",
        DeviceSerialNumber="SN-88123",
        Modality="CT",
        PatientSex="F",
        EthnicGroup="NORDIC",
        StudyDescription="CT CHEST W/O CONTRAST",
    )
    return ds


class TestWhatIsCollected:
    def test_patient_name_is_collected_whole_and_by_component(self, header: Dataset) -> None:
        names = texts_of(collect_phi_values(header), "PatientName")
        assert names >= {"DOE^JANE^MARIE", "DOE", "JANE", "MARIE"}

    def test_identifiers_addresses_and_phone_numbers_are_collected(self, header: Dataset) -> None:
        texts = set(collect_phi_values(header).texts())
        assert texts >= {
            "00123456",
            "SPRINGFIELD HOSP",
            "ACC998877",
            "S4711",
            "SMITH^JOHN",
            "+1 555 123-4567",
        }

    def test_descriptors_and_characteristics_are_not_identifiers(self, header: Dataset) -> None:
        texts = set(collect_phi_values(header).texts())
        assert not texts & {"CT", "F", "NORDIC", "CT CHEST W/O CONTRAST"}

    def test_each_value_names_its_attribute_and_category(self, header: Dataset) -> None:
        phi = collect_phi_values(header)
        by_text = {value.text: value for value in phi.values}
        assert by_text["DOE"].kind == "PatientName"
        assert by_text["DOE"].category is PhiCategory.NAME
        assert by_text["19610312"].category is PhiCategory.DATE
        assert by_text["00123456"].category is PhiCategory.IDENTIFIER
        assert by_text["Springfield General"].category is PhiCategory.ORGANIZATION
        assert by_text["1 Main Street, Springfield"].category is PhiCategory.PLACE
        assert by_text["+1 555 123-4567"].category is PhiCategory.PHONE

    def test_a_hand_made_value_derives_its_category_from_its_kind(self) -> None:
        assert PhiValue(kind="ReferringPhysicianName", text="X^Y").category is PhiCategory.NAME
        assert PhiValue(kind="StudyDate", text="20240105").category is PhiCategory.DATE
        assert PhiValue(kind="PatientID", text="1234").category is PhiCategory.IDENTIFIER


class TestWhereItIsCollectedFrom:
    def test_values_are_collected_from_nested_sequences(self) -> None:
        request = item(
            AccessionNumber="ACC-55501",
            RequestedProcedureID="RP-777",
            RequestingPhysician="ROE^RICHARD",
        )
        request.ReferencedStudySequence = Sequence(
            [item(ReferencedSOPInstanceUID="1.2.3", PatientID="DEEP-0042")]
        )
        ds = item(PatientName="DOE^JANE")
        ds.RequestAttributesSequence = Sequence([item(), request])
        ds.OtherPatientIDsSequence = Sequence(
            [item(PatientID="OTHER-9", IssuerOfPatientID="COUNTY")]
        )
        texts = set(collect_phi_values(ds).texts())
        assert texts >= {
            "ACC-55501",
            "RP-777",
            "ROE^RICHARD",
            "ROE",
            "RICHARD",
            "DEEP-0042",
            "OTHER-9",
            "COUNTY",
        }

    def test_every_value_of_a_multi_valued_person_name_is_collected(self) -> None:
        ds = item(OtherPatientNames=["DOE^JOHN", "ROE^RICHARD"], PatientName="DOE^JANE")
        names = texts_of(collect_phi_values(ds), "OtherPatientNames")
        assert names >= {"DOE^JOHN", "ROE^RICHARD", "JOHN", "ROE", "RICHARD"}

    def test_person_names_in_any_pn_element_are_collected_private_ones_too(self) -> None:
        ds = item(PatientName="DOE^JANE")
        ds.add_new(0x00091010, "PN", "PRIVATE^PERSON")
        ds.ContentSequence = Sequence([item(PersonName="OBSERVER^OLGA")])
        phi = collect_phi_values(ds)
        assert texts_of(phi, "(0009,1010)") >= {"PRIVATE^PERSON", "PRIVATE", "PERSON"}
        assert texts_of(phi, "PersonName") >= {"OBSERVER^OLGA", "OLGA"}

    def test_compound_names_are_also_collected_by_part(self) -> None:
        ds = item(PatientName="VAN DER BERG-SMYTHE^ANNA")
        names = texts_of(collect_phi_values(ds), "PatientName")
        assert names >= {"VAN DER BERG-SMYTHE", "BERG", "SMYTHE", "ANNA"}
        assert not names & {"VAN", "DER"}  # particles identify no one

    def test_one_letter_components_are_not_values_on_their_own(self) -> None:
        names = texts_of(collect_phi_values(item(PatientName="DOE^J^K")), "PatientName")
        assert names == {"DOE^J^K", "DOE"}

    def test_a_name_written_with_the_wrong_vr_is_still_a_name(self) -> None:
        ds = Dataset()
        ds.add(DataElement(0x00100010, "LO", "DOE^JANE"))
        phi = collect_phi_values(ds)
        assert {value.category for value in phi.values} == {PhiCategory.NAME}
        assert texts_of(phi, "PatientName") >= {"DOE", "JANE"}

    def test_values_only_in_raw_bytes_are_collected_after_a_file_round_trip(self) -> None:
        ds = item(PatientName="DOE^JANE")
        ds.add(DataElement(0x00100020, "UN", b"RAW-31337 "))  # PatientID written as UN bytes
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=False)
        reread = dcmread(io.BytesIO(buffer.getvalue()), force=True)
        assert "RAW-31337" in collect_phi_values(reread).texts()


class TestProfileOptions:
    def test_birth_date_is_collected_even_when_dates_are_retained(self, header: Dataset) -> None:
        texts = collect_phi_values(header, include_dates=False).texts()
        assert "19610312" in texts
        assert "20240105" not in texts

    def test_dates_and_the_date_part_of_datetimes_are_collected_by_default(
        self, header: Dataset
    ) -> None:
        phi = collect_phi_values(header)
        assert texts_of(phi, "StudyDate") == {"20240105"}
        assert texts_of(phi, "AcquisitionDateTime") == {"20240105"}

    def test_institution_values_follow_the_retain_institution_option(self, header: Dataset) -> None:
        institution = {"Springfield General", "1 Main Street, Springfield", "Nuclear Medicine East"}
        assert institution <= set(collect_phi_values(header).texts())
        kept = set(collect_phi_values(header, include_institution=False).texts())
        assert not institution & kept
        assert "SPRINGFIELD HOSP" in kept  # the ID's issuer names the patient's record

    def test_institution_code_meaning_is_an_institution_name(self) -> None:
        ds = item(PatientName="DOE^JANE")
        ds.InstitutionCodeSequence = Sequence(
            [item(CodeValue="SGH", CodingSchemeDesignator="99LOCAL", CodeMeaning="Shelbyville")]
        )
        assert texts_of(collect_phi_values(ds), "InstitutionCodeSequence") == {"Shelbyville"}
        assert not texts_of(
            collect_phi_values(ds, include_institution=False), "InstitutionCodeSequence"
        )

    def test_device_values_follow_the_retain_device_option(self, header: Dataset) -> None:
        header.DateOfLastCalibration = "20231201"
        assert {"CTSCAN07", "SN-88123", "20231201"} <= set(collect_phi_values(header).texts())
        kept = set(collect_phi_values(header, include_device=False).texts())
        assert not {"CTSCAN07", "SN-88123", "20231201"} & kept

    def test_an_institution_named_like_the_equipment_maker_is_not_collected(self) -> None:
        ds = item(PatientName="DOE^JANE", InstitutionName="TOSHIBA", Manufacturer="TOSHIBA_MEC")
        assert "TOSHIBA" not in collect_phi_values(ds).texts()


class TestPrivacyOfTheValuesThemselves:
    def test_the_repr_of_values_never_shows_the_text(self, header: Dataset) -> None:
        phi = collect_phi_values(header)
        shown = repr(phi) + repr(phi.values) + str(phi.values[0])
        assert "DOE" not in shown
        assert "00123456" not in shown
        assert "PatientName" in repr(phi.values[0])

    def test_texts_are_distinct_and_in_collection_order(self) -> None:
        ds = item(PatientName="DOE^JANE", ReferringPhysicianName="DOE^JANE")
        texts = collect_phi_values(ds).texts()
        assert texts == ("DOE^JANE", "DOE", "JANE")

    def test_phi_values_are_hashable_so_results_can_be_memoized(self, header: Dataset) -> None:
        assert hash(collect_phi_values(header)) == hash(collect_phi_values(header))


class TestHeaderWalk:
    def test_walk_reaches_every_level_and_reports_paths(self) -> None:
        ds = item(PatientName="DOE^JANE")
        ds.ReferencedStudySequence = Sequence([item(), item(ReferencedSOPInstanceUID="1.2.3.4")])
        paths = {value.path for value in header_values(ds)}
        assert paths == {"(0010,0010)", "(0008,1110)[1]/(0008,1155)"}

    def test_pixel_data_is_never_read_as_text(self) -> None:
        ds = item(PatientName="DOE^JANE")
        ds.add_new(0x7FE00010, "OB", b"DOE^JANE" * 4)
        assert [value.path for value in header_values(ds)] == ["(0010,0010)"]

    def test_binary_values_yield_their_printable_runs(self) -> None:
        ds = Dataset()
        ds.add_new(0x00091010, "UN", b"\x01\x02\x00\x00ROE RICHARD\x03\x04\x00\xffXY")
        (value,) = header_values(ds)
        assert value.binary
        assert "ROE RICHARD" in value.texts
