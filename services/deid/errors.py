"""Errors of the de-identification service.

Instances that cannot be read at all fail in the strict reader with
:class:`radstream.dicom.errors.InvalidInstanceError` (poison: rejected, never released). Here:

* :class:`InvalidStudyEventError` -- a study event deid cannot act on; it is dead-lettered.
* :class:`OutputNotReadableError` -- deid's own output does not read back; nothing is released.
* :class:`DeidConfigurationError` -- the service is set up wrongly (no pseudonymisation key, an
  unknown profile option); it fails at startup.
* :class:`OcrEngineUnavailableError` -- the OCR engine did not answer while the pixels were
  checked (a transient error): nothing is released, and the instance is tried again later.

Messages name the attribute, tag, offset or size at fault, never a value read from the file.
Each error has a ``reason``: a short machine-readable phrase for events and summaries.
"""

from __future__ import annotations

from typing import ClassVar

from radstream.common.errors import (
    MisconfiguredError,
    PoisonEventError,
    RadstreamError,
    TransientError,
)
from radstream.contracts.v1 import common_pb2

__all__ = [
    "DeidConfigurationError",
    "DeidError",
    "InvalidStudyEventError",
    "OcrEngineUnavailableError",
    "OutputNotReadableError",
    "UnwritableElementError",
]


class DeidError(RadstreamError):
    """Root of the errors the deid service raises on purpose."""

    reason: ClassVar[str] = "deid_error"


class InvalidStudyEventError(DeidError, PoisonEventError):
    """A StudyReceived event lacks what deid needs (its study UID); it goes to the DLQ."""

    reason: ClassVar[str] = "invalid_event"


class UnwritableElementError(DeidError):
    """An element the profile keeps cannot be encoded in the output; nothing is released.

    The input held a value its VR does not allow that pydicom read leniently (an IS written in
    full-width digits, a retired element whose dictionary VR is ambiguous): the instance is
    rejected naming the tag, and the sender fixes the value.
    """

    reason: ClassVar[str] = "unwritable_element"


class OutputNotReadableError(DeidError):
    """The de-identified output did not read back as DICOM; it is a bug, and nothing is released."""

    reason: ClassVar[str] = "output_not_readable"


class DeidConfigurationError(DeidError, MisconfiguredError):
    """The deid service is configured wrongly; fix the ``RADSTREAM_DEID_*`` settings."""

    reason: ClassVar[str] = "misconfigured"


class OcrEngineUnavailableError(DeidError, TransientError):
    """The OCR engine did not answer (its service or model server away, overloaded, too slow).

    Not a fact about the instance, so it is not an outcome: the pipeline raises it instead of
    rejecting the instance (nothing was written or released), the service's delivery retries
    the event, and the batch leaves the file to be run again. ``step`` is the pipeline step
    that called the engine; ``cause`` the engine's error type. The message starts with
    ``ERROR_CODE_DEID_OCR_UNAVAILABLE`` and quotes no value.
    """

    reason: ClassVar[str] = "ocr_unavailable"
    code: ClassVar[int] = common_pb2.ERROR_CODE_DEID_OCR_UNAVAILABLE

    def __init__(self, step: str, cause: str, *, message: str | None = None) -> None:
        super().__init__(
            message
            or f"{common_pb2.ErrorCode.Name(self.code)}: the OCR engine did not answer in step "
            f"{step} ({cause}); nothing was released, try the instance again once it answers"
        )
        self.step = step
        self.cause = cause
