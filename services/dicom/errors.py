"""Errors of the strict DICOM reader.

:class:`InvalidInstanceError` and its subclasses say that the bytes offered as a DICOM instance
can never be handled as they are (not DICOM, truncated, no meta header, unknown transfer syntax,
oversized). They are *poison*: the instance is refused (ingest answers the sender with a failure
status, deid rejects it), counted, never retried, and nothing of it is released.

Messages name the attribute, tag, offset or size at fault, never a value read from the file.
Each error has a ``reason``: a short machine-readable phrase for events, statuses and summaries.
"""

from __future__ import annotations

from typing import ClassVar

from radstream.common.errors import PoisonEventError

__all__ = [
    "InvalidInstanceError",
    "MalformedDicomError",
    "MissingFileMetaError",
    "NotDicomError",
    "OversizedElementError",
    "OversizedFileError",
    "OversizedPrivateDataError",
    "TruncatedDicomError",
    "UnsupportedTransferSyntaxError",
]


class InvalidInstanceError(PoisonEventError):
    """The bytes cannot be read safely as they are; the instance is refused, never released."""

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
    """The file is larger than the configured limit (``max_file_bytes``)."""

    reason: ClassVar[str] = "file_too_large"


class OversizedElementError(InvalidInstanceError):
    """A non-pixel element is larger than the limit (``max_element_bytes``)."""

    reason: ClassVar[str] = "element_too_large"


class OversizedPrivateDataError(OversizedElementError):
    """Private elements total more than the limit (``max_private_bytes``)."""

    reason: ClassVar[str] = "private_data_too_large"
