"""What the pixel stage found and decided about one instance: the values it hands on.

The pipeline records a :class:`PixelReport` per instance; the audit keeps its decision and
costs (never the text), the review task carries its findings (PHI zone), and the risk model
(:mod:`radstream.deid.pixels.risk`) turns its :class:`RiskFeatures` into the number that the
calibrated threshold compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from radstream.ocr.engine import Box, EngineInfo

__all__ = ["PixelDecision", "PixelFinding", "PixelReport", "RiskFeatures", "StageCosts"]


class PixelDecision(StrEnum):
    """What the pixel stage did with an instance."""

    NO_PIXELS = "no_pixels"  # nothing to check (no Pixel Data)
    NO_TEXT = "no_text"  # the text check found no text
    TEXT_KEPT = "text_kept"  # text found, none of it PHI: pixels unchanged
    REDACTED = "redacted"  # PHI boxes filled, output verified by re-OCR
    HELD = "held"  # sent to review (risk over the threshold, verification failed, unsure)


@dataclass(frozen=True, kw_only=True)
class PixelFinding:
    """One text box found in one frame (or an overlay plane), and whether it is PHI.

    ``text`` may be PHI: it goes into review tasks in the PHI zone, never into logs, metrics,
    audits or exception messages. ``phi_kinds`` names the header attribute or entity that
    matched (e.g. ``"PatientName"``, ``"DATE_TIME"``), ``phi_score`` the classifier's score.
    """

    frame: int
    box: Box
    text: str
    confidence: float
    detection_score: float
    phi: bool
    phi_kinds: tuple[str, ...] = ()
    phi_score: float = 0.0
    source: str = "pixels"  # "pixels", "overlay:60xx" or "icon"
    reason: str = ""  # why it is (not) PHI, no values: "matches PatientName", "allowlisted marker"

    def __repr__(self) -> str:
        return (
            f"PixelFinding(frame={self.frame}, box={self.box!r}, text=<{len(self.text)} chars>, "
            f"phi={self.phi}, phi_kinds={self.phi_kinds!r}, confidence={self.confidence:.3f})"
        )


@dataclass(frozen=True, kw_only=True)
class RiskFeatures:
    """The signals behind an instance's risk that PHI is left readable (all in [0, 1] or counts)."""

    text_found: bool = False
    min_recognition_confidence: float = 1.0  # lowest confidence over boxes read
    nearest_phi_margin: float = 1.0  # smallest |phi_score - threshold| over boxes
    unread_regions: int = 0  # detected boxes the recognizer returned nothing (or junk) for
    unusual_layout: float = 0.0  # share of read boxes kept (not PHI) inside the image
    frames_sampled_fraction: float = 1.0  # frames checked / frames present
    verification_failed: bool = False  # re-OCR of the output still read PHI
    boxes: int = 0
    phi_boxes: int = 0


@dataclass(frozen=True, kw_only=True)
class StageCosts:
    """Milliseconds spent per step on one instance (decode, triage, OCR, redact, verify)."""

    decode_ms: float = 0.0
    triage_ms: float = 0.0
    ocr_ms: float = 0.0
    redact_ms: float = 0.0
    verify_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        """The sum of the steps."""
        return self.decode_ms + self.triage_ms + self.ocr_ms + self.redact_ms + self.verify_ms


@dataclass(frozen=True, kw_only=True)
class PixelReport:
    """The pixel stage's account of one instance."""

    decision: PixelDecision
    findings: tuple[PixelFinding, ...] = ()
    reasons: tuple[str, ...] = ()  # machine-readable, no PHI: "text_check_positive", ...
    risk: float = 0.0
    risk_features: RiskFeatures = field(default_factory=RiskFeatures)
    costs: StageCosts = field(default_factory=StageCosts)
    frames_total: int = 0
    frames_checked: int = 0
    engine: EngineInfo | None = None
    # PHI lines the verification re-OCR still read in the output (held instances only).
    residual: tuple[PixelFinding, ...] = ()
    reviewed: bool = False  # redacted with a reviewer's boxes (no risk threshold applied)

    @property
    def redacted_boxes(self) -> dict[int, tuple[Box, ...]]:
        """The PHI boxes per frame (what was or would be filled)."""
        boxes: dict[int, list[Box]] = {}
        for finding in self.findings:
            if finding.phi:
                boxes.setdefault(finding.frame, []).append(finding.box)
        return {frame: tuple(found) for frame, found in boxes.items()}

    def to_audit(self) -> dict[str, Any]:
        """The report for the audit record: decision, reasons, counts, costs; never text."""
        costs = self.costs
        return {
            "decision": self.decision.value,
            "reasons": list(self.reasons),
            "risk": round(self.risk, 6),
            "reviewed": self.reviewed,
            "frames_total": self.frames_total,
            "frames_checked": self.frames_checked,
            "boxes": len(self.findings),
            "phi_boxes": sum(1 for finding in self.findings if finding.phi),
            "residual_phi_boxes": len(self.residual),
            "costs_ms": {
                "decode": round(costs.decode_ms, 3),
                "triage": round(costs.triage_ms, 3),
                "ocr": round(costs.ocr_ms, 3),
                "redact": round(costs.redact_ms, 3),
                "verify": round(costs.verify_ms, 3),
                "total": round(costs.total_ms, 3),
            },
            "engine": (
                {
                    "name": self.engine.name,
                    "version": self.engine.version,
                    "models": self.engine.models,
                }
                if self.engine is not None
                else None
            ),
        }
