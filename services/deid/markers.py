"""File meta information and the de-identification markers of a de-identified instance.

PS3.15 E.1.1 asks for both: the File Meta Information is replaced with a description of the
de-identifier (the original names the sending and receiving application entities, which
identify sites), and Patient Identity Removed, De-identification Method and its code sequence
say which profile and options were applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
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
_MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
_TRANSFER_SYNTAX_UID = 0x00020010
# What the new meta header carries over or rebuilds; every other element is dropped.
_REBUILT = frozenset({0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010})
_REBUILT |= {0x00020012, 0x00020013}  # implementation class UID and version name: ours now


def _meta_text(meta: Dataset, keyword: str) -> str:
    try:
        value = meta.get(keyword)
    except Exception:  # an undecodable old value is simply not carried over
        return ""
    return str(value).strip("\x00 ") if value else ""


def _transfer_syntax(src: Dataset) -> str:
    meta = getattr(src, "file_meta", None)
    syntax = _meta_text(meta, "TransferSyntaxUID") if meta is not None else ""
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
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    sop_class = out.get(_SOP_CLASS_UID)
    meta.MediaStorageSOPClassUID = UID(
        str(sop_class.value)
        if sop_class is not None
        else _meta_text(old, "MediaStorageSOPClassUID")
    )
    old_instance = _meta_text(old, "MediaStorageSOPInstanceUID")
    sop_instance = out.get(_SOP_INSTANCE_UID)
    if sop_instance is not None and sop_instance.value:
        meta.MediaStorageSOPInstanceUID = UID(str(sop_instance.value))
    elif old_instance:
        meta.MediaStorageSOPInstanceUID = UID(remap(old_instance))
    if old_instance:
        changed = meta.get("MediaStorageSOPInstanceUID") != old_instance
        rule = "Table E.1-1 (0002,0003) Media Storage SOP Instance UID: follows SOP Instance UID"
        record(_MEDIA_STORAGE_SOP_INSTANCE_UID, "U" if changed else "K", rule)
    meta.TransferSyntaxUID = UID(_transfer_syntax(src))
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    for tag in tuple(old.keys()):  # tags only: a malformed old value is never decoded
        if tag not in _REBUILT:
            record(int(tag), "X", "file meta replaced by the de-identifier's (PS3.15 E.1.1)")
    return meta


def add_deid_markers(out: Dataset, options: Iterable[ProfileOption]) -> None:
    """Set Patient Identity Removed, De-identification Method (+ codes) and the date marker."""
    chosen = sorted(options, key=lambda option: option.code)
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = [BASIC_PROFILE_MEANING, *(option.meaning for option in chosen)]
    codes = []
    for value, meaning in [
        (BASIC_PROFILE_CODE, BASIC_PROFILE_MEANING),
        *((option.code, option.meaning) for option in chosen),
    ]:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    out.DeidentificationMethodCodeSequence = codes
    # PS3.15 E.3.6: UNMODIFIED with full dates, MODIFIED with shifted dates; otherwise the
    # dates were removed or replaced.
    if ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES in chosen:
        out.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in chosen:
        out.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        out.LongitudinalTemporalInformationModified = "REMOVED"
