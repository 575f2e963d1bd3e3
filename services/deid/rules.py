"""Table E.1-1 compiled for one set of profile options: which action each attribute gets.

Options override the Basic Profile for the rows they name ("a requirement for an Option, when
implemented, overrides any requirement for the underlying Profile", PS3.15 E.1.1). Where two
selected options name the same row with different actions, K wins over C: the options are
requests to retain, and retaining as-is is what the K option asked for (e.g. Date of Last
Detector Calibration under both Retain Device Identity and Modified Dates is kept). Compound
codes are resolved later, per instance, from the attribute's Type in the instance's IOD.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from pydicom.datadict import dictionary_VR

from radstream.deid._annex_e import OPTION_COLUMNS, ROWS, AnnexERow

__all__ = [
    "SUPPORTED_CODES",
    "RuleBook",
    "TableRule",
    "annex_e_coverage",
    "compile_rules",
    "resolve_code",
]

SUPPORTED_CODES = frozenset({"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})
_EXACT = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)")
_CURVE = "(50XX,XXXX)"
_OVERLAY = re.compile(r"\(60XX,([0-9A-F]{4})\)")
_PRIVATE = "(GGGG,EEEE) WHERE GGGG IS ODD"


@dataclass(frozen=True, slots=True)
class TableRule:
    """The action Table E.1-1 (with the selected options) gives one row."""

    row: AnnexERow
    code: str  # after options; may still be compound
    decided_by: str  # "basic" or the option value that overrode the Basic Profile
    vr: str | None  # the dictionary VR of an exact tag, None for wildcard rows
    label: str  # how audit records name this rule


def _rule(row: AnnexERow, code: str, decided_by: str, vr: str | None) -> TableRule:
    source = "Table E.1-1" if decided_by == "basic" else decided_by
    label = f"{source} {row.tag} {row.name}: {code}"
    return TableRule(row=row, code=code, decided_by=decided_by, vr=vr, label=label)


@dataclass(frozen=True, slots=True)
class RuleBook:
    """Every row of the table, indexed the way the dataset walk looks them up."""

    exact: Mapping[int, TableRule]
    curve: TableRule  # (50xx,xxxx)
    overlay: Mapping[int, TableRule]  # element number of (60xx,eeee) -> rule
    private: TableRule


def _option_code(row: AnnexERow, options: frozenset[str]) -> tuple[str, str]:
    chosen: tuple[str, str] | None = None
    for column, action in zip(OPTION_COLUMNS, row.options, strict=True):
        if action == "." or column not in options:
            continue
        if chosen is None or (action == "K" and chosen[0] != "K"):
            chosen = (action, column)
    return chosen if chosen is not None else (row.basic, "basic")


def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


@cache
def compile_rules(options: frozenset[str]) -> RuleBook:
    """The rule book for a set of option values (``ProfileOption`` values), memoized."""
    exact: dict[int, TableRule] = {}
    overlay: dict[int, TableRule] = {}
    curve: TableRule | None = None
    private: TableRule | None = None
    for row in ROWS:
        code, decided_by = _option_code(row, options)
        if (match := _EXACT.fullmatch(row.tag)) is not None:
            tag = int(match[1] + match[2], 16)
            exact[tag] = _rule(row, code, decided_by, _dictionary_vr(tag))
        elif row.tag == _CURVE:
            curve = _rule(row, code, decided_by, None)
        elif (match := _OVERLAY.fullmatch(row.tag)) is not None:
            overlay[int(match[1], 16)] = _rule(row, code, decided_by, None)
        elif row.tag == _PRIVATE:
            private = _rule(row, code, decided_by, None)
        else:
            raise ValueError(f"Table E.1-1 row {row.tag} has a tag form the walk cannot match")
    if curve is None or private is None:
        raise ValueError("Table E.1-1 lacks the curve or private-attributes row")
    return RuleBook(exact=exact, curve=curve, overlay=overlay, private=private)


def resolve_code(code: str, attr_type: int) -> str:
    """The single action a code calls for given the attribute's Type (1, 2 or 3) in the IOD.

    Z on a Type 1 attribute becomes D, since a Type 1 attribute may not be empty.
    """
    if code == "X/Z":
        code = "Z" if attr_type <= 2 else "X"
    elif code == "X/D":
        code = "D" if attr_type <= 2 else "X"  # Type 2 may not be absent; D keeps it present
    elif code == "Z/D":
        code = "D" if attr_type == 1 else "Z"
    elif code == "X/Z/D":
        code = ("D", "Z", "X")[attr_type - 1]
    elif code == "X/Z/U*":
        code = ("U", "Z", "X")[attr_type - 1]
    if code == "Z" and attr_type == 1:
        return "D"
    return code


def _handled(row: AnnexERow) -> bool:
    tag_matched = (
        _EXACT.fullmatch(row.tag) is not None
        or _OVERLAY.fullmatch(row.tag) is not None
        or row.tag in {_CURVE, _PRIVATE}
    )
    options_known = len(row.options) == len(OPTION_COLUMNS) and set(row.options) <= {".", "K", "C"}
    return tag_matched and row.basic in SUPPORTED_CODES and options_known


def annex_e_coverage(rows: Iterable[AnnexERow] = ROWS) -> tuple[int, int]:
    """(rows the walk matches and whose every action it implements, rows in Table E.1-1)."""
    rows = tuple(rows)
    return sum(_handled(row) for row in rows), len(rows)
