"""The first stages: normalize a report, find its sections, split them into sentences.

Every later stage points back into the source with character offsets, so nothing here may move
a character: :func:`normalize` replaces characters one for one (the normalized text has the
source's length, and an offset means the same place in both), :func:`find_sections` and
:func:`split_sentences` return spans of that text.

Sections are found by their headings ("FINDINGS:", "Impression -", "CLINICAL HISTORY"), each
mapped to a canonical name; text before the first heading, or a report with none, is one
``findings`` section when it is the whole report and ``preamble`` otherwise. Sentences end at
``.``, ``;``, ``!`` or ``?`` followed by a space and what starts a sentence, or at a line break
that starts a numbered or bulleted item; a full stop inside a number ("2.1 cm"), after a
single letter or a common abbreviation ("Dr.", "e.g.", "approx.") ends nothing. "No." ends a
sentence ("Pneumothorax: No."): a negation must never reach into the next statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "SECTION_NAMES",
    "Section",
    "Sentence",
    "Span",
    "find_sections",
    "normalize",
    "split_sentences",
]


@dataclass(frozen=True, slots=True)
class Span:
    """Characters ``start`` to ``end`` (exclusive) of the report's text."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"not a span: {self.start}..{self.end}")

    def of(self, text: str) -> str:
        """The spanned text."""
        return text[self.start : self.end]


# One-for-one replacements: the normalized text keeps every offset.
_SAME_LENGTH = str.maketrans(
    {
        "\u00a0": " ",  # no-break space
        "\u2009": " ",  # thin space
        "\u202f": " ",  # narrow no-break space
        "\t": " ",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2212": "-",  # minus sign
        "\u00d7": "x",  # multiplication sign: 2.1 x 3.4 cm
        "\r": "\n",
    }
)


def normalize(text: str) -> str:
    """``text`` with spaces, quotes, dashes and line breaks made plain, one character for one."""
    normalized = text.translate(_SAME_LENGTH)
    if len(normalized) != len(text):  # pragma: no cover -- the table maps one to one
        raise AssertionError("normalize changed the length of the text")
    return normalized


# Canonical section names and the headings that open them (lower case, without the colon).
SECTION_NAMES: dict[str, tuple[str, ...]] = {
    "history": (
        "history",
        "clinical history",
        "clinical information",
        "clinical indication",
        "indication",
        "indications",
        "reason for exam",
        "reason for examination",
        "clinical details",
    ),
    "technique": ("technique", "procedure", "protocol", "examination", "exam"),
    "comparison": ("comparison", "comparisons", "prior studies", "prior"),
    "findings": ("findings", "finding", "report", "description"),
    "impression": ("impression", "impressions", "conclusion", "conclusions", "summary", "opinion"),
}
_HEADING_TO_SECTION = {
    heading: name for name, headings in SECTION_NAMES.items() for heading in headings
}
_HEADING = re.compile(
    r"(?im)^[ ]*(?P<heading>"
    + "|".join(sorted((re.escape(h) for h in _HEADING_TO_SECTION), key=len, reverse=True))
    + r")[ ]*(?::|-(?=[ ])|$)[ ]*"
)


@dataclass(frozen=True, slots=True)
class Section:
    """A section of a report: its canonical name, its heading and its body."""

    name: str  # history, technique, comparison, findings, impression, or preamble
    heading: Span | None  # None where the report had no heading for it
    body: Span


def find_sections(text: str) -> list[Section]:
    """The sections of normalized ``text``, in order (see the module docstring)."""
    matches = list(_HEADING.finditer(text))
    sections: list[Section] = []
    first = matches[0].start() if matches else len(text)
    if text[:first].strip():
        name = "findings" if not matches else "preamble"
        sections.append(Section(name=name, heading=None, body=_trimmed(text, 0, first)))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        name = _HEADING_TO_SECTION[match.group("heading").lower()]
        heading = Span(match.start("heading"), match.end("heading"))
        sections.append(Section(name=name, heading=heading, body=_trimmed(text, match.end(), end)))
    return sections


def _trimmed(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end)


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence of a section (a statement the later stages judge and place)."""

    span: Span
    section: str


_ABBREVIATIONS = frozenset(
    {"dr", "mr", "mrs", "ms", "vs", "e.g", "i.e", "approx", "cf", "fig", "st", "incl", "resp"}
)
_BOUNDARY = re.compile(r"[.;!?](?=\s)|\n(?=\s*(?:\d+[.)]|[-*\u2022])\s)|\n\s*\n")
_ITEM_MARK = re.compile(r"\s*(?:\d+[.)]|[-*\u2022])\s+")


def split_sentences(text: str, section: Section) -> list[Sentence]:
    """The sentences of ``section`` in normalized ``text`` (item numbers left out)."""
    start, end = section.body.start, section.body.end
    sentences: list[Sentence] = []
    position = start
    for match in _BOUNDARY.finditer(text, start, end):
        cut = match.start()
        item = _ITEM_MARK.match(text, position, end)
        if item is not None and cut < item.end():
            continue  # the full stop of an item's number ("1.")
        if text[cut] == "." and not _ends_sentence(text, position, cut):
            continue
        stop = cut + 1 if text[cut] in ".;!?" else cut
        _add(sentences, text, position, stop, section.name)
        position = match.end()
    _add(sentences, text, position, end, section.name)
    return sentences


def _ends_sentence(text: str, start: int, dot: int) -> bool:
    """Whether the full stop at ``dot`` ends a sentence (not an abbreviation or an initial)."""
    word = re.search(r"([A-Za-z][A-Za-z.]*)$", text[start:dot])
    if word is None:
        return True  # after a number, a bracket or a quote
    token = word.group(1).lower().rstrip(".")
    return not (token in _ABBREVIATIONS or len(token) == 1)  # a single letter: an initial


def _add(sentences: list[Sentence], text: str, start: int, end: int, section: str) -> None:
    item = _ITEM_MARK.match(text, start, end)
    if item is not None:
        start = item.end()
    span = _trimmed(text, start, end)
    if span.end > span.start and any(ch.isalnum() for ch in span.of(text)):
        sentences.append(Sentence(span=span, section=section))
