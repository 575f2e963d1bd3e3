"""The verification pass: any value of the original header found again in the output is reported."""

from __future__ import annotations

import io
import string
import struct
from dataclasses import dataclass
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian

from radstream.deid.phi import PhiValues, collect_phi_values
from radstream.deid.variants import date_variants, name_variants
from radstream.deid.verify import ResidualPhi, find_residual_phi
from radstream.dicom import read_instance


def item(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def original() -> Dataset:
    ds = item(
        PatientName="JOHNSTONE^MARGARET^ANN",
        PatientID="00847120",
        PatientBirthDate="19610312",
        AccessionNumber="ACC55501234",
        StudyDate="20240105",
        InstitutionName="Springfield General Hospital",
        ReferringPhysicianName="HIBBARD^JULIUS",
        StudyDescription="CT CHEST W/O CONTRAST",
        Manufacturer="ACME Imaging",
    )
    ds.RequestAttributesSequence = Sequence(
        [item(RequestedProcedureID="RP-90210", AccessionNumber="ACC55501234")]
    )
    return ds


PHI = collect_phi_values(original())
PSEUDONYM = "PSN00847120X"


def deidentified() -> Dataset:
    """What a correct de-identification of :func:`original` looks like."""
    ds = item(
        PatientName="PSN00847120X",
        PatientID=PSEUDONYM,
        PatientBirthDate="",
        AccessionNumber="",
        StudyDate="20231201",  # shifted
        StudyDescription="CT CHEST W/O CONTRAST",
        ImageComments="Patient [NAME] tolerated the exam. Follow-up in 3 months.",
        StudyInstanceUID="2.25.198461031200847120555",
        Manufacturer="ACME Imaging",
        PatientIdentityRemoved="YES",
        DeidentificationMethod="Basic Application Confidentiality Profile",
        Modality="CT",
    )
    ds.DeidentificationMethodCodeSequence = Sequence(
        [item(CodeValue="113100", CodingSchemeDesignator="DCM", CodeMeaning="Basic Profile")]
    )
    ds.RequestAttributesSequence = Sequence(
        [item(RequestedProcedureID="", ReferencedStudySequence=Sequence([item()]))]
    )
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091010, "LO", "calibration ok")
    return ds


def residuals(ds: Dataset, phi: PhiValues = PHI) -> list[ResidualPhi]:
    return find_residual_phi(ds, phi, allowed=(PSEUDONYM,))


def test_a_correctly_deidentified_header_has_no_residuals() -> None:
    assert residuals(deidentified()) == []


def test_the_original_header_is_full_of_residuals() -> None:
    kinds = {residual.kind for residual in residuals(original())}
    assert kinds >= {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"}


class TestWhereResidualsAreFound:
    def test_an_exact_residual_in_a_nested_sequence(self) -> None:
        ds = deidentified()
        ds.RequestAttributesSequence[0].ReferencedStudySequence[0].StudyComments = "see ACC55501234"
        assert residuals(ds) == [
            ResidualPhi(
                path="(0040,0275)[0]/(0008,1110)[0]/(0032,4000)",
                kind="AccessionNumber",
                match="exact",
            )
        ]

    @pytest.mark.parametrize("typo", ["Jonhstone", "Johnstome", "Johnston", "Johnsstone"])
    def test_a_one_letter_typo_of_the_surname_in_a_comment_is_a_fuzzy_residual(
        self, typo: str
    ) -> None:
        ds = deidentified()
        ds.ImageComments = f"Patient {typo} tolerated the exam."
        assert residuals(ds) == [ResidualPhi(path="(0020,4000)", kind="PatientName", match="fuzzy")]

    def test_the_birth_date_in_another_format_is_a_residual(self) -> None:
        ds = deidentified()
        ds.PatientComments = "DOB 3/12/1961"
        assert residuals(ds) == [
            ResidualPhi(path="(0010,4000)", kind="PatientBirthDate", match="exact")
        ]

    def test_a_residual_inside_a_private_element(self) -> None:
        ds = deidentified()
        ds.add_new(0x00091011, "LO", "ordered by Hibbard")
        assert residuals(ds) == [
            ResidualPhi(path="(0009,1011)", kind="ReferringPhysicianName", match="exact")
        ]

    def test_a_residual_inside_undecoded_private_bytes(self) -> None:
        ds = deidentified()
        ds.add_new(0x00091012, "UN", b"\x00\x01\x02\x03\x88Margaret Johnstone\x00\xff\xfe")
        assert {(r.path, r.kind) for r in residuals(ds)} == {("(0009,1012)", "PatientName")}

    def test_a_residual_inside_one_value_of_a_multi_valued_element(self) -> None:
        ds = deidentified()
        ds.SoftwareVersions = ["VE11C", "build 7", "00847120"]
        assert residuals(ds) == [ResidualPhi(path="(0018,1020)", kind="PatientID", match="exact")]

    def test_a_residual_person_name_element(self) -> None:
        ds = deidentified()
        ds.OperatorsName = ["TECH^TOM", "Johnstone^Margaret"]
        assert {r.kind for r in residuals(ds) if r.path == "(0008,1070)"} == {"PatientName"}

    def test_a_residual_in_the_file_meta(self) -> None:

        ds = deidentified()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.SourceApplicationEntityTitle = "HIBBARD_WS"
        assert [(r.path, r.kind) for r in residuals(ds)] == [
            ("(0002,0016)", "ReferringPhysicianName")
        ]

    def test_an_id_typed_with_letters_for_digits_is_a_fuzzy_residual(self) -> None:
        ds = deidentified()
        ds.ImageComments = "id O0847I2O"
        assert residuals(ds) == [ResidualPhi(path="(0020,4000)", kind="PatientID", match="fuzzy")]


class TestWhatIsNotAResidual:
    def test_the_pseudonym_is_not_a_residual_even_when_it_contains_the_id(self) -> None:
        ds = deidentified()
        assert find_residual_phi(ds, PHI) != []  # "PSN00847120X" holds the original ID
        assert find_residual_phi(ds, PHI, allowed=(PSEUDONYM,)) == []

    def test_de_identification_markers_are_not_residuals(self) -> None:
        phi = collect_phi_values(item(OperatorsName="CONFIDENTIALITY^BASIC"))
        assert find_residual_phi(deidentified(), phi) == []

    def test_an_id_inside_a_longer_number_is_not_a_residual(self) -> None:
        ds = deidentified()
        ds.SeriesInstanceUID = "2.25.99008471201"
        assert residuals(ds) == []

    def test_retained_uids_are_not_searched_when_the_profile_keeps_them(self) -> None:
        ds = deidentified()
        ds.SOPInstanceUID = "1.2.840.99.20240105.847120.1"
        assert {r.path for r in residuals(ds)} == {"(0008,0018)"}
        assert find_residual_phi(ds, PHI, allowed=(PSEUDONYM,), retained_uids=True) == []

    def test_very_short_values_are_not_searched(self) -> None:
        phi = collect_phi_values(item(PatientName="LI^WU", StudyID="12"))
        ds = deidentified()
        ds.ImageComments = "LI 12 mm WU"  # the parts, never the name
        assert find_residual_phi(ds, phi) == []
        ds.ImageComments = "wu li"
        assert [r.kind for r in find_residual_phi(ds, phi)] == ["PatientName"]

    def test_defined_terms_and_standard_code_meanings_are_not_fuzzy_matched(self) -> None:
        phi = collect_phi_values(item(PatientName="KNEES^PNAMES"))
        ds = deidentified()
        ds.BodyPartExamined = "KNEE"
        ds.ContentSequence = Sequence(
            [
                item(
                    ValueType="PNAME",
                    ConceptNameCodeSequence=Sequence(
                        [
                            item(
                                CodeValue="T-D3000",
                                CodingSchemeDesignator="SRT",
                                CodeMeaning="Knee",
                            )
                        ]
                    ),
                )
            ]
        )
        assert find_residual_phi(ds, phi) == []

    def test_a_coded_string_holding_the_name_itself_is_a_residual(self) -> None:
        ds = deidentified()
        ds.BodyPartExamined = "JOHNSTONE"
        assert residuals(ds) == [ResidualPhi(path="(0018,0015)", kind="PatientName", match="exact")]

    def test_a_name_equal_to_a_defined_term_of_the_coded_attribute_is_not_a_residual(
        self,
    ) -> None:
        # Orthanc's test "KNEE" patient: the name is the body part's code.
        phi = collect_phi_values(item(PatientName="KNEE"))
        ds = deidentified()
        ds.BodyPartExamined = "KNEE"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        assert find_residual_phi(ds, phi) == []
        assert find_residual_phi(ds, collect_phi_values(item(PatientName="LOCALIZER"))) == []

    def test_a_code_in_a_nested_item_is_a_code_too(self) -> None:
        phi = collect_phi_values(item(PatientName="KNEE"))
        ds = deidentified()
        ds.RequestAttributesSequence[0].BodyPartExamined = "KNEE"
        assert find_residual_phi(ds, phi) == []

    def test_the_same_name_in_an_attribute_that_is_not_coded_is_a_residual(self) -> None:
        phi = collect_phi_values(item(PatientName="KNEE"))
        ds = deidentified()
        ds.BodyPartExamined = "KNEE"
        ds.SequenceName = "KNEE"  # SH: free text
        assert find_residual_phi(ds, phi) == [
            ResidualPhi(path="(0018,0024)", kind="PatientName", match="exact")
        ]

    def test_a_coil_named_for_the_body_part_the_instance_codes_is_not_a_residual(self) -> None:
        # Orthanc's "KNEE" MR instances: Body Part Examined KNEE, Receive Coil Name SENSE-Knee-8.
        phi = collect_phi_values(item(PatientName="KNEE"))
        ds = deidentified()
        ds.BodyPartExamined = "KNEE"
        ds.ReceiveCoilName = "SENSE-Knee-8"
        ds.TransmitCoilName = "KNEE"
        assert find_residual_phi(ds, phi) == []

    def test_a_coil_name_still_holds_a_body_part_the_instance_does_not_code(self) -> None:
        phi = collect_phi_values(item(PatientName="KNEE"))
        ds = deidentified()
        ds.BodyPartExamined = "ANKLE"
        ds.ReceiveCoilName = "SENSE-Knee-8"
        assert find_residual_phi(ds, phi) == [
            ResidualPhi(path="(0018,1250)", kind="PatientName", match="exact")
        ]

    def test_a_coil_name_still_holds_any_other_phi_value(self) -> None:
        phi = collect_phi_values(item(PatientName="KNEE^JOHNSTONE"))
        ds = deidentified()
        ds.BodyPartExamined = "KNEE"
        ds.ReceiveCoilName = "Johnstone-Knee-8"
        assert ResidualPhi(path="(0018,1250)", kind="PatientName", match="exact") in (
            find_residual_phi(ds, phi)
        )

    @pytest.mark.parametrize(
        ("keyword", "value"),
        [
            ("ViewPosition", "KNEE"),  # a defined term of another attribute, not this one
            ("ScanOptions", "KNEE"),
            ("AcquisitionTerminationCondition", "KNEE"),  # CS without a curated list
        ],
    )
    def test_the_same_name_in_a_coded_attribute_that_has_no_such_term_is_a_residual(
        self, keyword: str, value: str
    ) -> None:
        phi = collect_phi_values(item(PatientName="KNEE"))
        ds = deidentified()
        setattr(ds, keyword, value)
        tag = tag_for_keyword(keyword)
        assert tag is not None
        path = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        assert find_residual_phi(ds, phi) == [
            ResidualPhi(path=path, kind="PatientName", match="exact")
        ]

    def test_a_name_that_is_only_part_of_a_defined_term_is_a_residual(self) -> None:
        phi = collect_phi_values(item(PatientName="PELVIS^PAT"))
        ds = deidentified()
        ds.BodyPartExamined = "ABDOMENPELVIS"
        assert [r.path for r in find_residual_phi(ds, phi)] == ["(0018,0015)"]

    def test_a_defined_term_written_with_another_vr_is_no_code(self) -> None:
        phi = collect_phi_values(item(PatientName="KNEE"))
        ds = deidentified()
        ds.add_new(0x00180015, "LO", "KNEE")  # Body Part Examined with a wrong VR
        assert [r.path for r in find_residual_phi(ds, phi)] == ["(0018,0015)"]

    def test_an_institution_named_like_the_equipment_maker_is_not_a_residual(self) -> None:
        phi = collect_phi_values(item(StationName="ACME_CT", Manufacturer="ACME Imaging"))
        assert find_residual_phi(deidentified(), phi) == []

    def test_the_replacement_tokens_are_not_residuals(self) -> None:
        phi = collect_phi_values(item(PatientName="NAME^DATE"))
        ds = deidentified()
        ds.ImageComments = "[NAME] born [DATE]"
        assert find_residual_phi(ds, phi) == []

    def test_results_name_the_place_and_the_kind_never_the_value(self) -> None:
        ds = deidentified()
        ds.ImageComments = "Margaret Johnstone"
        shown = repr(residuals(ds))
        assert "PatientName" in shown
        assert "Johnstone" not in shown
        assert "JOHNSTONE" not in shown


# --- property: a planted value is always found -------------------------------------------------


@dataclass(frozen=True)
class Carrier:
    keyword_or_tag: str | int
    vr: str
    multi: bool = False


CARRIERS = [
    Carrier("ImageComments", "LT"),
    Carrier("StudyDescription", "LO"),
    Carrier("ProtocolName", "LO"),
    Carrier("TextValue", "UT"),
    Carrier("PerformingPhysicianName", "PN"),
    Carrier("SoftwareVersions", "LO", multi=True),
    Carrier("ContentDescription", "LO"),
    Carrier(0x00091010, "LO"),
    Carrier(0x00091011, "UN"),
    Carrier(0x00091012, "OB"),
    # Public elements no dictionary knows: the profile removes them, the verifier still looks.
    Carrier(0x44440010, "LO"),
    Carrier(0x00089999, "UT"),
    Carrier(0x44440011, "UN"),
]
SEQUENCES = ["ReferencedStudySequence", "ContentSequence", "RequestAttributesSequence"]
WORDS = ["CT", "chest", "axial", "3", "mm", "contrast", "left", "follow-up", "series"]

names = st.text(alphabet=string.ascii_uppercase, min_size=3, max_size=12)
identifiers = st.from_regex(r"[A-Z]{0,3}[1-9][0-9]{3,9}", fullmatch=True)
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))


@st.composite
def planted_cases(draw: st.DrawFn) -> tuple[Dataset, PhiValues, str, str]:
    """(output with a PHI rendering planted, the PHI values, the expected path and kind)."""
    family, given_name = draw(names), draw(names)
    birth = draw(dates).strftime("%Y%m%d")
    source = item(
        PatientName=f"{family}^{given_name}",
        PatientID=draw(identifiers),
        PatientBirthDate=birth,
    )
    phi = collect_phi_values(source)
    kind = draw(st.sampled_from(["PatientName", "PatientID", "PatientBirthDate"]))
    if kind == "PatientName":
        rendering = draw(st.sampled_from(sorted(name_variants(f"{family}^{given_name}"))))
    elif kind == "PatientBirthDate":
        rendering = draw(st.sampled_from(sorted(date_variants(birth))))
    else:
        rendering = str(source.PatientID)
    rendering = draw(st.sampled_from([rendering, rendering.lower(), rendering.title()]))
    before = draw(st.lists(st.sampled_from(WORDS), max_size=3))
    after = draw(st.lists(st.sampled_from(WORDS), max_size=3))
    text = " ".join([*before, rendering, *after])

    output = item(Modality="CT", StudyDescription="CT CHEST W/O CONTRAST")
    output.add_new(0x00090010, "LO", "ACME PRIVATE")
    holder, path = output, ""
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        keyword = draw(st.sampled_from(SEQUENCES))
        index = draw(st.integers(min_value=0, max_value=2))
        items = [item(Modality="CT") for _ in range(index + 1)]
        setattr(holder, keyword, Sequence(items))
        path += f"{_tag_text(tag_for_keyword(keyword))}[{index}]/"
        holder = items[index]
        holder.add_new(0x00090010, "LO", "ACME PRIVATE")
    carrier = draw(st.sampled_from(CARRIERS))
    _plant(holder, carrier, text, draw(st.integers(min_value=0, max_value=2)))
    where = carrier.keyword_or_tag
    tag = tag_for_keyword(where) if isinstance(where, str) else where
    return output, phi, f"{path}{_tag_text(tag)}", kind


def _plant(holder: Dataset, carrier: Carrier, text: str, position: int) -> None:
    if carrier.vr == "OB":
        holder.add_new(carrier.keyword_or_tag, "OB", b"\x00\x07\xff" + text.encode() + b"\x01")
    elif carrier.vr == "UN":
        holder.add_new(carrier.keyword_or_tag, "UN", text.encode("latin-1") + b"\x00")
    elif carrier.multi:
        values = ["V1", "B2"]
        values.insert(position, text)
        setattr(holder, str(carrier.keyword_or_tag), values)
    elif isinstance(carrier.keyword_or_tag, int):
        holder.add_new(carrier.keyword_or_tag, carrier.vr, text)
    else:
        setattr(holder, carrier.keyword_or_tag, text)


def _tag_text(tag: int | None) -> str:
    assert tag is not None
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@pytest.mark.filterwarnings("ignore:The value length")  # planted text may overrun the VR
@given(planted_cases())
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_phi_value_planted_anywhere_is_always_found(
    case: tuple[Dataset, PhiValues, str, str],
) -> None:
    output, phi, path, kind = case
    found = {(residual.path, residual.kind) for residual in find_residual_phi(output, phi)}
    assert (path, kind) in found


@pytest.mark.parametrize("depth", [0, 5])
def test_a_value_deep_in_sequences_is_reported_at_its_full_path(depth: int) -> None:
    output = item(Modality="CT")
    holder, path = output, ""
    for _ in range(depth):
        child = item()
        holder.ContentSequence = Sequence([item(), child])
        holder, path = child, path + "(0040,A730)[1]/"
    holder.TextValue = "margaret johnstone"
    found = find_residual_phi(output, PHI)
    assert {(r.path, r.kind) for r in found} == {(path + "(0040,A160)", "PatientName")}


class TestNumbersCarryingText:
    """A name written as the bytes of numeric values is found in the byte order of the file."""

    @staticmethod
    def rows_spelling(name: bytes, order: str) -> list[int]:
        padded = name.ljust(len(name) + len(name) % 2, b" ")
        return list(struct.unpack(f"{order}{len(padded) // 2}H", padded))

    def test_a_name_in_the_bytes_of_little_endian_numbers_is_a_residual(self) -> None:
        ds = deidentified()
        ds.Rows = self.rows_spelling(b"JOHNSTONE^MARGARET", "<")
        assert ResidualPhi(path="(0028,0010)", kind="PatientName", match="exact") in residuals(ds)

    def test_a_name_in_the_bytes_of_big_endian_numbers_is_a_residual(self) -> None:
        ds = deidentified()
        ds.Rows = self.rows_spelling(b"JOHNSTONE^MARGARET", ">")
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "2.25.1"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        read = read_instance(buffer.getvalue())  # every element parsed, as the pipeline reads
        assert read.original_encoding == (False, False)
        assert ResidualPhi(path="(0028,0010)", kind="PatientName", match="exact") in residuals(read)

    def test_ordinary_numbers_are_not_residuals(self) -> None:
        ds = deidentified()
        ds.Rows, ds.Columns, ds.BitsAllocated = 512, 512, 16
        assert residuals(ds) == []
