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
from collections.abc import Callable
from dataclasses import dataclass, field
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
from radstream.deid.config import DEID_COPIES, DeidSettings
from radstream.deid.errors import InvalidStudyEventError
from radstream.deid.metrics import DeidMetrics, deid_metrics
from radstream.deid.pipeline import (
    InstanceOutcome,
    InstanceStatus,
    deidentify_instance,
    rejected_unread,
)
from radstream.deid.profile import DeidKeys, DeidProfile, TextCleaner
from radstream.dicom.errors import OversizedFileError
from radstream.dicom.reader import DEFAULT_READER_LIMITS, ReaderLimits

__all__ = ["DeidTopics", "DeidWorker", "create_app", "register_deid"]

log = logging.getLogger(__name__)

DICOM_MEDIA_TYPE = "application/dicom"
JSON_MEDIA_TYPE = "application/json"
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


@dataclass(frozen=True, kw_only=True)
class DeidWorker:
    """What de-identifying an instance needs: the core's inputs, the stores, the metrics.

    ``budget`` is the process's budget of bytes in flight (None: unbounded); an instance
    weighs its size times ``copies``, the copies of it the pipeline holds at once.
    ``spool_dir`` is where blobs fetched from S3 wait on disk.
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
    spool_dir: Path | None = None


@dataclass(kw_only=True)
class _StudyResult:
    """The per-instance results of one event, gathered before anything is published."""

    results: list[deid_pb2.DeidCompleted.InstanceResult] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    reidentification: list[dict[str, Any]] = field(default_factory=list)
    review_payload: list[common_pb2.BlobRef] = field(default_factory=list)
    held_reasons: dict[str, None] = field(default_factory=dict)  # ordered set
    pseudonymous_study_uid: str = ""


def register_deid(
    bus: Bus, worker: DeidWorker, *, group: str = "deid", topic_set: DeidTopics | None = None
) -> Callable[[Event[imaging_pb2.StudyReceived], Claim], Any]:
    """Subscribe the deid handler to ``study.received`` on ``bus``; return the handler."""
    chosen = topic_set or DeidTopics()

    async def on_study_received(event: Event[imaging_pb2.StudyReceived], claim: Claim) -> None:
        await _handle(bus, worker, chosen, event)

    bus.subscribe(chosen.study_received, group=group)(on_study_received)
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
    if gathered.review_payload:
        review_task_id = derived_event_id(event.id, "deid-review-task")
        await bus.publish(
            chosen.review,
            review_pb2.ReviewTask(
                task_id=review_task_id,
                kind=review_pb2.REVIEW_KIND_DEID,
                subject_ids=[study.study_instance_uid],
                reasons=list(gathered.held_reasons),
                min_confidence=0.0,  # a rule held it: no confidence that the pixels are clean
                priority=review_pb2.ReviewTask.PRIORITY_ROUTINE,
                payload=gathered.review_payload,
                created_at=_now(),
            ),
            caused_by=event,
        )
    await bus.publish(
        chosen.completed,
        deid_pb2.DeidCompleted(
            study_instance_uid=study.study_instance_uid,
            study_revision=study.revision,
            pseudonymous_study_instance_uid=gathered.pseudonymous_study_uid,
            results=gathered.results,
            profile=worker.profile.name,
            options=sorted(option.code for option in worker.profile.options),
            software_version=SoftwareVersions().radstream,
            audit_record=audit_ref.to_proto(),
            review_task_id=review_task_id,
            completed_at=_now(),
        ),
        caused_by=event,
    )


async def _process_instance(
    worker: DeidWorker, index: int, ref: common_pb2.InstanceRef, gathered: _StudyResult
) -> None:
    started = time.perf_counter()
    result = deid_pb2.DeidCompleted.InstanceResult(original=ref)
    try:
        # Held from before the blob is read until its outputs are stored: concurrent large
        # instances wait here instead of adding up past the memory limit.
        async with _reservation(worker, ref):
            outcome = await _deidentify(worker, ref)
            await _store_outputs(worker, outcome, result, gathered)
    except (OverBudgetError, OversizedFileError) as exc:  # never fetched: this instance only
        outcome = _unread(worker, ref, exc)
    worker.metrics.observe(outcome.status.value, time.perf_counter() - started)
    result.outcome = _OUTCOMES[outcome.status]
    result.reasons.extend(outcome.reasons)
    result.error_code = _error_code(outcome)
    result.min_confidence = 1.0 if outcome.status is InstanceStatus.RELEASED else 0.0
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


async def _store_outputs(
    worker: DeidWorker,
    outcome: InstanceOutcome,
    result: deid_pb2.DeidCompleted.InstanceResult,
    gathered: _StudyResult,
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


def _reservation(
    worker: DeidWorker, ref: common_pb2.InstanceRef
) -> contextlib.AbstractAsyncContextManager[None]:
    """Reserve the instance's weight in the memory budget, refusing what the limit refuses.

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
    if worker.budget is None:
        return contextlib.nullcontext()
    if ref.transfer_syntax_uid == _DEFLATED:
        size = max(size, worker.limits.max_file_bytes)
    return worker.budget.reserve(math.ceil(size * worker.copies))


def _unread(
    worker: DeidWorker, ref: common_pb2.InstanceRef, exc: RadstreamError
) -> InstanceOutcome:
    digest = Digest(sha256=ref.blob.sha256, size=max(ref.blob.size, 0))
    return rejected_unread(digest, exc, profile=worker.profile, pixel_policy=worker.pixel_policy)


async def _deidentify(worker: DeidWorker, ref: common_pb2.InstanceRef) -> InstanceOutcome:
    """Fetch and de-identify one instance; an unfetchable blob is a REJECTED outcome.

    The blob comes as a verified file (the filesystem store's own, or S3's download in the
    spool directory) and is read into memory once, inside the instance's reservation: no
    transient copies from the download or the verification on top of the pipeline's own.
    """
    try:
        blob_ref = BlobRef.from_proto(ref.blob, default_media_type=DICOM_MEDIA_TYPE)
        async with worker.stores.phi.open_file(blob_ref, spool_dir=worker.spool_dir) as file:
            return await asyncio.to_thread(_deidentify_file, worker, file)
    except PoisonEventError as exc:  # missing, damaged or foreign blob: this instance only
        return _unread(worker, ref, exc)


def _deidentify_file(worker: DeidWorker, file: BinaryIO) -> InstanceOutcome:
    """De-identify the instance in ``file`` (runs in a worker thread).

    Read as ``bytes``, not mapped: pydicom keeps the buffer it parsed, and parsing a mapped
    file would copy all of it into that buffer, while ``bytes`` are shared.
    """
    return deidentify_instance(
        file.read(),
        profile=worker.profile,
        keys=worker.keys,
        clean_text=worker.clean_text,
        pixel_policy=worker.pixel_policy,
        limits=worker.limits,
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


def _error_code(outcome: InstanceOutcome) -> common_pb2.ErrorCode:
    if outcome.status is InstanceStatus.RELEASED:
        return _Codes.ERROR_CODE_UNSPECIFIED
    if outcome.status is InstanceStatus.HELD:
        if outcome.pixel_assessment is not None and outcome.pixel_assessment.hold:
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
    pixel_policy: PixelPolicy = DEFAULT_PIXEL_POLICY,
) -> FastStream:
    """Build the deid service: validate settings, load the text cleaner, subscribe."""
    from radstream.deid.clean import build_text_cleaner  # noqa: PLC0415 -- loads spaCy

    settings = settings if settings is not None else DeidSettings()
    registry = registry if registry is not None else REGISTRY
    plan = settings.memory_plan()
    worker = DeidWorker(
        profile=settings.profile(),
        keys=settings.keys(),  # fails at startup without a key
        clean_text=build_text_cleaner(),
        stores=open_blob_stores(settings.blob),
        metrics=deid_metrics(registry),
        pixel_policy=pixel_policy,
        limits=settings.reader_limits(),  # fails at startup if the budget cannot hold it
        budget=MemoryBudget(
            plan.budget_bytes, metrics=memory_budget_metrics(registry), service="deid"
        ),
        copies=plan.copies,
        spool_dir=settings.memory.spool_dir,
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
    return service_app(bus, health)
