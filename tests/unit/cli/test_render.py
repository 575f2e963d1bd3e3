"""How `radstream tail` and the demo show an event on one line."""

from __future__ import annotations

from radstream.cli.render import MASK, mask, summarize
from radstream.contracts.v1 import common_pb2, deid_pb2, imaging_pb2


def test_per_instance_outcomes_are_counted_not_just_listed() -> None:
    completed = deid_pb2.DeidCompleted(
        results=[
            deid_pb2.DeidCompleted.InstanceResult(
                outcome=deid_pb2.DeidCompleted.Outcome.OUTCOME_RELEASED
            ),
            deid_pb2.DeidCompleted.InstanceResult(
                outcome=deid_pb2.DeidCompleted.Outcome.OUTCOME_RELEASED
            ),
            deid_pb2.DeidCompleted.InstanceResult(
                outcome=deid_pb2.DeidCompleted.Outcome.OUTCOME_HELD
            ),
        ]
    )
    assert "results=[HELD:1 RELEASED:2]" in summarize(mask(completed, show_phi=True))


def test_other_lists_show_their_length() -> None:
    study = imaging_pb2.StudyReceived(
        study_instance_uid="2.25.1", instances=[common_pb2.InstanceRef(), common_pb2.InstanceRef()]
    )
    assert "instances=[2]" in summarize(mask(study, show_phi=True))


def test_identifiers_are_masked_unless_asked_for() -> None:
    study = imaging_pb2.StudyReceived(study_instance_uid="2.25.7", patient_id="SYNTH-9")
    masked = mask(study, show_phi=False)
    assert masked["patient_id"] == MASK
    assert masked["study_instance_uid"] == MASK
    assert mask(study, show_phi=True)["patient_id"] == "SYNTH-9"


def pixel_result(
    outcome: deid_pb2.DeidCompleted.Outcome.ValueType, modality: str, **pixels: object
) -> deid_pb2.DeidCompleted.InstanceResult:
    return deid_pb2.DeidCompleted.InstanceResult(
        original=common_pb2.InstanceRef(sop_instance_uid="2.25.99", modality=modality),
        outcome=outcome,
        **pixels,  # type: ignore[arg-type]
    )


RELEASED = deid_pb2.DeidCompleted.Outcome.OUTCOME_RELEASED
HELD = deid_pb2.DeidCompleted.Outcome.OUTCOME_HELD


def test_instances_with_pixel_text_say_what_the_pixel_stage_did() -> None:
    completed = deid_pb2.DeidCompleted(
        study_instance_uid="2.25.5",
        results=[
            pixel_result(RELEASED, "CT", pixel_decision="no_text", pixel_check_ms=1.2),
            pixel_result(
                RELEASED,
                "US",
                pixel_decision="redacted",
                pixel_check_ms=812.4,
                phi_boxes_filled=4,
                text_boxes_kept=3,
                pixel_risk=0.0042,
            ),
            pixel_result(
                HELD,
                "US",
                pixel_decision="held",
                pixel_check_ms=1500,
                phi_boxes_filled=2,
                pixel_risk=0.41,
                reasons=["pixel_risk_over_threshold"],
            ),
        ],
    )
    line = summarize(mask(completed, show_phi=False))
    assert "pixels held:1 no_text:1 redacted:1" in line
    assert "#2 US redacted: 4 PHI box(es) filled, 3 kept, 812 ms, risk 0.004" in line
    assert (
        "#3 US held: 2 PHI box(es) proposed for review, 0 kept, 1500 ms, risk 0.410, "
        "held: pixel_risk_over_threshold"
    ) in line
    assert "#1" not in line  # no text: counted only
    assert "2.25.99" not in line


def test_a_long_study_details_a_few_instances_with_text_and_counts_the_rest() -> None:
    results = [pixel_result(RELEASED, "CT", pixel_decision="text_kept") for _ in range(5)]
    line = summarize(mask(deid_pb2.DeidCompleted(results=results), show_phi=True))
    assert "#3 CT text_kept" in line
    assert "#4" not in line
    assert "+2 more with text" in line


def test_results_without_a_pixel_stage_show_their_outcomes_only() -> None:
    completed = deid_pb2.DeidCompleted(results=[deid_pb2.DeidCompleted.InstanceResult()])
    assert "pixels" not in summarize(mask(completed, show_phi=True))
