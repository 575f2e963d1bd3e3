"""The walk that applies the compiled Table E.1-1 to every element of an instance, sequences too.

The walk builds a new dataset. Elements the table does not name are carried over as pydicom read
them (undecoded, so a CT slice costs little more than a dictionary lookup per element) if the
data dictionary knows them (repeating-group masks such as (60xx,0010) included); a public
element it does not know is removed like a private one, since nothing says what it may hold
(a row of the table decides first, so an attribute the table names follows its row even if the
dictionary does not know it). Elements the table names are decoded and replaced, emptied,
removed or kept. A sequence the action keeps (K, U, C, D) is walked item by item: K and U apply
the table inside it, C also cleans the free text the table does not name, and D replaces that
free text (and dates) with dummies, since "the action is applicable to the Sequence and all of
its contents" (PS3.15 E.1.1). An element the walk cannot process is removed and recorded -- the
walk never lets an exception leave a value in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from radstream.deid._iod_types import nested_type
from radstream.deid.dates import is_valid_tm, shift_da, shift_dt
from radstream.deid.dummies import TEXT_VRS, dummy_value, empty_value, max_length
from radstream.deid.elements import (
    UnprocessableError,
    concrete_vr,
    element_of,
    element_vr,
    format_tag,
    keyword_of,
    known_vr,
    raw_encoding,
    strings_of,
)
from radstream.deid.phi import PhiValues
from radstream.deid.private import SafePrivateDictionary
from radstream.deid.rules import RuleBook, TableRule, resolve_code
from radstream.deid.uids import REGISTRY_UID_TAGS, UidRemapper

__all__ = [
    "UNKNOWN_ELEMENT_RULE",
    "AppliedAction",
    "Mode",
    "ProfileWalk",
    "TextCleaner",
    "WalkSettings",
]

TextCleaner = Callable[[str, PhiValues], str]

PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
ISSUER_OF_PATIENT_ID = 0x00100021
OVERLAY_DATA = 0x3000
UNKNOWN_ELEMENT_RULE = "public element not in the data dictionary: removed like a private element"
_NUMERIC_VRS = frozenset({"AT", "DS", "FD", "FL", "IS", "SL", "SS", "SV", "UL", "US", "UV"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_DUMMY_MODE_VRS = TEXT_VRS | _DATE_VRS | {"AS"}


@dataclass(frozen=True, kw_only=True, slots=True)
class AppliedAction:
    """One action the profile applied to one element (the path names it, never its value)."""

    path: str  # e.g. "(0008,1115)[0]/(0008,1155)"
    tag: str  # e.g. "(0008,1155)"
    keyword: str  # "" for private and unknown elements
    action: str  # the resolved action: D, Z, X, K, C or U
    rule: str  # the Table E.1-1 row or option, or the walk's own reason, that decided it


class Mode(Enum):
    """What happens to free text the table does not name, inside the current sequence."""

    PLAIN = "plain"  # kept (the standard lets attributes outside the table through)
    CLEAN = "clean"  # cleaned: inside a sequence whose action is C
    DUMMY = "dummy"  # replaced: inside a sequence whose action is D


@dataclass(frozen=True, kw_only=True)
class WalkSettings:
    """Everything one instance's walk needs besides the dataset."""

    book: RuleBook
    top_types: Mapping[int, int] | None  # tag -> Type in the instance's IOD (top level)
    remap: UidRemapper
    retain_uids: bool
    patient_pseudonym: str
    pseudonym_of: Callable[[str, str], str]  # (patient id, issuer) -> pseudonym
    date_offset_days: int | None  # set when dates are shifted
    safe_private: SafePrivateDictionary | None  # set when safe private attributes are kept
    clean_text: TextCleaner
    phi: PhiValues


@dataclass(slots=True)
class _Level:
    """One dataset being walked: the source, the copy being built, and where it sits."""

    src: Dataset
    out: Dataset
    elements: dict[BaseTag, DataElement | RawDataElement]  # ``out``'s own element dict
    parent: int | None  # tag of the enclosing sequence, None at the top level
    prefix: str  # path of the enclosing item, "" at the top level
    mode: Mode
    creators: dict[int, int]  # (group << 8 | block) -> tag of the private creator
    kept_blocks: set[int]  # private blocks with at least one element kept
    key: BaseTag  # the element being walked, as ``src`` holds its tag

    # ``src``'s own tag object finds the element at once; an int would go through Tag() and
    # BaseTag.__eq__ (Python code) on every lookup.
    def raw(self) -> DataElement | RawDataElement:
        """The element being walked as ``src`` holds it (``get_item``: raw stays raw)."""
        elem = self.src.get_item(self.key)
        if elem is None:
            raise UnprocessableError
        return elem

    def decoded(self) -> DataElement:
        """The element being walked, decoded."""
        return self.src[self.key]

    def put(self, tag: int, elem: DataElement | RawDataElement | None) -> None:
        """``out[tag] = elem``, without ``Dataset.__setitem__``'s cost for plain elements.

        ``__setitem__`` costs more than the rest of the walk for an element carried over; for
        a public element that is no sequence all it does is check the element and store it
        under its tag, which this does directly in the dict ``out`` was built on. Private
        elements (private creator bookkeeping) and sequences (pixel representation handed
        down to the items) still go through ``__setitem__``, so the copy is the same.
        """
        if not isinstance(elem, DataElement | RawDataElement):
            raise TypeError("Dataset items must be 'DataElement' instances")
        key = elem.tag if isinstance(elem.tag, BaseTag) else Tag(elem.tag)
        # Identity first: an element carried over holds ``src``'s own tag object, and
        # BaseTag's comparison is Python code.
        if key is not self.key and key != tag:
            raise ValueError(f"the element's tag {key} is not {format_tag(tag)}")
        if (tag >> 16) & 1 or (elem.VR == "SQ" and isinstance(elem, DataElement)):
            self.out[key] = elem
        else:
            self.elements[key] = elem


class ProfileWalk:
    """Applies a rule book to one instance; collects what it did in :attr:`actions`."""

    def __init__(self, settings: WalkSettings) -> None:
        self._s = settings
        self.actions: list[AppliedAction] = []

    def record(self, prefix: str, tag: int, action: str, rule: str) -> None:
        """Note that ``action`` was applied to ``tag`` in the item at ``prefix``, and why."""
        self.actions.append(_applied(prefix, tag, action, rule))

    # -- datasets --------------------------------------------------------------------------

    def dataset(self, src: Dataset, parent: int | None, prefix: str, mode: Mode) -> Dataset:
        """A de-identified copy of ``src`` (an instance when ``parent`` is None, else an item)."""
        # Raw elements are carried over undecoded, so the copy must keep the encoding (and, in
        # items, the character set inherited from the parent) they were read with.
        # ``out`` is built on ``elements`` (Dataset keeps the dict it is given, not a copy), so
        # the walk can store plain elements straight into it (see ``_Level.put``).
        elements: dict[BaseTag, DataElement | RawDataElement] = {}
        out = Dataset(elements, parent_encoding=src._parent_encoding)
        is_implicit, is_little = raw_encoding(src)
        out.set_original_encoding(is_implicit, is_little, src.original_character_set)
        level = _Level(src, out, elements, parent, prefix, mode, {}, set(), BaseTag(0))
        # key=int: the same order as BaseTag's own comparison, without calling Python code.
        for key in sorted(src.keys(), key=int):
            tag = int(key)
            level.key = key
            try:
                if (tag >> 16) & 1:
                    self._private(level, tag)
                else:
                    self._public(level, tag)
            except Exception:  # fail closed: whatever went wrong, the value does not survive
                if tag in out:
                    del out[tag]
                self.record(prefix, tag, "X", "could not be processed; removed (fail closed)")
        for block, creator_tag in level.creators.items():
            if block in level.kept_blocks:
                level.put(creator_tag, src.get_item(creator_tag))
            else:
                self.record(prefix, creator_tag, "X", self._s.book.private.label)
        return out

    def _sequence(self, level: _Level, tag: int, mode: Mode) -> DataElement:
        elem = level.decoded()
        if not isinstance(elem.value, Sequence):
            raise UnprocessableError
        item_prefix = f"{level.prefix}{format_tag(tag)}"
        items = [
            self.dataset(item, tag, f"{item_prefix}[{index}]/", mode)
            for index, item in enumerate(elem.value)
        ]
        return DataElement(tag, "SQ", Sequence(items))

    # -- private elements ------------------------------------------------------------------

    def _private(self, level: _Level, tag: int) -> None:
        group, element = tag >> 16, tag & 0xFFFF
        rule = self._s.book.private
        if 0x0010 <= element <= 0x00FF:
            level.creators[group << 8 | element] = tag  # decided once the block is known
            return
        safe = self._s.safe_private
        if safe is not None and element >= 0x1000 and group > 0x0008:
            src = level.src
            creator_tag = (group << 16) | (element >> 8)
            entry = None
            if creator_tag in src:
                creator = str(src[creator_tag].value or "")
                entry = safe.lookup(group, creator, element & 0xFF)
            raw = level.raw()
            if entry is not None and raw.VR in (None, "UN", entry.vr):
                level.kept_blocks.add(group << 8 | element >> 8)
                label = f"{rule.label}: safe ({entry.description})"
                if entry.vr == "UI" and not self._s.retain_uids:
                    # A safe private reference to another instance follows the remap too.
                    self._replace_uids(level, tag, label)
                    return
                level.put(tag, raw)
                self.record(level.prefix, tag, "K", label)
                return
        self.record(level.prefix, tag, "X", rule.label)

    # -- public elements -------------------------------------------------------------------

    def _public(self, level: _Level, tag: int) -> None:
        group, element = tag >> 16, tag & 0xFFFF
        if element == 0:
            self.record(level.prefix, tag, "X", "group length: stale once elements change")
            return
        if group == 0x0002:
            self.record(level.prefix, tag, "X", "file meta element inside the data set")
            return
        if group == 0x0000 and level.parent is None:
            # Command elements belong to a DIMSE message; a stored instance cannot hold them.
            self.record(level.prefix, tag, "X", "command element inside the data set")
            return
        book = self._s.book
        rule = book.exact.get(tag)
        if rule is None and 0x5000 <= group <= 0x50FF:
            rule = book.curve
        elif rule is None and 0x6000 <= group <= 0x60FF:
            rule = book.overlay.get(element)
            if rule is None and (group << 16 | OVERLAY_DATA) in level.src:
                # The overlay's bitmap is always removed (X, or C that cannot clean a bitmap);
                # its other attributes would describe an overlay that is not there.
                self.record(level.prefix, tag, "X", "overlay attribute removed with its data")
                return
        if rule is not None:
            self._table(level, tag, rule)
        else:
            self._outside_table(level, tag)

    def _outside_table(self, level: _Level, tag: int) -> None:
        if known_vr(tag) is None:
            # Nothing says what an element the dictionary does not know may hold, so nothing
            # can say it is safe to keep: removed like a private element, whatever its VR
            # (a number can be a record number), a sequence with everything in it.
            self.record(level.prefix, tag, "X", UNKNOWN_ELEMENT_RULE)
            return
        raw = level.raw()
        vr = element_vr(raw, tag)
        if vr == "SQ":
            level.put(tag, self._sequence(level, tag, level.mode))
        elif vr == "UI":
            if self._s.retain_uids or tag in REGISTRY_UID_TAGS:
                level.put(tag, raw)
            else:
                self._replace_uids(level, tag, "instance UID outside Table E.1-1: remapped")
        elif level.mode is Mode.DUMMY and vr in _DUMMY_MODE_VRS:
            self._dummy(level, tag, vr, "inside a sequence replaced by D: dummy")
        elif level.mode is Mode.CLEAN and vr in TEXT_VRS:
            self._clean_text(level, tag, vr, "inside a sequence cleaned by C")
        else:
            level.put(tag, raw)

    # -- table rows ------------------------------------------------------------------------

    def _table(self, level: _Level, tag: int, rule: TableRule) -> None:
        top_types = self._s.top_types
        if level.parent is not None:
            attr_type = nested_type(level.parent, tag)
        else:
            attr_type = top_types.get(tag, 3) if top_types is not None else 3
        code, label = _decision(rule, attr_type)
        vr = concrete_vr(rule.vr or known_vr(tag), element_vr(level.raw(), tag))
        prefix = level.prefix
        if tag == PATIENT_ID or (tag == PATIENT_NAME and level.parent is None):
            self._pseudonym(level, tag, vr)
        elif code == "X":
            self.record(prefix, tag, "X", label)
        elif code == "K":
            kept = self._sequence(level, tag, Mode.PLAIN) if vr == "SQ" else None
            level.put(tag, kept if kept is not None else level.raw())
            self.record(prefix, tag, "K", label)
        elif code == "Z":
            level.put(tag, DataElement(tag, vr, Sequence() if vr == "SQ" else empty_value(vr)))
            self.record(prefix, tag, "Z", label)
        elif code == "D":
            self._dummy(level, tag, vr, label)
        elif code == "U" and vr == "SQ":
            level.put(tag, self._sequence(level, tag, Mode.PLAIN))
            self.record(prefix, tag, "U", label)
        elif code == "U":
            self._replace_uids(level, tag, label)
        else:  # C
            self._clean(level, tag, vr, rule=rule, attr_type=attr_type, label=label)

    def _pseudonym(self, level: _Level, tag: int, vr: str) -> None:
        src = level.src
        if level.parent is None:
            pseudonym = self._s.patient_pseudonym
        else:
            value = "".join(strings_of(level.decoded()))
            has_issuer = ISSUER_OF_PATIENT_ID in src
            issuer = "".join(strings_of(src[ISSUER_OF_PATIENT_ID])) if has_issuer else ""
            pseudonym = self._s.pseudonym_of(value, issuer) if value.strip() else ""
        if not pseudonym:
            level.put(tag, DataElement(tag, vr, empty_value(vr)))
            self.record(level.prefix, tag, "Z", "patient pseudonym: no Patient ID to derive from")
            return
        level.put(tag, DataElement(tag, vr, pseudonym))
        self.record(level.prefix, tag, "D", "patient pseudonym (keyed HMAC of Patient ID)")

    def _dummy(self, level: _Level, tag: int, vr: str, label: str) -> None:
        if vr == "SQ":
            level.put(tag, self._sequence(level, tag, Mode.DUMMY))
        elif vr == "UI":
            values = strings_of(level.decoded()) or [f"dummy\x1f{level.prefix}{format_tag(tag)}"]
            level.put(tag, element_of(tag, vr, [self._s.remap(value) for value in values]))
        else:
            # One dummy per value keeps the VM the IOD asks for; undecodable values count as one.
            try:
                count = max(len(strings_of(level.decoded())), 1)
            except Exception:
                count = 1
            level.put(tag, element_of(tag, vr, [dummy_value(vr)] * count))
        self.record(level.prefix, tag, "D", label)

    def _replace_uids(self, level: _Level, tag: int, label: str) -> None:
        values = [value.strip("\x00 ") for value in strings_of(level.decoded())]
        new = [self._s.remap(value) for value in values]
        level.put(tag, element_of(tag, "UI", list(new)))
        if new != values:
            self.record(level.prefix, tag, "U", label)
        else:
            self.record(level.prefix, tag, "K", f"{label} (well-known UID kept)")

    def _clean(
        self, level: _Level, tag: int, vr: str, *, rule: TableRule, attr_type: int, label: str
    ) -> None:
        prefix = level.prefix
        offset = self._s.date_offset_days
        if vr == "SQ":
            level.put(tag, self._sequence(level, tag, Mode.CLEAN))
            self.record(prefix, tag, "C", label)
        elif vr in ("DA", "DT") and offset is not None:
            shift = shift_da if vr == "DA" else shift_dt
            shifted = [shift(value, offset) for value in strings_of(level.decoded())]
            if any(value is None for value in shifted):
                self.record(prefix, tag, "X", f"{label}: malformed {vr} removed (fail closed)")
                return
            level.put(tag, element_of(tag, vr, [value for value in shifted if value is not None]))
            self.record(prefix, tag, "C", f"{label} (shifted {offset} days)")
        elif vr == "TM":
            if not all(is_valid_tm(value) for value in strings_of(level.decoded())):
                self.record(prefix, tag, "X", f"{label}: malformed TM removed (fail closed)")
                return
            level.put(tag, level.raw())  # whole-day shifts leave the time of day as it was
            self.record(prefix, tag, "C", f"{label} (time of day kept)")
        elif vr in TEXT_VRS:
            self._clean_text(level, tag, vr, label)
        elif vr in _NUMERIC_VRS:
            level.put(tag, level.raw())  # numbers carry no names: cleaning keeps them
            self.record(prefix, tag, "C", f"{label} (numeric value kept)")
        else:
            # Opaque values (OB, OW, UN, ...) cannot be cleaned: fall back to the Basic Profile.
            code = resolve_code(rule.row.basic, attr_type)
            fallback = f"{label}: cannot clean VR {vr}, Basic Profile {code} instead"
            if code in ("X", "K", "C"):
                self.record(prefix, tag, "X", fallback)
            elif code == "Z":
                level.put(tag, DataElement(tag, vr, empty_value(vr)))
                self.record(prefix, tag, "Z", fallback)
            else:
                self._dummy(level, tag, vr, fallback)

    def _clean_text(self, level: _Level, tag: int, vr: str, label: str) -> None:
        limit = max_length(vr)
        cleaned: list[object] = []
        for value in strings_of(level.decoded()):
            text = self._s.clean_text(value, self._s.phi)
            cleaned.append(text[:limit] if limit is not None else text)
        level.put(tag, element_of(tag, vr, cleaned))
        self.record(level.prefix, tag, "C", label)


@lru_cache(maxsize=65536)
def _applied(prefix: str, tag: int, action: str, rule: str) -> AppliedAction:
    """The record of one action; cached, since every instance of a series repeats them.

    AppliedAction is frozen, so instances (and results) can share one.
    """
    tag_text = format_tag(tag)
    return AppliedAction(
        path=prefix + tag_text, tag=tag_text, keyword=keyword_of(tag), action=action, rule=rule
    )


@lru_cache(maxsize=4096)
def _decision(rule: TableRule, attr_type: int) -> tuple[str, str]:
    """The action a rule resolves to for an attribute Type, and how the audit names it.

    Cached: a series repeats the same tags in every instance.
    """
    code = resolve_code(rule.code, attr_type)
    label = rule.label if code == rule.code else f"{rule.label} -> {code} (Type {attr_type})"
    return code, label
