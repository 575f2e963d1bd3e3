"""Images with known text drawn at known places, for testing OCR engines.

Each line is drawn with a real TrueType font (DejaVu, installed with the Debian fonts package;
PIL's built-in scalable font when it is missing) and its *ink* box -- the pixels the glyphs
cover, from PIL's ``textbbox`` -- is recorded, so a test can ask whether an engine's boxes lie
around the text it was given, not merely whether it read something.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from radstream.ocr.engine import Box, TextRegion

__all__ = [
    "DrawnLine",
    "Line",
    "TextImage",
    "draw",
    "font",
    "normalised",
    "read_text",
]

_FONTS = Path("/usr/share/fonts/truetype/dejavu")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def font(size: int, *, mono: bool = False) -> Font:
    """DejaVu Sans (or Sans Mono) at ``size`` pixels, or PIL's own font when it is missing."""
    path = _FONTS / ("DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf")
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class Line:
    """A string to draw with its top-left corner at ``(x, y)``, ``size`` pixels high."""

    text: str
    x: int
    y: int
    size: int = 24
    mono: bool = False


@dataclass(frozen=True)
class DrawnLine:
    """A line as drawn: its text and the box its ink covers."""

    text: str
    box: Box


@dataclass(frozen=True)
class TextImage:
    """The pixels (``uint8``, ``(H, W)`` or ``(H, W, 3)``) and the lines drawn on them."""

    pixels: np.ndarray
    lines: tuple[DrawnLine, ...]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def draw(
    lines: Sequence[Line],
    *,
    width: int,
    height: int,
    background: int | tuple[int, int, int] = 0,
    foreground: int | tuple[int, int, int] = 255,
    rgb: bool = False,
) -> TextImage:
    """Draw ``lines`` on a plain ``width`` x ``height`` image; grayscale unless ``rgb``."""
    mode = "RGB" if rgb else "L"
    if rgb:
        background = background if isinstance(background, tuple) else (background,) * 3
        foreground = foreground if isinstance(foreground, tuple) else (foreground,) * 3
    image = Image.new(mode, (width, height), background)
    pen = ImageDraw.Draw(image)
    drawn = []
    for line in lines:
        face = font(line.size, mono=line.mono)
        pen.text((line.x, line.y), line.text, font=face, fill=foreground)
        left, top, right, bottom = pen.textbbox((line.x, line.y), line.text, font=face)
        drawn.append(DrawnLine(line.text, Box(left, top, right - left, bottom - top)))
    return TextImage(np.asarray(image, dtype=np.uint8), tuple(drawn))


def normalised(text: str) -> str:
    """Upper case, runs of whitespace as one space: what the tests compare."""
    return re.sub(r"\s+", " ", text).strip().upper()


def read_text(regions: Sequence[TextRegion]) -> str:
    """Everything an engine read, normalised, lines joined by spaces."""
    return normalised(" ".join(r.text for r in regions))
