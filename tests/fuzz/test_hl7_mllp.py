"""Fuzz targets: the HL7 v2 parser behind the MLLP listener, and MLLP framing on a real socket.

``mllp.handle``: mutated ORU^R01 messages through :meth:`MllpServer.handle` (parse, header
checks, report reading, publishing, audit, acknowledgment). Promise: it never raises; every
message gets the acknowledgments its MSH-15/16 ask for (one in original mode), each with an
MSA, and an ERR segment in every refusal; every message gets exactly one audit record; no
planted PHI is in an ACK, an audit record or a log line.

``mllp.framing``: byte streams of MLLP frames (whole, split, glued, garbage between, oversized)
sent to the listener over a real loopback connection. Promise: the listener answers every
complete frame before the first framing fault, answers an oversized block with one AR, never
dies of a connection, and keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radstream.ingest.mllp import END_BLOCK, START_BLOCK, MllpServer, MllpSettings
from radstream.ingest.oru import Hl7Problem, parse_message
from radstream.ingest.receipt import Sender
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.campaign import Campaign, Emitted, Finding
from tests.fuzz.hl7_corpus import SEEDS, Hl7Case, hl7_cases
from tests.fuzz.ingest_stack import IngestStack, ingest_stack

HANDLE = Campaign("mllp.handle")
FRAMING = Campaign("mllp.framing")
SENDER = Sender(channel="mllp", identity="fuzz-ris", address="127.0.0.1")
MAX_MESSAGE_BYTES = 16 * 1024
_ANSWER_CODES = {"AA", "AE", "AR", "CA", "CE", "CR"}


@dataclass
class Listener:
    runner: asyncio.Runner
    stack: IngestStack
    server: MllpServer


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    with tempfile.TemporaryDirectory() as root, asyncio.Runner() as runner:
        context = ingest_stack(Path(root))
        stack = runner.run(context.__aenter__())
        settings = MllpSettings(
            port=0,
            allowed_peers="127.0.0.1",
            max_message_bytes=MAX_MESSAGE_BYTES,
            idle_timeout_s=5,
        )
        server = MllpServer(settings, sink=stack.sink, rejections=stack.rejections)
        runner.run(server.start())
        try:
            yield Listener(runner, stack, server)
        finally:
            runner.run(server.stop())
            runner.run(context.__aexit__(None, None, None))


def check_acks(acks: list[bytes], where: str) -> list[str]:
    """Every ACK is an HL7 message with an MSA, and every refusal carries an ERR; the codes."""
    codes: list[str] = []
    for ack in acks:
        segments = ack.decode("latin-1").rstrip("\r").split("\r")
        if not segments[0].startswith("MSH|"):
            raise Finding("bad-answer", where, "an ACK that does not start with MSH")
        msa = next((s.split("|") for s in segments if s.startswith("MSA|")), None)
        if msa is None or len(msa) < 2 or msa[1] not in _ANSWER_CODES:
            raise Finding("bad-answer", where, "an ACK without a valid MSA-1")
        if msa[1] not in ("AA", "CA") and not any(s.startswith("ERR|") for s in segments):
            raise Finding("bad-answer", where, f"{msa[1]} without an ERR segment")
        codes.append(msa[1])
    return codes


def unechoed(ack: bytes) -> bytes:
    """An ACK without what it echoes by design: its MSH (the sender's ids, trigger event,
    processing id, version) and MSA-2 (the control id). What is left is ours to answer."""
    kept: list[bytes] = []
    for segment in ack.split(b"\r"):
        if segment.startswith(b"MSH"):
            continue
        if segment.startswith(b"MSA|"):
            fields = segment.split(b"|")
            kept.append(b"|".join([*fields[:2], b"", *fields[3:]]))
        else:
            kept.append(segment)
    return b"\r".join(kept)


def answer_due(content: bytes) -> bool:
    """Whether a message is owed an ACK whatever its outcome (enhanced mode may ask for none)."""
    try:
        message = parse_message(content)
    except Hl7Problem:
        return True
    return not message.enhanced_mode or "AL" in (
        message.accept_ack_type,
        message.application_ack_type,
    )


def check_silence(data: bytes, published: bool) -> None:
    """No ACK at all is right only in enhanced mode, when MSH-15/16 ask for none."""
    try:
        message = parse_message(data)
    except Hl7Problem:
        raise Finding("no-answer", "mllp.handle", "an unreadable message got no ACK") from None
    asked = {message.accept_ack_type, message.application_ack_type}
    if not message.enhanced_mode or "AL" in asked:
        raise Finding("no-answer", "mllp.handle", "a message got no ACK though one was due")
    if ("ER" in asked and not published) or ("SU" in asked and published):
        raise Finding("no-answer", "mllp.handle", "the outcome MSH-15/16 ask about got no ACK")


def handle(listener: Listener, case: Hl7Case, emitted: Emitted) -> None:
    before = len(listener.stack.published)
    acks = listener.runner.run(listener.server.handle(case.data, sender=SENDER))
    published = len(listener.stack.published) > before
    audit = listener.stack.take_audit()
    for ack in acks:
        emitted("ACK", unechoed(ack))
    for line in audit:
        emitted("audit record", line)
    codes = check_acks(acks, "mllp.handle")
    emitted.answered("+".join(codes) or "no ACK (as asked)")
    if published and any(code not in ("AA", "CA") for code in codes):
        raise Finding("partial", "mllp.handle", "a refused message published reports")
    if not acks:
        check_silence(case.data, published)
    if len(audit) != 1:
        raise Finding("no-audit", "mllp.handle", f"{len(audit)} audit records for one message")


@fuzz_settings()
@given(case=hl7_cases())
def _fuzz_handle(listener: Listener, case: Hl7Case) -> None:
    HANDLE.attempt(case.data, lambda emitted: handle(listener, case, emitted))


def test_every_mutated_hl7_message_is_acknowledged_audited_and_leaks_nothing(
    listener: Listener,
) -> None:
    with HANDLE.running():
        _fuzz_handle(listener)
    HANDLE.assert_clean()


# -- framing ---------------------------------------------------------------------------------


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, tuple[int, ...]]:
    """Bytes an MLLP client sends, and where the writes split them."""
    pieces: list[bytes] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["seed", "case", "garbage", "oversized", "empty", "noise"]))
        if kind == "seed":
            pieces.append(START_BLOCK + SEEDS[draw(st.sampled_from([0, 1]))].encode() + END_BLOCK)
        elif kind == "case":
            pieces.append(START_BLOCK + draw(hl7_cases()).data + END_BLOCK)
        elif kind == "garbage":
            pieces.append(START_BLOCK + draw(st.binary(max_size=200)) + END_BLOCK)
        elif kind == "oversized":
            pieces.append(START_BLOCK + SEEDS[0].encode() * 40 + END_BLOCK)
        elif kind == "empty":
            pieces.append(START_BLOCK + END_BLOCK)
        else:
            pieces.append(draw(st.sampled_from([b"\r\n", b" ", b"\x1c", b"\x0b", b"\x1c\r", b"x"])))
    stream = b"".join(pieces)
    splits = draw(st.lists(st.integers(0, len(stream)), max_size=4, unique=True))
    return stream, tuple(sorted(splits))


def due_answers(stream: bytes) -> int:
    """How many answers the listener owes: one per complete frame before the first fault."""
    limit = MAX_MESSAGE_BYTES + 3
    due = 0
    while True:
        end = stream.find(END_BLOCK)
        if end < 0:
            return due if len(stream) <= limit else due + 1
        if end + len(END_BLOCK) > limit:
            return due + 1  # the oversized block is answered once, then the connection ends
        frame, stream = stream[: end + len(END_BLOCK)], stream[end + len(END_BLOCK) :]
        start = frame.find(START_BLOCK)
        if start < 0 or frame[:start].strip():
            return due
        due += answer_due(frame[start + 1 : -len(END_BLOCK)])


async def converse(port: int, stream: bytes, splits: tuple[int, ...]) -> tuple[bytes, bool]:
    """Send ``stream`` in pieces, half-close; return what came back, and whether it was reset.

    A listener that hangs up on a framing fault with bytes unread makes the kernel reset the
    connection, and a reset may discard ACKs the listener had already sent (TCP, not the
    listener): then only the complete frames that arrived are checked, not how many.
    """
    reset = False
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()

    async def read_all() -> None:
        while chunk := await reader.read(65536):
            received.extend(chunk)

    reading = asyncio.create_task(read_all())
    try:
        previous = 0
        for split in (*splits, len(stream)):
            writer.write(stream[previous:split])
            previous = split
            await writer.drain()
        writer.write_eof()
    except ConnectionError:
        pass  # the listener hung up (a framing fault): what it sent before still counts
    try:
        async with asyncio.timeout(10):
            await reading
    except ConnectionError:
        reset = True
    except TimeoutError:
        raise Finding(
            "no-answer", "mllp.framing", "the listener neither answered nor closed"
        ) from None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return bytes(received), reset


def frame_over_socket(
    listener: Listener, stream: bytes, splits: tuple[int, ...], emitted: Emitted
) -> None:
    loop_errors: list[dict[str, Any]] = []
    runner_loop = listener.runner.get_loop()
    runner_loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    try:
        received, reset = listener.runner.run(converse(listener.server.port, stream, splits))
        if reset:  # keep the frames that arrived whole
            end = received.rfind(END_BLOCK)
            received = received[: end + len(END_BLOCK)] if end >= 0 else b""
    finally:
        runner_loop.set_exception_handler(None)
    listener.stack.take_audit()
    frames = [part for part in received.split(END_BLOCK) if part]
    acks = [frame.lstrip(START_BLOCK) for frame in frames]
    for ack in acks:
        emitted("ACK on the wire", unechoed(ack))
    check_acks(acks, "mllp.framing")
    emitted.answered(f"{len(acks)} ACKs")
    due = due_answers(stream)
    if len(acks) < due and not reset:
        raise Finding("no-answer", "mllp.framing", f"{len(acks)} ACKs for {due} complete frames")
    if loop_errors:
        error = loop_errors[0].get("exception")
        raise Finding("unhandled", "mllp connection task", repr(type(error)))
    listener.runner.run(listener.server.check())


@fuzz_settings(weight=0.5)
@given(sent=streams())
def _fuzz_framing(listener: Listener, sent: tuple[bytes, tuple[int, ...]]) -> None:
    stream, splits = sent
    FRAMING.attempt(stream, lambda emitted: frame_over_socket(listener, stream, splits, emitted))


def test_every_framed_stream_is_answered_per_frame_and_the_listener_survives(
    listener: Listener,
) -> None:
    with FRAMING.running():
        _fuzz_framing(listener)
    FRAMING.assert_clean()
