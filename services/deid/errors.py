"""Errors of the de-identification service.

Two families, following :mod:`radstream.common.errors`:

* :class:`InvalidInstanceError` and its subclasses -- the bytes offered as a DICOM instance can
  never be de-identified as they are (not DICOM, truncated, no meta header, unknown transfer
  syntax, oversized). They are *poison*: the instance is rejected and counted, never retried,
  and nothing of it is released.
* :class:`DeidConfigurationError` -- the service is set up wrongly (no pseudonymisation key, an
  unknown profile option); it fails at startup.

Messages name the attribute, tag, offset or size at fault, never a value read from the file.
Each error has a ``reason``: a short machine-readable phrase for events and summaries.
"""

from __future__ import annotations

from typing import ClassVar

from radstream.common.errors import MisconfiguredError, PoisonEventError, RadstreamError

__all__ = [
    "DeidConfigurationError",
    "DeidError",
    "InvalidInstanceError",
    "InvalidStudyEventError",
    "MalformedDicomError",
    "MissingFileMetaError",
    "NotDicomError",
    "OutputNotReadableError",
    "OversizedElementError",
    "OversizedFileError",
    "OversizedPrivateDataError",
    "TruncatedDicomError",
    "UnsupportedTransferSyntaxError",
]


class DeidError(RadstreamError):
    """Root of the errors the deid service raises on purpose."""

    reason: ClassVar[str] = "deid_error"


class InvalidInstanceError(DeidError, PoisonEventError):
    """The bytes cannot be de-identified as they are; the instance is rejected, never released."""

    reason: ClassVar[str] = "invalid_instance"


class NotDicomError(InvalidInstanceError):
    """The bytes are not a DICOM Part 10 file, nor a bare DICOM data set."""

    reason: ClassVar[str] = "not_dicom"


class MissingFileMetaError(InvalidInstanceError):
    """The data set has no usable File Meta Information, so its transfer syntax is unknown.

    pydicom can guess (``dcmread(..., force=True)`` assumes implicit VR little endian), but a
    wrong guess misreads every value, so radstream refuses: re-send the instance as a DICOM
    Part 10 file (128-byte preamble, ``DICM``, group 0002 with a Transfer Syntax UID).
    """

    reason: ClassVar[str] = "missing_file_meta"


class TruncatedDicomError(InvalidInstanceError):
    """The file ends inside an element, a sequence or the pixel data."""

    reason: ClassVar[str] = "truncated"


class UnsupportedTransferSyntaxError(InvalidInstanceError):
    """The transfer syntax is unknown, or one radstream cannot rewrite safely."""

    reason: ClassVar[str] = "unsupported_transfer_syntax"


class MalformedDicomError(InvalidInstanceError):
    """The file is DICOM but its structure is broken (bad item tags, unparseable elements)."""

    reason: ClassVar[str] = "malformed_dicom"


class OversizedFileError(InvalidInstanceError):
    """The file is larger than the configured limit (``RADSTREAM_DEID_MAX_FILE_BYTES``)."""

    reason: ClassVar[str] = "file_too_large"


class OversizedElementError(InvalidInstanceError):
    """A non-pixel element is larger than the limit (``RADSTREAM_DEID_MAX_ELEMENT_BYTES``)."""

    reason: ClassVar[str] = "element_too_large"


class OversizedPrivateDataError(OversizedElementError):
    """Private elements total more than the limit (``RADSTREAM_DEID_MAX_PRIVATE_BYTES``)."""

    reason: ClassVar[str] = "private_data_too_large"


class InvalidStudyEventError(DeidError, PoisonEventError):
    """A StudyReceived event lacks what deid needs (its study UID); it goes to the DLQ."""

    reason: ClassVar[str] = "invalid_event"


class OutputNotReadableError(DeidError):
    """The de-identified output did not read back as DICOM; it is a bug, and nothing is released."""

    reason: ClassVar[str] = "output_not_readable"


class DeidConfigurationError(DeidError, MisconfiguredError):
    """The deid service is configured wrongly; fix the ``RADSTREAM_DEID_*`` settings."""

    reason: ClassVar[str] = "misconfigured"
