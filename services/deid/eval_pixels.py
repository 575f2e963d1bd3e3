"""How well the pixel stage hides burned-in PHI, measured against synthetic ground truth.

``python -m radstream.deid.eval_pixels`` (``make eval-deid``) generates the held-out split (or
reuses it), runs the real batch CLI on it -- ``radstream deid IN OUT --ocr-engine rapidocr
--leak-rate 0.01`` -- and compares every output with the labels:

PHI box recall
    A ground-truth PHI box is *hidden* when at least 95% of its ink is gone from the proposal
    (the pixel changed, or the whole box became one flat fill) **and** OCR of the proposal reads
    nothing like its text there. Counted over every PHI box of every proposal, released or held
    (the held candidate is what a reviewer would approve).
Non-PHI box retention
    A non-PHI annotation is *kept* when at most 5% of its ink changed. Field labels beside a
    value ("MRN:") are not counted either way: filling the whole line is fine.
Instance leak rate
    PHI-bearing instances *released* with some PHI box not hidden, over PHI-bearing instances:
    the rate ``--leak-rate`` bounds. With its exact (Clopper-Pearson) 95% interval.
Review rate
    Instances held, over instances with text (and over all).

``python -m radstream.deid.eval_pixels --calibrate`` (``make calibrate-deid``) runs the same on
the calibration split and writes ``services/deid/pixels/calibration/<engine>.json``: each
instance's risk and whether its proposal leaked, from which any ``--leak-rate`` picks its
threshold at run time (:mod:`radstream.deid.pixels.calibration`).

The labels and the proposals hold (synthetic) PHI: the JSON written here holds counts only.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset

from radstream.deid.pixels.calibration import (
    CalibrationRecord,
    CalibrationSet,
    clopper_pearson,
    conformal_threshold,
    load_calibration,
    pipeline_fingerprint,
)
from radstream.deid.pixels.synthetic import (
    GENERATOR_VERSION,
    INSTANCES_DIR,
    InstanceLabels,
    LabelBox,
    SplitLabels,
    generate_instance,
    load_split,
    write_split,
)
from radstream.ocr.engine import Box, OcrEngine
from radstream.ocr.images import window_to_uint8

__all__ = [
    "COVERAGE_REQUIRED",
    "BoxVerdict",
    "EvalSummary",
    "InstanceVerdict",
    "calibrate",
    "evaluate_run",
    "main",
    "run_cli",
    "score_proposal",
]

COVERAGE_REQUIRED = 0.95
"""The share of a PHI box's ink that must be gone for the box to count as covered."""

KEPT_MAX_CHANGED = 0.05
"""The share of a non-PHI annotation's ink that may change while it still counts as kept."""

_CHANGE_TOLERANCE = 0.02  # of the value range: re-encoding noise is not a change
_READ_MIN_OVERLAP = 0.3  # of a PHI box's area an OCR region must cover to be "there"
_CALIBRATION_DIR = Path(__file__).parent / "pixels" / "calibration"


@dataclass(frozen=True, kw_only=True)
class BoxVerdict:
    """One ground-truth box in one proposal: how much of its ink is gone, is it read again."""

    frame: int
    is_phi: bool
    kind: str
    ink_pixels: int
    covered: float  # share of the ink hidden
    read_again: bool  # OCR of the proposal read its text (PHI boxes only)

    @property
    def hidden(self) -> bool:
        """A PHI box no one can read any more."""
        return self.covered >= COVERAGE_REQUIRED and not self.read_again

    @property
    def kept(self) -> bool:
        """A non-PHI annotation left as it was."""
        return self.covered <= KEPT_MAX_CHANGED


@dataclass(frozen=True, kw_only=True)
class InstanceVerdict:
    """One instance: where it went, and whether its proposal still shows PHI."""

    file: str
    layout: str
    phi_bearing: bool
    has_text: bool
    status: str  # "released", "held", "rejected", "missing"
    risk: float | None
    pixel_decision: str | None
    boxes: tuple[BoxVerdict, ...]

    @property
    def proposal_leaks(self) -> bool:
        """Some PHI box of the proposal (released or held candidate) is not hidden."""
        if self.status in {"rejected", "missing"}:
            return self.phi_bearing  # nothing to judge: counts against recall, never released
        return any(box.is_phi and not box.hidden for box in self.boxes)

    @property
    def released_leak(self) -> bool:
        """The event ``--leak-rate`` bounds: released with PHI readable."""
        return self.status == "released" and self.phi_bearing and self.proposal_leaks


@dataclass(frozen=True, kw_only=True)
class EvalSummary:
    """The numbers ``make eval-deid`` prints and writes (no PHI)."""

    split: str
    instances: int
    phi_bearing: int
    with_text: int
    released: int
    held: int
    rejected: int
    phi_boxes: int
    phi_boxes_hidden: int
    annotation_boxes: int
    annotation_boxes_kept: int
    released_leaks: int
    leak_rate: float
    leak_rate_ci95: tuple[float, float]
    leak_rate_bound: float | None
    review_rate_text: float
    review_rate_all: float
    proposal_leaks: int
    seconds: float
    engine: str
    by_layout: dict[str, dict[str, int]]
    calibration_current: bool | None = None  # the shipped calibration measured this pipeline

    @property
    def phi_box_recall(self) -> float:
        """PHI boxes hidden over PHI boxes."""
        return self.phi_boxes_hidden / self.phi_boxes if self.phi_boxes else 1.0

    @property
    def annotation_retention(self) -> float:
        """Non-PHI annotations kept over non-PHI annotations."""
        return self.annotation_boxes_kept / self.annotation_boxes if self.annotation_boxes else 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived rates."""
        return {
            **asdict(self),
            "phi_box_recall": self.phi_box_recall,
            "annotation_retention": self.annotation_retention,
        }

    def table(self) -> str:
        """The human-readable table."""
        low, high = self.leak_rate_ci95
        bound = f"{self.leak_rate_bound:.3f}" if self.leak_rate_bound is not None else "-"
        counts = f"{self.instances} ({self.phi_bearing} / {self.with_text})"
        outcomes = f"{self.released} / {self.held} / {self.rejected}"
        recall = f"{self.phi_box_recall:.4f} ({self.phi_boxes_hidden}/{self.phi_boxes})"
        kept = self.annotation_boxes_kept
        retention = f"{self.annotation_retention:.4f} ({kept}/{self.annotation_boxes})"
        leaks = f"{self.leak_rate:.4f} ({self.released_leaks}/{self.phi_bearing})"
        review = f"{self.review_rate_text:.4f} / {self.review_rate_all:.4f}"
        rows = [
            ("instances (PHI-bearing / with text)", counts),
            ("released / held / rejected", outcomes),
            ("PHI box recall", recall),
            ("non-PHI box retention", retention),
            ("instance leak rate (released)", f"{leaks}, 95% CI [{low:.4f}, {high:.4f}]"),
            ("configured leak-rate bound", bound),
            ("review rate (of text / of all)", review),
            ("proposals still showing PHI", f"{self.proposal_leaks} (held or released)"),
            ("engine, seconds", f"{self.engine}, {self.seconds:.1f}"),
            ("calibration measured this pipeline", _yes_no(self.calibration_current)),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _yes_no(value: bool | None) -> str:
    if value is None:
        return "unknown"
    return "yes" if value else "NO: the bound is not guaranteed; run make calibrate-deid"


# -- judging one proposal --------------------------------------------------------------------


def display_frames(dataset: Dataset) -> list[npt.NDArray[np.uint8]]:
    """Every frame as OCR reads it: uint8, RGB or grey, MONOCHROME1 inverted, full range."""
    pixels = np.asarray(dataset.pixel_array)
    frames = int(dataset.get("NumberOfFrames") or 1)
    if frames == 1:
        pixels = pixels[None]
    shown = []
    for frame in pixels:
        image = window_to_uint8(frame)
        if str(dataset.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            image = (255 - image).astype(np.uint8)
        shown.append(image)
    return shown


def _stored_frames(dataset: Dataset) -> npt.NDArray[Any]:
    pixels = np.asarray(dataset.pixel_array)
    return pixels[None] if int(dataset.get("NumberOfFrames") or 1) == 1 else pixels


def score_proposal(
    labels: InstanceLabels,
    original: npt.NDArray[Any],
    background: npt.NDArray[Any],
    proposal: Dataset,
    engine: OcrEngine | None,
) -> tuple[BoxVerdict, ...]:
    """Judge every labelled box of one instance in its proposal (released or held candidate).

    ``original`` and ``background`` are the stored frames with and without the drawn text
    (:class:`~radstream.deid.pixels.synthetic.SyntheticInstance`); their difference is each
    string's ink. ``engine`` re-reads the proposal's frames that still hold covered PHI boxes;
    None skips reading (coverage alone decides).
    """
    after = _stored_frames(proposal)
    if after.shape != original.shape:  # geometry changed: nothing can be matched, all unhidden
        return tuple(
            BoxVerdict(
                frame=b.frame,
                is_phi=b.is_phi,
                kind=b.kind,
                ink_pixels=0,
                covered=0.0,
                read_again=False,
            )
            for b in labels.boxes
        )
    tolerance = _CHANGE_TOLERANCE * (255.0 if original.dtype == np.uint8 else 4095.0)
    coverage = [_coverage(box, original, background, after, tolerance) for box in labels.boxes]
    read = [False] * len(labels.boxes)
    if engine is not None:
        frames = sorted(
            {
                box.frame
                for box, (_, covered) in zip(labels.boxes, coverage, strict=True)
                if box.is_phi and covered >= COVERAGE_REQUIRED
            }
        )
        shown = display_frames(proposal) if frames else []
        for frame in frames:
            regions = engine.recognize(shown[frame])
            for index, box in enumerate(labels.boxes):
                if box.frame == frame and box.is_phi:
                    read[index] = _read_again(box, regions)
    return tuple(
        BoxVerdict(
            frame=box.frame,
            is_phi=box.is_phi,
            kind=box.kind,
            ink_pixels=ink,
            covered=covered,
            read_again=again,
        )
        for box, (ink, covered), again in zip(labels.boxes, coverage, read, strict=True)
    )


def _coverage(
    box: LabelBox,
    original: npt.NDArray[Any],
    background: npt.NDArray[Any],
    after: npt.NDArray[Any],
    tolerance: float,
) -> tuple[int, float]:
    """(ink pixels, share of them hidden): changed, or filled flat (even in the ink's value).

    A PHI box with identifying words (:attr:`LabelBox.spans`) is as covered as its *least*
    covered word: a middle initial, a "Dr" or "Medical Center" may stay, a day and month may not.
    """
    window = (box.frame, slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
    before = original[window].astype(np.float64)
    clean = background[window].astype(np.float64)
    now = after[window].astype(np.float64)
    if before.ndim == 3:  # colour: a pixel differs when any channel does
        ink = np.any(before != clean, axis=-1)
        changed = np.any(np.abs(now - before) > tolerance, axis=-1)
    else:
        ink = before != clean
        changed = np.abs(now - before) > tolerance
    count = int(ink.sum())
    if count == 0:  # nothing drawn survived rounding: nothing to hide, nothing to keep
        return 0, 1.0 if box.is_phi else 0.0
    spans = [(left - box.x, right - box.x) for left, right in box.spans] or [(0, box.width)]
    shares = []
    for left, right in spans:
        inked = ink[:, left:right]
        if not inked.any():
            continue
        region = now[:, left:right]
        if float(region.max() - region.min()) <= tolerance:  # one flat fill over the word
            shares.append(1.0)
        else:
            shares.append(float((changed[:, left:right] & inked).sum()) / int(inked.sum()))
    return count, min(shares, default=1.0)


def _squash(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def _read_again(box: LabelBox, regions: Sequence[Any]) -> bool:
    """Whether OCR still reads (most of) this PHI box's text where the box is."""
    target = _squash(box.key_text)
    if not target:
        return False
    here = Box(box.x, box.y, box.width, box.height)
    for region in regions:
        if region.box.intersection(here) < _READ_MIN_OVERLAP * min(here.area, region.box.area):
            continue
        seen = _squash(region.text)
        if not seen:
            continue
        matcher = difflib.SequenceMatcher(None, target, seen, autojunk=False)
        longest = matcher.find_longest_match(0, len(target), 0, len(seen)).size
        needed = min(len(target), max(4, math.ceil(0.6 * len(target))))
        if longest >= needed:
            return True
    return False


# -- running the CLI and reading what it wrote ---------------------------------------------


def run_cli(
    split_dir: Path, out_dir: Path, *, engine: str, leak_rate: float, extra: Sequence[str] = ()
) -> float:
    """Run ``radstream deid SPLIT/dicom OUT`` as a user would; return its wall time in seconds."""
    command = [
        sys.executable,
        "-m",
        "radstream.cli.main",
        "deid",
        str(split_dir / INSTANCES_DIR),
        str(out_dir),
        "--ocr-engine",
        engine,
        "--leak-rate",
        str(leak_rate),
        "--ephemeral-key",  # synthetic patients: no pseudonym needs to match another run
        *extra,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 -- our own CLI
    return time.perf_counter() - started


@dataclass(frozen=True, kw_only=True)
class _Output:
    status: str
    path: Path | None
    risk: float | None
    decision: str | None
    threshold_reason: bool  # held because the risk was over the threshold (not another reason)


def _outputs(out_dir: Path) -> dict[str, _Output]:
    """Per input (relative path): what the run made of it, from ``audit.jsonl``."""
    found: dict[str, _Output] = {}
    for line in (out_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        audit = row.get("audit") or {}
        output = row.get("output")
        status = str(audit.get("outcome") or ("rejected" if output is None else "released"))
        pixels = audit.get("pixels") or {}
        risk = pixels.get("risk")
        reasons = [str(reason) for reason in (pixels.get("reasons") or audit.get("reasons") or [])]
        found[row["input"]] = _Output(
            status=status,
            path=out_dir / output if output else None,
            risk=float(risk) if risk is not None else None,
            decision=pixels.get("decision"),
            threshold_reason=any("risk" in reason for reason in reasons),
        )
    return found


def judge_run(
    split_dir: Path, out_dir: Path, engine: OcrEngine | None
) -> tuple[SplitLabels, list[InstanceVerdict]]:
    """Score every instance of a run of the CLI on a split against its labels."""
    split = load_split(split_dir)
    outputs = _outputs(out_dir)
    verdicts = []
    for labels in split.instances:
        output = outputs.get(labels.file)
        status = output.status if output is not None else "missing"
        boxes: tuple[BoxVerdict, ...] = ()
        if output is not None and output.path is not None and output.path.is_file():
            synthetic = generate_instance(labels.seed, file=labels.file)
            proposal = dcmread(output.path)
            boxes = score_proposal(labels, synthetic.pixels, synthetic.background, proposal, engine)
        verdicts.append(
            InstanceVerdict(
                file=labels.file,
                layout=labels.layout,
                phi_bearing=labels.phi_bearing,
                has_text=labels.has_text,
                status=status,
                risk=output.risk if output is not None else None,
                pixel_decision=output.decision if output is not None else None,
                boxes=boxes,
            )
        )
    return split, verdicts


def summarize(
    split: SplitLabels,
    verdicts: Sequence[InstanceVerdict],
    *,
    engine: str,
    seconds: float,
    leak_rate_bound: float | None,
) -> EvalSummary:
    """The counts and rates of one evaluated run."""
    phi_bearing = [v for v in verdicts if v.phi_bearing]
    with_text = [v for v in verdicts if v.has_text]
    leaks = sum(v.released_leak for v in verdicts)
    phi_boxes = [b for v in verdicts for b in v.boxes if b.is_phi]
    annotations = [b for v in verdicts for b in v.boxes if not b.is_phi and b.kind != "context"]
    missing_phi = sum(
        sum(1 for box in labels.boxes if box.is_phi)
        for labels, verdict in zip(split.instances, verdicts, strict=True)
        if not verdict.boxes
    )
    by_layout: dict[str, dict[str, int]] = {}
    for verdict in verdicts:
        row = by_layout.setdefault(
            verdict.layout, {"instances": 0, "held": 0, "released_leaks": 0, "proposal_leaks": 0}
        )
        row["instances"] += 1
        row["held"] += verdict.status == "held"
        row["released_leaks"] += verdict.released_leak
        row["proposal_leaks"] += verdict.phi_bearing and verdict.proposal_leaks
    held = sum(v.status == "held" for v in verdicts)
    return EvalSummary(
        split=split.split,
        instances=len(verdicts),
        phi_bearing=len(phi_bearing),
        with_text=len(with_text),
        released=sum(v.status == "released" for v in verdicts),
        held=held,
        rejected=sum(v.status in {"rejected", "missing"} for v in verdicts),
        phi_boxes=len(phi_boxes) + missing_phi,
        phi_boxes_hidden=sum(b.hidden for b in phi_boxes),
        annotation_boxes=len(annotations),
        annotation_boxes_kept=sum(b.kept for b in annotations),
        released_leaks=leaks,
        leak_rate=leaks / len(phi_bearing) if phi_bearing else 0.0,
        leak_rate_ci95=clopper_pearson(leaks, len(phi_bearing)),
        leak_rate_bound=leak_rate_bound,
        review_rate_text=(
            sum(v.status == "held" for v in with_text) / len(with_text) if with_text else 0.0
        ),
        review_rate_all=held / len(verdicts) if verdicts else 0.0,
        proposal_leaks=sum(v.phi_bearing and v.proposal_leaks for v in verdicts),
        seconds=seconds,
        engine=engine,
        by_layout=by_layout,
    )


CALIBRATION_COUNT = 800
"""Instances of the calibration split by default: 585 of 800 carry PHI, enough for conformal
risk control to allow the 1% leak rate's four leaks at or under the threshold (400 allowed one)."""


def ensure_split(directory: Path, split: str, count: int) -> SplitLabels:
    """The split in ``directory``, generated unless an identical one is already there."""
    try:
        existing = load_split(directory)
        if (existing.split, existing.count, existing.generator_version) == (
            split,
            count,
            GENERATOR_VERSION,
        ) and all((directory / INSTANCES_DIR / item.file).is_file() for item in existing.instances):
            return existing
    except (FileNotFoundError, KeyError, ValueError):
        pass
    if (directory / INSTANCES_DIR).exists():
        shutil.rmtree(directory / INSTANCES_DIR)
    return write_split(directory, split, count)


def evaluate_run(
    split_dir: Path,
    out_dir: Path,
    *,
    engine_name: str,
    leak_rate: float,
    reread: bool = True,
    seconds: float = 0.0,
) -> tuple[EvalSummary, list[InstanceVerdict]]:
    """Score an existing CLI run on a split (the OCR engine re-reads proposals unless told not)."""
    from radstream.ocr.engines import load_engine  # noqa: PLC0415 -- loads ONNX models

    engine = load_engine(engine_name) if reread else None
    split, verdicts = judge_run(split_dir, out_dir, engine)
    summary = summarize(
        split, verdicts, engine=engine_name, seconds=seconds, leak_rate_bound=leak_rate
    )
    shipped = load_calibration(engine_name)
    current = shipped is not None and shipped.source.get("pipeline") == pipeline_fingerprint()
    return dataclasses.replace(summary, calibration_current=current), verdicts


def calibrate(
    split_dir: Path,
    out_dir: Path,
    *,
    engine_name: str,
    target: Path | None = None,
    fingerprint: str = "",
) -> CalibrationSet:
    """Risk and leak of every calibration instance, from one CLI run; written to ``target``.

    An instance held for a reason other than its risk (verification failed, pixels that
    could not be read) is never released whatever the threshold: it enters with risk 1.
    """
    from radstream.ocr.engines import load_engine  # noqa: PLC0415 -- loads ONNX models

    split, verdicts = judge_run(split_dir, out_dir, load_engine(engine_name))
    outputs = _outputs(out_dir)
    records = []
    for verdict in verdicts:
        output = outputs.get(verdict.file)
        risk = 1.0
        if (
            output is not None
            and output.risk is not None
            and verdict.status in {"released", "held"}
        ):
            risk = output.risk
            if verdict.status == "held" and not output.threshold_reason:
                risk = 1.0
        records.append(
            CalibrationRecord(
                risk=risk,
                leak=verdict.phi_bearing and verdict.proposal_leaks,
                phi_bearing=verdict.phi_bearing,
                text_found=verdict.pixel_decision not in {None, "no_text", "no_pixels"},
            )
        )
    calibration = CalibrationSet(
        engine=engine_name,
        records=tuple(records),
        source={
            "split": split.split,
            "first_seed": split.first_seed,
            "count": split.count,
            "generator_version": split.generator_version,
            "pipeline": fingerprint,
        },
    )
    if target is not None:
        target.write_text(json.dumps(calibration.to_dict(), indent=None) + "\n", encoding="utf-8")
    return calibration


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)


def _fresh(directory: Path) -> Path:
    """``directory``, emptied of an earlier run (the CLI wants a new or empty one)."""
    if directory.exists():
        shutil.rmtree(directory)
    return directory


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m radstream.deid.eval_pixels [--calibrate]``: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m radstream.deid.eval_pixels")
    parser.add_argument("--work-dir", type=Path, default=Path(".build/eval-deid"))
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--engine", default="rapidocr")
    parser.add_argument("--leak-rate", type=float, default=0.01)
    parser.add_argument("--calibrate", action="store_true", help="recompute the calibration JSON")
    parser.add_argument("--json", type=Path, default=None, help="where to write the summary")
    arguments = parser.parse_args(argv)
    split = "calibration" if arguments.calibrate else "held-out"
    count = arguments.count or (CALIBRATION_COUNT if arguments.calibrate else 200)
    split_dir = arguments.work_dir / split
    out_dir = _fresh(arguments.work_dir / f"{split}-out")
    ensure_split(split_dir, split, count)
    fingerprint = pipeline_fingerprint()
    seconds = run_cli(split_dir, out_dir, engine=arguments.engine, leak_rate=arguments.leak_rate)
    if pipeline_fingerprint() != fingerprint:
        print("the pixel pipeline's source changed during the run: its numbers mix two versions")
        return 1
    if arguments.calibrate:
        target = _CALIBRATION_DIR / f"{arguments.engine}.json"
        calibration = calibrate(
            split_dir, out_dir, engine_name=arguments.engine, target=target, fingerprint=fingerprint
        )
        for alpha in (0.01, 0.02, 0.05, 0.1):
            threshold = conformal_threshold(calibration, alpha)
            print(
                f"leak rate {alpha:.2f}: threshold {threshold.value:.4f} ({threshold.method}, "
                f"n={threshold.n_calibration}), review rate "
                f"{calibration.review_rate(threshold):.3f} of text-bearing instances"
            )
        print(f"calibration of {len(calibration.records)} instances -> {target}")
        return 0
    summary, _ = evaluate_run(
        split_dir,
        out_dir,
        engine_name=arguments.engine,
        leak_rate=arguments.leak_rate,
        seconds=seconds,
    )
    print(summary.table())
    target = arguments.json or arguments.work_dir / "eval-deid.json"
    _write_private(target, json.dumps(summary.to_dict(), indent=2) + "\n")
    print(f"-> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
