"""The strict walk over a data set's bytes: elements, sequences, items and fragments.

:func:`radstream.dicom.layout.scan_layout` finds where the data set starts and how it is encoded
(preamble, meta header, transfer syntax, DEFLATE); :class:`LayoutWalker` then walks every
element header, sequence, item and fragment (PS3.5 section 7), following pydicom's tolerances,
and raises unless each ends exactly where its length says. On the way it measures element sizes
and the private data into the :class:`~radstream.dicom.layout.Layout`, so oversized input is
refused before pydicom allocates anything for it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from pydicom.datadict import dictionary_VR

from radstream.dicom.errors import (
    MalformedDicomError,
    OversizedElementError,
    OversizedPrivateDataError,
    TruncatedDicomError,
)

if TYPE_CHECKING:
    from radstream.dicom.layout import Layout, LayoutLimits

__all__ = [
    "BULK_TAGS",
    "LONG_VRS",
    "UNDEFINED_LENGTH",
    "Encoding",
    "LayoutWalker",
    "dictionary_vr",
    "is_vr",
    "tag_text",
]

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
# Elements whose size is bounded by the file limit only: images, waveforms, spectra, documents.
BULK_TAGS = frozenset(
    {
        0x7FE00008,  # Float Pixel Data
        0x7FE00009,  # Double Float Pixel Data
        0x7FE00010,  # Pixel Data
        0x54001010,  # Waveform Data
        0x56000020,  # Spectroscopy Data
        0x00420011,  # Encapsulated Document
    }
)
# VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 Table 7.1-1).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_MAX_DEPTH = 64  # sequences nested deeper than any IOD defines are an attack, not an image
# Compiled once per byte order (little endian True/False): a format string costs a cache lookup
# on every call.
_TAG = {True: struct.Struct("<HH"), False: struct.Struct(">HH")}
_LONG = {True: struct.Struct("<L"), False: struct.Struct(">L")}
_SHORT = {True: struct.Struct("<H"), False: struct.Struct(">H")}
_ITEM_HEADER = {True: struct.Struct("<HHL"), False: struct.Struct(">HHL")}


@dataclass(frozen=True, kw_only=True)
class Encoding:
    """How the elements of a data set are written: VR implicit or explicit, and byte order."""

    implicit: bool
    little: bool

    @property
    def endian(self) -> str:
        """The :mod:`struct` byte-order prefix."""
        return "<" if self.little else ">"


def is_vr(raw: bytes) -> bool:
    """Two uppercase ASCII letters: what pydicom takes for an explicit VR."""
    return len(raw) == 2 and 0x40 < raw[0] < 0x5B and 0x40 < raw[1] < 0x5B


@lru_cache(maxsize=16384)
def dictionary_vr(tag: int) -> str:
    """The dictionary VR of ``tag``, "" when the dictionary does not know it (cached)."""
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


def tag_text(tag: int) -> str:
    """``(gggg,eeee)`` in upper-case hex, for messages."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class LayoutWalker:
    """Recursive walk over data sets, sequences, items and fragments."""

    def __init__(
        self,
        data: bytes,
        limits: LayoutLimits,
        layout: Layout,
        *,
        detect_encoding: bool = True,
        note_order: bool = False,
    ) -> None:
        self.data = data
        self.limits = limits
        self.layout = layout
        self.detect_encoding = detect_encoding
        # Whether to keep tags_ascending and known_tags (a dictionary lookup per top-level
        # element): only telling a bare data set from other bytes needs them.
        self.note_order = note_order
        self.tags_ascending = True
        self.known_tags = 0

    def dataset(
        self,
        position: int,
        end: int,
        encoding: Encoding,
        *,
        top_level: bool = False,
        in_item: bool = False,
        depth: int = 0,
        in_private: bool = False,
    ) -> int:
        """Walk elements from ``position``; stop at ``end`` or, ``in_item``, at an item delimiter.

        Returns the offset just past the data set (past the item delimiter when one ends it).
        """
        if depth > _MAX_DEPTH:
            raise MalformedDicomError(f"sequences nest deeper than {_MAX_DEPTH} levels")
        encoding = self._detect(position, end, encoding, top_level=top_level)
        previous = -1
        unpack_tag = _TAG[encoding.little].unpack_from
        data = self.data
        note_order = top_level and self.note_order
        while position < end:
            if end - position < 8:
                raise TruncatedDicomError(
                    f"data ends {end - position} byte(s) into an element header at offset "
                    f"{position}"
                )
            group, element = unpack_tag(data, position)
            tag = group << 16 | element
            if tag == ITEM_DELIMITER:
                if in_item:
                    return position + 8
                raise MalformedDicomError(f"item delimiter outside an item at offset {position}")
            if tag in (ITEM, SEQUENCE_DELIMITER):
                raise MalformedDicomError(
                    f"item tag {tag_text(tag)} where an element was expected at offset {position}"
                )
            if note_order:
                self._note_order(tag, previous)
                previous = tag
            position = self.element(
                position, end, encoding, tag, depth=depth, in_private=in_private
            )
        if in_item:
            raise TruncatedDicomError(
                f"data ends inside a sequence item of undefined length (offset {end})"
            )
        return position

    def _detect(self, position: int, end: int, encoding: Encoding, *, top_level: bool) -> Encoding:
        """Follow pydicom: a data set's first element tells explicit from implicit VR."""
        if not self.detect_encoding or end - position < 6:
            return encoding
        if not top_level and encoding.implicit:
            return encoding  # sequences never switch from implicit to explicit
        found_implicit = not is_vr(self.data[position + 4 : position + 6])
        if found_implicit == encoding.implicit:
            return encoding
        self.layout.notes.append("VR encoding differs from the transfer syntax")
        return Encoding(implicit=found_implicit, little=encoding.little)

    def _note_order(self, tag: int, previous: int) -> None:
        if tag <= previous:
            self.tags_ascending = False
        try:
            dictionary_VR(tag)
        except KeyError:
            return
        self.known_tags += 1

    def element(
        self,
        position: int,
        end: int,
        encoding: Encoding,
        tag: int,
        *,
        depth: int,
        in_private: bool,
    ) -> int:
        """Walk one element at ``position`` and return the offset just past it."""
        data = self.data
        vr: bytes | None = None
        raw_vr = data[position + 4 : position + 6]
        # is_vr, inlined: two uppercase ASCII letters (the slice is 2 bytes: end - position >= 8)
        if encoding.implicit or not (0x40 < raw_vr[0] < 0x5B and 0x40 < raw_vr[1] < 0x5B):
            (length,) = _LONG[encoding.little].unpack_from(data, position + 4)
            start = position + 8
        else:
            vr = raw_vr
            if vr in LONG_VRS:
                if end - position < 12:
                    raise TruncatedDicomError(
                        f"data ends inside the header of element {tag_text(tag)} at offset "
                        f"{position}"
                    )
                (length,) = _LONG[encoding.little].unpack_from(data, position + 8)
                start = position + 12
            else:
                (length,) = _SHORT[encoding.little].unpack_from(data, position + 6)
                start = position + 8
        private = (tag >> 16) % 2 == 1
        if length == UNDEFINED_LENGTH:
            after = self.items(start, end, encoding, tag, vr, depth=depth, in_private=private)
        else:
            if start + length > end:
                raise TruncatedDicomError(
                    f"element {tag_text(tag)} at offset {position} declares {length} bytes "
                    f"but only {end - start} remain"
                )
            after = start + length
            if length and self._is_sequence(tag, vr, length):
                self.items(
                    start, after, encoding, tag, vr, depth=depth, in_private=private, bounded=True
                )
        size = after - position
        self._measure(tag, size, private=private, in_private=in_private, depth=depth)
        if depth == 0 and tag == 0x7FE00010:
            self.layout.pixel_data_encapsulated = length == UNDEFINED_LENGTH
            self.layout.pixel_data_length = None if length == UNDEFINED_LENGTH else length
        return after

    def _is_sequence(self, tag: int, vr: bytes | None, length: int) -> bool:
        if length == 0:
            return False
        if vr is not None:
            return vr == b"SQ"
        return dictionary_vr(tag) == "SQ"  # "" when unknown: an implicit private element of
        # defined length is read by pydicom as bytes

    def items(
        self,
        position: int,
        end: int,
        encoding: Encoding,
        tag: int,
        vr: bytes | None,
        *,
        depth: int,
        in_private: bool,
        bounded: bool = False,
    ) -> int:
        """Walk the items of a sequence or the fragments of encapsulated data.

        Unbounded (undefined length), the walk ends past a sequence delimiter; bounded, it must
        end exactly at ``end``.
        """
        # PS3.5 6.2.2: a UN element of undefined length holds an implicit VR little endian SQ.
        nested = Encoding(implicit=True, little=True) if vr == b"UN" else encoding
        data = self.data
        unpack_item = _ITEM_HEADER[encoding.little].unpack_from
        while position < end:
            if end - position < 8:
                raise TruncatedDicomError(
                    f"data ends inside an item header of {tag_text(tag)} at offset {position}"
                )
            group, element, length = unpack_item(data, position)
            item_tag = group << 16 | element
            start = position + 8
            if item_tag == SEQUENCE_DELIMITER and not bounded:
                return start
            if item_tag != ITEM:
                raise MalformedDicomError(
                    f"{tag_text(tag)} holds {tag_text(item_tag)} at offset {position} where "
                    "an item was expected"
                )
            if length == UNDEFINED_LENGTH:
                position = self.dataset(
                    start,
                    end,
                    nested,
                    in_item=True,
                    depth=depth + 1,
                    in_private=in_private,
                )
                continue
            if start + length > end:
                raise TruncatedDicomError(
                    f"an item of {tag_text(tag)} at offset {position} declares {length} bytes "
                    f"but only {end - start} remain"
                )
            if self._holds_datasets(tag, vr):
                self.dataset(start, start + length, nested, depth=depth + 1, in_private=in_private)
            position = start + length
        if not bounded:
            raise TruncatedDicomError(f"data ends before the sequence delimiter of {tag_text(tag)}")
        return position

    def _holds_datasets(self, tag: int, vr: bytes | None) -> bool:
        """Items of a sequence hold data sets; fragments of encapsulated data hold bytes."""
        if vr is not None:
            return vr in (b"SQ", b"UN")
        if tag in BULK_TAGS:
            return False
        known = dictionary_vr(tag)
        # An implicit private element made of items is a sequence (pydicom reads it so too).
        return known == "SQ" or not known

    def _measure(self, tag: int, size: int, *, private: bool, in_private: bool, depth: int) -> None:
        self.layout.element_count += 1
        if tag not in BULK_TAGS or depth > 0:
            self.layout.largest_element = max(self.layout.largest_element, size)
            if size > self.limits.max_element_bytes:
                raise OversizedElementError(
                    f"element {tag_text(tag)} spans {size} bytes, more than the limit of "
                    f"{self.limits.max_element_bytes}; raise RADSTREAM_DEID_MAX_ELEMENT_BYTES "
                    "if such elements are expected"
                )
        if private and not in_private:
            self.layout.private_bytes += size
            if self.layout.private_bytes > self.limits.max_private_bytes:
                raise OversizedPrivateDataError(
                    f"private elements span more than {self.limits.max_private_bytes} bytes "
                    f"(reached at {tag_text(tag)}); raise RADSTREAM_DEID_MAX_PRIVATE_BYTES if "
                    "such private blocks are expected"
                )
