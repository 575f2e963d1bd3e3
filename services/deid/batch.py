"""De-identify a directory tree of DICOM files: the core of ``radstream deid IN_DIR OUT_DIR``.

Every regular file under ``IN_DIR`` is one input; whatever it is, it ends up in exactly one of
three places under ``OUT_DIR``:

``released/<study>/<series>/<instance>.dcm``
    De-identified and verified. Named by the *replacement* UIDs, not by the input path: input
    paths often carry patient names or record numbers (``DOE_JANE/MRN123/...``), and a file
    name would smuggle them past the profile. ``audit.jsonl`` maps each input to its output.
``held/<input path>`` and ``held.json``
    De-identified but not released: the pixel policy or the verifier asked for a human. What
    is stored is the de-identified *candidate* -- what would be released if a reviewer
    approves -- because that is what the reviewer must judge; the original stays in
    ``IN_DIR``. ``held.json`` lists input path, candidate path and reasons. A candidate may
    still hold PHI (that is why it was held), so ``held/`` is PHI-zone data like ``IN_DIR``.
``rejected.json``
    Files that could not be processed (not DICOM, truncated, ...): input path and error.
    Nothing is written for them. A file the OCR engine did not answer for (its service or model
    server away) is listed with the reason ``ocr_unavailable``: it was left as it is, and the
    rest of the batch goes on; run it again once the engine answers.

``report.html`` (when the pixel policy is a :class:`~radstream.deid.pixels.stage.PixelStage`)
    Per instance whose pixels were redacted or that was held: before and after thumbnails
    with the boxes drawn, the decision, risk, reasons and scores
    (:mod:`radstream.deid.report_html`). It shows original pixels and OCR text: PHI.

``audit.jsonl`` has one audit record per input (no values; the pixel stage's decision and
costs included); ``reidentification.jsonl`` the re-identification records (PHI). Only
``released/`` may leave the PHI zone. A file appears under
``released/`` only after it was written in full (temp file, then rename).

Everything written is for its owner only, whatever the umask: files are created 0600 and the
directories the run creates (``OUT_DIR`` itself when it did not exist, and every directory
inside it) 0700. Held candidates, the reports (input paths often carry names) and the
re-identification map are PHI; released files are copied out deliberately.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from radstream.deid.audit import Digest
from radstream.deid.burned_in import PixelPolicy
from radstream.deid.errors import DeidConfigurationError, OcrEngineUnavailableError
from radstream.deid.pipeline import (
    DeidentifiedIds,
    InstanceOutcome,
    InstanceStatus,
    deidentify_instance,
    rejected_unread,
)
from radstream.deid.pixels.stage import PixelStage
from radstream.deid.profile import DeidKeys, DeidProfile, TextCleaner
from radstream.deid.report_html import REPORT_FILE, HtmlReport, reported
from radstream.dicom.errors import OversizedFileError
from radstream.dicom.reader import DEFAULT_READER_LIMITS, ReaderLimits

__all__ = [
    "AUDIT_FILE",
    "HELD_DIR",
    "HELD_FILE",
    "REIDENTIFICATION_FILE",
    "REJECTED_FILE",
    "RELEASED_DIR",
    "REPORT_FILE",
    "BatchEntry",
    "BatchSummary",
    "deidentify_directory",
    "find_inputs",
]

RELEASED_DIR = "released"
HELD_DIR = "held"
HELD_FILE = "held.json"
REJECTED_FILE = "rejected.json"
AUDIT_FILE = "audit.jsonl"
REIDENTIFICATION_FILE = "reidentification.jsonl"
_PARTIAL_DIR = ".partial"
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_READ_CHUNK = 1024 * 1024
_FILE_MODE = 0o600
_DIRECTORY_MODE = 0o700


@dataclass(frozen=True, kw_only=True)
class BatchEntry:
    """What became of one input file; paths are relative (input to IN_DIR, output to OUT_DIR)."""

    input: str
    status: InstanceStatus
    output: str | None
    reasons: tuple[str, ...]
    error_type: str | None = None
    error_reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class BatchSummary:
    """The result of a batch run."""

    entries: tuple[BatchEntry, ...]

    def count(self, status: InstanceStatus) -> int:
        """How many inputs ended with ``status``."""
        return sum(1 for entry in self.entries if entry.status is status)

    @property
    def counts(self) -> dict[InstanceStatus, int]:
        """Inputs per outcome, every outcome listed."""
        return {status: self.count(status) for status in InstanceStatus}

    def reasons(self, status: InstanceStatus) -> Counter[str]:
        """How often each reason (held) or error reason (rejected) occurred."""
        counter: Counter[str] = Counter()
        for entry in self.entries:
            if entry.status is not status:
                continue
            if status is InstanceStatus.REJECTED:
                counter[entry.error_reason or "unknown"] += 1
            else:
                counter.update(entry.reasons)
        return counter


def find_inputs(in_dir: Path) -> list[Path]:
    """Every regular file under ``in_dir``, sorted; symlinked directories are not followed."""
    found: list[Path] = []
    for root, directories, files in os.walk(in_dir):
        directories.sort()
        found.extend(Path(root) / name for name in sorted(files) if (Path(root) / name).is_file())
    return found


def deidentify_directory(  # noqa: PLR0917 -- the pipeline's inputs plus where to read and write
    in_dir: Path,
    out_dir: Path,
    profile: DeidProfile,
    keys: DeidKeys,
    clean_text: TextCleaner,
    pixel_policy: PixelPolicy,
    *,
    limits: ReaderLimits = DEFAULT_READER_LIMITS,
    on_entry: Callable[[BatchEntry], None] | None = None,
) -> BatchSummary:
    """De-identify every file under ``in_dir`` into ``out_dir`` (which must be new or empty).

    Raises
    ------
    DeidConfigurationError
        If ``in_dir`` is not a directory or ``out_dir`` is not empty; nothing is written then.
    """
    stage = pixel_policy if isinstance(pixel_policy, PixelStage) else None
    writer = _Writer(_prepare(in_dir, out_dir), stage=stage)
    entries: list[BatchEntry] = []
    try:
        for path in find_inputs(in_dir):
            relative = path.relative_to(in_dir).as_posix()
            outcome, data = _deidentify_file(path, profile, keys, clean_text, pixel_policy, limits)
            entry = writer.record(relative, outcome, data)
            entries.append(entry)
            if on_entry is not None:
                on_entry(entry)
    finally:
        writer.close()
    return BatchSummary(entries=tuple(entries))


def _prepare(in_dir: Path, out_dir: Path) -> Path:
    if not in_dir.is_dir():
        raise DeidConfigurationError(f"input {in_dir} is not a directory")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DeidConfigurationError(
            f"output {out_dir} exists and is not an empty directory; choose a new one, so "
            "nothing from an earlier run is mistaken for this run's release"
        )
    resolved_in, resolved_out = in_dir.resolve(), out_dir.resolve()
    if resolved_in == resolved_out or resolved_in in resolved_out.parents:
        raise DeidConfigurationError(f"output {out_dir} must not lie inside input {in_dir}")
    _make_directories(out_dir / RELEASED_DIR)
    _make_directories(out_dir / HELD_DIR)
    return out_dir


def _make_directories(path: Path) -> None:
    """Create ``path`` and its missing parents, each owner-only (an existing one is left as is).

    ``Path.mkdir(parents=True)`` gives the parents the umask's mode, not the one asked for.
    """
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=_DIRECTORY_MODE, exist_ok=True)
        os.chmod(directory, _DIRECTORY_MODE)  # mkdir's mode is masked by the umask


def _open_private(path: Path) -> int:
    """Create (or truncate) ``path`` for writing, 0600 whatever the umask; return the fd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    os.fchmod(fd, _FILE_MODE)
    return fd


def _deidentify_file(  # noqa: PLR0917 -- the pipeline's inputs
    path: Path,
    profile: DeidProfile,
    keys: DeidKeys,
    clean_text: TextCleaner,
    pixel_policy: PixelPolicy,
    limits: ReaderLimits,
) -> tuple[InstanceOutcome, bytes | None]:
    """The outcome for one file, and its bytes when they were read (for the pixel report)."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        error = OversizedFileError(
            f"file holds {size} bytes, more than the limit of {limits.max_file_bytes}; "
            "raise RADSTREAM_DEID_MAX_FILE_BYTES if such files are expected"
        )
        unread = rejected_unread(
            _digest_file(path), error, profile=profile, pixel_policy=pixel_policy
        )
        return unread, None
    data = path.read_bytes()
    try:
        outcome = deidentify_instance(
            data,
            profile=profile,
            keys=keys,
            clean_text=clean_text,
            pixel_policy=pixel_policy,
            limits=limits,
        )
    except OcrEngineUnavailableError as exc:  # the engine is away, the file is not at fault
        left = OcrEngineUnavailableError(
            exc.step,
            exc.cause,
            message=f"OCR engine unavailable ({exc.cause} in step {exc.step}); the file was "
            "left as it is; run again",
        )
        unprocessed = rejected_unread(
            Digest.of(data), left, profile=profile, pixel_policy=pixel_policy, step=exc.step
        )
        return unprocessed, None
    return outcome, data


def _digest_file(path: Path) -> Digest:
    """Hash a file without loading it whole."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(_READ_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return Digest(sha256=sha.hexdigest(), size=size)


class _Writer:
    """Writes outputs and the report files as entries come in."""

    def __init__(self, out_dir: Path, *, stage: PixelStage | None = None) -> None:
        self.out_dir = out_dir
        self.held: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self._audit = os.fdopen(_open_private(out_dir / AUDIT_FILE), "w", encoding="utf-8")
        self._reid = os.fdopen(
            _open_private(out_dir / REIDENTIFICATION_FILE), "w", encoding="utf-8"
        )
        self._report = (
            HtmlReport(out_dir / REPORT_FILE, threshold=stage.threshold)
            if stage is not None
            else None
        )

    def record(
        self, relative: str, outcome: InstanceOutcome, data: bytes | None = None
    ) -> BatchEntry:
        """Write what ``outcome`` produced for the input at ``relative``; return its entry."""
        self.counts[outcome.status.value] += 1
        self._illustrate(relative, outcome, data)
        output: str | None = None
        if outcome.status is InstanceStatus.RELEASED and outcome.output is not None:
            output = self._release(outcome.output, outcome.ids)
            if output is None:
                return self._conflict(relative, outcome)
        elif outcome.status is InstanceStatus.HELD and outcome.candidate is not None:
            output = f"{HELD_DIR}/{relative}"
            self._write(output, outcome.candidate)
            self.held.append(
                {"input": relative, "candidate": output, "reasons": list(outcome.reasons)}
            )
        elif outcome.error is not None:
            self.rejected.append(
                {
                    "input": relative,
                    "error": outcome.error.message,
                    "error_type": outcome.error.type,
                    "reason": outcome.error.reason,
                    "step": outcome.error.step,
                }
            )
        self._log(relative, output, outcome)
        return BatchEntry(
            input=relative,
            status=outcome.status,
            output=output,
            reasons=outcome.reasons,
            error_type=outcome.error.type if outcome.error is not None else None,
            error_reason=outcome.error.reason if outcome.error is not None else None,
        )

    def _release(self, data: bytes, ids: DeidentifiedIds | None) -> str | None:
        """Write released bytes under their UIDs; None when another input took that name."""
        uids = (
            (ids.study_instance_uid, ids.series_instance_uid, ids.sop_instance_uid)
            if ids is not None
            else ("", "", "")
        )
        # Retained UIDs come from the sender: only well-formed ones become path segments.
        parts = [uid if _UID.fullmatch(uid) else "unknown" for uid in uids]
        if parts[2] == "unknown":
            parts[2] = hashlib.sha256(data).hexdigest()
        relative = "/".join([RELEASED_DIR, *parts]) + ".dcm"
        target = self.out_dir / relative
        if target.exists():
            return relative if target.read_bytes() == data else None
        self._write(relative, data)
        return relative

    def _conflict(self, relative: str, outcome: InstanceOutcome) -> BatchEntry:
        """Another input was released under the same SOP Instance UID with other content."""
        message = (
            "another input was already released under the same SOP Instance UID with "
            "different content; resolve the duplicate at the source"
        )
        self.rejected.append(
            {
                "input": relative,
                "error": message,
                "error_type": "conflicting_duplicate",
                "reason": "conflicting_duplicate",
                "step": "release",
            }
        )
        self._audit.write(
            json.dumps({"input": relative, "output": None, "conflict": message, "audit": None})
            + "\n"
        )
        return BatchEntry(
            input=relative,
            status=InstanceStatus.REJECTED,
            output=None,
            reasons=(message,),
            error_type="conflicting_duplicate",
            error_reason="conflicting_duplicate",
        )

    def _write(self, relative: str, data: bytes) -> None:
        """Write via a temp file outside released/ and held/, then rename into place."""
        target = self.out_dir / relative
        _make_directories(target.parent)
        partial = self.out_dir / _PARTIAL_DIR
        _make_directories(partial)
        temp = partial / hashlib.sha256(relative.encode()).hexdigest()
        _write_private(temp, data)
        os.replace(temp, target)

    def _log(self, relative: str, output: str | None, outcome: InstanceOutcome) -> None:
        self._audit.write(
            json.dumps(
                {"input": relative, "output": output, "audit": outcome.audit.to_dict()},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            + "\n"
        )
        if outcome.reid is not None:
            self._reid.write(
                json.dumps(
                    {"input": relative, **outcome.reid.to_dict()},
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
                + "\n"
            )

    def _illustrate(self, relative: str, outcome: InstanceOutcome, data: bytes | None) -> None:
        """The instance's section in report.html, if its pixels were redacted or it was held."""
        held = outcome.status is InstanceStatus.HELD
        if self._report is None or not reported(outcome.pixel_report, held=held):
            return
        self._report.add(
            input_name=relative,
            status=outcome.status.value,
            reasons=outcome.reasons,
            pixels=outcome.pixel_report,
            before=_dataset(data),
            after=_dataset(outcome.output if outcome.output is not None else outcome.candidate),
        )

    def close(self) -> None:
        """Write held.json, rejected.json and the report's summary; close the logs."""
        self._audit.close()
        self._reid.close()
        if self._report is not None:
            self._report.close(dict(self.counts))
        for name, rows in ((HELD_FILE, self.held), (REJECTED_FILE, self.rejected)):
            text = json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
            _write_private(self.out_dir / name, text.encode("utf-8"))
        partial = self.out_dir / _PARTIAL_DIR
        if partial.exists() and not any(partial.iterdir()):
            partial.rmdir()


def _dataset(data: bytes | None) -> Dataset | None:
    """The data set in ``data`` for a thumbnail, or None (the report says it is missing)."""
    if data is None:
        return None
    try:
        return dcmread(io.BytesIO(data))
    except Exception:  # an unreadable input was rejected; its section shows no picture
        return None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, 0600."""
    with os.fdopen(_open_private(path), "wb") as stream:
        stream.write(data)
