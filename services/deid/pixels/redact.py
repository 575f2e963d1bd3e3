"""Which boxes are filled in which frame, and the filling.

A PHI box found in frame 0 is filled in every frame of the instance, changed there or not.
Frame 0's text is found; in a later frame its place is either unchanged (so the text is
there, pixel for pixel) or changed -- and a change there does not mean the text went: a
device's banner or a label over the moving sector of a cine loop is drawn over pixels that
change in every frame, and the triage's check of the changed cells does not always find it
again among the speckle (on the synthetic calibration split, six of the fifteen proposals still
showing PHI were cines whose frame-0 label over the sector was left in frames 1 to 3). Filling
the box where the text may have moved away costs a few pixels of picture; leaving it where it
stayed costs a patient. Boxes found in a later frame's changed tiles are that frame's own.
Boxes a reviewer drew (``reviewed_boxes``) follow the same rule: a box drawn on frame 0 covers
the static banner of a whole cine loop.

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
    """The boxes to fill per frame: each frame's own, and frame 0's in every frame.

    ``found`` maps a frame to the boxes found (or drawn) in it; ``changes`` holds, per frame,
    how it differs from frame 0 (``None`` for frame 0 itself): one entry per frame, so the
    plan knows how many frames there are. Whether frame 0's box changed in a frame does not
    matter (see the module docstring).
    """
    plan: dict[int, list[Box]] = {}
    inherited = tuple(found.get(0, ()))
    for index in range(len(changes)):
        boxes = list(found.get(index, ()))
        if index > 0:
            boxes.extend(inherited)
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
