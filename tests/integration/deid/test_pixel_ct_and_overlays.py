"""CT slices with names burned in and overlays with text: never released with PHI readable.

The real engine reads every output again here, independently of the stage's verification.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pack_bits

from radstream.deid.pipeline import InstanceStatus
from radstream.deid.pixels.calibration import FAIL_CLOSED, RiskThreshold
from radstream.deid.pixels.findings import PixelDecision
from radstream.deid.pixels.frames import decode_frames
from tests.unit.deid.pixels.builders import (
    HU_OFFSET,
    burn,
    ct_instance,
    ct_slice,
    deidentify,
    phi_of,
    stage,
    text_mask,
    texts_read,
    written,
)

pytestmark = pytest.mark.slow

FAIL_CLOSED_THRESHOLD = RiskThreshold(
    value=0.0, leak_rate=0.01, engine="rapidocr", n_calibration=0, method=FAIL_CLOSED
)
# (text, origin, size, value in HU, window): top rows, corners, over the body, grey on grey.
VARIANTS = [
    ("DOE^JANE", (6, 4), 14, 3071, (40, 400)),
    ("JANE DOE  03/17/1961", (300, 6), 12, 3071, (40, 400)),
    ("Doe, Jane  SYNTH-MRN-48213", (8, 488), 11, 3071, (-600, 1500)),
    ("DOE JANE", (200, 240), 18, 3071, (40, 80)),
    ("17-Mar-1961 DOE", (10, 10), 16, 300, (40, 400)),
]


def phi_lines(ds: Dataset, original: Dataset) -> list[str]:
    classifier = stage().classifier
    phi = phi_of(original)
    return [t for t in texts_read(decode_frames(ds).display(0)) if classifier.classify(t, phi).phi]


class TestCtSlicesWithBurnedInNames:
    @pytest.mark.parametrize(("text", "origin", "size", "hu", "window"), VARIANTS)
    @pytest.mark.parametrize("fail_closed", [False, True])
    def test_never_released_with_the_name_readable(
        self,
        text: str,
        origin: tuple[int, int],
        size: int,
        hu: int,
        window: tuple[float, float],
        fail_closed: bool,
    ) -> None:
        pixels = ct_slice(sum(origin))
        burn(pixels, text, origin, size, hu + HU_OFFSET)
        original = ct_instance(pixels, window=window)
        assert phi_lines(original, original)  # readable before
        threshold = FAIL_CLOSED_THRESHOLD if fail_closed else None
        outcome = deidentify(original, stage(threshold=threshold))
        assert outcome.status is not InstanceStatus.REJECTED, outcome.reasons
        if outcome.status is InstanceStatus.RELEASED:
            assert phi_lines(written(outcome), original) == []
        else:
            assert outcome.status is InstanceStatus.HELD and fail_closed
            assert outcome.output is None


class TestOverlays:
    def test_an_overlay_with_a_name_is_read_reported_and_not_released(self) -> None:
        plane = text_mask((64, 256), "DOE JANE 1961", (4, 20), 16)

        def overlay(ds: Dataset) -> None:
            ds.add_new(0x60000010, "US", 64)  # Overlay Rows
            ds.add_new(0x60000011, "US", 256)  # Overlay Columns
            ds.add_new(0x60000040, "CS", "G")  # Overlay Type
            ds.add_new(0x60000050, "SS", [11, 21])  # Overlay Origin (row, column), 1-based
            ds.add_new(0x60000100, "US", 1)  # Overlay Bits Allocated
            ds.add_new(0x60000102, "US", 0)  # Overlay Bit Position
            ds.add_new(0x60003000, "OW", pack_bits(plane.astype(np.uint8)))

        outcome = deidentify(ct_instance(ct_slice(30), customize=overlay), stage())
        assert outcome.status is InstanceStatus.RELEASED, outcome.reasons
        report = outcome.pixel_report
        assert report is not None and report.decision is PixelDecision.TEXT_KEPT
        read = [f for f in report.findings if f.source == "overlay:6000"]
        assert any(f.phi and "PatientName" in f.phi_kinds for f in read)
        assert all(f.box.x >= 20 and f.box.y >= 10 for f in read)  # at the overlay's origin
        assert len(written(outcome).group_dataset(0x6000)) == 0  # removed with its data
