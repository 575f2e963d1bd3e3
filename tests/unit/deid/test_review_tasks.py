"""Review tasks for held instances, and the manifest deid keeps to act on their decisions."""

from __future__ import annotations

import json

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from radstream.contracts.v1 import common_pb2, review_pb2
from radstream.deid.pixels.findings import PixelDecision, PixelFinding, PixelReport, RiskFeatures
from radstream.deid.review_tasks import (
    MANIFEST_SCHEMA,
    HeldForReview,
    ReviewManifest,
    box_from_proto,
    box_to_proto,
    review_task,
    risk_reasons,
)
from radstream.ocr.engine import Box

NAME_BOX = Box(10, 4, 120, 14)
ID_BOX = Box(200, 4, 80, 14)
MARKER_BOX = Box(600, 700, 30, 12)


def original(number: int) -> common_pb2.InstanceRef:
    return common_pb2.InstanceRef(
        study_instance_uid="2.25.1",
        series_instance_uid="2.25.2",
        sop_instance_uid=f"2.25.3.{number}",
        modality="US",
        blob=common_pb2.BlobRef(
            uri=f"file:///phi/{number:064x}", sha256=f"{number:064x}", size=1000 + number
        ),
    )


def report(*, risk: float = 0.4, features: RiskFeatures | None = None) -> PixelReport:
    return PixelReport(
        decision=PixelDecision.HELD,
        findings=(
            PixelFinding(
                frame=0,
                box=NAME_BOX,
                text="DOE JANE",
                confidence=0.62,
                detection_score=0.97,
                phi=True,
                phi_kinds=("PatientName",),
                phi_score=0.99,
                reason="matches PatientName",
            ),
            PixelFinding(
                frame=2,
                box=ID_BOX,
                text="SYNTH-MRN-48213",
                confidence=0.91,
                detection_score=0.88,
                phi=True,
                phi_kinds=("PatientID",),
                phi_score=0.95,
                reason="matches PatientID",
            ),
            PixelFinding(
                frame=0,
                box=MARKER_BOX,
                text="L",
                confidence=0.99,
                detection_score=0.7,
                phi=False,
                reason="allowlisted marker",
            ),
        ),
        reasons=("risk_over_threshold",),
        risk=risk,
        risk_features=features or RiskFeatures(text_found=True, min_recognition_confidence=0.62),
        frames_total=3,
        frames_checked=3,
    )


def stamp() -> Timestamp:
    value = Timestamp()
    value.FromSeconds(1_700_000_000)
    return value


def test_a_task_carries_per_instance_boxes_texts_scores_risk_and_previews() -> None:
    candidate = common_pb2.BlobRef(uri="file:///phi/c", sha256="c" * 64, size=5)
    preview = common_pb2.BlobRef(uri="file:///phi/p", sha256="d" * 64, size=6)
    held = HeldForReview(
        original=original(1),
        reasons=("risk_over_threshold",),
        report=report(risk=0.4),
        candidate=candidate,
        preview=preview,
    )

    task = review_task(
        task_id="t-1",
        study_instance_uid="2.25.1",
        held=[held],
        reasons=["risk_over_threshold", "risk_over_threshold"],
        created_at=stamp(),
    )

    assert task.kind == review_pb2.REVIEW_KIND_DEID
    assert list(task.reasons) == ["risk_over_threshold"]
    assert list(task.payload) == [candidate]
    [entry] = task.held_instances
    assert entry.original == original(1)
    assert entry.candidate == candidate
    assert entry.preview == preview
    assert entry.risk == pytest.approx(0.4)
    assert task.max_risk == pytest.approx(0.4)
    assert entry.frames_total == 3
    name, mrn, marker = entry.findings
    assert (name.box.frame, name.box.x, name.box.y, name.box.width, name.box.height) == (
        0,
        10,
        4,
        120,
        14,
    )
    assert name.text == "DOE JANE"
    assert name.recognition_confidence == pytest.approx(0.62)
    assert name.detection_score == pytest.approx(0.97)
    assert name.phi and list(name.phi_kinds) == ["PatientName"]
    assert name.reason == "matches PatientName"
    assert mrn.box.frame == 2
    assert not marker.phi
    # The least sure read sorts the queue.
    assert entry.min_confidence == pytest.approx(0.62)
    assert task.min_confidence == pytest.approx(0.62)
    assert "low_recognition_confidence" in entry.risk_reasons


def test_an_instance_held_without_a_pixel_report_is_at_full_risk_and_vouched_for_by_nothing() -> (
    None
):
    held = HeldForReview(original=original(1), reasons=("no pixel check",), report=None)
    task = review_task(
        task_id="t", study_instance_uid="s", held=[held], reasons=[], created_at=stamp()
    )
    [entry] = task.held_instances
    assert entry.risk == 1.0
    assert task.min_confidence == 0.0
    assert not entry.HasField("preview")
    assert not task.payload


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        (RiskFeatures(verification_failed=True), ("verification_read_phi",)),
        (RiskFeatures(frames_sampled_fraction=0.5), ("frames_sampled",)),
        (
            RiskFeatures(text_found=True, unread_regions=2, min_recognition_confidence=0.5),
            ("unread_regions", "low_recognition_confidence"),
        ),
        (
            RiskFeatures(text_found=True, nearest_phi_margin=0.05),
            ("phi_score_near_threshold",),
        ),
        (RiskFeatures(text_found=True, unusual_layout=0.9), ("unusual_layout",)),
        (RiskFeatures(text_found=True), ("text_found",)),
        (RiskFeatures(), ()),
    ],
)
def test_risk_reasons_name_what_drove_the_risk(
    features: RiskFeatures, expected: tuple[str, ...]
) -> None:
    assert risk_reasons(features) == expected


def test_boxes_go_to_the_contract_and_back_and_empty_ones_are_refused() -> None:
    assert box_from_proto(box_to_proto(4, NAME_BOX)) == (4, NAME_BOX)
    with pytest.raises(ValueError, match="width"):
        box_from_proto(review_pb2.PixelBox(frame=0, x=1, y=1, width=0, height=3))
    with pytest.raises(ValueError, match="frame"):
        box_from_proto(review_pb2.PixelBox(frame=-1, x=1, y=1, width=2, height=3))


def test_the_manifest_keeps_originals_and_proposed_phi_boxes_and_no_text() -> None:
    held = [
        HeldForReview(original=original(1), reasons=("r",), report=report()),
        HeldForReview(
            original=original(2),
            reasons=("r",),
            report=None,
            extra_boxes=((0, MARKER_BOX),),
        ),
    ]
    manifest = ReviewManifest.of(
        task_id="t-1",
        study_instance_uid="2.25.1",
        study_revision=2,
        caused_by="e-1",
        held=held,
    )

    data = manifest.to_json()
    assert json.loads(data)["schema"] == MANIFEST_SCHEMA
    assert b"DOE JANE" not in data and b"SYNTH-MRN" not in data
    again = ReviewManifest.from_json(data)
    assert again == manifest
    assert again.to_json() == data  # the same manifest stores as the same blob
    first = again.instance(original(1).blob.sha256)
    assert first is not None
    # Only the PHI boxes are proposed for filling, per frame; the marker is kept.
    assert first.proposed_boxes == {0: (NAME_BOX,), 2: (ID_BOX,)}
    second = again.instance(original(2).blob.sha256)
    assert second is not None and second.proposed_boxes == {0: (MARKER_BOX,)}
    assert again.instance("f" * 64) is None
    assert "2.25.3" not in repr(first)


@pytest.mark.parametrize(
    "data",
    [b"not json", b'{"schema": "other/1"}', json.dumps({"schema": MANIFEST_SCHEMA}).encode()],
)
def test_a_damaged_manifest_is_refused_without_quoting_it(data: bytes) -> None:
    with pytest.raises(ValueError, match="manifest") as raised:
        ReviewManifest.from_json(data)
    assert "other/1" not in str(raised.value)
