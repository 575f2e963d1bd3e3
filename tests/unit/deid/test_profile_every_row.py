"""Table-driven: an instance carrying every attribute Table E.1-1 names gets each row's action."""

from __future__ import annotations

import warnings

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radstream.deid._iod_types import attribute_types
from radstream.deid.profile import DeidProfile, ProfileOption
from radstream.deid.rules import compile_rules, resolve_code
from radstream.deid.uids import UID_PATTERN
from tests.unit.deid.profile_builders import deidentify, instance, item, uid, written

SAMPLES: dict[str, object] = {
    "AE": "AETITLE",
    "AS": "030Y",
    "AT": 0x00100010,
    "CS": "VALUE",
    "DA": "20240115",
    "DS": "1.5",
    "DT": "20240115101500",
    "FD": 1.5,
    "FL": 1.5,
    "IS": "7",
    "LO": "long text",
    "LT": "long text",
    "OB": b"\x01\x02",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "OW": b"\x01\x02",
    "PN": "ROW^RITA",
    "SH": "short",
    "SL": 1,
    "SS": 1,
    "ST": "short text",
    "SV": 1,
    "TM": "101500",
    "UC": "text",
    "UL": 1,
    "UN": b"\x01\x02",
    "UR": "http://example.org/x",
    "US": 1,
    "UT": "text",
    "UV": 1,
}
EVERY_OPTION = frozenset(set(ProfileOption) - {ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES})
BOOK_TAGS = sorted(compile_rules(frozenset()).exact)
# Groups 0000 and 0002 (command and meta elements) cannot be stored in a data set, and the
# instance builder sets patient name and ID itself; all are checked elsewhere.
SKIPPED = {tag for tag in BOOK_TAGS if tag >> 16 in (0x0000, 0x0002)} | {0x00100010, 0x00100020}


def _every_row_instance() -> tuple[Dataset, dict[int, str]]:
    ds = instance()
    vrs: dict[int, str] = {}
    for tag in BOOK_TAGS:
        if tag in SKIPPED:
            continue
        vr = compile_rules(frozenset()).exact[tag].vr or "UN"
        vr = vr.split(" or ")[0]
        if vr == "SQ":
            value: object = [item(CodeValue="1", CodingSchemeDesignator="L", CodeMeaning="x")]
        elif vr == "UI":
            value = uid(f"7.{tag}")
        else:
            value = SAMPLES[vr]
        ds.add_new(tag, vr, value)
        vrs[tag] = vr
    return ds, vrs


@pytest.mark.parametrize(
    ("name", "options"), [("basic", frozenset()), ("every-option", EVERY_OPTION)]
)
def test_every_exact_row_gets_its_resolved_action(
    name: str, options: frozenset[ProfileOption]
) -> None:
    source, vrs = _every_row_instance()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sample values are not valid for every attribute
        result = deidentify(source, profile=DeidProfile(options=options))
        out = written(result.dataset)
    book = compile_rules(frozenset(option.value for option in options))
    types = attribute_types(source.SOPClassUID)
    wrong: list[str] = []
    for tag, vr in vrs.items():
        code = resolve_code(book.exact[tag].code, types.get(tag, 3))
        elem = out.get(tag)
        value = None if elem is None else elem.value
        empty = value in (None, "", b"") or (isinstance(value, Sequence) and len(value) == 0)
        ok = {
            "X": elem is None,
            "Z": elem is not None and empty,
            "D": elem is not None and not empty,
            "U": elem is not None and (vr == "SQ" or str(value) != source[tag].value),
            "K": elem is not None,
            # C keeps the element unless its value could not be cleaned (binary: basic action).
            "C": elem is not None or vr in {"OB", "OW", "UN", "OD", "OF", "OL", "OV"},
        }[code]
        if vr == "UI" and elem is not None and value:
            ok = ok and UID_PATTERN.fullmatch(str(value)) is not None
        if not ok:
            wrong.append(f"{tag:08X} {vr} {code}")
        recorded = [
            a.action for a in result.actions if a.tag == f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        ]
        if not recorded:
            wrong.append(f"{tag:08X} not recorded")
    assert not wrong, f"{name}: {len(wrong)} rows mishandled: {wrong[:20]}"
