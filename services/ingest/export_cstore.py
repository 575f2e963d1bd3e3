"""Export over DICOM C-STORE: a pynetdicom SCU, one association per batch, optional TLS."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import ssl
from collections.abc import Sequence

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.export import ExportItem, ExportTarget, InstanceOutcome, TransferResult

__all__ = ["CStoreTransport"]

# pynetdicom proposes at most 128 presentation contexts per association (PS3.8 9.3.2.2).
_MAX_CONTEXTS = 128
# Warnings (coercion, elements discarded, data set does not match SOP class): stored.
_STORED_WITH_WARNING = frozenset({0xB000, 0xB006, 0xB007})


class CStoreTransport:
    """Sends instances to a DICOM storage SCP."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        called_ae: str,
        calling_ae: str = "RADSTREAM",
        tls: ssl.SSLContext | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.called_ae = called_ae
        self.calling_ae = calling_ae
        self._tls = tls
        self._timeout_s = timeout_s

    @classmethod
    def from_target(cls, target: ExportTarget) -> CStoreTransport:
        """Build the transport for a ``c-store`` target."""
        if target.host is None or target.port is None or target.ae_title is None:
            raise IngestConfigurationError(f"export target {target.name!r} is not a c-store one")
        return cls(
            host=target.host,
            port=target.port,
            called_ae=target.ae_title,
            calling_ae=target.calling_ae_title,
            tls=target.tls_context() if target.tls else None,
            timeout_s=target.timeout_s,
        )

    async def send(self, items: Sequence[ExportItem]) -> list[TransferResult]:
        """Send ``items`` over one association (in a worker thread: pynetdicom blocks)."""
        return await asyncio.to_thread(self._send, list(items))

    async def close(self) -> None:
        """Nothing stays open between batches."""

    def _send(self, items: list[ExportItem]) -> list[TransferResult]:
        datasets: list[Dataset | None] = [_parsed(item) for item in items]
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._timeout_s
        for context in _contexts(datasets):
            ae.add_requested_context(*context)
        tls_args = (self._tls, self.host) if self._tls is not None else None
        assoc = ae.associate(self.host, self.port, ae_title=self.called_ae, tls_args=tls_args)
        if not assoc.is_established:
            status = "association-rejected" if assoc.is_rejected else "no-association"
            return [_result(item, "retry", status) for item in items]
        _no_delay(assoc)
        results: list[TransferResult] = []
        try:
            for item, dataset in zip(items, datasets, strict=True):
                results.append(self._store_one(assoc, item, dataset))
        finally:
            if assoc.is_established:
                assoc.release()
        return results

    @staticmethod
    def _store_one(assoc: Association, item: ExportItem, dataset: Dataset | None) -> TransferResult:
        if dataset is None:
            return _result(item, "failed", "unreadable")
        if not assoc.is_established:
            return _result(item, "retry", "association-lost")
        try:
            status = assoc.send_c_store(dataset)
        except ValueError:  # no accepted presentation context for this SOP class/syntax
            return _result(item, "failed", "no-presentation-context")
        except (RuntimeError, OSError):
            return _result(item, "retry", "association-lost")
        if "Status" not in status:  # no response (timeout, abort)
            return _result(item, "retry", "no-response")
        code = int(status.Status)
        return _result(item, _outcome_of(code), f"0x{code:04X}")


def _outcome_of(code: int) -> InstanceOutcome:
    """Stored (with or without warning), worth retrying (out of resources), or refused."""
    if code == 0x0000 or code in _STORED_WITH_WARNING:
        return "sent"
    if 0xA700 <= code <= 0xA7FF:
        return "retry"
    return "failed"


def _no_delay(assoc: Association) -> None:
    """Turn Nagle's algorithm off: otherwise each C-STORE waits on a delayed ACK (~40 ms)."""
    sock = getattr(assoc.dul.socket, "socket", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _result(item: ExportItem, outcome: InstanceOutcome, status: str) -> TransferResult:
    return TransferResult(sop_instance_uid=item.sop_instance_uid, outcome=outcome, status=status)


def _parsed(item: ExportItem) -> Dataset | None:
    try:
        return dcmread(io.BytesIO(item.data))
    except (InvalidDicomError, ValueError, EOFError):
        return None


def _contexts(datasets: Sequence[Dataset | None]) -> list[tuple[str, list[str]]]:
    """One context per SOP class, offering each instance's own syntax and the plain ones."""
    syntaxes: dict[str, list[str]] = {}
    for dataset in datasets:
        if dataset is None:
            continue
        offered = syntaxes.setdefault(str(dataset.SOPClassUID), [])
        own = str(dataset.file_meta.TransferSyntaxUID)
        for syntax in (own, ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            if syntax not in offered:
                offered.append(syntax)
    if len(syntaxes) > _MAX_CONTEXTS:
        raise IngestConfigurationError(
            f"a batch spans {len(syntaxes)} SOP classes, more than one association carries; "
            "lower the export target's batch_size"
        )
    return list(syntaxes.items())
