"""The rules backend: a report structured by the template's words and the assertion rules alone.

No model: each sentence of the findings and impression is searched for the template's finding
names (:mod:`radstream.restructure.lexicon`), each mention judged by its assertion status
(:mod:`radstream.restructure.assertions`), and a finding's attribute values are the template's
options the same sentence names ("right lower lobe", "mild"), or the measurements it states
("2.1 cm"). A finding stated both ways takes the reading of its most affirmative mention
(present over uncertain over absent): "no acute disease" in the impression does not undo
"mild cardiomegaly" in the findings. It is deterministic and instant, works for a template no
report was ever labelled with, and is the baseline every other backend is measured against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from radstream.restructure.assertions import Assertion, assertion_of
from radstream.restructure.lexicon import Mention, lexicon_for
from radstream.restructure.structured import (
    FindingResult,
    FindingStatus,
    Provenance,
    StructuredReport,
)
from radstream.restructure.template import AnswerType, Attribute, Template
from radstream.restructure.text import Sentence, Span, find_sections, normalize, split_sentences

__all__ = ["STATEMENT_SECTIONS", "RulesBackend"]

# The sections whose sentences state findings (history and comparison state what was asked or
# seen before, not what this study shows).
STATEMENT_SECTIONS = frozenset({"findings", "impression", "preamble"})
_STATUS = {
    Assertion.AFFIRMED: FindingStatus.PRESENT,
    Assertion.HISTORICAL: FindingStatus.PRESENT,
    Assertion.UNCERTAIN: FindingStatus.UNCERTAIN,
    Assertion.NEGATED: FindingStatus.ABSENT,
}
_ORDER = {FindingStatus.PRESENT: 2, FindingStatus.UNCERTAIN: 1, FindingStatus.ABSENT: 0}
_MEASURE = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*(?:x|by)\s*\d+(?:\.\d+)?)*\s*(mm|cm)\b", re.I
)


@dataclass
class _Finding:
    status: FindingStatus
    evidence: list[Span] = field(default_factory=list)
    attributes: dict[str, list[str]] = field(default_factory=dict)
    historical: bool = True


class RulesBackend:
    """Structures a report into ``template`` by rules (see the module docstring)."""

    name = "rules"

    def __init__(self, template: Template) -> None:
        self.template = template
        self.lexicon = lexicon_for(template)

    def structure(self, report: str) -> StructuredReport:
        """The structured report of ``report`` (its text, with or without section headings)."""
        text = normalize(report)
        found: dict[tuple[str, ...], _Finding] = {}
        for sentence in self._statements(text):
            sentence_text = sentence.span.of(text)
            for mention in _outermost(self.lexicon.mentions(sentence_text)):
                assertion, _ = assertion_of(sentence_text, mention.start, mention.end)
                self._note(found, mention, assertion, sentence, sentence_text)
        order = {path: index for index, path in enumerate(self.template.finding_paths())}
        return StructuredReport(
            template_id=self.template.id,
            template_version=self.template.version,
            findings=tuple(
                FindingResult(
                    path=path,
                    status=finding.status,
                    evidence=tuple(finding.evidence),
                    attributes={k: tuple(v) for k, v in finding.attributes.items()},
                    historical=finding.historical,
                )
                for path, finding in sorted(found.items(), key=lambda item: order[item[0]])
            ),
            provenance=Provenance(backend=self.name),
        )

    def _statements(self, text: str) -> Iterable[Sentence]:
        for section in find_sections(text):
            if section.name in STATEMENT_SECTIONS:
                yield from split_sentences(text, section)

    def _note(
        self,
        found: dict[tuple[str, ...], _Finding],
        mention: Mention,
        assertion: Assertion,
        sentence: Sentence,
        sentence_text: str,
    ) -> None:
        status = _STATUS[assertion]
        finding = found.get(mention.path)
        if finding is None or _ORDER[status] > _ORDER[finding.status]:
            previous = finding
            finding = found[mention.path] = _Finding(status=status)
            if previous is not None:
                finding.evidence.extend(previous.evidence)
        if _ORDER[status] == _ORDER[finding.status]:
            finding.historical = finding.historical and assertion is Assertion.HISTORICAL
            if status is not FindingStatus.ABSENT:
                for attribute in self.template.attributes_of(mention.path):
                    values = attribute_values(
                        attribute, sentence_text, self.template.value_synonyms
                    )
                    if values:
                        known = finding.attributes.setdefault(attribute.name, [])
                        known.extend(v for v in values if v not in known)
        if sentence.span not in finding.evidence:
            finding.evidence.append(sentence.span)


def _outermost(mentions: Iterable[Mention]) -> list[Mention]:
    """Mentions not inside a longer one (the regex already prefers the longest at a place)."""
    kept: list[Mention] = []
    for mention in sorted(mentions, key=lambda m: (m.start, -(m.end - m.start))):
        if not any(other.start <= mention.start and mention.end <= other.end for other in kept):
            kept.append(mention)
    return kept


def attribute_values(
    attribute: Attribute, sentence: str, synonyms: Mapping[str, tuple[str, ...]] | None = None
) -> list[str]:
    """The attribute's values the sentence states, by their words or the template's synonyms."""
    if attribute.answer_type is AnswerType.MEASUREMENT:
        return [f"{m.group(1)} {m.group(2).lower()}" for m in _MEASURE.finditer(sentence)]
    if attribute.answer_type is AnswerType.TEXT:
        return []
    lowered = sentence.lower()
    values = [
        option
        for option in sorted(attribute.options, key=len, reverse=True)
        if option not in ("no selection", "unspecified")
        and any(
            re.search(rf"(?<!\w){re.escape(phrase.lower())}(?!\w)", lowered)
            for phrase in (option, *(synonyms or {}).get(option, ()))
        )
    ]
    if attribute.answer_type is AnswerType.SINGLE:
        return values[:1]  # the longest ("right upper lobe" over "right")
    return values
