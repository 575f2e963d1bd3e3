"""Export over DICOMweb STOW-RS: ``POST {base}/studies``, multipart/related, httpx.

The answer is read per instance (PS3.18 10.5.3): SOP instances in the Referenced SOP Sequence
(0008,1199) arrived; those in the Failed SOP Sequence (0008,1198) did not, and their Failure
Reason (0008,1197) says whether to retry (0xA7xx, out of resources) or not. Without a
per-instance answer, the HTTP status decides for the whole request.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Sequence
from typing import Any

import httpx

from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.export import (
    ExportItem,
    ExportTarget,
    InstanceOutcome,
    TransferResult,
)

__all__ = ["StowRsTransport", "multipart_related"]

_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_SEQUENCE = "00081199"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_RETRY_HTTP = frozenset({408, 425, 429, 502, 503, 504})


def multipart_related(parts: Sequence[bytes]) -> tuple[bytes, str]:
    """Encode DICOM parts as a ``multipart/related`` body; return it and its content type."""
    boundary = f"radstream-{secrets.token_hex(16)}"
    chunks: list[bytes] = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), part]
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), content_type


class StowRsTransport:
    """Sends instances to a DICOMweb STOW-RS endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None = None,
        timeout_s: float = 60.0,
        tls: ssl.SSLContext | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/studies"
        headers = {"Accept": "application/dicom+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._own_client = client is None
        # Without a context of its own, httpx trusts certifi's CAs, not the hospital's.
        self._client = client or httpx.AsyncClient(
            timeout=timeout_s, verify=tls if tls is not None else True
        )
        self._headers = headers

    @classmethod
    def from_target(cls, target: ExportTarget) -> StowRsTransport:
        """Build the transport for a ``stow-rs`` target."""
        if target.stow_url is None:
            raise IngestConfigurationError(f"export target {target.name!r} is not a stow-rs one")
        return cls(
            base_url=target.stow_url,
            token=target.token(),
            timeout_s=target.timeout_s,
            tls=target.tls_context() if target.tls else None,
        )

    async def close(self) -> None:
        """Close the HTTP client this transport opened."""
        if self._own_client:
            await self._client.aclose()

    async def send(self, items: Sequence[ExportItem]) -> list[TransferResult]:
        """Send ``items`` in one request and read the answer per instance."""
        body, content_type = multipart_related([item.data for item in items])
        try:
            response = await self._client.post(
                self.url, content=body, headers={**self._headers, "Content-Type": content_type}
            )
        except httpx.TransportError as exc:
            return _all(items, "retry", f"http-{type(exc).__name__}")
        status = response.status_code
        if status in {401, 403}:
            raise IngestConfigurationError(
                f"the STOW-RS target refused radstream's credentials (HTTP {status}); check "
                "the export target's bearer token"
            )
        if status in _RETRY_HTTP or status >= 500:
            return _all(items, "retry", f"HTTP {status}")
        answer = _json_or_none(response)
        if answer is None:
            return _all(items, "sent" if status == 200 else "failed", f"HTTP {status}")
        return _per_instance(items, answer, status)


def _per_instance(items: Sequence[ExportItem], answer: Any, status: int) -> list[TransferResult]:
    stored = {_uid(entry) for entry in _sequence(answer, _REFERENCED_SOP_SEQUENCE)}
    failed = {
        _uid(entry): _failure_reason(entry) for entry in _sequence(answer, _FAILED_SOP_SEQUENCE)
    }
    results = []
    for item in items:
        uid = item.sop_instance_uid
        outcome: InstanceOutcome
        if uid in failed:
            reason = failed[uid]
            outcome = "retry" if reason is not None and 0xA700 <= reason <= 0xA7FF else "failed"
            text = f"0x{reason:04X}" if reason is not None else f"HTTP {status}"
        elif uid in stored or status == 200:
            outcome, text = "sent", f"HTTP {status}"
        else:  # neither listed nor a full success: the target did not say it has it
            outcome, text = "failed", f"HTTP {status}"
        results.append(TransferResult(sop_instance_uid=uid, outcome=outcome, status=text))
    return results


def _all(
    items: Sequence[ExportItem], outcome: InstanceOutcome, status: str
) -> list[TransferResult]:
    return [
        TransferResult(sop_instance_uid=item.sop_instance_uid, outcome=outcome, status=status)
        for item in items
    ]


def _json_or_none(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _sequence(answer: Any, tag: str) -> list[dict[str, Any]]:
    if not isinstance(answer, dict):
        return []
    element = answer.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return [value for value in values or [] if isinstance(value, dict)]


def _uid(entry: dict[str, Any]) -> str:
    values = entry.get(_REFERENCED_SOP_INSTANCE_UID, {}).get("Value") or [""]
    return str(values[0])


def _failure_reason(entry: dict[str, Any]) -> int | None:
    values = entry.get(_FAILURE_REASON, {}).get("Value") or []
    try:
        return int(values[0]) if values else None
    except (TypeError, ValueError):
        return None
