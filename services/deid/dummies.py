"""Dummy and empty values per VR for the D and Z actions of PS3.15 Table E.1-1.

A dummy is valid for its VR (length, character repertoire, format) so a Type 1 attribute stays
conformant, and says plainly that it replaced something. UI dummies are not here: a D on a UID
remaps it (:mod:`radstream.deid.uids`) so references stay consistent.
"""

from __future__ import annotations

from pydicom.dataelem import empty_value_for_VR

__all__ = [
    "DUMMY_TEXT",
    "TEXT_VRS",
    "dummy_value",
    "empty_value",
    "max_length",
]

DUMMY_TEXT = "ANONYMIZED"

#: VRs holding free text a person typed or a system filled with names, places or notes.
TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})

_DUMMIES: dict[str, object] = {
    "AE": DUMMY_TEXT,
    "AS": "000D",
    "AT": 0,
    "CS": DUMMY_TEXT,
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "FD": 0.0,
    "FL": 0.0,
    "IS": "0",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "PN": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "SL": 0,
    "SS": 0,
    "ST": DUMMY_TEXT,
    "SV": 0,
    "TM": "000000",
    "UC": DUMMY_TEXT,
    "UL": 0,
    "UR": "urn:oid:2.25.0",
    "US": 0,
    "UT": DUMMY_TEXT,
    "UV": 0,
    # Binary VRs: the shortest even-length value of whole units of the VR.
    "OB": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "OW": b"\x00\x00",
    "UN": b"\x00\x00",
}

# PS3.5 Table 6.2-1 maximum lengths of the string VRs a cleaned value may outgrow.
_MAX_LENGTH = {"AE": 16, "CS": 16, "LO": 64, "LT": 10240, "PN": 64 * 3 + 2, "SH": 16, "ST": 1024}


def dummy_value(vr: str) -> object:
    """A non-empty value valid for ``vr`` (raises KeyError for SQ and UI, handled elsewhere)."""
    return _DUMMIES[vr]


def empty_value(vr: str) -> object:
    """The zero-length value of ``vr``, as pydicom expects it."""
    return empty_value_for_VR(vr)


def max_length(vr: str) -> int | None:
    """The maximum length of one value of a string VR, None when unbounded here."""
    return _MAX_LENGTH.get(vr)
