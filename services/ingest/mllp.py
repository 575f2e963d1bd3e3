"""The HL7 v2 MLLP listener: ORU^R01 reports in, ``report.received`` events out, ACKs back.

MLLP frames each message as ``<VT> message <FS><CR>`` on a TCP connection; the sender waits for
the acknowledgment before the next message. For each message the listener

1. parses it and checks the header: ORU^R01, an accepted processing id (MSH-11), version 2.x;
2. reads one report per OBR group (:func:`radstream.ingest.oru.oru_reports`);
3. publishes one ``ReportReceived`` per report (event ids derived from the message's bytes, so
   a re-send republishes the same ids) and audits the receipt;
4. answers per MSH-15/16 (:mod:`radstream.ingest.hl7_ack`): AA/CA when published, AE/CE with an
   ERR segment when the content is at fault, AR/CR when the header is refused or the receiver
   could not take the message now (the sender should send it again).

A malformed message publishes nothing; it is audited with its failure reason (which counts it
in ``radstream_ingest_receipts_total``) and logged without content. Connections come only from
``allowed_peers``; any other peer is closed at once and counted. With TLS files set the
listener speaks MLLP over TLS, and with a client CA it takes only senders whose certificate that
CA signed (mutual TLS; the certificate's CN names the sender in the audit). A block larger than
``max_message_bytes`` or bytes outside a frame end the connection: the stream cannot be
trusted to be in step any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Iterable
from datetime import tzinfo
from pathlib import Path
from types import TracebackType
from typing import Annotated, Final, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from radstream.common.errors import MisconfiguredError
from radstream.common.settings import RadstreamSettings
from radstream.common.topics import REPORT_RECEIVED_V1
from radstream.contracts.v1 import reports_pb2
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.hl7_ack import acknowledgments, internal_error
from radstream.ingest.listener_tls import listener_tls_context
from radstream.ingest.name_lists import parse_names
from radstream.ingest.oru import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    Hl7Message,
    Hl7Problem,
    OruReport,
    oru_reports,
    parse_message,
)
from radstream.ingest.receipt import Sender
from radstream.ingest.rejections import Rejections
from radstream.ingest.reports import ReceivedBytes, ReportSink, report_event_id

__all__ = ["MllpServer", "MllpSettings", "PeerAllowlist"]

log = logging.getLogger(__name__)

START_BLOCK: Final = b"\x0b"
END_BLOCK: Final = b"\x1c\r"
_MiB: Final = 1024 * 1024
_STOP_TIMEOUT_S: Final = 5.0
_HANDSHAKE_TIMEOUT_S: Final = 10.0
# MSH-9's message type and trigger event are codes (HL7 tables 0076 and 0003, three characters
# each); anything else there is not a code, and the audit trail takes no text from a message.
_MESSAGE_CODE: Final = re.compile(r"[A-Z0-9]{3}")


class MllpSettings(RadstreamSettings):
    """The HL7 v2 MLLP listener (``RADSTREAM_INGEST_MLLP_*``).

    ``allowed_peers`` is a comma list of IP addresses or networks (``10.1.2.3,10.9.0.0/16``);
    empty refuses every connection (fail closed) unless ``allow_any_peer`` is set for a demo.
    ``tls_certfile``/``tls_keyfile`` put the listener on TLS (1.2 or newer); adding
    ``tls_client_cafile`` requires every sender to present a certificate that CA signed, and
    its CN becomes the sender identity in the receipt audit.
    ``encoding`` decodes messages whose MSH-18 names no character set; ``local_timezone``
    (IANA name) applies to HL7 times without an offset.
    """

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_INGEST_MLLP_", extra="ignore")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2575, ge=0, le=65535)
    allowed_peers: Annotated[frozenset[str], NoDecode] = frozenset()
    allow_any_peer: bool = False
    accepted_processing_ids: Annotated[frozenset[str], NoDecode] = frozenset({"P"})
    max_message_bytes: int = Field(default=4 * _MiB, gt=0)
    # Connections served at once; one more is closed at once (and counted).
    max_connections: int = Field(default=16, gt=0)
    idle_timeout_s: float = Field(default=300.0, gt=0)
    encoding: str = "utf-8"
    local_timezone: str = "UTC"
    # MSH-3/MSH-4 of our ACKs when the message named no receiving application/facility.
    application: str = "RADSTREAM"
    facility: str = ""
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_client_cafile: Path | None = None

    @field_validator("allowed_peers", "accepted_processing_ids", mode="before")
    @classmethod
    def _names(cls, value: object) -> frozenset[str]:
        return parse_names(value)

    @model_validator(mode="after")
    def _consistent(self) -> MllpSettings:
        PeerAllowlist(self.allowed_peers, allow_any=self.allow_any_peer)  # raises if malformed
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_MLLP_TLS_CERTFILE and _TLS_KEYFILE go together"
            )
        if self.tls_client_cafile is not None and self.tls_certfile is None:
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_MLLP_TLS_CLIENT_CAFILE needs the listener's own "
                "_TLS_CERTFILE and _TLS_KEYFILE"
            )
        self.timezone()
        try:
            "".encode(self.encoding)
        except LookupError:
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_MLLP_ENCODING is not a known character set (e.g. utf-8)"
            ) from None
        return self

    def timezone(self) -> tzinfo:
        """The zone of HL7 times without an offset."""
        try:
            return ZoneInfo(self.local_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_MLLP_LOCAL_TIMEZONE must be an IANA zone such as Europe/Berlin"
            ) from None


def mllp_tls_context(settings: MllpSettings) -> ssl.SSLContext | None:
    """The listener's TLS context, or None for plain MLLP; unusable files fail at startup."""
    return listener_tls_context(
        settings.tls_certfile,
        settings.tls_keyfile,
        settings.tls_client_cafile,
        settings="RADSTREAM_INGEST_MLLP_TLS_CERTFILE, _TLS_KEYFILE and _TLS_CLIENT_CAFILE",
    )


def client_cn(ssl_object: ssl.SSLObject | None) -> str | None:
    """The subject CN of the peer's verified certificate, if it presented one."""
    certificate = ssl_object.getpeercert() if ssl_object is not None else None
    if not certificate:
        return None
    # getpeercert() types its values as a union; "subject" is always the RDN tuple.
    subject = cast(tuple[tuple[tuple[str, str], ...], ...], certificate.get("subject", ()))
    names = [value for rdn in subject for key, value in rdn if key == "commonName"]
    return names[-1] if names else None


class PeerAllowlist:
    """The IP addresses and networks MLLP connections may come from."""

    def __init__(self, entries: Iterable[str], *, allow_any: bool = False) -> None:
        self.allow_any = allow_any
        try:
            self._networks = tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
        except ValueError:
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_MLLP_ALLOWED_PEERS must list IP addresses or networks "
                "(10.1.2.3, 10.9.0.0/16)"
            ) from None

    def allows(self, address: str) -> bool:
        """Whether a peer at ``address`` may connect."""
        if self.allow_any:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)


class MllpServer:
    """Serve MLLP on the running event loop; :attr:`port` is the bound port after start."""

    def __init__(self, settings: MllpSettings, *, sink: ReportSink, rejections: Rejections) -> None:
        self._settings = settings
        self._sink = sink
        self._rejections = rejections
        self._peers = PeerAllowlist(settings.allowed_peers, allow_any=settings.allow_any_peer)
        self._timezone = settings.timezone()
        self._port = settings.port
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._tls = mllp_tls_context(settings)  # bad TLS files fail at startup

    @property
    def port(self) -> int:
        """The bound port once started (the configured one before)."""
        return self._port

    async def start(self) -> None:
        """Bind and listen; raise MisconfiguredError when the address is taken."""
        if self._server is not None:
            raise RuntimeError("MllpServer.start() called twice; call stop() first")
        host = self._settings.host
        try:
            sock = socket.create_server(
                (host, self._port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
            )
        except OSError as exc:
            raise MisconfiguredError(
                f"the MLLP listener cannot listen on {host}:{self._port} "
                f"({exc.strerror or exc}); set RADSTREAM_INGEST_MLLP_HOST and _PORT"
            ) from exc
        self._port = int(sock.getsockname()[1])
        # The reader's limit bounds a frame: the message plus its start and end bytes.
        self._server = await asyncio.start_server(
            self._on_connection,
            sock=sock,
            limit=self._settings.max_message_bytes + 3,
            ssl=self._tls,
            ssl_handshake_timeout=_HANDSHAKE_TIMEOUT_S if self._tls is not None else None,
        )
        if self._settings.allow_any_peer:
            log.warning(
                "MLLP accepts connections from ANY peer (RADSTREAM_INGEST_MLLP_ALLOW_ANY_PEER); "
                "only for a local demo",
                extra={"port": self._port},
            )
        elif not self._settings.allowed_peers:
            log.warning(
                "MLLP has no allowed peers (RADSTREAM_INGEST_MLLP_ALLOWED_PEERS): every "
                "connection will be refused",
                extra={"port": self._port},
            )
        transport = "plain TCP" if self._tls is None else "TLS"
        log.info(
            "MLLP listening on port %d (%s)", self._port, transport, extra={"port": self._port}
        )

    async def stop(self) -> None:
        """Stop listening and end open connections; stopping a stopped server does nothing."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Closing a connection ends its read with EOF, so idle conversations finish on their
        # own; one still publishing gets a moment, then is cancelled (its sender re-sends).
        for writer in list(self._connections.values()):
            writer.close()
        if self._connections:
            _, late = await asyncio.wait(list(self._connections), timeout=_STOP_TIMEOUT_S)
            for task in late:
                task.cancel()
        await server.wait_closed()

    async def check(self) -> None:
        """Readiness: raise unless the listener is serving."""
        if self._server is None or not self._server.is_serving():
            raise RuntimeError("the MLLP listener is not running")

    async def __aenter__(self) -> MllpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        try:
            if not self._peers.allows(address):
                self._rejections.count("mllp", "peer_not_allowed")
                return
            if len(self._connections) > self._settings.max_connections:  # this one included
                self._rejections.count("mllp", "too_many_connections")
                return
            identity = client_cn(writer.get_extra_info("ssl_object")) or address
            sender = Sender(channel="mllp", identity=identity, address=address)
            await self._converse(reader, writer, sender)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the peer went away, or the server is stopping
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            if task is not None:
                self._connections.pop(task, None)

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sender: Sender
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(self._settings.idle_timeout_s):
                    frame = await reader.readuntil(END_BLOCK)
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    self._rejections.count("mllp", "incomplete_frame")
                return
            except asyncio.LimitOverrunError:
                self._rejections.count("mllp", "message_too_large")
                writer.write(_frame(self._acks(None, _too_large())[0]))
                await writer.drain()
                return
            except TimeoutError:
                return
            start = frame.find(START_BLOCK)
            if start < 0 or frame[:start].strip():
                self._rejections.count("mllp", "bytes_outside_frame")
                return
            for ack in await self.handle(frame[start + 1 : -len(END_BLOCK)], sender=sender):
                writer.write(_frame(ack))
            await writer.drain()

    async def handle(self, data: bytes, *, sender: Sender) -> list[bytes]:
        """Process one message's bytes (without framing) and return the ACKs to send back.

        Total: every message gets an answer and an audit record. Whatever goes wrong while
        reading and mapping it is the message's fault (AE, or AR when not even the header could
        be read): sending it again cannot help, and the feed must go on behind it. Only a
        failure to publish or audit is the receiver's (AR 207): the sender sends it again.
        """
        received = ReceivedBytes.of(data)
        message: Hl7Message | None = None
        try:
            message = parse_message(data, default_encoding=self._settings.encoding)
            self._check_header(message)
            reports = [
                (_report_received(report), report.text)
                for report in oru_reports(message, local_timezone=self._timezone)
            ]
        except Hl7Problem as problem:
            return await self._refuse(received, sender, message, problem)
        except Exception as exc:  # a case the parser did not foresee: still the message's fault
            log.warning(
                "HL7 message could not be read",
                extra={"component": "mllp", "error_type": type(exc).__name__},
            )
            return await self._refuse(received, sender, message, _unreadable(message))
        try:
            for index, (event, text) in enumerate(reports):
                event_id = report_event_id(received.sha256, REPORT_RECEIVED_V1.name, index)
                await self._sink.publish_report(event, text, event_id=event_id)
            await self._sink.audit(received, sender=sender, outcome="published", kind="ORU^R01")
        except Exception as exc:  # bus, blob store or audit away: the sender must send again
            log.warning(
                "HL7 message not committed",
                extra={"component": "mllp", "error_type": type(exc).__name__},
            )
            return await self._refuse(received, sender, message, internal_error(), audited=False)
        return self._acks(message, None)

    def _check_header(self, message: Hl7Message) -> None:
        if message.message_type != "ORU":
            raise Hl7Problem(
                UNSUPPORTED_MESSAGE_TYPE,
                "only ORU messages are accepted",
                segment="MSH",
                field=9,
                reject=True,
            )
        if message.trigger_event != "R01":
            raise Hl7Problem(
                UNSUPPORTED_EVENT_CODE,
                "only ORU^R01 is accepted",
                segment="MSH",
                field=9,
                reject=True,
            )
        if message.processing_id not in self._settings.accepted_processing_ids:
            raise Hl7Problem(
                UNSUPPORTED_PROCESSING_ID,
                "processing id not accepted",
                segment="MSH",
                field=11,
                reject=True,
            )
        if not message.version.startswith("2."):
            raise Hl7Problem(
                UNSUPPORTED_VERSION_ID,
                "only HL7 v2.x is accepted",
                segment="MSH",
                field=12,
                reject=True,
            )

    async def _refuse(
        self,
        received: ReceivedBytes,
        sender: Sender,
        message: Hl7Message | None,
        problem: Hl7Problem,
        *,
        audited: bool = True,
    ) -> list[bytes]:
        log.warning(
            "HL7 message refused",
            extra={
                "component": "mllp",
                "error_code": problem.code,
                "error_type": problem.reason,
                "size": received.size,
                "sha256": received.sha256,
            },
        )
        outcome = problem.reason if audited else "not_committed"
        kind = _audit_kind(message)
        try:
            await self._sink.audit(received, sender=sender, outcome=outcome, kind=kind)
        except Exception as exc:  # the NAK goes out regardless; the sender will re-send
            log.warning(
                "refused HL7 message not audited",
                extra={"component": "mllp", "error_type": type(exc).__name__},
            )
        return self._acks(message, problem)

    def _acks(self, message: Hl7Message | None, problem: Hl7Problem | None) -> list[bytes]:
        return acknowledgments(
            message,
            problem,
            application=self._settings.application,
            facility=self._settings.facility,
        )


def _too_large() -> Hl7Problem:
    # Table 0357 has no code for size; 207 with our fixed text in ERR-8 says what happened.
    return Hl7Problem(
        APPLICATION_INTERNAL_ERROR, "message larger than the receiver accepts", reject=True
    )


def _unreadable(message: Hl7Message | None) -> Hl7Problem:
    # A header that parsed makes it the content's fault (AE, do not re-send); without one
    # there is nothing to be in error, as for any unreadable header (AR).
    return Hl7Problem(
        DATA_TYPE_ERROR,
        "message content cannot be read",
        reject=message is None,
        reason="unreadable",
    )


def _audit_kind(message: Hl7Message | None) -> str:
    """MSH-9 as ``type^trigger`` for the audit record when both are codes, else ''."""
    if message is None:
        return ""
    codes = (message.message_type, message.trigger_event)
    return "^".join(codes) if all(_MESSAGE_CODE.fullmatch(code) for code in codes) else ""


def _frame(message: bytes) -> bytes:
    return START_BLOCK + message + END_BLOCK


def _report_received(report: OruReport) -> reports_pb2.ReportReceived:
    message = reports_pb2.ReportReceived(
        report_id=f"hl7/{report.number_namespace}/{report.report_number}",
        accession_number=report.accession_number,
        patient_id=report.patient_id,
        modality=report.modality,
        source=reports_pb2.ReportReceived.SOURCE_HL7_ORU,
    )
    if report.observed_at is not None:
        stamp = Timestamp()
        stamp.FromDatetime(report.observed_at)
        message.observed_at.CopyFrom(stamp)
    return message
