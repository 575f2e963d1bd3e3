"""A structured report renders as JSON with spans, as readable text, and as valid FHIR R4."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.bundle import Bundle

from radstream.restructure.render import to_fhir, to_json, to_text
from radstream.restructure.rules import RulesBackend
from radstream.restructure.structured import StructuredReport
from radstream.restructure.template import load_template
from radstream.restructure.text import Span

TEMPLATE = load_template("ct-abdomen")
REPORT = """FINDINGS: Liver: 2.1 cm hypodense lesion in segment 7. No hydronephrosis.
Small right pleural effusion.
IMPRESSION: History of pancreatitis.
"""


@pytest.fixture(scope="module")
def structured() -> StructuredReport:
    return RulesBackend(TEMPLATE).structure(REPORT)


def test_json_carries_every_finding_with_spans_into_the_source(
    structured: StructuredReport,
) -> None:
    document = json.loads(json.dumps(to_json(structured)))
    assert document["template"] == {"id": "ct-abdomen", "version": "1.0"}
    assert document["provenance"]["backend"] == "rules"
    lesion = next(f for f in document["findings"] if f["path"] == ["liver", "findings", "lesion"])
    assert lesion["status"] == "present" and lesion["attributes"]["size"] == ["2.1 cm"]
    [[start, end]] = lesion["evidence"]
    assert Span(start, end).of(REPORT) == "Liver: 2.1 cm hypodense lesion in segment 7."


def test_text_follows_the_template_s_order_and_says_what_is_not_described(
    structured: StructuredReport,
) -> None:
    text = to_text(structured, TEMPLATE)
    lines = text.splitlines()
    assert lines[0] == "CT ABDOMEN AND PELVIS"
    assert lines.index("Liver:") < lines.index("Pancreas:") < lines.index("Pelvis:")
    assert "  lesion: present (location segment 7; size 2.1 cm)" in lines
    assert "  hydronephrosis: absent" in lines
    assert "  pancreatitis: present, in the past" in lines
    assert lines[lines.index("Spleen:") + 1] == "  not described"


def test_fhir_is_a_valid_r4_bundle_of_a_preliminary_report_and_coded_observations(
    structured: StructuredReport,
) -> None:
    bundle = to_fhir(structured, TEMPLATE, report_id="r1", subject="Patient/p1")
    Bundle.model_validate(bundle)  # raises on anything FHIR R4 does not allow
    report = bundle["entry"][0]["resource"]
    assert report["resourceType"] == "DiagnosticReport" and report["status"] == "preliminary"
    assert len(report["result"]) == len(structured.findings)
    liver = next(
        e["resource"]
        for e in bundle["entry"][1:]
        if e["resource"]["code"]["text"] == "liver / findings / lesion"
    )
    assert liver["valueCodeableConcept"]["coding"][0]["code"] == "52101004"  # present
    assert {"code": {"text": "size"}, "valueString": "2.1 cm"} in liver["component"]
    assert "note" not in liver  # no report text unless asked


def test_fhir_after_sign_off_is_final_and_may_quote_the_evidence(
    structured: StructuredReport,
) -> None:
    bundle = to_fhir(
        structured, TEMPLATE, report_id="r1", subject="Patient/p1", final=True, source_text=REPORT
    )
    Bundle.model_validate(bundle)
    observations = [e["resource"] for e in bundle["entry"][1:]]
    assert all(o["status"] == "final" for o in observations)
    assert any(n["text"] == "No hydronephrosis." for o in observations for n in o["note"])
