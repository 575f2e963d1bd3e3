"""Textual variants of PHI values, and the patterns that find them in free text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radstream.deid.phi import PhiCategory, PhiValue
from radstream.deid.variants import (
    date_variants,
    fold,
    identifier_variants,
    name_variants,
    normalise,
    organization_variants,
    phone_variants,
    value_pattern,
    variants,
)


def finds(value: PhiValue, text: str, *, letter_boundaries: bool = True) -> bool:
    pattern = value_pattern(value, letter_boundaries=letter_boundaries)
    assert pattern is not None
    return pattern.search(fold(text)) is not None


PATIENT = PhiValue(kind="PatientName", text="DOE^JANE^MARIE")
BIRTH_DATE = PhiValue(kind="PatientBirthDate", text="19610312")
PATIENT_ID = PhiValue(kind="PatientID", text="00123-456")


class TestNames:
    def test_a_dicom_name_is_rendered_the_ways_people_write_it(self) -> None:
        assert name_variants("DOE^JANE^MARIE") >= {
            "JANE DOE",
            "DOE, JANE",
            "DOE JANE",
            "J. DOE",
            "DOE J",
            "JANE MARIE DOE",
            "JANE M. DOE",
            "DOE, JANE MARIE",
        }

    def test_a_name_without_carets_is_also_read_backwards(self) -> None:
        assert name_variants("Jane Doe") >= {"Jane Doe", "Doe Jane"}

    def test_every_component_group_is_rendered(self) -> None:
        assert {"TARO YAMADA", "YAMADA TARO"} <= name_variants("YAMADA^TARO=山田^太郎")

    @pytest.mark.parametrize(
        "text",
        [
            "doe jane",
            "Jane-Doe",
            "DOE,JANE",
            "Doe, Jane M.",
            "J. Doe",
            "jane   DOE",
            "JANEDOE",
            "seen: Jane Marie Doe.",
            "DOE^JANE",
        ],
    )
    def test_case_order_and_punctuation_variants_are_found(self, text: str) -> None:
        assert finds(PATIENT, text)

    @pytest.mark.parametrize("text", ["Jane Does", "Janet Doe-Smith", "adj doe"])
    def test_a_name_is_not_found_inside_longer_words(self, text: str) -> None:
        assert not finds(PhiValue(kind="PatientName", text="DOE^JANE"), text)

    def test_accents_and_umlaut_spellings_do_not_hide_a_name(self) -> None:
        muller = PhiValue(kind="PatientName", text="MÜLLER^JÖRG")
        assert finds(muller, "Jorg Muller")
        assert finds(muller, "jörg müller")
        assert finds(muller, "Joerg Mueller")

    def test_hyphenated_and_spaced_family_names_are_the_same_name(self) -> None:
        family = PhiValue(kind="PatientName", text="DOE-SMITH")
        assert finds(family, "DOE SMITH")
        assert finds(family, "doesmith")


class TestDates:
    def test_a_dicom_date_is_rendered_in_common_formats(self) -> None:
        assert date_variants("19610312") >= {
            "19610312",
            "1961-03-12",
            "12/03/1961",
            "03/12/1961",
            "12.03.1961",
            "12 Mar 1961",
            "March 12, 1961",
        }

    def test_something_that_is_no_date_is_only_itself(self) -> None:
        assert date_variants("19611399") == {"19611399"}
        assert date_variants("1961") == {"1961"}

    @pytest.mark.parametrize(
        "text",
        [
            "DOB 3/12/1961",
            "born 12.3.1961",
            "1961-03-12",
            "12-MAR-1961",
            "march 12, 1961",
            "19610312103000",  # the start of a DT
            "12/03/61",
        ],
    )
    def test_a_date_is_found_in_other_formats(self, text: str) -> None:
        assert finds(BIRTH_DATE, text)

    def test_a_date_is_not_found_inside_a_longer_number(self) -> None:
        assert not finds(BIRTH_DATE, "2.25.919610312")


class TestIdentifiers:
    def test_separators_and_leading_zeros_are_dropped_in_variants(self) -> None:
        assert identifier_variants("00123-456") == {"00123-456", "00123456", "123456"}

    @pytest.mark.parametrize("text", ["MRN 123456", "id:00123456", "ref 123 456", "MRN123456"])
    def test_an_id_is_found_with_or_without_separators_and_zeros(self, text: str) -> None:
        assert finds(PATIENT_ID, text)

    @pytest.mark.parametrize("text", ["9123456", "1234567", "2.25.99123456"])
    def test_an_id_is_not_found_inside_a_longer_number(self, text: str) -> None:
        assert not finds(PATIENT_ID, text)

    def test_phone_numbers_are_also_matched_as_bare_digits(self) -> None:
        assert "5 5 5 1 2 3 4 5 6 7" in phone_variants("+1 555 123-4567")
        phone = PhiValue(kind="PatientTelephoneNumbers", text="+1 555 123-4567")
        assert finds(phone, "call (555) 123 4567")

    def test_institutions_are_matched_with_saint_and_and_spelled_out(self) -> None:
        assert organization_variants("St Mary & Joseph") >= {
            "Saint Mary & Joseph",
            "St Mary and Joseph",
        }
        hospital = PhiValue(kind="InstitutionName", text="St Mary & Joseph")
        assert finds(hospital, "Saint Mary and Joseph hospital")


class TestSubstringSearch:
    def test_long_values_are_found_inside_longer_words_when_asked(self) -> None:
        surname = PhiValue(kind="PatientName", text="JOHNSTONE")
        assert not finds(surname, "xJohnstonex")
        assert finds(surname, "xJohnstonex", letter_boundaries=False)

    def test_initials_and_short_words_keep_their_boundary_even_then(self) -> None:
        name = PhiValue(kind="PatientName", text="TEST^S")
        assert not finds(name, "latest study", letter_boundaries=False)
        assert finds(name, "S. Test", letter_boundaries=False)


class TestDispatch:
    @pytest.mark.parametrize(
        ("kind", "text", "expected"),
        [
            ("PatientName", "DOE^JANE", "JANE DOE"),
            ("StudyDate", "20240105", "2024-01-05"),
            ("PatientTelephoneNumbers", "555-1234", "5 5 5 1 2 3 4"),
            ("InstitutionName", "St Luke", "Saint Luke"),
            ("AccessionNumber", "A-00042", "A00042"),
        ],
    )
    def test_variants_follow_the_category_of_the_kind(
        self, kind: str, text: str, expected: str
    ) -> None:
        assert expected in variants(PhiValue(kind=kind, text=text))

    def test_an_explicit_category_wins_over_the_kind(self) -> None:
        value = PhiValue(kind="(0009,1010)", text="ROE^RICHARD", category=PhiCategory.NAME)
        assert "RICHARD ROE" in variants(value)


@given(st.text(max_size=40))
@settings(max_examples=200)
def test_folding_keeps_every_offset(text: str) -> None:
    assert len(fold(text)) == len(text)


@given(st.text(alphabet=st.characters(categories=["L", "N", "P", "Zs"]), max_size=40))
@settings(max_examples=200)
def test_normalised_text_has_only_lower_case_letters_and_digits(text: str) -> None:
    assert all(char.isalnum() for char in normalise(text))


def test_a_reordered_date_does_not_match_inside_a_longer_number() -> None:
    birth = PhiValue(kind="PatientBirthDate", text="19640130")
    pattern = value_pattern(birth)
    assert pattern is not None
    assert not pattern.search(fold("2.25.301641234567890123456789"))
    assert pattern.search(fold("19640130101500"))  # a DT value starting with the date
    assert pattern.search(fold("born 30/01/1964"))
