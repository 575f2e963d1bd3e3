"""Prometheus metrics of the deid service: instances, time, review decisions, the pixel stage.

The pixel stage's metrics say what it decided per instance, what each step cost, the boxes it
found, the risk and the recognizer's confidence. Labels are fixed vocabularies (outcomes,
:class:`PixelDecision` values, step names, box kinds): nothing read from an instance -- text,
values, UIDs -- becomes a label or a sample.
"""

from __future__ import annotations

import math
import weakref

from prometheus_client import CollectorRegistry, Counter, Histogram

from radstream.deid.pixels.findings import PixelDecision, PixelReport

__all__ = ["TEXT_BEARING", "DeidMetrics", "deid_metrics"]

# Instances range from a 40 KB CT slice to a 1 GB cine loop; buckets span both.
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A step of the pixel stage takes from half a millisecond (the text check's screen on a CT slice
# that has no text) to tens of seconds (OCR of a cine's frames on a busy CPU).
_STEP_SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# Risk and confidence lie in [0, 1]; tenths, with the ends finer where thresholds sit (a
# calibrated risk threshold is small, a recognizer's doubtful reads are below 0.9).
_UNIT_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# Decisions about instances in which the stage found text (or could not tell): the review
# rate's denominator, as the issue states its target (held / text-bearing instances).
TEXT_BEARING = frozenset({PixelDecision.TEXT_KEPT, PixelDecision.REDACTED, PixelDecision.HELD})
_STEPS = ("decode", "triage", "ocr", "redact", "verify")


class DeidMetrics:
    """Counters and timings per de-identified instance, labelled by outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.instances = Counter(
            "radstream_deid_instances",
            "Instances de-identified, by outcome (released, held, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "radstream_deid_instance_seconds",
            "Seconds to de-identify one instance (fetch and store excluded), by outcome.",
            ["outcome"],
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )

        self.review_decisions = Counter(
            "radstream_deid_review_decisions",
            "Reviewers' decisions on deid's review tasks, by decision (approve, amend, reject, "
            "unspecified) and result (released, held_again, failed, discarded, duplicate, "
            "already_decided, unknown_task, invalid).",
            ["decision", "result"],
            registry=registry,
        )

        self.pixel_decisions = Counter(
            "radstream_deid_pixel_decisions",
            "Instances by the pixel stage's decision (no_pixels, no_text, text_kept, redacted, "
            "held); held / the text-bearing ones (text_kept, redacted, held) is the review rate.",
            ["decision"],
            registry=registry,
        )
        self.pixel_stage_seconds = Histogram(
            "radstream_deid_pixel_stage_seconds",
            "Seconds one instance spent in a step of the pixel stage (decode, triage, ocr, "
            "redact, verify); steps that did not run (no pixel data, pixels that do not "
            "decode) are not observed.",
            ["step"],
            buckets=_STEP_SECONDS_BUCKETS,
            registry=registry,
        )
        self.pixel_boxes = Counter(
            "radstream_deid_pixel_boxes",
            "Text boxes the pixel stage found, by kind: phi (filled, or proposed to the "
            "reviewer when held) and kept (annotations left in the pixels).",
            ["kind"],
            registry=registry,
        )
        self.pixel_risk = Histogram(
            "radstream_deid_pixel_risk",
            "Risk that PHI is left readable, per text-bearing instance (compared with the "
            "calibrated threshold; 1 when verification read PHI in the output).",
            buckets=_UNIT_BUCKETS,
            registry=registry,
        )
        self.pixel_confidence = Histogram(
            "radstream_deid_pixel_confidence",
            "Recognition confidence of each text box the OCR engine read (a reviewer's boxes "
            "and boxes detected but not read excluded).",
            buckets=_UNIT_BUCKETS,
            registry=registry,
        )

    def pixel_report(self, report: PixelReport) -> None:
        """Count one instance's pixel decision, its steps' costs, boxes, risk and confidences."""
        self.pixel_decisions.labels(report.decision.value).inc()
        costs = report.costs
        for step, ms in zip(
            _STEPS,
            (costs.decode_ms, costs.triage_ms, costs.ocr_ms, costs.redact_ms, costs.verify_ms),
            strict=True,
        ):
            if ms > 0:
                self.pixel_stage_seconds.labels(step).observe(ms / 1000)
        phi = sum(1 for finding in report.findings if finding.phi)
        if phi:
            self.pixel_boxes.labels("phi").inc(phi)
        if kept := len(report.findings) - phi:
            self.pixel_boxes.labels("kept").inc(kept)
        if report.decision in TEXT_BEARING:
            # NaN is held as if certain to leak (RiskThreshold.holds): counted as 1.
            risk = 1.0 if math.isnan(report.risk) else min(max(report.risk, 0.0), 1.0)
            self.pixel_risk.observe(risk)
        for finding in report.findings:
            if finding.source != "review" and any(char.isalnum() for char in finding.text):
                self.pixel_confidence.observe(finding.confidence)

    def review_decision(self, decision: str, result: str) -> None:
        """Count one decision on a review task and what became of it."""
        self.review_decisions.labels(decision, result).inc()

    def observe(self, outcome: str, seconds: float) -> None:
        """Count one instance and its time."""
        self.instances.labels(outcome).inc()
        self.seconds.labels(outcome).observe(seconds)


# Keyed by the registry itself, weakly: an id() key outlives its registry, and a new registry
# given the same address would be handed metrics registered on the old one.
_metrics_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, DeidMetrics] = (
    weakref.WeakKeyDictionary()
)


def deid_metrics(registry: CollectorRegistry) -> DeidMetrics:
    """Return the deid metrics of ``registry``, registering them on first use."""
    metrics = _metrics_by_registry.get(registry)
    if metrics is None:
        metrics = _metrics_by_registry[registry] = DeidMetrics(registry)
    return metrics
