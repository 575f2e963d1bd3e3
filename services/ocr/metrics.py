"""Prometheus metrics of the ocr service; the chart's dashboard reads them by these names.

Labels carry the call (``recognize``, ``detect``, ``recognize_batch``, ``detect_batch``), the
engine's name and the gRPC status code, never anything from an image: no text, no sizes that
could single out a patient's image.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["OcrMetrics", "ocr_metrics"]

# From a 64 x 64 test image on RapidOCR (~10 ms) to a large radiograph on EasyOCR on CPU.
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Regions per image: most images have none, an ultrasound frame a dozen, a form a hundred.
_REGION_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)
# Recognition confidence: fine near 1, where release decisions sit.
_CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0)


class OcrMetrics:
    """Requests by call, engine and status; regions and confidences per image; calls in flight."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.request_seconds = Histogram(
            "radstream_ocr_request_seconds",
            "Seconds from a call's arrival to its answer (queueing included), by call and engine.",
            ["call", "engine"],
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "radstream_ocr_requests",
            "Calls answered, by call, engine and gRPC status code (OK, INVALID_ARGUMENT, ...).",
            ["call", "engine", "code"],
            registry=registry,
        )
        self.regions = Histogram(
            "radstream_ocr_regions",
            "Text regions found per image, by call and engine.",
            ["call", "engine"],
            buckets=_REGION_BUCKETS,
            registry=registry,
        )
        self.confidence = Histogram(
            "radstream_ocr_confidence",
            "Recognition confidence of each region read (Recognize only), by engine.",
            ["engine"],
            buckets=_CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge(
            "radstream_ocr_inflight",
            "Calls admitted and not yet answered: waiting for an engine slot or running.",
            registry=registry,
        )

    def answered(self, call: str, engine: str, code: str, seconds: float) -> None:
        """Count one answered call and its time."""
        self.requests.labels(call, engine, code).inc()
        self.request_seconds.labels(call, engine).observe(seconds)

    def image_read(
        self, call: str, engine: str, regions: int, confidences: list[float] | None
    ) -> None:
        """Record one image's region count and, when it was read, each region's confidence."""
        self.regions.labels(call, engine).observe(regions)
        if confidences is not None:
            histogram = self.confidence.labels(engine)
            for confidence in confidences:
                histogram.observe(confidence)


_metrics_by_registry: dict[int, OcrMetrics] = {}


def ocr_metrics(registry: CollectorRegistry) -> OcrMetrics:
    """Return the ocr metrics of ``registry``, registering them on first use."""
    metrics = _metrics_by_registry.get(id(registry))
    if metrics is None:
        metrics = _metrics_by_registry[id(registry)] = OcrMetrics(registry)
    return metrics
