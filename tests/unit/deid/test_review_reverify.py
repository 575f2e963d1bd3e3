"""A reviewer's boxes are verified like the stage's own: what still reads PHI is held again.

The real ultrasound of deid-data (names, MRN, birth date and institution burned into its top
band) through the real pipeline, RapidOCR and the Presidio classifier.
"""

from __future__ import annotations

import functools
from pathlib import Path

import deid_data
import pytest

from radstream.deid.pipeline import InstanceOutcome, InstanceStatus, deidentify_instance
from radstream.deid.pixels.classify import PhiClassifier
from radstream.deid.pixels.risk import FAIL_CLOSED, RiskThreshold
from radstream.deid.pixels.stage import PixelStage
from radstream.deid.profile import DeidKeys, DeidProfile
from radstream.ocr.engine import Box
from radstream.ocr.engines import shared_engine
from tests.unit.deid.study_builder import TEST_KEYS_SECRET, shared_text_cleaner

GREYSCALE = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"
# Everything with text is held: the held ultrasound a reviewer then decides on.
HOLD_ALL_TEXT = RiskThreshold(
    value=0.0, leak_rate=0.01, engine="rapidocr", n_calibration=0, method=FAIL_CLOSED
)


@functools.cache
def stage() -> PixelStage:
    return PixelStage(
        shared_engine("rapidocr"),
        classifier=PhiClassifier(shared_text_cleaner().analyzer),
        threshold=HOLD_ALL_TEXT,
    )


def run(reviewed_boxes: dict[int, tuple[Box, ...]] | None) -> InstanceOutcome:
    return deidentify_instance(
        GREYSCALE.read_bytes(),
        profile=DeidProfile(),
        keys=DeidKeys.from_secret(TEST_KEYS_SECRET),
        clean_text=shared_text_cleaner(),
        pixel_policy=stage(),
        reviewed_boxes=reviewed_boxes,
    )


@pytest.fixture(scope="module")
def proposed() -> dict[int, tuple[Box, ...]]:
    held = run(None)
    assert held.status is InstanceStatus.HELD
    assert held.pixel_report is not None
    boxes = held.pixel_report.redacted_boxes
    assert boxes, "the stage proposes boxes over the burned-in PHI"
    return boxes


def test_the_proposed_boxes_approved_release_the_instance(
    proposed: dict[int, tuple[Box, ...]],
) -> None:
    outcome = run(proposed)
    assert outcome.status is InstanceStatus.RELEASED
    assert outcome.output is not None


def test_no_boxes_approved_leave_the_phi_readable_and_hold_the_instance_again() -> None:
    outcome = run({})
    assert outcome.status is InstanceStatus.HELD
    assert outcome.output is None
    assert "reviewed_boxes_leave_phi" in outcome.reasons


def test_a_reviewer_who_drops_a_phi_box_is_caught(proposed: dict[int, tuple[Box, ...]]) -> None:
    _dropped, *rest = proposed[0]
    outcome = run({0: tuple(rest)})
    assert outcome.status is InstanceStatus.HELD
    assert "reviewed_boxes_leave_phi" in outcome.reasons
