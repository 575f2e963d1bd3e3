"""Receiving one DICOM instance, whatever channel brought it: check, store, record, publish.

:class:`InstanceReceiver` is the core every DICOM channel shares (C-STORE SCP, STOW-RS, PACS
pull). For the bytes of one Part 10 file it

1. parses them strictly with the deid reader (in a worker thread: parsing is CPU work);
2. refuses SOP classes it does not accept, and data sets without the UIDs a study needs;
3. stores the bytes, as received, in the PHI blob store (the claim check);
4. publishes ``InstanceStored`` unless the SOP Instance UID was already received, then records
   the instance in the study assembly;
5. audits the receipt and returns a :class:`Receipt` whose ``dicom_status`` is the C-STORE
   status (and STOW-RS Failure Reason) to answer the sender with.

Publishing comes before recording: a crash in between leaves the instance unrecorded, the
sender got no success and re-sends, and the re-send publishes the same event id again
(:func:`instance_event_id`), which downstream guards drop. The other order would lose the
event for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal

from google.protobuf.timestamp_pb2 import Timestamp

from radstream.common.blobstore import BlobRef, BlobStore
from radstream.common.envelope import derived_event_id
from radstream.common.errors import RadstreamError
from radstream.common.memory_budget import MemoryBudget, OverBudgetError
from radstream.common.spool import SpoolFile
from radstream.contracts.v1 import common_pb2, imaging_pb2
from radstream.dicom import InvalidInstanceError, ReaderLimits, read_instance
from radstream.ingest.assembly import StudyAssembly, StudyMeta
from radstream.ingest.audit import AuditUnavailableError, ReceiptAudit, ReceiptRecord

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "CANNOT_UNDERSTAND",
    "DATA_SET_DOES_NOT_MATCH_SOP_CLASS",
    "DICOM_MEDIA_TYPE",
    "OUT_OF_RESOURCES",
    "SOP_CLASS_NOT_SUPPORTED",
    "SUCCESS",
    "Channel",
    "Clock",
    "InstanceReceiver",
    "Receipt",
    "Sender",
    "instance_event_id",
    "storage_sop_classes",
    "utc_now",
]

log = logging.getLogger(__name__)

Channel = Literal["dicom", "stow", "pacs-pull", "mllp", "fhir", "http"]
"""Where an object came in; ``http`` is a refusal before any endpoint ran (a missing scope)."""
Clock = Callable[[], datetime]

DICOM_MEDIA_TYPE: Final = "application/dicom"

# C-STORE response statuses (PS3.4 Table B.2-1); STOW-RS reuses them as Failure Reason (0008,1197).
SUCCESS: Final = 0x0000
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122  # "Refused: SOP Class not supported"
OUT_OF_RESOURCES: Final = 0xA700  # "Refused: Out of resources" -- the sender should retry
DATA_SET_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900
CANNOT_UNDERSTAND: Final = 0xC000  # 0xC000-0xCFFF; the low bits say which check failed

# Failure reason -> status. Parse failures get their own code inside the "cannot understand"
# range, so a modality's log tells the operator which check failed without ingest's logs.
_STATUS_OF: Final[dict[str, int]] = {
    "not_dicom": 0xC000,
    "missing_file_meta": 0xC001,
    "truncated": 0xC002,
    "malformed_dicom": 0xC003,
    "unsupported_transfer_syntax": 0xC004,
    "invalid_instance": 0xC00F,
    "file_too_large": OUT_OF_RESOURCES,
    "over_budget": OUT_OF_RESOURCES,
    "element_too_large": OUT_OF_RESOURCES,
    "private_data_too_large": OUT_OF_RESOURCES,
    "missing_uid": DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    "sop_class_mismatch": DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    "sop_instance_mismatch": DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    "sop_class_not_supported": SOP_CLASS_NOT_SUPPORTED,
    "storage_unavailable": OUT_OF_RESOURCES,
    "publish_failed": OUT_OF_RESOURCES,
    "assembly_unavailable": OUT_OF_RESOURCES,
    "audit_unavailable": OUT_OF_RESOURCES,
}

_SOURCES: Final[dict[str, imaging_pb2.InstanceStored.Source]] = {
    "dicom": imaging_pb2.InstanceStored.SOURCE_C_STORE,
    "stow": imaging_pb2.InstanceStored.SOURCE_STOW_RS,
    "pacs-pull": imaging_pb2.InstanceStored.SOURCE_PACS_PULL,
}


def utc_now() -> datetime:
    """The current time in UTC (the default clock)."""
    return datetime.now(UTC)


def storage_sop_classes() -> frozenset[str]:
    """Every storage SOP class pynetdicom knows: what ingest accepts unless configured."""
    from pynetdicom import AllStoragePresentationContexts  # noqa: PLC0415 -- DICOM extra

    return frozenset(str(context.abstract_syntax) for context in AllStoragePresentationContexts)


@dataclass(frozen=True, kw_only=True)
class Sender:
    """Who offered an object: a system, never a person.

    ``identity`` is the calling AE title, the bearer token's subject, the client
    certificate's CN or the configured PACS node name; ``address`` is the peer's IP address.
    """

    channel: Channel
    identity: str
    address: str


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """What became of one offered instance, and the status to answer its sender with."""

    accepted: bool
    duplicate: bool  # the same bytes were received before under this SOP Instance UID
    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    failure: str | None  # a reason code (``not_dicom``, ``truncated``, ...); None if accepted
    dicom_status: int
    sha256: str = ""
    size: int = 0
    blob: BlobRef | None = None
    series_instance_uid: str | None = None
    # Other bytes were received before under this SOP Instance UID: this instance replaced
    # them (a correction), and the study gets a new revision.
    conflict: bool = False


@dataclass(frozen=True, kw_only=True)
class _Inspection:
    """What parsing learned about the bytes (no pydicom objects leave the worker thread)."""

    sha256: str
    failure: str | None = None
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    transfer_syntax_uid: str = ""
    modality: str = ""
    accession_number: str = ""
    patient_id: str = ""


def instance_event_id(message: imaging_pb2.InstanceStored) -> str:
    """The event id of ``InstanceStored``: the same for the same instance bytes, every time."""
    instance = message.instance
    return derived_event_id(
        f"ingest/instance/{instance.sop_instance_uid}", f"instance.stored/{instance.blob.sha256}"
    )


class InstanceReceiver:
    """Checks, stores, records, publishes and audits DICOM instances (see the module doc)."""

    def __init__(
        self,
        *,
        phi_store: BlobStore,
        assembly: StudyAssembly,
        publish_instance: Callable[[imaging_pb2.InstanceStored], Awaitable[None]],
        audit: ReceiptAudit,
        limits: ReaderLimits,
        accepted_sop_classes: frozenset[str] | None = None,
        clock: Clock = utc_now,
        budget: MemoryBudget | None = None,
        copies: float = 2.0,
    ) -> None:
        self._budget = budget
        self._copies = copies
        self._phi_store = phi_store
        self._assembly = assembly
        self._publish_instance = publish_instance
        self._audit = audit
        self._limits = limits
        self._accepted = (
            accepted_sop_classes if accepted_sop_classes is not None else storage_sop_classes()
        )
        self._clock = clock

    async def receive(
        self,
        data: bytes | SpoolFile,
        *,
        sender: Sender,
        declared_sop_class_uid: str | None = None,
        declared_sop_instance_uid: str | None = None,
    ) -> Receipt:
        """Receive one DICOM Part 10 file and return its receipt; never raises for bad input.

        ``declared_*`` are the UIDs the protocol named (the C-STORE request's Affected SOP
        Class/Instance UID); a data set that says otherwise is refused with 0xA900.

        The instance's weight (its size times ``copies``) is reserved in the memory ``budget``
        before it is parsed, so concurrent large instances wait for each other. A spooled
        instance is read into memory only once its reservation is granted; one over the file
        limit is refused unread, and one heavier than the whole budget (``over_budget``).
        """
        started = time.perf_counter()
        size = data.size if isinstance(data, SpoolFile) else len(data)
        if size > self._limits.max_file_bytes:
            if self._budget is not None:
                self._budget.count_refusal("too_large")
            return await self._refused_unread(data, "file_too_large", sender, started)
        try:
            async with self._reserved(size):
                if isinstance(data, SpoolFile):
                    data = await asyncio.to_thread(data.read_all)
                return await self._receive(
                    data,
                    sender=sender,
                    started=started,
                    declared_sop_class_uid=declared_sop_class_uid,
                    declared_sop_instance_uid=declared_sop_instance_uid,
                )
        except OverBudgetError:
            return await self._refused_unread(data, "over_budget", sender, started)

    def _reserved(self, size: int) -> contextlib.AbstractAsyncContextManager[None]:
        if self._budget is None:
            return contextlib.nullcontext()
        return self._budget.reserve(math.ceil(size * self._copies))

    async def _refused_unread(
        self, data: bytes | SpoolFile, failure: str, sender: Sender, started: float
    ) -> Receipt:
        """The receipt of an instance refused for its size alone, without parsing it."""
        if isinstance(data, SpoolFile):
            sha256, size = data.sha256(), data.size
        else:
            sha256, size = await asyncio.to_thread(_sha256, data), len(data)
        seen = _Inspection(sha256=sha256, failure=failure)
        receipt = Receipt(
            accepted=False,
            duplicate=False,
            sop_class_uid=None,
            sop_instance_uid=None,
            study_instance_uid=None,
            failure=failure,
            dicom_status=_STATUS_OF[failure],
            sha256=sha256,
            size=size,
        )
        return await self._audited(receipt, seen, sender, self._clock(), started)

    async def _receive(
        self,
        data: bytes,
        *,
        sender: Sender,
        started: float,
        declared_sop_class_uid: str | None,
        declared_sop_instance_uid: str | None,
    ) -> Receipt:
        received_at = self._clock()
        seen = await asyncio.to_thread(_inspect, data, self._limits)
        failure = seen.failure or _refusal(
            seen, self._accepted, declared_sop_class_uid, declared_sop_instance_uid
        )
        blob: BlobRef | None = None
        duplicate = conflict = False
        if failure is None:
            try:
                blob, duplicate, conflict = await self._keep(seen, data, sender, received_at)
            except _ReceiptFailedError as exc:
                failure = exc.reason
                log.warning(
                    "instance not kept",
                    extra={"error_code": exc.reason, "error_type": exc.cause_type},
                )
        receipt = Receipt(
            accepted=failure is None,
            duplicate=duplicate,
            sop_class_uid=seen.sop_class_uid or None,
            sop_instance_uid=seen.sop_instance_uid or None,
            study_instance_uid=seen.study_instance_uid or None,
            series_instance_uid=seen.series_instance_uid or None,
            failure=failure,
            dicom_status=SUCCESS if failure is None else _STATUS_OF.get(failure, 0xC00F),
            sha256=seen.sha256,
            size=len(data),
            blob=blob,
            conflict=conflict,
        )
        return await self._audited(receipt, seen, sender, received_at, started)

    async def _keep(
        self, seen: _Inspection, data: bytes, sender: Sender, received_at: datetime
    ) -> tuple[BlobRef, bool, bool]:
        """Store, publish and record an acceptable instance.

        Returns its blob, whether it is a duplicate (these bytes were recorded before under
        its SOP Instance UID) and whether it is a conflict (other bytes were: it replaces them).
        """
        try:
            blob = await self._phi_store.put(data, media_type=DICOM_MEDIA_TYPE)
        except RadstreamError as exc:
            raise _ReceiptFailedError("storage_unavailable", exc) from exc
        ref = _instance_ref(seen, blob)
        try:
            recorded = await self._assembly.recorded_blob(seen.sop_instance_uid)
        except RadstreamError as exc:
            raise _ReceiptFailedError("assembly_unavailable", exc) from exc
        if recorded is not None and recorded.sha256 == blob.sha256:
            return blob, True, False
        message = _instance_stored(ref, sender, received_at)
        if recorded is not None:
            message.replaces.CopyFrom(recorded)
        try:
            await self._publish_instance(message)
        except Exception as exc:  # whatever the broker client raises, the sender must retry
            raise _ReceiptFailedError("publish_failed", exc) from exc
        meta = StudyMeta(
            accession_number=seen.accession_number,
            patient_id=seen.patient_id,
            received_at=received_at,
        )
        try:
            if recorded is not None:
                await self._assembly.replace(ref, study_meta=meta)
                log.warning(
                    "instance replaced under a known SOP Instance UID",
                    extra={"sha256": blob.sha256, "replaced_sha256": recorded.sha256},
                )
                return blob, False, True
            added = await self._assembly.add(ref, study_meta=meta)
        except RadstreamError as exc:
            raise _ReceiptFailedError("assembly_unavailable", exc) from exc
        return blob, not added, False

    async def _audited(
        self,
        receipt: Receipt,
        seen: _Inspection,
        sender: Sender,
        received_at: datetime,
        started: float,
    ) -> Receipt:
        outcome = receipt.failure or (
            "duplicate" if receipt.duplicate else "conflict" if receipt.conflict else "stored"
        )
        record = ReceiptRecord(
            sender=sender,
            outcome=outcome,
            kind=seen.sop_class_uid,
            size=receipt.size,
            sha256=receipt.sha256,
            received_at=received_at,
            blob_uri=receipt.blob.uri if receipt.blob is not None else None,
            transfer_syntax_uid=seen.transfer_syntax_uid or None,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        if not receipt.accepted:
            log.warning(
                "instance refused",
                extra={
                    "component": sender.channel,
                    "error_type": receipt.failure,
                    "status": f"0x{receipt.dicom_status:04X}",
                    "size": receipt.size,
                    "sha256": receipt.sha256,
                },
            )
        try:
            await self._audit.record(record)
        except AuditUnavailableError:
            log.exception("receipt not audited", extra={"sha256": receipt.sha256})
            if receipt.accepted:
                # An unaudited receipt is not acknowledged; the re-send is a duplicate and is
                # audited then. What was stored and published stays (idempotent).
                return _failed(receipt, "audit_unavailable")
        return receipt


class _ReceiptFailedError(Exception):
    """Internal: a dependency failed while keeping an instance (never leaves this module)."""

    def __init__(self, reason: str, cause: BaseException) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause_type = type(cause).__name__


def _failed(receipt: Receipt, reason: str) -> Receipt:
    return Receipt(
        accepted=False,
        duplicate=False,
        sop_class_uid=receipt.sop_class_uid,
        sop_instance_uid=receipt.sop_instance_uid,
        study_instance_uid=receipt.study_instance_uid,
        series_instance_uid=receipt.series_instance_uid,
        failure=reason,
        dicom_status=_STATUS_OF[reason],
        sha256=receipt.sha256,
        size=receipt.size,
        blob=receipt.blob,
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inspect(data: bytes, limits: ReaderLimits) -> _Inspection:
    """Hash and strictly parse ``data`` (runs in a worker thread)."""
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        dataset = read_instance(data, limits=limits)
    except InvalidInstanceError as exc:
        return _Inspection(sha256=sha256, failure=exc.reason)
    return _Inspection(
        sha256=sha256,
        sop_class_uid=_text(dataset, "SOPClassUID"),
        sop_instance_uid=_text(dataset, "SOPInstanceUID"),
        study_instance_uid=_text(dataset, "StudyInstanceUID"),
        series_instance_uid=_text(dataset, "SeriesInstanceUID"),
        transfer_syntax_uid=_text(dataset.file_meta, "TransferSyntaxUID"),
        modality=_text(dataset, "Modality"),
        accession_number=_text(dataset, "AccessionNumber"),
        patient_id=_text(dataset, "PatientID"),
    )


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def _refusal(
    seen: _Inspection,
    accepted: frozenset[str],
    declared_sop_class_uid: str | None,
    declared_sop_instance_uid: str | None,
) -> str | None:
    """The reason to refuse a parsed instance, or None to keep it."""
    if not (seen.study_instance_uid and seen.series_instance_uid):
        return "missing_uid"
    if declared_sop_class_uid is not None and declared_sop_class_uid != seen.sop_class_uid:
        return "sop_class_mismatch"
    if declared_sop_instance_uid is not None and (
        declared_sop_instance_uid != seen.sop_instance_uid
    ):
        return "sop_instance_mismatch"
    if seen.sop_class_uid not in accepted:
        return "sop_class_not_supported"
    return None


def _instance_ref(seen: _Inspection, blob: BlobRef) -> common_pb2.InstanceRef:
    return common_pb2.InstanceRef(
        study_instance_uid=seen.study_instance_uid,
        series_instance_uid=seen.series_instance_uid,
        sop_instance_uid=seen.sop_instance_uid,
        sop_class_uid=seen.sop_class_uid,
        transfer_syntax_uid=seen.transfer_syntax_uid,
        modality=seen.modality,
        blob=blob.to_proto(),
    )


def _instance_stored(
    ref: common_pb2.InstanceRef, sender: Sender, received_at: datetime
) -> imaging_pb2.InstanceStored:
    stamp = Timestamp()
    stamp.FromDatetime(received_at.astimezone(UTC))
    message = imaging_pb2.InstanceStored(
        instance=ref,
        received_at=stamp,
        source=_SOURCES.get(sender.channel, imaging_pb2.InstanceStored.SOURCE_UNSPECIFIED),
    )
    if sender.channel == "dicom":
        message.calling_ae_title = sender.identity
    else:
        message.sender_id = sender.identity
    return message
