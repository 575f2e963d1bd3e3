"""Errors of the de-identification service.

Instances that cannot be read at all fail in the strict reader with
:class:`radstream.dicom.errors.InvalidInstanceError` (poison: rejected, never released). Here:

* :class:`InvalidStudyEventError` -- a study event deid cannot act on; it is dead-lettered.
* :class:`OutputNotReadableError` -- deid's own output does not read back; nothing is released.
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
    "InvalidStudyEventError",
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
