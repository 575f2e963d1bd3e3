"""One instance through the whole pipeline: released, held or rejected, and never leaked."""

from __future__ import annotations

import io
import json
import struct

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from radstream.deid.audit import Digest
from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY, PixelAssessment, PixelPolicy
from radstream.deid.clean import PresidioTextCleaner
from radstream.deid.phi import PhiValues
from radstream.deid.pipeline import (
    InstanceOutcome,
    InstanceStatus,
    deidentify_instance,
)
from radstream.deid.profile import DeidKeys, DeidProfile, ProfileOption, TextCleaner
from radstream.dicom.reader import ReaderLimits
from tests.unit.deid.study_builder import (
    MR_IMAGE_STORAGE,
    PATIENT_ID,
    PATIENT_NAME,
    PHI_TEXTS,
    STUDY_UID,
    TEST_KEYS_SECRET,
    US_IMAGE_STORAGE,
    assert_no_unknown_element_in,
    instance_bytes,
    shared_text_cleaner,
    with_unknown_elements,
)

KEYS = DeidKeys.from_secret(TEST_KEYS_SECRET)
BASIC = DeidProfile()


@pytest.fixture(scope="module")
def cleaner() -> PresidioTextCleaner:
    return shared_text_cleaner()


def run(
    data: bytes,
    cleaner: TextCleaner,
    *,
    profile: DeidProfile = BASIC,
    pixel_policy: PixelPolicy = DEFAULT_PIXEL_POLICY,
    limits: ReaderLimits | None = None,
) -> InstanceOutcome:
    extra = {"limits": limits} if limits is not None else {}
    return deidentify_instance(
        data, profile=profile, keys=KEYS, clean_text=cleaner, pixel_policy=pixel_policy, **extra
    )


def assert_no_output(outcome: InstanceOutcome) -> None:
    assert outcome.output is None
    assert outcome.audit.output is None


def assert_phi_free(data: bytes) -> None:
    for value in PHI_TEXTS:
        assert value.encode() not in data


class TestReleased:
    def test_a_plain_ct_instance_is_released_de_identified(self, cleaner: TextCleaner) -> None:
        outcome = run(instance_bytes(), cleaner)
        assert outcome.status is InstanceStatus.RELEASED
        assert outcome.reasons == ()
        assert outcome.error is None
        assert outcome.candidate is None
        assert outcome.output is not None
        assert_phi_free(outcome.output)
        released = dcmread(io.BytesIO(outcome.output))
        assert released.PatientIdentityRemoved == "YES"
        assert released.StudyInstanceUID != STUDY_UID
        assert outcome.ids is not None
        assert outcome.ids.study_instance_uid == released.StudyInstanceUID
        assert outcome.ids.sop_instance_uid == released.file_meta.MediaStorageSOPInstanceUID

    def test_the_audit_names_every_action_and_hashes_input_and_output(
        self, cleaner: TextCleaner
    ) -> None:
        data = instance_bytes()
        outcome = run(data, cleaner)
        audit = outcome.audit
        assert outcome.output is not None
        assert audit.input == Digest.of(data)
        assert audit.output == Digest.of(outcome.output)
        assert audit.outcome == "released"
        by_keyword = {action.keyword: action for action in audit.actions}
        assert by_keyword["PatientName"].tag == "(0010,0010)"
        assert by_keyword["PatientName"].action in {"Z", "D", "X"}
        assert by_keyword["PatientName"].rule

    def test_the_audit_record_holds_no_value_from_the_instance(self, cleaner: TextCleaner) -> None:
        options = frozenset({ProfileOption.CLEAN_DESCRIPTORS, ProfileOption.RETAIN_UIDS})
        outcome = run(instance_bytes(), cleaner, profile=DeidProfile(options=options))
        document = outcome.audit.to_json()
        for value in (*PHI_TEXTS, STUDY_UID):
            assert value not in document
        recorded = json.loads(document)
        assert {option["code"] for option in recorded["profile"]["options"]} == {
            "113105",
            "113110",
        }
        assert recorded["profile"]["code"] == "113100"
        assert recorded["software"]["radstream"]
        assert recorded["software"]["pydicom"]
        assert recorded["started_at"] <= recorded["finished_at"]

    def test_the_reidentification_record_maps_the_patient_and_the_uids(
        self, cleaner: TextCleaner
    ) -> None:
        outcome = run(instance_bytes(), cleaner)
        assert outcome.reid is not None
        assert outcome.reid.original_patient_id == PATIENT_ID
        assert outcome.reid.patient_pseudonym
        assert outcome.reid.patient_pseudonym != PATIENT_ID
        assert outcome.ids is not None
        assert outcome.reid.uid_map[STUDY_UID] == outcome.ids.study_instance_uid

    def test_the_same_key_gives_the_same_pseudonymous_uids(self, cleaner: TextCleaner) -> None:
        first, second = run(instance_bytes(), cleaner), run(instance_bytes(), cleaner)
        assert first.ids == second.ids


class TestHeldForBurnedInText:
    def test_ultrasound_without_the_flag_is_held_not_released(self, cleaner: TextCleaner) -> None:
        outcome = run(instance_bytes(modality="US", sop_class=US_IMAGE_STORAGE), cleaner)
        assert outcome.status is InstanceStatus.HELD
        assert_no_output(outcome)
        assert any("possible burned-in text" in reason for reason in outcome.reasons)
        assert outcome.pixel_assessment is not None
        assert outcome.pixel_assessment.hold

    def test_the_held_candidate_is_de_identified_for_the_reviewer(
        self, cleaner: TextCleaner
    ) -> None:
        outcome = run(instance_bytes(modality="US", sop_class=US_IMAGE_STORAGE), cleaner)
        assert outcome.candidate is not None
        assert_phi_free(outcome.candidate)
        assert dcmread(io.BytesIO(outcome.candidate)).PatientIdentityRemoved == "YES"

    def test_a_pixel_stage_that_clears_the_instance_releases_it(self, cleaner: TextCleaner) -> None:
        class PixelsCheckedClean:
            """Stands where the pixel-cleaning stage will: any PixelPolicy plugs in."""

            def assess(self, ds: Dataset) -> PixelAssessment:
                return PixelAssessment(hold=False)

        data = instance_bytes(modality="US", sop_class=US_IMAGE_STORAGE)
        outcome = run(data, cleaner, pixel_policy=PixelsCheckedClean())
        assert outcome.status is InstanceStatus.RELEASED
        assert outcome.audit.pixel_policy == "PixelsCheckedClean"


class TestHeldForResidualPhi:
    def test_a_patient_name_in_a_retained_device_attribute_is_held(
        self, cleaner: TextCleaner
    ) -> None:
        def station_named_after_patient(ds: Dataset) -> None:
            ds.StationName = "DOE JANE CT1"  # a misconfigured modality

        profile = DeidProfile(options=frozenset({ProfileOption.RETAIN_DEVICE_IDENTITY}))
        outcome = run(
            instance_bytes(customize=station_named_after_patient), cleaner, profile=profile
        )
        assert outcome.status is InstanceStatus.HELD
        assert_no_output(outcome)
        assert "residual PHI in (0008,1010) (PatientName, exact)" in outcome.reasons
        assert [hit.kind for hit in outcome.residual_phi] == ["PatientName"]

    def test_a_patient_id_inside_a_retained_safe_private_element_is_held(
        self, cleaner: TextCleaner
    ) -> None:
        def id_in_safe_private(ds: Dataset) -> None:
            block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
            block.add_new(0x27, "SH", PATIENT_ID)  # "scan pitch ratio", misused

        profile = DeidProfile(options=frozenset({ProfileOption.RETAIN_SAFE_PRIVATE}))
        outcome = run(instance_bytes(customize=id_in_safe_private), cleaner, profile=profile)
        assert outcome.status is InstanceStatus.HELD
        assert any(
            reason.startswith("residual PHI in (0043,1027) (PatientID")
            for reason in outcome.reasons
        )

    def test_the_same_instance_without_the_option_is_released(self, cleaner: TextCleaner) -> None:
        def station_named_after_patient(ds: Dataset) -> None:
            ds.StationName = "DOE JANE CT1"

        outcome = run(instance_bytes(customize=station_named_after_patient), cleaner)
        assert outcome.status is InstanceStatus.RELEASED

    def test_hold_reasons_name_where_and_what_but_never_the_value(
        self, cleaner: TextCleaner
    ) -> None:
        def station_named_after_patient(ds: Dataset) -> None:
            ds.StationName = "DOE JANE CT1"

        profile = DeidProfile(options=frozenset({ProfileOption.RETAIN_DEVICE_IDENTITY}))
        outcome = run(
            instance_bytes(customize=station_named_after_patient), cleaner, profile=profile
        )
        text = " ".join(outcome.reasons) + outcome.audit.to_json()
        assert "DOE" not in text
        assert "JANE" not in text


class TestCodedValues:
    """A patient named like a code (Orthanc's test "KNEE" study) is held only where it matters."""

    @staticmethod
    def knee(ds: Dataset) -> None:
        ds.PatientName = "KNEE"
        ds.BodyPartExamined = "KNEE"
        ds.ScanningSequence = "SE"

    def test_a_name_equal_to_the_body_part_code_is_released(self, cleaner: TextCleaner) -> None:
        data = instance_bytes(modality="MR", sop_class=MR_IMAGE_STORAGE, customize=self.knee)
        outcome = run(data, cleaner)
        assert outcome.status is InstanceStatus.RELEASED, outcome.reasons
        assert outcome.output is not None
        assert dcmread(io.BytesIO(outcome.output)).BodyPartExamined == "KNEE"

    def test_the_knee_coil_of_a_knee_study_is_released(self, cleaner: TextCleaner) -> None:
        # Orthanc's 50 "KNEE" MR instances: the coil's name spells the body part the study codes.
        def knee_coil(ds: Dataset) -> None:
            self.knee(ds)
            ds.ReceiveCoilName = "SENSE-Knee-8"  # SH, the maker's name for the coil

        data = instance_bytes(modality="MR", sop_class=MR_IMAGE_STORAGE, customize=knee_coil)
        outcome = run(data, cleaner)
        assert outcome.status is InstanceStatus.RELEASED, outcome.reasons

    def test_the_same_name_in_free_text_is_still_held(self, cleaner: TextCleaner) -> None:
        def knee_sequence(ds: Dataset) -> None:
            self.knee(ds)
            ds.SequenceName = "KNEE"  # SH, free text that Table E.1-1 keeps

        data = instance_bytes(modality="MR", sop_class=MR_IMAGE_STORAGE, customize=knee_sequence)
        outcome = run(data, cleaner)
        assert outcome.status is InstanceStatus.HELD
        assert outcome.reasons == ("residual PHI in (0018,0024) (PatientName, exact)",)

    def test_a_knee_coil_in_a_study_coded_otherwise_is_still_held(
        self, cleaner: TextCleaner
    ) -> None:
        def ankle_with_knee_coil(ds: Dataset) -> None:
            self.knee(ds)
            ds.BodyPartExamined = "ANKLE"
            ds.ReceiveCoilName = "SENSE-Knee-8"

        data = instance_bytes(
            modality="MR", sop_class=MR_IMAGE_STORAGE, customize=ankle_with_knee_coil
        )
        outcome = run(data, cleaner)
        assert outcome.status is InstanceStatus.HELD
        assert outcome.reasons == ("residual PHI in (0018,1250) (PatientName, exact)",)


class TestUnknownElements:
    def test_unknown_text_elements_never_reach_the_released_output(
        self, cleaner: TextCleaner
    ) -> None:
        # Text about another person in elements no dictionary knows: the verifier has no
        # value of this instance to find in it, so only the profile can keep it out.
        outcome = run(instance_bytes(customize=with_unknown_elements), cleaner)
        assert outcome.status is InstanceStatus.RELEASED
        assert outcome.output is not None
        assert_no_unknown_element_in(outcome.output)
        removed = {action.path for action in outcome.audit.actions if action.action == "X"}
        assert {"(4444,0010)", "(0008,9999)", "(0008,2218)[0]/(4444,0012)"} <= removed


class TestRejected:
    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"%PDF-1.4 this is not an image" * 20, "not_dicom"),
            (b"", "not_dicom"),
            (instance_bytes()[:-20], "truncated"),
        ],
        ids=["garbage", "empty", "truncated"],
    )
    def test_unreadable_input_is_rejected_with_its_reason(
        self, cleaner: TextCleaner, data: bytes, reason: str
    ) -> None:
        outcome = run(data, cleaner)
        assert outcome.status is InstanceStatus.REJECTED
        assert_no_output(outcome)
        assert outcome.candidate is None
        assert outcome.reid is None
        assert outcome.error is not None
        assert outcome.error.reason == reason
        assert outcome.error.step == "read"
        assert outcome.audit.input == Digest.of(data)
        assert outcome.audit.error_type == outcome.error.type

    def test_an_oversized_instance_is_rejected(self, cleaner: TextCleaner) -> None:
        data = instance_bytes()
        outcome = run(data, cleaner, limits=ReaderLimits(max_file_bytes=len(data) // 2))
        assert outcome.error is not None
        assert outcome.error.reason == "file_too_large"

    def test_an_unexpected_failure_in_any_step_rejects_without_quoting_it(
        self, cleaner: TextCleaner
    ) -> None:
        class BrokenPolicy:
            def assess(self, ds: Dataset) -> PixelAssessment:
                raise RuntimeError(f"model server choked on {ds.PatientName}")

        outcome = run(instance_bytes(), cleaner, pixel_policy=BrokenPolicy())
        assert outcome.status is InstanceStatus.REJECTED
        assert_no_output(outcome)
        assert outcome.error is not None
        assert outcome.error.reason == "internal"
        assert outcome.error.step == "assess_pixels"
        assert outcome.error.type == "builtins.RuntimeError"
        assert PATIENT_NAME not in outcome.error.message
        assert "nothing was released" in outcome.error.message
        assert PATIENT_NAME not in outcome.audit.to_json()

    def test_a_failing_text_cleaner_never_lets_the_text_through(self, cleaner: TextCleaner) -> None:
        def failing_cleaner(text: str, phi: PhiValues) -> str:
            raise ValueError("cleaner unavailable")

        options = frozenset({ProfileOption.CLEAN_DESCRIPTORS})
        outcome = run(instance_bytes(), failing_cleaner, profile=DeidProfile(options=options))
        assert outcome.status in {InstanceStatus.RELEASED, InstanceStatus.REJECTED}
        if outcome.output is not None:
            assert b"CT ABDOMEN" not in outcome.output


class TestOutcomeInvariants:
    def test_a_held_outcome_cannot_carry_output_bytes(self, cleaner: TextCleaner) -> None:
        held = run(instance_bytes(modality="US", sop_class=US_IMAGE_STORAGE), cleaner)
        with pytest.raises(ValueError, match="RELEASED"):
            InstanceOutcome(
                status=InstanceStatus.HELD,
                output=b"bytes",
                candidate=held.candidate,
                reasons=held.reasons,
                error=None,
                audit=held.audit,
                reid=held.reid,
                ids=held.ids,
            )

    def test_a_rejected_outcome_cannot_carry_a_candidate(self, cleaner: TextCleaner) -> None:
        rejected = run(b"garbage", cleaner)
        with pytest.raises(ValueError, match="HELD"):
            InstanceOutcome(
                status=InstanceStatus.REJECTED,
                output=None,
                candidate=b"bytes",
                reasons=rejected.reasons,
                error=rejected.error,
                audit=rejected.audit,
                reid=None,
                ids=None,
            )


FULL_WIDTH_123 = "\uff11\uff12\uff13"  # the digits 1, 2, 3 in full width


class TestWhatTheFuzzerFound:
    """Inputs the fuzzing harness (tests/fuzz) found, each now answered as documented."""

    def test_a_number_string_in_full_width_digits_is_rejected_naming_its_tag(
        self, cleaner: TextCleaner
    ) -> None:
        def count_rate(ds: Dataset) -> None:
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.CountRate = "999999999"  # nine bytes, as many as three full-width digits in UTF-8

        data = instance_bytes(customize=count_rate).replace(
            b"999999999", FULL_WIDTH_123.encode(), 1
        )
        outcome = run(data, cleaner)
        assert outcome.status is InstanceStatus.REJECTED
        assert outcome.error is not None
        assert outcome.error.reason == "unwritable_element"
        assert "(0018,1243)" in outcome.error.message
        assert FULL_WIDTH_123[0] not in outcome.error.message
        assert_no_output(outcome)

    def test_a_patient_name_in_the_bytes_of_a_number_is_held(self, cleaner: TextCleaner) -> None:
        # Implicit VR: Rows holds 24 bytes of the name, read as twelve US values and written back.
        name = PATIENT_NAME.encode().ljust(24, b" ")[:24]

        def rows_of_text(ds: Dataset) -> None:
            ds.Rows = list(struct.unpack("<12H", name))

        data = instance_bytes(transfer_syntax=ImplicitVRLittleEndian, customize=rows_of_text)
        outcome = run(data, cleaner)
        assert outcome.status is InstanceStatus.HELD
        assert "residual PHI in (0028,0010) (PatientName, exact)" in outcome.reasons
