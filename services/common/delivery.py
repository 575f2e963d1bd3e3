"""At-least-once delivery of one Kafka record: retries with backoff, dead letters, idempotency.

This is the pure core of consuming; :mod:`radstream.common.bus` adapts it to FastStream.
For each record :func:`deliver`:

1. decodes it (an undecodable record is *poison*: straight to the dead-letter topic);
2. asks the idempotency guard whether this consumer already finished the event (skip if so);
3. runs the handler; on failure retries with exponential backoff up to ``max_attempts``;
4. commits the handler's staged effects and the done mark together;
5. when attempts run out, publishes the original bytes and headers plus the error to
   ``<topic>.dlq`` and reports the record as handled, so the partition keeps flowing.

A :class:`~radstream.common.errors.TransientError` or
:class:`~radstream.common.errors.MisconfiguredError` that outlasts its retries is *not*
dead-lettered at once: a dependency is down or the service is misconfigured, not the event at
fault. It propagates, the caller does not commit the offset, and the record is delivered again,
until the record has been failing for ``RetryPolicy.max_retry_s`` (the first failure's time is
kept in the :class:`~radstream.common.idempotency.AttemptLog`, so restarts do not reset it):
then it is dead-lettered (kind ``retry-time-exhausted``, its error type kept) and the partition
moves on. A failure of the idempotency store itself
(:class:`~radstream.common.idempotency.IdempotencyStoreError`) is never the event's fault and
never dead-letters it, before the handler or after it. If the dead-letter publish itself fails
the record is delivered again: nothing is dropped silently.

A record that was in flight when ``max_crashes`` consumers died (the caller counts them in the
attempt log) is dead-lettered before it is even decoded, kind ``crashed``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from radstream.common.envelope import H_ID, Event, decode
from radstream.common.errors import (
    MisconfiguredError,
    PoisonEventError,
    RadstreamError,
    TransientError,
)
from radstream.common.idempotency import (
    AttemptLog,
    Claim,
    IdempotencyGuard,
    IdempotencyStoreError,
    claim_for,
)
from radstream.common.logs import describe_error

M = TypeVar("M", bound=Message)

Handler = Callable[[Event[M], Claim], Awaitable[None]]

ERROR_HEADER_PREFIX = "x-radstream-"
_MAX_ERROR_TEXT = 512

# The dead-letter kinds (header ``x-radstream-error-kind``), which ``radstream replay`` selects by.
KIND_POISON = "poison"
KIND_HANDLER_FAILED = "handler-failed"
KIND_CRASHED = "crashed"
KIND_RETRY_TIME_EXHAUSTED = "retry-time-exhausted"
KINDS = (KIND_HANDLER_FAILED, KIND_POISON, KIND_CRASHED, KIND_RETRY_TIME_EXHAUSTED)


class ConsumerCrashedError(RadstreamError):
    """The record was in flight each time its consumer died, ``max_crashes`` times."""

    def __init__(self, crashes: int) -> None:
        super().__init__(
            f"the consumer died {crashes} times with this record in flight (out of memory, or "
            "a crash in native code); it was set aside unread. Fix the cause (memory limits, "
            "RADSTREAM_DELIVERY_MAX_CRASHES) and replay it with radstream replay --kind crashed"
        )
        self.crashes = crashes


class Outcome(StrEnum):
    """What became of a delivered record."""

    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True, kw_only=True)
class RawRecord:
    """A Kafka record as consumed, before decoding."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Bounded retries with exponential backoff."""

    max_attempts: int = 3
    initial_s: float = 0.2
    max_s: float = 5.0
    multiplier: float = 2.0
    # A record in flight when this many consumers died is dead-lettered (kind "crashed").
    max_crashes: int = 3
    # A record failing for want of a dependency this long, across redeliveries and restarts,
    # is dead-lettered (kind "retry-time-exhausted"); None retries for ever.
    max_retry_s: float | None = 3600.0

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_s, self.initial_s * self.multiplier ** (attempt - 1)))


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A record that could not be processed, with what went wrong."""

    record: RawRecord
    group: str
    error: BaseException
    attempts: int
    # None: poison or handler-failed, from the error; else one of KINDS.
    kind: str | None = None

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic for the record's topic."""
        return f"{self.record.topic}.dlq"

    def headers(self) -> list[tuple[str, bytes]]:
        """The original headers followed by ``x-radstream-*`` headers describing the failure."""
        kind = self.kind or (
            KIND_POISON if isinstance(self.error, PoisonEventError) else KIND_HANDLER_FAILED
        )
        extra = {
            "error-type": _qualified_name(type(self.error)),
            "error-kind": kind,
            "error-message": error_text(self.error),
            "attempts": str(self.attempts),
            "original-topic": self.record.topic,
            "original-partition": str(self.record.partition),
            "original-offset": str(self.record.offset),
            "consumer-group": self.group,
            "failed-at": datetime.now(UTC).isoformat(),
        }
        return [*self.record.headers] + [
            (ERROR_HEADER_PREFIX + name, value.encode()) for name, value in extra.items()
        ]


class DeadLetterSink(Protocol):
    """Where dead letters go (the bus publishes them to ``<topic>.dlq``)."""

    async def send(self, letter: DeadLetter) -> None:
        """Publish the dead letter durably or raise."""


class DeliveryObserver(Protocol):
    """Receives delivery outcomes for metrics and logs; must not raise."""

    def on_outcome(
        self, record: RawRecord, group: str, outcome: Outcome, attempts: int, seconds: float
    ) -> None:
        """Called once per record with what became of it."""

    def on_retry(self, record: RawRecord, group: str, attempt: int, error: BaseException) -> None:
        """Called after each failed attempt that will be retried."""


def error_text(error: BaseException) -> str:
    """What the dead-letter header says about ``error``: never a value, and bounded.

    radstream's own errors name codes and fields, never values: their message is kept, scrubbed.
    A library's exception may quote the record (pydantic and psycopg do), so it is reduced to its
    type and where it was raised (see :func:`~radstream.common.logs.describe_error`).
    """
    return describe_error(error)[:_MAX_ERROR_TEXT]


def scope_of(group: str, topic: str) -> str:
    """The idempotency scope of a consumer group on a topic: what "done" is remembered for."""
    return f"{group}/{topic}"


def event_id_of(record: RawRecord) -> str | None:
    """The record's ``ce_id`` as decoding will read it (the last one), or None if it has none.

    Read before decoding, to ask the guard about a whole batch at once; a record whose id is
    unreadable is asked about on its own, once decoded (or dead-lettered).
    """
    found: bytes | None = None
    for name, value in record.headers:
        if name == H_ID and value is not None:  # as decoding normalizes them
            found = value
    if not found:
        return None
    try:
        return found.decode()
    except UnicodeDecodeError:
        return None


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


async def deliver(
    record: RawRecord,
    *,
    message_type: type[M],
    handler: Handler[M],
    group: str,
    guard: IdempotencyGuard,
    dead_letters: DeadLetterSink,
    policy: RetryPolicy,
    observer: DeliveryObserver | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    crashes: int = 0,
    attempts: AttemptLog | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Outcome:
    """Deliver one record to ``handler`` at least once; see the module docstring.

    ``crashes`` is how often consumers died with this record in flight (from ``attempts``);
    ``attempts`` keeps when the record began failing, for ``policy.max_retry_s``.
    """
    started = time.perf_counter()
    scope = scope_of(group, record.topic)
    attempt = 0
    outcome: Outcome
    if crashes >= policy.max_crashes:
        return await _set_aside_crashed(record, group, crashes, dead_letters, observer)
    while True:
        attempt += 1
        try:
            outcome = await _attempt(record, message_type, handler, scope, guard)
            break
        except asyncio.CancelledError:
            raise
        except PoisonEventError as exc:
            await dead_letters.send(
                DeadLetter(record=record, group=group, error=exc, attempts=attempt)
            )
            outcome = Outcome.DEAD_LETTERED
            break
        except Exception as exc:
            if attempt < policy.max_attempts:
                if observer is not None:
                    observer.on_retry(record, group, attempt, exc)
                await sleep(policy.delay_after(attempt))
                continue
            kind = await _dead_letter_kind(
                record, scope, exc, policy=policy, attempts=attempts, now=now()
            )
            await dead_letters.send(
                DeadLetter(record=record, group=group, error=exc, attempts=attempt, kind=kind)
            )
            outcome = Outcome.DEAD_LETTERED
            break
    if observer is not None:
        observer.on_outcome(record, group, outcome, attempt, time.perf_counter() - started)
    return outcome


async def _set_aside_crashed(
    record: RawRecord,
    group: str,
    crashes: int,
    dead_letters: DeadLetterSink,
    observer: DeliveryObserver | None,
) -> Outcome:
    """Dead-letter a record that killed its consumers, without decoding or handling it."""
    error = ConsumerCrashedError(crashes)
    await dead_letters.send(
        DeadLetter(record=record, group=group, error=error, attempts=crashes, kind=KIND_CRASHED)
    )
    if observer is not None:
        observer.on_outcome(record, group, Outcome.DEAD_LETTERED, crashes, 0.0)
    return Outcome.DEAD_LETTERED


async def _dead_letter_kind(
    record: RawRecord,
    scope: str,
    error: Exception,
    *,
    policy: RetryPolicy,
    attempts: AttemptLog | None,
    now: datetime,
) -> str | None:
    """The dead-letter kind after the last attempt, or ``error`` raised: the record comes again.

    The idempotency store's failure never dead-letters the event. A dependency that is away
    (transient, misconfigured) does once the record has been failing for
    ``policy.max_retry_s``, counted from the first failure the attempt log keeps; when the log
    cannot say (the store fails too), the record comes again and readiness reports the store.
    """
    if isinstance(error, IdempotencyStoreError):
        raise error
    if not isinstance(error, TransientError | MisconfiguredError):
        return None  # the handler's failure: poison or handler-failed, from the error
    if attempts is None or policy.max_retry_s is None:
        raise error
    try:
        since = await attempts.failing_since(scope, record.partition, record.offset, now)
    except Exception as exc:
        raise error from exc
    if (now - since).total_seconds() < policy.max_retry_s:
        raise error
    return KIND_RETRY_TIME_EXHAUSTED


async def _attempt(
    record: RawRecord,
    message_type: type[M],
    handler: Handler[M],
    scope: str,
    guard: IdempotencyGuard,
) -> Outcome:
    event = decode(
        record.value,
        record.headers,
        message_type,
        key=record.key,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )
    if await guard.is_done(scope, event.id):
        return Outcome.DUPLICATE
    claim = claim_for(guard, scope, event.id)
    await handler(event, claim)
    completed = await guard.complete(claim)
    return Outcome.PROCESSED if completed else Outcome.DUPLICATE
