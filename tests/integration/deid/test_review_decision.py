"""deid acts on review.decision, with events on the real broker and the real pixel stage.

The held instance is the real ultrasound of deid-data (GREYSCALE_IMAGE.dcm: names, MRN, birth
date and institution burned into its top band), run through the real pipeline with RapidOCR and
the Presidio classifier; the risk threshold holds everything with text, so it goes to review.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import deid_data
import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry
from pydicom import dcmread

from radstream.common.blobstore import BlobRef, BlobStores
from radstream.common.bus import Bus, create_bus
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.contracts.v1 import common_pb2, deid_pb2, imaging_pb2, review_pb2
from radstream.deid.app import DeidTopics
from radstream.deid.metrics import deid_metrics
from radstream.deid.phi import collect_phi_values
from radstream.deid.pixels.classify import PhiClassifier
from radstream.deid.pixels.risk import FAIL_CLOSED, RiskThreshold
from radstream.deid.pixels.stage import PixelStage
from radstream.deid.review_store import SqlReviewTaskIndex, open_review_index
from radstream.deid.review_tasks import box_to_proto
from radstream.ocr.engine import Box
from radstream.ocr.engines import shared_engine
from tests.integration.buses import running
from tests.integration.deid.deid_service import deid_and_ingest_buses, deid_worker, stores_in
from tests.integration.topic_reader import read_records
from tests.unit.deid.study_builder import shared_text_cleaner

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GREYSCALE = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"
HOLD_ALL_TEXT = RiskThreshold(
    value=0.0, leak_rate=0.01, engine="rapidocr", n_calibration=0, method=FAIL_CLOSED
)
Completed = deid_pb2.DeidCompleted
Decision = review_pb2.ReviewDecision


def pixel_stage() -> PixelStage:
    return PixelStage(
        shared_engine("rapidocr"),
        classifier=PhiClassifier(shared_text_cleaner().analyzer),
        threshold=HOLD_ALL_TEXT,
    )


@dataclass
class Deid:
    """deid running on the broker, and what a test publishes and reads with."""

    stores: BlobStores
    registry: CollectorRegistry
    index: SqlReviewTaskIndex
    topics: DeidTopics
    kafka: KafkaSettings
    ingest: Bus
    review: Bus

    async def hold_the_ultrasound(self) -> tuple[review_pb2.ReviewTask, Completed]:
        """Send the study; return its review task and its DeidCompleted (the instance held)."""
        data = GREYSCALE.read_bytes()
        header = dcmread(GREYSCALE, stop_before_pixels=True)
        blob = await self.stores.phi.put(data, media_type="application/dicom")
        ref = common_pb2.InstanceRef(
            study_instance_uid=header.StudyInstanceUID,
            series_instance_uid=header.SeriesInstanceUID,
            sop_instance_uid=header.SOPInstanceUID,
            sop_class_uid=header.SOPClassUID,
            transfer_syntax_uid=header.file_meta.TransferSyntaxUID,
            modality="US",
            blob=blob.to_proto(),
        )
        study = imaging_pb2.StudyReceived(
            study_instance_uid=header.StudyInstanceUID, instances=[ref], revision=0
        )
        await self.ingest.publish(self.topics.study_received, study)
        [task] = await read_records(self.kafka, self.topics.review.name, 1, timeout=120)
        [completed] = await read_records(self.kafka, self.topics.completed.name, 1, timeout=30)
        return review_pb2.ReviewTask.FromString(task.value), Completed.FromString(completed.value)

    async def decide(self, decision: Decision) -> None:
        await self.review.publish(self.topics.decision, decision)

    async def completed(self, count: int, timeout: float = 120) -> list[Completed]:
        records = await read_records(self.kafka, self.topics.completed.name, count, timeout)
        return [Completed.FromString(record.value) for record in records]

    def instances(self, outcome: str) -> float:
        value = self.registry.get_sample_value(
            "radstream_deid_instances_total", {"outcome": outcome}
        )
        return value or 0.0

    def decisions(self, decision: str, result: str) -> float:
        value = self.registry.get_sample_value(
            "radstream_deid_review_decisions_total", {"decision": decision, "result": result}
        )
        return value or 0.0

    def released_files(self) -> list[Path]:
        root = Path(self.stores.release.root_uri.removeprefix("file://"))
        return [path for path in root.rglob("*") if path.is_file()]

    async def json_blob(self, ref: common_pb2.BlobRef) -> dict[str, object]:
        data = await self.stores.phi.get(BlobRef(uri=ref.uri, sha256=ref.sha256, size=ref.size))
        document: dict[str, object] = json.loads(data)
        return document


@pytest.fixture
async def deid(
    kafka_settings: KafkaSettings, deid_topics: DeidTopics, idempotency_dsn: str, tmp_path: Path
) -> AsyncIterator[Deid]:
    stores = stores_in(tmp_path)
    registry = CollectorRegistry()
    index = open_review_index(idempotency_dsn)
    await index.open()
    worker = deid_worker(
        stores, deid_metrics(registry), pixel_policy=pixel_stage(), review_index=index
    )
    deid_bus, ingest_bus = deid_and_ingest_buses(
        kafka_settings, idempotency_dsn, worker, deid_topics, registry=registry
    )
    review_bus = create_bus(
        kafka_settings,
        DeliverySettings(idempotency_dsn=idempotency_dsn),
        service="review",
        registry=CollectorRegistry(),
    )
    try:
        async with running(review_bus), running(ingest_bus), running(deid_bus):
            yield Deid(
                stores=stores,
                registry=registry,
                index=index,
                topics=deid_topics,
                kafka=kafka_settings,
                ingest=ingest_bus,
                review=review_bus,
            )
    finally:
        await index.close()


def reviewed(task: review_pb2.ReviewTask, kind: int, boxes: list[Box] | None) -> Decision:
    [held] = task.held_instances
    decision = Decision(
        task_id=task.task_id,
        kind=review_pb2.REVIEW_KIND_DEID,
        decision=kind,
        reviewer_pseudonym="reviewer-7f3a",
    )
    if boxes is not None:
        decision.reviewed_instances.add(
            original_sha256=held.original.blob.sha256,
            boxes=[box_to_proto(0, box) for box in boxes],
        )
    return decision


def phi_boxes(task: review_pb2.ReviewTask) -> list[Box]:
    [held] = task.held_instances
    return [Box(f.box.x, f.box.y, f.box.width, f.box.height) for f in held.findings if f.phi]


async def until(check: object, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_held_ultrasound_is_released_with_the_reviewers_boxes_filled_and_verified(
    deid: Deid,
) -> None:
    task, first = await deid.hold_the_ultrasound()

    # The task carries what the reviewer needs: boxes, texts, scores, risk, a preview.
    assert [result.outcome for result in first.results] == [Completed.OUTCOME_HELD]
    assert first.review_task_id == task.task_id
    [held] = task.held_instances
    assert held.original.blob.sha256 == first.results[0].original.blob.sha256
    proposed = phi_boxes(task)
    assert len(proposed) >= 2
    assert all(f.text for f in held.findings)
    assert all(0.0 < f.recognition_confidence <= 1.0 for f in held.findings)
    assert all(0.0 < f.detection_score <= 1.0 for f in held.findings)
    assert all(f.phi_kinds for f in held.findings if f.phi)
    assert any(not f.phi for f in held.findings)  # settings and markers are kept
    assert held.risk > 0.0 and task.max_risk == held.risk
    assert "pixel_risk_over_threshold" in held.reasons
    assert held.preview.uri.startswith(deid.stores.phi.root_uri)
    preview = await deid.stores.phi.get(
        BlobRef(uri=held.preview.uri, sha256=held.preview.sha256, size=held.preview.size)
    )
    assert Image.open(io.BytesIO(preview)).size == (1024, 768)

    # The reviewer removes the last proposed box and draws a larger one over the same text,
    # reaching 30 rows further down: one box removed, one added.
    *kept, removed = proposed
    added = Box(removed.x - 6, removed.y, removed.width + 12, removed.height + 30)
    await deid.decide(reviewed(task, Decision.DECISION_APPROVE, [*kept, added]))
    _, after = await deid.completed(2)

    [result] = after.results
    assert result.outcome == Completed.OUTCOME_RELEASED
    assert "released_after_review" in result.reasons
    # The result after review names the reader and the option like the first one.
    assert after.burned_in_text_model.name.startswith("rapidocr")
    assert "113101" in after.options
    assert result.released.blob.uri.startswith(deid.stores.release.root_uri)
    released = dcmread(
        io.BytesIO(
            await deid.stores.release.get(
                BlobRef(
                    uri=result.released.blob.uri,
                    sha256=result.released.blob.sha256,
                    size=result.released.blob.size,
                )
            )
        )
    )
    pixels = released.pixel_array
    for box in [*kept, added]:  # each of the reviewer's boxes is filled, to its last row
        clipped = box.clipped(width=1024, height=768)
        assert clipped is not None
        filled = pixels[clipped.y : clipped.bottom, clipped.x : clipped.right]
        assert np.ptp(filled) == 0
    original = dcmread(GREYSCALE)
    assert not (pixels == original.pixel_array).all()
    # One instance, counted once, as first decided; the review's result is counted apart.
    assert deid.instances("held") == 1
    assert deid.instances("released") == 0
    assert deid.decisions("approve", "released") == 1

    # Read again, the released pixels show no PHI of the original's header.
    engine = shared_engine("rapidocr")
    phi = collect_phi_values(original)
    classifier = PhiClassifier(shared_text_cleaner().analyzer)
    lines = [region.text for region in engine.recognize(pixels.astype(np.uint8))]
    assert lines, "the kept annotations are still readable"
    assert not [line for line in lines if classifier.classify(line, phi).phi]
    name = str(original.PatientName).replace("^", " ").split()
    assert not any(part.lower() in " ".join(lines).lower() for part in name if len(part) > 2)

    # Audited in the PHI store without values; counted.
    audit = await deid.json_blob(after.audit_record)
    assert audit["decision"] == "approve" and audit["result"] == "released"
    assert audit["reviewer_pseudonym"] == "reviewer-7f3a"
    assert audit["task_id"] == task.task_id
    [entry] = audit["instances"]  # type: ignore[misc]
    assert entry["original"]["sha256"] == held.original.blob.sha256
    assert entry["output_sha256"] == result.released.blob.sha256
    assert entry["reviewer_boxes"] is True
    assert all(part not in json.dumps(audit) for part in name if len(part) > 2)
    assert deid.decisions("approve", "released") == 1

    # The same decision published again releases nothing twice.
    await deid.decide(reviewed(task, Decision.DECISION_APPROVE, [*kept, added]))
    await until(lambda: deid.decisions("approve", "duplicate") == 1)
    assert len(await deid.completed(3, timeout=2)) == 2
    assert len(deid.released_files()) == 1


async def test_boxes_that_leave_phi_readable_hold_the_instance_again_in_a_new_task(
    deid: Deid,
) -> None:
    task, _ = await deid.hold_the_ultrasound()
    first, *_ = phi_boxes(task)

    await deid.decide(reviewed(task, Decision.DECISION_AMEND, [first]))
    _, after = await deid.completed(2)

    [result] = after.results
    assert result.outcome == Completed.OUTCOME_HELD
    assert "reviewed_boxes_leave_phi" in result.reasons
    assert not result.HasField("released")
    assert deid.released_files() == []
    tasks = await read_records(deid.kafka, deid.topics.review.name, 2, timeout=30)
    # Keyed by task id, the two tasks may lie in different partitions: found by id.
    [again] = [
        raised
        for raised in (review_pb2.ReviewTask.FromString(record.value) for record in tasks)
        if raised.task_id != task.task_id
    ]
    assert after.review_task_id == again.task_id != task.task_id
    assert "reviewed_boxes_leave_phi" in again.reasons
    entry = await deid.index.find(again.task_id)
    assert entry is not None and entry.decision is None
    assert deid.decisions("amend", "held_again") == 1


async def test_a_rejected_task_releases_nothing_and_says_so(deid: Deid) -> None:
    task, _ = await deid.hold_the_ultrasound()

    await deid.decide(reviewed(task, Decision.DECISION_REJECT, None))
    _, after = await deid.completed(2)

    [result] = after.results
    assert result.outcome == Completed.OUTCOME_REJECTED
    assert list(result.reasons) == ["rejected_by_reviewer"]
    assert deid.released_files() == []
    audit = await deid.json_blob(after.audit_record)
    assert (audit["decision"], audit["result"]) == ("reject", "discarded")
    assert deid.decisions("reject", "discarded") == 1


async def test_a_decision_on_an_unknown_task_goes_to_the_dead_letter_topic(deid: Deid) -> None:
    # Another service's decision is not deid's to judge: it is skipped, not dead-lettered.
    await deid.decide(
        Decision(task_id=str(uuid.uuid4()), kind=review_pb2.REVIEW_KIND_REPORT, decision=1)
    )
    unknown = Decision(
        task_id=str(uuid.uuid4()),
        kind=review_pb2.REVIEW_KIND_DEID,
        decision=Decision.DECISION_APPROVE,
        reviewer_pseudonym="reviewer-7f3a",
    )
    await deid.decide(unknown)

    [letter] = await read_records(deid.kafka, deid.topics.decision.dlq, 1)
    headers = dict(letter.headers)
    assert headers["x-radstream-error-kind"] == b"poison"
    assert b"names no review task" in headers["x-radstream-error-message"]
    assert Decision.FromString(letter.value) == unknown  # nothing lost: the decision whole
    assert deid.decisions("approve", "unknown_task") == 1
    assert len(await read_records(deid.kafka, deid.topics.decision.dlq, 2, timeout=2)) == 1
