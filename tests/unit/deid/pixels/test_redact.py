"""Which boxes are filled in which frame, and with what."""

from __future__ import annotations

import numpy as np

from radstream.deid.pixels.frames import decode_frames
from radstream.deid.pixels.redact import fill_boxes, plan_fills
from radstream.deid.pixels.triage import FrameChange, frame_change
from radstream.ocr.engine import Box
from tests.unit.deid.pixels.builders import ct_instance, ct_slice, us_instance

BANNER = Box(0, 0, 120, 16)
SECTOR = Box(40, 40, 60, 60)


def change(*regions: Box, height: int = 128, width: int = 128) -> FrameChange:
    """A frame that changed exactly in ``regions`` (16-px aligned), relative to frame 0."""
    reference = np.zeros((height, width), np.uint8)
    image = reference.copy()
    for box in regions:
        image[box.y : box.bottom, box.x : box.right] = 255
    return frame_change(reference, image)


class TestThePlan:
    def test_frame_zeros_boxes_are_filled_in_every_frame_changed_there_or_not(self) -> None:
        changes = [None, change(), change(SECTOR), change(Box(0, 0, 128, 16))]
        plan = plan_fills({0: (BANNER,)}, changes)
        assert plan[0] == (BANNER,)
        assert plan[1] == (BANNER,)  # identical to frame 0
        assert plan[2] == (BANNER,)  # only the sector changed
        # The banner's own cells changed (a label over a moving sector): it may still be
        # there, drawn over new pixels, so it is filled all the same (fail closed).
        assert plan[3] == (BANNER,)

    def test_a_label_over_a_cines_moving_sector_is_filled_in_every_frame(self) -> None:
        label = Box(40, 60, 50, 12)  # inside the sector, whose cells change in every frame
        plan = plan_fills({0: (label,)}, [None, change(SECTOR), change(SECTOR)])
        assert plan == {0: (label,), 1: (label,), 2: (label,)}

    def test_a_box_partly_in_changed_cells_is_still_filled(self) -> None:
        plan = plan_fills({0: (BANNER,)}, [None, change(Box(0, 0, 32, 16))])
        assert plan[1] == (BANNER,)

    def test_a_box_inside_a_changed_regions_bounds_but_not_its_cells_is_filled(self) -> None:
        # An L-shaped change: its bounding box holds the banner, its cells do not.
        l_shape = change(Box(0, 48, 128, 16), Box(112, 0, 16, 64))
        assert any(region.covered_by([BANNER]) > 0 for region in l_shape.regions())
        assert plan_fills({0: (BANNER,)}, [None, l_shape])[1] == (BANNER,)

    def test_later_frames_keep_their_own_boxes(self) -> None:
        own = Box(50, 50, 20, 10)
        plan = plan_fills({0: (BANNER,), 2: (own,)}, [None, change(), change(SECTOR)])
        assert plan[2] == (own, BANNER)
        assert plan[1] == (BANNER,)


class TestTheFill:
    def test_monochrome2_boxes_get_the_minimum_grown_by_the_padding(self) -> None:
        pixels = ct_slice(0, size=64)
        decoded = decode_frames(ct_instance(pixels))
        filled = fill_boxes(decoded, {0: (Box(10, 10, 8, 4),)}, padding=3)
        assert (filled[0, 7:17, 7:21] == pixels.min()).all()
        untouched = np.ones(pixels.shape, bool)
        untouched[7:17, 7:21] = False
        assert np.array_equal(filled[0][untouched], pixels[untouched])
        assert np.array_equal(decoded.frames[0], pixels)  # the decoded frames are not touched

    def test_padding_stops_at_the_image_edge(self) -> None:
        decoded = decode_frames(ct_instance(ct_slice(1, size=64)))
        filled = fill_boxes(decoded, {0: (Box(0, 0, 5, 5),)}, padding=3)
        assert (filled[0, :8, :8] == decoded.frames[0].min()).all()

    def test_rgb_boxes_are_black_in_the_frames_planned(self) -> None:
        frames = np.full((2, 32, 48, 3), 200, np.uint8)
        decoded = decode_frames(us_instance(frames))
        filled = fill_boxes(decoded, {1: (Box(4, 4, 10, 6),)}, padding=0)
        assert (filled[1, 4:10, 4:14] == 0).all()
        assert (filled[0] == 200).all()
