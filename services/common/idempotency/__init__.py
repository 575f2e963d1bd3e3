"""The idempotency guard: remembers which events a consumer has finished, keyed by event id.

Delivery is at-least-once, so any event may arrive twice (a crash between the work and the
offset commit, a rebalance). The guard turns that into effectively-once:

1. ``is_done(scope, event_id)`` -- skip the handler if this consumer already finished the event
   (for a fetched batch, ``done_among`` asks about all its events at once: :func:`prefetch`);
2. the handler runs and *stages* any database side effects on its :class:`Claim`;
3. ``complete(claim)`` writes the staged effects and the "done" mark in **one transaction**.
   If another delivery of the same event completed first, the insert of the mark conflicts,
   the transaction rolls back and the staged effects are dropped.

A claim that staged nothing has only its mark to write, and the consume loop writes those of a
fetched batch together once the batch is through (``mark_done``, see :class:`BatchGuard`),
after the records' offset commits rather than before each: an event whose offset is committed
is not delivered again, so its mark only matters for a copy published again upstream.

Effects outside the database (blobs, published events) must be idempotent themselves: the blob
store is content-addressed and output events get ids derived from the input's id, so the
guards of downstream consumers drop repeats. No lock is held while the handler runs.

A mark matters only while its event may still come again, so marks older than a retention
(``RADSTREAM_DELIVERY_IDEMPOTENCY_RETENTION_DAYS``) are deleted (``prune``); both stores index
``completed_at`` for that, and delete in short chunks so consumers keep marking meanwhile.

SQLite is the embedded default (one file, WAL); PostgreSQL is for production (several replicas
of a consumer share one table).

The package mirrors :mod:`radstream.common.blobstore`: :mod:`.base` has the protocol and the
claim, :mod:`.batch` the per-batch view, :mod:`.sqlite` and :mod:`.postgres` the stores, and
:func:`open_guard` picks one from a DSN.
"""

from __future__ import annotations

from radstream.common.errors import MisconfiguredError
from radstream.common.idempotency.base import (
    ATTEMPTS_TABLE,
    PRUNE_CHUNK,
    TABLE,
    AttemptLog,
    BatchStartLog,
    Claim,
    IdempotencyGuard,
    IdempotencyStoreError,
    PartitionStart,
    SqlParams,
    StagedEffectError,
    claim_for,
)
from radstream.common.idempotency.batch import BatchGuard, prefetch, prefetch_started
from radstream.common.idempotency.postgres import PostgresIdempotencyGuard
from radstream.common.idempotency.sqlite import SqliteIdempotencyGuard
from radstream.common.sql import SqliteDsn, parse_dsn

__all__ = [
    "ATTEMPTS_TABLE",
    "PRUNE_CHUNK",
    "TABLE",
    "AttemptLog",
    "BatchGuard",
    "BatchStartLog",
    "Claim",
    "IdempotencyGuard",
    "IdempotencyStoreError",
    "PartitionStart",
    "PostgresIdempotencyGuard",
    "SqlParams",
    "SqliteIdempotencyGuard",
    "StagedEffectError",
    "claim_for",
    "open_guard",
    "prefetch",
    "prefetch_started",
]


def open_guard(dsn: str) -> IdempotencyGuard:
    """Build the guard a DSN names: ``sqlite:///relative``, ``sqlite:////absolute``, ``postgresql://``.

    SQLite DSNs follow the SQLAlchemy convention: what follows ``sqlite:///`` is the path.
    """
    target = parse_dsn(
        dsn, setting="RADSTREAM_DELIVERY_IDEMPOTENCY_DSN", invalid=MisconfiguredError
    )
    if isinstance(target, SqliteDsn):
        return SqliteIdempotencyGuard(target.path)
    return PostgresIdempotencyGuard(target.dsn)
