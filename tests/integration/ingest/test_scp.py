"""The DICOM C-STORE SCP against real senders (dcmtk, pynetdicom) and the real broker.

One ingest service runs for the module (its own single-partition topics, so events arrive in
the order they were published); each test sends its own synthetic study.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pynetdicom._config
import pytest
from prometheus_client import CollectorRegistry
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless

from radstream.common import topics
from radstream.common.blobstore import BlobRef, FilesystemBlobStore
from radstream.common.embedded_broker import EmbeddedBroker, free_loopback_port
from radstream.common.kafka_client import ensure_topics
from radstream.common.settings import (
    BlobSettings,
    DeliverySettings,
    KafkaSettings,
    ObservabilitySettings,
)
from radstream.common.topics import Topic
from radstream.ingest.app import IngestTopics, create_app
from radstream.ingest.config import AssemblySettings, DicomSettings, IngestSettings
from radstream.ingest.http_auth import HttpSettings
from radstream.ingest.mllp import MllpSettings
from tests.integration.ingest.dicom_peers import (
    EventLog,
    dcmtk_missing_reason,
    make_pki,
    pynetdicom_send,
    run_tool,
)
from tests.unit.ingest.instances import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    SC_IMAGE_STORAGE,
    SyntheticStudy,
    to_part10,
)

pytestmark = pytest.mark.integration

ALLOWED = frozenset({"SYNTH_PYNET", "STORESCU", "ECHOSCU"})
UNCOMPRESSED = [str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)]
CONTEXTS = [
    (CT_IMAGE_STORAGE, UNCOMPRESSED),
    (CT_IMAGE_STORAGE, [str(JPEG2000Lossless)]),  # one accepted syntax per context
    (MR_IMAGE_STORAGE, UNCOMPRESSED),
    (SC_IMAGE_STORAGE, UNCOMPRESSED),
]


@dataclass
class RunningIngest:
    port: int
    topics: IngestTopics
    events: EventLog
    registry: CollectorRegistry
    phi: FilesystemBlobStore
    root: Path

    def counted(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def receipts(self, outcome: str) -> float:
        return self.counted("radstream_ingest_receipts_total", channel="dicom", outcome=outcome)

    def instances_of(self, study: SyntheticStudy) -> list:
        return self.events.on(
            self.topics.instance_stored, lambda m: m.instance.study_instance_uid == study.study_uid
        )

    def studies_of(self, study: SyntheticStudy) -> list:
        return self.events.on(
            self.topics.study_received, lambda m: m.study_instance_uid == study.study_uid
        )

    async def wait_instances(self, study: SyntheticStudy, count: int) -> list:
        return await self.events.wait_for(
            self.topics.instance_stored,
            count,
            lambda m: m.instance.study_instance_uid == study.study_uid,
        )

    async def wait_study(self, study: SyntheticStudy, count: int = 1) -> list:
        return await self.events.wait_for(
            self.topics.study_received, count, lambda m: m.study_instance_uid == study.study_uid
        )

    async def fence(self) -> None:
        """Send a study and wait for its StudyReceived: what came before it has arrived too."""
        marker = SyntheticStudy.new()
        result = await pynetdicom_send(self.port, [marker.dataset("CT", 1)], contexts=CONTEXTS)
        assert result.statuses == [0x0000]
        await self.wait_study(marker)


def isolated(template: Topic) -> Topic:
    """A uniquely named one-partition copy of a topic: one total order of its events."""
    suffix = "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])
    return dataclasses.replace(
        template, name=f"radstream.scp{suffix}.{template.name.split('.')[2]}.v1", partitions=1
    )


def ingest_settings(root: Path, kafka: KafkaSettings, dicom: DicomSettings) -> IngestSettings:
    return IngestSettings(
        kafka=kafka,
        delivery=DeliverySettings(idempotency_dsn=f"sqlite:///{root / 'idempotency.sqlite3'}"),
        blob=BlobSettings(phi_uri=f"file://{root / 'phi'}", release_uri=f"file://{root / 'rel'}"),
        observability=ObservabilitySettings(service_name="ingest", health_port=0),
        audit_path=root / "audit" / "receipts.jsonl",
        dicom=dicom,
        # This file is about DICOM; the HTTP and MLLP listeners have their own tests.
        http=HttpSettings(enabled=False),
        mllp=MllpSettings(enabled=False),
        assembly=AssemblySettings(
            quiet_period_s=1.0, poll_interval_s=0.2, dsn=f"sqlite:///{root / 'assembly.sqlite3'}"
        ),
    )


async def start_ingest(
    root: Path, kafka: KafkaSettings, dicom: DicomSettings
) -> tuple[RunningIngest, object]:
    chosen = IngestTopics(
        instance_stored=isolated(topics.INSTANCE_STORED_V1),
        study_received=isolated(topics.STUDY_RECEIVED_V1),
    )
    await ensure_topics(kafka, [chosen.instance_stored, chosen.study_received])
    registry = CollectorRegistry()
    app = create_app(ingest_settings(root, kafka, dicom), registry=registry, topic_set=chosen)
    assert kafka.bootstrap is not None
    events = EventLog(kafka.bootstrap, [chosen.instance_stored, chosen.study_received])
    await events.start()
    await app.start()
    running = RunningIngest(
        port=dicom.port,
        topics=chosen,
        events=events,
        registry=registry,
        phi=FilesystemBlobStore(root / "phi", "phi"),
        root=root,
    )
    return running, app


@pytest.fixture(scope="module")
async def ingest(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningIngest]:
    """The ingest service, accepting CT and MR from the allowed AE titles, quiet period 1 s."""
    dicom = DicomSettings(
        port=free_loopback_port(),
        allowed_calling_aes=ALLOWED,
        accepted_sop_classes=frozenset({CT_IMAGE_STORAGE, MR_IMAGE_STORAGE}),
    )
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    running, app = await start_ingest(tmp_path_factory.mktemp("ingest-scp"), kafka, dicom)
    yield running
    await app.stop()  # type: ignore[attr-defined]
    await running.events.stop()


@pytest.fixture
def send_files_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom sends a file's data set bytes unparsed, as a modality streaming a file would."""
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)


@pytest.fixture
def dcmtk() -> None:
    reason = dcmtk_missing_reason()
    if reason is not None:
        pytest.skip(reason)


def dataset_part(part10: bytes) -> bytes:
    """The bytes after the File Meta Information (whose group length says where it ends)."""
    assert part10[128:132] == b"DICM"
    meta_length = int.from_bytes(part10[140:144], "little")
    return part10[144 + meta_length :]


async def stored_bytes(ingest: RunningIngest, event) -> bytes:
    blob = event.message.instance.blob
    return await ingest.phi.get(BlobRef(uri=blob.uri, sha256=blob.sha256, size=blob.size))


def write(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


class TestWhoMaySend:
    async def test_c_echo_from_dcmtk_echoscu_succeeds(self, ingest: RunningIngest, dcmtk) -> None:
        code, output = await run_tool(
            "echoscu", "-aet", "ECHOSCU", "-aec", "RADSTREAM", "127.0.0.1", str(ingest.port)
        )
        assert code == 0, output

    async def test_c_echo_from_pynetdicom_succeeds(self, ingest: RunningIngest) -> None:
        result = await pynetdicom_send(ingest.port, ["echo"])
        assert result.statuses == [0x0000]

    async def test_an_unknown_calling_ae_title_is_rejected_at_association(
        self, ingest: RunningIngest, dcmtk
    ) -> None:
        rejected_before = ingest.counted(
            "radstream_ingest_dicom_associations_total", outcome="rejected"
        )
        result = await pynetdicom_send(ingest.port, ["echo"], calling_ae="INTRUDER")
        assert (result.established, result.rejected) == (False, True)
        code, _ = await run_tool(
            "echoscu", "-aet", "INTRUDER", "-aec", "RADSTREAM", "127.0.0.1", str(ingest.port)
        )
        assert code != 0
        assert (
            ingest.counted("radstream_ingest_dicom_associations_total", outcome="rejected")
            == rejected_before + 2
        )

    async def test_an_association_addressed_to_another_ae_title_is_rejected(
        self, ingest: RunningIngest
    ) -> None:
        result = await pynetdicom_send(
            ingest.port, ["echo"], calling_ae="SYNTH_PYNET", called_ae="OTHER_PACS"
        )
        assert (result.established, result.rejected) == (False, True)


class TestStoring:
    async def test_storescu_sends_ct_and_mr_in_one_association_and_each_is_announced(
        self, ingest: RunningIngest, dcmtk, tmp_path: Path
    ) -> None:
        study = SyntheticStudy.new()
        files = [
            write(tmp_path, f"{modality}{number}.dcm", study.instance(modality, number))
            for modality in ("CT", "MR")
            for number in (1, 2)
        ]
        accepted_before = ingest.counted(
            "radstream_ingest_dicom_associations_total", outcome="accepted"
        )
        code, output = await run_tool(
            "storescu", "-aet", "STORESCU", "-aec", "RADSTREAM",
            "127.0.0.1", str(ingest.port), *map(str, files),
        )  # fmt: skip
        assert code == 0, output
        assert (
            ingest.counted("radstream_ingest_dicom_associations_total", outcome="accepted")
            == accepted_before + 1
        )

        stored = await ingest.wait_instances(study, 4)
        sent = {path.name: path.read_bytes() for path in files}
        by_uid = {study.sop_uid(p[:2], int(p[2])): data for p, data in sent.items()}
        for event in stored:
            instance = event.message.instance
            assert event.message.calling_ae_title == "STORESCU"
            assert dataset_part(await stored_bytes(ingest, event)) == dataset_part(
                by_uid[instance.sop_instance_uid]
            )

        [received] = await ingest.wait_study(study)
        message = received.message
        assert sorted(i.sop_instance_uid for i in message.instances) == sorted(by_uid)
        assert {i.modality for i in message.instances} == {"CT", "MR"}
        assert (message.accession_number, message.patient_id) == (study.accession, study.patient_id)
        assert (message.revision, message.amended) == (0, False)

    async def test_pynetdicom_instances_are_stored_as_received_compressed_ones_included(
        self, ingest: RunningIngest, tmp_path: Path, send_files_as_they_are
    ) -> None:
        study = SyntheticStudy.new()
        compressed = study.dataset("CT", 2)
        compressed.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
        sent = {
            study.sop_uid("CT", 1): study.instance("CT", 1),
            study.sop_uid("CT", 2): to_part10(compressed, JPEG2000Lossless),
            study.sop_uid("MR", 1): study.instance("MR", 1),
        }
        paths = [write(tmp_path, f"{n}.dcm", data) for n, data in enumerate(sent.values())]
        result = await pynetdicom_send(ingest.port, paths, contexts=CONTEXTS)
        assert result.statuses == [0x0000] * 3

        stored = await ingest.wait_instances(study, 3)
        for event in stored:
            instance = event.message.instance
            original = sent[instance.sop_instance_uid]
            assert dataset_part(await stored_bytes(ingest, event)) == dataset_part(original)
        syntaxes = {e.message.instance.sop_instance_uid: e.message.instance.transfer_syntax_uid
                    for e in stored}  # fmt: skip
        assert syntaxes[study.sop_uid("CT", 2)] == str(JPEG2000Lossless)
        [received] = await ingest.wait_study(study)
        assert len(received.message.instances) == 3

    async def test_a_resent_instance_is_acknowledged_but_not_announced_again(
        self, ingest: RunningIngest
    ) -> None:
        study = SyntheticStudy.new()
        instance = study.dataset("CT", 1)
        assert (await pynetdicom_send(ingest.port, [instance], contexts=CONTEXTS)).statuses == [0]
        await ingest.wait_study(study)
        duplicates_before = ingest.receipts("duplicate")

        again = await pynetdicom_send(ingest.port, [instance], contexts=CONTEXTS)
        assert again.statuses == [0x0000]
        await ingest.fence()
        assert len(ingest.instances_of(study)) == 1
        assert len(ingest.studies_of(study)) == 1
        assert ingest.receipts("duplicate") == duplicates_before + 1


class TestBadInput:
    async def test_each_bad_instance_gets_its_failure_status_and_nothing_is_published(
        self, ingest: RunningIngest, tmp_path: Path, send_files_as_they_are
    ) -> None:
        study = SyntheticStudy.new()
        whole = study.instance("CT", 1)
        meta_end = len(whole) - len(dataset_part(whole))
        not_dicom = whole[:meta_end] + b"%PDF-1.7 this is not a data set " * 8
        truncated = whole[:-40]
        unsupported = study.instance("CT", 3, sop_class=SC_IMAGE_STORAGE)
        paths = [
            write(tmp_path, "junk.dcm", not_dicom),
            write(tmp_path, "cut.dcm", truncated),
            write(tmp_path, "sc.dcm", unsupported),
        ]
        failures = ("malformed_dicom", "not_dicom", "truncated", "sop_class_not_supported")
        before = sum(ingest.receipts(reason) for reason in failures)

        result = await pynetdicom_send(ingest.port, paths, contexts=CONTEXTS)

        junk_status, truncated_status, unsupported_status = result.statuses
        assert 0xC000 <= junk_status <= 0xCFFF
        assert truncated_status == 0xC002
        assert unsupported_status == 0x0122
        await ingest.fence()
        assert ingest.instances_of(study) == []
        assert ingest.studies_of(study) == []
        assert sum(ingest.receipts(reason) for reason in failures) == before + 3


class TestTls:
    async def test_a_sender_with_a_client_certificate_is_served_and_one_without_is_not(
        self, kafka_broker: EmbeddedBroker, tmp_path: Path
    ) -> None:
        pki = make_pki(tmp_path / "pki")
        dicom = DicomSettings(
            port=free_loopback_port(),
            allowed_calling_aes="SYNTH_PYNET",
            tls_certfile=pki.server_cert,
            tls_keyfile=pki.server_key,
            tls_ca_file=pki.ca,
        )
        kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
        running, app = await start_ingest(tmp_path / "ingest", kafka, dicom)
        try:
            study = SyntheticStudy.new()
            with_cert = await pynetdicom_send(
                running.port,
                ["echo", study.dataset("CT", 1)],
                contexts=[*CONTEXTS, ("1.2.840.10008.1.1", UNCOMPRESSED)],
                tls=pki.client_context(with_certificate=True),
            )
            assert with_cert.statuses == [0x0000, 0x0000]
            await running.wait_instances(study, 1)

            without_cert = await pynetdicom_send(
                running.port, ["echo"], tls=pki.client_context(with_certificate=False)
            )
            assert not without_cert.established
            plain = await pynetdicom_send(running.port, ["echo"])
            assert not plain.established
        finally:
            await app.stop()  # type: ignore[attr-defined]
            await running.events.stop()
