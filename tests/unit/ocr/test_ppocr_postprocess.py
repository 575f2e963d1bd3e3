"""PP-OCR's tensors in and out (ppocr_postprocess), on hand-made images, maps and logits.

No model runs here: the probability maps and class probabilities are built by hand so that each
property of DB post-processing and CTC decoding is checked on its own.
"""

from __future__ import annotations

import numpy as np
import pytest

from radstream.ocr.engines.ppocr_postprocess import (
    Quad,
    bgr,
    ctc_greedy_decode,
    db_quads,
    detector_input,
    framed,
    recognizer_batches,
    upright_crop,
)

HALF = (0.5, 0.5, 0.5)
DB = {
    "threshold": 0.3,
    "box_threshold": 0.5,
    "unclip_ratio": 1.6,
    "max_candidates": 1000,
    "dilate": True,
}


def _box_of(quad: Quad) -> tuple[float, float, float, float]:
    xs = [p[0] for p in quad.points]
    ys = [p[1] for p in quad.points]
    return min(xs), min(ys), max(xs), max(ys)


# --- pixels to tensors -------------------------------------------------------------------------


def test_gray_becomes_three_equal_channels_and_rgb_becomes_bgr() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert bgr(gray).shape == (3, 4, 3)
    assert all((bgr(gray)[:, :, c] == gray).all() for c in range(3))
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200  # red
    assert (bgr(rgb)[..., 2] == 200).all()
    assert (bgr(rgb)[..., 0] == 0).all()
    with pytest.raises(ValueError, match="shape"):
        bgr(np.zeros((2, 2, 4), np.uint8))


def test_detector_input_is_normalised_nchw_in_multiples_of_the_stride() -> None:
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, :150] = 255
    image[:, 150:, 1] = 255  # right half: only the second channel lit
    made = detector_input(image, limit_side=736, limit_type="min", stride=32, mean=HALF, std=HALF)
    _, channels, rows, cols = made.tensor.shape
    assert (channels, rows % 32, cols % 32) == (3, 0, 0)
    assert made.tensor.dtype == np.float32
    assert (made.image_height, made.image_width) == (100, 300)
    # "min": the shorter side comes up to about 736, the aspect ratio kept within rounding.
    assert abs(rows - 736) <= 16
    assert cols / rows == pytest.approx(3.0, rel=0.05)
    # (pixel / 255 - 0.5) / 0.5: white is 1, black is -1; channel order is kept.
    assert made.tensor[0, :, rows // 2, 10].tolist() == [1.0, 1.0, 1.0]
    assert made.tensor[0, :, rows // 2, cols - 10].tolist() == [-1.0, 1.0, -1.0]


def test_detector_input_max_caps_the_longer_side_and_never_upscales() -> None:
    big = np.zeros((1000, 2000, 3), np.uint8)
    made = detector_input(big, limit_side=960, limit_type="max", stride=32, mean=HALF, std=HALF)
    assert made.tensor.shape[2:] == (480, 960)
    small = np.zeros((64, 96, 3), np.uint8)
    kept = detector_input(small, limit_side=960, limit_type="max", stride=32, mean=HALF, std=HALF)
    assert kept.tensor.shape[2:] == (64, 96)


def test_a_wide_strip_is_padded_above_and_below_and_maps_back() -> None:
    strip = np.full((40, 900, 3), 200, np.uint8)  # 22.5 times wider than high
    frame = framed(
        strip,
        min_side=30,
        max_side=2000,
        stride=32,
        vertical_padding=True,
        min_height=30,
        width_height_ratio=8,
    )
    # Padded to 2 * max(900 / 8, 30) = 224 rows: 92 black rows above and below.
    assert frame.image.shape[:2] == (40 + 2 * 92, 900)
    assert frame.top == 92
    assert (frame.image[:92] == 0).all()
    assert (frame.image[92:132] == 200).all()
    corner = Quad(points=((10.0, 92.0), (20.0, 92.0), (20.0, 132.0), (10.0, 132.0)), score=1.0)
    assert frame.unframed(corner) == [(10.0, 0.0), (20.0, 0.0), (20.0, 40.0), (10.0, 40.0)]


def test_an_oversized_image_is_brought_within_bounds_and_maps_back() -> None:
    image = np.zeros((1200, 3000, 3), np.uint8)
    frame = framed(
        image,
        min_side=30,
        max_side=2000,
        stride=32,
        vertical_padding=True,
        min_height=30,
        width_height_ratio=8,
    )
    rows, cols = frame.image.shape[:2]
    assert max(rows, cols) <= 2000 + 16
    assert rows % 32 == 0 and cols % 32 == 0
    assert frame.top == 0
    far = Quad(points=((cols, rows),) * 4, score=1.0)
    assert frame.unframed(far)[0] == pytest.approx((3000.0, 1200.0))


# --- DB: probability map to quads -------------------------------------------------------------


def _map_with(*rectangles: tuple[int, int, int, int, float], shape=(64, 128)) -> np.ndarray:
    probabilities = np.zeros(shape, np.float32)
    for left, top, right, bottom, value in rectangles:
        probabilities[top:bottom, left:right] = value
    return probabilities


def test_a_text_kernel_is_grown_back_by_the_unclip_distance() -> None:
    # A 40 x 8 kernel: its contour runs through the outer pixels' centres, 39 x 7, and DB grows
    # it by area * 1.6 / perimeter = 273 * 1.6 / 92 = 4.7 pixels on every side.
    undilated = DB | {"dilate": False}
    quads = db_quads(
        _map_with((20, 20, 60, 28, 0.9)), image_height=64, image_width=128, **undilated
    )
    assert len(quads) == 1
    assert quads[0].score == pytest.approx(0.9)
    left, top, right, bottom = _box_of(quads[0])
    grow = 39 * 7 * 1.6 / (2 * (39 + 7))
    assert left == pytest.approx(20 - grow, abs=1)
    assert right == pytest.approx(59 + grow, abs=1)
    assert top == pytest.approx(20 - grow, abs=1)
    assert bottom == pytest.approx(27 + grow, abs=1)


def test_quads_are_clockwise_from_the_top_left_and_scaled_to_the_image() -> None:
    quads = db_quads(_map_with((20, 20, 60, 28, 0.9)), image_height=128, image_width=256, **DB)
    (tl, tr, br, bl) = quads[0].points
    assert tl[0] < tr[0] and tl[1] < bl[1] and br[0] > bl[0] and br[1] > tr[1]
    left, top, right, bottom = _box_of(quads[0])
    assert (left + right) / 2 == pytest.approx(2 * 40, abs=3)  # the map is half the image
    assert (top + bottom) / 2 == pytest.approx(2 * 24, abs=3)


def test_weak_thin_and_separate_regions() -> None:
    probabilities = _map_with(
        (10, 10, 50, 18, 0.9),  # text
        (70, 10, 110, 18, 0.4),  # above the pixel threshold, below the box threshold: dropped
        (10, 40, 110, 41, 0.9),  # one pixel high: too thin to be text
        (10, 50, 50, 58, 0.8),  # a second line
    )
    quads = db_quads(probabilities, image_height=64, image_width=128, **DB)
    centres = sorted(((b[1] + b[3]) / 2, (b[0] + b[2]) / 2) for b in map(_box_of, quads))
    assert len(centres) == 2
    assert centres[0] == pytest.approx((14, 30), abs=2)
    assert centres[1] == pytest.approx((54, 30), abs=2)


def test_dilation_joins_characters_a_pixel_apart() -> None:
    letters = _map_with(*((10 + 6 * i, 10, 15 + 6 * i, 20, 0.9) for i in range(6)))
    assert len(db_quads(letters, image_height=64, image_width=128, **DB)) == 1
    apart = db_quads(letters, image_height=64, image_width=128, **(DB | {"dilate": False}))
    assert len(apart) == 6


def test_max_candidates_bounds_the_work() -> None:
    many = _map_with(*((4 + 12 * i, 10, 12 + 12 * i, 20, 0.9) for i in range(8)))
    assert len(db_quads(many, image_height=64, image_width=128, **DB)) == 8
    capped = db_quads(many, image_height=64, image_width=128, **(DB | {"max_candidates": 3}))
    assert len(capped) == 3


def test_slow_scoring_follows_the_contour() -> None:
    # An L: its rectangle is mostly empty (fast score about 0.3, dropped), its contour is ink.
    probabilities = _map_with((10, 10, 60, 18, 0.9), (10, 18, 18, 50, 0.9))
    undilated = DB | {"dilate": False}
    assert db_quads(probabilities, image_height=64, image_width=128, **undilated) == []
    slow = db_quads(probabilities, image_height=64, image_width=128, **undilated, score_mode="slow")
    assert len(slow) == 1
    assert slow[0].score == pytest.approx(0.9, abs=0.02)


# --- strips and recognizer batches -------------------------------------------------------------


def test_an_axis_aligned_quad_is_cut_out_as_is() -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)
    quad = Quad(points=((10.0, 5.0), (70.0, 5.0), (70.0, 25.0), (10.0, 25.0)), score=1.0)
    strip = upright_crop(image, quad)
    assert strip.shape == (20, 60, 3)
    assert np.array_equal(strip, image[5:25, 10:70])


def test_a_tall_quad_is_read_as_vertical_text_and_turned() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[10:15, 40:50] = 255  # the top of a tall strip ...
    quad = Quad(points=((40.0, 10.0), (50.0, 10.0), (50.0, 70.0), (40.0, 70.0)), score=1.0)
    strip = upright_crop(image, quad)
    assert strip.shape[:2] == (10, 60)
    assert strip[:, :5].mean() > 200  # ... is its left end once turned counter-clockwise
    assert strip[:, 10:].mean() < 10


def test_recognizer_batches_group_similar_widths_and_pad_on_the_right() -> None:
    strips = [
        np.full((24, 24 * ratio, 3), 255, np.uint8) for ratio in (12, 1, 3, 9, 2)
    ]  # aspect ratios 12, 1, 3, 9, 2
    batches = recognizer_batches(strips, height=48, width=320, batch_size=2, mean=HALF, std=HALF)
    assert [indices for indices, _ in batches] == [[1, 4], [2, 3], [0]]
    narrow, middle, wide = (tensor for _, tensor in batches)
    # never narrower than 320; otherwise as wide as the batch's widest strip at height 48
    assert narrow.shape == (2, 3, 48, 320)
    assert middle.shape == (2, 3, 48, 48 * 9)
    assert wide.shape == (1, 3, 48, 48 * 12)
    # the ratio-1 strip fills 48 columns (white: 1.0), then zeros
    assert (narrow[0, :, :, :48] == 1.0).all()
    assert (narrow[0, :, :, 48:] == 0.0).all()


# --- CTC ---------------------------------------------------------------------------------------


CLASSES = ("", "a", "b", "c", " ")


def _steps(*labels: int, p: float = 0.9) -> np.ndarray:
    """One strip's class probabilities: ``p`` on each step's label, the rest spread evenly."""
    rows = np.full((len(labels), len(CLASSES)), (1 - p) / (len(CLASSES) - 1), np.float32)
    rows[np.arange(len(labels)), labels] = p
    return rows


def test_ctc_merges_repeats_and_drops_blanks() -> None:
    # a a _ a b b _ c _ : "aabc" -- a blank between two a's keeps them apart
    logits = _steps(1, 1, 0, 1, 2, 2, 0, 3, 0)[None]
    [(text, confidence)] = ctc_greedy_decode(logits, CLASSES)
    assert text == "aabc"
    assert confidence == pytest.approx(0.9)


def test_ctc_confidence_is_the_mean_over_the_characters_kept() -> None:
    # _ a b, the blank very sure, the letters less so: only the letters count
    logits = np.stack([_steps(0, p=0.99)[0], _steps(1, p=0.6)[0], _steps(2, p=0.95)[0]])
    [(text, confidence)] = ctc_greedy_decode(logits[None], CLASSES)
    assert text == "ab"
    assert confidence == pytest.approx((0.6 + 0.95) / 2)


def test_ctc_reads_nothing_from_blanks_and_checks_the_class_count() -> None:
    blank = _steps(0, 0, 0)[None]
    assert ctc_greedy_decode(np.concatenate([blank, _steps(4, 1, 0)[None]]), CLASSES) == [
        ("", 0.0),
        (" a", pytest.approx(0.9)),
    ]
    with pytest.raises(ValueError, match="5"):
        ctc_greedy_decode(blank[:, :, :4], CLASSES)
    with pytest.raises(ValueError, match="shape"):
        ctc_greedy_decode(blank[0], CLASSES)
