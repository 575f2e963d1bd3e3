"""The envelope: protobuf body + CloudEvents binary-mode headers + W3C trace context."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import StringValue
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from radstream.common import envelope
from radstream.common.envelope import (
    EnvelopeError,
    InvalidHeaderError,
    MalformedBodyError,
    MissingHeaderError,
    UnexpectedEventTypeError,
    UnsupportedContentTypeError,
    decode,
    derived_event_id,
    encode,
)
from radstream.common.errors import PoisonEventError

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def encoded(**overrides: bytes | None) -> tuple[bytes, dict[str, bytes]]:
    value, headers = encode(
        StringValue(value="chest ct"), source="/radstream/test", event_id="e-1", time=WHEN
    )
    for name, header in overrides.items():
        if header is None:
            headers.pop(name)
        else:
            headers[name] = header
    return value, headers


def test_encode_writes_every_cloudevents_binary_mode_header() -> None:
    _, headers = encoded()
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == b"e-1"
    assert headers["ce_type"] == b"google.protobuf.StringValue"
    assert headers["ce_source"] == b"/radstream/test"
    assert headers["ce_time"] == b"2026-01-02T03:04:05.678901Z"
    assert headers["content-type"] == b"application/protobuf"


def test_round_trip_keeps_body_and_metadata() -> None:
    value, headers = encode(
        StringValue(value="liver lesion"),
        source="/radstream/ingest",
        time=WHEN,
        subject="study-1",
        causation_id="cause-9",
    )
    event = decode(value, headers, StringValue, key=b"k", topic="t", partition=2, offset=7)
    assert event.message.value == "liver lesion"
    assert event.meta.time == WHEN
    assert event.meta.subject == "study-1"
    assert event.meta.causation_id == "cause-9"
    assert (event.key, event.topic, event.partition, event.offset) == (b"k", "t", 2, 7)
    assert event.id == headers["ce_id"].decode()


def test_headers_may_arrive_as_kafka_pairs() -> None:
    value, headers = encoded()
    event = decode(value, list(headers.items()), StringValue)
    assert event.id == "e-1"


def test_encode_continues_the_current_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("publish") as span:
        _, headers = encode(StringValue(value="x"), source="/s")
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert headers["traceparent"].decode().split("-")[1] == trace_id
    assert not trace.get_current_span().get_span_context().is_valid


def test_derived_ids_are_stable_and_distinct_per_purpose() -> None:
    assert derived_event_id("in-1", "out") == derived_event_id("in-1", "out")
    assert derived_event_id("in-1", "out") != derived_event_id("in-1", "other")
    assert derived_event_id("in-1", "out") != derived_event_id("in-2", "out")


def test_derived_ids_are_rfc4122_version_5_uuids_of_cause_and_purpose() -> None:
    namespace = uuid.UUID("6f1c7e0a-3f5b-5d8e-9b7a-726164737472")
    for cause, purpose in [("in-1", "out"), ("é/ü", ""), ("x" * 300, "radstream.a.b.v1/series-2")]:
        derived = derived_event_id(cause, purpose)
        assert derived == str(uuid.uuid5(namespace, f"{cause}/{purpose}"))
        assert uuid.UUID(derived).version == 5


def test_event_time_defaults_to_now_in_utc_with_microseconds() -> None:
    before = datetime.now(UTC)
    _, headers = encode(StringValue(value="x"), source="/radstream/test")
    after = datetime.now(UTC)
    text = headers["ce_time"].decode()
    assert text.endswith("Z") and len(text) == len("2026-01-02T03:04:05.678901Z")
    stamped = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= stamped <= after + timedelta(milliseconds=1)


def test_an_explicit_time_in_another_zone_is_written_in_utc() -> None:
    plus_two = WHEN.astimezone(timezone(timedelta(hours=2)))
    _, headers = encode(StringValue(value="x"), source="/radstream/test", time=plus_two)
    assert headers["ce_time"] == b"2026-01-02T03:04:05.678901Z"


def test_headers_that_are_not_ours_may_hold_any_bytes() -> None:
    value, headers = encoded()
    headers["x-connect-offset"] = b"\xff\x00\x01"  # another tool's binary header
    event = decode(value, headers, StringValue)
    assert event.message.value == "chest ct"
    assert ("x-connect-offset", b"\xff\x00\x01") in event.headers


@pytest.mark.parametrize("header", envelope.REQUIRED_HEADERS)
def test_each_missing_required_header_is_named(header: str) -> None:
    value, headers = encoded()
    del headers[header]
    with pytest.raises(MissingHeaderError, match=header):
        decode(value, headers, StringValue)


def test_empty_header_counts_as_missing() -> None:
    value, headers = encoded(ce_id=b"")
    with pytest.raises(MissingHeaderError, match="ce_id"):
        decode(value, headers, StringValue)


@pytest.mark.parametrize(
    "content_type", [b"application/json", b"text/plain", b"application/cloudevents+json"]
)
def test_wrong_content_type_is_rejected(content_type: bytes) -> None:
    value, headers = encoded()
    headers["content-type"] = content_type
    with pytest.raises(UnsupportedContentTypeError, match="application/protobuf"):
        decode(value, headers, StringValue)


def test_content_type_parameters_and_legacy_protobuf_type_are_accepted() -> None:
    value, headers = encoded()
    headers["content-type"] = b"application/x-protobuf; proto=google.protobuf.StringValue"
    assert decode(value, headers, StringValue).message.value == "chest ct"


def test_other_cloudevents_version_is_rejected() -> None:
    value, headers = encoded(ce_specversion=b"0.3")
    with pytest.raises(InvalidHeaderError, match="1.0"):
        decode(value, headers, StringValue)


@pytest.mark.parametrize("bad_time", [b"yesterday", b"2026-01-02T03:04:05"])
def test_time_must_be_rfc3339_with_zone(bad_time: bytes) -> None:
    value, headers = encoded(ce_time=bad_time)
    with pytest.raises(InvalidHeaderError, match="ce_time"):
        decode(value, headers, StringValue)


def test_non_utf8_header_is_rejected_by_name() -> None:
    value, headers = encoded(ce_source=b"\xff\xfe")
    with pytest.raises(InvalidHeaderError, match="ce_source"):
        decode(value, headers, StringValue)


def test_malformed_traceparent_is_rejected() -> None:
    value, headers = encoded()
    headers["traceparent"] = b"00-not-a-trace"
    with pytest.raises(InvalidHeaderError, match="traceparent"):
        decode(value, headers, StringValue)


def test_event_of_another_type_is_rejected() -> None:
    value, headers = encoded()
    with pytest.raises(UnexpectedEventTypeError, match="google.protobuf.Timestamp"):
        decode(value, headers, Timestamp)


def test_truncated_protobuf_is_a_malformed_body_without_its_content() -> None:
    value, headers = encoded()
    with pytest.raises(MalformedBodyError, match="StringValue") as raised:
        decode(value[:-3], headers, StringValue)
    assert "chest" not in str(raised.value)


def test_garbage_body_is_malformed() -> None:
    _, headers = encoded()
    with pytest.raises(MalformedBodyError):
        decode(b"\xff\xff\xff\xff", headers, StringValue)


def test_missing_body_is_malformed() -> None:
    _, headers = encoded()
    with pytest.raises(MalformedBodyError, match="no body"):
        decode(None, headers, StringValue)


def test_envelope_errors_are_poison() -> None:
    assert issubclass(EnvelopeError, PoisonEventError)
