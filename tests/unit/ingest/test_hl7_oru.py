"""HL7 v2 ORU^R01 reports: reading them, and the ACKs the MLLP listener answers with."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import hl7
import pytest
from prometheus_client import CollectorRegistry

from radstream.common.errors import MisconfiguredError
from radstream.contracts.v1 import reports_pb2
from radstream.ingest.audit import JsonLinesAuditSink, ReceiptAudit
from radstream.ingest.hl7_ack import acknowledgments
from radstream.ingest.metrics import IngestMetrics
from radstream.ingest.mllp import MllpServer, MllpSettings, PeerAllowlist
from radstream.ingest.oru import Hl7Problem, oru_reports, parse_message
from radstream.ingest.receipt import Sender
from radstream.ingest.rejections import rejections
from radstream.ingest.reports import ReportSink

PATIENT_NAME = "SYNTHETIC^TESTPATIENT"
PATIENT_ID = "SYNTH-MRN-70311"
SECRET_FINDING = "hypodense lesion in the pancreatic head"


def oru(
    *,
    msh_type: str = "ORU^R01^ORU_R01",
    processing: str = "P",
    version: str = "2.5.1",
    acks: tuple[str, str] = ("", ""),
    pid: str | None = f"PID|1||999^^^X^PI~{PATIENT_ID}^^^HOSP^MR||{PATIENT_NAME}||19610317|F",
    obr: str | None = "OBR|1|PLC-1|FIL-77^RIS|CTABD^CT Abdomen|||20240105101500"
    "|||||||||||SYNTH-ACC-55120||||20240105113000+0100||CT|F",
    obx: tuple[str, ...] = (
        f"OBX|1|TX|IMP^Impression||{SECRET_FINDING}.~No metastases.||||||F",
        "OBX|2|FT|FND^Findings||Liver: normal.\\.br\\Spleen \\T\\ kidneys: normal.||||||F",
        "OBX|3|NM|WT^Weight||70|kg|||||F",
        "OBX|4|TX|IMP^Impression||superseded text||||||W",
    ),
    control_id: str = "MSG-0001",
) -> bytes:
    segments = [
        f"MSH|^~\\&|SYNTH_RIS|SYNTH_HOSP|RADSTREAM|SYNTH_HOSP|20240105113500||{msh_type}"
        f"|{control_id}|{processing}|{version}|||{acks[0]}|{acks[1]}",
    ]
    if pid is not None:
        segments.append(pid)
    if obr is not None:
        segments.append(obr)
    segments.extend(obx)
    return "\r".join(segments).encode()


def segment(name: str, fields: dict[int, str]) -> str:
    """A segment with the given fields set (1-based), the others empty."""
    values = [fields.get(number, "") for number in range(1, max(fields) + 1)]
    return "|".join([name, *values])


def ack_fields(ack: bytes) -> dict[str, str]:
    parsed = hl7.parse(ack.decode())
    fields = {
        "type": str(parsed.segment("MSH")(9)),
        "code": str(parsed.segment("MSA")(1)),
        "control": str(parsed.segment("MSA")(2)),
    }
    errors = [segment for segment in parsed if str(segment[0]) == "ERR"]
    if errors:
        fields["err_location"] = str(errors[0](2))
        fields["err_code"] = str(errors[0](3)(1)(1))
    return fields


class TestReadingReports:
    def test_report_text_identifiers_modality_and_time_are_read(self) -> None:
        (report,) = oru_reports(parse_message(oru()))
        assert report.text == (
            f"{SECRET_FINDING}.\nNo metastases.\nLiver: normal.\nSpleen & kidneys: normal."
        )
        assert report.patient_id == PATIENT_ID  # the MR repetition of PID-3
        assert (report.report_number, report.number_namespace) == ("FIL-77", "RIS")
        assert report.accession_number == "SYNTH-ACC-55120"  # OBR-18
        assert report.modality == "CT"
        assert report.observed_at == datetime(2024, 1, 5, 10, 30, tzinfo=UTC)  # OBR-22, +0100

    def test_without_obr_18_the_filler_number_is_the_accession(self) -> None:
        message = oru(obr="OBR|1|PLC-1|FIL-77|CTABD|||20240105101500")
        (report,) = oru_reports(parse_message(message))
        assert report.accession_number == "FIL-77"
        assert report.number_namespace == "SYNTH_HOSP"  # MSH-4 names the numbers then

    def test_times_without_offset_are_local_to_the_site(self) -> None:
        message = oru(obr="OBR|1|PLC-1|FIL-77|CTABD|||20240105101500")
        (report,) = oru_reports(parse_message(message), local_timezone=ZoneInfo("Europe/Berlin"))
        assert report.observed_at == datetime(2024, 1, 5, 9, 15, tzinfo=UTC)

    def test_each_obr_group_is_its_own_report(self) -> None:
        message = oru(
            obr=None,
            obx=(
                "OBR|1||FIL-1|CT",
                "OBX|1|TX|IMP||first report||||||F",
                segment("OBR", {1: "2", 3: "FIL-2", 4: "MR", 24: "NMR"}),
                "OBX|1|ST|IMP||second report||||||F",
            ),
        )
        reports = oru_reports(parse_message(message))
        assert [(r.report_number, r.text, r.modality) for r in reports] == [
            ("FIL-1", "first report", ""),
            ("FIL-2", "second report", "MR"),
        ]

    def test_segments_may_be_separated_by_newlines(self) -> None:
        (report,) = oru_reports(parse_message(oru().replace(b"\r", b"\r\n")))
        assert report.patient_id == PATIENT_ID

    def test_msh_18_picks_the_character_set(self) -> None:
        # MSH-1 is the separator, so field n of MSH is key n - 2 after the encoding characters.
        fields = {1: "RIS", 3: "RADSTREAM", 7: "ORU^R01", 8: "M1", 9: "P", 10: "2.5.1"}
        msh = "MSH|" + segment("^~\\&", {**fields, 16: "8859/1"})
        body = msh.encode() + b"\r" + b"\r".join(oru().split(b"\r")[1:])
        body = body.replace(SECRET_FINDING.encode(), "Läsion".encode("latin-1"))
        (report,) = oru_reports(parse_message(body))
        assert report.text.startswith("Läsion")


class TestMalformedMessages:
    @pytest.mark.parametrize(
        ("message", "code", "segment"),
        [
            (oru(pid=None), 101, "PID"),
            (oru(obr=None, obx=()), 101, "OBR"),
            (oru(obx=("OBX|1|NM|WT||70|kg",)), 101, "OBX"),
            (oru(pid="PID|1||"), 101, "PID"),
            (oru(obr="OBR|1|||CT"), 101, "OBR"),
            (oru(obr="OBR|1||F-1|CT||||||||||||||||||2024-01-05"), 102, "OBR"),
            (oru(obr=None, obx=("OBX|1|TX|IMP||text",)), 100, "OBX"),
        ],
    )
    def test_problems_name_the_code_and_place_never_the_content(
        self, message: bytes, code: int, segment: str
    ) -> None:
        with pytest.raises(Hl7Problem) as caught:
            oru_reports(parse_message(message))
        assert (caught.value.code, caught.value.segment) == (code, segment)
        assert not caught.value.reject
        for phi in (PATIENT_ID, PATIENT_NAME, SECRET_FINDING):
            assert phi not in str(caught.value)

    @pytest.mark.parametrize(
        "data", [b"", b"hello", b"PID|1||x", b"MSH|", "MSH|^~\\&|\xff".encode("latin-1")]
    )
    def test_bytes_that_are_no_hl7_message_are_problems(self, data: bytes) -> None:
        with pytest.raises(Hl7Problem):
            parse_message(data)


class TestAcknowledgments:
    def test_original_mode_accept_is_one_aa(self) -> None:
        message = parse_message(oru())
        (ack,) = acknowledgments(message, None, application="RADSTREAM", facility="")
        assert ack_fields(ack) == {"type": "ACK^R01^ACK", "code": "AA", "control": "MSG-0001"}

    def test_original_mode_content_error_is_ae_with_err(self) -> None:
        message = parse_message(oru(pid=None))
        problem = Hl7Problem(101, "PID segment missing", segment="PID")
        (ack,) = acknowledgments(message, problem, application="RADSTREAM", facility="")
        fields = ack_fields(ack)
        assert (fields["code"], fields["err_code"], fields["err_location"]) == (
            "AE",
            "101",
            "PID^1",
        )

    def test_an_unparseable_message_gets_an_ar_without_control_id(self) -> None:
        problem = Hl7Problem(100, "message cannot be parsed", segment="MSH", reject=True)
        (ack,) = acknowledgments(None, problem, application="RADSTREAM", facility="H")
        fields = ack_fields(ack)
        assert (fields["type"], fields["code"], fields["control"]) == ("ACK", "AR", "")

    @pytest.mark.parametrize(
        ("accept", "application", "ok_codes", "error_codes"),
        [
            ("AL", "NE", ["CA"], ["CE"]),
            ("AL", "AL", ["CA", "AA"], ["CE", "AE"]),
            ("ER", "AL", ["AA"], ["CE", "AE"]),
            ("NE", "SU", ["AA"], []),
            ("SU", "ER", ["CA"], ["AE"]),
        ],
    )
    def test_enhanced_mode_follows_msh_15_and_16(
        self, accept: str, application: str, ok_codes: list[str], error_codes: list[str]
    ) -> None:
        message = parse_message(oru(acks=(accept, application)))
        problem = Hl7Problem(101, "PID segment missing", segment="PID")
        ok = acknowledgments(message, None, application="R", facility="")
        bad = acknowledgments(message, problem, application="R", facility="")
        assert [ack_fields(a)["code"] for a in ok] == ok_codes
        assert [ack_fields(a)["code"] for a in bad] == error_codes


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[tuple[reports_pb2.ReportReceived, str]] = []
        self.fail = False

    async def __call__(self, message: reports_pb2.ReportReceived, event_id: str) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.events.append((message, event_id))


@pytest.fixture
def listener(tmp_path: Path) -> tuple[MllpServer, RecordingPublisher, Path]:
    registry = CollectorRegistry()
    audit_path = tmp_path / "audit.jsonl"
    publisher = RecordingPublisher()
    sink = ReportSink(
        audit=ReceiptAudit(JsonLinesAuditSink(audit_path), IngestMetrics(registry)),
        publish_report=publisher,
    )
    server = MllpServer(
        MllpSettings(port=0, allow_any_peer=True), sink=sink, rejections=rejections(registry)
    )
    return server, publisher, audit_path


SENDER = Sender(channel="mllp", identity="10.1.2.3", address="10.1.2.3")


class TestHandlingMessages:
    async def test_a_report_is_published_and_acknowledged_aa(self, listener) -> None:
        server, publisher, audit_path = listener
        (ack,) = await server.handle(oru(), sender=SENDER)
        assert ack_fields(ack)["code"] == "AA"
        ((event, event_id),) = publisher.events
        assert event.report_id == "hl7/RIS/FIL-77"
        assert event.text.startswith(SECRET_FINDING)
        assert event.source == reports_pb2.ReportReceived.SOURCE_HL7_ORU
        record = json.loads(audit_path.read_text())
        assert (record["channel"], record["outcome"], record["kind"]) == (
            "mllp",
            "published",
            "ORU^R01",
        )
        assert SECRET_FINDING not in audit_path.read_text()
        # The same bytes again: the same event id, so downstream guards drop the repeat.
        await server.handle(oru(), sender=SENDER)
        assert publisher.events[1][1] == event_id

    @pytest.mark.parametrize(
        ("message", "code"),
        [
            (oru(msh_type="ADT^A01"), "200"),
            (oru(msh_type="ORU^R30"), "201"),
            (oru(processing="T"), "202"),
            (oru(version="3.0"), "203"),
        ],
    )
    async def test_refused_headers_are_ar_and_publish_nothing(
        self, listener, message: bytes, code: str
    ) -> None:
        server, publisher, audit_path = listener
        (ack,) = await server.handle(message, sender=SENDER)
        assert (ack_fields(ack)["code"], ack_fields(ack)["err_code"]) == ("AR", code)
        assert publisher.events == []
        assert json.loads(audit_path.read_text())["outcome"] == f"hl7_{code}_MSH"

    async def test_malformed_content_is_ae_and_publishes_nothing(self, listener) -> None:
        server, publisher, _ = listener
        (ack,) = await server.handle(oru(obx=()), sender=SENDER)
        assert ack_fields(ack)["code"] == "AE"
        assert publisher.events == []

    async def test_a_broker_outage_is_an_ar_so_the_sender_sends_again(self, listener) -> None:
        server, publisher, audit_path = listener
        publisher.fail = True
        (ack,) = await server.handle(oru(), sender=SENDER)
        assert (ack_fields(ack)["code"], ack_fields(ack)["err_code"]) == ("AR", "207")
        assert json.loads(audit_path.read_text())["outcome"] == "not_committed"


class TestPeers:
    def test_addresses_and_networks_are_allowed_ipv4_mapped_included(self) -> None:
        peers = PeerAllowlist(["10.1.2.3", "192.168.0.0/16"])
        assert peers.allows("10.1.2.3")
        assert peers.allows("::ffff:192.168.7.9")
        assert not peers.allows("10.1.2.4")
        assert not peers.allows("not-an-address")

    def test_an_empty_allowlist_refuses_everyone(self) -> None:
        assert not PeerAllowlist([]).allows("127.0.0.1")

    def test_settings_refuse_malformed_peers_and_zones(self) -> None:
        with pytest.raises(MisconfiguredError, match="ALLOWED_PEERS"):
            MllpSettings(allowed_peers="10.1.2.300")
        with pytest.raises(MisconfiguredError, match="LOCAL_TIMEZONE"):
            MllpSettings(local_timezone="Mars/Olympus")
