"""The picture a reviewer judges a held instance by: its pixels with every found box drawn.

A reviewer decides faster and better looking than reading a list of coordinates, and must see
what is under a box to tell a name from a probe setting. So the preview is the *original*
pixels (PHI: it is stored in the PHI store only), with PHI boxes outlined in red and kept text
in green:

* a single frame: the frame, downscaled so its longer side is at most ``max_side``;
* several frames: a contact sheet, one tile per frame, numbered, in a near-square grid that
  fits ``max_side``. Past ``max_tiles`` frames, the frames with findings come first and the
  rest are sampled evenly, so every frame that holds a box is shown.

Frames are decoded one at a time (``pydicom.pixels.pixel_array(index=...)``), so a long cine
loop never sits in memory whole. Display values: 8-bit data as stored (ultrasound text keeps
its contrast), deeper data stretched between its 0.5th and 99.5th percentiles, MONOCHROME1
inverted, colour converted to RGB by pydicom.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array

from radstream.deid.pixels.findings import PixelFinding
from radstream.ocr.engine import Box

__all__ = ["KEPT_COLOUR", "PHI_COLOUR", "render_preview", "sheet_frames"]

PHI_COLOUR = (255, 0, 0)
KEPT_COLOUR = (0, 200, 0)
_LABEL_COLOUR = (255, 255, 0)
_DEFAULT_MAX_SIDE = 2048
_DEFAULT_MAX_TILES = 64
_GAP = 4  # pixels between tiles


def render_preview(
    dataset: Dataset,
    findings: Sequence[PixelFinding],
    *,
    boxes: Sequence[tuple[int, Box, bool]] = (),
    max_side: int = _DEFAULT_MAX_SIDE,
    max_tiles: int = _DEFAULT_MAX_TILES,
) -> bytes:
    """A PNG of ``dataset``'s frames with the boxes of ``findings`` (and ``boxes``) drawn.

    ``boxes`` adds ``(frame, box, phi)`` outlines that no finding carries, e.g. a reviewer's
    boxes that verification found wanting. Raises what pydicom raises for pixels it cannot
    decode; the caller decides what a missing preview means.
    """
    frames_total = int(dataset.get("NumberOfFrames") or 1)
    outlines = [(f.frame, f.box, f.phi) for f in findings] + list(boxes)
    shown = sheet_frames(frames_total, {frame for frame, _, _ in outlines}, max_tiles)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    grid_columns = math.ceil(math.sqrt(len(shown)))
    grid_rows = math.ceil(len(shown) / grid_columns)
    scale = min(
        1.0,
        (max_side - _GAP * (grid_columns - 1)) / (grid_columns * columns),
        (max_side - _GAP * (grid_rows - 1)) / (grid_rows * rows),
    )
    tile_w, tile_h = max(1, round(columns * scale)), max(1, round(rows * scale))
    width = grid_columns * tile_w + _GAP * (grid_columns - 1)
    sheet = Image.new("RGB", (width, grid_rows * tile_h + _GAP * (grid_rows - 1)))
    draw = ImageDraw.Draw(sheet)
    for position, frame in enumerate(shown):
        left = (position % grid_columns) * (tile_w + _GAP)
        top = (position // grid_columns) * (tile_h + _GAP)
        tile = Image.fromarray(_display(dataset, frame, frames_total), mode="RGB")
        if (tile_w, tile_h) != tile.size:
            tile = tile.resize((tile_w, tile_h), Image.Resampling.LANCZOS)
        sheet.paste(tile, (left, top))
        for where, box, phi in outlines:
            if where == frame:
                _outline(draw, box.scaled(scale), left, top, phi)
        if len(shown) > 1:
            draw.text((left + 3, top + 2), f"frame {frame}", fill=_LABEL_COLOUR)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def sheet_frames(frames_total: int, with_findings: set[int], max_tiles: int) -> list[int]:
    """The frames a sheet shows, in order: all of them, or those with findings and a sample."""
    if frames_total <= max_tiles:
        return list(range(frames_total))
    chosen = sorted(frame for frame in with_findings if 0 <= frame < frames_total)[:max_tiles]
    others = [frame for frame in range(frames_total) if frame not in set(chosen)]
    room = max_tiles - len(chosen)
    if room > 0 and others:
        step = len(others) / room
        chosen += [others[int(index * step)] for index in range(min(room, len(others)))]
    return sorted(set(chosen))


def _outline(draw: ImageDraw.ImageDraw, box: Box, left: int, top: int, phi: bool) -> None:
    colour = PHI_COLOUR if phi else KEPT_COLOUR
    corners = (left + box.x, top + box.y, left + box.right - 1, top + box.bottom - 1)
    draw.rectangle(corners, outline=colour, width=2)


def _display(dataset: Dataset, frame: int, frames_total: int) -> npt.NDArray[np.uint8]:
    """Frame ``frame`` as RGB ``uint8`` for the eye (not for OCR: no enhancement beyond range)."""
    pixels = pixel_array(dataset, index=frame if frames_total > 1 else None)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)
    if pixels.dtype != np.uint8:
        pixels = _stretched(pixels.astype(np.float64))
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _stretched(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    low, high = np.percentile(values, (0.5, 99.5))
    if high <= low:
        high = low + 1.0
    scaled: npt.NDArray[np.uint8] = np.clip((values - low) * (255.0 / (high - low)), 0, 255).astype(
        np.uint8
    )
    return scaled
