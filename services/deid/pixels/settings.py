"""What the pixel stage is asked to do: the policy mode and the knobs, with their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from radstream.deid.pixels.classify import DEFAULT_PHI_THRESHOLD
from radstream.deid.pixels.triage import TriageSettings

__all__ = ["DEFAULT_PADDING", "PixelPolicyMode", "PixelSettings"]

DEFAULT_PADDING = 3


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
    # The recognizer's resolution (0: full). Large radiographs are read at most this large:
    # their burned-in text is large too, and a 3000x2500 frame would cost seconds.
    recognize_max_side: int = 2048
    triage: TriageSettings = field(default_factory=TriageSettings)

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError("padding must not be negative")
        if not 0.0 < self.phi_threshold <= 1.0:
            raise ValueError("the PHI threshold must lie in (0, 1]")
