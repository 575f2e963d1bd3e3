"""The pixel stage in the pipeline: every instance with pixels checked, PHI filled, verified.

The engine is the real RapidOCR; instances are synthetic (the fake patient DOE^JANE).
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY
from radstream.deid.pipeline import InstanceStatus
from radstream.deid.pixels.calibration import FAIL_CLOSED, RiskThreshold
from radstream.deid.pixels.fields import ink_fields, read_fields
from radstream.deid.pixels.findings import PixelDecision
from radstream.deid.pixels.frames import decode_frames
from radstream.deid.pixels.settings import PixelPolicyMode, PixelSettings
from radstream.deid.pixels.stage import CLEAN_PIXEL_DATA_CODE, ReviewedBoxesError
from radstream.ocr.engine import Box
from tests.unit.deid.pixels.builders import (
    CountingEngine,
    burn,
    ct_instance,
    ct_slice,
    deidentify,
    engine,
    phi_of,
    stage,
    texts_read,
    us_instance,
    written,
)
from tests.unit.deid.study_builder import ENCAPSULATED_PDF_STORAGE, synthetic_instance

NAME_LINE = "DOE^JANE 17/03/1961"
FAIL_CLOSED_THRESHOLD = RiskThreshold(
    value=0.0, leak_rate=0.01, engine="rapidocr", n_calibration=0, method=FAIL_CLOSED
)


def ct_with_name(seed: int = 0) -> tuple[Dataset, Box]:
    pixels = ct_slice(seed)
    ink = burn(pixels, NAME_LINE, (6, 4), 14, 4095)
    return ct_instance(pixels), ink


def read_phi(ds: Dataset, original: Dataset) -> list[str]:
    """The lines the engine reads in ``ds`` that the classifier calls PHI of ``original``."""
    classifier = stage().classifier
    image = decode_frames(ds).display(0)
    phi = phi_of(original)
    return [text for text in texts_read(image) if classifier.classify(text, phi).phi]


@pytest.fixture(scope="module")
def ct_name_run() -> tuple[Dataset, Box, object]:
    ds, ink = ct_with_name()
    return ds, ink, deidentify(ds, stage())


class TestACtSliceWithABurnedInName:
    """No BurnedInAnnotation flag: the header-only policy released it with the name readable."""

    def test_the_header_only_policy_released_it(self) -> None:
        ds, _ = ct_with_name()
        assert deidentify(ds, DEFAULT_PIXEL_POLICY).status is InstanceStatus.RELEASED

    def test_it_is_released_only_with_the_name_unreadable(self, ct_name_run) -> None:  # type: ignore[no-untyped-def]
        original, ink, outcome = ct_name_run
        assert read_phi(original, original)  # the name is there to be read before
        assert outcome.status is InstanceStatus.RELEASED, outcome.reasons
        output = written(outcome)
        assert read_phi(output, original) == []
        shown = decode_frames(output).frames[0]
        assert (shown[ink.y : ink.bottom, ink.x : ink.right] == shown.min()).all()

    def test_the_report_says_what_was_found_filled_and_verified(self, ct_name_run) -> None:  # type: ignore[no-untyped-def]
        _, ink, outcome = ct_name_run
        report = outcome.pixel_report
        assert report.decision is PixelDecision.REDACTED
        assert "text_check_positive" in report.reasons and "verified" in report.reasons
        [frame_boxes] = report.redacted_boxes.values()
        filled = [box.padded(3, width=512, height=512) for box in frame_boxes]  # default padding
        assert ink.covered_by(filled) == 1.0
        assert report.frames_checked == report.frames_total == 1
        assert report.residual == ()
        costs = report.costs
        assert costs.triage_ms > 0 and costs.ocr_ms > 0 and costs.verify_ms > 0

    def test_the_header_says_the_pixels_were_cleaned(self, ct_name_run) -> None:  # type: ignore[no-untyped-def]
        _, _, outcome = ct_name_run
        output = written(outcome)
        assert output.BurnedInAnnotation == "NO"
        codes = [item.CodeValue for item in output.DeidentificationMethodCodeSequence]
        assert CLEAN_PIXEL_DATA_CODE in codes
        assert "Clean Pixel Data Option" in list(output.DeidentificationMethod)

    def test_the_audit_has_the_decision_and_costs_but_no_text(self, ct_name_run) -> None:  # type: ignore[no-untyped-def]
        _, _, outcome = ct_name_run
        audit = outcome.audit.to_json()
        pixels = outcome.audit.to_dict()["pixels"]
        assert pixels["decision"] == "redacted" and pixels["phi_boxes"] >= 1
        assert pixels["costs_ms"]["total"] > 0
        for fragment in ("DOE", "JANE", "1961"):
            assert fragment not in audit


class TestACtSliceWithoutText:
    def test_is_released_unchanged_without_any_ocr(self) -> None:
        counting = CountingEngine(engine())
        ds = ct_instance(ct_slice(1))
        outcome = deidentify(ds, stage(ocr=counting))
        assert outcome.status is InstanceStatus.RELEASED
        assert counting.detect_calls == [] and counting.recognize_calls == []
        assert outcome.pixel_report.decision is PixelDecision.NO_TEXT
        assert outcome.pixel_report.reasons[0] == "text_check_negative_screen"
        assert written(outcome).PixelData == ds.PixelData

    def test_even_a_fail_closed_threshold_releases_it(self) -> None:
        outcome = deidentify(ct_instance(ct_slice(2)), stage(threshold=FAIL_CLOSED_THRESHOLD))
        assert outcome.status is InstanceStatus.RELEASED
        assert outcome.pixel_report.risk == 0.0


class TestPolicies:
    def test_annotations_are_kept_unless_the_policy_removes_all_text(self) -> None:
        pixels = ct_slice(3)
        burn(pixels, NAME_LINE, (6, 4), 14, 4095)
        marker = burn(pixels, "PORTABLE SUPINE", (300, 480), 14, 4095)
        ds = ct_instance(pixels)
        kept = decode_frames(written(deidentify(ds, stage()))).frames[0]
        assert np.array_equal(
            kept[marker.y : marker.bottom, marker.x : marker.right],
            pixels[marker.y : marker.bottom, marker.x : marker.right],
        )
        remove_all = PixelSettings(mode=PixelPolicyMode.REMOVE_ALL_TEXT)
        outcome = deidentify(ds, stage(settings=remove_all))
        cleaned = decode_frames(written(outcome)).frames[0]
        assert (cleaned[marker.y : marker.bottom, marker.x : marker.right] == pixels.min()).all()
        assert all(f.phi for f in outcome.pixel_report.findings)

    def test_a_fail_closed_threshold_holds_text_for_review_with_the_proposal(self) -> None:
        ds, ink = ct_with_name(4)
        outcome = deidentify(ds, stage(threshold=FAIL_CLOSED_THRESHOLD))
        assert outcome.status is InstanceStatus.HELD
        assert "pixel_risk_over_threshold" in outcome.reasons
        candidate = decode_frames(written(outcome)).frames[0]  # the proposal, already filled
        assert (candidate[ink.y : ink.bottom, ink.x : ink.right] == candidate.min()).all()


class TestReviewedBoxes:
    def test_exactly_the_reviewers_boxes_are_filled_and_verified(self) -> None:
        ds, ink = ct_with_name(5)
        box = ink.padded(4, width=512, height=512)
        outcome = deidentify(ds, stage(threshold=FAIL_CLOSED_THRESHOLD), reviewed_boxes={0: [box]})
        assert outcome.status is InstanceStatus.RELEASED, outcome.reasons  # a person approved
        report = outcome.pixel_report
        assert report.reviewed and report.decision is PixelDecision.REDACTED
        frame = decode_frames(written(outcome)).frames[0]
        original = decode_frames(ds).frames[0]
        inside = np.zeros(frame.shape, bool)
        inside[box.y : box.bottom, box.x : box.right] = True
        assert (frame[inside] == original.min()).all()
        assert np.array_equal(frame[~inside], original[~inside])  # no padding, nothing else

    def test_boxes_that_leave_phi_readable_hold_the_instance_again(self) -> None:
        ds, ink = ct_with_name(6)
        half = Box(ink.x, ink.y, ink.width // 3, ink.height)  # covers "DOE^" only
        outcome = deidentify(ds, stage(), reviewed_boxes={0: [half]})
        assert outcome.status is InstanceStatus.HELD
        assert "reviewed_boxes_leave_phi" in outcome.reasons
        assert outcome.pixel_report.residual

    def test_no_box_at_all_still_has_the_output_read(self) -> None:
        ds, _ = ct_with_name(7)
        outcome = deidentify(ds, stage(), reviewed_boxes={})
        assert outcome.status is InstanceStatus.HELD
        assert "reviewed_boxes_leave_phi" in outcome.reasons

    def test_a_box_outside_the_image_rejects(self) -> None:
        ds, _ = ct_with_name(8)
        outcome = deidentify(ds, stage(), reviewed_boxes={3: [Box(0, 0, 5, 5)]})
        assert outcome.status is InstanceStatus.REJECTED
        assert outcome.error is not None and outcome.error.reason == ReviewedBoxesError.reason

    def test_reviewed_boxes_need_a_pixel_stage(self) -> None:
        ds, _ = ct_with_name(9)
        with pytest.raises(ValueError, match="PixelStage"):
            deidentify(ds, DEFAULT_PIXEL_POLICY, reviewed_boxes={0: []})


class TestMultiFrame:
    def test_a_static_banner_is_filled_in_every_frame_of_a_cine(self) -> None:
        rng = np.random.default_rng(0)
        frames = np.zeros((6, 240, 320), np.uint8)
        ink = burn(frames[0], "DOE^JANE 17/03/1961", (6, 4), 14, 255)
        for index in range(6):
            frames[index, :30] = frames[0, :30]
            frames[index, 80:220, 60:260] = rng.integers(0, 90, (140, 200), dtype=np.uint8)
        counting = CountingEngine(engine())
        outcome = deidentify(us_instance(frames), stage(ocr=counting))
        assert outcome.status is InstanceStatus.RELEASED, outcome.reasons
        output = decode_frames(written(outcome)).frames
        for frame in output:
            assert (frame[ink.y : ink.bottom, ink.x : ink.right] == 0).all()
        report = outcome.pixel_report
        assert report.frames_total == 6
        assert report.risk_features.frames_sampled_fraction == 1.0  # every frame covered
        # Frames 1-5 were checked only where they changed: never whole by the recognizer.
        assert sum(1 for h, w in counting.recognize_calls if (h, w) == (240, 320)) <= 2


class TestADateDrawnWithWideSpaces:
    """A monospaced "SEP 26 2023" falls into three fields; only the year looks like a date."""

    def study_on(self, date: str) -> Dataset:
        def header(ds: Dataset) -> None:
            ds.StudyDate = date

        frame = np.full((1, 300, 400), 20, np.uint8)
        self.inks = []
        x = 8
        for word in ("SEP", "26", "2023"):
            ink = burn(frame[0], word, (x, 8), 11, 230)
            self.inks.append(ink)
            x = ink.right + 12  # wider than a word space: a field of its own
        return us_instance(frame, customize=header)

    def test_its_fields_are_read_apart(self) -> None:
        ds = self.study_on("20230926")
        image = decode_frames(ds).display(0)
        fields = ink_fields(image, Box(0, 0, 400, 40))
        assert len(fields) == 3
        texts = read_fields(engine(), image, fields, (0,))
        assert [stage().classifier.classify(text, phi_of(ds)).phi for text in texts] == [
            False,
            False,
            True,
        ]

    def test_the_whole_date_is_filled_day_and_month_too(self) -> None:
        ds = self.study_on("20230926")
        outcome = deidentify(ds, stage())
        output = decode_frames(written(outcome)).frames[0]
        for ink in self.inks:  # filled with the frame's background, the darkest value
            assert (output[ink.y : ink.bottom, ink.x : ink.right] == 20).all()


class TestAPriorStudysDateInTheTopBand:
    def test_a_small_date_in_no_header_is_read_and_filled(self) -> None:
        # 10 px DejaVu (8 px of ink) on a CT slice: found by the text check, read, and filled
        # as a date by its shape -- the header has no prior study date to match.
        pixels = ct_slice(0)
        ink = burn(pixels, "Prior Nov 01 2016", (8, 6), 10, 4095)
        outcome = deidentify(ct_instance(pixels), stage())
        assert outcome.status is InstanceStatus.RELEASED, outcome.reasons
        output = decode_frames(written(outcome)).frames[0]
        assert (output[ink.y : ink.bottom, ink.x : ink.right] == output.min()).all()


class TestALineWhoseFieldsDoNotExplainIt:
    def test_a_referring_physician_after_a_label_and_title_is_filled_whole(self) -> None:
        # "Ref: Dr." is a label with a value; the name alone is no PERSON to Presidio's small
        # model: split, the title would be filled and the name kept.
        frame = np.full((1, 300, 400), 20, np.uint8)
        label = burn(frame[0], "Ref: Dr.", (8, 8), 13, 230)
        name = burn(frame[0], "Sofia Lindqvist", (label.right + 16, 8), 13, 230)
        output = decode_frames(written(deidentify(us_instance(frame), stage()))).frames[0]
        for ink in (label, name):
            assert (output[ink.y : ink.bottom, ink.x : ink.right] == 20).all()


class TestTextInsideTheImage:
    """The unusual-layout signal counts the text kept over the anatomy, not the text filled."""

    def test_a_name_over_the_anatomy_that_was_filled_does_not_count(self) -> None:
        pixels = ct_slice(1)
        burn(pixels, "DOE^JANE", (180, 230), 14, 4095)
        report = deidentify(ct_instance(pixels), stage()).pixel_report
        assert report.redacted_boxes  # read and filled
        assert report.risk_features.unusual_layout == 0.0

    def test_text_kept_over_the_anatomy_does(self) -> None:
        pixels = ct_slice(1)
        burn(pixels, "SUPINE", (190, 230), 14, 4095)
        report = deidentify(ct_instance(pixels), stage()).pixel_report
        assert not report.redacted_boxes
        assert report.risk_features.unusual_layout > 0.0


class TestWhatCannotBeRead:
    def test_an_encapsulated_document_is_still_held(self) -> None:
        def pdf(ds: Dataset) -> None:
            ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
            ds.EncapsulatedDocument = b"%PDF-1.4 DOE JANE"

        ds = synthetic_instance(
            modality="DOC", sop_class=ENCAPSULATED_PDF_STORAGE, with_pixels=False, customize=pdf
        )
        outcome = deidentify(ds, stage())
        assert outcome.status is InstanceStatus.HELD
        assert outcome.pixel_report is None

    def test_a_slide_label_image_is_still_held(self) -> None:
        def label(ds: Dataset) -> None:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "LABEL"]

        outcome = deidentify(ct_instance(ct_slice(10), customize=label), stage())
        assert outcome.status is InstanceStatus.HELD
        assert any("Image Type LABEL" in reason for reason in outcome.reasons)

    def test_pixels_that_do_not_decode_are_held(self) -> None:
        ds = ct_instance(ct_slice(11, size=64))
        ds.PixelData = encapsulate([b"\xff\xd8 not a JPEG stream"])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        outcome = deidentify(ds, stage())
        assert outcome.status is InstanceStatus.HELD
        assert "pixel_data_not_decodable" in outcome.reasons
