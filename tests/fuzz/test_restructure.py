"""Fuzz target: report restructuring (``radstream.restructure``) on hostile report text and lines.

Report text arrives from RIS and EHR messages: anything a person or an interface can type. Seeds
are radiology reports (CT and chest radiograph) carrying the fake PHI in free text; mutations
cut, repeat and splice them, insert headings, list marks, numbers, units, sides, negation words
and arbitrary Unicode. Promise: structuring never raises; every finding's evidence is a span of
the report's own statements; the output (findings, values, spans, provenance), the validation
and QA issues and the JSON Lines answers never carry a planted PHI token (values come from the
template, evidence is offsets); a JSON Lines line that is not a report is answered with an
error line and the next line goes on.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from radstream.restructure.batch import JsonlSummary, backend_for, structure_jsonl
from radstream.restructure.qa import report_qa
from radstream.restructure.render import to_json
from radstream.restructure.template import load_template
from radstream.restructure.validation import validate
from tests.fuzz import phi
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.campaign import Campaign, Emitted, Finding

CAMPAIGN = Campaign("restructure.structure")
TEMPLATES = {name: load_template(name) for name in ("ct-abdomen", "chest-xray-radrestruct")}
BACKENDS = {name: backend_for(template) for name, template in TEMPLATES.items()}
SEEDS = (
    "CLINICAL HISTORY: " + phi.FREE_TEXT + ".\nFINDINGS:\nLiver: 2.1 cm lesion in segment 7. "
    "No biliary dilatation.\n1. Left 4 mm kidney stone; no hydronephrosis.\n"
    "IMPRESSION: Possible appendicitis. Discussed with Dr Quixby Vellamore.",
    "FINDINGS: Mild cardiomegaly. No pleural effusion or pneumothorax. Opacity at the left base, "
    "likely atelectasis versus pneumonia. Patient Zanthea Quixberg.\nIMPRESSION: No acute disease.",
)
PIECES = st.sampled_from(
    [
        "FINDINGS:", "IMPRESSION:", "\n", "1. ", "- ", ". ", "; ", ": No.", "no ", "not ",
        "without ", "possible ", "history of ", "left ", "right ", "bilateral ", "2.1 cm",
        "4 x 3 mm", "pneumothorax", "free air", "cardiomegaly", phi.PATIENT_NAME, phi.PATIENT_ID,
        "\u00a0", "\u2013", "\u00d7", "XXXX", "...", "e.g.", "Dr.", "(", ")",
    ]
)  # fmt: skip


@st.composite
def reports(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(text)))
        piece = draw(st.one_of(PIECES, st.text(max_size=12)))
        cut = draw(st.integers(0, 8))
        text = text[:at] + piece + text[at + cut :]
    return text


def structure(report: str, template_id: str, emitted: Emitted) -> None:
    template = TEMPLATES[template_id]
    structured = BACKENDS[template_id].structure(report)
    emitted("structured", json.dumps(to_json(structured)))
    issues = validate(report, structured, template) + report_qa(report, structured, template)
    emitted("issues", json.dumps([[i.kind, i.detail, list(i.path)] for i in issues]))
    for issue in issues:
        if issue.kind == "ungrounded":
            raise Finding("bad-answer", "evidence", "a finding cites text that is no statement")
    emitted.answered(f"{len(structured.findings)} findings")


def jsonl(report: str, garbage: str, emitted: Emitted) -> None:
    lines = [json.dumps({"uid": "u1", "findings": report}), garbage, json.dumps([report])]
    summary = JsonlSummary()
    answers = list(structure_jsonl(lines, BACKENDS["chest-xray-radrestruct"], summary))
    emitted("jsonl", "\n".join(answers[1:]))  # the refusals: the structured line is checked above
    if summary.reports + summary.errors != sum(1 for line in lines if line.strip()):
        raise Finding("no-answer", "jsonl", "a line was neither structured nor refused")
    if not all(isinstance(json.loads(answer), dict) for answer in answers):
        raise Finding("bad-answer", "jsonl", "an answer line is not a JSON object")
    emitted.answered("jsonl")


@fuzz_settings()
@given(report=reports(), template_id=st.sampled_from(sorted(TEMPLATES)), garbage=st.text())
def _fuzz(report: str, template_id: str, garbage: str) -> None:
    data = report.encode("utf-8", "surrogatepass")
    CAMPAIGN.attempt(data, lambda emitted: structure(report, template_id, emitted))
    CAMPAIGN.attempt(data, lambda emitted: jsonl(report, garbage, emitted))


def test_every_report_is_structured_grounded_and_without_phi_in_what_comes_out() -> None:
    with CAMPAIGN.running():
        _fuzz()
    CAMPAIGN.assert_clean()
