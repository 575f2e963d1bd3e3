"""What every engine does around its model: refuse non-8-bit input, downscale, map back."""

from __future__ import annotations

import numpy as np
import pytest

from radstream.ocr.engine import Box
from radstream.ocr.engines.prepared import checked_image, prepare


def test_an_image_within_max_side_is_passed_as_it_is() -> None:
    pixels = np.arange(48, dtype=np.uint8).reshape(6, 8)

    prepared = prepare(pixels, 8)

    assert prepared.factor == 1.0
    assert prepared.pixels is pixels


def test_a_larger_image_is_downscaled_to_max_side_keeping_its_aspect() -> None:
    prepared = prepare(np.zeros((768, 1024, 3), np.uint8), 512)

    assert prepared.pixels.shape == (384, 512, 3)
    assert prepared.factor == 0.5
    assert (prepared.height, prepared.width) == (768, 1024)


def test_downscaling_keeps_a_one_pixel_stroke_visible() -> None:
    pixels = np.zeros((400, 400), np.uint8)
    pixels[:, 201] = 255  # a vertical stroke one pixel wide

    small = prepare(pixels, 100).pixels

    assert small.max() >= 60  # averaged into its 4-pixel cell, not dropped between samples


def test_boxes_map_back_outward_and_clipped_to_the_original() -> None:
    prepared = prepare(np.zeros((300, 1000), np.uint8), 500)  # factor 0.5

    box = prepared.box([(10.4, 20.6), (60.2, 20.6), (60.2, 31.1), (10.4, 31.1)])
    edge = prepared.box([(480.0, 140.0), (503.0, 140.0), (503.0, 152.0), (480.0, 152.0)])
    outside = prepared.box([(600.0, 10.0), (610.0, 20.0)])

    assert box == Box(20, 40, 102, 24)  # (10, 20)-(61, 32) doubled
    assert edge == Box(960, 280, 40, 20)
    assert outside is None


def test_regions_carry_scores_in_range_and_the_polygon_in_original_coordinates() -> None:
    prepared = prepare(np.zeros((300, 1000), np.uint8), 500)

    region = prepared.region(
        [(10.0, 20.0), (60.0, 20.0), (60.0, 30.0), (10.0, 30.0)],
        text="X",
        confidence=1.2,
        detection_score=-0.1,
    )

    assert region is not None
    assert region.polygon == ((20.0, 40.0), (120.0, 40.0), (120.0, 60.0), (20.0, 60.0))
    assert (region.confidence, region.detection_score) == (1.0, 0.0)


@pytest.mark.parametrize(
    ("pixels", "error", "message"),
    [
        (np.zeros((4, 4), np.uint16), TypeError, "uint16"),
        (np.zeros((4, 4), np.int8), TypeError, "int8"),
        (np.zeros((4, 4), bool), TypeError, "bool"),
        (np.zeros((4, 4, 2), np.uint8), ValueError, r"\(4, 4, 2\)"),
        (np.zeros((2, 4, 4, 3), np.uint8), ValueError, r"\(2, 4, 4, 3\)"),
        (np.zeros((4, 0, 3), np.uint8), ValueError, "non-empty"),
        ("pixels.png", TypeError, "str"),
    ],
)
def test_checked_image_refuses_all_but_8_bit_gray_or_rgb(
    pixels: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        checked_image(pixels)


def test_the_refusal_names_no_pixel_value() -> None:
    with pytest.raises(TypeError) as refused:
        checked_image(np.full((2, 2), 31337, np.uint16))

    assert "31337" not in str(refused.value)
