"""Which boxes are filled in which frame, and the filling.

A PHI box found in frame 0 is filled in every frame where it is still there: in frame 0, in
every frame equal to frame 0, and in every frame where the box is not wholly inside the tiles
that changed (:class:`radstream.deid.pixels.triage.FrameChange`). That is the other half of
the triage's sampling argument: the unchanged tiles of a frame are frame 0's pixels, so frame
0's text is there too and must go. A box only partly inside the changed tiles is filled as
well (part of the same text may remain). Boxes found in a later frame's changed tiles are that
frame's own. Boxes a reviewer drew (``reviewed_boxes``) follow the same rule: a box drawn on
frame 0 covers the static banner of a whole cine loop.

A filled box is grown by ``padding`` pixels (default 3: anti-aliased edges and the OCR box's
tight fit), clipped to the image, and set to the frame's background -- the minimum stored
value, the maximum for MONOCHROME1 (both display black), black for RGB, the darkest index for
palette colour (:meth:`~radstream.deid.pixels.frames.DecodedFrames.background`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from radstream.deid.pixels.frames import DecodedFrames
from radstream.deid.pixels.triage import FrameChange
from radstream.ocr.engine import Box

__all__ = ["FillPlan", "fill_boxes", "plan_fills"]

FillPlan = dict[int, tuple[Box, ...]]


def plan_fills(
    found: Mapping[int, Sequence[Box]],
    changes: Sequence[FrameChange | None],
) -> FillPlan:
    """The boxes to fill per frame.

    ``found`` maps a frame to the boxes found (or drawn) in it; ``changes`` holds, per frame,
    how it differs from frame 0 (``None`` for frame 0 itself).
    """
    plan: dict[int, list[Box]] = {}
    inherited = tuple(found.get(0, ()))
    for index, change in enumerate(changes):
        boxes = list(found.get(index, ()))
        if index > 0 and inherited:
            boxes.extend(box for box in inherited if change is None or not change.covers(box))
        if boxes:
            plan[index] = list(dict.fromkeys(boxes))
    return {index: tuple(boxes) for index, boxes in plan.items()}


def fill_boxes(
    decoded: DecodedFrames, plan: Mapping[int, Sequence[Box]], *, padding: int
) -> npt.NDArray[np.generic]:
    """A copy of the frames with every planned box (grown by ``padding``) set to background."""
    frames = np.array(decoded.frames, copy=True)
    height, width = decoded.height, decoded.width
    for index, boxes in plan.items():
        value = decoded.background(index)
        frame = frames[index]
        for box in boxes:
            grown = box.padded(padding, width=width, height=height) if padding else box
            clipped = grown.clipped(width=width, height=height)
            if clipped is not None:
                frame[clipped.y : clipped.bottom, clipped.x : clipped.right] = value
    return frames
