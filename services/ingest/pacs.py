"""PACS integration with Orthanc: settings, and pull mode (follow the changes feed).

Three modes (``RADSTREAM_INGEST_PACS_MODE``):

* ``pull`` -- :class:`OrthancPuller` follows Orthanc's changes feed (``GET /changes``). For
  every ``StableStudy`` change (Orthanc saw no new instance of the study for its
  ``StableAge``) it lists the study's instances, downloads each one's Part 10 bytes and hands
  them to the :class:`~radstream.ingest.receipt.InstanceReceiver` as channel ``pacs-pull``,
  exactly as the SCP hands over what it receives; then it completes the study in the
  assembly, so ``study.received`` follows without waiting for ingest's own quiet period.
  The feed position is saved durably (:mod:`radstream.ingest.pull_cursor`) after each study,
  so a restarted puller continues where it stopped; an instance fetched twice is a duplicate
  the assembly ignores.
* ``push`` -- Orthanc sends to ingest's SCP (a ``DicomModalities`` entry for ingest plus a
  forwarding rule or ``POST /modalities/{name}/store``); nothing runs here, the SCP receives.
* ``off`` -- no PACS.

Errors from Orthanc (unreachable, 5xx) are counted and retried with exponential backoff; the
position is not advanced past a study that failed, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from radstream.common.errors import TransientError
from radstream.common.metrics import per_registry
from radstream.common.settings import RadstreamSettings, dsn_has_password
from radstream.common.spool import SpoolFile
from radstream.ingest.errors import IngestConfigurationError, IngestError
from radstream.ingest.export import ExportTarget
from radstream.ingest.pull_cursor import PullCursor
from radstream.ingest.receipt import Receipt, Sender

__all__ = [
    "OrthancPuller",
    "PacsMetrics",
    "PacsSettings",
    "PacsUnavailableError",
    "PollResult",
    "pacs_metrics",
]

log = logging.getLogger(__name__)

PacsMode = Literal["off", "pull", "push"]

# Receipt failures that say "a dependency is away", not "this instance is bad": the study is
# fetched again later. (A too-large file is also "out of resources" on the wire, but fetching
# it again changes nothing, so it counts as refused.)
# A pulled instance beyond this waits in a spool file while it downloads (as STOW-RS parts do).
_SPOOL_ABOVE = 1024 * 1024

_TRANSIENT_FAILURES = frozenset(
    {"storage_unavailable", "publish_failed", "assembly_unavailable", "audit_unavailable"}
)


def targets_carry_a_token(value: object) -> bool:
    """Whether export targets (JSON text or decoded) give a bearer token inline."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return False  # not JSON: refused by validation anyway
    items = value if isinstance(value, list) else []
    return any(isinstance(item, dict) and item.get("bearer_token") for item in items)


class PacsSettings(RadstreamSettings):
    """PACS integration (``RADSTREAM_INGEST_PACS_*``).

    ``export_targets`` is a JSON list of :class:`~radstream.ingest.export.ExportTarget`
    (``RADSTREAM_INGEST_PACS_EXPORT_TARGETS='[{"name": "research", "transport": "stow-rs",
    "stow_url": "https://pacs.example/dicom-web", "bearer_token_file": "/run/secrets/t"}]'``).
    """

    model_config = SettingsConfigDict(env_prefix="RADSTREAM_INGEST_PACS_", extra="ignore")
    # Export targets with an inline bearer_token come from a secret file (or use
    # bearer_token_file); a cursor DSN with a password likewise.
    secret_file_only: ClassVar[Mapping[str, Callable[[object], bool]]] = {
        "cursor_dsn": dsn_has_password,
        "export_targets": targets_carry_a_token,
    }

    mode: PacsMode = "off"
    orthanc_url: str = "http://127.0.0.1:8042"
    username: str | None = None
    password: SecretStr | None = None
    # Names the PACS in receipts and InstanceStored.sender_id; default: Orthanc's own AE title.
    node_name: str | None = None
    poll_interval_s: float = Field(default=2.0, gt=0)
    changes_per_request: int = Field(default=100, ge=1, le=1000)
    # Where a puller without a saved position starts: "latest" skips what the PACS already
    # holds (a hospital PACS holds years of studies), "beginning" takes everything.
    start_at: Literal["latest", "beginning"] = "latest"
    cursor_dsn: str = "sqlite:///.radstream/ingest-pacs-cursor.sqlite3"
    fetch_concurrency: int = Field(default=4, ge=1, le=32)
    request_timeout_s: float = Field(default=30.0, gt=0)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    export_targets: list[ExportTarget] = Field(default_factory=list)

    @field_validator("orthanc_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_PACS_ORTHANC_URL must be an http(s):// URL of Orthanc's REST API"
            )
        if parts.username or parts.password:
            raise IngestConfigurationError(
                "put Orthanc's credentials in RADSTREAM_INGEST_PACS_USERNAME/_PASSWORD, "
                "not in RADSTREAM_INGEST_PACS_ORTHANC_URL"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> PacsSettings:
        if (self.username is None) != (self.password is None):
            raise IngestConfigurationError(
                "set both RADSTREAM_INGEST_PACS_USERNAME and RADSTREAM_INGEST_PACS_PASSWORD, "
                "or neither"
            )
        names = [target.name for target in self.export_targets]
        if len(names) != len(set(names)):
            raise IngestConfigurationError(
                "RADSTREAM_INGEST_PACS_EXPORT_TARGETS: every target needs its own name"
            )
        return self

    def auth(self) -> httpx.BasicAuth | None:
        """HTTP basic credentials for Orthanc, if configured."""
        if self.username is None or self.password is None:
            return None
        return httpx.BasicAuth(self.username, self.password.get_secret_value())

    @property
    def source(self) -> str:
        """The key of this PACS's position in the cursor store (its URL, no credentials)."""
        return f"orthanc:{self.orthanc_url}"


class PacsUnavailableError(IngestError, TransientError):
    """Orthanc did not answer, or answered 5xx; the puller backs off and retries."""


class InstanceSink(Protocol):
    """Where pulled instances go (:class:`~radstream.ingest.receipt.InstanceReceiver`)."""

    async def receive(self, data: bytes | SpoolFile, *, sender: Sender) -> Receipt:
        """Parse, store, record and announce one instance (a large one in a spool file)."""


class StudyCompletion(Protocol):
    """The explicit completion trigger of the study assembly."""

    def complete(self, study_uid: str) -> Awaitable[object]:
        """Mark the study complete now, so ``study.received`` follows."""


class PacsMetrics:
    """Prometheus metrics of the puller."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.studies = Counter(
            "radstream_ingest_pacs_studies_total",
            "Stable studies handled from the PACS changes feed, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.instances = Counter(
            "radstream_ingest_pacs_instances_total",
            "Instances fetched from the PACS, by receipt outcome.",
            ["outcome"],
            registry=registry,
        )
        self.errors = Counter(
            "radstream_ingest_pacs_errors_total",
            "Failed polls of the PACS (the puller backed off), by error type.",
            ["error_type"],
            registry=registry,
        )
        self.position = Gauge(
            "radstream_ingest_pacs_position",
            "Last handled sequence number of the PACS changes feed.",
            registry=registry,
        )
        self.studies_by = functools.cache(self.studies.labels)
        self.instances_by = functools.cache(self.instances.labels)
        self.errors_by = functools.cache(self.errors.labels)


pacs_metrics = per_registry(PacsMetrics)
"""The puller metrics of a registry, registered on first use."""


@dataclass(frozen=True, kw_only=True)
class PollResult:
    """What one poll of the changes feed did."""

    changes: int
    studies: int
    position: int
    done: bool  # False: the feed has more right now, poll again without waiting


class OrthancPuller:
    """Follows an Orthanc changes feed and ingests every stable study (see module docstring)."""

    def __init__(
        self,
        *,
        settings: PacsSettings,
        receiver: InstanceSink,
        assembly: StudyCompletion,
        cursor: PullCursor,
        metrics: PacsMetrics,
        spool_dir: Path,
        max_instance_bytes: int,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``max_instance_bytes`` is the receiver's instance limit (the reader's file limit)."""
        self.settings = settings
        self._spool_dir = spool_dir
        self._max_instance_bytes = max_instance_bytes
        self._receiver = receiver
        self._assembly = assembly
        self._cursor = cursor
        self._metrics = metrics
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            base_url=settings.orthanc_url,
            auth=settings.auth(),
            timeout=settings.request_timeout_s,
        )
        self._sleep = sleep
        self._sender: Sender | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle: an async start/stop server run beside the bus ------------------------------

    async def start(self) -> None:
        """Open the cursor and follow the feed in a background task."""
        await self._cursor.open()
        self._task = asyncio.create_task(self.run(), name="orthanc-puller")

    async def stop(self) -> None:
        """Stop following (a study in flight is abandoned, fetched again next time)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_client:
            await self._client.aclose()
        await self._cursor.close()

    async def check(self) -> None:
        """Readiness: Orthanc answers ``/system`` with these credentials."""
        await self._get("/system")

    async def run(self) -> None:
        """Poll until cancelled, backing off while Orthanc or a store is away."""
        backoff = self.settings.backoff_initial_s
        while True:
            try:
                result = await self.poll_once()
            except TransientError as exc:
                self._metrics.errors_by(type(exc).__name__).inc()
                log.warning(
                    "PACS poll failed, backing off",
                    extra={"error_type": type(exc).__name__, "backoff_s": backoff},
                )
                await self._sleep(backoff)
                backoff = min(self.settings.backoff_max_s, backoff * 2)
                continue
            except IngestConfigurationError as exc:
                # Wrong credentials or URL: say so loudly, and keep trying slowly, so a fixed
                # Secret is picked up without a restart.
                self._metrics.errors_by(type(exc).__name__).inc()
                log.error("PACS refused the puller: %s", exc, extra={"error_type": "config"})
                await self._sleep(self.settings.backoff_max_s)
                continue
            except Exception as exc:  # an unexpected answer must not end the pull for good
                self._metrics.errors_by(type(exc).__name__).inc()
                log.exception("PACS poll failed unexpectedly", extra={"error_type": "internal"})
                await self._sleep(self.settings.backoff_max_s)
                continue
            backoff = self.settings.backoff_initial_s
            if result.done:
                await self._sleep(self.settings.poll_interval_s)

    # -- one poll -----------------------------------------------------------------------------

    async def poll_once(self) -> PollResult:
        """Read one page of the changes feed and handle its stable studies."""
        source = self.settings.source
        position = await self._position(source)
        page = await self._get(
            "/changes", since=str(position), limit=str(self.settings.changes_per_request)
        )
        last = int(page.get("Last", 0))
        changes: Sequence[dict[str, Any]] = page.get("Changes", [])
        if not changes and last < position:
            # The feed went backwards: Orthanc's database was replaced. Start over; whatever
            # was ingested before comes back as duplicates and is ignored.
            log.warning("PACS changes feed restarted; following it from the beginning")
            self._metrics.errors_by("feed_restarted").inc()
            await self._save(source, 0)
            return PollResult(changes=0, studies=0, position=0, done=False)
        studies = 0
        for change in changes:
            sequence = int(change["Seq"])
            if change.get("ChangeType") == "StableStudy":
                await self._pull_study(str(change["ID"]))
                studies += 1
                await self._save(source, sequence)
            position = sequence
        if changes:
            await self._save(source, position)
        return PollResult(
            changes=len(changes), studies=studies, position=position, done=bool(page.get("Done"))
        )

    async def _position(self, source: str) -> int:
        saved = await self._cursor.load(source)
        if saved is not None:
            return saved
        start = 0
        if self.settings.start_at == "latest":
            start = int((await self._get("/changes", last=""))["Last"])
        await self._save(source, start)
        return start

    async def _save(self, source: str, position: int) -> None:
        await self._cursor.save(source, position)
        self._metrics.position.set(position)

    async def _pull_study(self, study_id: str) -> None:
        started = time.perf_counter()
        try:
            instances: list[dict[str, Any]] = await self._get(f"/studies/{study_id}/instances")
        except _GoneError:
            self._metrics.studies_by("vanished").inc()
            log.info("stable study deleted from the PACS before it was fetched")
            return
        sender = await self._the_sender()
        gate = asyncio.Semaphore(self.settings.fetch_concurrency)

        async def fetch_and_receive(instance_id: str) -> Receipt | None:
            async with gate:
                try:
                    data = await self._get_instance(f"/instances/{instance_id}/file")
                except _GoneError:
                    self._metrics.instances_by("vanished").inc()
                    return None
                try:
                    return await self._receiver.receive(data, sender=sender)
                finally:
                    if isinstance(data, SpoolFile):
                        data.close()

        receipts = await asyncio.gather(
            *(fetch_and_receive(str(instance["ID"])) for instance in instances)
        )
        study_uid = await self._account(receipts)
        if study_uid is None:
            self._metrics.studies_by("nothing_accepted").inc()
            return
        await self._assembly.complete(study_uid)
        self._metrics.studies_by("pulled").inc()
        log.info(
            "stable study pulled from the PACS",
            extra={
                "count": len(instances),
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )

    async def _account(self, receipts: Sequence[Receipt | None]) -> str | None:
        """Count the receipts; return the study UID, or raise when any must be fetched again."""
        study_uid: str | None = None
        retry = 0
        for receipt in receipts:
            if receipt is None:
                continue
            if receipt.accepted:
                self._metrics.instances_by("duplicate" if receipt.duplicate else "accepted").inc()
                study_uid = study_uid or receipt.study_instance_uid
            elif receipt.failure in _TRANSIENT_FAILURES:
                self._metrics.instances_by("retry").inc()
                retry += 1
            else:
                # The receiver already counted, audited and logged the refusal (no PHI).
                self._metrics.instances_by("refused").inc()
        if retry:
            raise PacsUnavailableError(
                f"{retry} pulled instance(s) could not be stored now; the study is fetched again"
            )
        return study_uid

    async def _the_sender(self) -> Sender:
        if self._sender is None:
            url = urlsplit(self.settings.orthanc_url)
            identity = self.settings.node_name
            if identity is None:
                system = await self._get("/system")
                identity = str(system.get("DicomAet") or url.hostname)
            self._sender = Sender(
                channel="pacs-pull", identity=identity, address=url.netloc or str(url.hostname)
            )
        return self._sender

    # -- HTTP ---------------------------------------------------------------------------------

    async def _get(self, path: str, **params: str) -> Any:
        return (await self._request(path, params)).json()

    async def _get_instance(self, path: str) -> bytes | SpoolFile:
        """Download an instance chunk by chunk; a large one goes to a spool file.

        Nothing is reserved in the memory budget yet (the receiver does that), so at most
        ``_SPOOL_ABOVE`` bytes are held here. One past ``max_instance_bytes`` is not downloaded
        further: the receiver refuses its spool file, whose content is dropped, by size alone.
        """
        response = await self._request(path, {}, stream=True)
        body = _PulledBody(self._spool_dir, self._max_instance_bytes)
        try:
            async for chunk in response.aiter_bytes():
                if not body.add(chunk):
                    break  # over the limit: closing the response stops the download
            return body.take()
        except httpx.TransportError as exc:
            body.close()
            raise self._unavailable(exc) from exc
        except BaseException:
            body.close()
            raise
        finally:
            await response.aclose()

    def _unavailable(self, exc: httpx.TransportError) -> PacsUnavailableError:
        return PacsUnavailableError(
            f"Orthanc at {self.settings.orthanc_url} did not answer ({type(exc).__name__})"
        )

    async def _request(
        self, path: str, params: dict[str, str], *, stream: bool = False
    ) -> httpx.Response:
        request = self._client.build_request("GET", path, params=params)
        try:
            response = await self._client.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        try:
            self._check_status(path, response.status_code)
        except BaseException:
            await response.aclose()
            raise
        return response

    @staticmethod
    def _check_status(path: str, status: int) -> None:
        if status == 404 and not path.startswith(("/changes", "/system")):
            raise _GoneError(path)
        if status in {401, 403}:
            raise IngestConfigurationError(
                f"Orthanc refused the puller (HTTP {status}); check "
                "RADSTREAM_INGEST_PACS_USERNAME and RADSTREAM_INGEST_PACS_PASSWORD"
            )
        if status in {408, 429} or status >= 500:
            raise PacsUnavailableError(f"Orthanc answered HTTP {status}; retrying later")
        if status != 200:
            raise IngestConfigurationError(
                f"Orthanc answered HTTP {status} to GET {path.split('/')[1]}; is "
                "RADSTREAM_INGEST_PACS_ORTHANC_URL the root of Orthanc's REST API?"
            )


class _PulledBody:
    """An instance's bytes as they arrive: in memory up to ``_SPOOL_ABOVE``, then spooled."""

    def __init__(self, spool_dir: Path, limit: int) -> None:
        self._spool_dir = spool_dir
        self._limit = limit
        # Spool from the first byte an over-limit instance has, so it reaches the receiver as
        # a (content-dropped) spool file that the receiver refuses unread.
        self._spool_above = min(_SPOOL_ABOVE, limit)
        self._chunks: list[bytes] = []
        self._size = 0
        self._spool: SpoolFile | None = None

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; False once the instance is over the limit (download no more)."""
        self._size += len(chunk)
        if self._spool is None and self._size > self._spool_above:
            self._spool = SpoolFile(self._spool_dir)
            for piece in self._chunks:
                self._spool.write(piece)
            self._chunks = []
        if self._spool is None:
            self._chunks.append(chunk)
            return True
        self._spool.write(chunk)
        if self._size > self._limit:
            self._spool.drop_content()
            return False
        return True

    def take(self) -> bytes | SpoolFile:
        """The instance: its bytes, or its spool file (which the caller then closes)."""
        if self._spool is not None:
            return self._spool
        return b"".join(self._chunks)

    def close(self) -> None:
        """Drop what arrived (a download that failed half-way)."""
        self._chunks = []
        if self._spool is not None:
            self._spool.close()


class _GoneError(Exception):
    """A resource listed a moment ago was deleted from the PACS (not an error of ingest)."""
