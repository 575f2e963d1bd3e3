"""What the pixel stage is asked to do: the policy mode and the knobs, with their defaults.

Light on purpose (no OpenCV, no Presidio): :mod:`radstream.deid.config` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radstream.deid.pixels.triage import TriageSettings

__all__ = ["DEFAULT_PADDING", "DEFAULT_PHI_THRESHOLD", "PixelPolicyMode", "PixelSettings"]

DEFAULT_PADDING = 3
DEFAULT_PHI_THRESHOLD = 0.5  # a line's PHI score from this up is PHI (see classify)


def _default_triage() -> TriageSettings:
    # Imported here: this module is read by the settings, which must not load OpenCV.
    from radstream.deid.pixels.triage import TriageSettings  # noqa: PLC0415

    return TriageSettings()


class PixelPolicyMode(StrEnum):
    """Which text is filled."""

    REMOVE_PHI = "remove-phi"  # PHI lines only; annotations (L/R, PORTABLE, gain ...) are kept
    REMOVE_ALL_TEXT = "remove-all-text"  # every line of text found, PHI or not


@dataclass(frozen=True, kw_only=True)
class PixelSettings:
    """The pixel stage's settings (``RADSTREAM_DEID_PIXEL_*`` in :mod:`radstream.deid.config`)."""

    mode: PixelPolicyMode = PixelPolicyMode.REMOVE_PHI
    padding: int = DEFAULT_PADDING  # pixels a filled box grows on every side
    phi_threshold: float = DEFAULT_PHI_THRESHOLD
    # The recognizer's resolutions (0: full): a frame larger than the smallest is read at each
    # (no larger than the frame), for small print and for large labels (see pixels.reading).
    recognize_sides: tuple[int, ...] = (2048, 1024)
    triage: TriageSettings = field(default_factory=_default_triage)

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError("padding must not be negative")
        if not 0.0 < self.phi_threshold <= 1.0:
            raise ValueError("the PHI threshold must lie in (0, 1]")
