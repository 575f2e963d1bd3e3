"""Consistent UID replacement: a keyed HMAC maps each instance UID to a ``2.25.<integer>`` UID.

The same input UID and key always give the same output, so references between instances
(Referenced SOP Instance UID, Frame of Reference UID, ...) still match after de-identification,
across studies and across runs. The output is a UUID-derived UID (PS3.5 B.2): the first 128 bits
of HMAC-SHA256(key, uid) with the RFC 9562 version 8 ("custom") and variant bits set, written as
a decimal integer after ``2.25.`` -- at most 39 digits, no leading zero, 44 characters at most.
Well-known UIDs (SOP classes, transfer syntaxes, coding schemes and everything else the standard
registers) are never remapped, and neither are attributes whose UIDs name a class rather than an
instance (:data:`REGISTRY_UID_TAGS`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from functools import lru_cache

from pydicom._uid_dict import UID_dictionary

__all__ = [
    "REGISTRY_UID_TAGS",
    "UID_PATTERN",
    "UidRemapper",
    "is_well_known_uid",
    "remap_uid",
]

#: The UID grammar of PS3.5 9.1: dot-separated components without leading zeros, <= 64 chars.
UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")

# Every UID under the DICOM root is registered by the standard (PS3.6 Annex A); HL7's branch
# 2.16.840.1.113883.6 holds the external coding schemes (SNOMED, LOINC, UCUM, ICD) SR uses.
_REGISTRY_ROOTS = ("1.2.840.10008.", "2.16.840.1.113883.6.")
_STANDARD_UIDS = frozenset(UID_dictionary)

#: UI attributes whose values name a class, syntax, scheme or creator -- never an instance of
#: patient data -- and stay as they are (PS3.15 E.3.9 note 4: never replace the SOP Class UID).
REGISTRY_UID_TAGS = frozenset(
    {
        0x00000002,  # Affected SOP Class UID
        0x00000003,  # Requested SOP Class UID
        0x00020002,  # Media Storage SOP Class UID
        0x00020010,  # Transfer Syntax UID
        0x00020012,  # Implementation Class UID
        0x00020032,  # RTV Communication SOP Class UID
        0x00041510,  # Referenced SOP Class UID in File
        0x00041512,  # Referenced Transfer Syntax UID in File
        0x0004151A,  # Referenced Related General SOP Class UID in File
        0x00080016,  # SOP Class UID
        0x0008001A,  # Related General SOP Class UID
        0x0008001B,  # Original Specialized SOP Class UID
        0x00080062,  # SOP Classes in Study
        0x0008010C,  # Coding Scheme UID
        0x0008010D,  # Context Group Extension Creator UID
        0x00080117,  # Context UID
        0x00080118,  # Mapping Resource UID
        0x0008040E,  # Stored Instance Transfer Syntax UID
        0x00081150,  # Referenced SOP Class UID
        0x0008115A,  # SOP Classes Supported
        0x00083002,  # Available Transfer Syntax UID
        0x00089123,  # Creator-Version UID
        0x00340003,  # Flow Transfer Syntax UID
        0x04000010,  # MAC Calculation Transfer Syntax UID
        0x04000510,  # Encrypted Content Transfer Syntax UID
        0x3010001F,  # Segmentation Template UID
        0x30100052,  # Pertinent SOP Classes in Study
        0x30100053,  # Pertinent SOP Classes in Series
    }
)


def is_well_known_uid(uid: str) -> bool:
    """Whether a UID is defined by the standard or a registered coding scheme (never remapped)."""
    return uid in _STANDARD_UIDS or uid.startswith(_REGISTRY_ROOTS)


@lru_cache(maxsize=65536)
def remap_uid(uid: str, key: bytes) -> str:
    """The replacement of an instance UID under ``key`` (well-known UIDs come back unchanged).

    Cached: study, series and frame-of-reference UIDs recur in every instance of a study.
    """
    if is_well_known_uid(uid):
        return uid
    digest = hmac.new(key, uid.encode("utf-8"), hashlib.sha256).digest()
    value = int.from_bytes(digest[:16], "big")
    # RFC 9562 UUIDv8: version nibble 8 in bits 48-51, variant 0b10 in bits 64-65.
    value = (value & ~(0xF << 76)) | (0x8 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return f"2.25.{value}"


class UidRemapper:
    """Remaps UIDs under one key and remembers what it changed (for the PHI-zone map)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._seen: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        """The replacement of ``uid`` (trailing padding ignored)."""
        uid = uid.strip("\x00 ")
        if not uid:
            return uid
        new = self._seen.get(uid)
        if new is None:
            new = remap_uid(uid, self._key)
            self._seen[uid] = new
        return new

    @property
    def changed(self) -> Mapping[str, str]:
        """Original -> replacement for every UID this remapper changed."""
        return {old: new for old, new in self._seen.items() if old != new}
