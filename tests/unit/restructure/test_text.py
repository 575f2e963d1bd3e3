"""Normalizing keeps every offset; sections and sentences are spans of the report's own text."""

from __future__ import annotations

import pytest

from radstream.restructure.text import find_sections, normalize, split_sentences

REPORT = """CLINICAL HISTORY: Abdominal pain. r/o appendicitis.
TECHNIQUE: CT of the abdomen and pelvis with IV contrast.
COMPARISON: None.
FINDINGS:
Liver: There is a 2.1 cm hypodense lesion in segment 7, likely a cyst. No biliary dilatation.
1. Kidneys: Nonobstructing 4 mm stone in the left kidney; no hydronephrosis.
2. Approx. 3 mm nodule at the right lung base, e.g. post-inflammatory.
IMPRESSION:
1. No acute findings.
2. Pneumothorax: No.
3. Left nephrolithiasis.
"""


def _texts(report: str) -> dict[str, list[str]]:
    text = normalize(report)
    return {
        section.name: [s.span.of(text) for s in split_sentences(text, section)]
        for section in find_sections(text)
    }


def test_normalizing_replaces_characters_one_for_one() -> None:
    source = "Lesion\u00a0measures 2.1\u00d73.4 cm \u2013 \u201cstable\u201d.\r\n"
    normalized = normalize(source)
    assert normalized == 'Lesion measures 2.1x3.4 cm - "stable".\n\n'
    assert len(normalized) == len(source)


def test_sections_are_found_by_their_headings_and_named_canonically() -> None:
    text = normalize(REPORT)
    sections = find_sections(text)
    assert [s.name for s in sections] == [
        "history",
        "technique",
        "comparison",
        "findings",
        "impression",
    ]
    assert sections[0].heading is not None and sections[0].heading.of(text) == "CLINICAL HISTORY"
    assert sections[2].body.of(text) == "None."


def test_a_report_without_headings_is_one_findings_section() -> None:
    [section] = find_sections(normalize("Heart size normal. Lungs are clear."))
    assert section.name == "findings" and section.heading is None


def test_text_before_the_first_heading_is_kept_as_a_preamble() -> None:
    sections = find_sections(normalize("Exam dated today.\nIMPRESSION: Normal."))
    assert [s.name for s in sections] == ["preamble", "impression"]


def test_sentences_end_at_stops_and_items_but_not_in_numbers_or_abbreviations() -> None:
    texts = _texts(REPORT)
    assert texts["findings"] == [
        "Liver: There is a 2.1 cm hypodense lesion in segment 7, likely a cyst.",
        "No biliary dilatation.",
        "Kidneys: Nonobstructing 4 mm stone in the left kidney;",
        "no hydronephrosis.",
        "Approx. 3 mm nodule at the right lung base, e.g. post-inflammatory.",
    ]
    # A terse "No." closes its statement, so the negation cannot reach the next one.
    assert texts["impression"] == [
        "No acute findings.",
        "Pneumothorax: No.",
        "Left nephrolithiasis.",
    ]


@pytest.mark.parametrize(
    "report",
    [REPORT, "", "   ", "FINDINGS:", "IMPRESSION:\n\n", "1. 2. 3.", "No.", "a.b.c. d"],
)
def test_every_sentence_is_a_span_of_the_text_inside_its_section(report: str) -> None:
    text = normalize(report)
    for section in find_sections(text):
        for sentence in split_sentences(text, section):
            assert section.body.start <= sentence.span.start < sentence.span.end
            assert sentence.span.end <= section.body.end
            assert sentence.span.of(text) == sentence.span.of(text).strip()
