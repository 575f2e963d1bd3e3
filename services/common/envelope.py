"""The event envelope: a protobuf body with CloudEvents binary-mode Kafka headers.

An event on the wire is the Kafka record *value* (the serialized protobuf message) plus headers,
following the CloudEvents Kafka protocol binding in binary content mode:

``ce_specversion``, ``ce_id``, ``ce_type``, ``ce_source``, ``ce_time``, ``content-type``, and
optionally ``ce_subject`` and ``ce_causationid`` (the id of the event that caused this one).
W3C ``traceparent``/``tracestate`` carry the trace across the hop.

``ce_type`` is the protobuf full name (``radstream.v1.StudyReceived``), so a reader can decode
any radstream event without knowing its topic. Decoding rejects malformed input with a
:class:`EnvelopeError` (a poison event: retrying cannot help) whose message names the header or
the type at fault, never a value from the body.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time as _time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry import propagate

from radstream.common.errors import PoisonEventError
from radstream.common.frozen import build_frozen

M = TypeVar("M", bound=Message)

SPECVERSION = "1.0"
CONTENT_TYPE = "application/protobuf"
_SPECVERSION_BYTES = SPECVERSION.encode()
_CONTENT_TYPE_BYTES = CONTENT_TYPE.encode()
# Accepted on decode: the media type some Kafka tools still write for protobuf.
_PROTOBUF_MEDIA_TYPES = frozenset({"application/protobuf", "application/x-protobuf"})

H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_TYPE = "ce_type"
H_SOURCE = "ce_source"
H_TIME = "ce_time"
H_SUBJECT = "ce_subject"
H_CAUSATION = "ce_causationid"
H_CONTENT_TYPE = "content-type"
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"

REQUIRED_HEADERS = (H_SPECVERSION, H_ID, H_TYPE, H_SOURCE, H_TIME, H_CONTENT_TYPE)
_REQUIRED = frozenset(REQUIRED_HEADERS)
_READ_HEADERS = frozenset({*REQUIRED_HEADERS, H_SUBJECT, H_CAUSATION, H_TRACEPARENT, H_TRACESTATE})

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

Headers = Mapping[str, bytes] | Iterable[tuple[str, bytes | None]]


class EnvelopeError(PoisonEventError):
    """An event's headers or body are malformed; it can never be decoded as it is."""


class MissingHeaderError(EnvelopeError):
    """A required CloudEvents header is absent."""


class InvalidHeaderError(EnvelopeError):
    """A header is present but its value is not valid (encoding, format, version)."""


class UnsupportedContentTypeError(EnvelopeError):
    """The body is not ``application/protobuf``."""


class UnexpectedEventTypeError(EnvelopeError):
    """``ce_type`` names a different message than the one this consumer reads."""


class MalformedBodyError(EnvelopeError):
    """The body does not parse as the protobuf message ``ce_type`` names."""


@dataclass(frozen=True, kw_only=True)
class EventMeta:
    """CloudEvents attributes and trace context of one event."""

    id: str
    type: str
    source: str
    time: datetime
    subject: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True, kw_only=True)
class Event(Generic[M]):
    """A decoded event: its metadata and its typed protobuf body."""

    meta: EventMeta
    message: M
    key: bytes | None = None
    # Where the record came from, for logs and the DLQ; absent for events not yet published.
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    @property
    def id(self) -> str:
        """The CloudEvents id (``ce_id``), unique per event, used by the idempotency guard."""
        return self.meta.id


def new_event_id() -> str:
    """Return a fresh random event id."""
    return str(uuid.uuid4())


_DERIVED_ID_NAMESPACE = uuid.UUID("6f1c7e0a-3f5b-5d8e-9b7a-726164737472")
_NAMESPACE_BYTES = _DERIVED_ID_NAMESPACE.bytes


def derived_event_id(cause_id: str, purpose: str) -> str:
    """Return the id of an event caused by ``cause_id``, the same every time it is derived.

    A handler that runs twice on the same input (at-least-once delivery) then publishes outputs
    with the same ids, so downstream idempotency guards drop the repeat.

    The id is ``uuid5(namespace, "<cause_id>/<purpose>")`` (RFC 4122, SHA-1 name-based), built
    from the digest directly: every republished event derives one, and ``uuid.UUID`` objects
    made it the largest cost of a publish.
    """
    name = f"{cause_id}/{purpose}".encode()
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@functools.lru_cache(maxsize=4)  # events of one second share their formatted second
def _utc_second(seconds: int) -> str:
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(seconds))


def _now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with microseconds and ``Z``, as ``ce_time`` carries it."""
    seconds, micros = divmod(_time.time_ns() // 1000, 1_000_000)
    return f"{_utc_second(seconds)}.{micros:06d}Z"


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode(
    message: Message,
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
    subject: str | None = None,
    causation_id: str | None = None,
    inject_trace: bool = True,
) -> tuple[bytes, dict[str, bytes]]:
    """Serialize ``message`` and build its CloudEvents binary-mode headers.

    With ``inject_trace`` the current OpenTelemetry context is written as ``traceparent``; a
    tracing middleware that publishes the record may replace it with its own producer span.
    """
    headers: dict[str, bytes] = {
        H_SPECVERSION: _SPECVERSION_BYTES,
        H_ID: (event_id or new_event_id()).encode(),
        H_TYPE: message.DESCRIPTOR.full_name.encode(),
        H_SOURCE: source.encode(),
        H_TIME: (_now_rfc3339() if time is None else _rfc3339(time)).encode(),
        H_CONTENT_TYPE: _CONTENT_TYPE_BYTES,
    }
    if subject is not None:
        headers[H_SUBJECT] = subject.encode()
    if causation_id is not None:
        headers[H_CAUSATION] = causation_id.encode()
    if inject_trace:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        for name in (H_TRACEPARENT, H_TRACESTATE):
            if carrier.get(name):
                headers[name] = carrier[name].encode()
    return message.SerializeToString(), headers


def normalize_headers(headers: Headers) -> dict[str, bytes]:
    """Return headers as a dict; Kafka allows repeated names, and the last value wins."""
    # A consumed record's headers are a tuple: asked first, since the Mapping check is slow.
    items = (
        headers
        if isinstance(headers, tuple) or not isinstance(headers, Mapping)
        else headers.items()
    )
    return {name: value for name, value in items if value is not None}


def decode_meta(headers: Headers) -> EventMeta:
    """Validate the CloudEvents headers and return the event's metadata."""
    return _meta(normalize_headers(headers))


def _meta(found: Mapping[str, bytes]) -> EventMeta:
    """:func:`decode_meta` of headers already normalized (one pass per record, not two)."""
    text: dict[str, str] = {}
    try:
        for name, value in found.items():
            if value and name in _READ_HEADERS:  # others are not ours: another tool's may be binary
                text[name] = value.decode()
    except UnicodeDecodeError as exc:
        raise InvalidHeaderError(f"header {name} is not UTF-8") from exc
    if not text.keys() >= _REQUIRED:
        missing = [name for name in REQUIRED_HEADERS if name not in text]
        raise MissingHeaderError(f"event lacks required header(s): {', '.join(missing)}")
    # Messages name the header, never its value: a dead letter keeps the original headers.
    if text[H_SPECVERSION] != SPECVERSION:
        raise InvalidHeaderError(
            f"{H_SPECVERSION} is not {SPECVERSION}; radstream speaks CloudEvents {SPECVERSION}"
        )
    content_type = text[H_CONTENT_TYPE]
    if content_type != CONTENT_TYPE:  # the usual case needs no parsing
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type not in _PROTOBUF_MEDIA_TYPES:
            raise UnsupportedContentTypeError(
                f"content-type is not a protobuf media type; radstream events are {CONTENT_TYPE}"
            )
    traceparent = text.get(H_TRACEPARENT)
    if traceparent is not None and not _TRACEPARENT.match(traceparent):
        raise InvalidHeaderError(
            "traceparent is not a W3C trace context (version-trace-span-flags)"
        )
    return build_frozen(
        EventMeta,
        {
            "id": text[H_ID],
            "type": text[H_TYPE],
            "source": text[H_SOURCE],
            "time": _parse_time(text[H_TIME]),
            "subject": text.get(H_SUBJECT),
            "causation_id": text.get(H_CAUSATION),
            "traceparent": traceparent,
            "tracestate": text.get(H_TRACESTATE),
        },
    )


def decode(
    value: bytes | None,
    headers: Headers,
    expected: type[M],
    *,
    key: bytes | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> Event[M]:
    """Decode a Kafka record into an :class:`Event` of the ``expected`` message type."""
    found = normalize_headers(headers)
    meta = _meta(found)
    expected_type = expected.DESCRIPTOR.full_name
    if meta.type != expected_type:
        raise UnexpectedEventTypeError(
            f"ce_type names another message than {expected_type!r}, the one this consumer reads"
        )
    if value is None:
        raise MalformedBodyError(f"{expected_type} event has no body (a tombstone record?)")
    try:
        message = expected.FromString(value)
    except DecodeError as exc:
        raise MalformedBodyError(
            f"body of {len(value)} bytes does not parse as {expected_type} "
            "(truncated or not protobuf)"
        ) from exc
    return build_frozen(
        Event,
        {
            "meta": meta,
            "message": message,
            "key": key,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "headers": tuple(found.items()),
        },
    )


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidHeaderError(f"{H_TIME} is not an RFC 3339 timestamp") from exc
    if parsed.tzinfo is None:
        raise InvalidHeaderError(f"{H_TIME} has no time zone; RFC 3339 requires one")
    return parsed
