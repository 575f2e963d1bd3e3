"""Prometheus metrics of the ingest service.

Labels are channels, outcomes and failure reasons: small fixed sets, never a sender's
free-text identity or anything read from an instance.
"""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry, Counter, Histogram

from radstream.common.metrics import per_registry

__all__ = ["IngestMetrics", "ingest_metrics"]


class IngestMetrics:
    """The counters and histograms every receiving channel shares."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.receipts = Counter(
            "radstream_ingest_receipts_total",
            "Objects offered to ingest, by channel and outcome (stored, duplicate, or the "
            "failure reason such as not_dicom, truncated, sop_class_not_supported).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.received_bytes = Counter(
            "radstream_ingest_bytes_total",
            "Bytes offered to ingest, accepted or not, by channel.",
            ["channel"],
            registry=registry,
        )
        self.receipt_seconds = Histogram(
            "radstream_ingest_receipt_seconds",
            "Time from having an object's bytes to its receipt (parse, store, record, publish).",
            ["channel"],
            registry=registry,
        )
        self.studies_published = Counter(
            "radstream_ingest_studies_published_total",
            "StudyReceived events published, first emissions and amendments apart.",
            ["kind"],
            registry=registry,
        )
        self.associations = Counter(
            "radstream_ingest_dicom_associations_total",
            "DICOM association requests, by outcome (accepted, rejected, aborted).",
            ["outcome"],
            registry=registry,
        )
        # Label lookups cost more than the increments; cache the children per label tuple.
        self._receipts = functools.cache(self.receipts.labels)
        self._bytes = functools.cache(self.received_bytes.labels)
        self._seconds = functools.cache(self.receipt_seconds.labels)

    def count_receipt(self, channel: str, outcome: str, size: int, seconds: float) -> None:
        """Count one receipt, its bytes and its duration."""
        self._receipts(channel, outcome).inc()
        self._bytes(channel).inc(size)
        self._seconds(channel).observe(seconds)


ingest_metrics = per_registry(IngestMetrics)
"""The ingest metrics of a registry, registered on first use."""
