"""The hybrid backend: the trained classifier decides presence, the rules ground and describe.

For a finding the classifier has a head for, its probability decides whether the finding is
present (the rules backend's reading is one of its inputs). Every finding it calls present
must still be grounded: the sentences where the rules backend found it, else the sentences
holding the words that pushed the classifier most towards it; a finding no sentence supports
is left out (a classifier's hunch is not a statement of the report). Findings without a head
(never labelled, or a template without labelled data) are the rules backend's. Attributes are
the rules backend's: the values the grounding sentences state.
"""

from __future__ import annotations

import re
from dataclasses import replace

from radstream.restructure.classifier import FindingClassifier, features
from radstream.restructure.rules import RulesBackend, attribute_values
from radstream.restructure.structured import (
    FindingResult,
    FindingStatus,
    Provenance,
    StructuredReport,
)
from radstream.restructure.template import Template
from radstream.restructure.text import Span, find_sections, normalize, split_sentences

__all__ = ["HybridBackend"]

_MIN_CONTRIBUTION = 0.01  # a word must push the decision at least this much to ground it
_SHARE = 0.25  # ... and at least this share of the strongest word's push
_WORD = re.compile(r"[a-z]+")  # affirmed words (marked ones, n-grams and rule tokens are not)
_FUNCTION_WORDS = frozenset(
    {"a", "an", "and", "are", "is", "of", "the", "there", "this", "to", "with", "in", "on", "at"}
)


class HybridBackend:
    """Rules plus a finding classifier (see the module docstring)."""

    name = "hybrid"

    def __init__(self, template: Template, classifier: FindingClassifier) -> None:
        if classifier.template_id != template.id:
            raise ValueError(f"the classifier is for {classifier.template_id}, not {template.id}")
        self.template = template
        self.rules = RulesBackend(template)
        self.classifier = classifier
        self.paths = template.finding_paths()

    def structure(self, report: str) -> StructuredReport:
        """The structured report of ``report``."""
        ruled = self.rules.structure(report)
        tokens = features(report, ruled, self.paths)
        probabilities = self.classifier.probabilities(tokens)
        by_path = {finding.path: finding for finding in ruled.findings}
        results: list[FindingResult] = []
        for path in self.paths:
            ruled_finding = by_path.get(path)
            probability = probabilities.get(path)
            if probability is None:
                if ruled_finding is not None:
                    results.append(ruled_finding)
                continue
            present = probability >= self.classifier.threshold
            if ruled_finding is not None:
                status = _status(present=present, ruled=ruled_finding.status)
                results.append(
                    replace(ruled_finding, status=status, confidence=round(probability, 4))
                )
            elif present:
                evidence = self._grounding(report, tokens, path)
                if evidence:
                    results.append(
                        FindingResult(
                            path=path,
                            status=FindingStatus.PRESENT,
                            evidence=evidence,
                            attributes=self._attributes(report, path, evidence),
                            confidence=round(probability, 4),
                        )
                    )
        return StructuredReport(
            template_id=self.template.id,
            template_version=self.template.version,
            findings=tuple(results),
            provenance=Provenance(
                backend=self.name,
                model=f"{self.template.id}.classifier",
                model_version=str(self.classifier.trained_on.get("sha256", ""))[:12],
            ),
        )

    def _attributes(
        self, report: str, path: tuple[str, ...], evidence: tuple[Span, ...]
    ) -> dict[str, tuple[str, ...]]:
        """The attribute values the grounding sentences state (as the rules backend reads them)."""
        text = normalize(report)
        found: dict[str, list[str]] = {}
        for attribute in self.template.attributes_of(path):
            for span in evidence:
                for value in attribute_values(
                    attribute, span.of(text), self.template.value_synonyms
                ):
                    if value not in found.setdefault(attribute.name, []):
                        found[attribute.name].append(value)
        return {name: tuple(values) for name, values in found.items() if values}

    def _grounding(self, report: str, tokens: list[str], path: tuple[str, ...]) -> tuple[Span, ...]:
        """The sentences holding the affirmed words that pushed ``path`` most towards present."""
        words = {
            gram: value
            for gram, value in self.classifier.contributions(tokens, path).items()
            if _WORD.fullmatch(gram) and gram not in _FUNCTION_WORDS
        }
        strongest = max(words.values(), default=0.0)
        if strongest < _MIN_CONTRIBUTION:
            return ()
        pushing = {gram for gram, value in words.items() if value >= _SHARE * strongest}
        text = normalize(report)
        spans = []
        for section in find_sections(text):
            for sentence in split_sentences(text, section):
                if set(_WORD.findall(sentence.span.of(text).lower())) & pushing:
                    spans.append(sentence.span)
        return tuple(spans)


def _status(*, present: bool, ruled: FindingStatus) -> FindingStatus:
    """The status of a finding the sentences name, where the classifier also has a say.

    Where the two disagree the finding is uncertain: a report that says "no effusion" is never
    turned into "effusion", and a named finding the classifier doubts goes to a person rather
    than being dropped.
    """
    if ruled is FindingStatus.ABSENT:
        return FindingStatus.UNCERTAIN if present else FindingStatus.ABSENT
    return FindingStatus.PRESENT if present else FindingStatus.UNCERTAIN
