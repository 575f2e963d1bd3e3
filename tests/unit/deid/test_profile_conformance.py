"""De-identified output is a valid instance: pydicom writes and re-reads it, Type 1 attributes
stay present and non-empty, every UID is valid, and dciodvfy finds no error the input lacked."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import RTPlanStorage

from radstream.deid._iod_types import attribute_types
from radstream.deid.profile import DeidProfile, ProfileOption, apply_profile
from radstream.deid.uids import UID_PATTERN
from tests.unit.deid.profile_builders import (
    KEYS,
    deidentify,
    deleting_cleaner,
    instance,
    item,
    pet_instance,
    phi_of,
    segmentation_instance,
    sr_instance,
    written,
)

EVERY_OPTION = frozenset(set(ProfileOption) - {ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES})
PROFILES = {
    "basic": DeidProfile(),
    "every-option": DeidProfile(options=EVERY_OPTION),
}


def _rt_plan() -> Dataset:
    ds = instance(RTPlanStorage, Modality="RTPLAN", RTPlanLabel="PLAN1", RTPlanDate="20240101")
    ds.RTPlanTime = "120000"
    ds.BeamSequence = [item(BeamNumber=1, TreatmentMachineName="LINAC-2")]
    return ds


BUILDERS: dict[str, Callable[[], Dataset]] = {
    "ct": instance,
    "pet": pet_instance,
    "sr": sr_instance,
    "segmentation": segmentation_instance,
    "rt-plan": _rt_plan,
}
COMMON_TYPE_1 = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _uid_values(ds: Dataset) -> list[str]:
    values: list[str] = []
    for top in (ds, ds.file_meta):
        for elem in top.iterall():
            if elem.VR == "UI" and elem.value:
                values.extend(str(v) for v in (elem.value if elem.VM > 1 else [elem.value]))
    return values


@pytest.mark.parametrize("profile_name", list(PROFILES))
@pytest.mark.parametrize("kind", list(BUILDERS))
def test_output_is_written_and_reread_with_type_1_present_and_valid_uids(
    kind: str, profile_name: str
) -> None:
    source = BUILDERS[kind]()
    result = deidentify(source, profile=PROFILES[profile_name])
    back = written(result.dataset)
    for keyword in COMMON_TYPE_1:
        assert back[keyword].value, keyword
    for tag, attr_type in attribute_types(source.SOPClassUID).items():
        if tag in source:
            assert tag in back, f"{kind}: Type {attr_type} attribute {tag:08X} was removed"
            if attr_type == 1:
                assert back[tag].value not in (None, "", []), f"{kind}: {tag:08X} is empty"
    for value in _uid_values(back):
        assert UID_PATTERN.fullmatch(value), value
        assert len(value) <= 64
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in back.file_meta


def _dciodvfy_errors(path: Path) -> set[str]:
    run = subprocess.run(
        ["dciodvfy", "-new", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    return {line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
class TestDciodvfy:
    @pytest.mark.parametrize("profile_name", list(PROFILES))
    @pytest.mark.parametrize("kind", list(BUILDERS))
    def test_de_identification_adds_no_conformance_error(
        self, tmp_path: Path, kind: str, profile_name: str
    ) -> None:
        source = BUILDERS[kind]()
        dcmwrite(tmp_path / "in.dcm", source, enforce_file_format=True)
        result = deidentify(source, profile=PROFILES[profile_name])
        dcmwrite(tmp_path / "out.dcm", result.dataset, enforce_file_format=True)
        added = _dciodvfy_errors(tmp_path / "out.dcm") - _dciodvfy_errors(tmp_path / "in.dcm")
        assert not added

    @pytest.mark.parametrize(
        "name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "JPEG2000.dcm"]
    )
    def test_real_files_gain_no_conformance_error(self, tmp_path: Path, name: str) -> None:
        source = Path(get_testdata_file(name))  # type: ignore[arg-type]
        result = apply_profile(
            dcmread(source),
            DeidProfile(options=EVERY_OPTION),
            KEYS,
            clean_text=deleting_cleaner,
            phi=phi_of("unused"),
        )
        dcmwrite(tmp_path / "out.dcm", result.dataset, enforce_file_format=True)
        assert not _dciodvfy_errors(tmp_path / "out.dcm") - _dciodvfy_errors(source)
