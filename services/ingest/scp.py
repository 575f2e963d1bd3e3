"""The DICOM C-STORE SCP: modalities and PACS push instances to radstream over DIMSE.

pynetdicom runs each association in its own thread. The C-STORE handler takes the data set as
the sender encoded it (with File Meta Information, so the stored file is a Part 10 file in the
transfer syntax that was negotiated; compressed pixel data is kept, not decoded), hands it to
the event loop's :class:`~radstream.ingest.receipt.InstanceReceiver`, and answers with the
status of the receipt. Given a spool directory, a data set beyond 1 MiB is written there as it
arrives and read into memory by the receiver only once its memory reservation is granted
(:mod:`radstream.ingest.cstore_spool`).

Who may associate: only calling AE titles in the allow list (an empty list refuses everyone:
the SCP does not listen, and readiness says why, unless any title is explicitly allowed for a
demo). With TLS, the handshake comes first; with a client CA, a sender without a certificate
signed by it never reaches association negotiation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydicom.uid import (
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from radstream.common.spool import SpoolFile
from radstream.ingest.config import DicomSettings
from radstream.ingest.cstore_spool import (
    spool_received_datasets,
    stop_spooling_received_datasets,
    take_received,
)
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.listener_tls import listener_tls_context
from radstream.ingest.metrics import IngestMetrics
from radstream.ingest.receipt import OUT_OF_RESOURCES, InstanceReceiver, Receipt, Sender

if TYPE_CHECKING:
    from pynetdicom.events import Event
    from pynetdicom.transport import ThreadedAssociationServer

__all__ = ["DicomScp", "scp_tls_context", "scp_transfer_syntaxes"]

log = logging.getLogger(__name__)

# No instance limit given: keep whatever arrives (the receiver still applies its own).
_NO_LIMIT: Final = 1 << 62

# Transfer syntaxes whose pixel data lives elsewhere (JPIP referenced): nothing to store.
_REFERENCED_PIXEL_SYNTAXES: Final = frozenset(
    {
        "1.2.840.10008.1.2.4.94",
        "1.2.840.10008.1.2.4.95",
        "1.2.840.10008.1.2.4.204",
        "1.2.840.10008.1.2.4.205",
    }
)


def scp_transfer_syntaxes() -> list[str]:
    """Every transfer syntax pydicom knows but the JPIP-referenced ones, in order of preference.

    pynetdicom accepts, per presentation context, the first of *these* that the sender proposed.
    Encapsulated (compressed) syntaxes come first, so a sender holding compressed pixel data
    never has to decompress it (ingest stores what it received, and lossy data must not be
    re-encoded); then explicit VR little endian, which keeps the value representations; the
    implicit and big-endian syntaxes last.
    """
    order = {
        str(ExplicitVRLittleEndian): 1,
        str(DeflatedExplicitVRLittleEndian): 2,
        str(ImplicitVRLittleEndian): 3,
        str(ExplicitVRBigEndian): 4,
    }
    wanted = [uid for uid in AllTransferSyntaxes if uid not in _REFERENCED_PIXEL_SYNTAXES]
    return [str(uid) for uid in sorted(wanted, key=lambda uid: order.get(str(uid), 0))]


def scp_tls_context(settings: DicomSettings) -> ssl.SSLContext | None:
    """The server-side TLS context the settings ask for, or None for plain DICOM."""
    return listener_tls_context(
        settings.tls_certfile,
        settings.tls_keyfile,
        settings.tls_ca_file,
        settings="RADSTREAM_INGEST_DICOM_TLS_CERTFILE, _KEYFILE and _CA_FILE",
    )


class DicomScp:
    """The C-STORE/C-ECHO server, as an async start/stop server beside the bus."""

    def __init__(
        self,
        settings: DicomSettings,
        receiver: InstanceReceiver,
        *,
        metrics: IngestMetrics,
        spool_dir: Path | None = None,
        max_dataset_bytes: int | None = None,
    ) -> None:
        """Serve ``receiver``; data sets beyond 1 MiB wait in ``spool_dir``.

        Without a ``spool_dir`` they stay in pynetdicom's memory. ``max_dataset_bytes`` is the
        instance limit: content past it is counted and hashed, not kept.
        """
        self.settings = settings
        self._spool_dir = spool_dir
        self._max_dataset_bytes = max_dataset_bytes
        self._spooling = False
        self._receiver = receiver
        self._metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ae: AE | None = None
        self._server: ThreadedAssociationServer | None = None
        self._tls = scp_tls_context(settings)  # bad TLS files fail at startup

    @property
    def refuses_everyone(self) -> bool:
        """True when no calling AE title is allowed (the SCP then does not listen)."""
        return not (self.settings.allowed_calling_aes or self.settings.allow_any_calling_ae)

    @property
    def port(self) -> int:
        """The port the SCP listens on (useful when the settings asked for port 0)."""
        if self._server is None:
            raise IngestConfigurationError("the DICOM SCP is not listening")
        return int(self._server.server_address[1])

    async def start(self) -> None:
        """Bind and serve associations in pynetdicom's threads."""
        if self._server is not None:
            return
        if self.refuses_everyone:
            log.error(
                "DICOM SCP not started: no calling AE title is allowed; set "
                "RADSTREAM_INGEST_DICOM_ALLOWED_CALLING_AES"
            )
            return
        self._loop = asyncio.get_running_loop()
        if self._spool_dir is not None and not self._spooling:
            spool_received_datasets(self._spool_dir, max_bytes=self._max_dataset_bytes or _NO_LIMIT)
            self._spooling = True
        self._ae = self._build_ae()
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_CONN_OPEN, _no_nagle),
            (evt.EVT_ESTABLISHED, self._on_association, ["accepted"]),
            (evt.EVT_REJECTED, self._on_association, ["rejected"]),
            (evt.EVT_ABORTED, self._on_association, ["aborted"]),
        ]
        self._server = self._ae.start_server(
            (self.settings.host, self.settings.port),
            block=False,
            evt_handlers=handlers,
            ssl_context=self._tls,
        )
        log.info(
            "DICOM SCP listening",
            extra={"host": self.settings.host, "port": self.port, "status": _mode(self._tls)},
        )

    async def stop(self) -> None:
        """Stop listening and abort open associations (senders re-send what was not acked)."""
        ae, self._ae, self._server = self._ae, None, None
        if ae is not None:
            # Joins pynetdicom's threads, whose handlers may be waiting on this loop: not here.
            await asyncio.to_thread(ae.shutdown)
        if self._spooling:
            stop_spooling_received_datasets()
            self._spooling = False

    async def check(self) -> None:
        """Readiness: raise unless the SCP is listening."""
        if self.refuses_everyone:
            raise IngestConfigurationError(
                "DICOM SCP refuses every sender: set RADSTREAM_INGEST_DICOM_ALLOWED_CALLING_AES"
            )
        if self._server is None:
            raise IngestConfigurationError("the DICOM SCP is not listening")

    def _build_ae(self) -> AE:
        settings = self.settings
        ae = AE(ae_title=settings.ae_title)
        transfer_syntaxes = scp_transfer_syntaxes()
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, transfer_syntaxes)
        ae.add_supported_context(Verification)
        ae.require_calling_aet = sorted(settings.allowed_calling_aes)
        ae.require_called_aet = settings.require_called_ae_title
        ae.maximum_associations = settings.max_associations
        ae.acse_timeout = settings.acse_timeout_s
        ae.dimse_timeout = settings.dimse_timeout_s
        ae.network_timeout = settings.network_timeout_s
        return ae

    def _on_association(self, event: Event, outcome: str) -> None:
        self._metrics.associations.labels(outcome).inc()
        if outcome != "accepted":
            log.info("DICOM association %s", outcome, extra={"host": _peer(event)})

    def _on_c_store(self, event: Event) -> int:
        """Runs in an association thread: receive on the event loop, answer its status."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return OUT_OF_RESOURCES
        request = event.request
        if not isinstance(request, C_STORE):
            return OUT_OF_RESOURCES
        sender = Sender(
            channel="dicom",
            identity=str(event.assoc.requestor.ae_title).strip(),
            address=_peer(event),
        )
        try:
            received = take_received(event)
        except LookupError as exc:
            log.error("C-STORE data set not found", extra={"error_type": type(exc).__name__})
            return OUT_OF_RESOURCES
        future = asyncio.run_coroutine_threadsafe(
            self._receive(
                received,
                sender=sender,
                declared_sop_class_uid=str(request.AffectedSOPClassUID),
                declared_sop_instance_uid=str(request.AffectedSOPInstanceUID),
            ),
            loop,
        )
        try:
            receipt = future.result(timeout=self.settings.dimse_timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.warning("C-STORE receipt timed out", extra={"host": sender.address})
            return OUT_OF_RESOURCES
        except Exception as exc:  # a bug must not kill the association thread unanswered
            log.error("C-STORE receipt failed", extra={"error_type": type(exc).__name__})
            return OUT_OF_RESOURCES
        return receipt.dicom_status

    async def _receive(
        self,
        received: bytes | SpoolFile,
        *,
        sender: Sender,
        declared_sop_class_uid: str,
        declared_sop_instance_uid: str,
    ) -> Receipt:
        """Receive on the loop; a spool file is closed here, whether or not the sender waited."""
        try:
            return await self._receiver.receive(
                received,
                sender=sender,
                declared_sop_class_uid=declared_sop_class_uid,
                declared_sop_instance_uid=declared_sop_instance_uid,
            )
        finally:
            if isinstance(received, SpoolFile):
                received.close()


def _peer(event: Event) -> str:
    return str(event.assoc.requestor.address)


def _mode(tls: ssl.SSLContext | None) -> str:
    if tls is None:
        return "plain"
    return "tls-client-cert" if tls.verify_mode == ssl.CERT_REQUIRED else "tls"


def _no_nagle(event: Event) -> None:
    """Send each PDU at once: with Nagle on, every C-STORE response waits ~40 ms for an ACK."""
    sock = getattr(event.assoc.dul, "socket", None)
    raw = getattr(sock, "socket", None)
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
