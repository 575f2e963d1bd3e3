"""The image an engine is handed: checked, downscaled to ``max_side``, and the way back.

Every engine does the same three things around its model, so they are done once here:
refuse what is not an 8-bit grayscale or RGB array (16-bit pixels must be windowed to 8 bits
by the caller, who knows the modality: an engine that silently divided by 256 would read
nothing on a dark CT), bring the longer side down to ``max_side``, and map what the model found
back to the caller's pixels with outward rounding, so a box never shrinks below the text it
covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from radstream.ocr.engine import Box, Image, TextRegion, scale_for

__all__ = ["PreparedImage", "checked_image", "prepare"]


def checked_image(image: object) -> Image:
    """``image`` if it is a non-empty ``uint8`` array shaped ``(H, W)`` or ``(H, W, 3)``.

    Raises :class:`TypeError` for anything else than a ``uint8`` NumPy array (names the dtype,
    never a value) and :class:`ValueError` for other shapes.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"an OCR engine takes a NumPy uint8 array, not {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(
            f"an OCR engine takes uint8 pixels, not {image.dtype}; "
            "window 16-bit images to 8 bits first (radstream.ocr.images)"
        )
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"an OCR engine takes (H, W) or (H, W, 3) images, not {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"an OCR engine takes a non-empty image, not {image.shape}")
    return image


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """The image the model sees, and how to map its coordinates back to the original's."""

    pixels: Image
    factor: float  # pixels = original scaled by factor (<= 1)
    height: int  # the original's
    width: int

    def box(self, points: Sequence[tuple[float, float]]) -> Box | None:
        """The original-image box around ``points`` given in ``pixels`` coordinates.

        Outward at both steps (enclosing box, then scaling up), then clipped to the image;
        None when nothing of it lies inside.
        """
        return (
            Box.around(points).scaled(1 / self.factor).clipped(width=self.width, height=self.height)
        )

    def polygon(self, points: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
        """``points`` in the original image's coordinates."""
        return tuple((float(x) / self.factor, float(y) / self.factor) for x, y in points)

    def region(
        self,
        points: Sequence[tuple[float, float]],
        *,
        text: str = "",
        confidence: float = 0.0,
        detection_score: float = 1.0,
    ) -> TextRegion | None:
        """A region in original coordinates from a polygon in ``pixels`` coordinates."""
        box = self.box(points)
        if box is None:
            return None
        return TextRegion(
            box=box,
            text=text,
            confidence=float(np.clip(confidence, 0.0, 1.0)),
            detection_score=float(np.clip(detection_score, 0.0, 1.0)),
            polygon=self.polygon(points),
        )


def prepare(image: object, max_side: int) -> PreparedImage:
    """Check ``image`` and downscale it so its longer side is at most ``max_side`` (0: as is).

    Downscaling uses area averaging, which keeps thin strokes of small text visible where
    nearest or bilinear sampling would drop them.
    """
    pixels = checked_image(image)
    height, width = pixels.shape[:2]
    factor = scale_for(height, width, max_side)
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        pixels = np.asarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), np.uint8)
    return PreparedImage(pixels=pixels, factor=factor, height=height, width=width)
