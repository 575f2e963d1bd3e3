"""Fuzz target: the strict DICOM reader (``radstream.dicom.read_instance``) on mutated real files.

Promise: every input is either read (every element parsed) or refused with an
:class:`~radstream.dicom.errors.InvalidInstanceError` whose reason is set and whose message
quotes nothing from the file.
"""

from __future__ import annotations

from hypothesis import given

from radstream.dicom import InvalidInstanceError, read_instance
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.campaign import Campaign, Emitted, Finding
from tests.fuzz.dicom_corpus import DicomCase, dicom_cases

CAMPAIGN = Campaign("dicom.read_instance")


def read_or_refuse(case: DicomCase, emitted: Emitted) -> None:
    try:
        dataset = read_instance(case.data)
    except InvalidInstanceError as exc:
        emitted.answered(exc.reason)
        emitted("error message", str(exc))
        if not exc.reason:
            raise Finding("bad-answer", "InvalidInstanceError.reason", "empty reason") from exc
        return
    emitted.answered("read")
    if not dataset.get("SOPInstanceUID"):
        raise Finding("bad-answer", "read_instance", "read without a SOP Instance UID")


@fuzz_settings()
@given(case=dicom_cases())
def _fuzz(case: DicomCase) -> None:
    CAMPAIGN.attempt(case.data, lambda emitted: read_or_refuse(case, emitted))


def test_every_mutated_instance_is_read_or_refused_with_a_reader_error() -> None:
    with CAMPAIGN.running():
        _fuzz()
    CAMPAIGN.assert_clean()
