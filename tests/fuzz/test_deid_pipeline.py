"""Fuzz target: the de-identification pipeline (``radstream.deid.deidentify_instance``).

Promise: every input ends RELEASED, HELD or REJECTED and the call never raises; nothing is
rejected for an unexpected error of radstream's own (reason ``internal``); and no planted PHI
is in the outcome's reasons and error, its audit record, or the logs; and a released
instance holds none of the planted values the input holds in an attribute deid collects as
PHI (what the verifier searches the output for), checked here again apart from the verifier.
Planted text released when a mutation removed or changed the attributes that held its values
is counted as "unanchored": text recognition's limit, not a broken promise.
Only profile options that keep no planted value are drawn (retaining institution or device
identity, patient characteristics or full dates would keep planted values on purpose).
"""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from pydicom import dcmread

from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY
from radstream.deid.phi import collect_phi_values
from radstream.deid.pipeline import InstanceOutcome, InstanceStatus, deidentify_instance
from radstream.deid.profile import DeidKeys, DeidProfile, ProfileOption
from radstream.dicom import InvalidInstanceError, read_instance
from tests.fuzz import phi
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.campaign import Campaign, Emitted, Finding
from tests.fuzz.dicom_corpus import DicomCase, dicom_cases
from tests.unit.deid.study_builder import TEST_KEYS_SECRET, shared_text_cleaner

CAMPAIGN = Campaign("deid.deidentify_instance")
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST"})
_TEXT_VRS |= {"TM", "UC", "UI", "UR", "UT"}
KEYS = DeidKeys.from_secret(TEST_KEYS_SECRET)
OPTIONS = st.frozensets(
    st.sampled_from(
        [
            ProfileOption.CLEAN_DESCRIPTORS,
            ProfileOption.CLEAN_STRUCTURED_CONTENT,
            ProfileOption.CLEAN_GRAPHICS,
            ProfileOption.RETAIN_UIDS,
            ProfileOption.RETAIN_SAFE_PRIVATE,
            ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
        ]
    ),
    max_size=3,
)


def deidentify(case: DicomCase, options: frozenset[ProfileOption], emitted: Emitted) -> None:
    outcome = deidentify_instance(
        case.data,
        profile=DeidProfile(options=options),
        keys=KEYS,
        clean_text=shared_text_cleaner(),
        pixel_policy=DEFAULT_PIXEL_POLICY,
    )
    emitted.answered(outcome.status.value)
    emitted("outcome reasons", "\n".join(outcome.reasons))
    emitted("audit record", outcome.audit.to_json())
    if outcome.ids is not None:
        emitted("released ids", repr(outcome.ids))
    check_outcome(outcome)
    if phi.planted_in(outcome.output):
        leaked = released_phi_values(case.data, outcome.output)
        if not leaked:
            # Planted text whose PHI attributes a mutation removed or changed: no value of the
            # instance for the verifier to search for; what is left is text recognition's limit.
            emitted.answered("released, unanchored planted text")
            return
        raise Finding("phi", where_released(outcome.output, leaked), f"released {leaked[:3]}")


def where_released(output: bytes | None, leaked: list[str]) -> str:
    """Which kind of element of the released instance carries ``leaked`` values."""
    released = dcmread(io.BytesIO(output or b""))
    for element in released.iterall():
        if element.VR in _TEXT_VRS and any(value in str(element.value) for value in leaked):
            return "released instance (a text element)"
    return "released instance (bytes of a binary or numeric element)"


def released_phi_values(data: bytes, output: bytes | None) -> list[str]:
    """The input's planted PHI values (as deid collects them) that are in ``output``."""
    try:
        original = read_instance(data)
    except InvalidInstanceError:
        return []
    found = (output or b"").lower()
    return [
        text
        for text in collect_phi_values(original).texts()
        if phi.planted_in(text) and text.strip().lower().encode("utf-8", "replace") in found
    ]


def check_outcome(outcome: InstanceOutcome) -> None:
    if outcome.status is InstanceStatus.REJECTED:
        error = outcome.error
        assert error is not None
        if error.reason == "internal":
            raise Finding("internal-error", error.message, "rejected for an unexpected error")
    if outcome.status is InstanceStatus.RELEASED:
        assert outcome.output is not None
        released = dcmread(io.BytesIO(outcome.output))
        if released.get("PatientIdentityRemoved") != "YES":
            raise Finding("bad-answer", "PatientIdentityRemoved", "released without YES")


@fuzz_settings()
@given(case=dicom_cases(planted_only=True, byte_chance=0.25), options=OPTIONS)
def _fuzz(case: DicomCase, options: frozenset[ProfileOption]) -> None:
    CAMPAIGN.attempt(case.data, lambda emitted: deidentify(case, options, emitted))


def test_every_mutated_instance_is_released_clean_held_or_rejected() -> None:
    shared_text_cleaner()  # spaCy loads before the campaign's clock starts
    with CAMPAIGN.running():
        _fuzz()
    CAMPAIGN.assert_clean()
