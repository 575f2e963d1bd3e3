"""radstream's writer of a Part 10 file: pydicom's bytes, without pydicom's walk.

Why not ``dcmwrite``: the de-identifier writes every instance it releases, and pydicom's writer
sends every element through generic machinery (an encoding check per data set, a buffer and a
writer lookup per element, the file meta validated and written twice) -- for a 0.5 MB CT slice
that cost more than applying the profile. Most of what is written is elements carried over as
read (pydicom's raw elements: their bytes are already encoded) and short strings and numbers the
profile made; those take a struct header and a join here.

:func:`encode_part10` writes exactly what ``dcmwrite(buffer, dataset, enforce_file_format=True)``
writes -- a test compares both on every sample file pydicom and deid-data ship -- for the
files it handles: a little-endian transfer syntax that is not deflated, each data set in the
encoding and character set it was read with. Anything else (big endian,
deflated, an encoding to change) is handed to ``dcmwrite``, and so is any single element of a
kind this module does not encode itself (person names, tags, values needing another character
set): pydicom's own element writer writes it in place.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from typing import Any

from pydicom import dcmwrite
from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

__all__ = ["encode_part10"]

PIXEL_DATA = 0x7FE00010
_PREAMBLE = b"\x00" * 128 + b"DICM"
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
_ITEM_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_SEQUENCE_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
_UNDEFINED = 0xFFFFFFFF
_IMPLICIT = struct.Struct("<HHL")
_EXPLICIT_SHORT = struct.Struct("<HH2sH")
_EXPLICIT_LONG = struct.Struct("<HH2sHL")
_LENGTH = struct.Struct("<L")
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
# pydicom writes these with its ASCII string writer (ISO 8859-1, whatever the character set);
# UI pads with NUL, the rest with a space.
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"})
# These it encodes in the data set's character set; done here only for ASCII text in a
# character set whose lower half is ASCII.
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})
_ASCII_COMPATIBLE = frozenset(
    {"iso8859", "latin_1", "utf_8", "ascii"} | {f"iso8859_{part}" for part in range(2, 17)}
)
_NUMBER_FORMATS = {
    "US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"
}  # fmt: skip
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


# (data set tag, meta tag): SOP Class UID and Media Storage SOP Class UID, the instance's too.
_SOP_IN_META = ((0x00080016, 0x00020002), (0x00080018, 0x00020003))


class _LeftToPydicomError(Exception):
    """A file this writer leaves to ``dcmwrite`` (raised before anything is returned)."""


def encode_part10(dataset: Dataset) -> bytes:
    """The Part 10 file ``dcmwrite(..., enforce_file_format=True)`` writes for ``dataset``.

    ``dataset.file_meta`` must name the transfer syntax; the meta header is written as it
    stands, with its group length.

    Raises
    ------
    Exception
        Whatever ``dcmwrite`` raises for a value it cannot encode (the caller names the element).
    """
    try:
        return _Writer.for_dataset(dataset).file(dataset)
    except _LeftToPydicomError:
        buffer = io.BytesIO()
        dcmwrite(buffer, dataset, enforce_file_format=True)
        return buffer.getvalue()


class _Writer:
    """Writes one file's elements into ``parts``, in one encoding."""

    def __init__(self, *, implicit: bool, compressed: bool) -> None:
        self.implicit = implicit
        self.compressed = compressed  # Pixel Data is encapsulated (undefined length)
        self.parts: list[bytes] = []

    @classmethod
    def for_dataset(cls, dataset: Dataset) -> _Writer:
        meta = getattr(dataset, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        if (
            not isinstance(syntax, UID)
            or syntax.is_private
            or not syntax.is_transfer_syntax
            or not syntax.is_little_endian
            or syntax.is_deflated
            or len(getattr(dataset, "preamble", None) or _PREAMBLE[:128]) != 128
            or any(tag >> 16 in (0, 2) for tag in dataset._dict)
        ):
            raise _LeftToPydicomError
        return cls(implicit=bool(syntax.is_implicit_VR), compressed=bool(syntax.is_compressed))

    def file(self, dataset: Dataset) -> bytes:
        """Preamble, meta header (explicit VR little endian, with its group length), data set."""
        meta = self._meta(dataset.file_meta, dataset)
        self.dataset(dataset, "iso8859")
        preamble = getattr(dataset, "preamble", None) or _PREAMBLE[:128]
        return b"".join((preamble, b"DICM", meta, *self.parts))

    @staticmethod
    def _meta(file_meta: Dataset, dataset: Dataset) -> bytes:
        required = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013)
        if any(tag not in file_meta or file_meta[tag].is_empty for tag in required[:-1]):
            raise _LeftToPydicomError  # dcmwrite adds or refuses what is missing
        if required[-1] not in file_meta or any(
            tag in dataset and dataset[tag].value and dataset[tag].value != file_meta[meta].value
            for tag, meta in _SOP_IN_META
        ):
            raise _LeftToPydicomError  # dcmwrite copies the data set's SOP Class and Instance UIDs
        writer = _Writer(implicit=False, compressed=False)
        for tag in sorted(file_meta.keys()):
            if tag >> 16 != 0x0002:
                raise _LeftToPydicomError
            if tag != 0x00020000:
                writer.element(tag, file_meta.get_item(tag), ["iso8859"])
        body = b"".join(writer.parts)
        return _EXPLICIT_SHORT.pack(0x0002, 0x0000, b"UL", 4) + _LENGTH.pack(len(body)) + body

    def dataset(self, dataset: Dataset, parent_encoding: str | list[str]) -> None:
        """Every element of ``dataset`` in tag order, group lengths left out (as pydicom)."""
        if (
            dataset.original_encoding != (self.implicit, True)
            or dataset.original_character_set != dataset._character_set
        ) and not _nothing_to_convert(dataset):
            raise _LeftToPydicomError  # pydicom converts the elements read, to re-encode them
        encodings = dataset.get("SpecificCharacterSet", parent_encoding)
        for tag in sorted(dataset._dict, key=int):
            if tag & 0xFFFF == 0 and tag >> 16 > 6:
                continue
            self.element(int(tag), dataset.get_item(tag), encodings)

    def element(
        self, tag: int, elem: DataElement | RawDataElement, encodings: str | list[str]
    ) -> None:
        """One element, header and value; pydicom's element writer for what is not done here."""
        vr = elem.VR
        if not self.implicit and (vr is None or len(vr) != 2):
            raise _LeftToPydicomError  # dcmwrite refuses an ambiguous VR
        if isinstance(elem, RawDataElement):
            value = elem.value
            undefined = elem.length == _UNDEFINED
            if value is None or (
                tag == PIXEL_DATA
                and not _pixel_data_as_dcmwrite_writes(
                    value, undefined=undefined, compressed=self.compressed
                )
            ):
                raise _LeftToPydicomError  # dcmwrite converts, pads or refuses it
            self._header(tag, vr, len(value), undefined=undefined)
            self.parts.append(value)
            if undefined:
                self.parts.append(_SEQUENCE_DELIMITER)
            return
        if vr == "SQ":
            self._sequence(tag, elem, encodings)
            return
        if tag == PIXEL_DATA and elem.is_undefined_length != self.compressed:
            raise _LeftToPydicomError
        encoded = (
            None if elem.is_undefined_length or vr is None else _value_bytes(elem, vr, encodings)
        )
        if encoded is None:
            self._pydicom(elem, encodings)
            return
        self._header(tag, vr, len(encoded), undefined=False)
        self.parts.append(encoded)

    def _sequence(self, tag: int, elem: DataElement, encodings: str | list[str]) -> None:
        items = _Writer(implicit=self.implicit, compressed=self.compressed)
        children = convert_encodings(encodings)
        for item in elem.value:
            undefined = bool(getattr(item, "is_undefined_length_sequence_item", False))
            body = _Writer(implicit=self.implicit, compressed=self.compressed)
            body.dataset(item, children)
            content = b"".join(body.parts)
            items.parts.append(_ITEM)
            items.parts.append(_LENGTH.pack(_UNDEFINED if undefined else len(content)))
            items.parts.append(content)
            if undefined:
                items.parts.append(_ITEM_DELIMITER)
        value = b"".join(items.parts)
        undefined = bool(elem.is_undefined_length)
        self._header(tag, "SQ", len(value), undefined=undefined)
        self.parts.append(value)
        if undefined:
            self.parts.append(_SEQUENCE_DELIMITER)

    def _header(self, tag: int, vr: str | None, length: int, *, undefined: bool) -> None:
        group, number = tag >> 16, tag & 0xFFFF
        if undefined:
            length = _UNDEFINED
        if self.implicit or vr is None:  # an explicit element always has a VR (see element)
            self.parts.append(_IMPLICIT.pack(group, number, length))
        elif vr in _LONG_VRS:
            self.parts.append(_EXPLICIT_LONG.pack(group, number, vr.encode(), 0, length))
        elif length > 0xFFFF and not undefined:
            raise _LeftToPydicomError  # dcmwrite writes it as UN, with a warning
        else:
            self.parts.append(_EXPLICIT_SHORT.pack(group, number, vr.encode(), length))

    def _pydicom(self, elem: DataElement, encodings: str | list[str]) -> None:
        """Pydicom's own writer for one element (its errors are raised as dcmwrite's are)."""
        buffer = DicomBytesIO()
        buffer.is_little_endian = True
        buffer.is_implicit_VR = self.implicit
        write_data_element(buffer, elem, encodings)
        self.parts.append(buffer.getvalue())


def _nothing_to_convert(dataset: Dataset) -> bool:
    """Whether pydicom's conversion for another encoding would leave ``dataset`` as it is.

    It converts raw elements and resolves ambiguous VRs; a data set built in memory (the
    profile's code items) has neither.
    """
    return all(
        isinstance(elem, DataElement) and " or " not in str(elem.VR)
        for elem in dataset._dict.values()
    )


def _pixel_data_as_dcmwrite_writes(value: bytes, *, undefined: bool, compressed: bool) -> bool:
    """Whether raw Pixel Data is written as read.

    dcmwrite sets its length kind from the transfer syntax, pads an odd length and refuses
    encapsulated data that does not start with an item.
    """
    if undefined != compressed or len(value) % 2:
        return False
    return not undefined or value.startswith(_ITEM)


def _value_bytes(elem: DataElement, vr: str, encodings: str | list[str]) -> bytes | None:
    """The value as pydicom writes it, for the common kinds; None for the rest."""
    value = elem.value
    if vr in _STRING_VRS or vr in _TEXT_VRS:
        return _string(value, vr, encodings)
    if vr in ("DS", "IS"):
        return _number_string(value)
    fmt = _NUMBER_FORMATS.get(vr)
    if fmt is not None:
        return _numbers(value, fmt)
    if vr in _BYTES_VRS and isinstance(value, bytes):
        return value + b"\x00" if len(value) % 2 and vr != "UN" else value
    return None


def _string(value: Any, vr: str, encodings: str | list[str]) -> bytes | None:
    """A string VR's value: Latin-1 for the ASCII kinds, ASCII text in a compatible charset."""
    text = _joined(value)
    if text is None:
        return None
    if vr in _TEXT_VRS and not (text.isascii() and _ascii_compatible(encodings)):
        return None
    if len(text) % 2:
        text += "\x00" if vr == "UI" else " "
    return text.encode("latin_1")


def _numbers(value: Any, fmt: str) -> bytes | None:
    """Binary numbers, one or many; None where pydicom's writer must decide (or raise)."""
    if value is None or value == "":
        return b""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return struct.pack("<" + fmt, value)
        # pydicom writes a LUT descriptor's first SS value as US: left to it.
        if isinstance(value, MultiValue | list) and fmt != "h":
            return struct.pack(f"<{len(value)}{fmt}", *value)
    except struct.error:
        return None  # pydicom raises its own error for it
    return None


def _joined(value: Any) -> str | None:
    """A string value, or a multi-value of strings joined by backslashes; None otherwise."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, MultiValue | list | tuple) and all(isinstance(v, str) for v in value):
        return "\\".join(value)
    return None


def _number_string(value: Any) -> bytes | None:
    """A DS or IS value as pydicom writes it: each value's original string when it has one."""
    if value is None or value == "":
        return b""
    values: Sequence[Any] = value if isinstance(value, MultiValue | list | tuple) else [value]
    texts = []
    for item in values:
        original = getattr(item, "original_string", None)
        if not isinstance(original, str):
            return None
        texts.append(original)
    text = "\\".join(texts)
    if len(text) % 2:
        text += " "
    return text.encode("latin_1") if text.isascii() else None


def _ascii_compatible(encodings: str | list[str]) -> bool:
    """Whether ASCII text encodes as ASCII in the data set's character set(s)."""
    if isinstance(encodings, str):
        encodings = [encodings]
    try:
        converted = convert_encodings(list(encodings))
    except Exception:
        return False
    return len(converted) == 1 and converted[0] in _ASCII_COMPATIBLE
