"""Frozen dataclasses built without their ``__init__`` are the same frozen instances."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from radstream.common.consume_loop import raw_record
from radstream.common.delivery import RawRecord
from radstream.common.envelope import Event, EventMeta, decode, encode
from radstream.common.frozen import build_frozen
from radstream.contracts.v1.imaging_pb2 import StudyReceived


def test_an_instance_built_is_equal_to_the_constructors_and_as_immutable() -> None:
    fields = {
        "id": "ev-1",
        "type": "radstream.v1.StudyReceived",
        "source": "/radstream/ingest",
        "time": datetime(2026, 11, 28, tzinfo=UTC),
        "subject": None,
        "causation_id": "ev-0",
        "traceparent": None,
        "tracestate": None,
    }

    built = build_frozen(EventMeta, fields)

    assert built == EventMeta(**fields)
    assert type(built) is EventMeta and hash(built) == hash(EventMeta(**fields))
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = "ev-2"  # type: ignore[misc]


def test_a_consumed_record_and_its_event_match_what_the_constructors_build() -> None:
    message = StudyReceived(study_instance_uid="2.25.1")
    value, headers = encode(message, source="/radstream/ingest", event_id="ev-1")
    consumed = SimpleNamespace(
        topic="t", partition=2, offset=7, key=b"2.25.1", value=value, headers=list(headers.items())
    )

    record = raw_record(consumed)  # type: ignore[arg-type]
    event = decode(record.value, record.headers, StudyReceived, key=record.key, topic="t")

    assert record == RawRecord(
        topic="t", partition=2, offset=7, key=b"2.25.1", value=value, headers=tuple(headers.items())
    )
    assert event == Event(
        meta=event.meta,
        message=message,
        key=b"2.25.1",
        topic="t",
        partition=None,
        offset=None,
        headers=tuple(headers.items()),
    )
    assert event.meta == EventMeta(
        id="ev-1",
        type="radstream.v1.StudyReceived",
        source="/radstream/ingest",
        time=datetime.fromisoformat(headers["ce_time"].decode().replace("Z", "+00:00")),
    )
    assert [f.name for f in dataclasses.fields(Event)] == list(vars(event))
    assert [f.name for f in dataclasses.fields(EventMeta)] == list(vars(event.meta))
