"""The deid service edge: ``study.received`` in, de-identified instances and results out.

For each ``StudyReceived`` event (a claim check: each ``InstanceRef`` points at a blob in the PHI
store) the handler:

1. fetches each instance from the PHI store, verified against its ref; a blob that is missing or
   fails its hash is a REJECTED instance, not a failed handler;
2. de-identifies it in a worker thread (:func:`~radstream.deid.pipeline.deidentify_instance`);
3. puts RELEASED bytes into the release store; puts HELD candidates into the PHI store as the
   review payload (originals stay where they are, in the PHI store);
4. stores the study's audit record and, separately, its re-identification record in the PHI
   store;
5. publishes a ``ReviewTask`` when anything was held, then ``DeidCompleted`` with one result per
   instance, both caused by the input event (so a redelivery republishes the same event ids).
   The task carries per held instance its findings, risk and a preview PNG (PHI store); its
   manifest (originals and proposed boxes) goes to the PHI store and the task index
   (:mod:`radstream.deid.review_store`), so its decision can be acted on after any restart.

For each ``ReviewDecision`` on a DEID task (``review.decision``) the handler looks the task up,
and for APPROVE or AMEND re-runs the fail-closed pipeline on each held original with the
reviewer's boxes (else the proposed ones), releasing what verifies and holding again what
still reads PHI (a new task); REJECT or UNSPECIFIED releases nothing. Either way it stores an
audit record and publishes ``DeidCompleted`` for the task's instances. The first decision on a
task is its decision (:mod:`radstream.deid.review_decisions`); a decision for a task deid never
raised is dead-lettered.

A blob store that is away raises a transient error: the event is retried, and every write above
is content-addressed, so a retry stores nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from faststream import FastStream
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY, CollectorRegistry

from radstream.common import topics
from radstream.common.blobstore import BlobRef, BlobStores, open_blob_stores
from radstream.common.bus import Bus, create_bus
from radstream.common.envelope import Event, derived_event_id
from radstream.common.errors import PoisonEventError, RadstreamError
from radstream.common.health import HealthServer
from radstream.common.idempotency import Claim
from radstream.common.memory_budget import MemoryBudget, OverBudgetError, memory_budget_metrics
from radstream.common.service import service_app
from radstream.common.topics import Topic
from radstream.contracts.v1 import common_pb2, deid_pb2, imaging_pb2, review_pb2
from radstream.deid.audit import Digest, SoftwareVersions
from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY, PixelPolicy
from radstream.deid.config import DEID_COPIES, DEID_PIXEL_COPIES, DeidSettings
from radstream.deid.errors import DeidConfigurationError, InvalidStudyEventError
from radstream.deid.metrics import DeidMetrics, deid_metrics
from radstream.deid.pipeline import (
    InstanceOutcome,
    InstanceStatus,
    deidentify_instance,
    rejected_unread,
)
from radstream.deid.pixels.findings import PixelDecision, PixelReport
from radstream.deid.pixels.stage import CLEAN_PIXEL_DATA_CODE, PixelStage
from radstream.deid.profile import DeidKeys, DeidProfile, TextCleaner
from radstream.deid.review_decisions import (
    APPROVED_BY_REVIEWER,
    REJECTED_BY_REVIEWER,
    REVIEWED_BOXES_LEAVE_PHI,
    DecisionPlan,
    DecisionResult,
    InstanceDecided,
    InstancePlan,
    InvalidReviewDecisionError,
    ReviewTaskNotFoundError,
    decision_audit,
    decision_label,
    decision_result,
    derived_id,
    is_for_deid,
    plan_decision,
    prior_result,
)
from radstream.deid.review_preview import render_preview
from radstream.deid.review_store import ReviewTaskIndex, open_review_index
from radstream.deid.review_tasks import HeldForReview, ReviewManifest, review_task
from radstream.dicom.errors import InvalidInstanceError, OversizedFileError
from radstream.dicom.raw_header import decoded_pixel_bytes, read_raw_instance
from radstream.dicom.reader import DEFAULT_READER_LIMITS, ReaderLimits, read_instance
from radstream.ocr.engine import Box

__all__ = ["DeidTopics", "DeidWorker", "create_app", "register_deid"]

log = logging.getLogger(__name__)

DICOM_MEDIA_TYPE = "application/dicom"
JSON_MEDIA_TYPE = "application/json"
PNG_MEDIA_TYPE = "image/png"
STUDY_AUDIT_SCHEMA = "radstream.deid.study-audit/1"
STUDY_REIDENTIFICATION_SCHEMA = "radstream.deid.study-reidentification/1"

_Codes = common_pb2.ErrorCode
# Error reasons (see radstream.deid.errors and the blob store's errors) to the wire's codes.
# The deid range has no codes for unreadable input yet, so the ingest ones that say the same
# are used; a dedicated deid code would be a proto change.
_ERROR_CODES: dict[str, common_pb2.ErrorCode] = {
    "not_dicom": _Codes.ERROR_CODE_INGEST_NOT_DICOM,
    "missing_file_meta": _Codes.ERROR_CODE_INGEST_NOT_DICOM,
    "truncated": _Codes.ERROR_CODE_INGEST_NOT_DICOM,
    "malformed_dicom": _Codes.ERROR_CODE_INGEST_NOT_DICOM,
    "file_too_large": _Codes.ERROR_CODE_INGEST_NOT_DICOM,
    "over_budget": _Codes.ERROR_CODE_INGEST_NOT_DICOM,
    "element_too_large": _Codes.ERROR_CODE_INGEST_NOT_DICOM,
    "unsupported_transfer_syntax": _Codes.ERROR_CODE_INGEST_UNSUPPORTED_TRANSFER_SYNTAX,
    "private_data_too_large": _Codes.ERROR_CODE_DEID_UNSAFE_PRIVATE_TAGS,
    "blob_not_found": _Codes.ERROR_CODE_BLOB_NOT_FOUND,
    "blob_integrity": _Codes.ERROR_CODE_BLOB_CHECKSUM_MISMATCH,
    "blob_ref_rejected": _Codes.ERROR_CODE_INVALID_EVENT,
    "zone_violation": _Codes.ERROR_CODE_INVALID_EVENT,
    "output_not_readable": _Codes.ERROR_CODE_DEID_PROFILE_ACTION_FAILED,
    "unwritable_element": _Codes.ERROR_CODE_DEID_PROFILE_ACTION_FAILED,
}
_DEFLATED = "1.2.840.10008.1.2.1.99"  # inflates to up to the file limit while it is read
_OUTCOMES = {
    InstanceStatus.RELEASED: deid_pb2.DeidCompleted.OUTCOME_RELEASED,
    InstanceStatus.HELD: deid_pb2.DeidCompleted.OUTCOME_HELD,
    InstanceStatus.REJECTED: deid_pb2.DeidCompleted.OUTCOME_REJECTED,
}


@dataclass(frozen=True, kw_only=True)
class DeidTopics:
    """The topics the handler reads and writes (tests substitute isolated copies)."""

    study_received: Topic = topics.STUDY_RECEIVED_V1
    completed: Topic = topics.DEID_COMPLETED_V1
    review: Topic = topics.REVIEW_TASK_V1
    decision: Topic = topics.REVIEW_DECISION_V1


@dataclass(frozen=True, kw_only=True)
class DeidWorker:
    """What de-identifying an instance needs: the core's inputs, the stores, the metrics.

    ``budget`` is the process's budget of bytes in flight (None: unbounded); an instance
    weighs its size times ``copies``, the copies of it the pipeline holds at once, and with the
    pixel stage its decoded frames times ``pixel_copies`` where they outweigh the file
    (:func:`instance_weight`).
    ``spool_dir`` is where blobs fetched from S3 wait on disk. ``review_index`` finds a review
    task's manifest by its id; without one, decisions are not consumed.
    """

    profile: DeidProfile
    keys: DeidKeys
    clean_text: TextCleaner
    stores: BlobStores
    metrics: DeidMetrics
    pixel_policy: PixelPolicy = DEFAULT_PIXEL_POLICY
    limits: ReaderLimits = DEFAULT_READER_LIMITS
    budget: MemoryBudget | None = None
    copies: float = DEID_COPIES
    pixel_copies: float = DEID_PIXEL_COPIES
    spool_dir: Path | None = None
    review_index: ReviewTaskIndex | None = None


@dataclass(kw_only=True)
class _StudyResult:
    """The per-instance results of one event, gathered before anything is published."""

    results: list[deid_pb2.DeidCompleted.InstanceResult] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    reidentification: list[dict[str, Any]] = field(default_factory=list)
    review_payload: list[common_pb2.BlobRef] = field(default_factory=list)
    held_reasons: dict[str, None] = field(default_factory=dict)  # ordered set
    held: list[HeldForReview] = field(default_factory=list)
    pseudonymous_study_uid: str = ""


def register_deid(
    bus: Bus, worker: DeidWorker, *, group: str = "deid", topic_set: DeidTopics | None = None
) -> Callable[[Event[imaging_pb2.StudyReceived], Claim], Any]:
    """Subscribe the deid handler to ``study.received`` on ``bus``; return the handler.

    With a review task index, the decision handler is subscribed to ``review.decision`` too,
    in a group of its own (``<group>-decisions``): a rebalance waits for every member of a
    group, and a study can keep its handler busy for minutes, which would stall decisions (and
    a decision's re-run would stall studies) if the two shared one group.
    """
    chosen = topic_set or DeidTopics()

    async def on_study_received(event: Event[imaging_pb2.StudyReceived], claim: Claim) -> None:
        await _handle(bus, worker, chosen, event)

    bus.subscribe(chosen.study_received, group=group)(on_study_received)
    index = worker.review_index
    if index is not None:

        async def on_review_decision(event: Event[review_pb2.ReviewDecision], claim: Claim) -> None:
            await _on_decision(bus, worker, index, chosen, event)

        bus.subscribe(chosen.decision, group=f"{group}-decisions")(on_review_decision)
    return on_study_received


async def _handle(
    bus: Bus, worker: DeidWorker, chosen: DeidTopics, event: Event[imaging_pb2.StudyReceived]
) -> None:
    study = event.message
    if not study.study_instance_uid:
        raise InvalidStudyEventError(
            "StudyReceived.study_instance_uid is empty; the producer must set it"
        )
    gathered = _StudyResult()
    for index, ref in enumerate(study.instances):
        await _process_instance(worker, index, ref, gathered)
    audit_ref = await _store_records(worker, event, gathered)
    review_task_id = ""
    if gathered.held:
        review_task_id = derived_event_id(event.id, "deid-review-task")
        manifest = ReviewManifest.of(
            task_id=review_task_id,
            study_instance_uid=study.study_instance_uid,
            study_revision=study.revision,
            caused_by=event.id,
            held=gathered.held,
        )
        await _raise_review_task(bus, worker, chosen, manifest, gathered, caused_by=event)
    await bus.publish(
        chosen.completed,
        _completed(
            worker,
            gathered,
            study_uid=study.study_instance_uid,
            revision=study.revision,
            audit_ref=audit_ref,
            review_task_id=review_task_id,
        ),
        caused_by=event,
    )


async def _raise_review_task(
    bus: Bus,
    worker: DeidWorker,
    chosen: DeidTopics,
    manifest: ReviewManifest,
    gathered: _StudyResult,
    *,
    caused_by: Event[Any],
    event_id: str | None = None,
) -> None:
    """Store the task's manifest and index it by task id, then publish the task.

    The index row comes before the task is published: a decision can only follow a published
    task, and then finds its manifest.
    """
    manifest_ref = await worker.stores.phi.put(manifest.to_json(), media_type=JSON_MEDIA_TYPE)
    if worker.review_index is not None:
        await worker.review_index.record_task(manifest.task_id, manifest_ref)
    await bus.publish(
        chosen.review,
        review_task(
            task_id=manifest.task_id,
            study_instance_uid=manifest.study_instance_uid,
            held=gathered.held,
            reasons=list(gathered.held_reasons),
            created_at=_now(),
        ),
        caused_by=caused_by,
        event_id=event_id,
    )


async def _process_instance(
    worker: DeidWorker,
    index: int,
    ref: common_pb2.InstanceRef,
    gathered: _StudyResult,
    *,
    reviewed_boxes: Mapping[int, Sequence[Box]] | None = None,
) -> InstanceOutcome:
    """De-identify one instance (with a reviewer's boxes, when given) and store its outputs."""
    started = time.perf_counter()
    result = deid_pb2.DeidCompleted.InstanceResult(original=ref)
    try:
        # Held from before the blob is read until its outputs are stored: concurrent large
        # instances wait here instead of adding up past the memory limit. An instance whose
        # decoded frames weigh more than its blob (compressed pixels) is let go and reserved
        # again at its full weight: nothing waits for memory while holding some.
        weight = _blob_weight(worker, ref)
        while True:
            async with _reservation(worker, weight):
                decided = await _deidentify(worker, ref, weight, reviewed_boxes=reviewed_boxes)
                if isinstance(decided, _HeavierThanReserved):
                    weight = decided.weight
                    continue
                outcome = _after_review(decided) if reviewed_boxes is not None else decided
                await _store_outputs(
                    worker, outcome, result, gathered, reviewed_boxes=reviewed_boxes
                )
                break
    except (OverBudgetError, OversizedFileError) as exc:  # never fetched: this instance only
        outcome = _unread(worker, ref, exc)
    # An instance is counted once, when it is first decided: what a reviewer's decision made of
    # it is counted by radstream_deid_review_decisions (held, then released, is one instance).
    first_decision = reviewed_boxes is None
    if first_decision:
        worker.metrics.observe(outcome.status.value, time.perf_counter() - started)
    if outcome.pixel_report is not None:
        if first_decision:
            worker.metrics.pixel_report(outcome.pixel_report)
        _set_pixel_fields(result, outcome.pixel_report)
    result.outcome = _OUTCOMES[outcome.status]
    result.reasons.extend(outcome.reasons)
    result.error_code = _error_code(outcome)
    result.min_confidence = _min_confidence(outcome)
    if outcome.ids is not None and not gathered.pseudonymous_study_uid:
        gathered.pseudonymous_study_uid = outcome.ids.study_instance_uid
    gathered.results.append(result)
    gathered.audits.append({"instance_index": index, **outcome.audit.to_dict()})
    if outcome.reid is not None:
        gathered.reidentification.append({"instance_index": index, **outcome.reid.to_dict()})
    log.info(
        "instance de-identified",
        extra={
            "status": outcome.status.value,
            "error_type": outcome.error.type if outcome.error is not None else None,
            "sha256": outcome.audit.input.sha256,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return outcome


def _set_pixel_fields(result: deid_pb2.DeidCompleted.InstanceResult, report: PixelReport) -> None:
    """What the pixel stage decided and spent, in numbers and names only (no text read)."""
    phi = sum(1 for finding in report.findings if finding.phi)
    result.pixel_decision = report.decision.value
    result.pixel_check_ms = round(report.costs.total_ms, 3)
    result.phi_boxes_filled = phi
    result.text_boxes_kept = len(report.findings) - phi
    result.pixel_risk = 1.0 if math.isnan(report.risk) else report.risk


def _after_review(outcome: InstanceOutcome) -> InstanceOutcome:
    """The outcome of a reviewed re-run, its reasons saying that a review decided it."""
    if outcome.status is InstanceStatus.HELD and REVIEWED_BOXES_LEAVE_PHI not in outcome.reasons:
        return replace(outcome, reasons=(REVIEWED_BOXES_LEAVE_PHI, *outcome.reasons))
    if outcome.status is InstanceStatus.RELEASED:
        return replace(outcome, reasons=(APPROVED_BY_REVIEWER, *outcome.reasons))
    return outcome


async def _store_outputs(
    worker: DeidWorker,
    outcome: InstanceOutcome,
    result: deid_pb2.DeidCompleted.InstanceResult,
    gathered: _StudyResult,
    *,
    reviewed_boxes: Mapping[int, Sequence[Box]] | None = None,
) -> None:
    """Put a released output into the release store, a held candidate into the PHI store."""
    if outcome.status is InstanceStatus.RELEASED and outcome.output is not None:
        released = await worker.stores.release.put(outcome.output, media_type=DICOM_MEDIA_TYPE)
        ids = outcome.ids
        if ids is not None:
            result.released.CopyFrom(
                common_pb2.InstanceRef(
                    study_instance_uid=ids.study_instance_uid,
                    series_instance_uid=ids.series_instance_uid,
                    sop_instance_uid=ids.sop_instance_uid,
                    sop_class_uid=ids.sop_class_uid,
                    transfer_syntax_uid=ids.transfer_syntax_uid,
                    modality=ids.modality,
                    blob=released.to_proto(),
                )
            )
    elif outcome.status is InstanceStatus.HELD and outcome.candidate is not None:
        # The candidate may still hold PHI (that is why it is held): PHI store only.
        candidate = await worker.stores.phi.put(outcome.candidate, media_type=DICOM_MEDIA_TYPE)
        gathered.review_payload.append(candidate.to_proto())
        gathered.held_reasons.update(dict.fromkeys(outcome.reasons))
        report = outcome.pixel_report
        extra = tuple(
            (frame, box) for frame, found in (reviewed_boxes or {}).items() for box in found
        )
        preview = await _preview(worker, result.original, report, extra)
        gathered.held.append(
            HeldForReview(
                original=result.original,
                reasons=outcome.reasons,
                report=report,
                candidate=candidate.to_proto(),
                preview=preview,
                extra_boxes=extra,
            )
        )


async def _preview(
    worker: DeidWorker,
    original: common_pb2.InstanceRef,
    report: PixelReport | None,
    extra: tuple[tuple[int, Box], ...],
) -> common_pb2.BlobRef | None:
    """Render the held original with its boxes into the PHI store; None when it cannot be.

    A preview helps the reviewer but decides nothing: pixels that do not decode leave the task
    without one (its findings and the candidate still go), and the reason is logged by type.
    """
    try:
        blob_ref = BlobRef.from_proto(original.blob, default_media_type=DICOM_MEDIA_TYPE)
        async with worker.stores.phi.open_file(blob_ref, spool_dir=worker.spool_dir) as file:
            png = await asyncio.to_thread(_render, worker, file, report, extra)
    except (PoisonEventError, OversizedFileError) as exc:
        log.warning("no review preview", extra={"error_type": type(exc).__name__})
        return None
    except Exception as exc:  # a decoder's failure: its text may quote the file, keep the type
        log.warning("no review preview", extra={"error_type": type(exc).__name__})
        return None
    stored = await worker.stores.phi.put(png, media_type=PNG_MEDIA_TYPE)
    return stored.to_proto()


def _render(
    worker: DeidWorker,
    file: BinaryIO,
    report: PixelReport | None,
    extra: tuple[tuple[int, Box], ...],
) -> bytes:
    dataset = read_instance(file.read(), limits=worker.limits)
    findings = report.findings if report is not None else ()
    return render_preview(dataset, findings, boxes=[(frame, box, True) for frame, box in extra])


def _blob_weight(worker: DeidWorker, ref: common_pb2.InstanceRef) -> int:
    """The instance's weight as far as its blob tells, refusing what the file limit refuses.

    The size comes from the ref, which the store verifies the blob against before anything
    is handed out, so a blob larger than the limit is never read at all. A deflated data set
    inflates while it is read, up to the file limit, so it weighs as much as the limit allows.
    """
    size = max(ref.blob.size, 0)
    if size > worker.limits.max_file_bytes:
        if worker.budget is not None:
            worker.budget.count_refusal("too_large")
        raise OversizedFileError(
            f"the blob holds {size} bytes, more than the limit of "
            f"{worker.limits.max_file_bytes}; raise RADSTREAM_DEID_MAX_FILE_BYTES (the memory "
            "budget permitting) if such files are expected"
        )
    if ref.transfer_syntax_uid == _DEFLATED:
        size = max(size, worker.limits.max_file_bytes)
    return math.ceil(size * worker.copies)


def _reservation(worker: DeidWorker, weight: int) -> contextlib.AbstractAsyncContextManager[None]:
    """Hold ``weight`` bytes of the memory budget (nothing to hold without a budget).

    Raises
    ------
    OverBudgetError
        ``weight`` is more than the whole budget: the instance can never be handled here.
    """
    if worker.budget is None:
        return contextlib.nullcontext()
    return worker.budget.reserve(weight)


@dataclass(frozen=True)
class _HeavierThanReserved:
    """The instance, read, weighs more than was reserved for it: ``weight`` bytes."""

    weight: int


def instance_weight(worker: DeidWorker, data: bytes) -> int:
    """Bytes the pipeline holds at its peak for ``data``: its copies, and its decoded frames.

    ``copies`` of the file (input, pydicom's data set, output, ...; with the pixel stage the
    service's copies include native frames redacted, as the stage reads native pixels in
    place: ``DEID_STAGE_COPIES``); with the pixel stage, compressed frames also weigh
    ``pixel_copies`` times their decoded size (a JPEG cine decodes to twenty times its bytes,
    and colour conversion works in floating point). Read from the header by radstream's codec
    without decoding anything; a file it cannot read weighs its copies (the pipeline refuses
    it without decoding either).
    """
    weight = len(data) * worker.copies
    if not isinstance(worker.pixel_policy, PixelStage):
        return math.ceil(weight)
    try:
        instance = read_raw_instance(data, worker.limits)
    except InvalidInstanceError:
        return math.ceil(weight)
    if not instance.layout.pixel_data_encapsulated:
        return math.ceil(weight)
    return math.ceil(weight + decoded_pixel_bytes(instance) * worker.pixel_copies)


def _unread(
    worker: DeidWorker, ref: common_pb2.InstanceRef, exc: RadstreamError
) -> InstanceOutcome:
    digest = Digest(sha256=ref.blob.sha256, size=max(ref.blob.size, 0))
    return rejected_unread(digest, exc, profile=worker.profile, pixel_policy=worker.pixel_policy)


async def _deidentify(
    worker: DeidWorker,
    ref: common_pb2.InstanceRef,
    reserved: float,
    *,
    reviewed_boxes: Mapping[int, Sequence[Box]] | None = None,
) -> InstanceOutcome | _HeavierThanReserved:
    """Fetch and de-identify one instance; an unfetchable blob is a REJECTED outcome.

    The blob comes as a verified file (the filesystem store's own, or S3's download in the
    spool directory) and is read into memory once, inside the instance's reservation: no
    transient copies from the download or the verification on top of the pipeline's own.
    An instance heavier than ``reserved`` is not processed (see :func:`instance_weight`).
    """
    if worker.budget is None:
        reserved = math.inf
    try:
        blob_ref = BlobRef.from_proto(ref.blob, default_media_type=DICOM_MEDIA_TYPE)
        async with worker.stores.phi.open_file(blob_ref, spool_dir=worker.spool_dir) as file:
            return await asyncio.to_thread(_deidentify_file, worker, file, reviewed_boxes, reserved)
    except PoisonEventError as exc:  # missing, damaged or foreign blob: this instance only
        return _unread(worker, ref, exc)


def _deidentify_file(
    worker: DeidWorker,
    file: BinaryIO,
    reviewed_boxes: Mapping[int, Sequence[Box]] | None = None,
    reserved: float = math.inf,
) -> InstanceOutcome | _HeavierThanReserved:
    """De-identify the instance in ``file`` (runs in a worker thread).

    Read as ``bytes``, not mapped: pydicom keeps the buffer it parsed, and parsing a mapped
    file would copy all of it into that buffer, while ``bytes`` are shared.
    """
    data = file.read()
    if reserved != math.inf and (weight := instance_weight(worker, data)) > reserved:
        return _HeavierThanReserved(weight)
    return deidentify_instance(
        data,
        profile=worker.profile,
        keys=worker.keys,
        clean_text=worker.clean_text,
        pixel_policy=worker.pixel_policy,
        limits=worker.limits,
        reviewed_boxes=reviewed_boxes,
    )


async def _on_decision(
    bus: Bus,
    worker: DeidWorker,
    index: ReviewTaskIndex,
    chosen: DeidTopics,
    event: Event[review_pb2.ReviewDecision],
) -> None:
    """Act on a reviewer's decision about a task deid raised (see the module docstring)."""
    decision = event.message
    if not is_for_deid(decision):
        return  # a decision on a report or a prediction: another service's
    label = decision_label(decision.decision)
    entry = await index.find(decision.task_id) if decision.task_id else None
    if entry is None:
        worker.metrics.review_decision(label, DecisionResult.UNKNOWN_TASK.value)
        raise ReviewTaskNotFoundError(
            "ReviewDecision.task_id names no review task that deid raised "
            "(ERROR_CODE_REVIEW_TASK_NOT_FOUND); nothing was released, and the decision is "
            "kept in the dead-letter topic"
        )
    prior = prior_result(entry, label)
    if prior is not None:
        worker.metrics.review_decision(label, prior.value)
        log.info("review decision not acted on again", extra={"result": prior.value})
        return
    try:
        manifest = ReviewManifest.from_json(await worker.stores.phi.get(entry.manifest))
        plan = plan_decision(decision, manifest)
    except (InvalidReviewDecisionError, ValueError) as exc:
        worker.metrics.review_decision(label, DecisionResult.INVALID.value)
        if isinstance(exc, InvalidReviewDecisionError):
            raise
        raise InvalidReviewDecisionError(f"the review task's manifest: {exc}") from None
    if plan.release and not isinstance(worker.pixel_policy, PixelStage):
        raise DeidConfigurationError(
            "an approved review task is redacted with the reviewer's boxes by the pixel stage, "
            "and this deid runs without one; configure it (RADSTREAM_DEID_OCR_ENGINE)"
        )
    gathered = _StudyResult()
    decided = [await _decide_instance(worker, plan, one, gathered) for one in plan.instances]
    held_again = ""
    if gathered.held:
        held_again = derived_id(plan.task_id, label, "deid-review-task")
        again = ReviewManifest.of(
            task_id=held_again,
            study_instance_uid=manifest.study_instance_uid,
            study_revision=manifest.study_revision,
            caused_by=event.id,
            held=gathered.held,
            parent_task_id=plan.task_id,
        )
        await _raise_review_task(
            bus,
            worker,
            chosen,
            again,
            gathered,
            caused_by=event,
            event_id=derived_id(plan.task_id, label, chosen.review.name),
        )
    result = decision_result(plan, [one.status for one in decided])
    audit = decision_audit(
        decision=decision,
        plan=plan,
        event_id=event.id,
        result=result,
        instances=decided,
        held_again_task_id=held_again,
    )
    audit_ref = await worker.stores.phi.put(_json(audit), media_type=JSON_MEDIA_TYPE)
    await bus.publish(
        chosen.completed,
        _completed(
            worker,
            gathered,
            study_uid=manifest.study_instance_uid,
            revision=manifest.study_revision,
            audit_ref=audit_ref,
            review_task_id=held_again,
        ),
        caused_by=event,
        event_id=derived_id(plan.task_id, label, chosen.completed.name),
    )
    # Last: a crash before it acts on the decision again, and every write above is
    # content-addressed or carries a derived id, so nothing is released twice.
    await index.record_decision(plan.task_id, label, event.id)
    worker.metrics.review_decision(label, result.value)
    log.info("review decision acted on", extra={"decision": label, "result": result.value})


async def _decide_instance(
    worker: DeidWorker, plan: DecisionPlan, one: InstancePlan, gathered: _StudyResult
) -> InstanceDecided:
    """Redact and release (or hold again) one held original, or record its rejection."""
    if not plan.release:
        gathered.results.append(
            deid_pb2.DeidCompleted.InstanceResult(
                original=one.original,
                outcome=deid_pb2.DeidCompleted.OUTCOME_REJECTED,
                reasons=[REJECTED_BY_REVIEWER],
            )
        )
        return InstanceDecided(
            plan=one, status=InstanceStatus.REJECTED, reasons=(REJECTED_BY_REVIEWER,)
        )
    outcome = await _process_instance(
        worker, len(gathered.results), one.original, gathered, reviewed_boxes=one.boxes
    )
    output = outcome.audit.output
    return InstanceDecided(
        plan=one,
        status=outcome.status,
        reasons=outcome.reasons,
        output_sha256=output.sha256 if output is not None else None,
        pipeline_audit=outcome.audit.to_dict(),
    )


async def _store_records(
    worker: DeidWorker, event: Event[imaging_pb2.StudyReceived], gathered: _StudyResult
) -> BlobRef:
    """Store the re-identification record, then the audit record pointing at it (PHI store)."""
    reid_ref: BlobRef | None = None
    if gathered.reidentification:
        reid_ref = await worker.stores.phi.put(
            _json(
                {
                    "schema": STUDY_REIDENTIFICATION_SCHEMA,
                    "event_id": event.id,
                    "study_instance_uid": event.message.study_instance_uid,
                    "instances": gathered.reidentification,
                }
            ),
            media_type=JSON_MEDIA_TYPE,
        )
    return await worker.stores.phi.put(
        _json(
            {
                "schema": STUDY_AUDIT_SCHEMA,
                "event_id": event.id,
                "study_revision": event.message.revision,
                "instances": gathered.audits,
                "reidentification_record": (
                    {"uri": reid_ref.uri, "sha256": reid_ref.sha256, "size": reid_ref.size}
                    if reid_ref is not None
                    else None
                ),
            }
        ),
        media_type=JSON_MEDIA_TYPE,
    )


def _completed(
    worker: DeidWorker,
    gathered: _StudyResult,
    *,
    study_uid: str,
    revision: int,
    audit_ref: BlobRef,
    review_task_id: str,
) -> deid_pb2.DeidCompleted:
    """The study's result event, after an event or after a reviewer's decision."""
    return deid_pb2.DeidCompleted(
        study_instance_uid=study_uid,
        study_revision=revision,
        pseudonymous_study_instance_uid=gathered.pseudonymous_study_uid,
        results=gathered.results,
        profile=worker.profile.name,
        options=_option_codes(worker),
        software_version=SoftwareVersions().radstream,
        audit_record=audit_ref.to_proto(),
        burned_in_text_model=_text_model(worker),
        review_task_id=review_task_id,
        completed_at=_now(),
    )


def _option_codes(worker: DeidWorker) -> list[str]:
    """The profile's option codes, with Clean Pixel Data (113101) when the pixel stage runs."""
    codes = {option.code for option in worker.profile.options}
    if isinstance(worker.pixel_policy, PixelStage):
        codes.add(CLEAN_PIXEL_DATA_CODE)
    return sorted(codes)


# Where each engine's models run (ModelRef.backend): KServe v2 means Triton in production.
_BACKENDS = {"rapidocr": "onnxruntime", "kserve": "triton", "easyocr": "torch"}


def _text_model(worker: DeidWorker) -> common_pb2.ModelRef | None:
    """The OCR engine that checked burned-in text, when the pixel stage runs."""
    if not isinstance(worker.pixel_policy, PixelStage):
        return None
    info = worker.pixel_policy.engine.info
    return common_pb2.ModelRef(
        name=f"{info.name}:{info.models}" if info.models else info.name,
        version=info.version,
        backend=_BACKENDS.get(info.name, info.name),
    )


def _min_confidence(outcome: InstanceOutcome) -> float:
    """The lowest recognition confidence of the text read (1 when none was read; 0 rejected)."""
    if outcome.status is InstanceStatus.REJECTED:
        return 0.0
    report = outcome.pixel_report
    if report is None or not report.risk_features.text_found:
        return 1.0
    return report.risk_features.min_recognition_confidence


def _error_code(outcome: InstanceOutcome) -> common_pb2.ErrorCode:
    if outcome.status is InstanceStatus.RELEASED:
        return _Codes.ERROR_CODE_UNSPECIFIED
    if outcome.status is InstanceStatus.HELD:
        held_for_pixels = (
            outcome.pixel_report is not None and outcome.pixel_report.decision is PixelDecision.HELD
        )
        if held_for_pixels or (
            outcome.pixel_assessment is not None and outcome.pixel_assessment.hold
        ):
            return _Codes.ERROR_CODE_DEID_LOW_CONFIDENCE
        return _Codes.ERROR_CODE_DEID_PROFILE_ACTION_FAILED
    error = outcome.error
    if error is None:
        return _Codes.ERROR_CODE_INTERNAL
    if error.reason == "internal" and error.step == "apply_profile":
        return _Codes.ERROR_CODE_DEID_PROFILE_ACTION_FAILED
    return _ERROR_CODES.get(error.reason, _Codes.ERROR_CODE_INTERNAL)


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def create_app(
    settings: DeidSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    pixel_policy: PixelPolicy | None = None,
) -> FastStream:
    """Build the deid service: validate settings, load the text cleaner and OCR, subscribe.

    The pixel stage is the settings' (``RADSTREAM_DEID_OCR_ENGINE``, ``_LEAK_RATE``, ...): every
    instance with pixel data is checked for text, and an approved review task can be redacted.
    Its engine loads here, once, so a missing extra or model stops the start instead of the
    first study. ``pixel_policy`` replaces it (tests; a header-only policy releases burned-in
    text the header does not declare, so production never passes one).
    """
    from radstream.deid.clean import build_text_cleaner  # noqa: PLC0415 -- loads spaCy

    settings = settings if settings is not None else DeidSettings()
    registry = registry if registry is not None else REGISTRY
    plan = settings.memory_plan()
    keys = settings.keys()  # fails at startup without a key, before any model loads
    clean_text = build_text_cleaner()
    if pixel_policy is None:
        pixel_policy = settings.pixel_stage(clean_text)
    review_index = open_review_index(settings.delivery.idempotency_dsn)
    worker = DeidWorker(
        profile=settings.profile(),
        keys=keys,
        clean_text=clean_text,
        stores=open_blob_stores(settings.blob),
        metrics=deid_metrics(registry),
        pixel_policy=pixel_policy,
        limits=settings.reader_limits(),  # fails at startup if the budget cannot hold it
        budget=MemoryBudget(
            plan.budget_bytes, metrics=memory_budget_metrics(registry), service="deid"
        ),
        copies=plan.copies,
        spool_dir=settings.memory.spool_dir,
        # The idempotency guard's database: durable, and shared by replicas in production.
        review_index=review_index,
    )
    if isinstance(pixel_policy, PixelStage):
        threshold = pixel_policy.threshold
        log.info(
            "pixel stage: mode %s, risk threshold %.3f for leak rate %g%s",
            pixel_policy.mode.value,
            threshold.value,
            threshold.leak_rate,
            " (fail closed: everything with text is held)" if threshold.fail_closed else "",
            extra={"component": "pixel_stage", "model": pixel_policy.engine.info.name},
        )
    else:
        log.warning(
            "no pixel stage: burned-in text is judged from the header only",
            extra={"component": type(pixel_policy).__name__},
        )
    log.info(
        "memory budget",
        extra={
            "budget_bytes": plan.budget_bytes,
            "budget_source": plan.source,
            "copies": plan.copies,
            "max_file_bytes": worker.limits.max_file_bytes,
        },
    )
    bus = create_bus(settings.kafka, settings.delivery, service="deid", registry=registry)
    register_deid(bus, worker, group=settings.group_id)
    health = HealthServer.from_settings(settings.observability, registry=registry)
    health.add_check("phi-blob-store", worker.stores.phi.check)
    health.add_check("release-blob-store", worker.stores.release.check)
    health.add_check("review-task-index", review_index.check)
    app = service_app(bus, health)
    app.on_startup(review_index.open)
    app.after_shutdown(review_index.close)
    return app
