"""What deid tells a reviewer about held instances, and what it keeps to act on the decision.

Two artefacts per review task, both built here from the pipeline's outcomes:

* the ``ReviewTask`` event (:func:`review_task`): per held instance its text findings (boxes,
  OCR text, confidences, PHI flags and kinds), the reasons for the hold, the risk and what drove
  it, the candidate copy and a rendered preview. The text is PHI: the topic and the stores it
  points into are in the PHI zone, and nothing here logs it;
* the :class:`ReviewManifest`: the task's durable record (PHI store, found through
  :mod:`radstream.deid.review_store`). A decision names only the task id; the manifest says
  which originals the task held and which boxes were proposed for each, so a decision can be
  acted on after any restart, without the event that raised the task. It holds the original
  instance references (original UIDs: PHI zone) and box geometry, never OCR text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from radstream.contracts.v1 import common_pb2, review_pb2
from radstream.deid.pixels.findings import PixelFinding, PixelReport, RiskFeatures
from radstream.deid.pixels.risk import NEAR_THRESHOLD_MARGIN
from radstream.ocr.engine import Box

__all__ = [
    "MANIFEST_SCHEMA",
    "HeldForReview",
    "ManifestInstance",
    "ReviewManifest",
    "box_from_proto",
    "box_to_proto",
    "held_instance",
    "review_task",
    "risk_reasons",
]

MANIFEST_SCHEMA = "radstream.deid.review-manifest/1"
# Below this recognition confidence a read is called low in a task's risk reasons: a phrase
# that explains the risk to the reviewer, not a threshold anything is decided by.
LOW_CONFIDENCE = 0.8
# An unusual-layout signal from this value on is named in the risk reasons (same purpose).
UNUSUAL_LAYOUT = 0.5

Boxes = Mapping[int, Sequence[Box]]


def box_to_proto(frame: int, box: Box) -> review_pb2.PixelBox:
    """A box in one frame as the contract's ``PixelBox``."""
    return review_pb2.PixelBox(frame=frame, x=box.x, y=box.y, width=box.width, height=box.height)


def box_from_proto(message: review_pb2.PixelBox) -> tuple[int, Box]:
    """``(frame, box)`` from a ``PixelBox``; ValueError (naming the field) for an empty one."""
    if message.width <= 0 or message.height <= 0:
        raise ValueError("PixelBox.width and PixelBox.height must be more than 0")
    if message.frame < 0:
        raise ValueError("PixelBox.frame must not be negative")
    return message.frame, Box(message.x, message.y, message.width, message.height)


def risk_reasons(features: RiskFeatures) -> tuple[str, ...]:
    """What drove an instance's risk, as phrases without values, most decisive first."""
    reasons: list[str] = []
    if features.verification_failed:
        reasons.append("verification_read_phi")
    if features.frames_sampled_fraction < 1.0:
        reasons.append("frames_sampled")
    if features.text_found:
        if features.unread_regions > 0:
            reasons.append("unread_regions")
        if features.min_recognition_confidence < LOW_CONFIDENCE:
            reasons.append("low_recognition_confidence")
        if features.nearest_phi_margin < NEAR_THRESHOLD_MARGIN:
            reasons.append("phi_score_near_threshold")
        if features.unusual_layout >= UNUSUAL_LAYOUT:
            reasons.append("unusual_layout")
        if not reasons:
            reasons.append("text_found")
    return tuple(reasons)


@dataclass(frozen=True, kw_only=True)
class HeldForReview:
    """One held instance with everything its entry in the task needs.

    ``report`` is the pixel stage's account (None when the hold came before or without it);
    ``candidate`` and ``preview`` are refs into the PHI store (None when there is none).
    """

    original: common_pb2.InstanceRef
    reasons: tuple[str, ...]
    report: PixelReport | None
    candidate: common_pb2.BlobRef | None = None
    preview: common_pb2.BlobRef | None = None
    extra_boxes: tuple[tuple[int, Box], ...] = ()  # e.g. a reviewer's boxes that left PHI

    @property
    def proposed_boxes(self) -> dict[int, tuple[Box, ...]]:
        """The boxes proposed for filling, per frame: the report's PHI boxes, then any extra."""
        boxes: dict[int, list[Box]] = {
            frame: list(found)
            for frame, found in (self.report.redacted_boxes if self.report else {}).items()
        }
        for frame, box in self.extra_boxes:
            if box not in boxes.setdefault(frame, []):
                boxes[frame].append(box)
        return {frame: tuple(found) for frame, found in sorted(boxes.items())}


def _finding(found: PixelFinding) -> review_pb2.TextFinding:
    return review_pb2.TextFinding(
        box=box_to_proto(found.frame, found.box),
        text=found.text,
        recognition_confidence=found.confidence,
        detection_score=found.detection_score,
        phi=found.phi,
        phi_kinds=list(found.phi_kinds),
        phi_score=found.phi_score,
        reason=found.reason,
        source=found.source,
    )


def held_instance(held: HeldForReview) -> review_pb2.HeldInstance:
    """The task's entry for one held instance."""
    report = held.report
    findings = report.findings if report is not None else ()
    read = [found.confidence for found in findings if found.text]
    message = review_pb2.HeldInstance(
        original=held.original,
        findings=[_finding(found) for found in findings],
        reasons=list(held.reasons),
        # No report: the pixels were not assessed, so nothing vouches for them.
        risk=report.risk if report is not None else 1.0,
        risk_reasons=list(risk_reasons(report.risk_features)) if report is not None else [],
        min_confidence=min(read, default=1.0) if report is not None else 0.0,
        frames_total=report.frames_total if report is not None else 0,
        frames_checked=report.frames_checked if report is not None else 0,
    )
    if held.candidate is not None:
        message.candidate.CopyFrom(held.candidate)
    if held.preview is not None:
        message.preview.CopyFrom(held.preview)
    return message


def review_task(
    *,
    task_id: str,
    study_instance_uid: str,
    held: Sequence[HeldForReview],
    reasons: Sequence[str],
    created_at: Timestamp,
    priority: review_pb2.ReviewTask.Priority = review_pb2.ReviewTask.PRIORITY_ROUTINE,
) -> review_pb2.ReviewTask:
    """The ``ReviewTask`` for a study's held instances (kind DEID).

    ``min_confidence`` is the lowest over the instances (0 when a rule held one without
    reading it: nothing vouches for its pixels), ``max_risk`` the highest risk.
    """
    entries = [held_instance(one) for one in held]
    return review_pb2.ReviewTask(
        task_id=task_id,
        kind=review_pb2.REVIEW_KIND_DEID,
        subject_ids=[study_instance_uid],
        reasons=list(dict.fromkeys(reasons)),
        min_confidence=min((entry.min_confidence for entry in entries), default=0.0),
        priority=priority,
        payload=[entry.candidate for entry in entries if entry.HasField("candidate")],
        created_at=created_at,
        held_instances=entries,
        max_risk=max((entry.risk for entry in entries), default=0.0),
    )


@dataclass(frozen=True, kw_only=True)
class ManifestInstance:
    """One held instance as the manifest keeps it: the original and the proposed boxes."""

    original: common_pb2.InstanceRef
    proposed_boxes: Mapping[int, tuple[Box, ...]]

    @property
    def original_sha256(self) -> str:
        """The original blob's hash: how a decision names the instance."""
        return self.original.blob.sha256

    def __repr__(self) -> str:  # the original's UIDs are PHI-zone identifiers
        boxes = sum(len(found) for found in self.proposed_boxes.values())
        return f"ManifestInstance(original_sha256={self.original_sha256!r}, boxes={boxes})"


@dataclass(frozen=True, kw_only=True)
class ReviewManifest:
    """What a review task held, kept in the PHI store so a decision can be acted on later.

    ``caused_by`` is the id of the event that raised the task (a study event, or a decision
    whose reviewed boxes left PHI); ``parent_task_id`` the task that decision was about.
    """

    task_id: str
    study_instance_uid: str
    study_revision: int
    caused_by: str
    instances: tuple[ManifestInstance, ...]
    parent_task_id: str = ""

    @classmethod
    def of(
        cls,
        *,
        task_id: str,
        study_instance_uid: str,
        study_revision: int,
        caused_by: str,
        held: Sequence[HeldForReview],
        parent_task_id: str = "",
    ) -> ReviewManifest:
        """The manifest of a task raised for ``held``."""
        return cls(
            task_id=task_id,
            study_instance_uid=study_instance_uid,
            study_revision=study_revision,
            caused_by=caused_by,
            instances=tuple(
                ManifestInstance(original=one.original, proposed_boxes=one.proposed_boxes)
                for one in held
            ),
            parent_task_id=parent_task_id,
        )

    def instance(self, original_sha256: str) -> ManifestInstance | None:
        """The held instance whose original blob hashes to ``original_sha256``, if any."""
        for one in self.instances:
            if one.original_sha256 == original_sha256:
                return one
        return None

    def to_json(self) -> bytes:
        """The manifest as UTF-8 JSON (keys sorted: the same manifest stores as the same blob)."""
        document = {
            "schema": MANIFEST_SCHEMA,
            "task_id": self.task_id,
            "parent_task_id": self.parent_task_id,
            "study_instance_uid": self.study_instance_uid,
            "study_revision": self.study_revision,
            "caused_by": self.caused_by,
            "instances": [
                {
                    "original": json_format.MessageToDict(one.original),
                    "proposed_boxes": [
                        {"frame": frame, "x": b.x, "y": b.y, "width": b.width, "height": b.height}
                        for frame, found in sorted(one.proposed_boxes.items())
                        for b in found
                    ],
                }
                for one in self.instances
            ],
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> ReviewManifest:
        """Read a manifest; ValueError (no values quoted) when it is not one of this schema."""
        try:
            document = json.loads(data)
            if document.get("schema") != MANIFEST_SCHEMA:
                raise ValueError(f"the manifest's schema is not {MANIFEST_SCHEMA}")
            instances = []
            for entry in document["instances"]:
                boxes: dict[int, list[Box]] = {}
                for b in entry["proposed_boxes"]:
                    boxes.setdefault(int(b["frame"]), []).append(
                        Box(int(b["x"]), int(b["y"]), int(b["width"]), int(b["height"]))
                    )
                original = json_format.ParseDict(entry["original"], common_pb2.InstanceRef())
                instances.append(
                    ManifestInstance(
                        original=original,
                        proposed_boxes={frame: tuple(found) for frame, found in boxes.items()},
                    )
                )
            return cls(
                task_id=str(document["task_id"]),
                parent_task_id=str(document.get("parent_task_id", "")),
                study_instance_uid=str(document["study_instance_uid"]),
                study_revision=int(document["study_revision"]),
                caused_by=str(document["caused_by"]),
                instances=tuple(instances),
            )
        except (KeyError, TypeError, AttributeError, json_format.ParseError) as exc:
            raise ValueError(f"the review manifest is malformed ({type(exc).__name__})") from None
        except json.JSONDecodeError:
            raise ValueError("the review manifest is not JSON") from None
