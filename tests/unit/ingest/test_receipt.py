"""Receiving one instance: strict checks, claim check, publish-once, audit without PHI."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from radstream.common.blobstore import BlobRef, FilesystemBlobStore
from radstream.contracts.v1 import imaging_pb2
from radstream.dicom import ReaderLimits
from radstream.ingest.assembly import StudyAssembly
from radstream.ingest.audit import AuditUnavailableError, JsonLinesAuditSink, ReceiptAudit
from radstream.ingest.metrics import ingest_metrics
from radstream.ingest.receipt import (
    InstanceReceiver,
    Receipt,
    Sender,
    instance_event_id,
    storage_sop_classes,
)
from tests.unit.ingest.instances import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    PATIENT_NAME,
    SC_IMAGE_STORAGE,
    SyntheticStudy,
    to_part10,
)

SENDER = Sender(channel="dicom", identity="SYNTH_CT1", address="127.0.0.1")
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"


@dataclass
class Harness:
    receiver: InstanceReceiver
    assembly: StudyAssembly
    phi: FilesystemBlobStore
    registry: CollectorRegistry
    audit_path: Path
    published: list[imaging_pb2.InstanceStored] = field(default_factory=list)
    publish_fails: bool = False

    async def publish(self, message: imaging_pb2.InstanceStored) -> None:
        if self.publish_fails:
            raise ConnectionError("broker away")
        self.published.append(message)

    def audit_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def receipts_counted(self, outcome: str) -> float:
        value = self.registry.get_sample_value(
            "radstream_ingest_receipts_total", {"channel": "dicom", "outcome": outcome}
        )
        return value or 0.0


async def make_harness(
    tmp_path: Path, *, accepted: frozenset[str] | None = None, max_file_bytes: int = 1 << 30
) -> Harness:
    assembly = StudyAssembly.open_dsn(f"sqlite:///{tmp_path / 'a.sqlite3'}", quiet_period_s=30)
    await assembly.open()
    registry = CollectorRegistry()
    audit_path = tmp_path / "audit" / "receipts.jsonl"
    harness = Harness(
        receiver=None,  # type: ignore[arg-type]
        assembly=assembly,
        phi=FilesystemBlobStore(tmp_path / "phi", "phi"),
        registry=registry,
        audit_path=audit_path,
    )
    harness.receiver = InstanceReceiver(
        phi_store=harness.phi,
        assembly=assembly,
        publish_instance=harness.publish,
        audit=ReceiptAudit(JsonLinesAuditSink(audit_path), ingest_metrics(registry)),
        limits=ReaderLimits(max_file_bytes=max_file_bytes),
        accepted_sop_classes=accepted,
    )
    return harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    made = await make_harness(tmp_path)
    yield made
    await made.assembly.close()


@pytest.fixture
def study() -> SyntheticStudy:
    return SyntheticStudy.new()


def assert_refused(receipt: Receipt, failure: str, status: int) -> None:
    assert not receipt.accepted
    assert receipt.failure == failure
    assert receipt.dicom_status == status


class TestAcceptedInstances:
    async def test_an_instance_is_stored_published_and_recorded(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        data = study.instance("CT", 1)
        receipt = await harness.receiver.receive(data, sender=SENDER)

        assert receipt.accepted and not receipt.duplicate
        assert receipt.dicom_status == 0x0000
        assert receipt.sop_instance_uid == study.sop_uid("CT", 1)
        assert receipt.study_instance_uid == study.study_uid
        [event] = harness.published
        assert event.instance.sop_class_uid == CT_IMAGE_STORAGE
        assert event.instance.modality == "CT"
        assert event.instance.transfer_syntax_uid == "1.2.840.10008.1.2.1"
        assert event.source == imaging_pb2.InstanceStored.SOURCE_C_STORE
        assert event.calling_ae_title == "SYNTH_CT1"
        assert await harness.assembly.has_instance(study.sop_uid("CT", 1))

    async def test_the_claim_check_holds_exactly_the_bytes_received(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        data = study.instance("MR", 1)
        await harness.receiver.receive(data, sender=SENDER)
        blob = harness.published[0].instance.blob
        stored = await harness.phi.get(BlobRef(uri=blob.uri, sha256=blob.sha256, size=blob.size))
        assert stored == data

    async def test_compressed_pixel_data_is_stored_as_received_not_decoded(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        ds = study.dataset("CT", 2)
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])  # J2K-looking codestream
        data = to_part10(ds, JPEG2000Lossless)
        receipt = await harness.receiver.receive(data, sender=SENDER)
        assert receipt.accepted
        assert harness.published[0].instance.transfer_syntax_uid == str(JPEG2000Lossless)
        assert receipt.blob is not None
        assert await harness.phi.get(receipt.blob) == data

    async def test_other_channels_name_their_sender_as_sender_id(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        stow = Sender(channel="stow", identity="ris-gateway", address="10.0.0.7")
        await harness.receiver.receive(study.instance("CT", 1), sender=stow)
        event = harness.published[0]
        assert event.source == imaging_pb2.InstanceStored.SOURCE_STOW_RS
        assert (event.sender_id, event.calling_ae_title) == ("ris-gateway", "")

    async def test_the_event_id_is_the_same_for_the_same_bytes(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        await harness.receiver.receive(study.instance("CT", 1), sender=SENDER)
        again = imaging_pb2.InstanceStored()
        again.CopyFrom(harness.published[0])
        assert instance_event_id(again) == instance_event_id(harness.published[0])
        again.instance.blob.sha256 = "0" * 64
        assert instance_event_id(again) != instance_event_id(harness.published[0])


class TestDuplicates:
    async def test_a_resent_instance_is_acknowledged_but_publishes_nothing(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        data = study.instance("CT", 1)
        await harness.receiver.receive(data, sender=SENDER)
        receipt = await harness.receiver.receive(data, sender=SENDER)
        assert receipt.accepted and receipt.duplicate
        assert receipt.dicom_status == 0x0000
        assert len(harness.published) == 1
        assert harness.receipts_counted("duplicate") == 1

    async def test_a_failed_publish_is_refused_so_the_resend_publishes_it(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        data = study.instance("CT", 1)
        harness.publish_fails = True
        assert_refused(
            await harness.receiver.receive(data, sender=SENDER), "publish_failed", 0xA700
        )
        assert not await harness.assembly.has_instance(study.sop_uid("CT", 1))
        harness.publish_fails = False
        assert (await harness.receiver.receive(data, sender=SENDER)).accepted
        assert len(harness.published) == 1


class TestConflicts:
    """Other bytes under a known SOP Instance UID are a correction: recorded, never dropped."""

    async def test_a_changed_resend_is_stored_published_with_what_it_replaces_and_counted(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        first = study.instance("CT", 1)
        ds = study.dataset("CT", 1)
        ds.PixelData = bytes(reversed(range(128)))
        corrected = to_part10(ds)
        original = await harness.receiver.receive(first, sender=SENDER)

        receipt = await harness.receiver.receive(corrected, sender=SENDER)

        assert receipt.accepted and receipt.conflict and not receipt.duplicate
        assert receipt.dicom_status == 0x0000
        assert len(harness.published) == 2
        replacing = harness.published[1]
        assert replacing.instance.blob.sha256 == receipt.sha256
        assert replacing.replaces.sha256 == original.sha256
        assert instance_event_id(replacing) != instance_event_id(harness.published[0])
        assert harness.receipts_counted("conflict") == 1
        assert [line["outcome"] for line in harness.audit_lines()] == ["stored", "conflict"]
        [recorded] = await harness.assembly.instances(study.study_uid)
        assert recorded.blob.sha256 == receipt.sha256

    async def test_the_correction_makes_a_new_revision_of_a_published_study(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        await harness.receiver.receive(study.instance("CT", 1), sender=SENDER)
        await harness.receiver.receive(study.instance("CT", 2), sender=SENDER)
        [first] = await harness.assembly.due(datetime.now(UTC) + timedelta(hours=1))
        await harness.assembly.mark_published(first.study_instance_uid, first.revision)
        ds = study.dataset("CT", 2)
        ds.PixelData = bytes(reversed(range(128)))

        receipt = await harness.receiver.receive(to_part10(ds), sender=SENDER)

        [amended] = await harness.assembly.due(datetime.now(UTC) + timedelta(hours=2))
        assert (amended.revision, amended.amended) == (1, True)
        assert {i.blob.sha256 for i in amended.instances} == {
            first.instances[0].blob.sha256,
            receipt.sha256,
        }
        assert amended.event_id != first.event_id
        status = await harness.assembly.status(study.study_uid)
        assert status is not None and status.instance_count == 2

    async def test_the_same_correction_sent_again_is_a_plain_duplicate(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        ds = study.dataset("CT", 1)
        await harness.receiver.receive(to_part10(ds), sender=SENDER)
        ds.PixelData = bytes(reversed(range(128)))
        await harness.receiver.receive(to_part10(ds), sender=SENDER)

        receipt = await harness.receiver.receive(to_part10(ds), sender=SENDER)

        assert receipt.duplicate and not receipt.conflict
        assert len(harness.published) == 2


class TestRefusals:
    async def test_non_dicom_bytes_are_not_understood(self, harness: Harness) -> None:
        receipt = await harness.receiver.receive(b"%PDF-1.7 not an image" * 20, sender=SENDER)
        assert_refused(receipt, "not_dicom", 0xC000)

    async def test_a_truncated_part10_file_is_not_understood(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        receipt = await harness.receiver.receive(study.instance("CT", 1)[:-40], sender=SENDER)
        assert_refused(receipt, "truncated", 0xC002)

    async def test_a_sop_class_outside_the_accepted_ones_is_not_supported(
        self, tmp_path: Path, study: SyntheticStudy
    ) -> None:
        harness = await make_harness(tmp_path, accepted=frozenset({CT_IMAGE_STORAGE}))
        try:
            receipt = await harness.receiver.receive(study.instance("MR", 1), sender=SENDER)
            assert_refused(receipt, "sop_class_not_supported", 0x0122)
        finally:
            await harness.assembly.close()

    async def test_by_default_only_storage_sop_classes_are_accepted(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        assert {CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SC_IMAGE_STORAGE} <= storage_sop_classes()
        data = study.instance("CT", 1, sop_class=VERIFICATION_SOP_CLASS)
        receipt = await harness.receiver.receive(data, sender=SENDER)
        assert_refused(receipt, "sop_class_not_supported", 0x0122)

    async def test_a_data_set_unlike_the_declared_sop_class_does_not_match(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        receipt = await harness.receiver.receive(
            study.instance("CT", 1), sender=SENDER, declared_sop_class_uid=MR_IMAGE_STORAGE
        )
        assert_refused(receipt, "sop_class_mismatch", 0xA900)

    async def test_a_data_set_without_its_study_uid_does_not_match(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        ds = study.dataset("CT", 1)
        del ds.StudyInstanceUID
        receipt = await harness.receiver.receive(to_part10(ds), sender=SENDER)
        assert_refused(receipt, "missing_uid", 0xA900)

    async def test_an_oversized_file_is_refused_as_out_of_resources(
        self, tmp_path: Path, study: SyntheticStudy
    ) -> None:
        harness = await make_harness(tmp_path, max_file_bytes=256)
        try:
            receipt = await harness.receiver.receive(study.instance("CT", 1), sender=SENDER)
            assert_refused(receipt, "file_too_large", 0xA700)
        finally:
            await harness.assembly.close()

    async def test_a_refused_instance_is_counted_but_not_stored_or_published(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        await harness.receiver.receive(study.instance("CT", 1)[:-40], sender=SENDER)
        assert harness.published == []
        assert not (harness.phi.root).exists() or not any(harness.phi.root.rglob("*"))
        assert harness.receipts_counted("truncated") == 1
        assert (
            harness.registry.get_sample_value("radstream_ingest_bytes_total", {"channel": "dicom"})
            == len(study.instance("CT", 1)) - 40
        )


class TestAudit:
    async def test_every_receipt_is_audited_with_sender_size_and_hash(
        self, harness: Harness, study: SyntheticStudy
    ) -> None:
        data = study.instance("CT", 1)
        await harness.receiver.receive(data, sender=SENDER)
        await harness.receiver.receive(data, sender=SENDER)
        await harness.receiver.receive(b"junk" * 50, sender=SENDER)
        lines = harness.audit_lines()
        assert [line["outcome"] for line in lines] == ["stored", "duplicate", "not_dicom"]
        assert lines[0]["sender"] == "SYNTH_CT1"
        assert lines[0]["channel"] == "dicom"
        assert lines[0]["kind"] == CT_IMAGE_STORAGE
        assert lines[0]["size"] == len(data)
        assert lines[0]["sha256"] == harness.published[0].instance.blob.sha256
        assert harness.audit_path.stat().st_mode & 0o777 == 0o600

    async def test_neither_audit_nor_logs_carry_phi(
        self, harness: Harness, study: SyntheticStudy, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="radstream")
        await harness.receiver.receive(study.instance("CT", 1), sender=SENDER)
        await harness.receiver.receive(study.instance("CT", 2)[:-40], sender=SENDER)
        texts = [harness.audit_path.read_text()]
        texts += [record.getMessage() for record in caplog.records]
        texts += [json.dumps(record.__dict__, default=str) for record in caplog.records]
        for text in texts:
            for phi in (study.patient_id, study.accession, PATIENT_NAME, study.study_uid):
                assert phi not in text


class BrokenSink:
    async def write(self, record) -> None:
        raise AuditUnavailableError("audit volume is full")

    async def close(self) -> None:
        return None


async def test_a_receipt_that_cannot_be_audited_is_not_acknowledged(
    harness: Harness, study: SyntheticStudy
) -> None:
    harness.receiver._audit = ReceiptAudit(BrokenSink(), ingest_metrics(harness.registry))
    receipt = await harness.receiver.receive(study.instance("CT", 1), sender=SENDER)
    assert_refused(receipt, "audit_unavailable", 0xA700)
