"""Reading and writing element values for the profile walk, whatever shape pydicom left them in.

Elements arrive raw (undecoded bytes with or without a VR), decoded, multi-valued, or with a VR
that contradicts the data dictionary. These helpers tell the walk which VR an element really
has, read its values as text, and build replacement elements -- raising
:class:`UnprocessableError` where a value cannot be read, so the walk removes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radstream.deid.dummies import empty_value

__all__ = [
    "UnprocessableError",
    "concrete_vr",
    "element_of",
    "element_vr",
    "format_tag",
    "keyword_of",
    "known_vr",
    "raw_encoding",
    "strings_of",
]


class UnprocessableError(Exception):
    """An element's value cannot be read the way its action needs; it is removed instead."""


@lru_cache(maxsize=65536)
def format_tag(tag: int) -> str:
    """``(gggg,eeee)`` in upper-case hex."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@lru_cache(maxsize=8192)
def known_vr(tag: int) -> str | None:
    """The data dictionary's VR for a tag (repeating groups included), None when unknown."""
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


@lru_cache(maxsize=8192)
def keyword_of(tag: int) -> str:
    """The keyword of a public tag; "" for private and unknown ones."""
    return "" if (tag >> 16) & 1 else keyword_for_tag(tag)


def element_vr(elem: DataElement | RawDataElement, tag: int) -> str:
    """The VR an element has: its own, or the dictionary's where it has none or says UN."""
    vr = elem.VR
    if vr is None or vr == "UN":
        return known_vr(tag) or "UN"
    return str(vr)


def concrete_vr(rule_vr: str | None, actual: str) -> str:
    """The VR to write: the table's, unless that is ambiguous or unknown."""
    # Ambiguous dictionary VRs ("US or SS", "OB or OW") defer to what the element says.
    if rule_vr is None or " or " in rule_vr:
        return actual if " or " not in actual else actual.split(" or ", maxsplit=1)[0]
    return rule_vr


def strings_of(elem: DataElement) -> list[str]:
    """Each value of a decoded element as text; raises UnprocessableError for raw bytes."""
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, bytes | bytearray):
        raise UnprocessableError  # undecoded bytes: nothing here can read them safely
    items: Iterable[object] = value if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(item) for item in items]


def raw_encoding(src: Dataset) -> tuple[bool | None, bool | None]:
    """(implicit VR, little endian) of the raw elements carried over from ``src``."""
    # Some files declare one VR encoding and use the other; pydicom reads them as they are,
    # and the writer must know how the carried-over raw elements are really encoded.
    for key in tuple(src.keys()):
        elem = src.get_item(key, keep_deferred=True)
        if isinstance(elem, RawDataElement):
            return elem.is_implicit_VR, elem.is_little_endian
    return src.original_encoding


def element_of(tag: int, vr: str, values: list[object]) -> DataElement:
    """A new element holding ``values`` (empty, single- or multi-valued)."""
    if not values:
        return DataElement(tag, vr, empty_value(vr))
    return DataElement(tag, vr, values[0] if len(values) == 1 else values)
