"""Report QA: what a careful reader of the original report would flag, from its structure.

* ``laterality_conflict`` (critical): a finding stated on one side in the findings section and
  on another in the impression;
* ``impression_only`` (warning): a finding the impression states present that the findings
  section never mentions (a report with a findings section should describe what it concludes);
* ``critical_not_communicated`` (critical): a finding the template marks critical (free air,
  pneumothorax, pulmonary embolism) stated present, in a report that never says it was
  communicated ("discussed with", "called to", "notified" ...).

These concern the source report, not the restructuring: they travel on the event and to the
reviewer beside the validation issues, with the same :class:`ValidationIssue` shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from radstream.restructure.structured import FindingResult, FindingStatus, StructuredReport
from radstream.restructure.template import Template
from radstream.restructure.text import Section, Span, find_sections, normalize
from radstream.restructure.validation import Severity, ValidationIssue

__all__ = ["COMMUNICATION", "report_qa"]

COMMUNICATION = re.compile(
    r"\b(discussed with|communicated (?:to|with)|called to|notified|paged|telephoned|"
    r"spoke (?:with|to)|conveyed to|relayed to|read back|critical (?:result|finding)s? "
    r"(?:was|were) (?:reported|communicated))\b",
    re.IGNORECASE,
)
_SIDE = re.compile(r"\b(left|right|bilateral(?:ly)?)\b", re.IGNORECASE)


def report_qa(
    report: str, structured: StructuredReport, template: Template
) -> list[ValidationIssue]:
    """QA issues of the source report (see the module docstring)."""
    text = normalize(report)
    sections = find_sections(text)
    issues = list(_laterality_conflicts(text, structured, sections))
    issues += _impression_only(structured, sections)
    if not COMMUNICATION.search(text):
        issues += [
            ValidationIssue(
                kind="critical_not_communicated",
                severity=Severity.CRITICAL,
                path=finding.path,
                span=finding.evidence[0],
                detail="a critical finding with no statement that it was communicated",
            )
            for finding in structured.findings
            if finding.status is FindingStatus.PRESENT and template.node(finding.path).critical
        ]
    return issues


def _section_of(span: Span, sections: list[Section]) -> str:
    for section in sections:
        if section.body.start <= span.start and span.end <= section.body.end:
            return section.name
    return ""


def _sides(text: str, finding: FindingResult, section: str, sections: list[Section]) -> set[str]:
    sides: set[str] = set()
    for span in finding.evidence:
        if _section_of(span, sections) == section:
            sides |= {m.group(1).lower().removesuffix("ly") for m in _SIDE.finditer(span.of(text))}
    return sides


def _laterality_conflicts(
    text: str, structured: StructuredReport, sections: list[Section]
) -> Iterator[ValidationIssue]:
    for finding in structured.findings:
        if finding.status is not FindingStatus.PRESENT:
            continue
        described = _sides(text, finding, "findings", sections)
        concluded = _sides(text, finding, "impression", sections)
        if (
            described
            and concluded
            and not described & concluded
            and "bilateral" not in (described | concluded)
        ):
            yield ValidationIssue(
                kind="laterality_conflict",
                severity=Severity.CRITICAL,
                path=finding.path,
                detail="the findings and the impression state different sides",
            )


def _impression_only(
    structured: StructuredReport, sections: list[Section]
) -> Iterator[ValidationIssue]:
    if not any(section.name == "findings" for section in sections):
        return
    for finding in structured.findings:
        places = {_section_of(span, sections) for span in finding.evidence}
        if finding.status is FindingStatus.PRESENT and places == {"impression"}:
            yield ValidationIssue(
                kind="impression_only",
                severity=Severity.WARNING,
                path=finding.path,
                span=finding.evidence[0],
                detail="concluded in the impression, not described",
            )
