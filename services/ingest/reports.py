"""Publishing what the report channels (HL7 v2 MLLP, FHIR) received, and auditing each receipt.

Both channels end the same way: ``ReportReceived`` and ``ClinicalObservation`` events on the
bus, and one audit record per received message or resource, accepted or not. Event ids are
derived from the SHA-256 of the received bytes, so a sender that re-sends the same message (it
never saw our acknowledgment) republishes the same ids, and downstream guards drop the repeat.

Report text rides on the event unless it is longer than ``max_inline_text_bytes``; then it is a
claim check (``text_ref``) into the PHI blob store, as DICOM pixel data is.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from radstream.common.blobstore import BlobStore
from radstream.common.envelope import derived_event_id
from radstream.contracts.v1 import clinical_pb2, reports_pb2
from radstream.ingest.audit import ReceiptAudit, ReceiptRecord
from radstream.ingest.receipt import Sender, utc_now

__all__ = [
    "DEFAULT_MAX_INLINE_TEXT_BYTES",
    "TEXT_MEDIA_TYPE",
    "PublishObservation",
    "PublishReport",
    "ReceivedBytes",
    "ReportSink",
    "report_event_id",
]

PublishReport = Callable[[reports_pb2.ReportReceived, str], Awaitable[object]]
"""Publish a ``ReportReceived`` with the given event id (``bus.publish(..., event_id=...)``)."""

PublishObservation = Callable[[clinical_pb2.ClinicalObservation, str], Awaitable[object]]
"""Publish a ``ClinicalObservation`` with the given event id."""

TEXT_MEDIA_TYPE: Final = "text/plain; charset=utf-8"
DEFAULT_MAX_INLINE_TEXT_BYTES: Final = 256 * 1024


def report_event_id(sha256: str, topic: str, index: int) -> str:
    """The event id of the ``index``-th event a received message produced on ``topic``."""
    return derived_event_id(f"ingest/received/{sha256}", f"{topic}/{index}")


@dataclass(frozen=True, kw_only=True)
class ReceivedBytes:
    """One received message or resource: its bytes' size and hash, and when it arrived."""

    size: int
    sha256: str
    received_at: datetime
    started: float  # time.perf_counter() when the bytes were complete

    @classmethod
    def of(cls, data: bytes, *, received_at: datetime | None = None) -> ReceivedBytes:
        """Hash ``data`` now."""
        return cls(
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            received_at=received_at or utc_now(),
            started=time.perf_counter(),
        )


class ReportSink:
    """Publishes report and observation events and audits receipts (see the module doc)."""

    def __init__(
        self,
        *,
        audit: ReceiptAudit,
        publish_report: PublishReport,
        publish_observation: PublishObservation | None = None,
        phi_store: BlobStore | None = None,
        max_inline_text_bytes: int = DEFAULT_MAX_INLINE_TEXT_BYTES,
    ) -> None:
        self._audit = audit
        self._publish_report = publish_report
        self._publish_observation = publish_observation
        self._phi_store = phi_store
        self._max_inline = max_inline_text_bytes

    @property
    def accepts_observations(self) -> bool:
        """Whether observations have somewhere to go."""
        return self._publish_observation is not None

    async def publish_report(
        self, report: reports_pb2.ReportReceived, text: str, *, event_id: str
    ) -> None:
        """Attach ``text`` (inline or as a claim check) and publish ``report``.

        Raises whatever the blob store or the bus raise; the caller answers "try again".
        """
        encoded = text.encode("utf-8")
        if len(encoded) > self._max_inline and self._phi_store is not None:
            blob = await self._phi_store.put(encoded, media_type=TEXT_MEDIA_TYPE)
            report.text_ref.CopyFrom(blob.to_proto())
        else:
            report.text = text
        await self._publish_report(report, event_id)

    async def publish_observation(
        self, observation: clinical_pb2.ClinicalObservation, *, event_id: str
    ) -> None:
        """Publish ``observation``; raises when observations are not wired or the bus fails."""
        if self._publish_observation is None:
            raise RuntimeError("no publisher for clinical observations was configured")
        await self._publish_observation(observation, event_id)

    async def audit(
        self, received: ReceivedBytes, *, sender: Sender, outcome: str, kind: str
    ) -> None:
        """Audit one receipt; raises :class:`~radstream.ingest.audit.AuditUnavailableError`."""
        await self._audit.record(
            ReceiptRecord(
                sender=sender,
                outcome=outcome,
                kind=kind,
                size=received.size,
                sha256=received.sha256,
                received_at=received.received_at,
                duration_ms=round((time.perf_counter() - received.started) * 1000, 3),
            )
        )
