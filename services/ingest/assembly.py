"""Study assembly: instances grouped by Study Instance UID, published once the study is quiet.

A study is *complete* when no instance of it arrived for the quiet period, or when someone
says so (:meth:`StudyAssembly.complete`). Then ``StudyReceived`` is published with every
instance received so far. An instance arriving after that starts an amended revision
(``revision + 1``, ``amended``), complete after its own quiet period. A SOP Instance UID seen
before with the same bytes is a duplicate and changes nothing; with other bytes it is a
correction that replaces the recorded instance and makes a new revision
(:meth:`StudyAssembly.replace`).

State lives in a database (:mod:`radstream.ingest.assembly_db`: SQLite by default, PostgreSQL
for several replicas), so a restart loses nothing. Each revision is published exactly once, as
far as consumers can tell:

* when a revision becomes due, its content is *pinned* (the highest instance sequence number it
  covers) before it is published, so a retry after a crash publishes the same instances;
* its event id is derived from the study, the revision and a digest of its instances (SOP
  Instance UID and SHA-256 of each; :func:`study_event_id`), so a crash between publishing
  and :meth:`StudyAssembly.mark_published` republishes the same event, which downstream
  idempotency guards drop, while a different set of instances (after a lost database, or a
  corrected instance) never reuses an id;
* instances that arrive while a revision is in flight make the next revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from radstream.common.envelope import derived_event_id
from radstream.contracts.v1 import common_pb2, imaging_pb2
from radstream.ingest.assembly_db import AssemblyDatabase, StudyRow, open_assembly_database
from radstream.ingest.metrics import IngestMetrics

__all__ = [
    "StudyAssembler",
    "StudyAssembly",
    "StudyMeta",
    "StudyReady",
    "StudyStatus",
    "complete_study",
    "instances_digest",
    "study_event_id",
]

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _micros(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("study assembly times must be timezone-aware")
    return round(when.timestamp() * 1_000_000)


def _from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def _timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def study_event_id(
    study_instance_uid: str, revision: int, instances: Iterable[common_pb2.InstanceRef]
) -> str:
    """The event id of ``StudyReceived``: one revision of a study with exactly these instances.

    The same (revision, set of (SOP Instance UID, SHA-256)) always gives the same id, so a
    republished revision is dropped downstream; a different set never does, even when the
    revision number repeats because the assembly database was lost and counts from 0 again.
    """
    return derived_event_id(
        f"ingest/study/{study_instance_uid}",
        f"study.received/{revision}/{instances_digest(instances)}",
    )


def instances_digest(instances: Iterable[common_pb2.InstanceRef]) -> str:
    """SHA-256 over the sorted (SOP Instance UID, blob SHA-256) pairs: what a revision holds."""
    digest = hashlib.sha256()
    for sop_instance_uid, sha256 in sorted(
        (instance.sop_instance_uid, instance.blob.sha256) for instance in instances
    ):
        digest.update(f"{sop_instance_uid}\x00{sha256}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True, kw_only=True)
class StudyMeta:
    """Study-level facts that come with an instance (PHI: they stay in the PHI zone)."""

    accession_number: str
    patient_id: str
    received_at: datetime


@dataclass(frozen=True, kw_only=True)
class StudyReady:
    """One revision of a study, due to be published."""

    study_instance_uid: str
    revision: int
    accession_number: str
    patient_id: str
    instances: tuple[common_pb2.InstanceRef, ...]
    first_received_at: datetime
    last_received_at: datetime

    @property
    def amended(self) -> bool:
        """Whether this revision amends one published before."""
        return self.revision > 0

    @property
    def event_id(self) -> str:
        """The deterministic event id of this revision (see :func:`study_event_id`)."""
        return study_event_id(self.study_instance_uid, self.revision, self.instances)

    def to_proto(self) -> imaging_pb2.StudyReceived:
        """The ``StudyReceived`` event body."""
        return imaging_pb2.StudyReceived(
            study_instance_uid=self.study_instance_uid,
            accession_number=self.accession_number,
            patient_id=self.patient_id,
            instances=self.instances,
            revision=self.revision,
            amended=self.amended,
            first_received_at=_timestamp(self.first_received_at),
            last_received_at=_timestamp(self.last_received_at),
        )


@dataclass(frozen=True, kw_only=True)
class StudyStatus:
    """What the assembly knows about a study (for status lookups)."""

    study_instance_uid: str
    accession_number: str
    patient_id: str
    instance_count: int
    revision: int  # the revision pending changes will carry (or the last published one)
    published_revision: int | None  # None: never published
    pending: bool  # instances not yet in a published revision
    first_received_at: datetime
    last_received_at: datetime


def _status(row: StudyRow) -> StudyStatus:
    return StudyStatus(
        study_instance_uid=row.study_instance_uid,
        accession_number=row.accession_number,
        patient_id=row.patient_id,
        instance_count=row.instance_count,
        revision=row.revision,
        published_revision=row.published_revision if row.published_revision >= 0 else None,
        pending=row.pending,
        first_received_at=_from_micros(row.first_received_us),
        last_received_at=_from_micros(row.last_received_us),
    )


class StudyAssembly:
    """Durable grouping of instances into studies; decides when a revision is due."""

    def __init__(self, database: AssemblyDatabase, *, quiet_period_s: float) -> None:
        if quiet_period_s < 0:
            raise ValueError("quiet_period_s must not be negative")
        self._db = database
        self.quiet_period_s = quiet_period_s

    @classmethod
    def open_dsn(cls, dsn: str, *, quiet_period_s: float) -> StudyAssembly:
        """Build the assembly on the database ``dsn`` names (``sqlite:///``, ``postgresql://``)."""
        return cls(open_assembly_database(dsn), quiet_period_s=quiet_period_s)

    async def open(self) -> None:
        """Connect and create the tables if needed."""
        await self._db.open()

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()

    async def check(self) -> None:
        """Raise if the database does not answer (readiness probe)."""
        await self._db.check()

    async def add(self, ref: common_pb2.InstanceRef, *, study_meta: StudyMeta) -> bool:
        """Record an instance; False if its SOP Instance UID was recorded before."""
        if not (ref.study_instance_uid and ref.sop_instance_uid):
            raise ValueError("an InstanceRef needs its study and SOP instance UIDs")
        return await self._db.add_instance(
            ref,
            accession_number=study_meta.accession_number,
            patient_id=study_meta.patient_id,
            received_us=_micros(study_meta.received_at),
        )

    async def replace(self, ref: common_pb2.InstanceRef, *, study_meta: StudyMeta) -> bool:
        """Record ``ref`` in place of other bytes recorded under its SOP Instance UID.

        A correction: the study's next revision lists the new instance (a published study is
        amended), so deid processes it again. False when nothing was replaced.
        """
        return await self._db.replace_instance(
            ref,
            accession_number=study_meta.accession_number,
            patient_id=study_meta.patient_id,
            received_us=_micros(study_meta.received_at),
        )

    async def recorded_blob(self, sop_instance_uid: str) -> common_pb2.BlobRef | None:
        """The blob recorded under this SOP Instance UID, or None."""
        return await self._db.recorded_blob(sop_instance_uid)

    async def has_instance(self, sop_instance_uid: str) -> bool:
        """Whether an instance with this SOP Instance UID was recorded."""
        return await self._db.has_instance(sop_instance_uid)

    async def complete(self, study_instance_uid: str) -> bool:
        """Mark a study complete now, without waiting out its quiet period.

        Returns False when there is nothing to publish: an unknown study, or one whose
        instances are all in a published revision already.
        """
        return await self._db.request_completion(study_instance_uid)

    async def due(self, now: datetime, *, limit: int = 100) -> list[StudyReady]:
        """Revisions to publish at ``now``: quiet long enough, completed, or pinned already."""
        cutoff = _micros(now) - round(self.quiet_period_s * 1_000_000)
        ready: list[StudyReady] = []
        for study_uid in await self._db.due_studies(cutoff, limit=limit):
            pinned = await self._db.pin(study_uid)
            if pinned is None:  # published meanwhile by another replica
                continue
            row = pinned.study
            ready.append(
                StudyReady(
                    study_instance_uid=row.study_instance_uid,
                    revision=row.revision,
                    accession_number=row.accession_number,
                    patient_id=row.patient_id,
                    instances=tuple(pinned.instances),
                    first_received_at=_from_micros(row.first_received_us),
                    last_received_at=_from_micros(pinned.last_received_us),
                )
            )
        return ready

    async def mark_published(self, study_instance_uid: str, revision: int) -> None:
        """Record that ``revision`` of the study is published (repeating it is harmless)."""
        await self._db.mark_published(study_instance_uid, revision)

    async def status(self, study_instance_uid: str) -> StudyStatus | None:
        """What is known about one study, or None."""
        row = await self._db.study(study_instance_uid)
        return _status(row) if row is not None else None

    async def find_studies(
        self,
        *,
        accession_number: str | None = None,
        patient_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[StudyStatus]:
        """Studies matching the given attributes exactly, most recently received first."""
        rows = await self._db.find_studies(
            accession_number=accession_number, patient_id=patient_id, limit=limit, offset=offset
        )
        return [_status(row) for row in rows]

    async def instances(self, study_instance_uid: str) -> list[common_pb2.InstanceRef]:
        """Every instance recorded for a study, ordered by series then SOP Instance UID."""
        return await self._db.instances(study_instance_uid)


PublishStudy = Callable[[StudyReady], Awaitable[None]]


class StudyAssembler:
    """Publishes due revisions in the background: an async start/stop server beside the bus."""

    def __init__(
        self,
        assembly: StudyAssembly,
        publish: PublishStudy,
        *,
        poll_interval_s: float = 1.0,
        clock: Callable[[], datetime] = _utc_now,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.assembly = assembly
        self._publish = publish
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def publish_due(self) -> int:
        """Publish every revision due now; return how many were published."""
        published = 0
        for ready in await self.assembly.due(self._clock()):
            await self._publish(ready)
            await self.assembly.mark_published(ready.study_instance_uid, ready.revision)
            published += 1
            if self._metrics is not None:
                kind = "amended" if ready.amended else "first"
                self._metrics.studies_published.labels(kind).inc()
            log.info(
                "study published",
                extra={"event_id": ready.event_id, "count": len(ready.instances)},
            )
        return published

    async def complete(self, study_instance_uid: str) -> bool:
        """Explicit trigger: the study is complete now (see :meth:`StudyAssembly.complete`)."""
        requested = await self.assembly.complete(study_instance_uid)
        self._wake.set()
        return requested

    async def run(self) -> None:
        """Publish due revisions until cancelled, polling and on every explicit trigger."""
        while True:
            try:
                await self.publish_due()
            except Exception as exc:  # the loop outlives a broker or database outage
                log.warning(
                    "publishing due studies failed", extra={"error_type": type(exc).__name__}
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)
            self._wake.clear()

    async def start(self) -> None:
        """Start the background loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="study-assembler")

    async def stop(self) -> None:
        """Stop the loop; a revision in flight is finished or retried after the restart."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def complete_study(dsn: str, study_instance_uid: str) -> bool:
    """Flag a study complete in the assembly database (the CLI hook).

    The flag is durable, so the running service's assembler publishes the study on its next
    poll; returns False when the study is unknown or has nothing unpublished.
    """
    assembly = StudyAssembly.open_dsn(dsn, quiet_period_s=0)
    await assembly.open()
    try:
        return await assembly.complete(study_instance_uid)
    finally:
        await assembly.close()
