"""Errors of the ingest service.

Bad input from a sender is not an exception that leaves ingest: it becomes a failure status
on the sender's own protocol (a C-STORE status, an HTTP status, an HL7 NAK) and a counted,
audited receipt. What remains are the kinds the delivery layer and the operator act on:

* :class:`IngestConfigurationError` -- settings are wrong (TLS files missing, a bad DSN); fix
  the ``RADSTREAM_INGEST_*`` settings and restart.
* :class:`AssemblyStoreUnavailableError` -- the study assembly database did not answer;
  retried, and a sender is told "out of resources" so it re-sends later.

Messages name settings, sizes and types, never a value read from an instance or a report.
"""

from __future__ import annotations

from radstream.common.errors import MisconfiguredError, RadstreamError, TransientError

__all__ = [
    "AssemblyStoreUnavailableError",
    "IngestConfigurationError",
    "IngestError",
]


class IngestError(RadstreamError):
    """Root of the errors the ingest service raises on purpose."""


class IngestConfigurationError(IngestError, MisconfiguredError):
    """The ingest service is configured wrongly; fix the ``RADSTREAM_INGEST_*`` settings."""


class AssemblyStoreUnavailableError(IngestError, TransientError):
    """The study assembly database is away (locked, unreachable); retry with backoff."""
