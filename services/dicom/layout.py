"""The byte layout of a DICOM Part 10 file, walked strictly before pydicom parses it.

pydicom reads leniently on purpose: it stops silently when fewer than 8 bytes are left for an
element header, hands back a short value when the file ends inside one, and only warns when a
sequence runs off the end. For a de-identifier that means a cut-off file could be released as
if it were whole. :func:`scan_layout` walks every element header, sequence, item and fragment
(PS3.5 section 7) and raises unless the data set ends exactly where the bytes do. On the way
it measures element sizes and the private data, so oversized input is refused before pydicom
allocates anything for it.

This module reads the file's framing: preamble and ``DICM`` marker, the File Meta Information,
the transfer syntax, and a deflated data set's DEFLATE stream. The walk over the data set's
elements, sequences, items and fragments is :class:`radstream.dicom.layout_walk.LayoutWalker`.

It mirrors pydicom's tolerances where pydicom reads a file correctly (an explicit-VR file whose
sequences are implicit, a VR of ``UN`` with undefined length read as implicit-VR sequence), so
a file is refused here only when pydicom would misread it too.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from pydicom.uid import UID, AllTransferSyntaxes

from radstream.dicom.errors import (
    MalformedDicomError,
    MissingFileMetaError,
    NotDicomError,
    OversizedElementError,
    OversizedFileError,
    TruncatedDicomError,
    UnsupportedTransferSyntaxError,
)
from radstream.dicom.layout_walk import (
    LONG_VRS,
    UNDEFINED_LENGTH,
    Encoding,
    LayoutWalker,
    is_vr,
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
TRANSFER_SYNTAX_UID = 0x00020010

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
    encoding = Encoding(
        implicit=transfer_syntax.is_implicit_VR, little=transfer_syntax.is_little_endian
    )
    walker = LayoutWalker(body, limits, layout)
    walker.dataset(position, len(body), encoding, top_level=True)
    return layout


def scan_bare_dataset(data: bytes, limits: LayoutLimits) -> bool:
    """Tell whether ``data`` walks cleanly as a data set without meta header (any encoding)."""
    for encoding in (
        Encoding(implicit=True, little=True),
        Encoding(implicit=False, little=True),
        Encoding(implicit=False, little=False),
    ):
        layout = Layout()
        walker = LayoutWalker(data, limits, layout, detect_encoding=False, note_order=True)
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
        if not is_vr(vr):
            raise MissingFileMetaError(
                f"File Meta Information element at offset {position} is not explicit VR "
                "little endian, so the transfer syntax cannot be read"
            )
        if vr in LONG_VRS:
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
        # Named only when it is a UID: a broken length can make the element swallow the
        # header behind it, and the message must not carry that.
        named = str(transfer_syntax) if transfer_syntax.is_valid else "that is not a UID"
        raise UnsupportedTransferSyntaxError(
            f"transfer syntax {named} is {known} syntax radstream does not rewrite; "
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
