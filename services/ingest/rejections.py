"""Counting and logging what the ingest edges refuse before anything is received, without PHI.

Objects that arrive and turn out malformed (a broken HL7 message, invalid FHIR JSON, a
garbage multipart part) are receipts: audited, and counted by outcome in
``radstream_ingest_receipts_total``. What is refused before there is an object to receive --
an unauthenticated HTTP request, an MLLP peer not on the allowlist, broken MLLP framing, a
request body of the wrong media type -- is one increment of
``radstream_ingest_refused_total{channel, reason}`` and one warning line here. The line names
the channel and a fixed reason word chosen by the code, never anything the sender sent.
"""

from __future__ import annotations

import functools
import logging
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter

from radstream.common.metrics import per_registry

__all__ = ["Channel", "Rejections", "rejections"]

Channel = Literal["stow", "fhir", "mllp", "http"]
"""Where a refusal happened; ``http`` is authentication, before any endpoint is chosen."""

log = logging.getLogger(__name__)

_METRIC: Final = "radstream_ingest_refused_total"


class Rejections:
    """The refusal counter of one registry; also logs each refusal (no PHI)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            _METRIC,
            "Requests and connections refused before anything was received, by channel and reason.",
            ["channel", "reason"],
            registry=registry,
        )
        self._child = functools.cache(self.counter.labels)

    def count(self, channel: Channel, reason: str, *, status: int | str | None = None) -> None:
        """Count one refusal on ``channel``; ``reason`` is a fixed word chosen by the code."""
        self._child(channel, reason).inc()
        log.warning(
            "ingest refused a request on %s: %s",
            channel,
            reason,
            extra={"component": channel, "error_type": reason, "status": status},
        )


rejections = per_registry(Rejections)
"""The refusal counter of a registry, registered on first use."""
