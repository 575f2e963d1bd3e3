"""The byte layout of a DICOM Part 10 file, walked strictly before pydicom parses it.

pydicom reads leniently on purpose: it stops silently when fewer than 8 bytes are left for an
element header, hands back a short value when the file ends inside one, and only warns when a
sequence runs off the end. For a de-identifier that means a cut-off file could be released as
if it were whole. :func:`scan_layout` walks every element header, sequence, item and fragment
(PS3.5 section 7) and raises unless the data set ends exactly where the bytes do. On the way
it measures element sizes and the private data, so oversized input is refused before pydicom
allocates anything for it.

It mirrors pydicom's tolerances where pydicom reads a file correctly (an explicit-VR file whose
sequences are implicit, a VR of ``UN`` with undefined length read as implicit-VR sequence), so
a file is refused here only when pydicom would misread it too.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR
from pydicom.uid import UID, AllTransferSyntaxes

from radstream.deid.errors import (
    MalformedDicomError,
    MissingFileMetaError,
    NotDicomError,
    OversizedElementError,
    OversizedFileError,
    OversizedPrivateDataError,
    TruncatedDicomError,
    UnsupportedTransferSyntaxError,
)

__all__ = [
    "SUPPORTED_TRANSFER_SYNTAXES",
    "Layout",
    "LayoutLimits",
    "scan_bare_dataset",
    "scan_layout",
]

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
TRANSFER_SYNTAX_UID = 0x00020010
# Elements whose size is bounded by the file limit only: images, waveforms, spectra, documents.
_BULK_TAGS = frozenset(
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
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_MAX_DEPTH = 64  # sequences nested deeper than any IOD defines are an attack, not an image

# Transfer syntaxes whose pixel data travels somewhere else (JPIP: a URL to a pixel server);
# the pixels cannot be assessed for burned-in text, so such instances are refused.
_REFERENCED_PIXEL_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.94",  # JPIP Referenced
        "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
        "1.2.840.10008.1.2.4.204",  # JPIP HTJ2K Referenced
        "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
    }
)

SUPPORTED_TRANSFER_SYNTAXES: frozenset[str] = frozenset(
    str(uid) for uid in AllTransferSyntaxes if str(uid) not in _REFERENCED_PIXEL_SYNTAXES
)
"""Every transfer syntax pydicom reads and writes, except those with pixels held elsewhere.

Metadata de-identification never decodes pixel data, so compressed syntaxes pass through as
they are.
"""


@dataclass(frozen=True, kw_only=True)
class LayoutLimits:
    """Size limits applied while walking the bytes."""

    max_file_bytes: int
    max_element_bytes: int
    max_private_bytes: int


@dataclass(kw_only=True)
class Layout:
    """What the walk learned: where the data set starts, its encoding, and its sizes."""

    transfer_syntax: UID | None = None
    dataset_offset: int = 0
    element_count: int = 0
    private_bytes: int = 0
    largest_element: int = 0
    pixel_data_length: int | None = None  # defined length of top-level Pixel Data, if any
    pixel_data_encapsulated: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class _Encoding:
    implicit: bool
    little: bool

    @property
    def endian(self) -> str:
        return "<" if self.little else ">"


def scan_layout(data: bytes, limits: LayoutLimits) -> Layout:
    """Walk a DICOM Part 10 file and return its layout; raise an InvalidInstanceError if broken.

    Raises
    ------
    NotDicomError, MissingFileMetaError, TruncatedDicomError, MalformedDicomError,
    OversizedFileError, OversizedElementError, OversizedPrivateDataError
        Each names the offset, tag or size at fault, never a value.
    """
    if len(data) > limits.max_file_bytes:
        raise OversizedFileError(
            f"file holds {len(data)} bytes, more than the limit of {limits.max_file_bytes}; "
            "raise RADSTREAM_DEID_MAX_FILE_BYTES if such files are expected"
        )
    if len(data) < PREAMBLE_LENGTH + len(MAGIC) or data[PREAMBLE_LENGTH:132] != MAGIC:
        _classify_without_magic(data, limits)
    layout = Layout()
    position, transfer_syntax = _scan_meta(data, layout)
    _require_supported(transfer_syntax)
    layout.transfer_syntax = transfer_syntax
    layout.dataset_offset = position
    body = data
    if transfer_syntax.is_deflated:
        body = _inflate(data[position:], limits.max_file_bytes)
        position = 0
    encoding = _Encoding(
        implicit=transfer_syntax.is_implicit_VR, little=transfer_syntax.is_little_endian
    )
    walker = _Walker(body, limits, layout)
    walker.dataset(position, len(body), encoding, top_level=True)
    return layout


def scan_bare_dataset(data: bytes, limits: LayoutLimits) -> bool:
    """Tell whether ``data`` walks cleanly as a data set without meta header (any encoding)."""
    for encoding in (
        _Encoding(implicit=True, little=True),
        _Encoding(implicit=False, little=True),
        _Encoding(implicit=False, little=False),
    ):
        layout = Layout()
        walker = _Walker(data, limits, layout, detect_encoding=False)
        try:
            walker.dataset(0, len(data), encoding, top_level=True)
        except (MalformedDicomError, TruncatedDicomError, OversizedElementError):
            continue
        if layout.element_count >= 2 and walker.tags_ascending and walker.known_tags >= 1:
            return True
    return False


def _classify_without_magic(data: bytes, limits: LayoutLimits) -> None:
    """Raise the right error for bytes without ``DICM`` at offset 128."""
    if scan_bare_dataset(data, limits) or (
        len(data) > PREAMBLE_LENGTH and scan_bare_dataset(data[PREAMBLE_LENGTH:], limits)
    ):
        raise MissingFileMetaError(
            "the data set has no DICOM Part 10 header (no 'DICM' at offset 128), so its "
            "transfer syntax is unknown; re-send it as a Part 10 file"
        )
    raise NotDicomError(
        f"{len(data)} bytes with no 'DICM' marker at offset 128 that do not parse as a DICOM "
        "data set"
    )


def _scan_meta(data: bytes, layout: Layout) -> tuple[int, UID]:
    """Walk group 0002 (always explicit VR little endian) and return where the data set starts."""
    position = PREAMBLE_LENGTH + len(MAGIC)
    transfer_syntax: bytes | None = None
    while position + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, position)
        if group != 0x0002:
            break
        vr = data[position + 4 : position + 6]
        if not _is_vr(vr):
            raise MissingFileMetaError(
                f"File Meta Information element at offset {position} is not explicit VR "
                "little endian, so the transfer syntax cannot be read"
            )
        if vr in _LONG_VRS:
            if position + 12 > len(data):
                raise TruncatedDicomError(f"file ends inside the meta header at {position}")
            (length,) = struct.unpack_from("<L", data, position + 8)
            start = position + 12
        else:
            (length,) = struct.unpack_from("<H", data, position + 6)
            start = position + 8
        if length == UNDEFINED_LENGTH or start + length > len(data):
            raise TruncatedDicomError(
                f"file ends inside meta element (0002,{element:04X}) at offset {position}"
            )
        if group << 16 | element == TRANSFER_SYNTAX_UID:
            transfer_syntax = data[start : start + length]
        layout.element_count += 1
        position = start + length
    if transfer_syntax is None:
        raise MissingFileMetaError(
            "the File Meta Information has no Transfer Syntax UID (0002,0010), so the data "
            "set's encoding is unknown; re-send the instance with a complete meta header"
        )
    uid = UID(transfer_syntax.decode("ascii", errors="replace").strip("\0 "))
    return position, uid


def _require_supported(transfer_syntax: UID) -> None:
    if str(transfer_syntax) not in SUPPORTED_TRANSFER_SYNTAXES:
        known = "a known" if transfer_syntax.is_transfer_syntax else "an unknown"
        raise UnsupportedTransferSyntaxError(
            f"transfer syntax {transfer_syntax} is {known} syntax radstream does not rewrite; "
            "ask the sender to transmit in Explicit VR Little Endian (1.2.840.10008.1.2.1)"
        )


def _inflate(compressed: bytes, max_bytes: int) -> bytes:
    """Inflate a deflated data set (raw DEFLATE, PS3.5 A.5), refusing bombs and cut streams."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(compressed, max_bytes + 1)
    except zlib.error as exc:
        raise MalformedDicomError("the deflated data set does not inflate") from exc
    if len(inflated) > max_bytes:
        raise OversizedFileError(
            f"the deflated data set inflates past the limit of {max_bytes} bytes"
        )
    if not inflater.eof:
        raise TruncatedDicomError("the deflated data set ends before its DEFLATE stream does")
    return inflated


def _is_vr(raw: bytes) -> bool:
    """Two uppercase ASCII letters: what pydicom takes for an explicit VR."""
    return len(raw) == 2 and 0x40 < raw[0] < 0x5B and 0x40 < raw[1] < 0x5B


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _Walker:
    """Recursive walk over data sets, sequences, items and fragments."""

    def __init__(
        self, data: bytes, limits: LayoutLimits, layout: Layout, *, detect_encoding: bool = True
    ) -> None:
        self.data = data
        self.limits = limits
        self.layout = layout
        self.detect_encoding = detect_encoding
        self.tags_ascending = True
        self.known_tags = 0

    def dataset(
        self,
        position: int,
        end: int,
        encoding: _Encoding,
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
        while position < end:
            if end - position < 8:
                raise TruncatedDicomError(
                    f"data ends {end - position} byte(s) into an element header at offset "
                    f"{position}"
                )
            group, element = struct.unpack_from(encoding.endian + "HH", self.data, position)
            tag = group << 16 | element
            if tag == ITEM_DELIMITER:
                if in_item:
                    return position + 8
                raise MalformedDicomError(f"item delimiter outside an item at offset {position}")
            if tag in (ITEM, SEQUENCE_DELIMITER):
                raise MalformedDicomError(
                    f"item tag {_tag_text(tag)} where an element was expected at offset {position}"
                )
            if top_level:
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

    def _detect(
        self, position: int, end: int, encoding: _Encoding, *, top_level: bool
    ) -> _Encoding:
        """Follow pydicom: a data set's first element tells explicit from implicit VR."""
        if not self.detect_encoding or end - position < 6:
            return encoding
        if not top_level and encoding.implicit:
            return encoding  # sequences never switch from implicit to explicit
        found_implicit = not _is_vr(self.data[position + 4 : position + 6])
        if found_implicit == encoding.implicit:
            return encoding
        self.layout.notes.append("VR encoding differs from the transfer syntax")
        return _Encoding(implicit=found_implicit, little=encoding.little)

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
        encoding: _Encoding,
        tag: int,
        *,
        depth: int,
        in_private: bool,
    ) -> int:
        """Walk one element at ``position`` and return the offset just past it."""
        data = self.data
        vr: bytes | None = None
        raw_vr = data[position + 4 : position + 6]
        if encoding.implicit or not _is_vr(raw_vr):
            (length,) = struct.unpack_from(encoding.endian + "L", data, position + 4)
            start = position + 8
        else:
            vr = raw_vr
            if vr in _LONG_VRS:
                if end - position < 12:
                    raise TruncatedDicomError(
                        f"data ends inside the header of element {_tag_text(tag)} at offset "
                        f"{position}"
                    )
                (length,) = struct.unpack_from(encoding.endian + "L", data, position + 8)
                start = position + 12
            else:
                (length,) = struct.unpack_from(encoding.endian + "H", data, position + 6)
                start = position + 8
        private = (tag >> 16) % 2 == 1
        if length == UNDEFINED_LENGTH:
            after = self.items(start, end, encoding, tag, vr, depth=depth, in_private=private)
        else:
            if start + length > end:
                raise TruncatedDicomError(
                    f"element {_tag_text(tag)} at offset {position} declares {length} bytes "
                    f"but only {end - start} remain"
                )
            after = start + length
            if self._is_sequence(tag, vr, length):
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
        try:
            return dictionary_VR(tag) == "SQ"
        except KeyError:
            return False  # pydicom reads an implicit private element of defined length as bytes

    def items(
        self,
        position: int,
        end: int,
        encoding: _Encoding,
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
        nested = _Encoding(implicit=True, little=True) if vr == b"UN" else encoding
        data = self.data
        while position < end:
            if end - position < 8:
                raise TruncatedDicomError(
                    f"data ends inside an item header of {_tag_text(tag)} at offset {position}"
                )
            group, element, length = struct.unpack_from(encoding.endian + "HHL", data, position)
            item_tag = group << 16 | element
            start = position + 8
            if item_tag == SEQUENCE_DELIMITER and not bounded:
                return start
            if item_tag != ITEM:
                raise MalformedDicomError(
                    f"{_tag_text(tag)} holds {_tag_text(item_tag)} at offset {position} where "
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
                    f"an item of {_tag_text(tag)} at offset {position} declares {length} bytes "
                    f"but only {end - start} remain"
                )
            if self._holds_datasets(tag, vr):
                self.dataset(start, start + length, nested, depth=depth + 1, in_private=in_private)
            position = start + length
        if not bounded:
            raise TruncatedDicomError(
                f"data ends before the sequence delimiter of {_tag_text(tag)}"
            )
        return position

    def _holds_datasets(self, tag: int, vr: bytes | None) -> bool:
        """Items of a sequence hold data sets; fragments of encapsulated data hold bytes."""
        if vr is not None:
            return vr in (b"SQ", b"UN")
        if tag in _BULK_TAGS:
            return False
        try:
            return dictionary_VR(tag) == "SQ"
        except KeyError:
            return True  # an implicit private element made of items is a sequence (pydicom too)

    def _measure(self, tag: int, size: int, *, private: bool, in_private: bool, depth: int) -> None:
        self.layout.element_count += 1
        if tag not in _BULK_TAGS or depth > 0:
            self.layout.largest_element = max(self.layout.largest_element, size)
            if size > self.limits.max_element_bytes:
                raise OversizedElementError(
                    f"element {_tag_text(tag)} spans {size} bytes, more than the limit of "
                    f"{self.limits.max_element_bytes}; raise RADSTREAM_DEID_MAX_ELEMENT_BYTES "
                    "if such elements are expected"
                )
        if private and not in_private:
            self.layout.private_bytes += size
            if self.layout.private_bytes > self.limits.max_private_bytes:
                raise OversizedPrivateDataError(
                    f"private elements span more than {self.limits.max_private_bytes} bytes "
                    f"(reached at {_tag_text(tag)}); raise RADSTREAM_DEID_MAX_PRIVATE_BYTES if "
                    "such private blocks are expected"
                )
