"""De-identify one instance, fail closed: released, held for review, or rejected.

:func:`deidentify_instance` runs the steps in order::

    read (strict) -> assess pixels -> collect PHI values -> [inspect pixels] -> apply profile
        -> [clean pixels] -> write -> re-read the written bytes -> search them for every PHI
        value of the original -> [verify pixels]

The bracketed steps run when the pixel policy is a
:class:`~radstream.deid.pixels.stage.PixelStage`: the original's pixels are checked for text
and read, PHI boxes are filled in the de-identified copy, and the written pixels are verified
by reading them again (``reviewed_boxes``: a reviewer's boxes replace the stage's proposal).

* Any exception in any step, expected or not, makes the instance REJECTED: no bytes leave --
  except a :class:`~radstream.common.errors.TransientError` (the OCR engine away): that says
  nothing about the instance, so it is raised (an OCR step's as
  :class:`~radstream.deid.errors.OcrEngineUnavailableError`), nothing is released, and the
  caller tries again (the service's delivery retries the event; the batch leaves the file).
* A pixel policy that asks to hold, a pixel stage that holds (PHI still readable, risk over
  the calibrated threshold, pixels it cannot decode), or any residual PHI value found in the
  re-read output, makes it HELD: the de-identified copy is kept as a *candidate* for the
  reviewer, never as output.
* Only when every step succeeded and nothing asked to hold is it RELEASED, with output bytes.

The outcome carries its audit record (no values) and, once the profile ran, the
re-identification record (PHI zone only). Nothing here logs or raises with a value.
"""

from __future__ import annotations

import io
import os
import re
import struct
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import NoReturn

from pydicom import dcmwrite
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.values import convert_DS_string, convert_IS_string

from radstream.common.errors import RadstreamError, TransientError
from radstream.deid.audit import AuditRecord, Digest, ReidentificationRecord
from radstream.deid.burned_in import PixelAssessment, PixelPolicy
from radstream.deid.elements import format_tag, known_vr
from radstream.deid.errors import (
    DeidError,
    OcrEngineUnavailableError,
    OutputNotReadableError,
    UnwritableElementError,
)
from radstream.deid.phi import PhiValues, collect_phi_values
from radstream.deid.pixels.findings import PixelDecision, PixelReport
from radstream.deid.pixels.stage import PixelInspection, PixelStage
from radstream.deid.profile import (
    AppliedAction,
    DeidKeys,
    DeidProfile,
    ProfileOption,
    ProfileResult,
    TextCleaner,
    apply_profile,
)
from radstream.deid.verify import ResidualPhi, find_residual_phi
from radstream.dicom.errors import InvalidInstanceError
from radstream.dicom.raw_header import RawInstance, read_instance_lazily, read_raw_instance
from radstream.dicom.reader import DEFAULT_READER_LIMITS, ReaderLimits, read_instance
from radstream.dicom.writer import encode_part10
from radstream.ocr.engine import Box

__all__ = [
    "DeidentifiedIds",
    "InstanceError",
    "InstanceOutcome",
    "InstanceStatus",
    "deidentify_instance",
    "rejected_unread",
    "residual_reason",
]


class InstanceStatus(StrEnum):
    """What became of an instance."""

    RELEASED = "released"
    HELD = "held"
    REJECTED = "rejected"


@dataclass(frozen=True, kw_only=True)
class InstanceError:
    """Why an instance was rejected; the message names tags and sizes, never values."""

    type: str  # qualified class name of the exception
    reason: str  # short machine-readable phrase, e.g. "truncated" or "internal"
    message: str
    step: str  # the pipeline step that failed, e.g. "read" or "apply_profile"


@dataclass(frozen=True, kw_only=True)
class DeidentifiedIds:
    """Identifiers of the de-identified copy (pseudonymous unless UIDs are retained)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str


@dataclass(frozen=True, kw_only=True)
class InstanceOutcome:
    """The result of de-identifying one instance.

    ``output`` is set only when RELEASED; ``candidate`` (the de-identified copy a reviewer
    looks at, which may still hold PHI) only when HELD; ``error`` only when REJECTED.
    """

    status: InstanceStatus
    output: bytes | None
    candidate: bytes | None
    reasons: tuple[str, ...]
    error: InstanceError | None
    audit: AuditRecord
    reid: ReidentificationRecord | None
    ids: DeidentifiedIds | None
    pixel_assessment: PixelAssessment | None = None
    residual_phi: tuple[ResidualPhi, ...] = ()
    pixel_report: PixelReport | None = None  # when the pixel policy is a PixelStage

    def __post_init__(self) -> None:
        released = self.status is InstanceStatus.RELEASED
        if (self.output is not None) != released:
            raise ValueError("an outcome carries output bytes if and only if it is RELEASED")
        if self.candidate is not None and self.status is not InstanceStatus.HELD:
            raise ValueError("only a HELD outcome carries a candidate for review")
        if (self.error is not None) != (self.status is InstanceStatus.REJECTED):
            raise ValueError("an outcome carries an error if and only if it is REJECTED")

    @classmethod
    def rejected(cls, error: InstanceError, audit: AuditRecord) -> InstanceOutcome:
        """A REJECTED outcome: no bytes of any kind, the error as its one reason."""
        return cls(
            status=InstanceStatus.REJECTED,
            output=None,
            candidate=None,
            reasons=(error.message,),
            error=error,
            audit=audit,
            reid=None,
            ids=None,
        )


def residual_reason(residual: ResidualPhi) -> str:
    """The hold reason for one residual PHI hit: where, which kind of value, how it matched."""
    return f"residual PHI in {residual.path} ({residual.kind}, {residual.match})"


# SHA-256 of inputs and outputs for the audit, computed off the calling thread: hashlib releases
# the GIL while it hashes, so on a second core the 0.3 ms per 0.5 MB CT slice runs beside the
# pipeline's Python steps instead of after them. Two threads: an input and an output in flight.
_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="radstream-deid-digest")


@dataclass(kw_only=True)
class _Progress:
    """What the steps produced so far, for the outcome and the audit of a failed run."""

    input_digest: Future[Digest]
    written_digest: Future[Digest] | None = None
    step: str = "read"
    original: Dataset | None = None
    result: ProfileResult | None = None
    written: bytes | None = None
    pixel_report: PixelReport | None = None


def deidentify_instance(
    data: bytes,
    *,
    profile: DeidProfile,
    keys: DeidKeys,
    clean_text: TextCleaner,
    pixel_policy: PixelPolicy,
    limits: ReaderLimits = DEFAULT_READER_LIMITS,
    reviewed_boxes: Mapping[int, Sequence[Box]] | None = None,
) -> InstanceOutcome:
    """De-identify the DICOM Part 10 ``data``; never raises for anything about the input.

    A dependency that is away is not about the input: a
    :class:`~radstream.common.errors.TransientError` is raised, nothing released.

    ``reviewed_boxes`` (frame index -> boxes, in pixels of the original) is the review's
    approve path: the pixel stage fills exactly those boxes instead of its own proposal (a box
    on frame 0 also in every frame that still shows it), skips the risk threshold because a
    person approved them, and still verifies the written pixels; if PHI is still readable the
    instance is HELD again with the reason ``reviewed_boxes_leave_phi``. It needs a
    :class:`~radstream.deid.pixels.stage.PixelStage` as ``pixel_policy``.

    Raises
    ------
    ValueError
        ``reviewed_boxes`` without a pixel stage to apply them (a caller's mistake).
    OcrEngineUnavailableError
        The OCR engine did not answer in a pixel step (another step's transient error is
        raised as it is); try again later.
    """
    if reviewed_boxes is not None and not isinstance(pixel_policy, PixelStage):
        raise ValueError("reviewed_boxes need a PixelStage as the pixel policy")
    started = datetime.now(UTC)
    run = (data, profile, keys, clean_text, pixel_policy, limits, reviewed_boxes)
    input_digest = _HASHING.submit(Digest.of, data)
    progress = _Progress(input_digest=input_digest)
    try:
        # pydicom's warnings quote values; configure_logging routes them to the log as their
        # category and place (no catch_warnings: this runs in worker threads).
        assessment, residuals = _run(progress, *run, lazily=True)
    except TransientError as exc:  # not the instance's fault: nothing released, try again
        _raise_transient(exc, progress)
    except Exception:
        # The lazy read leaves pydicom's conversion of each element to its first use; whatever
        # failed is judged by the strict reader, which converts every element up front and
        # names the one it cannot parse (the same outcome as before the lazy read existed).
        progress = _Progress(input_digest=input_digest)
        try:
            assessment, residuals = _run(progress, *run, lazily=False)
        except TransientError as exc:
            _raise_transient(exc, progress)
        except Exception as exc:  # fail closed: whatever went wrong, nothing is released
            return _rejected(exc, progress, profile, pixel_policy, started)
    report = progress.pixel_report
    pixel_held = report is not None and report.decision is PixelDecision.HELD
    reasons = (
        *assessment.reasons,
        *(residual_reason(hit) for hit in residuals),
        *(_pixel_hold_reasons(report) if pixel_held and report is not None else ()),
    )
    held = assessment.hold or bool(residuals) or pixel_held
    status = InstanceStatus.HELD if held else InstanceStatus.RELEASED
    outcome = _finished(status, reasons, progress, profile, pixel_policy, started)
    return replace(
        outcome, pixel_assessment=assessment, residual_phi=tuple(residuals), pixel_report=report
    )


def _raise_transient(exc: TransientError, progress: _Progress) -> NoReturn:
    """Raise a transient failure in ``progress.step`` on (an OCR outage by its name)."""
    if progress.step in _OCR_STEPS and not isinstance(exc, OcrEngineUnavailableError):
        raise OcrEngineUnavailableError(progress.step, type(exc).__name__) from exc
    raise exc


# The steps that call the OCR engine (through the pixel policy).
_OCR_STEPS = frozenset({"assess_pixels", "inspect_pixels", "clean_pixels", "verify_pixels"})

# The pixel report's reasons that hold an instance (the others say how the check went).
_PIXEL_HOLD_REASONS = (
    "pixel_data_not_decodable",
    "pixel_output_mismatch",
    "icon_image_left",
    "phi_still_readable",
    "pixel_verification_failed",
    "reviewed_boxes_leave_phi",
    "pixel_risk_over_threshold",
)


def _pixel_hold_reasons(report: PixelReport) -> tuple[str, ...]:
    """The machine-readable reasons a held pixel report gives, in a stable order."""
    return tuple(reason for reason in _PIXEL_HOLD_REASONS if reason in report.reasons)


def _run(  # noqa: PLR0917 -- the steps' inputs, passed through from deidentify_instance
    progress: _Progress,
    data: bytes,
    profile: DeidProfile,
    keys: DeidKeys,
    clean_text: TextCleaner,
    pixel_policy: PixelPolicy,
    limits: ReaderLimits,
    reviewed_boxes: Mapping[int, Sequence[Box]] | None,
    *,
    lazily: bool,
) -> tuple[PixelAssessment, list[ResidualPhi]]:
    """Run every step, recording progress; raise on the first failure.

    ``lazily``: read with :func:`~radstream.dicom.raw_header.read_instance_lazily` (the PHI
    values from radstream's codec, pydicom converting each element when first used); else
    with the strict reader, which converts every element first.
    """
    values: Dataset | RawInstance
    if lazily:
        original, values = read_instance_lazily(data, limits)
    else:
        original = values = read_instance(data, limits=limits)
    progress.original = original
    progress.step = "assess_pixels"
    assessment = pixel_policy.assess(original)
    progress.step = "collect_phi"
    phi = _collect_phi(values, profile)
    stage = pixel_policy if isinstance(pixel_policy, PixelStage) else None
    inspection: PixelInspection | None = None
    if stage is not None and not assessment.hold:
        progress.step = "inspect_pixels"
        inspection = stage.inspect(original, phi, reviewed_boxes=reviewed_boxes)
    progress.step = "apply_profile"
    result = apply_profile(original, profile, keys, clean_text=clean_text, phi=phi)
    progress.result = result
    if stage is not None and inspection is not None:
        progress.step = "clean_pixels"
        stage.clean(inspection, result.dataset)
    progress.step = "write"
    if lazily:
        _convert_kept(result.dataset)
    written = _encode(result.dataset)
    progress.written_digest = _HASHING.submit(Digest.of, written)
    progress.step = "verify"
    reread = _read_back(written, limits)
    residuals = find_residual_phi(
        reread,
        phi,
        allowed=(result.patient_pseudonym,),
        # Kept original UIDs often embed dates or serials on purpose; don't hold them for it.
        retained_uids=ProfileOption.RETAIN_UIDS in profile.options,
    )
    if stage is not None and inspection is not None:
        progress.step = "verify_pixels"
        progress.pixel_report = stage.verify(inspection, reread)
    progress.written = written
    return assessment, residuals


def _read_back(written: bytes, limits: ReaderLimits) -> RawInstance:
    """The output as written, read back strictly by radstream's own codec.

    The structure is walked strictly (every length, item and delimiter, as for input) and every
    value's bytes are handed to the verifier, which searches them as pydicom would read them
    (:func:`~radstream.deid.header.raw_header_values`). pydicom parses the output only where
    the pixel stage must decode what it redacted: a second full parse of every slice cost as
    much as de-identifying it.

    Raises
    ------
    OutputNotReadableError
        The output's structure is broken or it names no SOP instance.
    """
    try:
        reread = read_raw_instance(written, limits)
    except InvalidInstanceError as exc:
        raise OutputNotReadableError(
            f"the de-identified output does not read back ({type(exc).__name__}: {exc})"
        ) from exc
    missing = [name for tag, name in _SOP_IDENTITY if not reread.text(tag)]
    if missing:
        raise OutputNotReadableError(
            f"the de-identified output has no {' or '.join(missing)}, so it is not storable"
        )
    return reread


_SOP_IDENTITY = ((0x00080016, "SOPClassUID"), (0x00080018, "SOPInstanceUID"))


def rejected_unread(
    digest: Digest,
    error: RadstreamError,
    *,
    profile: DeidProfile,
    pixel_policy: PixelPolicy,
    step: str = "read",
) -> InstanceOutcome:
    """The outcome for input refused before its bytes were read (too large, or unfetchable).

    Also for input not processed at all for ``error`` in ``step`` (the batch's OCR outage):
    no bytes were written, and the audit says so.
    """
    started = datetime.now(UTC)
    instance_error = _instance_error(error, step)
    audit = AuditRecord(
        input=digest,
        output=None,
        outcome=InstanceStatus.REJECTED.value,
        reasons=(instance_error.message,),
        error_type=instance_error.type,
        error_message=instance_error.message,
        failed_step=instance_error.step,
        actions=(),
        profile=profile,
        pixel_policy=type(pixel_policy).__name__,
        started_at=started,
        finished_at=started,
    )
    return InstanceOutcome.rejected(instance_error, audit)


def _collect_phi(original: Dataset | RawInstance, profile: DeidProfile) -> PhiValues:
    """Collect the PHI values the verifier must not find, minus what the options keep."""
    options = profile.options
    return collect_phi_values(
        original,
        include_dates=ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES not in options,
        include_institution=ProfileOption.RETAIN_INSTITUTION_IDENTITY not in options,
        include_device=ProfileOption.RETAIN_DEVICE_IDENTITY not in options,
    )


def _convert_kept(dataset: Dataset) -> None:
    """Prove each kept element pydicom has not converted readable, before it is written.

    The writer copies an element carried over unconverted as it was read (the input's own
    bytes). The lazy read proved every value's VR known and every binary number whole; what
    only pydicom's conversion proves is a number string that reads as a number (IS, DS), and
    the value of a ``UN`` element the dictionary knows (pydicom reads it in the known VR, and
    writes it so). Number strings are read here by pydicom's own converters (the element stays
    as read); the known ``UN`` elements are converted. So a kept value that cannot be read is
    refused naming its tag, as the strict read's conversion of every element ensured; the
    removed elements are never converted.
    """
    for tag, elem in list(dataset._dict.items()):
        if isinstance(elem, RawDataElement):
            vr = elem.VR
            if vr in _NUMBER_STRINGS and elem.value is not None and elem.value.isascii():
                _NUMBER_STRINGS[vr](elem.value, True)  # raises as the conversion would
            elif _conversion_can_fail(elem):
                dataset[tag]  # converts in place
        elif elem.VR == "SQ":
            for item in elem.value:
                _convert_kept(item)


# pydicom's converters of IS and DS bytes (ASCII values: what the conversion decodes them as).
_NUMBER_STRINGS = {"IS": convert_IS_string, "DS": convert_DS_string}


def _conversion_can_fail(elem: RawDataElement) -> bool:
    vr = elem.VR
    if vr in ("IS", "DS"):
        return True
    if vr in (None, "UN"):
        known = known_vr(int(elem.tag)) or ""
        return known != "" if vr == "UN" else known in ("IS", "DS", "SQ") or " or " in known
    return False


def _encode(dataset: Dataset) -> bytes:
    """Write a conformant Part 10 file (preamble, meta header) in the input's transfer syntax.

    :func:`~radstream.dicom.writer.encode_part10` writes what ``dcmwrite`` writes, copying the
    elements the profile carried over as read instead of walking them through pydicom's writer.

    Raises
    ------
    UnwritableElementError
        A kept element cannot be encoded in its VR; the error names the element, never its value.
    """
    try:
        return encode_part10(dataset)
    except _ENCODING_ERRORS as exc:
        where = _unwritable_element(dataset) or "an element"
        raise UnwritableElementError(
            f"{where} is kept by the profile but its value cannot be encoded in its VR "
            f"({type(exc).__name__}); correct the value at the source and send it again"
        ) from None


# What pydicom raises for a value it read leniently but cannot write (its own wrapper that adds
# the tag to the message fails for exceptions such as UnicodeEncodeError, so the tag is found
# by writing the elements one by one, on this failure path only).
_ENCODING_ERRORS = (TypeError, ValueError, UnicodeError, struct.error, OverflowError)


def _unwritable_element(dataset: Dataset, prefix: str = "") -> str | None:
    """The path of the first element of ``dataset`` that cannot be written alone."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    implicit = bool(syntax is not None and syntax.is_implicit_VR)
    little = syntax is None or syntax.is_little_endian
    for element in dataset:
        probe = Dataset()
        if "SpecificCharacterSet" in dataset:
            probe.SpecificCharacterSet = dataset.SpecificCharacterSet
        probe.add(element)
        try:
            dcmwrite(io.BytesIO(), probe, implicit_vr=implicit, little_endian=little)
        except _ENCODING_ERRORS:
            path = f"{prefix}{format_tag(element.tag)}"
            if element.VR == "SQ":
                for index, item in enumerate(element.value):
                    nested = _unwritable_element(item, f"{path}[{index}]/")
                    if nested is not None:
                        return nested
            return path
    return None


def _finished(  # noqa: PLR0917 -- the parts of an outcome, all required
    status: InstanceStatus,
    reasons: tuple[str, ...],
    progress: _Progress,
    profile: DeidProfile,
    pixel_policy: PixelPolicy,
    started: datetime,
) -> InstanceOutcome:
    written, result, original = progress.written, progress.result, progress.original
    if written is None or result is None or original is None:
        raise RuntimeError("a finished run has written output")  # unreachable: _run sets them
    released = status is InstanceStatus.RELEASED
    audit = _audit(
        status,
        reasons,
        progress,
        profile,
        pixel_policy,
        started,
        output=progress.written_digest.result()
        if released and progress.written_digest is not None
        else None,
        actions=result.actions,
    )
    return InstanceOutcome(
        status=status,
        output=written if released else None,
        candidate=None if released else written,
        reasons=reasons,
        error=None,
        audit=audit,
        reid=_reid(audit.input.sha256, original, result),  # the input is hashed once
        ids=_ids(result.dataset),
    )


def _rejected(
    exc: Exception,
    progress: _Progress,
    profile: DeidProfile,
    pixel_policy: PixelPolicy,
    started: datetime,
) -> InstanceOutcome:
    error = _instance_error(exc, progress.step)
    result = progress.result
    audit = _audit(
        InstanceStatus.REJECTED,
        (error.message,),
        progress,
        profile,
        pixel_policy,
        started,
        output=None,
        actions=result.actions if result is not None else (),
        error=error,
    )
    return InstanceOutcome.rejected(error, audit)


def _instance_error(exc: Exception, step: str) -> InstanceError:
    """Describe ``exc`` without quoting it unless it is radstream's own (which never holds PHI)."""
    kind = type(exc)
    qualified = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(exc, RadstreamError):
        if isinstance(exc, DeidError | InvalidInstanceError):
            reason = exc.reason
        else:
            reason = _snake_case(kind.__name__)
        return InstanceError(type=qualified, reason=reason, message=str(exc), step=step)
    # Foreign exceptions (pydicom, presidio, bugs) may quote a value: say where, not what.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    return InstanceError(
        type=qualified,
        reason="internal",
        message=f"unexpected {kind.__name__} in step {step}{where}; nothing was released",
        step=step,
    )


def _snake_case(class_name: str) -> str:
    """``BlobIntegrityError`` -> ``blob_integrity``."""
    words = re.findall(r"[A-Z][a-z0-9]*", class_name.removesuffix("Error"))
    return "_".join(word.lower() for word in words) or "error"


def _audit(  # noqa: PLR0917 -- the parts of an audit record, all required
    status: InstanceStatus,
    reasons: tuple[str, ...],
    progress: _Progress,
    profile: DeidProfile,
    pixel_policy: PixelPolicy,
    started: datetime,
    *,
    output: Digest | None,
    actions: tuple[AppliedAction, ...],
    error: InstanceError | None = None,
) -> AuditRecord:
    original = progress.original
    return AuditRecord(
        input=progress.input_digest.result(),
        output=output,
        outcome=status.value,
        reasons=reasons,
        error_type=error.type if error is not None else None,
        error_message=error.message if error is not None else None,
        failed_step=error.step if error is not None else None,
        actions=actions,
        profile=profile,
        pixel_policy=type(pixel_policy).__name__,
        started_at=started,
        finished_at=datetime.now(UTC),
        sop_class_uid=_text(original, "SOPClassUID") if original is not None else None,
        modality=_text(original, "Modality") if original is not None else None,
        pixels=progress.pixel_report.to_audit() if progress.pixel_report is not None else None,
    )


def _reid(input_sha256: str, original: Dataset, result: ProfileResult) -> ReidentificationRecord:
    return ReidentificationRecord(
        input_sha256=input_sha256,
        original_patient_id=_text(original, "PatientID"),
        patient_pseudonym=result.patient_pseudonym,
        date_offset_days=result.date_offset_days,
        uid_map=dict(result.uid_map),
    )


def _ids(dataset: Dataset) -> DeidentifiedIds:
    meta = getattr(dataset, "file_meta", None)
    transfer_syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return DeidentifiedIds(
        study_instance_uid=_text(dataset, "StudyInstanceUID"),
        series_instance_uid=_text(dataset, "SeriesInstanceUID"),
        sop_instance_uid=_text(dataset, "SOPInstanceUID"),
        sop_class_uid=_text(dataset, "SOPClassUID"),
        transfer_syntax_uid=transfer_syntax,
        modality=_text(dataset, "Modality"),
    )


def _text(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value)
