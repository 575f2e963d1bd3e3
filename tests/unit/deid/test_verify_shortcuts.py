"""The verifier's shortcuts never change what it finds.

The search is gated (a text in which no anchor literal of any rendering occurs skips the
patterns) and memoized per search (a series repeats its texts). Each shortcut is checked against
the plain definition: every kind whose pattern matches a text is reported, and an answer
remembered for one patient's values is never reused for another's.
"""

from __future__ import annotations

import gc
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from radstream.deid import verify
from radstream.deid.phi import PhiCategory, PhiValue, PhiValues
from radstream.deid.variants import fold, value_pattern, variants
from radstream.deid.verify import _searchable, find_residual_phi, forget_searches

IMAGE_COMMENTS = "(0020,4000)"

# Letters whose case rules are irregular: capital, small and final sigma, dotless i, dotted I,
# sharp s (small and capital), Kelvin sign, long s; and letters fold() rewrites.
SIGMA, SMALL_SIGMA, FINAL_SIGMA = "\u03a3", "\u03c3", "\u03c2"
DOTLESS_I, DOTTED_I, LONG_S, KELVIN = "\u0131", "\u0130", "\u017f", "\u212a"
SHARP_S, CAPITAL_SHARP_S = "\u00df", "\u1e9e"
ODD_LETTERS = (
    f"{SIGMA}{SMALL_SIGMA}{FINAL_SIGMA}{DOTLESS_I}{DOTTED_I}{SHARP_S}{CAPITAL_SHARP_S}"
    f"{KELVIN}{LONG_S}ÅåÆæØøŁł"
)
name_text = st.text(alphabet=string.ascii_letters + ODD_LETTERS + "ÄÖÜäöü", min_size=3, max_size=9)
id_text = st.from_regex(r"[A-Z]{0,3}-?0{0,4}[1-9][0-9]{2,8}(-[A-Z0-9]{1,3})?", fullmatch=True)
date_text = st.dates().map(lambda day: day.strftime("%Y%m%d"))


@st.composite
def phi_values(draw: st.DrawFn) -> PhiValue:
    kind, text = draw(
        st.one_of(
            st.tuples(st.just("PatientName"), st.tuples(name_text, name_text).map("^".join)),
            st.tuples(st.just("PatientID"), id_text),
            st.tuples(st.just("PatientBirthDate"), date_text),
            st.tuples(st.just("InstitutionName"), st.tuples(name_text, name_text).map(" ".join)),
            st.tuples(st.just("PatientTelephoneNumbers"), st.from_regex(r"\+?[0-9 ()-]{7,14}")),
        )
    )
    return PhiValue(kind=kind, text=text)


def _recase(draw: st.DrawFn, text: str) -> str:
    swaps = {
        "s": LONG_S,
        "k": KELVIN,
        "i": DOTLESS_I,
        "I": DOTTED_I,
        SMALL_SIGMA: FINAL_SIGMA,
        FINAL_SIGMA: SIGMA,
        SHARP_S: CAPITAL_SHARP_S,
    }
    out = []
    for char in text:
        choice = draw(st.integers(min_value=0, max_value=3))
        if choice == 0:
            out.append(char.swapcase())
        elif choice == 1:
            out.append(swaps.get(char, char))
        else:
            out.append(char)
    return "".join(out)


@st.composite
def renderings(draw: st.DrawFn, value: PhiValue) -> str:
    """A text around one rendering of ``value``: recased, re-separated, zeros added or dropped."""
    rendering = draw(st.sampled_from(sorted(variants(value))))
    pieces = []
    for run in re.findall(r"\d+|[^\W\d_]+|[\W_]+", rendering):
        if run.isdigit():  # leading zeros dropped or added, as the patterns allow
            pieces.append("0" * draw(st.integers(min_value=0, max_value=2)) + run.lstrip("0"))
        elif not run[0].isalnum():
            pieces.append(draw(st.sampled_from([" ", "", "-", "/", ".", ",", "^", "_", "  "])))
        else:
            pieces.append(run)
    text = _recase(draw, "".join(pieces))
    before = draw(st.text(alphabet="ab1 -/", max_size=4))
    after = draw(st.text(alphabet="ab1 -/", max_size=4))
    return before + text + after


def _comment(text: str) -> Dataset:
    ds = Dataset()
    ds.ImageComments = text
    return ds


def _kinds_the_patterns_match(values: list[PhiValue], text: str) -> set[str]:
    """The definition the gate must not narrow: each value's own pattern on the folded text."""
    folded = fold(text)
    kinds = set()
    for value in values:
        if not _searchable(value):  # too short or generic: the verifier skips it by design
            continue
        pattern = value_pattern(value, letter_boundaries=False)
        if pattern is not None and pattern.search(folded):
            kinds.add(value.kind)
    return kinds


@st.composite
def gate_cases(draw: st.DrawFn) -> tuple[list[PhiValue], str]:
    values = draw(st.lists(phi_values(), min_size=1, max_size=4))
    return values, draw(renderings(draw(st.sampled_from(values))))


@given(gate_cases())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_kind_a_pattern_matches_is_reported_despite_the_gate(
    case: tuple[list[PhiValue], str],
) -> None:
    values, text = case
    expected = _kinds_the_patterns_match(values, text)
    forget_searches()
    found = {
        residual.kind
        for residual in find_residual_phi(_comment(text), PhiValues(values=tuple(values)))
        if residual.path == IMAGE_COMMENTS and residual.match == "exact"
    }
    assert expected <= found


def _kinds(text: str, *values: PhiValue) -> set[str]:
    return {r.kind for r in find_residual_phi(_comment(text), PhiValues(values=values))}


QUIMBY = PhiValue(kind="PatientName", text="QUIMBY^ZELDA")


def test_an_exact_answer_remembered_for_one_patient_is_not_reused_for_another() -> None:
    forget_searches()
    text = "born 12/04/1958"  # digits only: the exact search alone can find it
    assert _kinds(text, QUIMBY) == set()
    assert _kinds(text, PhiValue(kind="PatientBirthDate", text="19580412")) == {"PatientBirthDate"}


def test_a_typo_answer_remembered_for_one_patient_is_not_reused_for_another() -> None:
    forget_searches()
    text = "seen by Farnswroth"  # a typo: the fuzzy search alone can find it
    assert _kinds(text, QUIMBY) == set()
    assert _kinds(text, PhiValue(kind="PatientName", text="FARNSWORTH^OTTO")) == {"PatientName"}


def test_the_word_windows_of_a_text_follow_the_patient_values_they_are_cut_for() -> None:
    forget_searches()
    # Only a window of four words reaches the four-word institution; one patient's one-word
    # name asks for windows of one and two words, which must not be reused for the other.
    text = "Nroth Springfeld Genral Hospitl"
    assert _kinds(text, QUIMBY) == set()
    institution = PhiValue(kind="InstitutionName", text="North Springfield General Hospital")
    assert _kinds(text, institution) == {"InstitutionName"}


def test_a_search_rebuilt_after_the_cache_dropped_one_does_not_inherit_its_answers() -> None:
    forget_searches()
    text = "ref SYN-MRN-40253 for follow-up"
    assert _kinds(text, PhiValue(kind="PatientID", text="SYN-MRN-40117")) == set()
    # Only the compiled searches go (as when the LRU evicts one); a new search may reuse the
    # dropped one's memory address, but not its remembered answers.
    verify._search_for.cache_clear()
    gc.collect()
    assert _kinds(text, PhiValue(kind="PatientID", text="SYN-MRN-40253")) == {"PatientID"}


@pytest.mark.parametrize("repeat", [1, 3])
def test_repeating_a_text_gives_the_same_answer_as_the_first_time(repeat: int) -> None:
    forget_searches()
    phi = PhiValues(
        values=(
            PhiValue(kind="PatientName", text="JOHNSTONE^MARGARET"),
            PhiValue(kind="PatientID", text="00847120", category=PhiCategory.IDENTIFIER),
        )
    )
    texts = ["Jonhstone called", "id O0847I2O", "nothing here", "MARGARET JOHNSTONE 847120"]
    first = [find_residual_phi(_comment(text), phi) for text in texts]
    for _ in range(repeat):
        assert [find_residual_phi(_comment(text), phi) for text in texts] == first
    assert [len(answer) for answer in first] == [1, 1, 0, 2]


def test_a_long_comment_is_searched_whole_each_time_it_comes() -> None:
    forget_searches()
    text = "Follow-up study, unremarkable. " * 10 + "Called Otto Farnswroth about it."
    assert len(text) > verify._MEMO_TEXT_CHARS  # past the memo's length: searched every time
    farnsworth = PhiValue(kind="PatientName", text="FARNSWORTH^OTTO")
    for _ in range(2):
        assert _kinds(text, farnsworth) == {"PatientName"}


def test_the_memo_stays_within_its_bound() -> None:
    forget_searches()
    phi = PhiValues(values=(QUIMBY,))
    for number in range(verify._MEMO_LIMIT + 50):
        find_residual_phi(_comment(f"slice {number} of a long series"), phi)
    assert 0 < len(verify._text_memo) <= verify._MEMO_LIMIT
    assert len(verify._typo_memo) <= verify._MEMO_LIMIT
