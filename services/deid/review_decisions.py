"""The pure core of acting on a reviewer's decision about a DEID review task.

The service edge (:mod:`radstream.deid.app`) looks the task up, fetches, runs the pipeline and
publishes; everything it decides is decided here, without I/O:

* :func:`plan_decision` -- which originals to redact with which boxes, or that nothing is
  released. APPROVE redacts each held instance with the reviewer's boxes where the decision
  lists the instance, else with the boxes the task proposed; AMEND is the same but must list at
  least one instance (a DEID amendment *is* the reviewer's boxes); REJECT and UNSPECIFIED
  release nothing (fail closed). Boxes naming no held instance, or empty boxes, make the
  decision invalid: it is dead-lettered whole, never half applied.
* :func:`prior_result` -- idempotency on task and decision: the first decision recorded for a
  task is its decision; the same decision again is a duplicate (released nothing twice), a
  different one is refused as already decided.
* :func:`decision_result` -- the label of what became of an acted-on decision, for the metric
  ``radstream_deid_review_decisions_total{decision,result}`` and the audit.
* :func:`decision_audit` -- the audit document (PHI store): reviewer pseudonym, decision, task
  id, the instances' digests and boxes, the pipeline's audit per instance. No value read from
  an instance and no OCR text goes into it.

Whatever a reviewer approves is still verified: the pipeline redacts with the reviewer's boxes,
re-reads the output and holds it again (reason :data:`REVIEWED_BOXES_LEAVE_PHI`) when PHI is
still readable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from radstream.common.envelope import derived_event_id
from radstream.common.errors import PoisonEventError
from radstream.contracts.v1 import common_pb2, review_pb2
from radstream.deid.errors import DeidError
from radstream.deid.pipeline import InstanceStatus
from radstream.deid.review_store import ReviewTaskEntry
from radstream.deid.review_tasks import ReviewManifest, box_from_proto
from radstream.ocr.engine import Box

__all__ = [
    "APPROVED_BY_REVIEWER",
    "DECISION_AUDIT_SCHEMA",
    "REJECTED_BY_REVIEWER",
    "REVIEWED_BOXES_LEAVE_PHI",
    "DecisionPlan",
    "DecisionResult",
    "InstanceDecided",
    "InstancePlan",
    "InvalidReviewDecisionError",
    "ReviewTaskNotFoundError",
    "decision_audit",
    "decision_label",
    "decision_result",
    "derived_id",
    "is_for_deid",
    "plan_decision",
    "prior_result",
]

DECISION_AUDIT_SCHEMA = "radstream.deid.review-decision-audit/1"
REJECTED_BY_REVIEWER = "rejected_by_reviewer"
APPROVED_BY_REVIEWER = "released_after_review"
REVIEWED_BOXES_LEAVE_PHI = "reviewed_boxes_leave_phi"

_Decision = review_pb2.ReviewDecision
_LABELS: dict[int, str] = {
    _Decision.DECISION_UNSPECIFIED: "unspecified",
    _Decision.DECISION_APPROVE: "approve",
    _Decision.DECISION_REJECT: "reject",
    _Decision.DECISION_AMEND: "amend",
}
_RELEASING = frozenset({_Decision.DECISION_APPROVE, _Decision.DECISION_AMEND})


class ReviewTaskNotFoundError(DeidError, PoisonEventError):
    """A decision names a task deid never raised (ERROR_CODE_REVIEW_TASK_NOT_FOUND): DLQ."""

    reason: ClassVar[str] = "review_task_not_found"


class InvalidReviewDecisionError(DeidError, PoisonEventError):
    """A decision deid cannot act on as it stands (boxes naming no held instance, ...): DLQ."""

    reason: ClassVar[str] = "invalid_review_decision"


class DecisionResult(StrEnum):
    """What became of a decision (the ``result`` label of the decisions metric)."""

    RELEASED = "released"  # the held instances were redacted, verified and released
    HELD_AGAIN = "held_again"  # verification still read PHI in one: a new task was raised
    FAILED = "failed"  # no instance could be released (the pipeline rejected them)
    DISCARDED = "discarded"  # REJECT or UNSPECIFIED: nothing released
    DUPLICATE = "duplicate"  # the task was already decided the same way: nothing done again
    ALREADY_DECIDED = "already_decided"  # decided otherwise before: refused, nothing done
    UNKNOWN_TASK = "unknown_task"  # no such task: dead-lettered
    INVALID = "invalid"  # the decision cannot be acted on: dead-lettered


def decision_label(decision: int) -> str:
    """``approve``, ``amend``, ``reject`` or ``unspecified`` (an unknown number counts as that)."""
    return _LABELS.get(decision, "unspecified")


def is_for_deid(decision: review_pb2.ReviewDecision) -> bool:
    """True for decisions on DEID tasks, and for those that do not say (deid looks them up)."""
    return decision.kind in {review_pb2.REVIEW_KIND_DEID, review_pb2.REVIEW_KIND_UNSPECIFIED}


def derived_id(task_id: str, label: str, purpose: str) -> str:
    """An output's event id, derived from the task and the decision, not the decision event.

    A decision the review service publishes twice arrives as two events; outputs keyed by
    task and decision make both publish the same ids, so downstream guards drop the repeat.
    """
    return derived_event_id(f"{task_id}/{label}", purpose)


@dataclass(frozen=True, kw_only=True)
class InstancePlan:
    """One held original and the boxes to fill in it (empty when nothing is released)."""

    original: common_pb2.InstanceRef
    boxes: Mapping[int, tuple[Box, ...]]
    reviewer_boxes: bool  # True when the boxes are the reviewer's, False when proposed

    def __repr__(self) -> str:  # the original's UIDs are PHI-zone identifiers
        count = sum(len(found) for found in self.boxes.values())
        return (
            f"InstancePlan(original_sha256={self.original.blob.sha256!r}, boxes={count}, "
            f"reviewer_boxes={self.reviewer_boxes})"
        )


@dataclass(frozen=True, kw_only=True)
class DecisionPlan:
    """What acting on a decision does: redact and release ``instances``, or release nothing."""

    task_id: str
    label: str
    release: bool
    instances: tuple[InstancePlan, ...]


def plan_decision(decision: review_pb2.ReviewDecision, manifest: ReviewManifest) -> DecisionPlan:
    """Plan the decision on the task ``manifest`` records.

    Raises
    ------
    InvalidReviewDecisionError
        The decision lists boxes for an instance the task does not hold, lists one instance
        twice, holds an empty box, or is an AMEND without boxes. Messages name fields and
        positions, never values.
    """
    label = decision_label(decision.decision)
    if decision.decision not in _RELEASING:
        return DecisionPlan(
            task_id=manifest.task_id,
            label=label,
            release=False,
            instances=tuple(
                InstancePlan(original=one.original, boxes={}, reviewer_boxes=False)
                for one in manifest.instances
            ),
        )
    reviewed = _reviewer_boxes(decision, manifest)
    if decision.decision == _Decision.DECISION_AMEND and not reviewed:
        raise InvalidReviewDecisionError(
            "ReviewDecision is AMEND but reviewed_instances is empty; a DEID task is amended "
            "with the reviewer's boxes (amended_payload is not read for DEID)"
        )
    return DecisionPlan(
        task_id=manifest.task_id,
        label=label,
        release=True,
        instances=tuple(
            InstancePlan(
                original=one.original,
                boxes=reviewed.get(one.original_sha256, one.proposed_boxes),
                reviewer_boxes=one.original_sha256 in reviewed,
            )
            for one in manifest.instances
        ),
    )


def _reviewer_boxes(
    decision: review_pb2.ReviewDecision, manifest: ReviewManifest
) -> dict[str, dict[int, tuple[Box, ...]]]:
    reviewed: dict[str, dict[int, tuple[Box, ...]]] = {}
    for index, entry in enumerate(decision.reviewed_instances):
        where = f"ReviewDecision.reviewed_instances[{index}]"
        if manifest.instance(entry.original_sha256) is None:
            raise InvalidReviewDecisionError(
                f"{where}.original_sha256 names no instance the task holds"
            )
        if entry.original_sha256 in reviewed:
            raise InvalidReviewDecisionError(f"{where} lists an instance listed before it")
        boxes: dict[int, list[Box]] = {}
        for number, message in enumerate(entry.boxes):
            try:
                frame, box = box_from_proto(message)
            except ValueError as exc:
                raise InvalidReviewDecisionError(f"{where}.boxes[{number}]: {exc}") from None
            boxes.setdefault(frame, []).append(box)
        reviewed[entry.original_sha256] = {
            frame: tuple(found) for frame, found in sorted(boxes.items())
        }
    return reviewed


def prior_result(entry: ReviewTaskEntry, label: str) -> DecisionResult | None:
    """None when the task awaits its decision; else why this one is not acted on again."""
    if entry.decision is None:
        return None
    return DecisionResult.DUPLICATE if entry.decision == label else DecisionResult.ALREADY_DECIDED


def decision_result(plan: DecisionPlan, statuses: Sequence[InstanceStatus]) -> DecisionResult:
    """What became of an acted-on decision, from its plan and the instances' statuses."""
    if not plan.release:
        return DecisionResult.DISCARDED
    if InstanceStatus.HELD in statuses:
        return DecisionResult.HELD_AGAIN
    if InstanceStatus.RELEASED in statuses:
        return DecisionResult.RELEASED
    return DecisionResult.FAILED


@dataclass(frozen=True, kw_only=True)
class InstanceDecided:
    """What became of one instance of an acted-on decision (digests and reasons, no values)."""

    plan: InstancePlan
    status: InstanceStatus
    reasons: tuple[str, ...]
    output_sha256: str | None = None
    pipeline_audit: Mapping[str, Any] | None = None  # the pipeline's AuditRecord.to_dict()


def decision_audit(
    *,
    decision: review_pb2.ReviewDecision,
    plan: DecisionPlan,
    event_id: str,
    result: DecisionResult,
    instances: Sequence[InstanceDecided],
    held_again_task_id: str = "",
) -> dict[str, Any]:
    """The audit document of an acted-on decision, for the PHI store.

    It holds the reviewer's pseudonym (never a name), the decision, the task, the instances'
    digests and the boxes filled (geometry, no text), and the pipeline's own audit per
    instance, which holds no values either.
    """
    decided_at = (
        decision.decided_at.ToDatetime().isoformat() if decision.HasField("decided_at") else None
    )
    return {
        "schema": DECISION_AUDIT_SCHEMA,
        "task_id": plan.task_id,
        "decision": plan.label,
        "result": result.value,
        "reviewer_pseudonym": decision.reviewer_pseudonym,
        "decided_at": decided_at,
        "time_spent_ms": decision.time_spent_ms,
        "ai_suggestion_shown_first": decision.ai_suggestion_shown_first,
        "event_id": event_id,
        "held_again_task_id": held_again_task_id or None,
        "instances": [
            {
                "original": {
                    "sha256": one.plan.original.blob.sha256,
                    "size": one.plan.original.blob.size,
                },
                "output_sha256": one.output_sha256,
                "outcome": one.status.value,
                "reasons": list(one.reasons),
                "reviewer_boxes": one.plan.reviewer_boxes,
                "boxes": [
                    {"frame": frame, "x": b.x, "y": b.y, "width": b.width, "height": b.height}
                    for frame, found in sorted(one.plan.boxes.items())
                    for b in found
                ],
                "pipeline": dict(one.pipeline_audit) if one.pipeline_audit is not None else None,
            }
            for one in instances
        ],
    }
