"""The pixel benchmark's scoring and tables, on images small enough to check by hand.

The judge itself is eval_pixels' (tested with it); these tests pin what the benchmark adds:
the real files' labels and ink, an engine's recall, the peer's frame put back into a file,
the targets' verdicts and the tables.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radstream.deid.pixels.synthetic import InstanceLabels, LabelBox
from radstream.ocr.engine import Box, TextRegion
from tests.bench.bench_pixels import (
    PRESIDIO,
    RADSTREAM,
    comparison_table,
    engine_table,
    peer_sample,
    rotated,
    stage_reads_once_at_full,
    targets,
)
from tests.bench.markdown_table import markdown_table
from tests.bench.pixel_inputs import LabelledImage, ink_background, real_labels, trimmed_off
from tests.bench.pixel_scoring import engine_recall, judge, peer_proposal, summary

ROWS, COLUMNS = 24, 48
PHI_BOX = LabelBox(
    frame=0, x=2, y=2, width=20, height=8, text="DOE", is_phi=True, kind="PatientName",
    in_header=True,
)  # fmt: skip
NOTE_BOX = LabelBox(
    frame=0, x=26, y=12, width=18, height=8, text="L", is_phi=False, kind="annotation",
    in_header=False,
)  # fmt: skip


def _box(x: int, y: int, width: int, height: int, *, is_phi: bool = False) -> LabelBox:
    return LabelBox(
        frame=0, x=x, y=y, width=width, height=height, text="", is_phi=is_phi,
        kind="annotation" if not is_phi else "name", in_header=False,
    )  # fmt: skip


def _dicom(pixels: npt.NDArray[np.uint8]) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _image() -> LabelledImage:
    """A black frame with ink (value 200) in a PHI box and in an annotation box."""
    background = np.zeros((ROWS, COLUMNS), np.uint8)
    original = background.copy()
    original[4:8, 4:20] = 200  # the PHI's ink
    original[14:18, 28:40] = 200  # the annotation's ink
    labels = InstanceLabels(
        file="tiny", seed=0, layout="sc", modality="OT", frames=1, photometric="MONOCHROME2",
        boxes=(PHI_BOX, NOTE_BOX),
    )  # fmt: skip
    return LabelledImage(
        name="synthetic/tiny",
        source="synthetic",
        data=_dicom(original),
        labels=labels,
        original=original[None],
        background=background[None],
    )


def _proposal(image: LabelledImage, *fills: tuple[slice, slice]) -> Dataset:
    frame = image.original[0].copy()
    for window in fills:
        frame[window] = 0
    return peer_proposal(image, frame)


PHI_FILL = (slice(1, 11), slice(1, 23))
NOTE_FILL = (slice(11, 21), slice(25, 45))


# -- judging a proposal ---------------------------------------------------------------------


def test_a_proposal_filling_only_the_phi_hides_it_and_keeps_the_annotation() -> None:
    image = _image()
    verdict = judge(
        image, status="released", proposal=_proposal(image, PHI_FILL), judge_engine=None
    )
    result = summary([image], [verdict], tool="t")
    assert (result.phi_boxes_hidden, result.phi_boxes) == (1, 1)
    assert (result.annotation_boxes_kept, result.annotation_boxes) == (1, 1)


def test_filling_the_annotation_too_counts_it_altered() -> None:
    image = _image()
    proposal = _proposal(image, PHI_FILL, NOTE_FILL)
    result = summary(
        [image], [judge(image, status="released", proposal=proposal, judge_engine=None)], tool="t"
    )
    assert result.phi_boxes_hidden == 1
    assert result.annotation_boxes_kept == 0


def test_an_untouched_proposal_hides_nothing_and_a_missing_one_counts_every_phi_box() -> None:
    image = _image()
    untouched = judge(image, status="released", proposal=_proposal(image), judge_engine=None)
    missing = judge(image, status="missing", proposal=None, judge_engine=None)
    assert summary([image], [untouched], tool="t").phi_boxes_hidden == 0
    counted = summary([image], [missing], tool="t")
    assert (counted.phi_boxes_hidden, counted.phi_boxes) == (0, 1)


def test_a_held_proposal_counts_toward_the_review_rate() -> None:
    image = _image()
    held = judge(image, status="held", proposal=_proposal(image, PHI_FILL), judge_engine=None)
    assert summary([image], [held], tool="t").review_rate_text == 1.0


def test_summary_wants_one_verdict_per_image_in_order() -> None:
    image = _image()
    verdict = judge(image, status="missing", proposal=None, judge_engine=None)
    with pytest.raises(ValueError, match="one verdict per image"):
        summary([image, image], [verdict], tool="t")


def test_the_peer_frame_goes_back_into_the_file_and_a_changed_geometry_is_refused() -> None:
    image = _image()
    frame = np.full((ROWS, COLUMNS), 7, np.uint8)
    assert np.array_equal(peer_proposal(image, frame).pixel_array, frame)
    with pytest.raises(ValueError, match="frame for a"):
        peer_proposal(image, frame[:, :-1])
    with pytest.raises(ValueError, match="do not fit"):
        peer_proposal(image, np.full((ROWS, COLUMNS), 300, np.uint16))


# -- an engine's recall ---------------------------------------------------------------------


def _line(box: Box, text: str) -> TextRegion:
    return TextRegion(box=box, text=text, confidence=0.9, detection_score=0.9)


def test_engine_recall_counts_a_line_over_the_box_found_and_its_text_read() -> None:
    labels = _image().labels
    over = _line(Box(2, 2, 20, 8), "DOE")
    recall = engine_recall(labels, [over], width=COLUMNS, height=ROWS, padding=0)
    assert (recall.phi_boxes, recall.found, recall.readable, recall.read) == (1, 1, 1, 1)


def test_engine_recall_misread_text_is_found_not_read_and_lines_elsewhere_are_neither() -> None:
    labels = _image().labels
    misread = engine_recall(
        labels, [_line(Box(2, 2, 20, 8), "XYZ")], width=COLUMNS, height=ROWS, padding=0
    )
    assert (misread.found, misread.read) == (1, 0)
    elsewhere = engine_recall(
        labels, [_line(Box(26, 12, 18, 8), "DOE")], width=COLUMNS, height=ROWS, padding=0
    )
    assert (elsewhere.found, elsewhere.read) == (0, 0)


def test_engine_recall_grows_lines_by_the_fill_padding() -> None:
    labels = _image().labels
    tight = [_line(Box(4, 4, 16, 4), "DOE")]  # two pixels short of the box on every side
    assert engine_recall(labels, tight, width=COLUMNS, height=ROWS, padding=0).found == 0
    assert engine_recall(labels, tight, width=COLUMNS, height=ROWS, padding=2).found == 1


# -- the real files' labels -----------------------------------------------------------------


def test_an_annotation_touching_a_phi_box_loses_the_shared_rows() -> None:
    phi = _box(9, 6, 163, 13, is_phi=True)  # rows 6..18
    annotation = _box(9, 18, 135, 30)  # rows 18..47
    trimmed = trimmed_off(annotation, [phi])
    assert trimmed is not None
    assert (trimmed.x, trimmed.y, trimmed.width, trimmed.height) == (9, 19, 135, 29)
    assert trimmed_off(_box(9, 40, 20, 5), [phi]) == _box(9, 40, 20, 5)
    assert trimmed_off(_box(10, 7, 5, 5), [phi]) is None


def test_the_shipped_real_labels_have_no_annotation_overlapping_a_phi_box() -> None:
    for boxes in real_labels().values():
        phi = [Box(b.x, b.y, b.width, b.height) for b in boxes if b.is_phi]
        for box in (b for b in boxes if not b.is_phi):
            assert Box(box.x, box.y, box.width, box.height).covered_by(phi) == 0.0
        assert sum(b.is_phi for b in boxes) == 6


def test_ink_is_the_strokes_not_a_band_edge_inside_the_box() -> None:
    frame = np.zeros((30, 40), np.uint8)
    frame[:12] = 40  # a grey banner over a black field: its edge crosses the box
    frame[16:26, 10] = 250  # a stroke two pixels wide on the black field
    frame[16:26, 11] = 250
    frame[3:8, 5] = 200  # a stroke on the banner
    original = frame[None]
    background = ink_background(original, (_box(2, 2, 30, 26),))
    ink = original != background
    assert ink[0, 16:26, 10:12].all()
    assert ink[0, 3:8, 5].all()
    assert ink.sum() == 20 + 5
    assert background[0, 3, 5] == 40
    assert background[0, 20, 10] == 0


# -- rounds, samples, targets and tables ----------------------------------------------------


def test_each_round_starts_with_another_tool() -> None:
    tools = ["a", "b", "c"]
    assert [rotated(tools, n)[0] for n in range(4)] == ["a", "b", "c", "a"]
    assert sorted(rotated(tools, 1)) == tools


def test_the_peer_sample_is_evenly_spaced_with_both_ends() -> None:
    assert peer_sample(300, 4) == [0, 100, 199, 299]
    assert peer_sample(10, 0) == list(range(10))
    assert peer_sample(3, 5) == [0, 1, 2]
    assert peer_sample(10, 1) == [0]


def test_the_stage_reads_once_at_full_resolution_only_below_its_smallest_side() -> None:
    assert stage_reads_once_at_full((768, 1024), (2048, 1024))
    assert not stage_reads_once_at_full((2500, 3000), (2048, 1024))
    assert stage_reads_once_at_full((2500, 3000), (0,))


def _comparison(
    rad_hidden: int, rad_altered: int, rad_s: float, peer_s: float
) -> list[dict[str, object]]:
    def row(tool: str, hidden: int, altered: int, seconds: float) -> dict[str, object]:
        real = {
            "phi_boxes": 12, "phi_hidden": hidden, "annotations": 18,
            "annotations_altered": altered, "held": 0, "s_per_image": 1.5,
        }  # fmt: skip
        return {"tool": tool, "real": real, "study_s": seconds}

    return [row(RADSTREAM, rad_hidden, rad_altered, rad_s), row(PRESIDIO, 9, 10, peer_s)]


def test_targets_are_met_only_by_the_figures() -> None:
    review = {"rate": 0.05, "held": 1, "text_bearing": 20, "held_reasons": {}}
    met = targets(_comparison(12, 0, 40.0, 100.0), review)
    assert [ok for _, ok, _ in met] == [True, True, True]
    missed = targets(
        _comparison(11, 1, 120.0, 100.0),
        {"rate": 0.10, "held": 2, "text_bearing": 20, "held_reasons": {"why": 2}},
    )
    assert [ok for _, ok, _ in missed] == [False, False, False]
    assert "11/12" in missed[0][2] and "9/12" in missed[0][2]
    assert "fails closed" not in missed[2][2]


def test_a_review_rate_missed_by_a_fail_closed_threshold_says_so() -> None:
    review = {
        "rate": 1.0, "held": 20, "text_bearing": 20, "held_reasons": {"over": 20},
        "threshold_method": "fail_closed", "threshold_engine": "rapidocr", "threshold_n": 0,
    }  # fmt: skip
    (_, _, (_, ok, figures)) = targets(_comparison(12, 0, 40.0, 100.0), review)
    assert not ok
    assert "fails closed (n=0 calibration records for rapidocr)" in figures


def test_the_comparison_table_has_a_row_per_tool_and_the_study_ratio() -> None:
    text = comparison_table(_comparison(12, 0, 40.0, 100.0), "300 CT + 20 US")
    lines = text.splitlines()
    assert len(lines) == 4
    assert "| radstream " in lines[2] and "12/12" in lines[2] and "x1.00" in lines[2]
    assert "9/12" in lines[3] and "10/18" in lines[3] and "x2.50" in lines[3]


def test_the_engine_table_shows_errors_and_ratios_to_the_baseline() -> None:
    recall = {
        "real": {"phi_boxes": 2, "found": 2, "readable": 0, "read": 0},
        "synthetic": {"phi_boxes": 3, "found": 2, "readable": 3, "read": 1},
    }
    base = {
        "engine": "fast", "error": "", "rounds": 2, "full_ms_real": 100.0,
        "full_ms_synthetic": 50.0, "full_ms_all": 80.0, "stage_ms_all": 80.0,
        "full_recall": recall, "stage_recall": recall,
    }  # fmt: skip
    slow = {**base, "engine": "slow", "full_ms_all": 240.0, "rounds": 1}
    broken = {"engine": "gone", "error": "not loaded: MissingExtraError"}
    lines = engine_table([base, slow, broken], "fast").splitlines()
    assert "x1.00" in lines[2] and "4/5 (real 2/2)" in lines[2] and "1/3" in lines[2]
    assert "x3.00" in lines[3]
    assert "not loaded" in lines[4]


def test_markdown_table_aligns_escapes_and_checks_widths() -> None:
    text = markdown_table(["name", "n"], [["a|b", 1], ["c", 22]])
    assert text.splitlines() == [
        "| name |   n |",
        "| ---- | --: |",
        "| a\\|b |   1 |",
        "| c    |  22 |",
    ]
    with pytest.raises(ValueError, match="2 cells for 1"):
        markdown_table(["only"], [["a", "b"]])
