"""Strict reading of DICOM Part 10 files, shared by every service that receives DICOM.

ingest reads each received instance with it (to refuse what can never be handled, and to take
the UIDs it files the instance under) and deid reads it again before and after de-identifying.
It needs pydicom and the pixel codecs only, so the ingest image carries no PHI-recognition
models. Public names are imported lazily: ``import radstream.dicom`` loads no pydicom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radstream.common.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from radstream.dicom.errors import InvalidInstanceError
    from radstream.dicom.reader import DEFAULT_READER_LIMITS, ReaderLimits, read_instance

__all__ = ["DEFAULT_READER_LIMITS", "InvalidInstanceError", "ReaderLimits", "read_instance"]

_MODULE_OF = {
    "InvalidInstanceError": "errors",
    "DEFAULT_READER_LIMITS": "reader",
    "ReaderLimits": "reader",
    "read_instance": "reader",
}

# Third-party packages of the ``dicom`` extra; an ImportError naming one means it is missing.
_EXTRA_PACKAGES = frozenset({"pydicom", "numpy"})


__getattr__ = lazy_exports(
    __name__, globals(), _MODULE_OF, extra="dicom", extra_packages=_EXTRA_PACKAGES
)


def __dir__() -> list[str]:
    return sorted(__all__)
