"""The default pixel policy: hold every instance whose pixels may carry burned-in text."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radstream.deid.burned_in import (
    DEFAULT_PIXEL_POLICY,
    SECONDARY_CAPTURE_SOP_CLASSES,
    HoldPossibleBurnedInText,
    PixelAssessment,
    PixelPolicy,
)
from tests.unit.deid.study_builder import (
    BASIC_TEXT_SR_STORAGE,
    CR_IMAGE_STORAGE,
    CT_IMAGE_STORAGE,
    DX_IMAGE_STORAGE,
    ENCAPSULATED_PDF_STORAGE,
    MR_IMAGE_STORAGE,
    PHI_TEXTS,
    US_IMAGE_STORAGE,
    synthetic_instance,
)


def assess(**kwargs: object) -> PixelAssessment:
    return DEFAULT_PIXEL_POLICY.assess(synthetic_instance(**kwargs))  # type: ignore[arg-type]


def held_because(assessment: PixelAssessment, fragment: str) -> bool:
    return assessment.hold and any(fragment in reason for reason in assessment.reasons)


class TestNoPixels:
    def test_an_instance_without_pixels_is_not_held(self) -> None:
        assessment = assess(sop_class=BASIC_TEXT_SR_STORAGE, modality="SR", with_pixels=False)
        assert assessment == PixelAssessment(hold=False)

    def test_a_flag_without_pixels_holds_nothing(self) -> None:
        assert not assess(with_pixels=False, burned_in="YES").hold

    def test_an_encapsulated_document_is_held_whatever_its_flag(self) -> None:
        def pdf(ds: Dataset) -> None:
            ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
            ds.EncapsulatedDocument = b"%PDF-1.4 synthetic"

        assessment = assess(
            sop_class=ENCAPSULATED_PDF_STORAGE,
            modality="DOC",
            with_pixels=False,
            burned_in="NO",
            customize=pdf,
        )
        assert held_because(assessment, "encapsulates a document")


class TestTheFlag:
    def test_burned_in_annotation_yes_is_held_on_any_modality(self) -> None:
        assert held_because(assess(modality="CT", burned_in="YES"), "BurnedInAnnotation is YES")

    @pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
    @pytest.mark.parametrize("value", ["yes", " YES "])
    def test_the_flag_is_read_case_and_space_insensitively(self, value: str) -> None:
        assert held_because(assess(burned_in=value), "is YES")

    def test_a_flag_that_is_neither_yes_nor_no_is_held(self) -> None:
        assert held_because(assess(burned_in="MAYBE"), "neither YES nor NO")

    def test_an_empty_flag_counts_as_absent(self) -> None:
        assert not assess(modality="CT", burned_in="").hold
        assert held_because(
            assess(modality="US", sop_class=US_IMAGE_STORAGE, burned_in=""), "absent"
        )


class TestTextProneInstances:
    @pytest.mark.parametrize("modality", ["US", "OT", "XA", "RF", "ES", "XC", "SC"])
    def test_a_text_prone_modality_without_the_flag_is_held(self, modality: str) -> None:
        assessment = assess(modality=modality, sop_class=MR_IMAGE_STORAGE)
        assert held_because(assessment, f"absent on modality {modality}")

    def test_ultrasound_saying_no_is_still_held(self) -> None:
        assessment = assess(modality="US", sop_class=US_IMAGE_STORAGE, burned_in="NO")
        assert held_because(assessment, "NO is not trusted on modality US")

    def test_trusting_the_negative_flag_releases_ultrasound_saying_no(self) -> None:
        policy = HoldPossibleBurnedInText(trust_negative_flag=True)
        ds = synthetic_instance(modality="US", sop_class=US_IMAGE_STORAGE, burned_in="NO")
        assert not policy.assess(ds).hold
        absent = synthetic_instance(modality="US", sop_class=US_IMAGE_STORAGE)
        assert policy.assess(absent).hold

    @pytest.mark.parametrize("sop_class", sorted(SECONDARY_CAPTURE_SOP_CLASSES))
    def test_every_secondary_capture_class_is_held_whatever_its_modality(
        self, sop_class: str
    ) -> None:
        assessment = assess(modality="CT", sop_class=sop_class)
        assert held_because(assessment, "a secondary capture")

    def test_an_ultrasound_sop_class_is_held_even_when_modality_is_missing(self) -> None:
        def no_modality(ds: Dataset) -> None:
            del ds.Modality

        assessment = assess(sop_class=US_IMAGE_STORAGE, customize=no_modality)
        assert held_because(assessment, f"SOP class {US_IMAGE_STORAGE}")

    def test_the_text_prone_modalities_can_be_configured(self) -> None:
        policy = HoldPossibleBurnedInText(text_prone_modalities=frozenset({"NM"}))
        assert policy.assess(synthetic_instance(modality="NM")).hold


WHOLE_SLIDE_MICROSCOPY = "1.2.840.10008.5.1.4.1.1.77.1.6"
DERMOSCOPIC_PHOTOGRAPHY = "1.2.840.10008.5.1.4.1.1.77.1.7"


def specimen_label_in_image(value: str) -> Callable[[Dataset], None]:
    def customize(ds: Dataset) -> None:
        ds.SpecimenLabelInImage = value

    return customize


def image_type(*values: str) -> Callable[[Dataset], None]:
    def customize(ds: Dataset) -> None:
        ds.ImageType = list(values)

    return customize


class TestSlidesAndSkin:
    """Slide scanners photograph the label (accession, name); dermoscopy photographs a patient."""

    @pytest.mark.parametrize(
        ("sop_class", "modality"),
        [(WHOLE_SLIDE_MICROSCOPY, "SM"), (DERMOSCOPIC_PHOTOGRAPHY, "DMS")],
    )
    def test_slide_and_skin_photographs_without_the_flag_are_held(
        self, sop_class: str, modality: str
    ) -> None:
        assessment = assess(modality=modality, sop_class=sop_class)
        assert held_because(assessment, f"absent on modality {modality}")

    @pytest.mark.parametrize("sop_class", [WHOLE_SLIDE_MICROSCOPY, DERMOSCOPIC_PHOTOGRAPHY])
    def test_their_sop_classes_are_held_whatever_the_modality_says(self, sop_class: str) -> None:
        assessment = assess(modality="CT", sop_class=sop_class)
        assert held_because(assessment, f"SOP class {sop_class}")

    def test_a_whole_slide_image_saying_no_is_still_held(self) -> None:
        assessment = assess(modality="SM", sop_class=WHOLE_SLIDE_MICROSCOPY, burned_in="NO")
        assert held_because(assessment, "NO is not trusted on modality SM")

    @pytest.mark.parametrize("label", ["LABEL", "OVERVIEW"])
    def test_a_label_or_overview_image_is_held_even_when_the_flag_says_no(self, label: str) -> None:
        policy = HoldPossibleBurnedInText(trust_negative_flag=True)
        ds = synthetic_instance(
            modality="SM",
            sop_class=WHOLE_SLIDE_MICROSCOPY,
            burned_in="NO",
            customize=image_type("ORIGINAL", "PRIMARY", label, "NONE"),
        )
        assert held_because(policy.assess(ds), f"Image Type {label}")

    def test_a_volume_image_saying_no_is_released_when_the_flag_is_trusted(self) -> None:
        policy = HoldPossibleBurnedInText(trust_negative_flag=True)
        ds = synthetic_instance(
            modality="SM",
            sop_class=WHOLE_SLIDE_MICROSCOPY,
            burned_in="NO",
            customize=image_type("ORIGINAL", "PRIMARY", "VOLUME", "NONE"),
        )
        assert not policy.assess(ds).hold

    def test_a_specimen_label_in_the_image_is_held_whatever_the_flag_says(self) -> None:
        policy = HoldPossibleBurnedInText(trust_negative_flag=True)
        ds = synthetic_instance(burned_in="NO", customize=specimen_label_in_image("YES"))
        assert held_because(policy.assess(ds), "Specimen Label in Image is YES")
        assert held_because(
            assess(modality="MR", customize=specimen_label_in_image("YES")),
            "Specimen Label in Image is YES",
        )

    @pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
    def test_a_specimen_label_flag_that_is_not_no_is_held(self) -> None:
        assessment = assess(modality="MR", customize=specimen_label_in_image("maybe"))
        assert held_because(assessment, "Specimen Label in Image is not NO")

    def test_no_specimen_label_on_a_cross_sectional_image_is_released(self) -> None:
        assert not assess(modality="MR", customize=specimen_label_in_image("NO")).hold


class TestProjectionRadiography:
    @pytest.mark.parametrize(
        ("modality", "sop_class"),
        [("DX", DX_IMAGE_STORAGE), ("CR", CR_IMAGE_STORAGE), ("MG", DX_IMAGE_STORAGE)],
    )
    def test_projection_images_without_the_flag_are_held(
        self, modality: str, sop_class: str
    ) -> None:
        assert held_because(assess(modality=modality, sop_class=sop_class), "absent on")

    def test_a_dx_sop_class_is_held_even_with_an_odd_modality(self) -> None:
        assert held_because(assess(modality="OTHER", sop_class=DX_IMAGE_STORAGE), "SOP class")

    @pytest.mark.parametrize("modality", ["DX", "CR"])
    def test_projection_images_saying_no_are_released(self, modality: str) -> None:
        assert not assess(modality=modality, sop_class=DX_IMAGE_STORAGE, burned_in="NO").hold


class TestAnnotatedImages:
    @staticmethod
    def overlay(ds: Dataset) -> None:
        ds.add_new(0x60000010, "US", 8)  # Overlay Rows
        ds.add_new(0x60000011, "US", 8)  # Overlay Columns
        ds.add_new(0x60003000, "OW", bytes(8))  # Overlay Data

    @staticmethod
    def graphic_annotation(ds: Dataset) -> None:
        annotation = Dataset()
        annotation.GraphicLayer = "LAYER1"
        ds.GraphicAnnotationSequence = Sequence([annotation])

    def test_an_image_with_an_overlay_plane_and_no_flag_is_held(self) -> None:
        assessment = assess(modality="CT", customize=self.overlay)
        assert held_because(assessment, "overlays or graphic annotations")

    def test_an_image_with_graphic_annotations_and_no_flag_is_held(self) -> None:
        assert assess(modality="MR", customize=self.graphic_annotation).hold

    def test_an_annotated_image_saying_no_is_released(self) -> None:
        assert not assess(modality="CT", burned_in="NO", customize=self.overlay).hold


class TestCrossSectional:
    @pytest.mark.parametrize("modality", ["CT", "MR", "PT", "NM"])
    def test_cross_sectional_images_without_the_flag_are_released(self, modality: str) -> None:
        assert not assess(modality=modality, sop_class=CT_IMAGE_STORAGE).hold

    def test_a_ct_saying_no_is_released(self) -> None:
        assert assess(modality="CT", burned_in="NO") == PixelAssessment(hold=False)


def test_reasons_never_quote_a_value_from_the_header() -> None:
    cases = [
        assess(modality="US", sop_class=US_IMAGE_STORAGE),
        assess(burned_in="YES"),
        assess(modality="DX", sop_class=DX_IMAGE_STORAGE),
    ]
    for assessment in cases:
        for reason in assessment.reasons:
            assert reason.startswith("possible burned-in text: ")
            assert not any(value in reason for value in PHI_TEXTS)


def test_any_object_with_assess_is_a_pixel_policy() -> None:
    class ReleaseEverything:
        def assess(self, ds: Dataset) -> PixelAssessment:
            return PixelAssessment(hold=False)

    assert isinstance(ReleaseEverything(), PixelPolicy)
    assert isinstance(DEFAULT_PIXEL_POLICY, PixelPolicy)
