"""The MLLP listener against real MLLP clients (python-hl7's and raw sockets), real broker."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import hl7
import pytest
from hl7.mllp import open_hl7_connection

from radstream.common.embedded_broker import EmbeddedBroker
from radstream.common.settings import KafkaSettings
from radstream.contracts.v1 import reports_pb2
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.mllp import MllpServer, MllpSettings
from tests.integration.ingest.dicom_peers import DicomPki, make_pki
from tests.integration.ingest.http_stack import ReceivingStack, receiving_stack

pytestmark = pytest.mark.integration

PATIENT_ID = "SYNTH-MRN-70311"
FINDING = "Hypodense lesion in the pancreatic head."


@dataclass
class Running:
    stack: ReceivingStack
    server: MllpServer

    async def reports(self, filler: str, count: int = 1) -> list:
        return await self.stack.events.wait_for(
            self.stack.topics.report_received,
            count,
            lambda m: m.report_id == f"hl7/RIS/{filler}",
        )


@pytest.fixture(scope="module")
async def running(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    root = tmp_path_factory.mktemp("ingest-mllp")
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    async with receiving_stack(root, kafka, label="mllp") as stack:
        settings = MllpSettings(port=0, allowed_peers="127.0.0.1", max_message_bytes=64 * 1024)
        async with MllpServer(settings, sink=stack.sink, rejections=stack.rejections) as server:
            yield Running(stack=stack, server=server)


def oru(filler: str, *, acks: tuple[str, str] = ("", ""), obx: str | None = None) -> str:
    obx = obx if obx is not None else f"OBX|1|TX|IMP^Impression||{FINDING}||||||F"
    return "\r".join(
        [
            "MSH|^~\\&|SYNTH_RIS|SYNTH_HOSP|RADSTREAM|SYNTH_HOSP|20240105113500||ORU^R01"
            f"|{filler}-MSG|P|2.5.1|||{acks[0]}|{acks[1]}",
            f"PID|1||{PATIENT_ID}^^^HOSP^MR||SYNTHETIC^TESTPATIENT",
            f"OBR|1||{filler}^RIS|CTABD^CT Abdomen|||20240105101500",
            obx,
        ]
    )


def new_filler() -> str:
    return f"FIL-{uuid.uuid4().hex[:10]}"


async def exchange(port: int, message: str, *, acks: int = 1) -> list[hl7.Message]:
    """Send one message with python-hl7's MLLP client; read ``acks`` acknowledgments."""
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    try:
        writer.writemessage(hl7.parse(message))
        await writer.drain()
        return [await asyncio.wait_for(reader.readmessage(), 10) for _ in range(acks)]
    finally:
        writer.close()
        await writer.wait_closed()


def msa(ack: hl7.Message) -> tuple[str, str]:
    return str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))


class TestReports:
    async def test_an_oru_is_acknowledged_aa_and_published(self, running: Running) -> None:
        filler = new_filler()
        (ack,) = await exchange(running.server.port, oru(filler))
        assert msa(ack) == ("AA", f"{filler}-MSG")
        (event,) = await running.reports(filler)
        assert event.message.text == FINDING
        assert event.message.patient_id == PATIENT_ID
        assert event.message.source == reports_pb2.ReportReceived.SOURCE_HL7_ORU
        assert running.stack.receipts("mllp", "published") >= 1

    async def test_several_messages_share_one_connection(self, running: Running) -> None:
        fillers = [new_filler(), new_filler()]
        reader, writer = await open_hl7_connection("127.0.0.1", running.server.port)
        try:
            for filler in fillers:
                writer.writemessage(hl7.parse(oru(filler)))
                await writer.drain()
                assert msa(await asyncio.wait_for(reader.readmessage(), 10))[0] == "AA"
        finally:
            writer.close()
            await writer.wait_closed()
        for filler in fillers:
            await running.reports(filler)

    async def test_enhanced_mode_answers_a_commit_and_an_application_ack(
        self, running: Running
    ) -> None:
        filler = new_filler()
        commit, application = await exchange(
            running.server.port, oru(filler, acks=("AL", "AL")), acks=2
        )
        assert (msa(commit)[0], msa(application)[0]) == ("CA", "AA")
        await running.reports(filler)


class TestMalformed:
    async def test_a_message_without_report_text_is_ae_with_err_and_not_published(
        self, running: Running
    ) -> None:
        filler = new_filler()
        (ack,) = await exchange(
            running.server.port, oru(filler, obx="OBX|1|NM|WT^Weight||70|kg|||||F")
        )
        assert msa(ack)[0] == "AE"
        err = ack.segment("ERR")
        assert str(err(3)(1)(1)) == "101"
        assert FINDING not in str(ack) and PATIENT_ID not in str(ack)
        fence = new_filler()
        await exchange(running.server.port, oru(fence))
        await running.reports(fence)
        assert not running.stack.events.on(
            running.stack.topics.report_received, lambda m: m.report_id.endswith(filler)
        )
        assert running.stack.receipts("mllp", "hl7_101_OBX") >= 1

    @pytest.mark.parametrize("stamp", ["20240105101500+2500", "00010101000000+2300"])
    async def test_an_impossible_time_is_ae_with_err_audited_and_the_feed_goes_on(
        self, running: Running, stamp: str
    ) -> None:
        filler, fence = new_filler(), new_filler()
        message = oru(filler).replace("|||20240105101500", f"|||{stamp}")
        reader, writer = await open_hl7_connection("127.0.0.1", running.server.port)
        try:
            writer.writemessage(hl7.parse(message))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 10)
            writer.writemessage(hl7.parse(oru(fence)))
            await writer.drain()
            after = await asyncio.wait_for(reader.readmessage(), 10)
        finally:
            writer.close()
            await writer.wait_closed()

        assert msa(ack) == ("AE", f"{filler}-MSG")
        err = ack.segment("ERR")
        assert (str(err(2)(1)(1)), str(err(2)(1)(3)), str(err(3)(1)(1))) == ("OBR", "7", "102")
        assert stamp not in str(ack)
        assert msa(after)[0] == "AA"
        await running.reports(fence)
        assert running.stack.receipts("mllp", "hl7_102_OBR") >= 1

    async def test_any_failure_while_reading_a_message_is_ae_audited_and_counted(
        self, running: Running, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def unforeseen(*args: object, **kwargs: object) -> list[object]:
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr("radstream.ingest.mllp.oru_reports", unforeseen)
        filler = new_filler()

        (ack,) = await exchange(running.server.port, oru(filler))

        assert msa(ack) == ("AE", f"{filler}-MSG")
        assert str(ack.segment("ERR")(3)(1)(1)) == "102"
        assert running.stack.receipts("mllp", "unreadable") >= 1
        receipts = [json.loads(line) for line in running.stack.audit_path.read_text().splitlines()]
        assert any(r["channel"] == "mllp" and r["outcome"] == "unreadable" for r in receipts)

    async def test_an_unsupported_message_type_is_ar(self, running: Running) -> None:
        message = oru(new_filler()).replace("ORU^R01", "ADT^A01")
        (ack,) = await exchange(running.server.port, message)
        assert msa(ack)[0] == "AR"
        assert str(ack.segment("ERR")(3)(1)(1)) == "200"

    async def test_a_frame_that_is_not_hl7_gets_a_nak(self, running: Running) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
        try:
            writer.write(b"\x0bnot an hl7 message at all\x1c\r")
            await writer.drain()
            frame = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 10)
        finally:
            writer.close()
            await writer.wait_closed()
        ack = hl7.parse(frame[1:-2].decode())
        assert msa(ack) == ("AR", "")

    async def test_bytes_outside_a_frame_end_the_connection(self, running: Running) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
        try:
            writer.write(b"junk before the frame\x0bMSH|^~\\&|x\x1c\r")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b""
        finally:
            writer.close()
            await writer.wait_closed()
        assert running.stack.refused("mllp", "bytes_outside_frame") >= 1

    async def test_an_oversized_message_is_refused_and_the_connection_closed(
        self, running: Running
    ) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.server.port)
        try:
            writer.write(b"\x0bMSH|" + b"x" * (80 * 1024) + b"\x1c\r")
            await writer.drain()
            frame = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 10)
            assert await asyncio.wait_for(reader.read(), 10) == b""
        finally:
            writer.close()
            await writer.wait_closed()
        assert msa(hl7.parse(frame[1:-2].decode()))[0] == "AR"
        assert running.stack.refused("mllp", "message_too_large") >= 1


class TestPeers:
    async def test_a_peer_not_on_the_allowlist_is_closed_at_once(self, running: Running) -> None:
        settings = MllpSettings(port=0, allowed_peers="10.0.0.0/8")
        async with MllpServer(
            settings, sink=running.stack.sink, rejections=running.stack.rejections
        ) as guarded:
            reader, writer = await asyncio.open_connection("127.0.0.1", guarded.port)
            try:
                assert await asyncio.wait_for(reader.read(), 10) == b""
            finally:
                writer.close()
                await writer.wait_closed()
        assert running.stack.refused("mllp", "peer_not_allowed") >= 1


async def raw_exchange(port: int, message: str, *, ssl_context: ssl.SSLContext | None) -> bytes:
    """Send one framed message and read until the listener closes; b"" if it refused us."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_context)
    except (ssl.SSLError, ConnectionError):
        return b""
    try:
        writer.write(b"\x0b" + message.encode() + b"\x1c\r")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 15)
    except (ssl.SSLError, ConnectionError):
        return b""  # TLS 1.3 reports a refused client certificate on the first read
    finally:
        writer.close()


@pytest.fixture(scope="module")
async def tls_server(
    running: Running, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[MllpServer, DicomPki]]:
    """A second listener on the same stack: MLLP over TLS that requires client certificates."""
    pki = make_pki(tmp_path_factory.mktemp("mllp-pki"))
    settings = MllpSettings(
        port=0,
        allowed_peers="127.0.0.1",
        tls_certfile=pki.server_cert,
        tls_keyfile=pki.server_key,
        tls_client_cafile=pki.ca,
    )
    async with MllpServer(
        settings, sink=running.stack.sink, rejections=running.stack.rejections
    ) as server:
        yield server, pki


class TestMutualTls:
    async def test_a_sender_with_a_certificate_is_acknowledged_and_named_by_its_cn(
        self, running: Running, tls_server
    ) -> None:
        server, pki = tls_server
        filler = new_filler()
        reader, writer = await open_hl7_connection(
            "127.0.0.1", server.port, ssl=pki.client_context(with_certificate=True)
        )
        try:
            writer.writemessage(hl7.parse(oru(filler)))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 10)
        finally:
            writer.close()
            await writer.wait_closed()

        assert msa(ack) == ("AA", f"{filler}-MSG")
        (event,) = await running.reports(filler)
        assert event.message.text == FINDING
        receipts = [json.loads(line) for line in running.stack.audit_path.read_text().splitlines()]
        assert any(r["channel"] == "mllp" and r["sender"] == "SYNTH_CT_TLS" for r in receipts)

    async def test_a_sender_without_a_certificate_is_refused_and_nothing_published(
        self, running: Running, tls_server
    ) -> None:
        server, pki = tls_server
        filler = new_filler()

        answer = await raw_exchange(
            server.port, oru(filler), ssl_context=pki.client_context(with_certificate=False)
        )

        assert b"MSA" not in answer
        await asyncio.sleep(0.5)
        assert not running.stack.events.on(
            running.stack.topics.report_received, lambda m: m.report_id == f"hl7/RIS/{filler}"
        )

    async def test_plain_tcp_gets_no_answer_from_a_tls_listener(self, tls_server) -> None:
        server, _ = tls_server
        answer = await raw_exchange(server.port, oru(new_filler()), ssl_context=None)
        assert b"MSA" not in answer


class TestTlsSettings:
    def test_a_certificate_needs_its_key(self, tmp_path) -> None:
        with pytest.raises(IngestConfigurationError, match="go together"):
            MllpSettings(tls_certfile=tmp_path / "server.crt")

    def test_a_client_ca_needs_the_listeners_own_certificate(self, tmp_path) -> None:
        with pytest.raises(IngestConfigurationError, match="listener's own"):
            MllpSettings(tls_client_cafile=tmp_path / "ca.crt")

    def test_unusable_files_fail_at_startup(self, running: Running, tmp_path) -> None:
        settings = MllpSettings(
            tls_certfile=tmp_path / "missing.crt", tls_keyfile=tmp_path / "missing.key"
        )
        with pytest.raises(IngestConfigurationError, match="INGEST_MLLP_TLS_CERTFILE"):
            MllpServer(settings, sink=running.stack.sink, rejections=running.stack.rejections)
