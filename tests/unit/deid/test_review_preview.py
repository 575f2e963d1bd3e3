"""The preview a reviewer judges a held instance by, rendered from real ultrasound files."""

from __future__ import annotations

import io
from pathlib import Path

import deid_data
import numpy as np
from PIL import Image
from pydicom import dcmread

from radstream.deid.pixels.findings import PixelFinding
from radstream.deid.review_preview import KEPT_COLOUR, PHI_COLOUR, render_preview, sheet_frames
from radstream.ocr.engine import Box

ULTRASOUNDS = Path(deid_data.__file__).parent / "data" / "ultrasounds"


def finding(frame: int, box: Box, *, phi: bool) -> PixelFinding:
    return PixelFinding(
        frame=frame, box=box, text="x", confidence=0.9, detection_score=0.9, phi=phi
    )


def png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def test_a_single_frame_is_shown_whole_with_phi_boxes_red_and_kept_text_green() -> None:
    dataset = dcmread(ULTRASOUNDS / "GREYSCALE_IMAGE.dcm")
    phi_box, kept_box = Box(100, 10, 200, 20), Box(900, 700, 40, 20)

    shown = png(
        render_preview(dataset, [finding(0, phi_box, phi=True), finding(0, kept_box, phi=False)])
    )

    assert shown.shape == (768, 1024, 3)
    assert tuple(shown[10, 100]) == PHI_COLOUR
    assert tuple(shown[29, 299]) == PHI_COLOUR
    assert tuple(shown[700, 900]) == KEPT_COLOUR
    # Inside the box the original pixels are shown: the reviewer must see the text.
    original = dataset.pixel_array
    assert (shown[14:26, 104:296, 0] == original[14:26, 104:296]).all()


def test_a_reviewers_extra_box_is_drawn_too() -> None:
    dataset = dcmread(ULTRASOUNDS / "GREYSCALE_IMAGE.dcm")
    shown = png(render_preview(dataset, [], boxes=[(0, Box(50, 600, 30, 30), True)]))
    assert tuple(shown[600, 50]) == PHI_COLOUR


def test_a_multi_frame_instance_becomes_a_contact_sheet_that_fits() -> None:
    dataset = dcmread(ULTRASOUNDS / "ultrasound-multiframe.dcm")  # 30 frames, 600 x 800, RGB
    box = Box(100, 100, 400, 200)

    shown = png(render_preview(dataset, [finding(7, box, phi=True)], max_side=1024))

    # 30 frames in a 6 x 5 grid, every tile scaled alike, the sheet within max_side.
    assert max(shown.shape[:2]) <= 1024
    scale = min((1024 - 4 * 5) / (6 * 800), (1024 - 4 * 4) / (5 * 600))
    tile_w, tile_h = round(800 * scale), round(600 * scale)
    assert shown.shape[:2] == (5 * tile_h + 4 * 4, 6 * tile_w + 4 * 5)
    # Frame 7 is the second tile of the second row; its box is outlined there.
    left, top = 1 * (tile_w + 4), 1 * (tile_h + 4)
    scaled = box.scaled(scale)
    assert tuple(shown[top + scaled.y, left + scaled.x]) == PHI_COLOUR
    assert tuple(shown[top + scaled.bottom - 1, left + scaled.right - 1]) == PHI_COLOUR


def test_past_the_tile_limit_every_frame_with_findings_is_shown_and_the_rest_sampled() -> None:
    frames = sheet_frames(100, {57, 3, 250}, 10)
    assert len(frames) == 10
    assert frames == sorted(frames)
    assert {3, 57} <= set(frames)
    assert all(0 <= frame < 100 for frame in frames)
    assert sheet_frames(5, {1}, 10) == [0, 1, 2, 3, 4]
