"""Fuzz target: the event decoder (``radstream.common.envelope.decode``) behind every consumer.

Records as a consumer reads them (a value and CloudEvents headers) go through the real
delivery path (:func:`radstream.common.delivery.deliver` with a SQLite idempotency guard): the
record is decoded and handled, or dead-lettered. Seeds are events encoded by radstream itself
with fake PHI in their bodies (patient ids, report text) and subjects; mutations drop, repeat
and rewrite headers (hostile text, invalid UTF-8, bytes taken from the body) and mutate the
body's bytes. Promise: ``deliver`` never raises for a record; a record that cannot be decoded
is dead-lettered as poison with an :class:`~radstream.common.envelope.EnvelopeError`; no
planted PHI is in the dead letter's ``x-radstream-*`` headers or a log line.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from radstream.common.delivery import (
    ERROR_HEADER_PREFIX,
    DeadLetter,
    Outcome,
    RawRecord,
    RetryPolicy,
    deliver,
)
from radstream.common.envelope import H_SUBJECT, EnvelopeError, encode
from radstream.common.idempotency import open_guard
from radstream.common.topics import ALL_TOPICS
from radstream.contracts.v1 import clinical_pb2, reports_pb2
from tests.fuzz import phi
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.campaign import Campaign, Emitted, Finding
from tests.fuzz.mutations import mutated_bytes

CAMPAIGN = Campaign("envelope.decode")
MESSAGE_TYPES: tuple[type[Message], ...] = tuple(
    dict.fromkeys(topic.message for topic in ALL_TOPICS)
)


def _seeds() -> list[tuple[type[Message], bytes, list[tuple[str, bytes]]]]:
    report = reports_pb2.ReportReceived(
        report_id=f"hl7/RIS/{phi.ACCESSION}",
        accession_number=phi.ACCESSION,
        patient_id=phi.PATIENT_ID,
        modality="CT",
        text=phi.FREE_TEXT,
    )
    observation = clinical_pb2.ClinicalObservation(patient_id=phi.PATIENT_ID)
    seeds: list[tuple[type[Message], bytes, list[tuple[str, bytes]]]] = []
    for message in (report, observation):
        value, headers = encode(
            message, source="radstream/ingest", subject=phi.PATIENT_ID, inject_trace=False
        )
        headers["traceparent"] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        seeds.append((type(message), value, list(headers.items())))
    for message_type in MESSAGE_TYPES[:6]:
        value, headers = encode(message_type(), source="radstream/fuzz", inject_trace=False)
        seeds.append((message_type, value, list(headers.items())))
    return seeds


SEEDS = _seeds()
_HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            b"",
            b"1.0",
            b"0.3",
            b"application/protobuf",
            b"application/x-protobuf; proto=radstream.v1.ReportReceived",
            b"application/json",
            b"radstream.v1.ReportReceived",
            b"2024-01-05T11:30:00Z",
            b"2024-01-05T11:30:00",
            b"not a time",
            b"00-zz-yy-01",
            b"\xff\xfe\xfd",
            phi.PATIENT_NAME.encode(),
            phi.FREE_TEXT.encode(),
            ("caf\u00e9 " + phi.PATIENT_NAME_PLAIN).encode("latin-1"),
        ]
    ),
    st.binary(max_size=40),
)
_HEADER_NAMES = ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type")
_EXTRA_NAMES = (H_SUBJECT, "ce_causationid", "traceparent", "tracestate", "x-other", "CE_ID")


@dataclass(frozen=True)
class RecordCase:
    expected: type[Message]
    value: bytes | None
    headers: tuple[tuple[str, Any], ...]
    operations: tuple[str, ...]

    def __repr__(self) -> str:
        return f"RecordCase({self.expected.__name__}, {self.operations}, headers={self.headers})"


@st.composite
def record_cases(draw: st.DrawFn) -> RecordCase:
    message_type, value, seed_headers = draw(st.sampled_from(SEEDS))
    headers: list[tuple[str, Any]] = list(seed_headers)
    body: bytes | None = value
    operations: list[str] = []
    headers = [(n, v) for n, v in headers if n != "ce_id"] + [
        ("ce_id", draw(st.uuids()).bytes.hex().encode())
    ]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 4]))):
        kind = draw(st.sampled_from(["drop", "rewrite", "repeat", "add", "none", "splice"]))
        name = draw(st.sampled_from(_HEADER_NAMES + _EXTRA_NAMES))
        if kind == "drop":
            headers = [(n, v) for n, v in headers if n != name]
        elif kind == "rewrite":
            headers = [(n, draw(_HEADER_VALUES) if n == name else v) for n, v in headers]
        elif kind in ("repeat", "add"):
            headers.append((name, draw(_HEADER_VALUES)))
        elif kind == "none":
            headers.append((name, None))
        elif value:
            start = draw(st.integers(0, len(value) - 1))
            headers.append((name, value[start : start + draw(st.integers(1, 60))]))
        operations.append(f"{kind} {name}")
    if draw(st.booleans()):
        body = draw(mutated_bytes(value)) if value else draw(st.binary(max_size=64))
        operations.append("body bytes")
    elif draw(st.integers(0, 9)) == 0:
        body = None
        operations.append("tombstone")
    expected = message_type
    if draw(st.integers(0, 5)) == 0:
        expected = draw(st.sampled_from(MESSAGE_TYPES))
        operations.append(f"expected {expected.__name__}")
    return RecordCase(expected, body, tuple(headers), tuple(operations))


class Letters:
    """The dead-letter sink: keeps the letters."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


@dataclass
class Consumer:
    runner: asyncio.Runner
    guard: Any
    offset: int = 0


@pytest.fixture(scope="module")
def consumer() -> Iterator[Consumer]:
    with tempfile.TemporaryDirectory() as root, asyncio.Runner() as runner:
        guard = open_guard(f"sqlite:///{Path(root) / 'idempotency.sqlite3'}")
        runner.run(guard.open())
        try:
            yield Consumer(runner, guard)
        finally:
            runner.run(guard.close())


def consume(consumer: Consumer, case: RecordCase, emitted: Emitted) -> None:
    consumer.offset += 1
    record = RawRecord(
        topic="radstream.fuzz.events.v1",
        partition=0,
        offset=consumer.offset,
        key=None,
        value=case.value,
        headers=case.headers,  # as consumed: pairs, any value, None included
    )
    letters = Letters()
    handled: list[object] = []

    async def handler(event: object, claim: object) -> None:
        handled.append(event)

    outcome = consumer.runner.run(
        deliver(
            record,
            message_type=case.expected,
            handler=handler,
            group="fuzz",
            guard=consumer.guard,
            dead_letters=letters,
            policy=RetryPolicy(max_attempts=1),
            sleep=lambda _s: asyncio.sleep(0),
        )
    )
    emitted.answered(outcome.value)
    for letter in letters.letters:
        ours = [(n, v) for n, v in letter.headers() if n.startswith(ERROR_HEADER_PREFIX)]
        emitted("dead letter x-radstream-* headers", repr(ours))
        emitted("dead letter error message", str(letter.error))
        if not isinstance(letter.error, EnvelopeError):
            raise Finding("unhandled", "deliver", f"dead-lettered for {type(letter.error)}")
    if outcome is Outcome.DEAD_LETTERED and not letters.letters:
        raise Finding("no-answer", "deliver", "dead-lettered without a letter")
    if outcome is Outcome.PROCESSED and not handled:
        raise Finding("bad-answer", "deliver", "processed without reaching the handler")


@fuzz_settings()
@given(case=record_cases())
def _fuzz(consumer: Consumer, case: RecordCase) -> None:
    CAMPAIGN.attempt(case.value or b"", lambda emitted: consume(consumer, case, emitted))


def test_every_mutated_record_is_handled_or_dead_lettered_as_poison_without_phi(
    consumer: Consumer,
) -> None:
    with CAMPAIGN.running():
        _fuzz(consumer)
    CAMPAIGN.assert_clean()
