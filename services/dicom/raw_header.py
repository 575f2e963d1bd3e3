"""radstream's own reading of a DICOM Part 10 file: every element's tag, VR and value bytes.

Why not pydicom: the de-identifier reads back every file it writes and searches every value of
it for the original's PHI, before anything is released. pydicom's full parse of a 0.5 MB CT
slice (every element converted, so that nothing can fail later) costs about as much as
de-identifying it, and the search then walks pydicom's objects again. What the search needs is
smaller: the structure proved whole, and the bytes of every value with the VR and character set
that say how to read them. :func:`read_raw_instance` gives exactly that, after
:func:`~radstream.dicom.layout.scan_layout` has walked the same bytes strictly (so every length,
item and delimiter is already known to be right), in one more pass that decodes nothing.

It follows pydicom where pydicom reads a file correctly, so both see the same elements: the
first element of each data set tells explicit from implicit VR; an explicit-VR element whose VR
bytes are not two capital letters is read as implicit; a ``UN`` element of undefined length
holds an implicit VR little endian sequence; an implicit private element made of items is a
sequence; a private creator is ``LO``; another private element read implicitly is ``UN``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import NamedTuple

from pydicom.dataset import Dataset

from radstream.dicom.errors import MalformedDicomError
from radstream.dicom.layout import Layout, scan_layout
from radstream.dicom.layout_walk import (
    BULK_TAGS,
    LONG_VRS,
    UNDEFINED_LENGTH,
    dictionary_vr,
    is_vr,
    tag_text,
)
from radstream.dicom.reader import (
    DEFAULT_READER_LIMITS,
    ReaderLimits,
    parse_dataset,
    read_instance,
    require_whole,
)

__all__ = [
    "RawDataset",
    "RawElement",
    "RawInstance",
    "decoded_pixel_bytes",
    "read_instance_lazily",
    "read_raw_instance",
]

PIXEL_DATA = 0x7FE00010
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_META_START = 132  # preamble and "DICM"
_TAG = {True: struct.Struct("<HH"), False: struct.Struct(">HH")}
_LONG = {True: struct.Struct("<L"), False: struct.Struct(">L")}
_SHORT = {True: struct.Struct("<H"), False: struct.Struct(">H")}
_ITEM_HEADER = {True: struct.Struct("<HHL"), False: struct.Struct(">HHL")}
# Sample data, kept as a view of the file (see RawElement).
_SAMPLE_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


class RawElement(NamedTuple):
    """One element as the file holds it.

    ``vr`` is the explicit VR, or for implicit VR the dictionary's (an ambiguous one such as
    ``US or SS`` resolved to its first choice), ``LO`` for a private creator and ``UN`` for an
    element the dictionary does not know. ``value`` is the value's bytes (for encapsulated pixel
    data, its items as written); a sequence has ``items`` and an empty ``value``. Sample data
    (Pixel Data, Float and Double Float Pixel Data) is not copied: ``value`` is empty and
    ``samples`` a view of the file's bytes -- copying half a megabyte per CT slice cost more
    than reading the rest of its header.
    """

    tag: int
    vr: str
    value: bytes
    items: tuple[RawDataset, ...] | None = None
    samples: memoryview | None = None


class RawDataset(NamedTuple):
    """The elements of a data set or sequence item, in file order.

    Named tuples, not dataclasses, here and in :class:`RawElement`: a CT slice has a hundred
    elements, and a frozen dataclass costs several times a tuple to build.
    """

    elements: tuple[RawElement, ...]

    def get(self, tag: int) -> RawElement | None:
        """The element ``tag`` of this data set (not of its items), or None."""
        for element in self.elements:
            if element.tag == tag:
                return element
        return None


@dataclass(frozen=True, kw_only=True)
class RawInstance:
    """A Part 10 file read by :func:`read_raw_instance`; pydicom's parse of it on demand."""

    data: bytes = field(repr=False)
    limits: ReaderLimits = field(repr=False)
    layout: Layout
    meta: RawDataset
    dataset: RawDataset
    little_endian: bool

    @cached_property
    def parsed(self) -> Dataset:
        """The strict pydicom parse of the same bytes, for what needs pydicom (decoding pixels).

        Raises
        ------
        InvalidInstanceError
            pydicom cannot parse an element (see :func:`~radstream.dicom.reader.read_instance`).
        """
        return read_instance(self.data, limits=self.limits)

    def has(self, tag: int) -> bool:
        """Whether the top-level data set holds ``tag``."""
        return self.dataset.get(tag) is not None

    @property
    def top_level_tags(self) -> tuple[int, ...]:
        """The tags of the top-level data set, in file order."""
        return tuple(element.tag for element in self.dataset.elements)

    @property
    def pixel_data(self) -> memoryview | None:
        """The top-level Pixel Data's bytes (encapsulated: its items), None without any."""
        return self.samples(PIXEL_DATA)

    def samples(self, tag: int) -> memoryview | None:
        """The bytes of the top-level sample data ``tag`` (a view, not a copy), or None."""
        element = self.dataset.get(tag)
        return None if element is None else element.samples

    def text(self, tag: int) -> str:
        """A top-level value read as ASCII, padding stripped; "" when absent (for UIDs, codes)."""
        element = self.dataset.get(tag)
        if element is None:
            return ""
        return element.value.decode("latin_1").strip(" \x00")

    def number(self, tag: int) -> int | None:
        """A top-level US value (Rows, Columns, Bits Allocated ...), None when absent or odd."""
        element = self.dataset.get(tag)
        if element is None or len(element.value) != 2:
            return None
        return int(_SHORT[self.little_endian].unpack(element.value)[0])


def read_raw_instance(data: bytes, limits: ReaderLimits = DEFAULT_READER_LIMITS) -> RawInstance:
    """Walk ``data`` strictly (:func:`scan_layout`), then read every element's value bytes.

    Raises
    ------
    InvalidInstanceError
        Whatever :func:`scan_layout` raises for a broken, truncated or oversized file.
    """
    layout = scan_layout(data, limits.layout_limits())
    syntax = layout.transfer_syntax
    if syntax is None:  # scan_layout always sets it; a file without one was refused there
        raise MalformedDicomError("the file names no transfer syntax")
    meta, _ = _Reader(data, little=True).dataset(_META_START, layout.dataset_offset, implicit=False)
    body, position = data, layout.dataset_offset
    if syntax.is_deflated:
        from radstream.dicom.layout import _inflate  # noqa: PLC0415 -- rare: deflated files only

        body, position = _inflate(data[position:], limits.max_file_bytes), 0
    little = bool(syntax.is_little_endian)
    reader = _Reader(body, little=little)
    dataset, _ = reader.dataset(position, len(body), implicit=bool(syntax.is_implicit_VR), top=True)
    return RawInstance(
        data=data, limits=limits, layout=layout, meta=meta, dataset=dataset, little_endian=little
    )


def decoded_pixel_bytes(instance: RawInstance) -> int:
    """Bytes the top-level frames take decoded, one array element per sample; 0 if unknown.

    Rows x Columns x Number of Frames x Samples per Pixel x whole bytes per sample (a 1-bit
    sample decodes to a byte), from the header alone: nothing is decoded. 0 without Pixel
    Data, or when an attribute is missing or unreadable (the decoder refuses such files too).
    """
    if not instance.has(PIXEL_DATA):
        return 0
    rows, columns = instance.number(0x00280010), instance.number(0x00280011)
    bits, samples = instance.number(0x00280100), instance.number(0x00280002)
    if not (rows and columns and bits and samples):
        return 0
    frames_text = instance.text(0x00280008)
    frames = int(frames_text) if frames_text.isdigit() else 1
    return rows * columns * max(frames, 1) * samples * max(1, -(-bits // 8))


def read_instance_lazily(
    data: bytes, limits: ReaderLimits = DEFAULT_READER_LIMITS
) -> tuple[Dataset, RawInstance]:
    """:func:`~radstream.dicom.reader.read_instance`'s guarantees, at a fraction of its cost.

    The strict reader converts every element with pydicom so that no parse error surfaces
    later. Here the structure is walked strictly and every value's bytes read by
    :func:`read_raw_instance`, every value is proved convertible from those bytes (what makes
    pydicom's conversion raise: a VR it does not know, or numbers whose length is not a
    multiple of their size), and pydicom's data set converts each element when first used --
    most of a header is removed by the profile unread. The values themselves (for collecting
    PHI) come from the raw instance, which reads them as pydicom does.

    Raises
    ------
    InvalidInstanceError
        As :func:`~radstream.dicom.reader.read_instance`, for the same files.
    """
    raw = read_raw_instance(data, limits)
    _require_convertible(raw.meta, "")
    _require_convertible(raw.dataset, "")
    dataset = parse_dataset(data, convert=False)
    require_whole(dataset, raw.layout)
    return dataset, raw


# What pydicom's conversion of binary numbers demands: a whole number of values.
_NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "UV": 8, "SV": 8, "FL": 4, "FD": 8, "AT": 4}
_KNOWN_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
     "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
     "UR", "US", "UT", "UV"}
)  # fmt: skip


def _require_convertible(ds: RawDataset, prefix: str) -> None:
    """Raise where pydicom's conversion of an element would (see read_instance_lazily).

    The element's path is formatted only for the message: every element of every slice passes
    through here, and building a path for each cost more than the checks.
    """
    for element in ds.elements:
        if element.items is not None:
            for index, item in enumerate(element.items):
                _require_convertible(item, f"{prefix}{tag_text(element.tag)}[{index}]/")
            continue
        vr = element.vr
        if vr not in _KNOWN_VRS:
            where = f"{prefix}{tag_text(element.tag)}"
            raise MalformedDicomError(f"element {where} has a VR pydicom does not know")
        size = _NUMBER_SIZES.get(vr)
        if size and len(element.value) % size and " or " not in dictionary_vr(element.tag):
            where = f"{prefix}{tag_text(element.tag)}"
            raise MalformedDicomError(
                f"element {where} holds {len(element.value)} bytes, not a whole number of "
                f"{vr} values"
            )


@lru_cache(maxsize=16384)
def _implicit_vr(tag: int) -> str:
    """The VR pydicom gives ``tag`` read implicitly (see the module docstring)."""
    if (tag >> 16) & 1 and 0x0010 <= (tag & 0xFFFF) <= 0x00FF:
        return "LO"  # a private creator
    vr = dictionary_vr(tag) or "UN"
    return vr.split(" or ", 1)[0]


class _Reader:
    """The value walk; scan_layout proved the structure, so nothing is checked twice."""

    def __init__(self, data: bytes, *, little: bool) -> None:
        self.data = data
        self.view = memoryview(data)
        self.little = little

    def dataset(
        self, position: int, end: int, *, implicit: bool, top: bool = False, in_item: bool = False
    ) -> tuple[RawDataset, int]:
        """The elements from ``position`` to ``end`` and the offset past them.

        ``in_item``: the data set ends at an item delimiter; the offset is past it.
        """
        data = self.data
        if end - position >= 6 and (top or not implicit):
            # pydicom's rule: the first element of a data set tells explicit from implicit VR.
            implicit = not is_vr(data[position + 4 : position + 6])
        elements: list[RawElement] = []
        unpack_tag = _TAG[self.little].unpack_from
        while position < end:
            group, number = unpack_tag(data, position)
            tag = group << 16 | number
            if tag == _ITEM_DELIMITER and in_item:
                return RawDataset(tuple(elements)), position + 8
            element, position = self.element(position, end, tag, implicit=implicit)
            elements.append(element)
        return RawDataset(tuple(elements)), position

    def element(
        self, position: int, end: int, tag: int, *, implicit: bool
    ) -> tuple[RawElement, int]:
        """The element at ``position`` and the offset past it."""
        data = self.data
        raw_vr = data[position + 4 : position + 6]
        explicit = not implicit and 0x40 < raw_vr[0] < 0x5B and 0x40 < raw_vr[1] < 0x5B
        if not explicit:
            (length,) = _LONG[self.little].unpack_from(data, position + 4)
            start, vr = position + 8, _implicit_vr(tag)
        elif raw_vr in LONG_VRS:
            (length,) = _LONG[self.little].unpack_from(data, position + 8)
            start, vr = position + 12, raw_vr.decode("ascii")
        else:
            (length,) = _SHORT[self.little].unpack_from(data, position + 6)
            start, vr = position + 8, raw_vr.decode("ascii")
        if length == UNDEFINED_LENGTH:
            if explicit:
                holds_datasets = vr in ("SQ", "UN")
            else:
                known = dictionary_vr(tag)
                holds_datasets = tag not in BULK_TAGS and (known == "SQ" or not known)
            if not holds_datasets:  # encapsulated data: fragments up to the delimiter
                after = self._fragments_end(start, end)
                if tag in _SAMPLE_TAGS:
                    return RawElement(tag, vr, b"", None, self.view[start : after - 8]), after
                return RawElement(tag, vr, data[start : after - 8]), after
            # PS3.5 6.2.2: a UN element of undefined length holds an implicit VR LE sequence.
            nested_implicit = implicit or (explicit and vr == "UN")
            items, after = self.items(start, end, tag, implicit=nested_implicit, bounded=False)
            return RawElement(tag, "SQ", b"", items), after
        after = start + length
        known = dictionary_vr(tag)
        # An explicit UN of a tag the dictionary calls SQ is read by pydicom as an implicit VR
        # sequence (PS3.5 6.2.2 again); scan_layout took it for bytes, so an item here that is
        # broken raises rather than hiding.
        un_sequence = explicit and vr == "UN" and known == "SQ"
        sequence = (vr == "SQ" or un_sequence) if explicit else known == "SQ"
        if length and sequence:
            nested_implicit = implicit or un_sequence
            items, _ = self.items(start, after, tag, implicit=nested_implicit, bounded=True)
            return RawElement(tag, "SQ", b"", items), after
        if tag in _SAMPLE_TAGS:
            return RawElement(tag, vr, b"", None, self.view[start:after]), after
        return RawElement(tag, vr, data[start:after]), after

    def items(
        self, position: int, end: int, tag: int, *, implicit: bool, bounded: bool
    ) -> tuple[tuple[RawDataset, ...], int]:
        """The items of a sequence and the offset past it (past its delimiter when unbounded)."""
        data = self.data
        unpack_item = _ITEM_HEADER[self.little].unpack_from
        found: list[RawDataset] = []
        while position < end:
            group, number, length = unpack_item(data, position)
            item_tag = group << 16 | number
            start = position + 8
            if item_tag == _SEQUENCE_DELIMITER and not bounded:
                return tuple(found), start
            if item_tag != _ITEM:
                raise MalformedDicomError(f"an item of {tag_text(tag)} is not an item")
            if length == UNDEFINED_LENGTH:
                item, position = self.dataset(start, end, implicit=implicit, in_item=True)
            else:
                item, position = self.dataset(start, start + length, implicit=implicit)
                position = start + length
            found.append(item)
        return tuple(found), position

    def _fragments_end(self, position: int, end: int) -> int:
        """The offset past the sequence delimiter that ends encapsulated data."""
        data = self.data
        unpack_item = _ITEM_HEADER[self.little].unpack_from
        while position < end:
            group, number, length = unpack_item(data, position)
            position += 8
            if (group << 16 | number) == _SEQUENCE_DELIMITER:
                return position
            position += length
        raise MalformedDicomError("encapsulated data ends without its sequence delimiter")
