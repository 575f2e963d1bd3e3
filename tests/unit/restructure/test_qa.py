"""Report QA flags side conflicts, conclusions never described, and critical results not called."""

from __future__ import annotations

from radstream.restructure.qa import report_qa
from radstream.restructure.rules import RulesBackend
from radstream.restructure.template import load_template
from radstream.restructure.validation import Severity

CT_CHEST = load_template("ct-chest")
CT_ABDOMEN = load_template("ct-abdomen")


def _qa(report: str, template_id: str = "ct-chest") -> dict[str, Severity]:
    template = load_template(template_id)
    structured = RulesBackend(template).structure(report)
    return {issue.kind: issue.severity for issue in report_qa(report, structured, template)}


def test_a_side_that_changes_between_findings_and_impression_is_critical() -> None:
    report = "FINDINGS: Small left pleural effusion.\nIMPRESSION: Right pleural effusion."
    assert _qa(report)["laterality_conflict"] is Severity.CRITICAL


def test_the_same_side_in_both_sections_is_no_conflict() -> None:
    report = "FINDINGS: Small left pleural effusion.\nIMPRESSION: Left pleural effusion."
    assert "laterality_conflict" not in _qa(report)


def test_a_conclusion_the_findings_never_describe_is_flagged() -> None:
    report = "FINDINGS: Lungs are clear.\nIMPRESSION: Pulmonary nodule, follow-up advised."
    assert _qa(report)["impression_only"] is Severity.WARNING


def test_a_critical_finding_without_a_communication_statement_is_critical() -> None:
    report = "FINDINGS: Large right pneumothorax.\nIMPRESSION: Right pneumothorax."
    assert _qa(report)["critical_not_communicated"] is Severity.CRITICAL


def test_a_critical_finding_that_was_communicated_is_not_flagged() -> None:
    report = (
        "FINDINGS: Free air under the diaphragm.\n"
        "IMPRESSION: Pneumoperitoneum. Discussed with Dr. Smith at 14:05."
    )
    assert "critical_not_communicated" not in _qa(report, "ct-abdomen")
    assert "critical_not_communicated" in _qa(
        report.split(" Discussed", maxsplit=1)[0], "ct-abdomen"
    )


def test_an_absent_critical_finding_needs_no_call() -> None:
    assert "critical_not_communicated" not in _qa("FINDINGS: No pneumothorax.")


def test_templates_mark_their_critical_findings() -> None:
    assert CT_CHEST.node(("pleura", "findings", "pneumothorax")).critical
    assert CT_ABDOMEN.node(("peritoneum and mesentery", "findings", "free air")).critical
    xray = load_template("chest-xray-radrestruct")
    assert [p for p, n in xray.findings() if n.critical] == [
        ("respiratory system", "sub_areas", "pleura", "diseases", "pneumothorax")
    ]
