"""Evaluation on Rad-ReStruct: chest radiograph reports no one here wrote, with structured labels.

``python -m radstream.restructure.eval_radrestruct FILE [--split val]`` (``make
eval-restructure``) reads Rad-ReStruct's ``radrestruct_dev.jsonl`` (evaluation data the
repository does not hold: the caller names the file), structures each report's
findings and impression into the ``chest-xray-radrestruct`` template, and scores the labels:

* finding presence: a finding is its template path; predicted present vs labelled present,
  micro precision, recall and F1, and per area;
* attributes: (path, attribute, value) triples of the present findings, values other than
  "no selection" and "unspecified";
* format-valid rate: reports whose output is a well-formed instance of the template (every
  finding a finding of it, every value one its attribute allows);
* validation issues by kind (:mod:`radstream.restructure.validation`), and how many reports
  they send to review;
* ms per report.

It ends with one line: ``RESULT finding_f1=<x> attr_f1=<x> format_valid=<pct> ms_per_report=<x>``.
Tune on ``train``, report on ``val``; Rad-ReStruct's test split is held out and not here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radstream.restructure.batch import report_text
from radstream.restructure.classifier import load_classifier
from radstream.restructure.hybrid import HybridBackend
from radstream.restructure.rules import RulesBackend
from radstream.restructure.structured import FindingStatus, StructuredReport
from radstream.restructure.template import NodeKind, Template, load_template
from radstream.restructure.validation import needs_review, validate

__all__ = ["Scores", "score"]

Record = dict[str, Any]  # one line of radrestruct_dev.jsonl
_EMPTY_VALUES = frozenset({"no selection", "unspecified"})


@dataclass(frozen=True)
class Scores:
    """Counts of true positives, false positives and false negatives."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Scores) -> Scores:
        return Scores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        """Of what was predicted, the share labelled so."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """Of what was labelled, the share predicted."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        """The harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score(predicted: Iterable[object], gold: Iterable[object]) -> Scores:
    """Set comparison of one report's predicted and labelled items."""
    p, g = set(predicted), set(gold)
    return Scores(len(p & g), len(p - g), len(g - p))


def _gold_findings(record: Record) -> set[tuple[str, ...]]:
    return {tuple(entry["path"]) for entry in record["structured"]}


def _gold_triples(record: Record) -> set[tuple[tuple[str, ...], str, str]]:
    return {
        (tuple(entry["path"]), attribute, value)
        for entry in record["structured"]
        for instance in entry["instances"]
        for attribute, values in instance.items()
        for value in values
        if value not in _EMPTY_VALUES
    }


def _predicted(report: StructuredReport, *, uncertain_as_present: bool) -> set[tuple[str, ...]]:
    wanted = {FindingStatus.PRESENT} | (
        {FindingStatus.UNCERTAIN} if uncertain_as_present else set()
    )
    return {finding.path for finding in report.findings if finding.status in wanted}


def _predicted_triples(
    report: StructuredReport, paths: set[tuple[str, ...]]
) -> set[tuple[tuple[str, ...], str, str]]:
    return {
        (finding.path, attribute, value)
        for finding in report.findings
        if finding.path in paths
        for attribute, values in finding.attributes.items()
        for value in values
    }


def _format_valid(structured: StructuredReport, template: Template) -> bool:
    """Whether every finding is a finding of the template with values its attributes allow."""
    for finding in structured.findings:
        try:
            node = template.node(finding.path)
        except KeyError:
            return False
        if node.kind is not NodeKind.FINDING:
            return False
        allowed = {a.name: a for a in template.attributes_of(finding.path)}
        for name, values in finding.attributes.items():
            attribute = allowed.get(name)
            if attribute is None:
                return False
            if attribute.options and not set(values) <= set(attribute.options):
                return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m radstream.restructure.eval_radrestruct``."""
    parser = argparse.ArgumentParser(prog="python -m radstream.restructure.eval_radrestruct")
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("data", type=Path, help="radrestruct_dev.jsonl")
    parser.add_argument("--backend", default="hybrid", choices=("rules", "hybrid"))
    parser.add_argument(
        "--uncertain-as-present", action="store_true", help="count hedged findings as present"
    )
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"no {args.data}: name Rad-ReStruct's radrestruct_dev.jsonl")
        return 2
    template = load_template("chest-xray-radrestruct")
    backend: RulesBackend | HybridBackend = RulesBackend(template)
    if args.backend == "hybrid":
        classifier = load_classifier(template.id)
        if classifier is None:
            print(f"no classifier is shipped for {template.id}; train one (make train-restructure)")
            return 2
        backend = HybridBackend(template, classifier)
    records = [
        json.loads(line)
        for line in args.data.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    records = [record for record in records if record["split"] == args.split]
    findings, triples, per_area = Scores(), Scores(), Counter[str]()
    areas: dict[str, Scores] = {}
    valid, seconds, reviewed = 0, 0.0, 0
    issues = Counter[str]()
    for record in records:
        started = time.perf_counter()
        structured = backend.structure(report_text(record))
        seconds += time.perf_counter() - started
        valid += _format_valid(structured, template)
        found = validate(report_text(record), structured, template)
        issues.update(f"{issue.kind} ({issue.severity})" for issue in found)
        reviewed += needs_review(found)
        predicted = _predicted(structured, uncertain_as_present=args.uncertain_as_present)
        gold = _gold_findings(record)
        findings += score(predicted, gold)
        triples += score(_predicted_triples(structured, predicted), _gold_triples(record))
        for area in {path[0] for path in predicted | gold}:
            areas[area] = areas.get(area, Scores()) + score(
                {p for p in predicted if p[0] == area}, {g for g in gold if g[0] == area}
            )
            per_area[area] += 1
    print(f"{len(records)} {args.split} reports, backend {backend.name}")
    print(f"{'':24} {'P':>6} {'R':>6} {'F1':>6}   tp/fp/fn")
    for name, scores in [("findings (micro)", findings), ("attribute triples", triples)]:
        print(
            f"{name:24} {scores.precision:6.3f} {scores.recall:6.3f} {scores.f1:6.3f}   "
            f"{scores.tp}/{scores.fp}/{scores.fn}"
        )
    for area, scores in sorted(areas.items()):
        print(
            f"  {area:22} {scores.precision:6.3f} {scores.recall:6.3f} {scores.f1:6.3f}   "
            f"{scores.tp}/{scores.fp}/{scores.fn}"
        )
    print(
        "validation issues by kind: "
        + (", ".join(f"{k} {v}" for k, v in issues.most_common()) or "none")
    )
    print(f"sent to review: {reviewed} of {len(records)} reports")
    ms = 1000 * seconds / max(1, len(records))
    print(
        f"RESULT finding_f1={findings.f1:.3f} attr_f1={triples.f1:.3f} "
        f"format_valid={100 * valid / max(1, len(records)):.1f} ms_per_report={ms:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
