"""File meta information and the de-identification markers of a de-identified instance.

PS3.15 E.1.1 asks for both: the File Meta Information is replaced with a description of the
de-identifier (the original names the sending and receiving application entities, which
identify sites), and Patient Identity Removed, De-identification Method and its code sequence
say which profile and options were applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import cast

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from radstream.deid.options import BASIC_PROFILE_CODE, BASIC_PROFILE_MEANING, ProfileOption

__all__ = ["add_deid_markers", "replace_file_meta"]

Record = Callable[[int, str, str], None]  # (tag, action, rule)

_SOP_CLASS_UID = 0x00080016
_SOP_INSTANCE_UID = 0x00080018
_FILE_META_INFORMATION_VERSION = BaseTag(0x00020001)
_MEDIA_STORAGE_SOP_CLASS_UID = BaseTag(0x00020002)
_MEDIA_STORAGE_SOP_INSTANCE_UID = BaseTag(0x00020003)
_TRANSFER_SYNTAX_UID = BaseTag(0x00020010)
_IMPLEMENTATION_CLASS_UID = BaseTag(0x00020012)
_IMPLEMENTATION_VERSION_NAME = BaseTag(0x00020013)
_IMPLEMENTATION_VERSION = f"PYDICOM {pydicom.__version__}"[:16]
_PATIENT_IDENTITY_REMOVED = BaseTag(0x00120062)
_DEIDENTIFICATION_METHOD = BaseTag(0x00120063)
_DEIDENTIFICATION_METHOD_CODE_SEQUENCE = BaseTag(0x00120064)
_LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED = BaseTag(0x00280303)
_CODE_VALUE = BaseTag(0x00080100)
_CODING_SCHEME_DESIGNATOR = BaseTag(0x00080102)
_CODE_MEANING = BaseTag(0x00080104)
# What the new meta header carries over or rebuilds; every other element is dropped.
_REBUILT = frozenset({0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010})
_REBUILT |= {0x00020012, 0x00020013}  # implementation class UID and version name: ours now


def _meta_text(meta: Dataset, tag: int) -> str:
    try:
        elem = meta.get(tag)
        value = elem.value if elem is not None else None
    except Exception:  # an undecodable old value is simply not carried over
        return ""
    return str(value).strip("\x00 ") if value else ""


def _transfer_syntax(src: Dataset) -> str:
    meta = getattr(src, "file_meta", None)
    syntax = _meta_text(meta, _TRANSFER_SYNTAX_UID) if meta is not None else ""
    if syntax:
        return syntax
    # No meta header: the encoding the elements were read with decides what the raw values are.
    match src.original_encoding:
        case (True, _):
            return ImplicitVRLittleEndian
        case (False, False):
            return ExplicitVRBigEndian
        case _:
            return ExplicitVRLittleEndian


def replace_file_meta(
    src: Dataset, out: Dataset, remap: Callable[[str], str], record: Record
) -> FileMetaDataset:
    """A fresh meta header for ``out``; records what was dropped or replaced from ``src``'s."""
    old = getattr(src, "file_meta", None) or FileMetaDataset()
    # Elements are built here and handed to FileMetaDataset in one dict, in the order keyword
    # assignment would add them: a keyword assignment costs more than building the element.
    elements: dict[BaseTag, DataElement | RawDataElement] = {}

    def put(tag: BaseTag, vr: str, value: object) -> None:
        elements[tag] = DataElement(tag, vr, value)

    put(_FILE_META_INFORMATION_VERSION, "OB", b"\x00\x01")
    sop_class = out.get(_SOP_CLASS_UID)
    put(
        _MEDIA_STORAGE_SOP_CLASS_UID,
        "UI",
        UID(
            str(sop_class.value)
            if sop_class is not None
            else _meta_text(old, _MEDIA_STORAGE_SOP_CLASS_UID)
        ),
    )
    old_instance = _meta_text(old, _MEDIA_STORAGE_SOP_INSTANCE_UID)
    sop_instance = out.get(_SOP_INSTANCE_UID)
    if sop_instance is not None and sop_instance.value:
        put(_MEDIA_STORAGE_SOP_INSTANCE_UID, "UI", UID(str(sop_instance.value)))
    elif old_instance:
        put(_MEDIA_STORAGE_SOP_INSTANCE_UID, "UI", UID(remap(old_instance)))
    if old_instance:
        new_instance = elements.get(_MEDIA_STORAGE_SOP_INSTANCE_UID)
        changed = (new_instance.value if new_instance is not None else None) != old_instance
        rule = "Table E.1-1 (0002,0003) Media Storage SOP Instance UID: follows SOP Instance UID"
        record(_MEDIA_STORAGE_SOP_INSTANCE_UID, "U" if changed else "K", rule)
    put(_TRANSFER_SYNTAX_UID, "UI", UID(_transfer_syntax(src)))
    put(_IMPLEMENTATION_CLASS_UID, "UI", PYDICOM_IMPLEMENTATION_UID)
    put(_IMPLEMENTATION_VERSION_NAME, "SH", _IMPLEMENTATION_VERSION)
    meta = FileMetaDataset(elements)
    for tag in tuple(old.keys()):  # tags only: a malformed old value is never decoded
        if tag not in _REBUILT:
            record(int(tag), "X", "file meta replaced by the de-identifier's (PS3.15 E.1.1)")
    return meta


@cache
def _markers(options: frozenset[ProfileOption]) -> tuple[tuple[BaseTag, str, object], ...]:
    """(tag, VR, value) of each marker for a set of options, in the order they are set.

    They depend on the options alone, so each profile works them out once; every instance
    still gets elements (and code items) of its own. A tuple value stands for a multi-valued
    element, a tuple of (code value, meaning) pairs for the code sequence.
    """
    chosen = sorted(options, key=lambda option: option.code)
    methods = (BASIC_PROFILE_MEANING, *(option.meaning for option in chosen))
    codes = (
        (BASIC_PROFILE_CODE, BASIC_PROFILE_MEANING),
        *((option.code, option.meaning) for option in chosen),
    )
    # PS3.15 E.3.6: UNMODIFIED with full dates, MODIFIED with shifted dates; otherwise the
    # dates were removed or replaced.
    if ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES in chosen:
        dates = "UNMODIFIED"
    elif ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in chosen:
        dates = "MODIFIED"
    else:
        dates = "REMOVED"
    return (
        (_PATIENT_IDENTITY_REMOVED, "CS", "YES"),
        (_DEIDENTIFICATION_METHOD, "LO", methods),
        (_DEIDENTIFICATION_METHOD_CODE_SEQUENCE, "SQ", codes),
        (_LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED, "CS", dates),
    )


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item[_CODE_VALUE] = DataElement(_CODE_VALUE, "SH", value)
    item[_CODING_SCHEME_DESIGNATOR] = DataElement(_CODING_SCHEME_DESIGNATOR, "SH", "DCM")
    item[_CODE_MEANING] = DataElement(_CODE_MEANING, "LO", meaning)
    return item


def add_deid_markers(out: Dataset, options: Iterable[ProfileOption]) -> None:
    """Set Patient Identity Removed, De-identification Method (+ codes) and the date marker."""
    for tag, vr, marker in _markers(frozenset(options)):
        value = marker
        if vr == "SQ":
            pairs = cast(tuple[tuple[str, str], ...], marker)
            value = [_code_item(code, meaning) for code, meaning in pairs]
        elif isinstance(marker, tuple):
            value = list(marker)  # a fresh list each time: the element's value is mutable
        if tag in out:
            # The instance had the marker already: set its value the way a keyword assignment
            # does (the element keeps its VR), rather than replace it.
            setattr(out, keyword_for_tag(tag), value)
        else:
            out[tag] = DataElement(tag, vr, value)
