"""A palette-colour image is filled with its darkest colour, wherever the palette puts it.

pydicom's palette example with its tables reversed: its first entry, index 0, becomes the
colour its last entry had, and black moves to the other end.
"""

from __future__ import annotations

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut

from radstream.deid.pixels.frames import decode_frames
from radstream.deid.pixels.redact import fill_boxes
from radstream.ocr.engine import Box

BOX = Box(100, 50, 120, 40)
LUMA = np.array([0.299, 0.587, 0.114])


def palette_example(*, reversed_tables: bool) -> Dataset:
    path = get_testdata_file("examples_palette.dcm")
    assert path is not None
    ds = dcmread(path)
    if reversed_tables:
        for colour in ("Red", "Green", "Blue"):
            keyword = f"{colour}PaletteColorLookupTableData"
            table = np.frombuffer(ds[keyword].value, dtype="<u2")
            setattr(ds, keyword, table[::-1].tobytes())
    return ds


def luma_of_every_index(ds: Dataset) -> np.ndarray:
    colours = apply_color_lut(np.arange(256, dtype=np.uint8), ds)
    return np.asarray(colours, dtype=np.float64) @ LUMA


def test_the_fill_is_the_darkest_colour_even_when_index_0_is_not() -> None:
    ds = palette_example(reversed_tables=True)
    luma = luma_of_every_index(ds)
    assert luma[0] > luma.min(), "the reversed palette's first entry is not its darkest"

    decoded = decode_frames(ds)
    filled = fill_boxes(decoded, {0: (BOX,)}, padding=0)
    shown = apply_color_lut(filled[0, BOX.y : BOX.bottom, BOX.x : BOX.right], ds)

    index = int(decoded.background(0))
    assert luma[index] == luma.min()
    assert np.all(filled[0, BOX.y : BOX.bottom, BOX.x : BOX.right] == index)
    assert np.all(np.asarray(shown, dtype=np.float64) @ LUMA == luma.min())


def test_a_palette_whose_first_entry_is_darkest_is_filled_with_it() -> None:
    ds = palette_example(reversed_tables=False)
    luma = luma_of_every_index(ds)
    expected = int(np.flatnonzero(luma == luma.min())[0])

    assert int(decode_frames(ds).background(0)) == expected
