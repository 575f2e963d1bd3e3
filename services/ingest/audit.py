"""The receipt audit trail: who sent what, when, how big, its hash, and what became of it.

Every object offered to ingest, on any channel, accepted or refused, gets one
:class:`ReceiptRecord`. A record names the sender (an AE title, a token subject, a certificate
CN, a peer address: systems, never people), the kind of object (a SOP Class UID, an HL7
message type, a FHIR resource type), its size and sha256, and the outcome. It carries no value
read from the object: the sha256 leads to the stored blob in the PHI zone for whoever is
allowed to look.

Records go to a sink: JSON lines in a file (the embedded default; ship it with the logs), or one
JSON object per receipt in the PHI blob store. A receipt that cannot be audited is not
acknowledged: :class:`AuditUnavailableError` tells the channel to answer "try again later".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from radstream.common.blobstore import BlobStore
from radstream.common.errors import RadstreamError
from radstream.ingest.errors import IngestError
from radstream.ingest.metrics import IngestMetrics

if TYPE_CHECKING:
    from radstream.ingest.receipt import Sender

__all__ = [
    "AUDIT_SCHEMA",
    "AuditSink",
    "AuditUnavailableError",
    "BlobStoreAuditSink",
    "JsonLinesAuditSink",
    "ReceiptAudit",
    "ReceiptRecord",
]

AUDIT_SCHEMA = "radstream.ingest.receipt/1"

log = logging.getLogger(__name__)


class AuditUnavailableError(IngestError):
    """The audit sink could not record a receipt; the receipt must not be acknowledged."""


@dataclass(frozen=True, kw_only=True)
class ReceiptRecord:
    """One audited receipt.

    Parameters
    ----------
    sender
        Who sent it (channel, identity, address).
    outcome
        ``stored``, ``duplicate``, or the failure reason (``not_dicom``, ``truncated``, ...).
    kind
        What was sent, as a code: a SOP Class UID, ``ORU^R01``, ``DiagnosticReport``; empty
        when the bytes could not be read far enough to tell.
    size, sha256
        Of the bytes as received.
    received_at
        When the bytes were complete (UTC).
    blob_uri
        Where the bytes are stored, when they were (content-addressed: names a hash, no PHI).
    transfer_syntax_uid
        DICOM only: the transfer syntax of the stored bytes.
    duration_ms
        Time taken to reach the outcome.
    """

    sender: Sender
    outcome: str
    kind: str
    size: int
    sha256: str
    received_at: datetime
    blob_uri: str | None = None
    transfer_syntax_uid: str | None = None
    duration_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return {
            "schema": AUDIT_SCHEMA,
            "received_at": self.received_at.isoformat(),
            "channel": self.sender.channel,
            "sender": self.sender.identity,
            "address": self.sender.address,
            "outcome": self.outcome,
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
            "blob_uri": self.blob_uri,
            "transfer_syntax_uid": self.transfer_syntax_uid,
            "duration_ms": self.duration_ms,
        }

    def to_json(self) -> bytes:
        """The record as one compact UTF-8 JSON line, without the newline."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=True).encode()


class AuditSink(Protocol):
    """Where audit records go."""

    async def write(self, record: ReceiptRecord) -> None:
        """Persist ``record``; raise :class:`AuditUnavailableError` if it cannot be."""

    async def close(self) -> None:
        """Release what the sink holds open."""


class JsonLinesAuditSink:
    """Appends one JSON line per record to a file (mode 0600), flushed after each record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None

    def _append(self, line: bytes) -> None:
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._file = os.fdopen(fd, "ab")
            self._file.write(line + b"\n")
            self._file.flush()

    async def write(self, record: ReceiptRecord) -> None:
        """Append ``record`` as one line."""
        try:
            await asyncio.to_thread(self._append, record.to_json())
        except OSError as exc:
            raise AuditUnavailableError(
                f"cannot append to the audit file {self.path} ({exc.strerror}); check "
                "RADSTREAM_INGEST_AUDIT_PATH and its volume"
            ) from exc

    def _close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    async def close(self) -> None:
        """Close the file."""
        await asyncio.to_thread(self._close)


class BlobStoreAuditSink:
    """Stores each record as its own JSON object in a blob store (the PHI zone's)."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    async def write(self, record: ReceiptRecord) -> None:
        """Put ``record`` as one JSON object."""
        try:
            await self.store.put(record.to_json(), media_type="application/json")
        except RadstreamError as exc:
            raise AuditUnavailableError(
                f"cannot store an audit record in the {self.store.zone} blob store "
                f"({type(exc).__name__}); check RADSTREAM_BLOB_PHI_URI"
            ) from exc

    async def close(self) -> None:
        """Nothing to release."""


class ReceiptAudit:
    """Audits receipts and counts them in the ingest metrics."""

    def __init__(self, sink: AuditSink, metrics: IngestMetrics) -> None:
        self.sink = sink
        self.metrics = metrics

    async def record(self, record: ReceiptRecord) -> None:
        """Count ``record`` and write it to the sink (raises :class:`AuditUnavailableError`)."""
        seconds = (record.duration_ms or 0.0) / 1000
        self.metrics.count_receipt(record.sender.channel, record.outcome, record.size, seconds)
        log.debug(  # the audit trail is the record; the log line is for debugging only
            "receipt",
            extra={
                "component": record.sender.channel,
                "status": record.outcome,
                "size": record.size,
                "sha256": record.sha256,
                "duration_ms": record.duration_ms,
            },
        )
        await self.sink.write(record)

    async def close(self) -> None:
        """Close the sink."""
        await self.sink.close()
