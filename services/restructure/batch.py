"""Restructuring reports from files: what ``radstream restructure`` runs.

A backend is chosen by name (:func:`backend_for`): ``hybrid`` where a classifier ships for the
template (it scores best, at about 12 ms a report), else ``rules``. A JSON Lines file in the
Rad-ReStruct format (``uid``, ``findings``, ``impression``) is structured line by line into the
same format (:func:`structure_jsonl`): ``{"uid": ..., "structured": [{"path": [...],
"instances": [{attribute: [values]}]}]}`` with the template's own paths and only the findings
stated present, so any evaluator of that format can score it. A line that is not a JSON object
with text is answered with an ``error`` line and the rest goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from radstream.restructure.classifier import load_classifier
from radstream.restructure.hybrid import HybridBackend
from radstream.restructure.rules import RulesBackend
from radstream.restructure.structured import FindingStatus, StructuredReport
from radstream.restructure.template import Template

__all__ = ["BACKENDS", "Backend", "JsonlSummary", "backend_for", "structure_jsonl"]

BACKENDS = ("rules", "hybrid")


class Backend(Protocol):
    """What every backend offers: a name, and a report's text in, its structure out."""

    name: str

    def structure(self, report: str) -> StructuredReport:
        """The structured report of ``report``."""
        ...


def backend_for(template: Template, name: str | None = None) -> Backend:
    """The backend ``name`` for ``template``; by default the best one it has.

    Raises
    ------
    ValueError
        An unknown backend, or ``hybrid`` for a template no classifier ships for.
    """
    classifier = load_classifier(template.id)
    if name is None:
        name = "hybrid" if classifier is not None else "rules"
    if name == "rules":
        return RulesBackend(template)
    if name == "hybrid":
        if classifier is None:
            raise ValueError(f"no classifier ships for {template.id}: use the rules backend")
        return HybridBackend(template, classifier)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def report_text(record: dict[str, object]) -> str:
    """A Rad-ReStruct-style record's report: its findings and impression, with headings."""
    parts = []
    for key, heading in (("findings", "FINDINGS"), ("impression", "IMPRESSION")):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(f"{heading}: {value}")
    return "\n".join(parts)


def rad_restruct_entries(structured: StructuredReport) -> list[dict[str, object]]:
    """The present findings in Rad-ReStruct's label format."""
    return [
        {
            "path": list(finding.path),
            "instances": [{name: list(values) for name, values in finding.attributes.items()}],
        }
        for finding in structured.findings
        if finding.status is FindingStatus.PRESENT
    ]


@dataclass
class JsonlSummary:
    """What a JSON Lines run did."""

    reports: int = 0
    errors: int = 0
    findings: int = 0


def structure_jsonl(lines: Iterable[str], backend: Backend, summary: JsonlSummary) -> Iterator[str]:
    """One output line per input line (blank lines skipped); ``summary`` counts as it goes."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            text = report_text(record)
            if not text:
                raise ValueError("no findings or impression text")
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            summary.errors += 1
            reason = "not JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
            yield json.dumps({"line": number, "error": reason})
            continue
        structured = backend.structure(text)
        entries = rad_restruct_entries(structured)
        summary.reports += 1
        summary.findings += len(entries)
        yield json.dumps({"uid": record.get("uid"), "structured": entries})
