"""The curated defined terms: CS attributes only, values as the standard spells them."""

from __future__ import annotations

import re

import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword

from radstream.deid.defined_terms import DEFINED_TERMS, is_defined_term

# PS3.5 6.2: CS is upper-case letters, digits, space and underscore, at most 16 characters.
_CS = re.compile(r"[A-Z0-9_ ]{1,16}")


@pytest.mark.parametrize("keyword", sorted(DEFINED_TERMS))
def test_every_listed_attribute_is_a_coded_string(keyword: str) -> None:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    assert dictionary_VR(tag) == "CS"


@pytest.mark.parametrize("keyword", sorted(DEFINED_TERMS))
def test_every_term_is_a_valid_cs_value(keyword: str) -> None:
    for term in DEFINED_TERMS[keyword]:
        assert _CS.fullmatch(term), term
        assert term == term.strip()


def test_a_term_belongs_to_its_own_attribute_only() -> None:
    assert is_defined_term("BodyPartExamined", "KNEE")
    assert is_defined_term("BodyPartExamined", "KNEE ")  # even-length padding
    assert not is_defined_term("ViewPosition", "KNEE")
    assert not is_defined_term("StudyDescription", "KNEE")
    assert not is_defined_term("BodyPartExamined", "knee")
    assert not is_defined_term("BodyPartExamined", "KNEES")
