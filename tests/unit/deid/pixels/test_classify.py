"""Is a line read from the pixels PHI? The instance's own header values, OCR's errors, Presidio."""

from __future__ import annotations

import functools

import pytest

from radstream.deid.phi import PhiValue, PhiValues
from radstream.deid.pixels.classify import PhiClassifier
from tests.unit.deid.study_builder import shared_text_cleaner

PHI = PhiValues(
    values=(
        PhiValue(kind="PatientName", text="DOE^JANE^MARIE"),
        PhiValue(kind="PatientName", text="DOE"),
        PhiValue(kind="PatientName", text="JANE"),
        PhiValue(kind="PatientID", text="00047113"),
        PhiValue(kind="PatientBirthDate", text="19610317"),
        PhiValue(kind="AccessionNumber", text="ACC-90417"),
        PhiValue(kind="InstitutionName", text="CLEVELAND MEMORIAL HOSPITAL"),
        PhiValue(kind="OperatorsName", text="AC"),
        PhiValue(kind="PatientName", text="JO"),
    )
)


@functools.cache
def classifier() -> PhiClassifier:
    return PhiClassifier(shared_text_cleaner().analyzer)


def verdict_on(text: str) -> tuple[bool, tuple[str, ...]]:
    result = classifier().classify(text, PHI)
    return result.phi, result.kinds


class TestTheInstancesOwnValues:
    @pytest.mark.parametrize(
        "text",
        [
            "DOE^JANE",
            "Doe, Jane",
            "jane doe",
            "JANE M DOE",
            "DOE JANE MARIE",
            "Name: DOE,JANE",
            "J. Doe",
        ],
    )
    def test_names_in_any_order_and_case(self, text: str) -> None:
        phi, kinds = verdict_on(text)
        assert phi and "PatientName" in kinds

    @pytest.mark.parametrize(
        "text",
        [
            "19610317",
            "1961-03-17",
            "17/03/1961",
            "03/17/1961",
            "3/17/1961",
            "17-Mar-1961",
            "17.03.1961",
            "DOB: March 17, 1961",
        ],
    )
    def test_dates_in_any_common_format(self, text: str) -> None:
        phi, kinds = verdict_on(text)
        assert phi and "PatientBirthDate" in kinds

    @pytest.mark.parametrize("text", ["MRN 00047113", "47113 ", "ID: 0OO47113", "ACC90417"])
    def test_ids_with_or_without_zeros_separators_and_misread_digits(self, text: str) -> None:
        phi, kinds = verdict_on(text)
        assert phi and kinds[0] in {"PatientID", "AccessionNumber"}

    @pytest.mark.parametrize(
        "text",
        [
            "D0E JANE",  # O read as 0
            "DOE JAME",  # N read as M
            "CLEVELAND MEMORlAL HOSPITAL",  # I read as l
            "CLEVELAN...",  # cut short by the device
            "CLEVELAND MEMORIAL",
        ],
    )
    def test_ocr_errors_and_truncation(self, text: str) -> None:
        assert verdict_on(text)[0]

    def test_two_letters_of_the_patients_name_but_not_a_technologists_initials(self) -> None:
        phi, kinds = verdict_on("JO")
        assert phi and kinds == ("PatientName",)
        assert not verdict_on("AC")[0]  # the operator's initials, and abdominal circumference


class TestWithoutTheHeader:
    @pytest.mark.parametrize(
        ("text", "kind"),
        [
            ("John Smith", "PERSON"),
            ("Dr. Hibbard", "PERSON"),
            ("SMITH^JOHN", "DICOM_NAME"),
            ("DOB 04/11/1972", "DATE_TIME"),
            ("08:48:26 AM 4/14/2020", "DATE_TIME"),
            ("00079241539", "ID_NUMBER"),
            ("05:24:57PM", "DATE_TIME"),
            ("14:02", "DATE_TIME"),
            ("MRN: QX7731", "MRN"),
            ("555-123-4567", "PHONE_NUMBER"),
        ],
    )
    def test_other_people_dates_and_numbers_are_phi(self, text: str, kind: str) -> None:
        phi, kinds = verdict_on(text)
        assert phi and kind in kinds


class TestCalendarDatesWithoutTheHeader:
    """A prior study's date is in no header; Presidio missed these, a date's shape does not."""

    @pytest.mark.parametrize(
        "text",
        [
            "Prior Nov 01 2016",
            "Prior02/23/2011",
            "13-0CT-2022",
            "Sep 19",
            "04 Jul",
            "1987-08-13",
            "28.12.1974",
        ],
    )
    def test_a_date_or_a_day_and_month_is_phi(self, text: str) -> None:
        phi, kinds = verdict_on(text)
        assert phi and "DATE_TIME" in kinds

    @pytest.mark.parametrize(
        "text", ["SL 0.62 mm", "v3.10.0", "DECUB 2", "Page 1 of 1", "77 kV  25.8 mAs", "Octopus 5"]
    )
    def test_numbers_and_words_that_are_not_dates_are_not(self, text: str) -> None:
        phi, kinds = verdict_on(text)
        assert not phi, kinds


class TestAValueBesideAPhiLabel:
    """What follows "ID:", "Pt:", "DOB" ... is PHI even when OCR misread it past matching."""

    @pytest.mark.parametrize(
        "text",
        ["ID:MR8_39", "ID: 0OO4_711", "Pt: D0E J4NF", "PID 3815_51", "DOB1958/O8/l6", "Acc: A1l_8"],
    )
    def test_a_misread_value_after_its_label_is_phi(self, text: str) -> None:
        phi, kinds = verdict_on(text)
        assert phi and "LABELLED_VALUE" in kinds

    @pytest.mark.parametrize("text", ["ID:", "DOB", "Acc:", "Name:", "Pt: x"])
    def test_a_label_without_a_value_is_not(self, text: str) -> None:
        phi, kinds = verdict_on(text)
        assert not phi, kinds

    @pytest.mark.parametrize("text", ["Idle 5", "Refresh 30Hz", "Pidgin 12", "Reference 5"])
    def test_words_that_begin_like_a_label_are_not_labels(self, text: str) -> None:
        assert "LABELLED_VALUE" not in verdict_on(text)[1]


class TestAnnotationsAreKept:
    @pytest.mark.parametrize(
        "text",
        [
            "L",
            "R",
            "LT",
            "PORTABLE",
            "ERECT",
            "SUPINE",
            "AP",
            "L12-5",
            "6C1 HD",
            "Adv Breast",
            "Sag Liver L-M",
            "Gain 60%",
            "Depth 16cm",
            "H4.00 MHz",
            "20dB/DR60",
            "DTCE M",
            "THI",
            "P Med",
            "120 kV 250 mAs",
            "TIS: 0.5 MI: 1.4",
            "19fps",
            "x3",
            "4.0cm",
            "SIEMENS",
            "W 400 L 40",
            "HGen",
            "P Low",
            # CT dose annotations the small NER model takes for an organization and a person.
            "CTDIvol 28.6 mGy",
            "DLP 1290 mGy-cm",
        ],
    )
    def test_device_annotations_are_not_phi(self, text: str) -> None:
        phi, kinds = verdict_on(text)
        assert not phi, kinds

    def test_a_verdict_names_its_evidence_never_the_text(self) -> None:
        result = classifier().classify("DOE JANE", PHI)
        assert "DOE" not in result.reason and "JANE" not in result.reason
        assert "PatientName" in result.reason

    def test_without_an_analyzer_the_header_and_patterns_still_decide(self) -> None:
        plain = PhiClassifier()
        assert plain.classify("Doe, Jane", PHI).phi
        assert plain.classify("00079241539", PHI).phi
        assert not plain.classify("PORTABLE", PHI).phi
