"""Validation catches what clinicians fear: flipped negations, changed numbers, swapped sides."""

from __future__ import annotations

from dataclasses import replace

import pytest

from radstream.restructure.rules import RulesBackend
from radstream.restructure.structured import FindingResult, FindingStatus, StructuredReport
from radstream.restructure.template import load_template
from radstream.restructure.text import Span
from radstream.restructure.validation import Severity, needs_review, validate

TEMPLATE = load_template("ct-abdomen")
REPORT = """FINDINGS:
Liver: 2.1 cm hypodense lesion in segment 7.
No hydronephrosis.
Small right pleural effusion.
The appendix shows an unusual configuration.
IMPRESSION: Hepatic lesion as above.
"""
LESION = ("liver", "findings", "lesion")
HYDRONEPHROSIS = ("kidneys and ureters", "findings", "hydronephrosis")
EFFUSION = ("lung bases", "findings", "pleural effusion")


@pytest.fixture(scope="module")
def structured() -> StructuredReport:
    return RulesBackend(TEMPLATE).structure(REPORT)


def _with(
    structured: StructuredReport, path: tuple[str, ...], **changes: object
) -> StructuredReport:
    findings = tuple(
        replace(f, **changes) if f.path == path else f  # type: ignore[arg-type]
        for f in structured.findings
    )
    return replace(structured, findings=findings)


def _kinds(report: StructuredReport) -> dict[str, Severity]:
    return {issue.kind: issue.severity for issue in validate(REPORT, report, TEMPLATE)}


def test_the_rules_backend_s_own_output_has_no_critical_issue(structured: StructuredReport) -> None:
    issues = validate(REPORT, structured, TEMPLATE)
    assert not [issue for issue in issues if issue.severity is Severity.CRITICAL]
    assert not needs_review(issues)


def test_a_statement_no_finding_holds_is_reported_for_coverage(
    structured: StructuredReport,
) -> None:
    [unplaced] = [
        i for i in validate(REPORT, structured, TEMPLATE) if i.kind == "unplaced_statement"
    ]
    assert unplaced.span is not None
    assert unplaced.span.of(REPORT) == "The appendix shows an unusual configuration."
    assert unplaced.severity is Severity.WARNING


def test_a_negated_finding_stated_present_is_critical(structured: StructuredReport) -> None:
    flipped = _with(structured, HYDRONEPHROSIS, status=FindingStatus.PRESENT)
    assert _kinds(flipped)["negation_flip"] is Severity.CRITICAL
    assert needs_review(validate(REPORT, flipped, TEMPLATE))


def test_a_changed_measurement_is_critical(structured: StructuredReport) -> None:
    converted = _with(structured, LESION, attributes={"size": ("21 mm",)})
    assert _kinds(converted)["measurement_changed"] is Severity.CRITICAL


def test_a_swapped_side_is_critical(structured: StructuredReport) -> None:
    swapped = _with(structured, EFFUSION, attributes={"laterality": ("left",)})
    assert _kinds(swapped)["laterality_unsupported"] is Severity.CRITICAL


def test_evidence_outside_the_report_s_statements_is_critical(
    structured: StructuredReport,
) -> None:
    heading = Span(0, 9)  # "FINDINGS:" is no statement
    cited = _with(structured, LESION, evidence=(heading,))
    assert _kinds(cited)["ungrounded"] is Severity.CRITICAL


def test_a_finding_the_backend_doubts_goes_to_review(structured: StructuredReport) -> None:
    doubted = _with(structured, LESION, confidence=0.3)
    issues = validate(REPORT, doubted, TEMPLATE)
    assert {i.kind for i in issues} >= {"low_confidence"}
    assert needs_review(issues)


def test_issues_quote_no_report_text(structured: StructuredReport) -> None:
    flipped = _with(structured, HYDRONEPHROSIS, status=FindingStatus.PRESENT)
    for issue in validate(REPORT, flipped, TEMPLATE):
        assert "hydronephrosis" not in issue.detail.lower()
        assert "2.1" not in issue.detail


def test_a_finding_result_is_a_value(structured: StructuredReport) -> None:
    finding = next(f for f in structured.findings if f.path == LESION)
    assert isinstance(finding, FindingResult) and finding.attributes["size"] == ("2.1 cm",)
