"""A walk over every value of a DICOM header, for the PHI collector and the verifier.

:func:`header_values` reaches every element of every sequence item, private elements included,
and reads values that pydicom cannot convert (wrong VR, bad charset) from their raw bytes, so a
non-conformant header never hides a value from :mod:`radstream.deid.phi` (which collects the
instance's PHI values) or from :mod:`radstream.deid.verify` (which hunts for them in the output).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import NamedTuple

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag, private_dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.valuerep import IS, DSdecimal, DSfloat, PersonName

from radstream.deid.elements import format_tag
from radstream.dicom.raw_header import RawDataset, RawElement, RawInstance

__all__ = [
    "HeaderValue",
    "dictionary_vr_or_un",
    "format_tag",
    "header_values",
    "raw_header_values",
]

# Sample data and other bulk binary: never text, and far too big to scan for it.
_BULK_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010, 0x54001010, 0x56000020})
# Numbers pydicom decodes into Python values, with their struct codes (OF, OD, OL, OV stay bytes;
# an AT value is a tag, written as two US).
_BINARY_NUMBERS = {
    "US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q",
    "FL": "f", "FD": "d", "AT": "L",
}  # fmt: skip
# String VRs (PS3.5 6.2): those decoded with the Specific Character Set, and those holding one
# value whatever backslashes they contain.
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
     "UR", "UT"}
)  # fmt: skip
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})
_PN_DELIMITERS = {0x5C, 0x5E, 0x3D}
_TEXT_DELIMITERS = {0x5C, 0x0D, 0x0A, 0x09, 0x0C}
_TEXT_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_ASCII_RUN = re.compile(rb"[\x20-\x7e]{3,}")
_LATIN_RUN = re.compile(rb"[\x20-\x7e\xc0-\xff]{3,}")


class HeaderValue(NamedTuple):
    """The text of one element, wherever it sits in the header.

    A named tuple: every walk builds one per element, and a frozen dataclass costs several
    times as much to build.
    """

    path: str  # "(0008,1115)[0]/(0008,1155)"
    tag: int
    keyword: str  # "" for private and unknown tags
    vr: str
    texts: tuple[str, ...]  # one per value of a multi-valued element
    parents: tuple[str, ...] = ()  # keywords of the enclosing sequences, outermost first
    from_bytes: bool = False  # decoded from binary (UN, OB, raw) rather than a typed value
    binary: bool = False  # not text: ``texts`` are the printable runs found in it


def header_values(
    ds: Dataset, *, include_meta: bool = False, numbers: bool = False
) -> Iterator[HeaderValue]:
    """Every non-empty textual value of ``ds``, sequence items included, depth first.

    ``numbers``: also the printable runs in the bytes of numeric values (binary items), as the
    file holds them. The verifier asks for them; collecting PHI values does not.
    """
    encodings = _encodings_of(ds, ["iso8859"])
    if include_meta and getattr(ds, "file_meta", None) is not None:
        yield from _walk(ds.file_meta, "", (), ["iso8859"], "<" if numbers else None)
    yield from _walk(ds, "", (), encodings, _byte_order(ds) if numbers else None)


def _byte_order(ds: Dataset) -> str:
    """``struct``'s byte order of the data set as read: little endian unless it was read big."""
    return ">" if ds.original_encoding[1] is False else "<"


def _encodings_of(ds: Dataset, inherited: list[str]) -> list[str]:
    if 0x00080005 not in ds:
        return inherited
    try:
        return list(convert_encodings(ds[0x00080005].value))
    except Exception:  # a broken charset must not stop the walk
        return ["latin_1"]


def _walk(
    ds: Dataset, prefix: str, parents: tuple[str, ...], encodings: list[str], order: str | None
) -> Iterator[HeaderValue]:
    for key in list(ds.keys()):
        tag = int(key)  # a plain int: BaseTag compares in Python code, slow as a cache key
        facts = _tag_facts(tag)
        if facts is None:  # sample data and other bulk binary
            continue
        # Fetched now, not from a snapshot: reading a sequence converts other elements too
        # (pydicom hands Pixel Representation down to the items).
        raw = ds.get_item(key)
        if raw is None:
            continue
        tag_text, keyword, dictionary_vr = facts
        path = prefix + tag_text
        vr = raw.VR or dictionary_vr
        if vr == "SQ" or isinstance(raw.value, DicomSequence):
            items = _sequence_items(ds, tag)
            if items is not None:
                for index, item in enumerate(items):
                    item_encodings = _encodings_of(item, encodings)
                    yield from _walk(
                        item, f"{path}[{index}]/", (*parents, keyword), item_encodings, order
                    )
                continue
        value = _header_value(
            path, tag, keyword, vr, parents, _element_texts(raw, vr, encodings, order)
        )
        if value is not None:
            yield value


def _header_value(  # noqa: PLR0917 -- the parts of a HeaderValue
    path: str,
    tag: int,
    keyword: str,
    vr: str,
    parents: tuple[str, ...],
    found: tuple[tuple[str, ...], bool, bool] | None,
) -> HeaderValue | None:
    """The value of one element with its non-blank ``found`` texts; None when there are none."""
    if found is None:
        return None
    texts, from_bytes, binary = found
    texts = tuple(text for text in texts if text.strip(" \x00"))
    if not texts:
        return None
    return HeaderValue(
        path=path,
        tag=tag,
        keyword=keyword,
        vr=vr,
        texts=texts,
        parents=parents,
        from_bytes=from_bytes,
        binary=binary,
    )


@lru_cache(maxsize=16384)
def _tag_facts(tag: int) -> tuple[str, str, str] | None:
    """(``(gggg,eeee)``, keyword or "", dictionary VR or UN); None for bulk data, never walked.

    Cached: every instance of a series walks the same tags, and each of these is a dictionary
    lookup or a string format.
    """
    if _is_bulk(tag):
        return None
    keyword = "" if (tag >> 16) & 1 else keyword_for_tag(tag)
    return format_tag(tag), keyword, dictionary_vr_or_un(tag)


def _is_bulk(tag: int) -> bool:
    overlay_data = ((tag >> 16) & 0xFF01) == 0x6000 and (tag & 0xFFFF) == 0x3000
    return tag in _BULK_TAGS or overlay_data


@lru_cache(maxsize=16384)
def dictionary_vr_or_un(tag: int) -> str:
    """The dictionary VR of ``tag``; ``UN`` when the dictionary does not know it."""
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _sequence_items(ds: Dataset, tag: int) -> Sequence[Dataset] | None:
    try:
        value = ds[tag].value
    except Exception:  # an unparsable sequence is read as bytes instead
        return None
    return value if isinstance(value, DicomSequence) else None


def _element_texts(
    raw: DataElement | RawDataElement, vr: str, encodings: list[str], order: str | None
) -> tuple[tuple[str, ...], bool, bool] | None:
    """(texts, from_bytes, binary), or None where the element cannot hold text.

    Numeric values give the printable runs of their bytes in byte ``order``, or nothing when None.
    """
    value = raw.value
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return _bytes_texts(bytes(value), vr, encodings)
    if vr in _BINARY_NUMBERS:
        if order is None:
            return None
        values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
        runs = _printable_runs(_number_bytes(values, f"{order}{{}}{_BINARY_NUMBERS[vr]}"))
        return (runs, True, True) if runs else None
    if type(value) is str:  # the common case: one plain string, its own text
        return (value,), False, False
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    texts = [text for text in (_scalar_text(item) for item in values) if text is not None]
    return tuple(texts), False, False


def _number_bytes(values: list[object], layout: str) -> bytes:
    """The values as they stand in the file (``layout``: a struct format with ``{}`` for a count).

    A number carries no text, but its bytes can: an implicit-VR file with 24 bytes of a name under
    Rows reads as twelve US values, and is written back byte for byte. The verifier looks for PHI
    in what a ``strings`` reader would see in those bytes, as it does for binary elements.
    """
    numbers = [item for item in values if isinstance(item, int | float)]
    try:
        return struct.pack(layout.format(len(numbers)), *numbers)
    except struct.error:  # a value out of its VR's range is written by nobody: nothing to read
        return b""


def _scalar_text(value: object) -> str | None:
    if isinstance(value, str | PersonName | IS | DSfloat | DSdecimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("latin_1")
    return None  # plain numbers (US, FL, ...) cannot carry text


def _bytes_texts(value: bytes, vr: str, encodings: list[str]) -> tuple[tuple[str, ...], bool, bool]:
    stripped = value.rstrip(b"\x00 ")
    if _TEXT_BYTES.search(stripped):
        return _printable_runs(stripped), True, True
    try:
        text = decode_bytes(stripped, encodings, {0x5C, 0x5E, 0x3D} if vr == "PN" else set())
    except Exception:  # an undecodable value is still searched as latin-1
        text = stripped.decode("latin_1")
    texts = (text,) if vr in ("LT", "ST", "UT", "UR", "OB", "OW", "UN") else tuple(text.split("\\"))
    return texts, True, False


def _printable_runs(value: bytes) -> tuple[str, ...]:
    """The text a ``strings`` reader sees in binary.

    ASCII runs, runs with Latin-1 letters, and each run without its first character too (a
    length prefix can look like a letter).
    """
    runs = {run.decode("latin_1") for run in _ASCII_RUN.findall(value)}
    runs |= {run.decode("latin_1") for run in _LATIN_RUN.findall(value)}
    runs |= {run[1:] for run in runs if len(run) > 3}
    return tuple(sorted(runs))


def raw_header_values(
    instance: RawInstance, *, include_meta: bool = False, numbers: bool = False
) -> Iterator[HeaderValue]:
    """:func:`header_values` of a file read by radstream's own codec, without pydicom.

    The same values, paths, keywords, VRs and flags as :func:`header_values` gives for the same
    bytes parsed by pydicom (a test holds the two walks to that), so the verifier searches what
    is written without a second full parse. Numeric values are searched as the file holds their
    bytes, which is what :func:`header_values` rebuilds from pydicom's numbers.
    """
    if include_meta:
        yield from _walk_raw(instance.meta, "", (), ["iso8859"], numbers=numbers)
    encodings = _raw_encodings_of(instance.dataset, ["iso8859"])
    yield from _walk_raw(instance.dataset, "", (), encodings, numbers=numbers)


def _raw_encodings_of(ds: RawDataset, inherited: list[str]) -> list[str]:
    element = ds.get(0x00080005)
    if element is None:
        return inherited
    try:
        terms = [term.strip(" \x00") for term in element.value.decode("latin_1").split("\\")]
        return list(convert_encodings(terms[0] if len(terms) == 1 else terms))
    except Exception:  # a broken charset must not stop the walk
        return ["latin_1"]


def _walk_raw(
    ds: RawDataset,
    prefix: str,
    parents: tuple[str, ...],
    encodings: list[str],
    *,
    numbers: bool,
) -> Iterator[HeaderValue]:
    for element in ds.elements:
        facts = _tag_facts(element.tag)
        if facts is None:  # sample data and other bulk binary
            continue
        tag_text, keyword, dictionary_vr = facts
        path = prefix + tag_text
        if element.items is not None:
            for index, item in enumerate(element.items):
                yield from _walk_raw(
                    item,
                    f"{path}[{index}]/",
                    (*parents, keyword),
                    _raw_encodings_of(item, encodings),
                    numbers=numbers,
                )
            continue
        vr = element.vr if element.vr != "UN" else _known_vr(ds, element.tag, dictionary_vr)
        found = _raw_element_texts(element, vr, encodings, numbers=numbers)
        value = _header_value(path, element.tag, keyword, vr, parents, found)
        if value is not None:
            yield value


def _known_vr(ds: RawDataset, tag: int, dictionary_vr: str) -> str:
    """The VR pydicom reads a ``UN`` element in: the public or private dictionary's, if known."""
    if not (tag >> 16) & 1:
        return dictionary_vr.split(" or ", 1)[0]
    block = tag & 0xFFFF
    if 0x0010 <= block <= 0x00FF:
        return "LO"  # a private creator
    creator = ds.get((tag & 0xFFFF0000) | (block >> 8))
    if creator is None:
        return "UN"
    try:
        known = private_dictionary_VR(tag, creator.value.decode("latin_1").strip(" \x00"))
    except KeyError:
        return "UN"
    return str(known).split(" or ", 1)[0]


def _raw_element_texts(
    element: RawElement, vr: str, encodings: list[str], *, numbers: bool
) -> tuple[tuple[str, ...], bool, bool] | None:
    """As :func:`_element_texts`, from the value's bytes."""
    value = element.value
    if not value:
        return None
    if vr in _BINARY_NUMBERS:
        if not numbers:
            return None
        runs = _printable_runs(value)
        return (runs, True, True) if runs else None
    if vr not in _STRING_VRS:
        return _bytes_texts(value, vr, encodings)
    if vr in _CHARSET_VRS:
        delimiters = _PN_DELIMITERS if vr == "PN" else _TEXT_DELIMITERS
        try:
            text = decode_bytes(value, encodings, delimiters)
        except Exception:  # an undecodable value is still searched as latin-1
            text = value.decode("latin_1")
    else:
        text = value.decode("latin_1")
    if vr == "PN":  # pydicom leaves out empty trailing component groups
        text = text.rstrip(" \x00=")
    if vr in _SINGLE_VALUED_VRS:
        return (text.rstrip(" \x00"),), False, False
    return tuple(part.strip(" \x00") for part in text.split("\\")), False, False
