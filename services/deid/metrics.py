"""Prometheus metrics of the deid service: instances by outcome, time per instance, decisions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["DeidMetrics", "deid_metrics"]

# Instances range from a 40 KB CT slice to a 1 GB cine loop; buckets span both.
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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

    def review_decision(self, decision: str, result: str) -> None:
        """Count one decision on a review task and what became of it."""
        self.review_decisions.labels(decision, result).inc()

    def observe(self, outcome: str, seconds: float) -> None:
        """Count one instance and its time."""
        self.instances.labels(outcome).inc()
        self.seconds.labels(outcome).observe(seconds)


_metrics_by_registry: dict[int, DeidMetrics] = {}


def deid_metrics(registry: CollectorRegistry) -> DeidMetrics:
    """Return the deid metrics of ``registry``, registering them on first use."""
    metrics = _metrics_by_registry.get(id(registry))
    if metrics is None:
        metrics = _metrics_by_registry[id(registry)] = DeidMetrics(registry)
    return metrics
