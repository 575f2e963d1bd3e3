"""A structured report: a template's findings as a report states them, each grounded in the text.

Every finding the pipeline places carries its status (present, absent, uncertain), the values
of its attributes, and the evidence: the character spans of the source report that say so. A
finding without evidence cannot be built (:class:`FindingResult` refuses it), so nothing reaches
a structured report that the source does not say. Which backend and prompt produced it travel
with it, as every output event must say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from radstream.restructure.text import Span

__all__ = ["FindingResult", "FindingStatus", "Provenance", "StructuredReport"]


class FindingStatus(StrEnum):
    """What the report says of a finding."""

    PRESENT = "present"
    ABSENT = "absent"
    UNCERTAIN = "uncertain"  # hedged: possible, cannot be excluded, versus


@dataclass(frozen=True, kw_only=True)
class FindingResult:
    """One finding of the template as the report states it."""

    path: tuple[str, ...]
    status: FindingStatus
    evidence: tuple[Span, ...]  # the sentences (or phrases) that say it
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    confidence: float = 1.0
    historical: bool = False  # stated as past ("status post", "history of")

    def __post_init__(self) -> None:
        if not self.evidence:
            raise ValueError(f"finding {'/'.join(self.path)} has no evidence in the report")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError("a confidence is a probability")


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What produced a structured report (model and prompt versions go into every event)."""

    backend: str  # rules, llama, openai, triton
    model: str = ""
    model_version: str = ""
    prompt_version: str = ""


@dataclass(frozen=True, kw_only=True)
class StructuredReport:
    """A report's findings in a template, in the template's order."""

    template_id: str
    template_version: str
    findings: tuple[FindingResult, ...]
    provenance: Provenance

    def present(self) -> frozenset[tuple[str, ...]]:
        """The paths of the findings stated present."""
        return frozenset(f.path for f in self.findings if f.status is FindingStatus.PRESENT)
