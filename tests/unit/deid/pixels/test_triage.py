"""The text check: the stroke screen clears CT slices without the detector and catches text.

The issue's budget: the whole pipeline must keep up with dicognito on 512x512 16-bit CT slices,
so the check on a slice without text must cost about a millisecond -- the classical screen has
to clear body, table and air on its own, while a name burned into the top rows is caught.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from radstream.deid.pixels.frames import Window, decode_frames
from radstream.deid.pixels.triage import changed_regions, screen_regions, triage
from tests.unit.deid.pixels.builders import (
    HU_OFFSET,
    CountingEngine,
    burn,
    ct_instance,
    ct_slice,
    engine,
)

SOFT_TISSUE = Window(HU_OFFSET + 40 - 200, HU_OFFSET + 40 + 200)
# (centre, width) in HU: soft tissue, lung, bone, and the narrow brain window.
WINDOWS = [(40, 400), (-600, 1500), (400, 1800), (40, 80)]


def window(centre: float, width: float) -> Window:
    return Window(HU_OFFSET + centre - width / 2, HU_OFFSET + centre + width / 2)


class TestTheScreen:
    @pytest.mark.parametrize(("centre", "width"), WINDOWS)
    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_clears_ct_slices_without_text_in_every_usual_window(
        self, centre: float, width: float, seed: int
    ) -> None:
        pixels = ct_slice(seed, noise_hu=6.0 if width < 100 else 12.0)
        assert screen_regions(window(centre, width).apply(pixels)) == []

    @pytest.mark.parametrize("body", [0.6, 1.1, 1.4])  # small, large, touching the borders
    def test_clears_bodies_of_any_size(self, body: float) -> None:
        assert screen_regions(SOFT_TISSUE.apply(ct_slice(3, body=body))) == []

    @pytest.mark.parametrize(("centre", "width"), WINDOWS)
    def test_flags_a_name_burned_into_the_top_rows(self, centre: float, width: float) -> None:
        pixels = ct_slice(4)
        ink = burn(pixels, "DOE^JANE 1961-03-17", (6, 4), 14, 4095)
        regions = screen_regions(window(centre, width).apply(pixels))
        assert any(
            region.covered_by([ink]) > 0 and ink.covered_by([region]) == 1.0 for region in regions
        )

    def test_flags_text_over_the_body_and_in_a_lower_corner(self) -> None:
        pixels = ct_slice(5)
        over_body = burn(pixels, "SMITH JOHN", (200, 250), 16, 4095)
        corner = burn(pixels, "ID 4471-2209", (380, 488), 12, 4095)
        regions = screen_regions(SOFT_TISSUE.apply(pixels))
        for ink in (over_body, corner):
            assert ink.covered_by(regions) == 1.0

    @pytest.mark.parametrize("size", [9, 12, 18])
    def test_flags_two_letter_initials_and_lets_a_lone_marker_pass(self, size: int) -> None:
        initials, marker = ct_slice(14), ct_slice(14)
        ink = burn(initials, "AC", (40, 8), size, 4095)
        burn(marker, "L", (40, 8), size, 4095)
        assert ink.covered_by(screen_regions(SOFT_TISSUE.apply(initials))) == 1.0
        assert screen_regions(SOFT_TISSUE.apply(marker)) == []  # not PHI: one character

    def test_flags_grey_text_on_grey_background(self) -> None:
        pixels = ct_slice(6)
        pixels[:40] = HU_OFFSET - 100  # a grey band
        ink = burn(pixels, "DOE JANE", (8, 10), 14, HU_OFFSET + 80)  # 180 HU above it
        assert ink.covered_by(screen_regions(SOFT_TISSUE.apply(pixels))) == 1.0

    def test_salt_and_pepper_noise_is_not_cleared(self) -> None:
        """Full-contrast noise hides nothing legible, but it is not cleared either: the
        detector decides. (A benchmark with random pixels measures the detector, not CT.)"""
        rng = np.random.default_rng(7)
        noise = rng.integers(0, 4096, (512, 512), dtype=np.uint16)
        assert screen_regions(SOFT_TISSUE.apply(noise)) != []


class TestTheCheckOfACtSlice:
    def test_a_slice_without_text_is_cleared_by_the_screen_alone_in_about_a_millisecond(
        self,
    ) -> None:
        counting = CountingEngine(engine())
        decoded = decode_frames(ct_instance(ct_slice(8)))
        timings = []
        for _ in range(30):
            started = time.perf_counter()
            checked = triage(decoded, counting, text_prone=False)
            timings.append((time.perf_counter() - started) * 1000)
        assert counting.detect_calls == [] and counting.recognize_calls == []
        assert checked.decision == "text_check_negative_screen"
        assert not checked.needs_ocr
        # ~0.6 ms alone on this VM's core; generous for a CI machine shared with other jobs.
        assert statistics.median(timings) < 5.0

    def test_a_burned_in_name_is_confirmed_by_the_detector_on_its_region_only(self) -> None:
        counting = CountingEngine(engine())
        pixels = ct_slice(9)
        ink = burn(pixels, "DOE^JANE 19610317", (6, 4), 14, 4095)
        checked = triage(decode_frames(ct_instance(pixels)), counting, text_prone=False)
        [plan] = checked.plans
        assert checked.needs_ocr
        assert checked.decision == "text_check_positive"
        assert ink.covered_by([d.box for d in plan.detections]) > 0.9
        assert ink.covered_by(list(plan.ocr_regions)) == 1.0
        # The detector saw a crop around the text, not the slice.
        assert counting.detect_calls and all(
            h * w < 512 * 512 / 4 for h, w in counting.detect_calls
        )

    def test_text_prone_first_frames_go_straight_to_ocr(self) -> None:
        counting = CountingEngine(engine())
        checked = triage(decode_frames(ct_instance(ct_slice(10))), counting, text_prone=True)
        assert checked.needs_ocr and counting.detect_calls == []


class TestFramesOfAMultiFrameInstance:
    def test_identical_frames_are_not_checked_and_changed_tiles_are(self) -> None:
        first = SOFT_TISSUE.apply(ct_slice(11))
        same = first.copy()
        moved = first.copy()
        moved[300:340, 100:180] = 255
        assert changed_regions(first, same) == ()
        [region] = changed_regions(first, moved)
        assert region.x <= 100 - 16 and region.y <= 300 - 16  # grown by one 16-px cell
        assert region.right >= 180 + 16 and region.bottom >= 340 + 16

    def test_within_the_tolerance_frames_are_unchanged(self) -> None:
        first = SOFT_TISSUE.apply(ct_slice(12))
        noisy = np.clip(first.astype(np.int16) + 5, 0, 255).astype(np.uint8)
        assert changed_regions(first, noisy, tolerance=12) == ()
        assert changed_regions(first, noisy) != ()

    def test_text_appearing_in_a_later_frame_is_found_there(self) -> None:
        base = ct_slice(13)
        later = base.copy()
        ink = burn(later, "SMITH JOHN 4471", (300, 460), 14, 4095)
        frames = np.stack([base, base, later])

        def multi_frame(ds: object) -> None:
            ds.NumberOfFrames = 3  # type: ignore[attr-defined]
            ds.PixelData = frames.astype("<u2").tobytes()  # type: ignore[attr-defined]

        decoded = decode_frames(ct_instance(base, customize=multi_frame))
        checked = triage(decoded, engine(), text_prone=False)
        first, identical, changed = checked.plans
        assert first.whole and not first.ocr_regions
        assert not identical.checked
        assert ink.covered_by(list(changed.regions)) == 1.0
        assert ink.covered_by(list(changed.ocr_regions)) == 1.0
        assert checked.frames_checked == 2
