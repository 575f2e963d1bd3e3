"""Acting on a reviewer's decision: which boxes, release or not, idempotency, the audit."""

from __future__ import annotations

import json

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from radstream.common.blobstore import BlobRef
from radstream.common.errors import PoisonEventError
from radstream.contracts.v1 import common_pb2, review_pb2
from radstream.deid.pipeline import InstanceStatus
from radstream.deid.review_decisions import (
    DECISION_AUDIT_SCHEMA,
    DecisionResult,
    InstanceDecided,
    InvalidReviewDecisionError,
    decision_audit,
    decision_result,
    derived_id,
    is_for_deid,
    plan_decision,
    prior_result,
)
from radstream.deid.review_store import ReviewTaskEntry
from radstream.deid.review_tasks import ManifestInstance, ReviewManifest, box_to_proto
from radstream.ocr.engine import Box

Decision = review_pb2.ReviewDecision
NAME, MRN, DATE = Box(10, 4, 120, 14), Box(200, 4, 80, 14), Box(400, 4, 90, 14)


def original(number: int) -> common_pb2.InstanceRef:
    return common_pb2.InstanceRef(
        sop_instance_uid=f"2.25.3.{number}",
        blob=common_pb2.BlobRef(uri=f"file:///phi/{number}", sha256=f"{number:064x}", size=9),
    )


MANIFEST = ReviewManifest(
    task_id="task-1",
    study_instance_uid="2.25.1",
    study_revision=0,
    caused_by="event-1",
    instances=(
        ManifestInstance(original=original(1), proposed_boxes={0: (NAME, MRN)}),
        ManifestInstance(original=original(2), proposed_boxes={0: (DATE,)}),
    ),
)


def decided(kind: int, *reviewed: tuple[int, list[tuple[int, Box]]]) -> Decision:
    return Decision(
        task_id="task-1",
        kind=review_pb2.REVIEW_KIND_DEID,
        decision=kind,
        reviewer_pseudonym="rev-7f3a",
        reviewed_instances=[
            Decision.ReviewedInstance(
                original_sha256=f"{number:064x}",
                boxes=[box_to_proto(frame, box) for frame, box in boxes],
            )
            for number, boxes in reviewed
        ],
    )


def test_approve_without_boxes_redacts_each_instance_with_the_proposed_boxes() -> None:
    plan = plan_decision(decided(Decision.DECISION_APPROVE), MANIFEST)
    assert plan.release and plan.label == "approve"
    assert [dict(one.boxes) for one in plan.instances] == [{0: (NAME, MRN)}, {0: (DATE,)}]
    assert not any(one.reviewer_boxes for one in plan.instances)


def test_the_reviewers_boxes_replace_the_proposal_for_the_instances_they_name() -> None:
    added, resized = Box(5, 700, 60, 20), Box(8, 2, 140, 18)
    # MRN's box removed, NAME's resized, one added in frame 1; instance 2 left as proposed.
    decision = decided(Decision.DECISION_APPROVE, (1, [(0, resized), (1, added)]))

    plan = plan_decision(decision, MANIFEST)

    first, second = plan.instances
    assert dict(first.boxes) == {0: (resized,), 1: (added,)}
    assert first.reviewer_boxes
    assert dict(second.boxes) == {0: (DATE,)} and not second.reviewer_boxes


def test_an_instance_listed_with_no_boxes_is_filled_nowhere() -> None:
    plan = plan_decision(decided(Decision.DECISION_AMEND, (2, [])), MANIFEST)
    assert plan.label == "amend"
    assert dict(plan.instances[1].boxes) == {}
    assert plan.instances[1].reviewer_boxes


@pytest.mark.parametrize("kind", [Decision.DECISION_REJECT, Decision.DECISION_UNSPECIFIED])
def test_reject_and_an_unset_decision_release_nothing(kind: int) -> None:
    plan = plan_decision(decided(kind, (1, [(0, NAME)])), MANIFEST)
    assert not plan.release
    assert [one.original for one in plan.instances] == [original(1), original(2)]
    assert all(not one.boxes for one in plan.instances)


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        (decided(Decision.DECISION_AMEND), "AMEND but reviewed_instances is empty"),
        (decided(Decision.DECISION_APPROVE, (9, [(0, NAME)])), r"reviewed_instances\[0\]"),
        (
            decided(Decision.DECISION_APPROVE, (1, [(0, NAME)]), (1, [(0, MRN)])),
            "listed before",
        ),
    ],
)
def test_a_decision_deid_cannot_apply_whole_is_poison(decision: Decision, message: str) -> None:
    with pytest.raises(InvalidReviewDecisionError, match=message) as raised:
        plan_decision(decision, MANIFEST)
    assert isinstance(raised.value, PoisonEventError)


def test_an_empty_reviewer_box_is_poison_naming_its_place() -> None:
    decision = decided(Decision.DECISION_APPROVE)
    entry = decision.reviewed_instances.add(original_sha256=f"{1:064x}")
    entry.boxes.add(frame=0, x=1, y=1, width=0, height=5)
    with pytest.raises(InvalidReviewDecisionError, match=r"boxes\[0\]"):
        plan_decision(decision, MANIFEST)


def test_decisions_on_other_kinds_of_task_are_not_deids() -> None:
    assert is_for_deid(Decision(kind=review_pb2.REVIEW_KIND_DEID))
    assert is_for_deid(Decision(kind=review_pb2.REVIEW_KIND_UNSPECIFIED))
    assert not is_for_deid(Decision(kind=review_pb2.REVIEW_KIND_REPORT))
    assert not is_for_deid(Decision(kind=review_pb2.REVIEW_KIND_FUSION))


def test_the_first_decision_recorded_for_a_task_is_its_decision() -> None:
    manifest = BlobRef(uri="file:///phi/m", sha256="a" * 64, size=3)
    assert prior_result(ReviewTaskEntry(manifest=manifest), "approve") is None
    approved = ReviewTaskEntry(manifest=manifest, decision="approve", decision_event_id="e")
    assert prior_result(approved, "approve") is DecisionResult.DUPLICATE
    assert prior_result(approved, "reject") is DecisionResult.ALREADY_DECIDED


def test_output_ids_follow_the_task_and_decision_not_the_event() -> None:
    assert derived_id("task-1", "approve", "completed") == derived_id(
        "task-1", "approve", "completed"
    )
    assert derived_id("task-1", "approve", "completed") != derived_id(
        "task-1", "amend", "completed"
    )
    assert derived_id("task-1", "approve", "completed") != derived_id(
        "task-2", "approve", "completed"
    )


def test_the_result_of_a_decision_follows_its_instances() -> None:
    approve = plan_decision(decided(Decision.DECISION_APPROVE), MANIFEST)
    reject = plan_decision(decided(Decision.DECISION_REJECT), MANIFEST)
    released, held, rejected = InstanceStatus.RELEASED, InstanceStatus.HELD, InstanceStatus.REJECTED
    assert decision_result(approve, [released, released]) is DecisionResult.RELEASED
    assert decision_result(approve, [released, held]) is DecisionResult.HELD_AGAIN
    assert decision_result(approve, [rejected, rejected]) is DecisionResult.FAILED
    assert decision_result(approve, [released, rejected]) is DecisionResult.RELEASED
    assert decision_result(reject, []) is DecisionResult.DISCARDED


def test_the_audit_names_reviewer_decision_task_digests_and_boxes() -> None:
    decision = decided(Decision.DECISION_APPROVE, (1, [(0, NAME)]))
    decision.decided_at.CopyFrom(Timestamp(seconds=1_700_000_000))
    plan = plan_decision(decision, MANIFEST)
    instances = [
        InstanceDecided(
            plan=plan.instances[0],
            status=InstanceStatus.RELEASED,
            reasons=("released_after_review",),
            output_sha256="b" * 64,
            pipeline_audit={"outcome": "released"},
        ),
        InstanceDecided(
            plan=plan.instances[1],
            status=InstanceStatus.HELD,
            reasons=("reviewed_boxes_leave_phi",),
        ),
    ]

    audit = decision_audit(
        decision=decision,
        plan=plan,
        event_id="event-9",
        result=DecisionResult.HELD_AGAIN,
        instances=instances,
        held_again_task_id="task-2",
    )

    assert audit["schema"] == DECISION_AUDIT_SCHEMA
    assert (audit["task_id"], audit["decision"], audit["result"]) == (
        "task-1",
        "approve",
        "held_again",
    )
    assert audit["reviewer_pseudonym"] == "rev-7f3a"
    assert audit["decided_at"].startswith("2023-11-14")
    assert audit["held_again_task_id"] == "task-2"
    first, second = audit["instances"]
    assert first["original"] == {"sha256": f"{1:064x}", "size": 9}
    assert first["output_sha256"] == "b" * 64
    assert first["boxes"] == [{"frame": 0, "x": 10, "y": 4, "width": 120, "height": 14}]
    assert first["reviewer_boxes"] and not second["reviewer_boxes"]
    assert second["outcome"] == "held"
    text = json.dumps(audit)
    assert "2.25.3" not in text  # original UIDs stay out; digests identify the instances
