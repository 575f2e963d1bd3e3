"""The study assembly's tables, on SQLite (embedded default) or PostgreSQL (several replicas).

One blocking DB-API connection (a :class:`~radstream.common.sql.SqlEngine`) is used from one
worker thread (:class:`~radstream.common.sql.EngineThread`), so the event loop never waits on
disk or network, and SQLite's connection never crosses threads. The SQL is written once, with
``?`` placeholders, in the dialect both engines share (``ON CONFLICT``, ``RETURNING``, partial
indexes); only the schema's sequence column, the transaction start and row locking differ.

Two tables: ``ingest_instances`` (one row per SOP Instance UID, with a sequence number that
orders arrivals) and ``ingest_studies`` (one row per study: received times, the revision the
pending instances will carry, the last published revision, and ``pinned_seq``, the highest
sequence number the revision being published covers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from radstream.common.blobstore import BlobRef
from radstream.common.sql import EngineThread, Row, SqlEngine, SqliteOptions, open_engine
from radstream.contracts.v1 import common_pb2
from radstream.ingest.errors import AssemblyStoreUnavailableError, IngestConfigurationError

__all__ = [
    "AssemblyDatabase",
    "PinnedRevision",
    "StudyRow",
    "open_assembly_database",
]


_STUDY_COLUMNS: Final = (
    "study_instance_uid, accession_number, patient_id, first_received_us, last_received_us, "
    "revision, published_revision, pending, instance_count"
)
_INSTANCE_COLUMNS: Final = (
    "study_instance_uid, series_instance_uid, sop_instance_uid, sop_class_uid, "
    "transfer_syntax_uid, modality, blob_uri, blob_sha256, blob_size, blob_media_type"
)
_STUDIES_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS ingest_studies ("
    "study_instance_uid TEXT PRIMARY KEY, "
    "accession_number TEXT NOT NULL DEFAULT '', "
    "patient_id TEXT NOT NULL DEFAULT '', "
    "first_received_us BIGINT NOT NULL, "
    "last_received_us BIGINT NOT NULL, "
    "revision INTEGER NOT NULL DEFAULT 0, "
    "published_revision INTEGER NOT NULL DEFAULT -1, "
    "published_seq BIGINT NOT NULL DEFAULT 0, "
    "pinned_seq BIGINT, "
    "complete_requested INTEGER NOT NULL DEFAULT 0, "
    "pending INTEGER NOT NULL DEFAULT 1, "
    "instance_count INTEGER NOT NULL DEFAULT 0)"
)
_INSTANCES_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS ingest_instances ("
    "seq {seq_type}, "
    "sop_instance_uid TEXT NOT NULL UNIQUE, "
    "study_instance_uid TEXT NOT NULL, "
    "series_instance_uid TEXT NOT NULL, "
    "sop_class_uid TEXT NOT NULL, "
    "transfer_syntax_uid TEXT NOT NULL, "
    "modality TEXT NOT NULL, "
    "blob_uri TEXT NOT NULL, "
    "blob_sha256 TEXT NOT NULL, "
    "blob_size BIGINT NOT NULL, "
    "blob_media_type TEXT NOT NULL, "
    "received_us BIGINT NOT NULL)"
)
_INDEXES_DDL: Final = (
    "CREATE INDEX IF NOT EXISTS ingest_instances_by_study "
    "ON ingest_instances (study_instance_uid, seq)",
    # Only studies with unpublished instances are scanned each poll, however many are stored.
    "CREATE INDEX IF NOT EXISTS ingest_studies_pending "
    "ON ingest_studies (last_received_us) WHERE pending = 1",
    "CREATE INDEX IF NOT EXISTS ingest_studies_by_accession ON ingest_studies (accession_number)",
    "CREATE INDEX IF NOT EXISTS ingest_studies_by_patient ON ingest_studies (patient_id)",
)


@dataclass(frozen=True, kw_only=True)
class StudyRow:
    """One row of ``ingest_studies``."""

    study_instance_uid: str
    accession_number: str
    patient_id: str
    first_received_us: int
    last_received_us: int
    revision: int
    published_revision: int
    pending: bool
    instance_count: int

    @classmethod
    def from_row(cls, row: Row) -> StudyRow:
        """Build from the columns of ``_STUDY_COLUMNS``, in order."""
        return cls(
            study_instance_uid=row[0],
            accession_number=row[1],
            patient_id=row[2],
            first_received_us=int(row[3]),
            last_received_us=int(row[4]),
            revision=int(row[5]),
            published_revision=int(row[6]),
            pending=bool(row[7]),
            instance_count=int(row[8]),
        )


@dataclass(frozen=True, kw_only=True)
class PinnedRevision:
    """A revision about to be published: the study, its instances, its last arrival."""

    study: StudyRow
    instances: list[common_pb2.InstanceRef]
    last_received_us: int


def _ref(row: Row) -> common_pb2.InstanceRef:
    return common_pb2.InstanceRef(
        study_instance_uid=row[0],
        series_instance_uid=row[1],
        sop_instance_uid=row[2],
        sop_class_uid=row[3],
        transfer_syntax_uid=row[4],
        modality=row[5],
        blob=BlobRef(uri=row[6], sha256=row[7], size=int(row[8]), media_type=row[9]).to_proto(),
    )


class AssemblyDatabase:
    """The assembly's statements, each run in the one worker thread that owns the connection."""

    def __init__(self, backend: SqlEngine) -> None:
        self._backend = backend
        self._thread = EngineThread(backend, name="ingest-assembly")

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await self._thread.call(fn, *args)

    async def open(self) -> None:
        """Connect and create the tables and indexes if needed."""
        await self._call(self._open)

    def _open(self) -> None:
        backend = self._backend
        backend.connect()
        with backend.transaction():
            backend.execute(_STUDIES_DDL)
            backend.execute(_INSTANCES_DDL.format(seq_type=backend.seq_type))
            for statement in _INDEXES_DDL:
                backend.execute(statement)

    async def close(self) -> None:
        """Close the connection and the worker thread."""
        await self._thread.close()

    async def check(self) -> None:
        """Raise if the database does not answer."""
        await self._call(self._backend.execute, "SELECT 1")

    async def add_instance(
        self,
        ref: common_pb2.InstanceRef,
        *,
        accession_number: str,
        patient_id: str,
        received_us: int,
    ) -> bool:
        """Insert the instance and update its study; False if the SOP Instance UID is known."""
        added: bool = await self._call(
            self._add_instance, ref, accession_number, patient_id, received_us
        )
        return added

    def _add_instance(
        self, ref: common_pb2.InstanceRef, accession: str, patient_id: str, received_us: int
    ) -> bool:
        with self._backend.transaction():
            return self._insert_instance(ref, accession, patient_id, received_us)

    def _insert_instance(
        self, ref: common_pb2.InstanceRef, accession: str, patient_id: str, received_us: int
    ) -> bool:
        """Insert the row and count it in its study (inside the caller's transaction)."""
        db = self._backend
        blob = ref.blob
        inserted = db.execute(
            f"INSERT INTO ingest_instances ({_INSTANCE_COLUMNS}, received_us) "  # noqa: S608 -- column lists are constants
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (sop_instance_uid) DO NOTHING RETURNING seq",
            (
                ref.study_instance_uid,
                ref.series_instance_uid,
                ref.sop_instance_uid,
                ref.sop_class_uid,
                ref.transfer_syntax_uid,
                ref.modality,
                blob.uri,
                blob.sha256,
                blob.size,
                blob.media_type,
                received_us,
            ),
        )
        if not inserted:
            return False
        # pending = 0 means every instance is in a published revision: a new one starts
        # the next (amended) revision. A revision in flight is bumped by mark_published.
        db.execute(
            "INSERT INTO ingest_studies (study_instance_uid, accession_number, patient_id, "
            "first_received_us, last_received_us, instance_count) VALUES (?, ?, ?, ?, ?, 1) "
            "ON CONFLICT (study_instance_uid) DO UPDATE SET "
            "accession_number = CASE WHEN ingest_studies.accession_number = '' "
            "THEN excluded.accession_number ELSE ingest_studies.accession_number END, "
            "patient_id = CASE WHEN ingest_studies.patient_id = '' "
            "THEN excluded.patient_id ELSE ingest_studies.patient_id END, "
            "first_received_us = CASE WHEN excluded.first_received_us "
            "< ingest_studies.first_received_us THEN excluded.first_received_us "
            "ELSE ingest_studies.first_received_us END, "
            "last_received_us = CASE WHEN excluded.last_received_us "
            "> ingest_studies.last_received_us THEN excluded.last_received_us "
            "ELSE ingest_studies.last_received_us END, "
            "revision = CASE WHEN ingest_studies.pending = 0 "
            "THEN ingest_studies.revision + 1 ELSE ingest_studies.revision END, "
            "pending = 1, "
            "instance_count = ingest_studies.instance_count + 1",
            (ref.study_instance_uid, accession, patient_id, received_us, received_us),
        )
        return True

    async def replace_instance(
        self,
        ref: common_pb2.InstanceRef,
        *,
        accession_number: str,
        patient_id: str,
        received_us: int,
    ) -> bool:
        """Put ``ref`` in place of the instance recorded under its SOP Instance UID.

        The new row gets a new sequence number, so its study starts a new revision (or the
        pending one takes it); the study the old row belonged to loses it. False when the
        recorded instance already has these bytes, or none is recorded (then call add).
        """
        replaced: bool = await self._call(
            self._replace_instance, ref, accession_number, patient_id, received_us
        )
        return replaced

    def _replace_instance(
        self, ref: common_pb2.InstanceRef, accession: str, patient_id: str, received_us: int
    ) -> bool:
        db = self._backend
        with db.transaction():
            rows = db.execute(
                "DELETE FROM ingest_instances WHERE sop_instance_uid = ? AND blob_sha256 <> ? "
                "RETURNING study_instance_uid",
                (ref.sop_instance_uid, ref.blob.sha256),
            )
            if not rows:
                return False
            # The old study loses the instance; while others remain, what it publishes next
            # must say so (a new revision). The new row is counted by the insert below.
            db.execute(
                "UPDATE ingest_studies SET instance_count = instance_count - 1, "
                "revision = CASE WHEN pending = 0 AND instance_count > 1 "
                "THEN revision + 1 ELSE revision END, "
                "pending = CASE WHEN instance_count > 1 THEN 1 ELSE pending END "
                "WHERE study_instance_uid = ?",
                (rows[0][0],),
            )
            self._insert_instance(ref, accession, patient_id, received_us)
        return True

    async def recorded_blob(self, sop_instance_uid: str) -> common_pb2.BlobRef | None:
        """The blob recorded under a SOP Instance UID, or None."""
        rows: list[Row] = await self._call(
            self._backend.execute,
            "SELECT blob_uri, blob_sha256, blob_size, blob_media_type FROM ingest_instances "
            "WHERE sop_instance_uid = ?",
            (sop_instance_uid,),
        )
        if not rows:
            return None
        uri, sha256, size, media_type = rows[0]
        return BlobRef(uri=uri, sha256=sha256, size=int(size), media_type=media_type).to_proto()

    async def has_instance(self, sop_instance_uid: str) -> bool:
        """Whether the SOP Instance UID is recorded."""
        rows: list[Row] = await self._call(
            self._backend.execute,
            "SELECT 1 FROM ingest_instances WHERE sop_instance_uid = ?",
            (sop_instance_uid,),
        )
        return bool(rows)

    async def request_completion(self, study_instance_uid: str) -> bool:
        """Flag a study with unpublished instances as complete; False if there is none."""
        rows: list[Row] = await self._call(
            self._backend.execute,
            "UPDATE ingest_studies SET complete_requested = 1 "
            "WHERE study_instance_uid = ? AND pending = 1 RETURNING study_instance_uid",
            (study_instance_uid,),
        )
        return bool(rows)

    async def due_studies(self, cutoff_us: int, *, limit: int) -> list[str]:
        """Studies with unpublished instances that are pinned, completed, or quiet since cutoff."""
        rows: list[Row] = await self._call(
            self._backend.execute,
            "SELECT study_instance_uid FROM ingest_studies WHERE pending = 1 AND "
            "(pinned_seq IS NOT NULL OR complete_requested = 1 OR last_received_us <= ?) "
            "ORDER BY last_received_us LIMIT ?",
            (cutoff_us, limit),
        )
        return [row[0] for row in rows]

    async def pin(self, study_instance_uid: str) -> PinnedRevision | None:
        """Fix what the pending revision covers (unless fixed already) and return it."""
        pinned: PinnedRevision | None = await self._call(self._pin, study_instance_uid)
        return pinned

    def _pin(self, study_uid: str) -> PinnedRevision | None:
        db = self._backend
        with db.transaction():
            db.execute(
                "UPDATE ingest_studies SET pinned_seq = (SELECT MAX(seq) FROM ingest_instances "
                "WHERE study_instance_uid = ?) "
                "WHERE study_instance_uid = ? AND pending = 1 AND pinned_seq IS NULL",
                (study_uid, study_uid),
            )
            rows = db.execute(
                f"SELECT {_STUDY_COLUMNS}, pinned_seq FROM ingest_studies "  # noqa: S608 -- column lists are constants
                "WHERE study_instance_uid = ? AND pending = 1",
                (study_uid,),
            )
            if not rows or rows[0][-1] is None:
                return None
            pinned_seq = int(rows[0][-1])
            instances = db.execute(
                f"SELECT {_INSTANCE_COLUMNS}, received_us FROM ingest_instances "  # noqa: S608 -- column lists are constants
                "WHERE study_instance_uid = ? AND seq <= ? "
                "ORDER BY series_instance_uid, sop_instance_uid",
                (study_uid, pinned_seq),
            )
        return PinnedRevision(
            study=StudyRow.from_row(rows[0]),
            instances=[_ref(row) for row in instances],
            last_received_us=max(int(row[-1]) for row in instances),
        )

    async def mark_published(self, study_instance_uid: str, revision: int) -> None:
        """Close the pinned revision; instances that came meanwhile make the next one."""
        await self._call(self._mark_published, study_instance_uid, revision)

    def _mark_published(self, study_uid: str, revision: int) -> None:
        db = self._backend
        with db.transaction():
            rows = db.execute(
                "SELECT revision, pinned_seq FROM ingest_studies WHERE study_instance_uid = ?"  # noqa: S608 -- column lists are constants
                + db.lock_clause,
                (study_uid,),
            )
            if not rows or int(rows[0][0]) != revision or rows[0][1] is None:
                return  # marked already (a repeat, or another replica)
            pinned_seq = int(rows[0][1])
            newest = db.execute(
                "SELECT MAX(seq) FROM ingest_instances WHERE study_instance_uid = ?",
                (study_uid,),
            )[0][0]
            more = newest is not None and int(newest) > pinned_seq
            db.execute(
                "UPDATE ingest_studies SET published_revision = ?, published_seq = ?, "
                "pinned_seq = NULL, complete_requested = 0, pending = ?, revision = ? "
                "WHERE study_instance_uid = ?",
                (revision, pinned_seq, int(more), revision + 1 if more else revision, study_uid),
            )

    async def study(self, study_instance_uid: str) -> StudyRow | None:
        """The study's row, or None."""
        rows: list[Row] = await self._call(
            self._backend.execute,
            f"SELECT {_STUDY_COLUMNS} FROM ingest_studies WHERE study_instance_uid = ?",  # noqa: S608 -- column lists are constants
            (study_instance_uid,),
        )
        return StudyRow.from_row(rows[0]) if rows else None

    async def find_studies(
        self,
        *,
        accession_number: str | None,
        patient_id: str | None,
        limit: int,
        offset: int,
    ) -> list[StudyRow]:
        """Studies matching every given attribute, most recently received first."""
        conditions: list[str] = []
        params: list[object] = []
        for column, value in (("accession_number", accession_number), ("patient_id", patient_id)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        rows: list[Row] = await self._call(
            self._backend.execute,
            f"SELECT {_STUDY_COLUMNS} FROM ingest_studies {where}"  # noqa: S608 -- column lists are constants
            "ORDER BY last_received_us DESC, study_instance_uid LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [StudyRow.from_row(row) for row in rows]

    async def instances(self, study_instance_uid: str) -> list[common_pb2.InstanceRef]:
        """Every instance of the study, ordered by series then SOP Instance UID."""
        rows: list[Row] = await self._call(
            self._backend.execute,
            f"SELECT {_INSTANCE_COLUMNS} FROM ingest_instances WHERE study_instance_uid = ? "  # noqa: S608 -- column lists are constants
            "ORDER BY series_instance_uid, sop_instance_uid",
            (study_instance_uid,),
        )
        return [_ref(row) for row in rows]


# The assembly holds patient IDs and accession numbers: the SQLite file is owner-only, like the
# blobs. WAL + NORMAL survives a killed process (the restart test).
_SQLITE = SqliteOptions(synchronous="NORMAL", owner_only=True)


def _unavailable(problem: str) -> AssemblyStoreUnavailableError:
    return AssemblyStoreUnavailableError(
        f"the study assembly database: {problem}; check RADSTREAM_INGEST_ASSEMBLY_DSN and the "
        "server or volume it names"
    )


def open_assembly_database(dsn: str) -> AssemblyDatabase:
    """The database a DSN names: ``sqlite:///relative``, ``sqlite:////absolute``, ``postgresql://``.

    Only a database that is away (``OperationalError``: locked, unreachable) is the transient
    :class:`AssemblyStoreUnavailableError`; any other driver error goes up as it is.
    """
    engine = open_engine(
        dsn,
        setting="RADSTREAM_INGEST_ASSEMBLY_DSN",
        invalid=IngestConfigurationError,
        unavailable=_unavailable,
        sqlite=_SQLITE,
        connect_timeout_s=10,
    )
    return AssemblyDatabase(engine)
