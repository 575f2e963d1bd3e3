"""Real DICOM peers for the ingest tests: dcmtk command-line tools, a pynetdicom SCU, and what
a test needs around them (events read back from the broker, a throwaway PKI for DICOM TLS).

pynetdicom calls block, and the SCP under test answers from the same event loop, so every SCU
call here runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import shutil
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from radstream.common.envelope import Event, decode
from radstream.common.topics import Topic

DCMTK_BIN = Path("/usr/bin")


def dcmtk_missing_reason() -> str | None:
    """Why the dcmtk tools cannot be used here, or None when they can."""
    for tool in ("storescu", "echoscu"):
        if not (DCMTK_BIN / tool).exists() and shutil.which(tool) is None:
            return f"dcmtk's {tool} is not installed (Debian package dcmtk)"
    return None


async def run_tool(*argv: str, timeout: float = 60.0) -> tuple[int, str]:
    """Run a dcmtk tool; return its exit code and its combined output."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@dataclass(frozen=True, kw_only=True)
class StoreResult:
    """What a pynetdicom association achieved."""

    established: bool
    rejected: bool
    statuses: list[int] = field(default_factory=list)


def _associate_and_store(
    port: int,
    calling_ae: str,
    called_ae: str,
    items: Sequence[Any],
    contexts: Iterable[tuple[str, list[str]]],
    tls: ssl.SSLContext | None,
) -> StoreResult:
    ae = AE(ae_title=calling_ae)
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, syntaxes)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    tls_args = (tls, "127.0.0.1") if tls is not None else None
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae, tls_args=tls_args)
    if not assoc.is_established:
        return StoreResult(established=False, rejected=assoc.is_rejected)
    statuses: list[int] = []
    try:
        for item in items:
            reply = assoc.send_c_echo() if item == "echo" else assoc.send_c_store(item)
            statuses.append(int(reply.Status) if "Status" in reply else -1)
    finally:
        assoc.release()
    return StoreResult(established=True, rejected=False, statuses=statuses)


async def pynetdicom_send(
    port: int,
    items: Sequence[Any],
    *,
    contexts: Iterable[tuple[str, list[str]]] = (),
    calling_ae: str = "SYNTH_PYNET",
    called_ae: str = "RADSTREAM",
    tls: ssl.SSLContext | None = None,
) -> StoreResult:
    """In one association, send each item (a Dataset, a file path, or ``"echo"``)."""
    wanted = list(contexts) or [(Verification, ["1.2.840.10008.1.2"])]
    return await asyncio.to_thread(
        _associate_and_store, port, calling_ae, called_ae, items, wanted, tls
    )


class EventLog:
    """Every event on some topics, read from the start by a plain consumer."""

    def __init__(self, bootstrap: str, topics: Sequence[Topic]) -> None:
        self._types = {topic.name: topic.message for topic in topics}
        self._consumer = AIOKafkaConsumer(
            *self._types, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.events: list[Event[Any]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _collect(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    event = decode(
                        record.value,
                        record.headers,
                        self._types[record.topic],
                        topic=record.topic,
                    )
                    self.events.append(event)
            if batches:
                async with self._changed:
                    self._changed.notify_all()

    def on(self, topic: Topic, where: Callable[[Any], bool] = lambda _: True) -> list[Event[Any]]:
        return [e for e in self.events if e.topic == topic.name and where(e.message)]

    async def wait_for(
        self,
        topic: Topic,
        count: int,
        where: Callable[[Any], bool] = lambda _: True,
        timeout: float = 30.0,
    ) -> list[Event[Any]]:
        """Wait until at least ``count`` matching events arrived; return them all."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while len(found := self.on(topic, where)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} of {count} events on {topic.name}")
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=left)
                except TimeoutError:
                    continue
        return found


@dataclass(frozen=True, kw_only=True)
class DicomPki:
    """A throwaway CA with a server certificate for 127.0.0.1 and one client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self, *, with_certificate: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if with_certificate:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


def make_pki(directory: Path) -> DicomPki:
    """Generate the CA and certificates in ``directory`` (EC P-256, valid for a day)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "radstream test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common_name: str, *, server: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [
                        x509.ExtendedKeyUsageOID.SERVER_AUTH
                        if server
                        else x509.ExtendedKeyUsageOID.CLIENT_AUTH
                    ]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    pki = DicomPki(
        ca=directory / "ca.pem",
        server_cert=directory / "scp.pem",
        server_key=directory / "scp.key",
        client_cert=directory / "modality.pem",
        client_key=directory / "modality.key",
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for (cert_path, key_path), (name, server) in (
        ((pki.server_cert, pki.server_key), ("radstream-ingest", True)),
        ((pki.client_cert, pki.client_key), ("SYNTH_CT_TLS", False)),
    ):
        cert_pem, key_pem = issue(name, server=server)
        cert_path.write_bytes(cert_pem)
        key_path.write_bytes(key_pem)
    return pki
