"""Private attributes known to be safe to retain (PS3.15 E.3.10, Retain Safe Private Option).

An entry names the odd group, the private creator that reserved the block, and the element's
offset inside the block (the ``xx`` of ``(gggg,bbxx)``), with the VR the value must have. The group
is part of the key because a creator string is only meaningful in the group that reserved it.
Sequences are never safe here: their items are not inspected element by element.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_SAFE_PRIVATE",
    "SafePrivateDictionary",
    "SafePrivateEntry",
]

_VALID_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF"}
    | {"OL", "OV", "OW", "SH", "SL", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US"}
    | {"UT", "UV"}
)


@dataclass(frozen=True, kw_only=True)
class SafePrivateEntry:
    """One private element that carries no identifying information."""

    group: int  # odd group, e.g. 0x0043
    creator: str  # the Private Creator value reserving the block, e.g. "GEMS_PARM_01"
    offset: int  # the low byte of the element number, 0x00-0xFF
    vr: str
    description: str

    def __post_init__(self) -> None:
        if not (self.group % 2 == 1 and 0x0009 <= self.group <= 0xFFFF):
            raise ValueError(f"safe private group {self.group:04X} is not a private group")
        if not 0 <= self.offset <= 0xFF:
            raise ValueError(f"safe private element offset {self.offset:#x} is not 0x00-0xFF")
        if self.vr not in _VALID_VRS:
            raise ValueError(f"safe private VR {self.vr!r} is not allowed (sequences never are)")
        if not self.creator.strip():
            raise ValueError("safe private entries need a private creator")

    @property
    def key(self) -> tuple[int, str, int]:
        """The lookup key: (group, creator, offset)."""
        return (self.group, self.creator.strip(), self.offset)


@dataclass(frozen=True)
class SafePrivateDictionary:
    """The set of private elements the Retain Safe Private Option keeps."""

    entries: tuple[SafePrivateEntry, ...] = ()
    _index: Mapping[tuple[int, str, int], SafePrivateEntry] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {entry.key: entry for entry in self.entries})

    def lookup(self, group: int, creator: str, offset: int) -> SafePrivateEntry | None:
        """The entry for an element, or None when it is not known to be safe."""
        return self._index.get((group, creator.strip(), offset))

    def __len__(self) -> int:
        return len(self._index)

    def extended(self, entries: Iterable[SafePrivateEntry]) -> SafePrivateDictionary:
        """A dictionary with these entries added (a later entry replaces one with the same key)."""
        return SafePrivateDictionary((*self.entries, *entries))

    def extended_from_file(self, path: Path) -> SafePrivateDictionary:
        """Add the entries of a JSON file: a list of objects with group, creator, element, vr.

        ``group`` and ``element`` are hex strings (``"0043"``, ``"27"``, or ``"xx27"``); an
        optional ``description`` says what the value is.
        """
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the safe private dictionary {path}: {exc}") from exc
        if not isinstance(raw, list):
            raise ValueError(f"{path} must hold a JSON list of entries")
        return self.extended(_entry_from_json(item, path, index) for index, item in enumerate(raw))


def _entry_from_json(item: object, path: Path, index: int) -> SafePrivateEntry:
    if not isinstance(item, dict):
        raise ValueError(f"{path} entry {index} is not an object")
    try:
        element = str(item["element"]).lower().removeprefix("xx")
        return SafePrivateEntry(
            group=int(str(item["group"]), 16),
            creator=str(item["creator"]),
            offset=int(element, 16),
            vr=str(item["vr"]).upper(),
            description=str(item.get("description", "")),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path} entry {index} is invalid: {exc}") from exc


def _entry(group: int, creator: str, offset: int, vr: str, description: str) -> SafePrivateEntry:
    return SafePrivateEntry(
        group=group, creator=creator, offset=offset, vr=vr, description=description
    )


# Transcribed from the sample list in PS3.15 Table E.3.10-1 ("Safe Private Attributes"). Only
# numeric and coded acquisition/scaling parameters were taken: they describe how the image was
# made or how to scale its pixels, never who or where. Free-text entries of that table (e.g. GE's
# internal pulse sequence name, LO) and private sequences were left out because their content
# is not constrained. Vendors do not guarantee these stay safe in every software version.
DEFAULT_SAFE_PRIVATE = SafePrivateDictionary(
    (
        # PET quantitation factors: scalars applied to stored pixel values.
        _entry(0x7053, "Philips PET Private Group", 0x00, "DS", "SUV factor"),
        _entry(0x7053, "Philips PET Private Group", 0x09, "DS", "Activity concentration factor"),
        # CT technique: dose-length product and acquisition kinematics (numbers only).
        _entry(0x00E1, "ELSCINT1", 0x21, "DS", "DLP"),
        _entry(0x00E1, "ELSCINT1", 0x50, "DS", "Acquisition duration"),
        _entry(0x01F1, "ELSCINT1", 0x07, "DS", "Table velocity"),
        _entry(0x01F1, "ELSCINT1", 0x26, "DS", "Pitch"),
        _entry(0x01F1, "ELSCINT1", 0x27, "DS", "Rotation time"),
        _entry(0x0019, "GEMS_ACQU_01", 0x23, "DS", "Table speed [mm/rotation]"),
        _entry(0x0019, "GEMS_ACQU_01", 0x24, "DS", "Mid scan time [sec]"),
        _entry(0x0019, "GEMS_ACQU_01", 0x27, "DS", "Rotation speed (gantry period)"),
        # Fixed-format ratio "n.nnn:1"; a short string with no room for a name.
        _entry(0x0043, "GEMS_PARM_01", 0x27, "SH", "Scan pitch ratio"),
        _entry(0x0043, "GEMS_PARM_01", 0x39, "IS", "Slop integers; the first is the b value"),
        _entry(0x0043, "GEMS_PARM_01", 0x6F, "DS", "Scanner table entry + gradient coil"),
        _entry(0x0045, "GEMS_HELIOS_01", 0x01, "SS", "Number of macro rows in detector"),
        _entry(0x0045, "GEMS_HELIOS_01", 0x02, "FL", "Macro width at ISO center"),
        _entry(0x0025, "GEMS_SERS_01", 0x07, "SL", "Images in series"),
        # MR diffusion encoding and Philips pixel scaling: numbers and enumerated codes.
        _entry(0x2001, "Philips Imaging DD 001", 0x03, "FL", "Diffusion b-factor"),
        _entry(0x2001, "Philips Imaging DD 001", 0x04, "CS", "Diffusion direction"),
        _entry(0x2005, "Philips MR Imaging DD 001", 0x0D, "FL", "Scale intercept"),
        _entry(0x2005, "Philips MR Imaging DD 001", 0x0E, "FL", "Scale slope"),
        _entry(0x0019, "SIEMENS MR HEADER", 0x0C, "IS", "B value"),
        _entry(0x0019, "SIEMENS MR HEADER", 0x0D, "CS", "Diffusion directionality"),
        _entry(0x0019, "SIEMENS MR HEADER", 0x0E, "FD", "Diffusion gradient direction"),
        _entry(0x0019, "SIEMENS MR HEADER", 0x27, "FD", "B matrix"),
    )
)
