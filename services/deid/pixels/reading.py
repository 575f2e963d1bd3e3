"""Reading a frame at the resolutions its text needs: small print at full size, big letters small.

A text detector has a range of letter heights it finds. Ultrasound banners use 10-14 px fonts
and must be read at full resolution; a radiograph's lead marker or label is 100-250 px tall on
a 3000 px plate, and PP-OCR's detector misses it at 2048 px (measured on the deid-data cat
radiograph: nothing at 2048, the "R" at 1024 and 1536). So a frame larger than the smallest
configured side is read once per configured side (each no larger than the frame), and the
lines of the later passes are added where the earlier ones found nothing (a box less than half
covered by the boxes already read). A frame at or below the smallest side is read once, at full
resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

from radstream.ocr.engine import Image, OcrEngine, TextRegion, sorted_regions

__all__ = ["read_lines"]


def read_lines(engine: OcrEngine, image: Image, sides: Sequence[int]) -> list[TextRegion]:
    """Every line ``engine`` reads in ``image`` at the resolutions of ``sides`` (0: full)."""
    longer = max(image.shape[0], image.shape[1])
    passes = sorted({0 if side <= 0 or side >= longer else side for side in sides}, key=_order)
    lines: list[TextRegion] = []
    for side in passes or [0]:
        found = engine.recognize(image, max_side=side)
        if not lines:
            lines = list(found)
            continue
        boxes = [line.box for line in lines]
        lines.extend(line for line in found if line.box.covered_by(boxes) < 0.5)
    return sorted_regions(lines)


def _order(side: int) -> int:
    """Full resolution first, then larger sides before smaller ones."""
    return -(side or 1 << 30)
