"""The way back: export de-identified studies to a research PACS (C-STORE or STOW-RS).

:class:`ResearchExporter` consumes ``radstream.deid.completed.v1``. For every RELEASED
instance of the event it reads the released copy from the **release** blob store -- never the
PHI store -- and sends it to one configured target:

* ``c-store`` -- :class:`CStoreTransport`, a pynetdicom SCU (AE titles, host, port, optional
  TLS with a client certificate), one association per batch;
* ``stow-rs`` -- :class:`StowRsTransport`, ``POST {stow_url}/studies`` with
  ``multipart/related; type="application/dicom"`` (httpx), optional bearer token.

Before anything is sent, every released ref must lie inside the release store's root; a ref
anywhere else (the PHI store above all) makes the whole event poison: nothing of it is sent and
it goes to the dead-letter topic with the reason. Each instance's outcome is counted in
``radstream_ingest_export_instances_total{target, outcome}`` and logged by hash, never by a
value from the instance. An instance the target could not take *now* (association refused,
out of resources, HTTP 5xx) raises :class:`ExportUnavailableError`, a transient error, so the
bus's delivery policy retries the event; the target deduplicates by SOP Instance UID, so a
retry re-sending what already arrived is harmless. An instance the target refuses for good
(0xA9xx, 0xCxxx, HTTP 4xx) makes the event poison after the rest was sent.
"""

from __future__ import annotations

import functools
import logging
import posixpath
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from radstream.common import topics
from radstream.common.blobstore import BlobRef, BlobStore
from radstream.common.bus import Bus
from radstream.common.envelope import Event
from radstream.common.errors import PoisonEventError, TransientError
from radstream.common.idempotency import Claim
from radstream.common.metrics import per_registry
from radstream.common.topics import Topic
from radstream.contracts.v1 import deid_pb2
from radstream.ingest.errors import IngestConfigurationError, IngestError

__all__ = [
    "ExportItem",
    "ExportMetrics",
    "ExportRefusedError",
    "ExportRejectedError",
    "ExportTarget",
    "ExportTransport",
    "ExportUnavailableError",
    "InstanceOutcome",
    "ResearchExporter",
    "TransferResult",
    "export_metrics",
    "open_transport",
    "register_export",
]

log = logging.getLogger(__name__)

DICOM_MEDIA_TYPE = "application/dicom"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")

InstanceOutcome = Literal["sent", "failed", "retry"]


class ExportTarget(BaseModel):
    """One research PACS to export to (an item of ``RADSTREAM_INGEST_PACS_EXPORT_TARGETS``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    transport: Literal["c-store", "stow-rs"]
    # C-STORE
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    ae_title: str | None = None
    calling_ae_title: str = "RADSTREAM"
    tls_ca_file: Path | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # STOW-RS: the DICOMweb base URL; instances go to {stow_url}/studies.
    stow_url: str | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    # Instances per association / per STOW-RS request.
    batch_size: int = Field(default=25, ge=1, le=500)
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> ExportTarget:
        where = f"export target {self.name!r}"
        if not _NAME.match(self.name):
            raise IngestConfigurationError(
                "export target names are 1-40 lowercase letters, digits and dashes"
            )
        if self.transport == "c-store" and not (self.host and self.port and self.ae_title):
            raise IngestConfigurationError(f"{where} (c-store) needs host, port and ae_title")
        if self.transport == "stow-rs" and not (
            self.stow_url and self.stow_url.startswith(("http://", "https://"))
        ):
            raise IngestConfigurationError(f"{where} (stow-rs) needs an http(s) stow_url")
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise IngestConfigurationError(f"{where}: set bearer_token or bearer_token_file")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise IngestConfigurationError(f"{where}: TLS needs both tls_certfile and tls_keyfile")
        return self

    @property
    def tls(self) -> bool:
        """Whether TLS files are set: C-STORE then runs over TLS; STOW-RS uses them for https."""
        return self.tls_ca_file is not None or self.tls_certfile is not None

    def tls_context(self) -> ssl.SSLContext:
        """The client TLS context for this target.

        It trusts ``tls_ca_file`` (else the system's CAs) and presents the client certificate
        when one is set (mutual TLS).
        """
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH,
                cafile=str(self.tls_ca_file) if self.tls_ca_file else None,
            )
            if self.tls_certfile is not None and self.tls_keyfile is not None:
                context.load_cert_chain(str(self.tls_certfile), str(self.tls_keyfile))
        except (OSError, ssl.SSLError) as exc:
            raise IngestConfigurationError(
                f"TLS files of export target {self.name!r} are unusable "
                f"({type(exc).__name__}); check tls_ca_file, tls_certfile and tls_keyfile"
            ) from exc
        return context

    def token(self) -> str | None:
        """The STOW-RS bearer token, from the setting or the file (a mounted Secret)."""
        if self.bearer_token_file is not None:
            try:
                return self.bearer_token_file.read_text().strip()
            except OSError as exc:
                raise IngestConfigurationError(
                    f"cannot read the bearer token file of export target {self.name!r} "
                    f"({exc.strerror})"
                ) from exc
        return None if self.bearer_token is None else self.bearer_token.get_secret_value()


class ExportRefusedError(IngestError, PoisonEventError):
    """The event names a released instance outside the release store; nothing is exported."""


class ExportRejectedError(IngestError, PoisonEventError):
    """The target refused some instances for good (e.g. 0xA900, HTTP 400); see the counts."""


class ExportUnavailableError(IngestError, TransientError):
    """The target could not take some instances now; the event is retried."""


@dataclass(frozen=True, kw_only=True)
class ExportItem:
    """One released instance to send."""

    sop_instance_uid: str
    sop_class_uid: str
    sha256: str
    data: bytes


@dataclass(frozen=True, kw_only=True)
class TransferResult:
    """What the target said about one instance."""

    sop_instance_uid: str
    outcome: InstanceOutcome
    status: str  # "0x0000", "0xA700", "HTTP 409", "no-association"


class ExportTransport(Protocol):
    """Sends a batch of instances to a target and reports per instance."""

    async def send(self, items: Sequence[ExportItem]) -> list[TransferResult]:
        """Send ``items``; never raise for the target's answer, report it per instance."""

    async def close(self) -> None:
        """Release connections."""


class ExportMetrics:
    """Prometheus counter of exported instances."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.instances = Counter(
            "radstream_ingest_export_instances_total",
            "Released instances offered to an export target, by outcome "
            "(sent, failed, retry, refused).",
            ["target", "outcome"],
            registry=registry,
        )
        self.by = functools.cache(self.instances.labels)


export_metrics = per_registry(ExportMetrics)
"""The export metrics of a registry, registered on first use."""


@dataclass(frozen=True, kw_only=True)
class _Released:
    sop_instance_uid: str
    sop_class_uid: str
    ref: BlobRef


class ResearchExporter:
    """Exports the released instances of ``DeidCompleted`` events to one target."""

    def __init__(
        self,
        *,
        target: str,
        transport: ExportTransport,
        release_store: BlobStore,
        metrics: ExportMetrics,
        batch_size: int = 25,
    ) -> None:
        if release_store.zone != "release":
            raise IngestConfigurationError(
                "the research exporter reads the release store only; it was given the "
                f"{release_store.zone} store"
            )
        self.target = target
        self._transport = transport
        self._store = release_store
        self._metrics = metrics
        self._batch_size = batch_size

    async def close(self) -> None:
        """Close the transport."""
        await self._transport.close()

    async def export(self, completed: deid_pb2.DeidCompleted) -> list[TransferResult]:
        """Send every released instance of ``completed``; raise unless all arrived."""
        released = self._released(completed)
        results: list[TransferResult] = []
        for start in range(0, len(released), self._batch_size):
            batch = released[start : start + self._batch_size]
            items = [
                ExportItem(
                    sop_instance_uid=entry.sop_instance_uid,
                    sop_class_uid=entry.sop_class_uid,
                    sha256=entry.ref.sha256,
                    data=await self._store.get(entry.ref),
                )
                for entry in batch
            ]
            started = time.perf_counter()
            sent = await self._transport.send(items)
            self._account(items, sent, time.perf_counter() - started)
            results.extend(sent)
        retry = sum(result.outcome == "retry" for result in results)
        failed = sum(result.outcome == "failed" for result in results)
        if retry:
            raise ExportUnavailableError(
                f"export target {self.target!r} could not take {retry} of {len(results)} "
                "instance(s) now; the event is retried"
            )
        if failed:
            raise ExportRejectedError(
                f"export target {self.target!r} refused {failed} of {len(results)} instance(s); "
                "see radstream_ingest_export_instances_total and the target's log"
            )
        return results

    def _released(self, completed: deid_pb2.DeidCompleted) -> list[_Released]:
        """The released refs, each checked to lie in the release store (all, before any send)."""
        root = _normalized(self._store.root_uri)
        released: list[_Released] = []
        outside = 0
        for result in completed.results:
            if result.outcome != deid_pb2.DeidCompleted.OUTCOME_RELEASED:
                continue
            if not result.HasField("released"):
                outside += 1  # released without a copy: nothing safe to send
                continue
            blob = result.released.blob
            if not _lies_under(_normalized(blob.uri), root):
                outside += 1
                continue
            released.append(
                _Released(
                    sop_instance_uid=result.released.sop_instance_uid,
                    sop_class_uid=result.released.sop_class_uid,
                    ref=BlobRef.from_proto(blob, default_media_type=DICOM_MEDIA_TYPE),
                )
            )
        if outside:
            self._metrics.by(self.target, "refused").inc(outside)
            log.error(
                "export refused: released refs outside the release store",
                extra={"count": outside, "component": self.target},
            )
            raise ExportRefusedError(
                f"{outside} released ref(s) do not lie in the release store "
                f"{self._store.root_uri}; nothing of this study is exported"
            )
        return released

    def _account(
        self, items: Sequence[ExportItem], results: Sequence[TransferResult], seconds: float
    ) -> None:
        hashes = {item.sop_instance_uid: item.sha256 for item in items}
        for result in results:
            self._metrics.by(self.target, result.outcome).inc()
            level = logging.INFO if result.outcome == "sent" else logging.WARNING
            log.log(
                level,
                "instance export %s",
                result.outcome,
                extra={
                    "component": self.target,
                    "sha256": hashes.get(result.sop_instance_uid),
                    "status": result.status,
                    "duration_ms": round(seconds * 1000 / max(len(results), 1), 1),
                },
            )


def register_export(
    bus: Bus,
    exporter: ResearchExporter,
    *,
    group: str | None = None,
    topic: Topic = topics.DEID_COMPLETED_V1,
) -> Callable[[Event[deid_pb2.DeidCompleted], Claim], Any]:
    """Subscribe ``exporter`` to ``deid.completed`` (group ``ingest-export-<target>``)."""

    async def on_deid_completed(event: Event[deid_pb2.DeidCompleted], claim: Claim) -> None:
        await exporter.export(event.message)

    bus.subscribe(topic, group=group or f"ingest-export-{exporter.target}")(on_deid_completed)
    return on_deid_completed


def open_transport(target: ExportTarget) -> ExportTransport:
    """Build the transport ``target`` names."""
    if target.transport == "c-store":
        from radstream.ingest.export_cstore import CStoreTransport  # noqa: PLC0415

        return CStoreTransport.from_target(target)
    from radstream.ingest.export_stow import StowRsTransport  # noqa: PLC0415

    return StowRsTransport.from_target(target)


def _normalized(uri: str) -> str:
    """Decode and collapse ``.``/``..`` segments, so a ref cannot hide where it points."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return uri
    authority, _, path = unquote(rest).partition("/")
    return f"{scheme}://{authority}{posixpath.normpath('/' + path)}".rstrip("/")


def _lies_under(uri: str, root: str) -> bool:
    return uri == root or uri.startswith(root + "/")
