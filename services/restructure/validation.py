"""Checks of a structured report against its source: what clinicians fear a restructurer does.

Each check yields :class:`ValidationIssue` s with a severity; a report with any critical issue, or
a finding below the confidence floor, goes to review (:func:`needs_review`), never straight to
final. The checks, each against the source text itself rather than the backend's word:

* ``ungrounded`` (critical): a finding without evidence, or evidence that is not a span of the
  report's statements (a backend must not cite text that is not there);
* ``negation_flip`` (critical): a finding stated present whose every evidence sentence negates
  it (no "no mass" -> "mass");
* ``measurement_changed`` (critical): a measurement whose number and unit the evidence does not
  state as written (no 2.1 cm -> 21 mm);
* ``laterality_unsupported`` (critical): a side (left, right, bilateral) the evidence does not
  name (no left/right swap);
* ``unplaced_statement`` (warning): a sentence of the findings or impression that states
  something (it is not a plain normal statement) and is evidence of no finding: coverage;
* ``low_confidence`` (warning): a finding the backend is not sure of.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from radstream.restructure.assertions import Assertion, assertion_of
from radstream.restructure.lexicon import lexicon_for
from radstream.restructure.rules import STATEMENT_SECTIONS
from radstream.restructure.structured import FindingStatus, StructuredReport
from radstream.restructure.template import AnswerType, Template
from radstream.restructure.text import Sentence, Span, find_sections, normalize, split_sentences

__all__ = ["Severity", "ValidationIssue", "needs_review", "validate"]

CONFIDENCE_FLOOR = 0.5
_SIDES = {"left": "left", "right": "right", "bilateral": "bilateral"}
_SIDE_WORDS = {
    "left": ("left",),
    "right": ("right",),
    "bilateral": ("bilateral", "bilaterally", "both", "bibasilar", "biapical", "bibasal"),
}
_NORMAL = re.compile(
    r"\b(normal|unremarkable|clear|no acute|within normal limits|negative|intact|stable)\b", re.I
)


class Severity(StrEnum):
    """How much an issue matters: critical issues send the report to review."""

    CRITICAL = "critical"
    WARNING = "warning"


@dataclass(frozen=True, kw_only=True)
class ValidationIssue:
    """One problem found, with where it is (no report text is quoted: spans only)."""

    kind: str
    severity: Severity
    path: tuple[str, ...] = ()
    span: Span | None = None
    detail: str = ""


def validate(
    report: str, structured: StructuredReport, template: Template
) -> list[ValidationIssue]:
    """Every issue of ``structured`` against ``report`` (see the module docstring)."""
    text = normalize(report)
    statements = [
        sentence
        for section in find_sections(text)
        if section.name in STATEMENT_SECTIONS
        for sentence in split_sentences(text, section)
    ]
    issues = list(_grounding(text, structured, statements))
    issues += _negation(text, structured, template)
    issues += _measurements(text, structured, template)
    issues += _laterality(text, structured)
    issues += _coverage(text, structured, statements)
    issues += [
        ValidationIssue(kind="low_confidence", severity=Severity.WARNING, path=finding.path)
        for finding in structured.findings
        if finding.confidence < CONFIDENCE_FLOOR and finding.status is FindingStatus.PRESENT
    ]
    return issues


def needs_review(issues: list[ValidationIssue]) -> bool:
    """Whether the report must go to a person before it is final."""
    return any(
        issue.severity is Severity.CRITICAL or issue.kind == "low_confidence" for issue in issues
    )


def _grounding(
    text: str, structured: StructuredReport, statements: list[Sentence]
) -> Iterator[ValidationIssue]:
    spans = {sentence.span for sentence in statements}
    for finding in structured.findings:
        if not finding.evidence:
            yield ValidationIssue(kind="ungrounded", severity=Severity.CRITICAL, path=finding.path)
        for span in finding.evidence:
            inside = any(s.start <= span.start and span.end <= s.end for s in spans)
            if span.end > len(text) or not inside:
                yield ValidationIssue(
                    kind="ungrounded",
                    severity=Severity.CRITICAL,
                    path=finding.path,
                    span=span,
                    detail="evidence is not a statement of the report",
                )


def _negation(
    text: str, structured: StructuredReport, template: Template
) -> Iterator[ValidationIssue]:
    lexicon = lexicon_for(template)
    for finding in structured.findings:
        if finding.status is not FindingStatus.PRESENT:
            continue
        readings = []
        for span in finding.evidence:
            sentence = span.of(text)
            for mention in lexicon.mentions(sentence):
                if mention.path == finding.path:
                    readings.append(assertion_of(sentence, mention.start, mention.end)[0])
        if readings and all(reading is Assertion.NEGATED for reading in readings):
            yield ValidationIssue(
                kind="negation_flip",
                severity=Severity.CRITICAL,
                path=finding.path,
                span=finding.evidence[0],
                detail="stated present, every mention negated",
            )


def _measurements(
    text: str, structured: StructuredReport, template: Template
) -> Iterator[ValidationIssue]:
    for finding in structured.findings:
        kinds = {a.name: a for a in template.attributes_of(finding.path)}
        evidence = " ".join(span.of(text) for span in finding.evidence).lower()
        compact = re.sub(r"\s+", "", evidence)
        for name, values in finding.attributes.items():
            attribute = kinds.get(name)
            if attribute is None or attribute.answer_type is not AnswerType.MEASUREMENT:
                continue
            for value in values:
                if re.sub(r"\s+", "", value.lower()) not in compact:
                    yield ValidationIssue(
                        kind="measurement_changed",
                        severity=Severity.CRITICAL,
                        path=finding.path,
                        detail=f"{name} not stated as written",
                    )


def _laterality(text: str, structured: StructuredReport) -> Iterator[ValidationIssue]:
    for finding in structured.findings:
        evidence = " ".join(span.of(text) for span in finding.evidence).lower()
        words = set(re.findall(r"[a-z]+", evidence))
        for values in finding.attributes.values():
            for value in values:
                side = _SIDES.get(value.lower())
                if side is not None and not words & set(_SIDE_WORDS[side]):
                    yield ValidationIssue(
                        kind="laterality_unsupported",
                        severity=Severity.CRITICAL,
                        path=finding.path,
                        detail=f"the evidence does not say {side}",
                    )


def _coverage(
    text: str, structured: StructuredReport, statements: list[Sentence]
) -> Iterator[ValidationIssue]:
    placed = [span for finding in structured.findings for span in finding.evidence]
    for sentence in statements:
        covered = any(
            span.start < sentence.span.end and sentence.span.start < span.end for span in placed
        )
        if not covered and not _NORMAL.search(sentence.span.of(text)):
            yield ValidationIssue(
                kind="unplaced_statement",
                severity=Severity.WARNING,
                span=sentence.span,
                detail="a statement no finding of the template holds",
            )
