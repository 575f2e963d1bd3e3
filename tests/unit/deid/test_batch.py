"""A directory through the pipeline: the right split on disk, and nothing doubtful released."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from radstream.cli.main import app
from radstream.deid import clean
from radstream.deid.batch import BatchSummary, deidentify_directory
from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY
from radstream.deid.clean import PresidioTextCleaner
from radstream.deid.errors import DeidConfigurationError
from radstream.deid.pipeline import InstanceStatus
from radstream.deid.profile import DeidKeys, DeidProfile
from radstream.dicom.reader import ReaderLimits
from tests.unit.deid.study_builder import (
    PHI_TEXTS,
    TEST_KEYS_SECRET,
    US_IMAGE_STORAGE,
    instance_bytes,
    shared_text_cleaner,
)

KEYS = DeidKeys.from_secret(TEST_KEYS_SECRET)

GOOD = ("DOE_JANE/CT/slice1.dcm", "DOE_JANE/CT/slice2.dcm")
BURNED_IN = "DOE_JANE/US/echo.dcm"
GARBAGE = "DOE_JANE/notes.txt"
TRUNCATED = "DOE_JANE/CT/slice3_cut.dcm"


@pytest.fixture(scope="module")
def cleaner() -> PresidioTextCleaner:
    return shared_text_cleaner()


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    files = {
        GOOD[0]: instance_bytes(number=1),
        GOOD[1]: instance_bytes(number=2),
        BURNED_IN: instance_bytes(number=3, modality="US", sop_class=US_IMAGE_STORAGE),
        GARBAGE: b"Patient DOE^JANE called about the results.\n",
        TRUNCATED: instance_bytes(number=4, rows=16, columns=16)[:-150],
    }
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def run_batch(
    in_dir: Path, out_dir: Path, cleaner: PresidioTextCleaner, **kwargs: object
) -> BatchSummary:
    return deidentify_directory(
        in_dir, out_dir, DeidProfile(), KEYS, cleaner, DEFAULT_PIXEL_POLICY, **kwargs
    )  # type: ignore[arg-type]


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


class TestTheSplit:
    def test_good_held_and_bad_files_end_up_in_their_places(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "out"
        summary = run_batch(study_dir, out, cleaner)
        assert summary.counts == {
            InstanceStatus.RELEASED: 2,
            InstanceStatus.HELD: 1,
            InstanceStatus.REJECTED: 2,
        }
        by_input = {entry.input: entry for entry in summary.entries}
        assert {by_input[name].status for name in GOOD} == {InstanceStatus.RELEASED}
        assert by_input[BURNED_IN].status is InstanceStatus.HELD
        assert by_input[GARBAGE].error_reason == "not_dicom"
        assert by_input[TRUNCATED].error_reason == "truncated"
        assert sorted(path.name for path in out.iterdir()) == [
            "audit.jsonl",
            "held",
            "held.json",
            "reidentification.jsonl",
            "rejected.json",
            "released",
        ]

    def test_released_holds_exactly_the_released_files_named_by_pseudonymous_uids(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "out"
        summary = run_batch(study_dir, out, cleaner)
        released = files_under(out / "released")
        expected = sorted(
            out / entry.output
            for entry in summary.entries
            if entry.status is InstanceStatus.RELEASED and entry.output is not None
        )
        assert released == expected
        for path in released:
            relative = path.relative_to(out / "released").as_posix()
            assert "DOE" not in relative  # input paths carry names; released paths must not
            data = path.read_bytes()
            ds = dcmread(path)
            assert relative == (
                f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
            )
            for value in PHI_TEXTS:
                assert value.encode() not in data

    def test_nothing_held_or_rejected_appears_under_released(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "out"
        run_batch(study_dir, out, cleaner)
        released = files_under(out / "released")
        modalities = {dcmread(path).Modality for path in released}
        assert modalities == {"CT"}
        held_candidate = (out / "held" / BURNED_IN).read_bytes()
        assert all(path.read_bytes() != held_candidate for path in released)
        assert len(released) == 2

    def test_held_json_lists_input_candidate_and_reasons(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "out"
        run_batch(study_dir, out, cleaner)
        [held] = json.loads((out / "held.json").read_text())
        assert held["input"] == BURNED_IN
        assert held["candidate"] == f"held/{BURNED_IN}"
        assert held["reasons"] == [
            "possible burned-in text: BurnedInAnnotation is absent on modality US"
        ]
        candidate = dcmread(out / held["candidate"])
        assert candidate.PatientIdentityRemoved == "YES"  # de-identified, just not released

    def test_rejected_json_lists_input_and_a_value_free_error(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "out"
        run_batch(study_dir, out, cleaner)
        rejected = {row["input"]: row for row in json.loads((out / "rejected.json").read_text())}
        assert set(rejected) == {GARBAGE, TRUNCATED}
        assert rejected[GARBAGE]["reason"] == "not_dicom"
        assert rejected[GARBAGE]["error_type"] == "radstream.dicom.errors.NotDicomError"
        assert "DOE" not in rejected[GARBAGE]["error"]
        assert rejected[TRUNCATED]["reason"] == "truncated"
        assert rejected[TRUNCATED]["step"] == "read"
        assert "(7FE0,0010)" in rejected[TRUNCATED]["error"]

    def test_every_input_has_one_audit_line_and_the_reid_map_stays_apart(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "out"
        run_batch(study_dir, out, cleaner)
        audits = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
        assert sorted(line["input"] for line in audits) == sorted(
            [*GOOD, BURNED_IN, GARBAGE, TRUNCATED]
        )
        assert {line["audit"]["outcome"] for line in audits} == {"released", "held", "rejected"}
        reid = [
            json.loads(line) for line in (out / "reidentification.jsonl").read_text().splitlines()
        ]
        assert sorted(line["input"] for line in reid) == sorted([*GOOD, BURNED_IN])
        assert all(line["uid_map"] for line in reid)

    def test_an_identical_duplicate_is_released_once(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        shutil.copy(study_dir / GOOD[0], study_dir / "copy_of_slice1.dcm")
        out = tmp_path / "out"
        summary = run_batch(study_dir, out, cleaner)
        assert summary.count(InstanceStatus.RELEASED) == 3
        assert len(files_under(out / "released")) == 2

    def test_a_file_over_the_size_limit_is_rejected_unread(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "out"
        summary = run_batch(study_dir, out, cleaner, limits=ReaderLimits(max_file_bytes=100))
        assert summary.count(InstanceStatus.RELEASED) == 0
        assert summary.reasons(InstanceStatus.REJECTED)["file_too_large"] == 4
        assert files_under(out / "released") == []


class TestFileModes:
    """Held candidates and the re-identification map are PHI: owner-only, whatever the umask."""

    @pytest.fixture
    def loose_umask(self) -> Iterator[None]:
        previous = os.umask(0o022)
        try:
            yield
        finally:
            os.umask(previous)

    @pytest.mark.usefixtures("loose_umask")
    def test_every_file_written_is_0600_and_every_directory_created_0700(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "new" / "out"
        run_batch(study_dir, out, cleaner)
        held = out / "held" / BURNED_IN
        for path in (held, out / "reidentification.jsonl", *files_under(out)):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        created = [out.parent, out, *(path for path in out.rglob("*") if path.is_dir())]
        assert out / "held" / "DOE_JANE" / "US" in created
        for directory in created:
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory

    @pytest.mark.usefixtures("loose_umask")
    def test_an_existing_empty_output_directory_keeps_its_mode(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "out"
        out.mkdir(mode=0o750)
        run_batch(study_dir, out, cleaner)
        assert stat.S_IMODE(out.stat().st_mode) == 0o750
        assert stat.S_IMODE((out / "held").stat().st_mode) == 0o700
        assert stat.S_IMODE((out / "reidentification.jsonl").stat().st_mode) == 0o600


class TestRefusals:
    def test_a_non_empty_output_directory_is_refused(
        self, study_dir: Path, tmp_path: Path, cleaner: PresidioTextCleaner
    ) -> None:
        out = tmp_path / "out"
        (out / "released").mkdir(parents=True)
        (out / "released" / "stale.dcm").write_bytes(b"from an earlier run")
        with pytest.raises(DeidConfigurationError, match="not an empty directory"):
            run_batch(study_dir, out, cleaner)

    def test_an_output_directory_inside_the_input_is_refused(
        self, study_dir: Path, cleaner: PresidioTextCleaner
    ) -> None:
        with pytest.raises(DeidConfigurationError, match="inside input"):
            run_batch(study_dir, study_dir / "out", cleaner)


def invoke(args: list[str]) -> tuple[int, str]:
    """Run the CLI in-process; return the exit code and the output with line wraps undone."""
    result = CliRunner().invoke(app, args)
    return result.exit_code, " ".join(result.output.split())


class TestCommandLine:
    KEY = "radstream-cli-test-key-0123456789abcdef"

    @pytest.fixture(autouse=True)
    def _loaded_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # The command builds the real cleaner; reuse the one this process already loaded.
        monkeypatch.setattr(clean, "build_text_cleaner", shared_text_cleaner)

    def test_the_command_writes_the_split_and_prints_a_summary(
        self, study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RADSTREAM_DEID_KEY", self.KEY)
        out = tmp_path / "out"
        code, output = invoke(["deid", str(study_dir), str(out)])
        assert code == 0, output
        assert "released" in output
        assert "rejected" in output
        assert "not_dicom (1)" in output
        # The command runs the pixel stage: the ultrasound instance's pixels hold no text, so it
        # is checked and released with the two CT slices (the header-only policy held it).
        assert len(files_under(out / "released")) == 3
        audits = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
        decisions = {
            entry["input"]: (entry["audit"]["pixels"] or {}).get("decision") for entry in audits
        }
        assert decisions[BURNED_IN] == "no_text"

    def test_the_command_releases_no_unknown_element(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def unknown_elements(ds: Dataset) -> None:
            ds.add_new(0x44440010, "LO", "SMITH^JOHN MRN 12345678")
            ds.add_new(0x00089999, "UT", "Patient John Smith seen at St Mary hospital")

        source = tmp_path / "in"
        source.mkdir()
        (source / "slice.dcm").write_bytes(instance_bytes(customize=unknown_elements))
        monkeypatch.setenv("RADSTREAM_DEID_KEY", self.KEY)
        out = tmp_path / "out"
        code, output = invoke(["deid", str(source), str(out)])
        assert code == 0, output
        [released] = files_under(out / "released")
        data = released.read_bytes()
        for fragment in (b"SMITH", b"Smith", b"12345678", b"St Mary"):
            assert fragment not in data
        reread = dcmread(released)
        assert 0x44440010 not in reread
        assert 0x00089999 not in reread

    def test_the_command_applies_options_from_the_command_line(
        self, study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RADSTREAM_DEID_KEY", self.KEY)
        out = tmp_path / "out"
        args = ["deid", str(study_dir), str(out), "--options", "retain-uids,clean-descriptors"]
        code, output = invoke(args)
        assert code == 0, output
        [released, *_] = files_under(out / "released")
        codes = {item.CodeValue for item in dcmread(released).DeidentificationMethodCodeSequence}
        assert {"113100", "113110", "113105"} <= codes

    def test_the_command_refuses_to_run_without_a_key(
        self, study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("RADSTREAM_DEID_KEY", raising=False)
        monkeypatch.delenv("RADSTREAM_DEID_KEY_FILE", raising=False)
        out = tmp_path / "out"
        code, output = invoke(["deid", str(study_dir), str(out)])
        assert code == 2
        assert "--ephemeral-key" in output
        assert not out.exists()

    def test_an_ephemeral_key_must_be_asked_for_and_is_warned_about(
        self, study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("RADSTREAM_DEID_KEY", raising=False)
        monkeypatch.delenv("RADSTREAM_DEID_KEY_FILE", raising=False)
        out = tmp_path / "out"
        code, output = invoke(["deid", str(study_dir), str(out), "--ephemeral-key"])
        assert code == 0, output
        assert "not be reproducible" in output

    def test_the_key_can_come_from_a_file(
        self, study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("RADSTREAM_DEID_KEY", raising=False)
        key_file = tmp_path / "deid.key"
        key_file.write_text(self.KEY + "\n")
        out = tmp_path / "out"
        code, output = invoke(["deid", str(study_dir), str(out), "--key-file", str(key_file)])
        assert code == 0, output

    def test_an_unknown_option_is_an_error_naming_the_valid_ones(
        self, study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RADSTREAM_DEID_KEY", self.KEY)
        code, output = invoke(
            ["deid", str(study_dir), str(tmp_path / "out"), "--options", "retain-everything"]
        )
        assert code == 1
        assert "retain-everything" in output
        assert "retain-uids" in output
