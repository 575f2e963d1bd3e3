"""The one interface every OCR engine implements, and the values it returns.

An engine takes an image as a NumPy array -- ``uint8``, shape ``(H, W)`` for grayscale or
``(H, W, 3)`` for RGB -- and returns text regions in that image's pixel coordinates. Callers
that hold 16-bit or YBR pixels convert them first (:mod:`radstream.ocr.images`); engines never
see DICOM.

Two calls, because de-identification needs both:

* :meth:`OcrEngine.detect` finds where text is, with a detection score per box and no reading.
  It is the cheap triage that runs on every instance with pixel data.
* :meth:`OcrEngine.recognize` finds and reads; it runs where detection found text, and again on
  the redacted output to verify that no PHI is readable any more.

Both accept ``max_side``: the image is downscaled so its longer side is at most that many
pixels before the engine sees it, and the boxes are mapped back to the original coordinates
(:func:`scale_for`, :meth:`Box.scaled`). Text read by an engine may be PHI: never log it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "BackendProbe",
    "Box",
    "EngineInfo",
    "Image",
    "OcrEngine",
    "TextRegion",
    "scale_for",
    "sorted_regions",
]

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned rectangle in pixels, origin top-left; ``width``/``height`` > 0."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.x + self.width

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.y + self.height

    @property
    def area(self) -> int:
        """Pixels covered."""
        return self.width * self.height

    @classmethod
    def around(cls, points: Sequence[tuple[float, float]]) -> Box:
        """The smallest box enclosing ``points`` (a polygon's corners), pixel-aligned outward."""
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        left, top = int(np.floor(min(xs))), int(np.floor(min(ys)))
        right, bottom = int(np.ceil(max(xs))), int(np.ceil(max(ys)))
        return cls(left, top, max(1, right - left), max(1, bottom - top))

    def scaled(self, factor: float) -> Box:
        """The box in an image ``factor`` times as large (outward rounding: never shrinks)."""
        left, top = int(np.floor(self.x * factor)), int(np.floor(self.y * factor))
        right, bottom = int(np.ceil(self.right * factor)), int(np.ceil(self.bottom * factor))
        return Box(left, top, max(1, right - left), max(1, bottom - top))

    def padded(self, pixels: int, *, width: int, height: int) -> Box:
        """The box grown by ``pixels`` on every side, clipped to a ``width`` x ``height`` image."""
        left, top = max(0, self.x - pixels), max(0, self.y - pixels)
        right, bottom = min(width, self.right + pixels), min(height, self.bottom + pixels)
        return Box(left, top, max(1, right - left), max(1, bottom - top))

    def clipped(self, *, width: int, height: int) -> Box | None:
        """The box inside a ``width`` x ``height`` image, or None when nothing of it is."""
        left, top = max(0, self.x), max(0, self.y)
        right, bottom = min(width, self.right), min(height, self.bottom)
        if right <= left or bottom <= top:
            return None
        return Box(left, top, right - left, bottom - top)

    def intersection(self, other: Box) -> int:
        """Pixels this box shares with ``other``."""
        dx = min(self.right, other.right) - max(self.x, other.x)
        dy = min(self.bottom, other.bottom) - max(self.y, other.y)
        return max(0, dx) * max(0, dy)

    def covered_by(self, others: Sequence[Box]) -> float:
        """Fraction of this box covered by the union of ``others`` (exact, by pixel mask)."""
        if not others:
            return 0.0
        mask = np.zeros((self.height, self.width), dtype=bool)
        for other in others:
            left, top = max(self.x, other.x) - self.x, max(self.y, other.y) - self.y
            right = min(self.right, other.right) - self.x
            bottom = min(self.bottom, other.bottom) - self.y
            if right > left and bottom > top:
                mask[top:bottom, left:right] = True
        return float(mask.mean())


@dataclass(frozen=True, slots=True)
class TextRegion:
    """One region of text: where, what was read (empty from :meth:`OcrEngine.detect`), how sure.

    ``detection_score`` is the detector's belief that the box holds text, in [0, 1];
    ``confidence`` the recognizer's belief in ``text``, in [0, 1] (0 when not read).
    ``polygon`` is the outline, clockwise from the top-left corner.
    """

    box: Box
    text: str = ""
    confidence: float = 0.0
    detection_score: float = 1.0
    polygon: tuple[tuple[float, float], ...] = field(default=())

    def __repr__(self) -> str:  # the text may be PHI: keep it out of reprs and tracebacks
        return (
            f"TextRegion(box={self.box!r}, text=<{len(self.text)} chars>, "
            f"confidence={self.confidence:.3f}, detection_score={self.detection_score:.3f})"
        )


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """Which engine and models read an image, for the ``ModelRef`` of every response."""

    name: str  # "rapidocr", "easyocr", "tesseract", "kserve"
    version: str  # the engine package's version
    models: str = ""  # the detector/recognizer models, e.g. "PP-OCRv6_det_small+PP-OCRv6_rec_small"


@runtime_checkable
class OcrEngine(Protocol):
    """Finds and reads text; thread-safety is the engine's to state (see ``concurrent``)."""

    @property
    def info(self) -> EngineInfo:
        """The engine and its models."""

    @property
    def concurrent(self) -> bool:
        """True when one instance may be called from several threads at once."""

    def detect(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """Where text is, with detection scores; ``text`` empty; in :func:`sorted_regions` order."""

    def recognize(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """Where text is and what it says. Sorted by :func:`sorted_regions`."""


@runtime_checkable
class BackendProbe(Protocol):
    """An engine whose models run elsewhere (``kserve``) and can say cheaply whether they answer.

    The ocr service's readiness asks it, so a pod whose model server is away is taken out of
    its Service instead of answering every call UNAVAILABLE.
    """

    def check_backend(self) -> None:
        """Return when the backend is ready; raise a ``TransientError`` when it is not."""


def scale_for(height: int, width: int, max_side: int) -> float:
    """The factor (<= 1) that brings the longer side down to ``max_side``; 1 when 0 or smaller."""
    longer = max(height, width)
    if max_side <= 0 or longer <= max_side:
        return 1.0
    return max_side / longer


def sorted_regions(regions: Sequence[TextRegion]) -> list[TextRegion]:
    """Top to bottom, then left to right (regions whose tops are within half a line: one row)."""
    if not regions:
        return []
    line = max(1, int(np.median([r.box.height for r in regions]) // 2))
    return sorted(regions, key=lambda r: (r.box.y // line, r.box.x))
