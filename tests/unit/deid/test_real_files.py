"""Real files no one here wrote: pydicom's bundled test files and the deid-data package.

Every file goes through the full pipeline with the basic profile. Whatever is released must
re-read as DICOM and hold none of the original header's PHI values -- checked here again, apart
from the pipeline: by the verifier on a fresh read of the original, and by a plain byte search.
Held and rejected files are listed, with their reasons, at the end of the run.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import deid_data
import pydicom
import pytest
from pydicom import dcmread

from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY, SECONDARY_CAPTURE_SOP_CLASSES
from radstream.deid.phi import collect_phi_values
from radstream.deid.pipeline import InstanceOutcome, InstanceStatus, deidentify_instance
from radstream.deid.profile import DeidKeys, DeidProfile
from radstream.deid.verify import find_residual_phi
from radstream.dicom.reader import read_instance
from tests.unit.deid.study_builder import TEST_KEYS_SECRET, shared_text_cleaner

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DEID_DATA = Path(deid_data.__file__).parent / "data"
DEID_DATA_FOLDERS = ("humans", "dicom-cookies", "ultrasounds", "animals")
LARGE_BYTES = 5 * 1024 * 1024
KEYS = DeidKeys.from_secret(TEST_KEYS_SECRET)
PROFILE = DeidProfile()

# What the strict reader must refuse, and why; every other file must get past it.
EXPECTED_REJECTIONS = {
    "pydicom/ExplVR_BigEndNoMeta.dcm": "missing_file_meta",
    "pydicom/ExplVR_LitEndNoMeta.dcm": "missing_file_meta",
    "pydicom/rtstruct.dcm": "missing_file_meta",
    "pydicom/meta_missing_tsyntax.dcm": "missing_file_meta",
    "pydicom/no_meta.dcm": "not_dicom",  # a stray byte before an otherwise bare data set
    "pydicom/MR_truncated.dcm": "truncated",
    "pydicom/rtplan_truncated.dcm": "truncated",
    # Fragments made to test one parser feature: no SOP Class or SOP Instance UID.
    "pydicom/UN_sequence.dcm": "malformed_dicom",
    "pydicom/empty_charset_LEI.dcm": "malformed_dicom",
    "pydicom/nested_priv_SQ.dcm": "malformed_dicom",
    "pydicom/no_meta_group_length.dcm": "malformed_dicom",
    "pydicom/priv_SQ.dcm": "malformed_dicom",
}


@dataclass(frozen=True)
class RealFile:
    """A file to de-identify: its name in the report and where its bytes come from."""

    name: str
    path: Path
    member: str | None = None  # the DICOM file inside a zip archive

    def read(self) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(self.member)

    @property
    def size(self) -> int:
        if self.member is None:
            return self.path.stat().st_size
        with zipfile.ZipFile(self.path) as archive:
            return archive.getinfo(self.member).file_size


def real_files() -> Iterator[RealFile]:
    for path in sorted(PYDICOM_FILES.glob("*.dcm")):
        yield RealFile(f"pydicom/{path.name}", path)
    for folder in DEID_DATA_FOLDERS:
        for path in sorted((DEID_DATA / folder).iterdir()):
            if path.suffix == ".dcm":
                yield RealFile(f"deid-data/{folder}/{path.name}", path)
            elif path.suffix == ".zip":
                with zipfile.ZipFile(path) as archive:
                    members = [name for name in archive.namelist() if name.endswith(".dcm")]
                for member in members:
                    yield RealFile(f"deid-data/{folder}/{path.name}!{member}", path, member)


FILES = list(real_files())
_outcomes: dict[str, InstanceOutcome] = {}


def outcome_of(real: RealFile) -> InstanceOutcome:
    if real.name not in _outcomes:
        _outcomes[real.name] = deidentify_instance(
            real.read(),
            profile=PROFILE,
            keys=KEYS,
            clean_text=shared_text_cleaner(),
            pixel_policy=DEFAULT_PIXEL_POLICY,
        )
    return _outcomes[real.name]


def params() -> list[object]:
    return [
        pytest.param(
            real, id=real.name, marks=[pytest.mark.slow] if real.size > LARGE_BYTES else []
        )
        for real in FILES
    ]


def searchable_values(original_bytes: bytes) -> list[str]:
    """PHI texts long and specific enough that a byte-level match cannot be chance."""
    original = read_instance(original_bytes)
    texts = collect_phi_values(original).texts()
    return [
        text
        for text in texts
        if len(text.strip()) >= 6
        and (any(char.isalpha() for char in text) or len(text.strip()) >= 8)
    ]


def test_the_real_file_corpus_is_there() -> None:
    names = {real.name for real in FILES}
    assert len(names) > 90
    assert "deid-data/humans/ctbrain1.dcm" in names
    assert "deid-data/ultrasounds/RGB_CINE.zip!RGB_CINE.dcm" in names


@pytest.mark.parametrize("real", params())
def test_a_real_file_is_released_clean_held_with_reasons_or_rejected_on_purpose(
    real: RealFile,
) -> None:
    outcome = outcome_of(real)
    expected_rejection = EXPECTED_REJECTIONS.get(real.name)
    if expected_rejection is not None:
        assert outcome.status is InstanceStatus.REJECTED
        assert outcome.error is not None
        assert outcome.error.reason == expected_rejection
        return
    assert outcome.status is not InstanceStatus.REJECTED, outcome.reasons
    if outcome.status is InstanceStatus.HELD:
        assert outcome.output is None
        assert outcome.reasons
        assert outcome.candidate is not None
        return
    assert outcome.output is not None
    data = real.read()
    released = read_instance(outcome.output)  # strict re-read
    assert dcmread(io.BytesIO(outcome.output)).PatientIdentityRemoved == "YES"
    original = read_instance(data)
    reid = outcome.reid
    allowed = (reid.patient_pseudonym,) if reid is not None else ()
    assert find_residual_phi(released, collect_phi_values(original), allowed=allowed) == []
    for text in searchable_values(data):
        assert text.encode("utf-8", "ignore") not in outcome.output
        assert text.encode("latin-1", "ignore") not in outcome.output


@pytest.mark.parametrize("real", params())
def test_text_prone_real_files_are_held_for_their_pixels(real: RealFile) -> None:
    outcome = outcome_of(real)
    if outcome.status is InstanceStatus.REJECTED:
        return
    original = read_instance(real.read())
    text_prone = (
        str(original.get("SOPClassUID")) in SECONDARY_CAPTURE_SOP_CLASSES
        or original.get("Modality") == "US"
        or original.get("BurnedInAnnotation") == "YES"
    )
    if text_prone and "PixelData" in original:
        assert outcome.status is InstanceStatus.HELD
        assert any(reason.startswith("possible burned-in text") for reason in outcome.reasons)


def test_report_what_was_held_and_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    counts = dict.fromkeys(InstanceStatus, 0)
    for real in FILES:
        outcome = outcome_of(real)
        counts[outcome.status] += 1
        if outcome.status is not InstanceStatus.RELEASED:
            lines.append(f"  {outcome.status.value:8s} {real.name}: {'; '.join(outcome.reasons)}")
    summary = ", ".join(f"{count} {status.value}" for status, count in counts.items())
    with capsys.disabled():
        print(f"\nreal files: {len(FILES)} ({summary})")
        print("\n".join(lines))
    assert counts[InstanceStatus.RELEASED] > 0
