"""Byte-level mutation of real inputs, drawn by Hypothesis (so runs are seeded and replayable).

The operators are the classic ones of mutation fuzzers (bit flips, interesting bytes and
integers, insertions, deletions, truncation, duplication, splicing from another seed), plus
*anchored* ones for formats with landmarks: an operator may aim at an offset the caller marks
as interesting (a DICOM element header, an HL7 field separator, a multipart boundary).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from hypothesis import strategies as st

INTERESTING_BYTES: Final = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0D, 0x0A, 0x0B, 0x1C, 0x5C, 0x5E, 0x7C)
INTERESTING_U16: Final = (0x0000, 0x0001, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
INTERESTING_U32: Final = (
    0x00000000,
    0x00000001,
    0x0000FFFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFE,
    0xFFFFFFFF,
)
_OPERATORS: Final = (
    "flip",
    "byte",
    "u16",
    "u32",
    "insert",
    "delete",
    "truncate",
    "duplicate",
    "splice",
)


@st.composite
def mutated_bytes(
    draw: st.DrawFn,
    seed: bytes,
    *,
    anchors: Sequence[int] = (),
    donors: Sequence[bytes] = (),
    max_operations: int = 6,
) -> bytes:
    """``seed`` with one to ``max_operations`` mutations applied, in order."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_operations))):
        operator = draw(st.sampled_from(_OPERATORS))
        at = _position(draw, len(data), anchors)
        if operator == "flip" and data:
            data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif operator == "byte" and data:
            value = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
            data[min(at, len(data) - 1)] = value
        elif operator in ("u16", "u32"):
            values = INTERESTING_U16 if operator == "u16" else INTERESTING_U32
            value = draw(st.sampled_from(values) | st.just(len(data)))
            packed = struct.pack(
                draw(st.sampled_from(["<", ">"])) + ("H" if operator == "u16" else "I"),
                value & (0xFFFF if operator == "u16" else 0xFFFFFFFF),
            )
            data[at : at + len(packed)] = packed
        elif operator == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif operator == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif operator == "truncate":
            del data[at:]
        elif operator == "duplicate":
            length = draw(st.integers(1, 256))
            chunk = data[at : at + length] * draw(st.integers(1, 8))
            where = _position(draw, len(data), anchors)
            data[where:where] = chunk
        elif operator == "splice" and donors:
            donor = draw(st.sampled_from(list(donors)))
            start = draw(st.integers(0, max(0, len(donor) - 1)))
            chunk = donor[start : start + draw(st.integers(1, 512))]
            data[at : at + draw(st.integers(0, 64))] = chunk
    return bytes(data)


def sometimes(draw: st.DrawFn, chance: float) -> bool:
    """True with about ``chance`` probability (in eighths), as Hypothesis draws it."""
    return draw(st.integers(0, 7)) < round(chance * 8)


def _position(draw: st.DrawFn, length: int, anchors: Sequence[int]) -> int:
    """An offset in ``[0, length]``: often a landmark (plus a small step), else anywhere."""
    candidates = [anchor for anchor in anchors if anchor <= length]
    if candidates and draw(st.booleans()):
        return min(length, draw(st.sampled_from(candidates)) + draw(st.integers(0, 11)))
    return draw(st.integers(0, length))
