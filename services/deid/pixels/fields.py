"""Splitting a PHI line into the fields it shows, so a PHI line does not take its neighbours along.

An OCR line is what the detector joined: on an ultrasound banner that is often several fields
("DOB: 08/29/1951   M   CCHS CLEVELAN..."), of which some are PHI and some are not (the sex).
Filling the whole line would remove annotations a reader needs, and the OCR box is loose
(23 rows for 13 rows of ink: a padded fill reaches into the line below).

So a PHI line's ink is measured: pixels that differ from the line's background (its median) by
more than half the strongest difference (at least 24 levels) are ink; columns with ink, split
where the gap is wider than 0.9 of the ink's height (on the real ultrasound banner a word space
is 0.4 of it, a colon and space 0.55, a gap between fields 1.2), are its **fields**, each boxed
tightly around its ink and grown by a fifth of the ink height. The fields are read again --
each pasted alone onto a blank canvas, all of a frame's in one engine call -- and judged one by
one. The line is filled field by field only when what is left (the fields judged not PHI, read
together) is not PHI either; when a field cannot be read alone, or the rest still is PHI (a
name the NER recognises only whole), the whole line is filled, around its ink. The verification
reads the output again in any case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from radstream.deid.pixels.reading import read_lines
from radstream.ocr.engine import Box, Image, OcrEngine

__all__ = ["Field", "ink_fields", "read_fields"]

MIN_INK_CONTRAST = 24
GAP_FACTOR = 0.9
GROWTH = 0.2


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a line: its ink's box (grown a little) in image coordinates."""

    box: Box
    ink_height: int
    background: tuple[int, ...]  # the line's median value (one per channel)


def ink_fields(image: Image, line: Box) -> list[Field]:
    """The fields of ``line`` in ``image``, left to right; empty when it has no ink."""
    crop = image[line.y : line.bottom, line.x : line.right]
    if crop.size == 0:
        return []
    difference, background = _difference_from_background(crop)
    strongest = int(difference.max())
    if strongest < MIN_INK_CONTRAST:
        return []
    ink = difference > max(MIN_INK_CONTRAST, strongest // 2)
    rows = np.flatnonzero(ink.any(axis=1))
    height = int(rows[-1] - rows[0] + 1)
    gap = max(3, round(GAP_FACTOR * height))
    columns = np.flatnonzero(ink.any(axis=0))
    runs: list[tuple[int, int]] = []
    start = previous = int(columns[0])
    for column in columns[1:]:
        if column - previous > gap:
            runs.append((start, previous))
            start = int(column)
        previous = int(column)
    runs.append((start, previous))
    fields = []
    grow = max(1, round(GROWTH * height))
    for left, right in runs:
        field_rows = np.flatnonzero(ink[:, left : right + 1].any(axis=1))
        box = Box(
            line.x + left,
            line.y + int(field_rows[0]),
            right - left + 1,
            int(field_rows[-1] - field_rows[0] + 1),
        )
        grown = box.padded(grow, width=image.shape[1], height=image.shape[0])
        fields.append(Field(box=grown, ink_height=height, background=background))
    return fields


def _difference_from_background(
    crop: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.int16], tuple[int, ...]]:
    """Per pixel, the largest channel difference from the crop's median (its background)."""
    signed = crop.astype(np.int16)
    if signed.ndim == 2:
        median = int(np.median(signed))
        return np.abs(signed - median), (median,)
    background = np.median(signed.reshape(-1, signed.shape[-1]), axis=0).astype(np.int16)
    difference = np.asarray(np.abs(signed - background).max(axis=-1), dtype=np.int16)
    return difference, tuple(int(value) for value in background)


def read_fields(
    engine: OcrEngine, image: Image, fields: Sequence[Field], sides: Sequence[int]
) -> list[str]:
    """The text of each field, read alone: each on its own band of one canvas, one engine call.

    Each band is painted with its line's background, the field's pixels in its middle.
    """
    if not fields:
        return []
    band = 3 * max(field.box.height for field in fields)
    margin = max(field.ink_height for field in fields)
    width = max(field.box.width for field in fields) + 2 * margin
    canvas = np.empty((band * len(fields), width, *image.shape[2:]), dtype=np.uint8)
    for index, field in enumerate(fields):
        box = field.box
        crop = image[box.y : box.bottom, box.x : box.right]
        canvas[index * band : (index + 1) * band] = np.asarray(field.background, np.uint8)
        top = index * band + (band - crop.shape[0]) // 2
        canvas[top : top + crop.shape[0], margin : margin + crop.shape[1]] = crop
    texts: list[list[tuple[int, str]]] = [[] for _ in fields]
    for region in read_lines(engine, canvas, sides):
        centre = region.box.y + region.box.height // 2
        index = min(len(fields) - 1, centre // band)
        texts[index].append((region.box.x, region.text))
    return [" ".join(text for _, text in sorted(found)) for found in texts]
