"""Box, TextRegion and the scaling helpers of radstream.ocr.engine: geometry redaction relies on."""

from __future__ import annotations

import pytest

from radstream.ocr.engine import Box, TextRegion, scale_for, sorted_regions


def test_around_encloses_fractional_corners_outward() -> None:
    box = Box.around([(10.2, 5.7), (30.9, 5.1), (30.5, 20.01), (10.0, 19.2)])

    assert (box.x, box.y, box.right, box.bottom) == (10, 5, 31, 21)


def test_around_a_point_is_one_pixel() -> None:
    assert Box.around([(4.0, 4.0)]) == Box(4, 4, 1, 1)


@pytest.mark.parametrize("factor", [0.25, 1 / 3, 0.5, 0.7, 1.0, 1.37, 2.0, 3.0, 1 / 0.3])
@pytest.mark.parametrize("box", [Box(0, 0, 1, 1), Box(7, 3, 13, 5), Box(101, 57, 33, 9)])
def test_scaled_never_shrinks_the_region_it_stands_for(box: Box, factor: float) -> None:
    scaled = box.scaled(factor)

    assert scaled.x <= box.x * factor and scaled.y <= box.y * factor
    assert scaled.right >= box.right * factor and scaled.bottom >= box.bottom * factor
    assert scaled.width >= 1 and scaled.height >= 1


def test_scaled_by_a_factor_and_back_still_covers_the_original() -> None:
    box = Box(123, 45, 67, 11)

    round_trip = box.scaled(0.3).scaled(1 / 0.3)

    assert box.covered_by([round_trip]) == 1.0


def test_padded_grows_on_every_side_and_stays_in_the_image() -> None:
    assert Box(10, 10, 5, 5).padded(3, width=100, height=100) == Box(7, 7, 11, 11)
    assert Box(1, 2, 5, 5).padded(4, width=8, height=9) == Box(0, 0, 8, 9)


def test_clipped_cuts_to_the_image_or_is_none_outside_it() -> None:
    assert Box(-5, -5, 10, 10).clipped(width=100, height=100) == Box(0, 0, 5, 5)
    assert Box(95, 90, 10, 20).clipped(width=100, height=100) == Box(95, 90, 5, 10)
    assert Box(100, 0, 5, 5).clipped(width=100, height=100) is None


def test_intersection_and_area() -> None:
    assert Box(0, 0, 10, 10).intersection(Box(5, 5, 10, 10)) == 25
    assert Box(0, 0, 10, 10).intersection(Box(10, 0, 5, 5)) == 0
    assert Box(2, 3, 4, 5).area == 20


def test_covered_by_counts_overlapping_boxes_once() -> None:
    box = Box(0, 0, 10, 10)

    assert box.covered_by([]) == 0.0
    assert box.covered_by([Box(0, 0, 5, 10), Box(0, 0, 5, 10)]) == 0.5
    assert box.covered_by([Box(0, 0, 6, 10), Box(4, 0, 6, 10)]) == 1.0
    assert box.covered_by([Box(-20, -20, 25, 25)]) == 0.25


def test_scale_for_only_ever_shrinks() -> None:
    assert scale_for(768, 1024, 512) == 0.5
    assert scale_for(1024, 768, 512) == 0.5
    assert scale_for(300, 400, 512) == 1.0
    assert scale_for(768, 1024, 0) == 1.0
    assert scale_for(768, 1024, -1) == 1.0


def test_sorted_regions_reads_rows_top_down_then_left_to_right() -> None:
    right_high = TextRegion(Box(300, 10, 80, 20))
    left_low_same_row = TextRegion(Box(10, 14, 80, 20))
    next_row = TextRegion(Box(5, 60, 80, 20))

    assert sorted_regions([next_row, right_high, left_low_same_row]) == [
        left_low_same_row,
        right_high,
        next_row,
    ]
    assert sorted_regions([]) == []


def test_a_region_repr_shows_no_text() -> None:
    region = TextRegion(Box(0, 0, 10, 10), text="SMITH^JOHN", confidence=0.9)

    assert "SMITH" not in repr(region)
    assert "10 chars" in repr(region)
