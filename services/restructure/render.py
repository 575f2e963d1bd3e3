"""Outputs of a structured report: JSON with source spans, readable text, FHIR R4.

* :func:`to_json`: the template instance -- every finding with its status, attribute values,
  confidence and evidence spans (character offsets into the source), plus the provenance.
* :func:`to_text`: a readable report in template order, area by area, one line per finding
  the source states (present, uncertain, or explicitly absent), with its values.
* :func:`to_fhir`: a FHIR R4 ``DiagnosticReport`` (status preliminary until a person signs it
  off, final after) with one ``Observation`` per stated finding, coded where the template codes
  it, its status as the value (SNOMED CT present/absent/uncertain qualifiers), each finding's
  attribute values as components, and the evidence quoted in ``note`` only when asked (it is
  report text: PHI zone).
"""

from __future__ import annotations

from typing import Any

from radstream.restructure.structured import FindingStatus, StructuredReport
from radstream.restructure.template import Template

__all__ = ["to_fhir", "to_json", "to_text"]

# SNOMED CT qualifier values for a finding's status.
_STATUS_CODES = {
    FindingStatus.PRESENT: ("52101004", "Present"),
    FindingStatus.ABSENT: ("2667000", "Absent"),
    FindingStatus.UNCERTAIN: ("385434005", "Improbable diagnosis"),
}
_CODE_SYSTEMS = {
    "RADLEX": "http://radlex.org",
    "LOINC": "http://loinc.org",
    "SNOMED-CT": "http://snomed.info/sct",
}


def to_json(structured: StructuredReport) -> dict[str, Any]:
    """The template instance as JSON-ready data (spans as [start, end] character offsets)."""
    return {
        "template": {"id": structured.template_id, "version": structured.template_version},
        "provenance": {
            "backend": structured.provenance.backend,
            "model": structured.provenance.model,
            "model_version": structured.provenance.model_version,
            "prompt_version": structured.provenance.prompt_version,
        },
        "findings": [
            {
                "path": list(finding.path),
                "status": finding.status.value,
                "historical": finding.historical,
                "attributes": {name: list(values) for name, values in finding.attributes.items()},
                "confidence": finding.confidence,
                "evidence": [[span.start, span.end] for span in finding.evidence],
            }
            for finding in structured.findings
        ],
    }


def to_text(structured: StructuredReport, template: Template) -> str:
    """A readable report in template order: each area, then its stated findings."""
    by_path = {finding.path: finding for finding in structured.findings}
    lines = [template.title.upper(), ""]
    for area in template.areas:
        stated = [
            (path, by_path[path])
            for path, _ in template.findings()
            if path[0] == area.name and path in by_path
        ]
        lines.append(f"{area.name.capitalize()}:")
        if not stated:
            lines.append("  not described")
        for path, finding in stated:
            values = "; ".join(
                f"{name.replace('_', ' ')} {', '.join(v)}" for name, v in finding.attributes.items()
            )
            status = finding.status.value + (", in the past" if finding.historical else "")
            lines.append(f"  {path[-1]}: {status}" + (f" ({values})" if values else ""))
    return "\n".join(lines) + "\n"


def to_fhir(
    structured: StructuredReport,
    template: Template,
    *,
    report_id: str,
    subject: str,
    final: bool = False,
    source_text: str | None = None,
) -> dict[str, Any]:
    """A FHIR R4 Bundle (collection) of the DiagnosticReport and its Observations."""
    observations = []
    for index, finding in enumerate(structured.findings):
        node = template.node(finding.path)
        code, display = _STATUS_CODES[finding.status]
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"{report_id}-f{index}",
            "status": "final" if final else "preliminary",
            "code": {
                "coding": [_coding(c.scheme, c.value, c.meaning) for c in node.codes],
                "text": " / ".join(finding.path),
            },
            "subject": {"reference": subject},
            "valueCodeableConcept": {"coding": [_coding("SNOMED-CT", code, display)]},
            "component": [
                {"code": {"text": name}, "valueString": value}
                for name, values in finding.attributes.items()
                for value in values
            ],
        }
        if not observation["code"]["coding"]:
            del observation["code"]["coding"]
        if not observation["component"]:
            del observation["component"]
        if source_text is not None:
            observation["note"] = [{"text": span.of(source_text)} for span in finding.evidence]
        observations.append(observation)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "status": "final" if final else "preliminary",
        "code": {
            "coding": [_coding(c.scheme, c.value, c.meaning) for c in template.codes],
            "text": template.title,
        },
        "subject": {"reference": subject},
        "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
    }
    if not report["code"]["coding"]:
        del report["code"]["coding"]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": resource} for resource in (report, *observations)],
    }


def _coding(scheme: str, value: str, meaning: str) -> dict[str, str]:
    coding = {"system": _CODE_SYSTEMS.get(scheme, scheme), "code": value}
    if meaning:
        coding["display"] = meaning
    return coding
