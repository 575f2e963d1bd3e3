"""DICOMweb for ingest: STOW-RS store (PS3.18 10.5), QIDO-style status lookups, completion.

* ``POST /dicomweb/studies`` and ``POST /dicomweb/studies/{study}`` take
  ``multipart/related; type="application/dicom"``. Each part goes to
  :meth:`~radstream.ingest.receipt.InstanceReceiver.receive` as soon as it has arrived (the body
  is read as a stream, under a size limit). The answer is the Store Instances Response Module
  (PS3.18 Annex I) as ``application/dicom+json``: ReferencedSOPSequence (0008,1199) for stored
  instances, FailedSOPSequence (0008,1198) with a FailureReason (0008,1197) for the others;
  HTTP 200 when all were stored, 202 when some failed, 409 when none was stored.
  A body that is not such a multipart is refused whole: 415 for another media type, 400 for
  broken framing, 413 when it is too large.
* ``GET /dicomweb/studies``, ``.../{study}/series`` and ``.../{study}/instances`` answer what
  ingest has received, from the study assembly: UIDs, counts, SOP classes, modalities and
  the assembly status, in private attributes of creator ``RADSTREAM INGEST`` (status
  ``pending``/``complete``/``amended``, revision, first and last receipt). Never patient data.
* ``POST /ingest/studies/{study}/complete`` completes a study now (no quiet period).

Failure reasons follow PS3.18 Table I.2-2 where it has one (0xC122 for an unsupported
transfer syntax); an instance of another study than the URL names gets 0xC409, as dcm4chee
answers it, since the standard leaves that code to the implementation.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime, and
# they name a dependency alias local to the router factory.
import asyncio
import hashlib
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from radstream.contracts.v1 import common_pb2
from radstream.ingest.assembly import StudyAssembly, StudyStatus
from radstream.ingest.audit import AuditUnavailableError, ReceiptAudit, ReceiptRecord
from radstream.ingest.http_auth import HttpAuthenticator, Principal
from radstream.ingest.multipart import (
    BodyTooLargeError,
    MultipartError,
    MultipartReader,
    Part,
    parse_media_type,
    read_parts,
)
from radstream.ingest.receipt import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    InstanceReceiver,
    Receipt,
    Sender,
    utc_now,
)
from radstream.ingest.rejections import Rejections

__all__ = ["DICOM_JSON", "StowEndpoints", "stow_router"]

log = logging.getLogger(__name__)

DICOM_JSON: Final = "application/dicom+json"
TRANSFER_SYNTAX_NOT_SUPPORTED: Final = 0xC122  # PS3.18 Table I.2-2
STUDY_UID_MISMATCH: Final = 0xC409  # implementation-specific, as dcm4chee-arc
_PRIVATE_CREATOR: Final = "RADSTREAM INGEST"

# DICOM JSON tags (PS3.18 Annex F).
_RETRIEVE_URL, _FAILED_SOP_SEQ, _REFERENCED_SOP_SEQ = "00081190", "00081198", "00081199"
_FAILURE_REASON, _REF_SOP_CLASS, _REF_SOP_INSTANCE = "00081197", "00081150", "00081155"
_SOP_CLASS, _SOP_INSTANCE, _MODALITY = "00080016", "00080018", "00080060"
_STUDY_UID, _SERIES_UID, _MODALITIES_IN_STUDY = "0020000D", "0020000E", "00080061"
_STUDY_SERIES, _STUDY_INSTANCES, _SERIES_INSTANCES = "00201206", "00201208", "00201209"
_AVAILABLE_TS = "00083002"


@dataclass(frozen=True, kw_only=True)
class StowEndpoints:
    """What the DICOMweb routes need.

    ``complete_study`` is the explicit assembly trigger (the assembler's ``complete``, which
    also wakes it). ``max_part_bytes`` bounds one instance; ``max_request_bytes`` the body;
    ``max_parts`` the instances of one request.
    """

    receiver: InstanceReceiver
    assembly: StudyAssembly
    complete_study: Callable[[str], Awaitable[bool]]
    audit: ReceiptAudit
    rejections: Rejections
    max_request_bytes: int
    max_part_bytes: int
    # Where parts beyond 1 MiB wait on disk while they arrive (None: in memory).
    spool_dir: Path | None = None
    max_parts: int = 1000


def stow_router(endpoints: StowEndpoints, authenticate: HttpAuthenticator) -> APIRouter:
    """The DICOMweb and completion routes, every one behind ``authenticate`` and its scope.

    ``stow`` stores, ``query`` looks up (it lists study UIDs), ``complete`` triggers completion.
    """
    router = APIRouter()
    caller = Annotated[Principal, Depends(authenticate.requiring("stow"))]
    querying = [Depends(authenticate.requiring("query"))]

    @router.post("/dicomweb/studies")
    async def store_instances(request: Request, principal: caller) -> Response:
        return await _store(endpoints, request, principal, expected_study=None)

    @router.post("/dicomweb/studies/{study}")
    async def store_study_instances(request: Request, study: str, principal: caller) -> Response:
        return await _store(endpoints, request, principal, expected_study=study)

    @router.get("/dicomweb/studies", dependencies=querying)
    async def search_studies(
        study_uids: Annotated[list[str] | None, Query(alias="StudyInstanceUID")] = None,
        accession: Annotated[str | None, Query(alias="AccessionNumber")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        uids = [uid for value in study_uids or [] for uid in value.split(",") if uid]
        studies = await _matching_studies(
            endpoints.assembly, uids, accession, limit=limit, offset=offset
        )
        return _dicom_json(200, [await _study_json(endpoints.assembly, s) for s in studies])

    @router.get("/dicomweb/studies/{study}/series", dependencies=querying)
    async def search_series(study: str) -> Response:
        instances = await endpoints.assembly.instances(study)
        return _dicom_json(200, _series_json(study, instances)) if instances else _not_found()

    @router.get("/dicomweb/studies/{study}/instances", dependencies=querying)
    async def search_instances(study: str) -> Response:
        instances = await endpoints.assembly.instances(study)
        return _dicom_json(200, _instances_json(study, instances)) if instances else _not_found()

    @router.post(
        "/ingest/studies/{study}/complete",
        dependencies=[Depends(authenticate.requiring("complete"))],
    )
    async def complete_study(study: str) -> Response:
        if await endpoints.assembly.status(study) is None:
            return _not_found()
        requested = await endpoints.complete_study(study)
        body = {"study_instance_uid": study, "completion": "requested" if requested else "none"}
        # 202: publishing follows on the assembler's loop; 200: nothing was pending.
        return JSONResponse(body, status_code=202 if requested else 200)

    return router


async def _store(
    endpoints: StowEndpoints, request: Request, principal: Principal, *, expected_study: str | None
) -> Response:
    sender = Sender(channel="stow", identity=principal.subject, address=principal.address)
    media = parse_media_type(request.headers.get("content-type"))
    if media.essence != "multipart/related" or media.parameter("type").lower() not in (
        "application/dicom",
        "",
    ):
        return _refuse(endpoints, 415, "unsupported_media_type")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > endpoints.max_request_bytes:
        return _refuse(endpoints, 413, "body_too_large")
    try:
        reader = MultipartReader(
            media.parameter("boundary"),
            max_part_bytes=endpoints.max_part_bytes,
            spool_dir=endpoints.spool_dir,
        )
    except MultipartError as exc:
        return _refuse(endpoints, 400, exc.reason)
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    try:
        parts = read_parts(request.stream(), reader, max_body_bytes=endpoints.max_request_bytes)
        async for part in _at_most(parts, endpoints.max_parts):
            success, item = await _store_part(endpoints, part, sender, expected_study)
            (stored if success else failed).append(item)
    except (BodyTooLargeError, _TooManyPartsError) as exc:
        # What came before is stored; a re-send in smaller requests makes it duplicates.
        return _refuse(endpoints, 413, exc.reason)
    except MultipartError as exc:
        if not reader.parts_read:
            return _refuse(endpoints, 400, exc.reason)
        # Parts before the break are stored already; the broken rest is one failure.
        endpoints.rejections.count("stow", exc.reason, status="partial")
        failed.append({_FAILURE_REASON: _us(CANNOT_UNDERSTAND)})
    body: dict[str, Any] = {}
    if stored:
        body[_REFERENCED_SOP_SEQ] = {"vr": "SQ", "Value": stored}
    if failed:
        body[_FAILED_SOP_SEQ] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else (202 if stored else 409)
    return _dicom_json(status, body)


class _TooManyPartsError(MultipartError):
    """The request carries more instances than one request may."""

    def __init__(self, limit: int) -> None:
        super().__init__("too_many_parts", f"a request may carry at most {limit} instances")


async def _at_most(parts: AsyncIterator[Part], limit: int) -> AsyncIterator[Part]:
    """The parts, raising :class:`_TooManyPartsError` when a part beyond ``limit`` arrives."""
    count = 0
    async for part in parts:
        count += 1
        if count > limit:
            raise _TooManyPartsError(limit)
        yield part


async def _store_part(
    endpoints: StowEndpoints, part: Part, sender: Sender, expected_study: str | None
) -> tuple[bool, dict[str, Any]]:
    """Store one part; return whether it was stored and its response item."""
    try:
        return await _store_content(endpoints, part, sender, expected_study)
    finally:
        part.close()  # its spool file, if any


async def _store_content(
    endpoints: StowEndpoints, part: Part, sender: Sender, expected_study: str | None
) -> tuple[bool, dict[str, Any]]:
    if part.oversized:
        await _audit_refusal(endpoints, part, sender, "file_too_large", "")
        return False, _failed_item(None, None, OUT_OF_RESOURCES)
    if part.media_type.essence not in ("", "application/dicom"):
        await _audit_refusal(endpoints, part, sender, "unsupported_part_type", "")
        return False, _failed_item(None, None, CANNOT_UNDERSTAND)
    if expected_study is not None:
        uids = await asyncio.to_thread(_identifying_uids, part)
        if uids is not None and uids[0] != expected_study:
            await _audit_refusal(endpoints, part, sender, "study_uid_mismatch", uids[1])
            return False, _failed_item(uids[1], uids[2], STUDY_UID_MISMATCH)
    # A spooled part is read into memory by the receiver, once the memory budget has room.
    receipt = await endpoints.receiver.receive(part.spooled or part.data, sender=sender)
    if receipt.accepted:
        return True, _referenced_item(receipt)
    return False, _failed_item(
        receipt.sop_class_uid, receipt.sop_instance_uid, _failure_reason(receipt)
    )


def _failure_reason(receipt: Receipt) -> int:
    if receipt.failure == "unsupported_transfer_syntax":
        return TRANSFER_SYNTAX_NOT_SUPPORTED
    return receipt.dicom_status


def _identifying_uids(part: Part) -> tuple[str, str, str] | None:
    """(study, SOP class, SOP instance) UIDs read cheaply, or None if unreadable here.

    Unreadable bytes go on to the receiver, whose strict reader names the exact failure. A
    spooled part is read from its file up to the pixel data, not into memory.
    """
    from pydicom import dcmread  # noqa: PLC0415 -- the DICOM extra, loaded with the routes

    source: BinaryIO = (
        part.spooled.open_reader() if part.spooled is not None else io.BytesIO(part.data)
    )
    try:
        dataset = dcmread(
            source,
            stop_before_pixels=True,
            specific_tags=["StudyInstanceUID", "SOPClassUID", "SOPInstanceUID"],
        )
    except Exception:  # any parse failure: the receiver will say which
        return None
    finally:
        source.close()
    return (
        str(dataset.get("StudyInstanceUID", "")).strip(),
        str(dataset.get("SOPClassUID", "")).strip(),
        str(dataset.get("SOPInstanceUID", "")).strip(),
    )


async def _audit_refusal(
    endpoints: StowEndpoints, part: Part, sender: Sender, outcome: str, kind: str
) -> None:
    """Audit a part refused before it reached the receiver (counts it, too)."""
    started = time.perf_counter()
    if part.spooled is not None:
        digest = part.spooled.sha256()
    else:
        digest = hashlib.sha256(part.data).hexdigest() if part.data else ""
    log.warning(
        "STOW-RS part refused",
        extra={"component": "stow", "error_type": outcome, "size": part.size, "sha256": digest},
    )
    try:
        await endpoints.audit.record(
            ReceiptRecord(
                sender=sender,
                outcome=outcome,
                kind=kind,
                size=part.size,
                sha256=digest,
                received_at=utc_now(),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        )
    except AuditUnavailableError as exc:  # the part is refused either way
        log.warning("refused part not audited", extra={"error_type": type(exc).__name__})


def _referenced_item(receipt: Receipt) -> dict[str, Any]:
    return {
        _REF_SOP_CLASS: _ui(receipt.sop_class_uid or ""),
        _REF_SOP_INSTANCE: _ui(receipt.sop_instance_uid or ""),
        _RETRIEVE_URL: {"vr": "UR"},  # type 2: ingest serves no WADO-RS
    }


def _failed_item(sop_class: str | None, sop_instance: str | None, reason: int) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if sop_class:
        item[_REF_SOP_CLASS] = _ui(sop_class)
    if sop_instance:
        item[_REF_SOP_INSTANCE] = _ui(sop_instance)
    item[_FAILURE_REASON] = _us(reason)
    return item


async def _matching_studies(
    assembly: StudyAssembly, uids: list[str], accession: str | None, *, limit: int, offset: int
) -> list[StudyStatus]:
    if not uids:
        return await assembly.find_studies(
            accession_number=accession or None, limit=limit, offset=offset
        )
    found = [await assembly.status(uid) for uid in uids]
    matching = [
        status
        for status in found
        if status is not None and (not accession or status.accession_number == accession)
    ]
    return matching[offset : offset + limit]


def _series_json(study: str, instances: list[common_pb2.InstanceRef]) -> list[dict[str, Any]]:
    series: dict[str, list[common_pb2.InstanceRef]] = {}
    for ref in instances:
        series.setdefault(ref.series_instance_uid, []).append(ref)
    return [
        {
            _STUDY_UID: _ui(study),
            _SERIES_UID: _ui(uid),
            _MODALITY: _cs(*{ref.modality for ref in refs if ref.modality}),
            _SERIES_INSTANCES: {"vr": "IS", "Value": [len(refs)]},
        }
        for uid, refs in series.items()
    ]


def _instances_json(study: str, instances: list[common_pb2.InstanceRef]) -> list[dict[str, Any]]:
    return [
        {
            _STUDY_UID: _ui(study),
            _SERIES_UID: _ui(ref.series_instance_uid),
            _SOP_CLASS: _ui(ref.sop_class_uid),
            _SOP_INSTANCE: _ui(ref.sop_instance_uid),
            _AVAILABLE_TS: _ui(ref.transfer_syntax_uid),
        }
        for ref in instances
    ]


async def _study_json(assembly: StudyAssembly, status: StudyStatus) -> dict[str, Any]:
    instances = await assembly.instances(status.study_instance_uid)
    modalities = sorted({ref.modality for ref in instances if ref.modality})
    return {
        _STUDY_UID: _ui(status.study_instance_uid),
        _MODALITIES_IN_STUDY: _cs(*modalities),
        _STUDY_SERIES: {"vr": "IS", "Value": [len({r.series_instance_uid for r in instances})]},
        _STUDY_INSTANCES: {"vr": "IS", "Value": [status.instance_count]},
        "00090010": {"vr": "LO", "Value": [_PRIVATE_CREATOR]},
        "00091001": {"vr": "CS", "Value": [_assembly_state(status)]},
        "00091002": {"vr": "IS", "Value": [status.revision]},
        "00091003": {"vr": "DT", "Value": [_dt(status.first_received_at)]},
        "00091004": {"vr": "DT", "Value": [_dt(status.last_received_at)]},
    }


def _assembly_state(status: StudyStatus) -> str:
    if status.pending or status.published_revision is None:
        return "PENDING"
    return "AMENDED" if status.published_revision > 0 else "COMPLETE"


def _refuse(endpoints: StowEndpoints, status: int, reason: str) -> Response:
    endpoints.rejections.count("stow", reason, status=status)
    return JSONResponse({"error": reason}, status_code=status)


def _not_found() -> Response:
    return JSONResponse({"error": "no such study received"}, status_code=404)


def _dicom_json(status: int, body: object) -> Response:
    return JSONResponse(body, status_code=status, media_type=DICOM_JSON)


def _ui(uid: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [uid]} if uid else {"vr": "UI"}


def _cs(*values: str) -> dict[str, Any]:
    return {"vr": "CS", "Value": sorted(values)} if values else {"vr": "CS"}


def _us(value: int) -> dict[str, Any]:
    return {"vr": "US", "Value": [value]}


def _dt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S.%f+0000")
