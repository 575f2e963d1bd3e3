"""The records of a finished run name the bytes they describe (the input is hashed once)."""

from __future__ import annotations

import hashlib

import pytest

from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY, PixelAssessment, PixelPolicy
from radstream.deid.pipeline import InstanceOutcome, InstanceStatus, deidentify_instance
from radstream.deid.profile import DeidKeys, DeidProfile
from tests.unit.deid.study_builder import TEST_KEYS_SECRET, instance_bytes, shared_text_cleaner

KEYS = DeidKeys.from_secret(TEST_KEYS_SECRET)


class HoldEverything:
    """A pixel policy that holds every instance (so the run ends HELD with a candidate)."""

    def assess(self, ds: object) -> PixelAssessment:
        return PixelAssessment(hold=True, reasons=("held for the test",))


def run(data: bytes, pixel_policy: PixelPolicy) -> InstanceOutcome:
    return deidentify_instance(
        data,
        profile=DeidProfile(),
        keys=KEYS,
        clean_text=shared_text_cleaner(),
        pixel_policy=pixel_policy,
    )


@pytest.mark.parametrize(
    ("policy", "status"),
    [(DEFAULT_PIXEL_POLICY, InstanceStatus.RELEASED), (HoldEverything(), InstanceStatus.HELD)],
)
def test_the_audit_and_the_reidentification_record_hash_the_input_itself(
    policy: PixelPolicy, status: InstanceStatus
) -> None:
    data = instance_bytes(rows=16, columns=16)
    outcome = run(data, policy)
    assert outcome.status is status
    assert outcome.reid is not None
    expected = hashlib.sha256(data).hexdigest()
    assert outcome.audit.input.sha256 == expected
    assert outcome.reid.input_sha256 == expected
    assert outcome.audit.input.size == len(data)


def test_a_released_output_is_hashed_as_written() -> None:
    outcome = run(instance_bytes(rows=16, columns=16), DEFAULT_PIXEL_POLICY)
    assert outcome.output is not None and outcome.audit.output is not None
    assert outcome.audit.output.sha256 == hashlib.sha256(outcome.output).hexdigest()
    assert outcome.audit.output.sha256 != outcome.audit.input.sha256
