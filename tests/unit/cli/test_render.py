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
