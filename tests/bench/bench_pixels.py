"""Benchmark: pixel de-identification -- OCR engines, the text check, a mixed study, and
presidio-image-redactor side by side with radstream's pixel stage.

Run with ``make bench`` (``python -m tests.bench.bench_pixels``); ``--quick`` for a small run,
``--json PATH`` for the results file (default ``.build/bench/pixels.json``). A benchmark, not a
test: nothing asserts. Everything runs in one process on 2 CPU cores (the process is pinned to
the first two CPUs it may use, OMP_NUM_THREADS=2; subprocesses inherit both); wall times.

Images (:mod:`tests.bench.pixel_inputs`): the two real ultrasound files of ``deid-data`` with
their hand-labelled boxes, and synthetic instances of the labelled generator (US, CR, SC, CT in
turn, each with PHI drawn), seeds of the ``test`` split. Scoring (:mod:`tests.bench.pixel_scoring`)
is eval_pixels' own: PHI box hidden = >=95% of its ink gone and not read again by OCR (the judge
engine re-reads; the real files' labels carry no text, so ink alone decides there); annotation
kept = <=5% of its ink changed.

1. **Engines** -- ``recognize()`` per image, full resolution and as the stage reads
   (``read_lines`` at ``PixelSettings.recognize_sides``; the same single call for images no
   larger than the smallest side, then not repeated), and each engine's PHI-box recall: boxes
   *found* (covered by its lines grown by the fill padding) and *read* (its text read there).
   ``kserve`` is PP-OCR on a real MLServer from ``.venv-mlserver`` (the integration tests'
   fixture). An engine whose first round takes longer than ``--slow-engine-s`` is not repeated.
2. **Text check per CT slice** -- the stage's own ``decode_frames`` + ``triage`` on 512x512
   16-bit slices without text and with the patient's name burned in, next to the metadata
   pipeline (``deidentify_instance`` with the header-only policy, no pixel stage) on the same
   text-free slices.
3. **Mixed study** -- 300 text-free CT slices + 20 synthetic US instances (not a cine) through
   the full ``deidentify_instance`` with the pixel stage (default engine, calibrated threshold
   as shipped), and without it.
4. **presidio-image-redactor** (``.venv-peers``, :mod:`tests.bench.pixel_peer_presidio`, header
   metadata used) on the same labelled images and the same study. Its study time is measured on
   every US instance and ``--peer-ct-sample`` evenly spaced CT slices, the CT part scaled to
   the series (``--peer-ct-sample 0`` runs every slice).

Rounds: each part's tools run once per round, their order rotating; medians are reported. The
issue's targets are printed MET or MISSED with the measured figures, never tuned to pass.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import dcmread

from radstream.common.errors import MisconfiguredError, MissingExtraError
from radstream.deid.burned_in import HOLD_UNCHECKABLE_CONTENT, PixelPolicy, text_prone_reason
from radstream.deid.clean import PresidioTextCleaner, build_text_cleaner
from radstream.deid.config import DeidSettings
from radstream.deid.eval_pixels import EvalSummary, InstanceVerdict, display_frames
from radstream.deid.pipeline import InstanceOutcome, InstanceStatus, deidentify_instance
from radstream.deid.pixels.frames import decode_frames
from radstream.deid.pixels.reading import read_lines
from radstream.deid.pixels.stage import PixelStage
from radstream.deid.pixels.triage import Triage, triage
from radstream.deid.profile import DeidKeys, DeidProfile
from radstream.ocr.engine import OcrEngine, TextRegion
from radstream.ocr.engines import DEFAULT_ENGINE, ENGINE_NAMES, load_engine
from tests.bench.markdown_table import markdown_table
from tests.bench.pixel_inputs import LabelledImage, StudyInputs, build_inputs
from tests.bench.pixel_scoring import EngineRecall, engine_recall, judge, peer_proposal, summary
from tests.bench.report import save_report
from tests.unit.deid.study_builder import TEST_KEYS_SECRET

DEFAULT_JSON = Path(".build/bench/pixels.json")
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PEER_PYTHON = REPOSITORY_ROOT / ".venv-peers" / "bin" / "python"
PEER_SCRIPT = Path(__file__).with_name("pixel_peer_presidio.py")
RADSTREAM, METADATA, PRESIDIO = "radstream", "radstream-metadata", "presidio-image-redactor"
REVIEW_RATE_TARGET = 0.10


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Size of a run (the defaults take about 8 minutes on 2 shared cores)."""

    synthetic: int = 4
    ct_slices: int = 300
    ct_named: int = 10
    us_instances: int = 20
    rounds: int = 2
    engines: tuple[str, ...] = ENGINE_NAMES
    stage_engine: str = DEFAULT_ENGINE
    judge_engine: str = DEFAULT_ENGINE
    peer_ct_sample: int = 20
    slow_engine_s: float = 60.0
    cores: int = 2
    leak_rate: float = 0.01


FULL = BenchConfig()
QUICK = BenchConfig(
    ct_slices=40,
    ct_named=3,
    us_instances=4,
    rounds=1,
    engines=("rapidocr", "tesseract"),
    peer_ct_sample=5,
)


# -- small helpers -------------------------------------------------------------------------


def rotated(items: Sequence[str], number: int) -> list[str]:
    """``items`` starting at ``number`` (mod their count): each round a different tool first."""
    if not items:
        return []
    shift = number % len(items)
    return [*items[shift:], *items[:shift]]


def median_or_none(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def ratio_text(numerator: float | None, denominator: float | None) -> str:
    """``x1.23``, or ``-`` when either side is missing or the denominator is zero."""
    if numerator is None or not denominator:
        return "-"
    return f"x{numerator / denominator:.2f}"


def number_text(value: float | None, digits: int = 0) -> str:
    """A figure, or ``-`` when it was not measured."""
    return "-" if value is None else f"{value:.{digits}f}"


def verdict_text(ok: bool) -> str:
    """How a target is printed."""
    return "MET" if ok else "MISSED"


def pin_cores(cores: int) -> list[int]:
    """Pin this process (and its future children) to its first ``cores`` CPUs; returns them."""
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, allowed)
    os.environ["OMP_NUM_THREADS"] = str(len(allowed))
    return allowed


# -- part 1: engines -----------------------------------------------------------------------


@dataclass(kw_only=True)
class EngineRun:
    """One engine over the labelled images: times per image and round, its last reading."""

    name: str
    info: str = ""
    error: str = ""
    full_ms: dict[str, list[float]] = field(default_factory=dict)
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    full_lines: dict[str, list[TextRegion]] = field(default_factory=dict)
    stage_lines: dict[str, list[TextRegion]] = field(default_factory=dict)
    rounds: int = 0


def stage_reads_once_at_full(shape: tuple[int, ...], sides: Sequence[int]) -> bool:
    """Whether ``read_lines`` makes exactly one full-resolution ``recognize`` on this image."""
    longer = max(shape[0], shape[1])
    return {0 if side <= 0 or side >= longer else side for side in sides} <= {0}


def _timed(
    read: Callable[..., list[TextRegion]], *args: Any, **kwargs: Any
) -> tuple[float, list[TextRegion]]:
    started = time.perf_counter()
    lines = read(*args, **kwargs)
    return 1000 * (time.perf_counter() - started), lines


def engine_round(
    run: EngineRun,
    engine: OcrEngine,
    displays: dict[str, npt.NDArray[np.uint8]],
    sides: Sequence[int],
) -> float:
    """One round of ``engine`` over every image; returns its wall seconds."""
    started = time.perf_counter()
    for name, image in displays.items():
        ms, lines = _timed(engine.recognize, image)
        run.full_ms.setdefault(name, []).append(ms)
        run.full_lines[name] = lines
        if stage_reads_once_at_full(image.shape, sides):
            run.stage_ms.setdefault(name, []).append(ms)
            run.stage_lines[name] = lines
        else:
            ms, lines = _timed(read_lines, engine, image, sides)
            run.stage_ms.setdefault(name, []).append(ms)
            run.stage_lines[name] = lines
    run.rounds += 1
    return time.perf_counter() - started


@contextlib.contextmanager
def loaded_engines(names: Sequence[str], work: Path) -> Iterator[dict[str, OcrEngine | str]]:
    """Each engine by name, or why it could not be loaded; MLServer runs for ``kserve``."""
    engines: dict[str, OcrEngine | str] = {}
    with contextlib.ExitStack() as stack:
        for name in names:
            try:
                if name == "kserve":
                    from tests.integration.ocr.mlserver import running_mlserver

                    folder = work / "mlserver"
                    folder.mkdir(parents=True, exist_ok=True)
                    server = stack.enter_context(running_mlserver(folder))
                    engines[name] = load_engine(name, url=server.grpc_url)
                else:
                    engines[name] = load_engine(name)
            except (MissingExtraError, MisconfiguredError, OSError) as error:
                engines[name] = f"not loaded: {type(error).__name__}: {error}"
            except pytest.fail.Exception as error:  # the MLServer fixture's way of failing
                engines[name] = f"not loaded: {error}".splitlines()[0]
        yield engines


def run_engines(
    config: BenchConfig, images: Sequence[LabelledImage], sides: Sequence[int], work: Path
) -> list[EngineRun]:
    """Part 1: every engine on every image, rounds with rotating order."""
    displays = {image.name: display_frames(image.dataset)[0] for image in images}
    runs = {name: EngineRun(name=name) for name in config.engines}
    with loaded_engines(config.engines, work) as engines:
        ready = {name: e for name, e in engines.items() if not isinstance(e, str)}
        for name, engine in engines.items():
            if isinstance(engine, str):
                runs[name].error = engine
                print(f"  engine {name}: {engine}", flush=True)
            else:
                runs[name].info = f"{engine.info.version} {engine.info.models}"
                warm = displays[images[-1].name]
                engine.recognize(warm)  # first-call costs (sessions, allocators): not timed
        slow: set[str] = set()
        for number in range(config.rounds):
            for name in rotated(list(ready), number):
                if name in slow:
                    continue
                seconds = engine_round(runs[name], ready[name], displays, sides)
                if number == 0 and seconds > config.slow_engine_s:
                    slow.add(name)
                print(
                    f"  engines round {number + 1}/{config.rounds} {name:<10} {seconds:6.1f} s",
                    flush=True,
                )
    return list(runs.values())


def engine_rows(
    runs: Sequence[EngineRun],
    images: Sequence[LabelledImage],
    *,
    padding: int,
    baseline: str,
) -> list[dict[str, Any]]:
    """Per engine: median ms per image (real, synthetic, all; full and stage) and recall."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {"engine": run.name, "info": run.info, "error": run.error}
        row["rounds"] = run.rounds
        for column, times in (("full", run.full_ms), ("stage", run.stage_ms)):
            for source in ("real", "synthetic", "all"):
                chosen = [i for i in images if source in {"all", i.source}]
                per_image = [median_or_none(times.get(i.name, [])) for i in chosen]
                measured = [v for v in per_image if v is not None]
                row[f"{column}_ms_{source}"] = (
                    statistics.mean(measured) if measured and len(measured) == len(chosen) else None
                )
        for column, lines in (("full", run.full_lines), ("stage", run.stage_lines)):
            recall = {"real": EngineRecall(), "synthetic": EngineRecall()}
            for image in images:
                if image.name not in lines:
                    continue
                height, width = image.original.shape[1:3]
                recall[image.source] += engine_recall(
                    image.labels, lines[image.name], width=width, height=height, padding=padding
                )
            row[f"{column}_recall"] = {k: asdict(v) for k, v in recall.items()}
        rows.append(row)
    base = next((r for r in rows if r["engine"] == baseline), None)
    for row in rows:
        row["full_ratio_to_baseline"] = (
            row["full_ms_all"] / base["full_ms_all"]
            if base and row["full_ms_all"] and base["full_ms_all"]
            else None
        )
    return rows


def _recall_cell(recall: dict[str, dict[str, int]]) -> tuple[str, str]:
    real, synthetic = EngineRecall(**recall["real"]), EngineRecall(**recall["synthetic"])
    both = real + synthetic
    found = f"{both.found}/{both.phi_boxes} (real {real.found}/{real.phi_boxes})"
    read = f"{synthetic.read}/{synthetic.readable}"
    return found, read


def engine_table(rows: Sequence[dict[str, Any]], baseline: str) -> str:
    """Part 1 as a Markdown table: full-resolution figures, then the stage's way of reading."""
    table_rows = []
    for row in rows:
        if row["error"]:
            table_rows.append([row["engine"], *["-"] * 6, row["error"][:60]])
            continue
        found, read = _recall_cell(row["full_recall"])
        stage = EngineRecall(**row["stage_recall"]["real"]) + EngineRecall(
            **row["stage_recall"]["synthetic"]
        )
        table_rows.append(
            [
                row["engine"],
                number_text(row["full_ms_real"]),
                number_text(row["full_ms_synthetic"]),
                ratio_text(row["full_ms_all"], baseline_ms(rows, baseline)),
                found,
                read,
                f"{number_text(row['stage_ms_all'])} ({stage.found}/{stage.phi_boxes})",
                str(row["rounds"]),
            ]
        )
    return markdown_table(
        [
            "engine",
            "ms/img real",
            "ms/img synth",
            f"/{baseline}",
            "PHI found",
            "PHI read (synth)",
            "as stage reads: ms/img (found)",
            "rounds",
        ],
        table_rows,
    )


def baseline_ms(rows: Sequence[dict[str, Any]], engine: str) -> float | None:
    """The baseline engine's mean full-resolution ms per image."""
    return next((r["full_ms_all"] for r in rows if r["engine"] == engine), None)


# -- part 2: the text check ----------------------------------------------------------------


def metadata_pipeline(
    data: Sequence[bytes], cleaner: PresidioTextCleaner, policy: PixelPolicy
) -> list[InstanceOutcome]:
    """``deidentify_instance`` over ``data`` with ``policy`` (the pixel stage or header-only)."""
    profile, keys = DeidProfile(), DeidKeys.from_secret(TEST_KEYS_SECRET)
    return [
        deidentify_instance(
            item, profile=profile, keys=keys, clean_text=cleaner, pixel_policy=policy
        )
        for item in data
    ]


def text_check(data: Sequence[bytes], stage: PixelStage) -> tuple[float, list[Triage]]:
    """The stage's decode + triage per slice; (mean ms per slice, the triages).

    Each file is read before the clock starts (the pipeline has read it by then), afresh each
    round so no decoded pixels are cached from the last one.
    """
    datasets = [dcmread(io.BytesIO(item)) for item in data]
    checks = []
    started = time.perf_counter()
    for ds in datasets:
        decoded = decode_frames(ds)
        checks.append(
            triage(
                decoded,
                stage.engine,
                text_prone=text_prone_reason(ds) is not None,
                settings=stage.settings.triage,
            )
        )
    return 1000 * (time.perf_counter() - started) / len(datasets), checks


def run_text_check(
    config: BenchConfig, study: StudyInputs, stage: PixelStage, cleaner: PresidioTextCleaner
) -> dict[str, Any]:
    """Part 2: text check on text-free and named CT slices next to the metadata pipeline."""
    times: dict[str, list[float]] = {"metadata": [], "check_plain": [], "check_named": []}
    decisions: dict[str, Counter[str]] = {"check_plain": Counter(), "check_named": Counter()}
    detector_runs: dict[str, int] = {}
    for number in range(config.rounds + 1):  # cheap: one more round than the slow parts
        for part in rotated(list(times), number):
            if part == "metadata":
                started = time.perf_counter()
                metadata_pipeline(study.ct_series, cleaner, HOLD_UNCHECKABLE_CONTENT)
                ms = 1000 * (time.perf_counter() - started) / len(study.ct_series)
            else:
                data = study.ct_series if part == "check_plain" else study.ct_named
                ms, checks = text_check(data, stage)
                decisions[part] = Counter(check.decision for check in checks)
                detector_runs[part] = sum(check.detector_runs for check in checks)
            times[part].append(ms)
        print(
            f"  text check round {number + 1}/{config.rounds + 1}: "
            + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in times.items()),
            flush=True,
        )
    medians = {part: statistics.median(values) for part, values in times.items()}
    return {
        "ms": medians,
        "rounds_ms": times,
        "decisions": {k: dict(v) for k, v in decisions.items()},
        "detector_runs": detector_runs,
        "slices": {"plain": len(study.ct_series), "named": len(study.ct_named)},
    }


def text_check_table(result: dict[str, Any], study_result: dict[str, Any]) -> str:
    """Part 2 as a Markdown table."""
    ms = result["ms"]
    base = ms["metadata"]
    plain, named = result["decisions"]["check_plain"], result["decisions"]["check_named"]
    with_stage = study_result.get("radstream_ct_ms")
    metadata_ct = study_result.get("metadata_ct_ms")
    rows = [
        ["metadata pipeline (no pixel stage)", f"{base:.2f}", "x1.00", "-"],
        [
            "text check, CT without text",
            f"{ms['check_plain']:.2f}",
            ratio_text(ms["check_plain"], base),
            _decisions(plain),
        ],
        [
            "text check, CT with a name",
            f"{ms['check_named']:.2f}",
            ratio_text(ms["check_named"], base),
            _decisions(named),
        ],
        [
            "pipeline + pixel stage, CT without text (part 3)",
            number_text(with_stage, 2),
            ratio_text(with_stage, metadata_ct),
            "ratio to the metadata pipeline in the same rounds",
        ],
    ]
    return markdown_table(["per CT slice", "ms", "/metadata", "decisions"], rows)


def _decisions(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.removeprefix('text_check_')} {v}" for k, v in sorted(counts.items()))


# -- parts 3 and 4: the study, and presidio-image-redactor ----------------------------------


@dataclass(kw_only=True)
class RadstreamRun:
    """radstream's pixel stage over the labelled images and the study."""

    image_s: dict[str, list[float]] = field(default_factory=dict)
    study_s: list[float] = field(default_factory=list)
    ct_ms: list[float] = field(default_factory=list)
    us_ms: list[float] = field(default_factory=list)
    image_outcomes: dict[str, InstanceOutcome] = field(default_factory=dict)
    study_outcomes: list[InstanceOutcome] = field(default_factory=list)


@dataclass(kw_only=True)
class PeerRun:
    """presidio-image-redactor over the labelled images and the study sample."""

    image_s: dict[str, list[float]] = field(default_factory=dict)
    study_s: list[float] = field(default_factory=list)
    ct_s: list[float] = field(default_factory=list)  # mean seconds per CT slice, per round
    us_s: list[float] = field(default_factory=list)  # mean seconds per US instance, per round
    frames: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    error: str = ""


def radstream_round(
    run: RadstreamRun,
    images: Sequence[LabelledImage],
    study: StudyInputs,
    stage: PixelStage,
    cleaner: PresidioTextCleaner,
) -> None:
    """One round of radstream's full pipeline with the pixel stage."""
    for image in images:
        started = time.perf_counter()
        (outcome,) = metadata_pipeline([image.data], cleaner, stage)
        run.image_s.setdefault(image.name, []).append(time.perf_counter() - started)
        run.image_outcomes[image.name] = outcome
    started = time.perf_counter()
    ct = metadata_pipeline(study.ct_series, cleaner, stage)
    middle = time.perf_counter()
    us = metadata_pipeline(study.us, cleaner, stage)
    ended = time.perf_counter()
    run.study_s.append(ended - started)
    run.ct_ms.append(1000 * (middle - started) / len(study.ct_series))
    run.us_ms.append(1000 * (ended - middle) / max(1, len(study.us)))
    run.study_outcomes = [*ct, *us]


def metadata_round(
    times: dict[str, list[float]], study: StudyInputs, cleaner: PresidioTextCleaner
) -> None:
    """One round of the study through the pipeline without the pixel stage."""
    started = time.perf_counter()
    metadata_pipeline(study.ct_series, cleaner, HOLD_UNCHECKABLE_CONTENT)
    middle = time.perf_counter()
    metadata_pipeline(study.us, cleaner, HOLD_UNCHECKABLE_CONTENT)
    ended = time.perf_counter()
    times.setdefault("study_s", []).append(ended - started)
    times.setdefault("ct_ms", []).append(1000 * (middle - started) / len(study.ct_series))


def peer_sample(count: int, sample: int) -> list[int]:
    """``sample`` evenly spaced indexes of ``count`` slices (all of them for 0 or more)."""
    if sample <= 0 or sample >= count:
        return list(range(count))
    return (
        sorted({round(i * (count - 1) / (sample - 1)) for i in range(sample)})
        if sample > 1
        else [0]
    )


@dataclass(frozen=True, kw_only=True)
class PeerFiles:
    """The files handed to the peer, in order: a warm-up, the images, CT sample, US."""

    paths: tuple[Path, ...]
    image_names: tuple[str, ...]
    ct_indexes: tuple[int, ...]
    us_count: int


def write_peer_files(
    images: Sequence[LabelledImage], study: StudyInputs, folder: Path, sample: int
) -> PeerFiles:
    """Write what the peer reads (it takes paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    warm = folder / "warm-up.dcm"
    warm.write_bytes(study.us[0] if study.us else images[-1].data)
    paths.append(warm)
    for index, image in enumerate(images):
        path = folder / f"image-{index:02d}.dcm"
        path.write_bytes(image.data)
        paths.append(path)
    indexes = peer_sample(len(study.ct_series), sample)
    for index in indexes:
        path = folder / f"ct-{index:04d}.dcm"
        path.write_bytes(study.ct_series[index])
        paths.append(path)
    for index, data in enumerate(study.us):
        path = folder / f"us-{index:02d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return PeerFiles(
        paths=tuple(paths),
        image_names=tuple(image.name for image in images),
        ct_indexes=tuple(indexes),
        us_count=len(study.us),
    )


def peer_round(run: PeerRun, files: PeerFiles, out_dir: Path, ct_slices: int) -> None:
    """One run of the peer over every file; per-file seconds from its own clock."""
    command = [str(PEER_PYTHON), str(PEER_SCRIPT), str(out_dir), *map(str, files.paths)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPOSITORY_ROOT)
    if done.returncode != 0:
        run.error = f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"
        return
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    seconds = {int(row["index"]): float(row["seconds"]) for row in rows}
    boxes = {int(row["index"]): len(row["boxes"]) for row in rows}
    offset = 1
    for number, name in enumerate(files.image_names):
        run.image_s.setdefault(name, []).append(seconds[offset + number])
        run.boxes[name] = boxes[offset + number]
        run.frames[name] = np.load(out_dir / f"{offset + number}.npy")
    offset += len(files.image_names)
    ct = [seconds[offset + i] for i in range(len(files.ct_indexes))]
    offset += len(files.ct_indexes)
    us = [seconds[offset + i] for i in range(files.us_count)]
    run.ct_s.append(statistics.mean(ct))
    run.us_s.append(statistics.mean(us) if us else 0.0)
    run.study_s.append(statistics.mean(ct) * ct_slices + sum(us))


def run_study(
    config: BenchConfig,
    images: Sequence[LabelledImage],
    study: StudyInputs,
    stage: PixelStage,
    cleaner: PresidioTextCleaner,
    work: Path,
) -> tuple[RadstreamRun, dict[str, list[float]], PeerRun, PeerFiles]:
    """Parts 3 and 4: the three tools, rounds with rotating order."""
    radstream, peer = RadstreamRun(), PeerRun()
    metadata: dict[str, list[float]] = {}
    files = write_peer_files(images, study, work / "peer-in", config.peer_ct_sample)
    metadata_pipeline([images[-1].data], cleaner, stage)  # warm-up: not timed
    for number in range(config.rounds):
        for tool in rotated([RADSTREAM, METADATA, PRESIDIO], number):
            started = time.perf_counter()
            if tool == RADSTREAM:
                radstream_round(radstream, images, study, stage, cleaner)
            elif tool == METADATA:
                metadata_round(metadata, study, cleaner)
            elif not peer.error:
                peer_round(peer, files, work / f"peer-out-{number}", config.ct_slices)
            print(
                f"  study round {number + 1}/{config.rounds} {tool:<24}"
                f"{time.perf_counter() - started:7.1f} s"
                + (f"  {peer.error}" if tool == PRESIDIO and peer.error else ""),
                flush=True,
            )
    return radstream, metadata, peer, files


def _proposal_of(outcome: InstanceOutcome) -> tuple[str, Any]:
    data = outcome.output if outcome.output is not None else outcome.candidate
    proposal = dcmread(io.BytesIO(data)) if data is not None else None
    status = outcome.status.value if proposal is not None else "missing"
    return status, proposal


def judge_tools(
    images: Sequence[LabelledImage],
    radstream: RadstreamRun,
    peer: PeerRun,
    judge_engine: OcrEngine,
) -> dict[str, dict[str, EvalSummary]]:
    """Both tools' last outputs judged per source ("real", "synthetic")."""
    verdicts: dict[str, list[InstanceVerdict]] = {RADSTREAM: [], PRESIDIO: []}
    for image in images:
        outcome = radstream.image_outcomes[image.name]
        status, proposal = _proposal_of(outcome)
        report = outcome.pixel_report
        verdicts[RADSTREAM].append(
            judge(
                image,
                status=status,
                proposal=proposal,
                judge_engine=judge_engine,
                risk=report.risk if report else None,
                decision=report.decision.value if report else None,
            )
        )
        frame = peer.frames.get(image.name)
        peer_ds = peer_proposal(image, frame) if frame is not None else None
        verdicts[PRESIDIO].append(
            judge(
                image,
                status="released" if peer_ds is not None else "missing",
                proposal=peer_ds,
                judge_engine=judge_engine,
            )
        )
    result: dict[str, dict[str, EvalSummary]] = {}
    for tool, tool_verdicts in verdicts.items():
        result[tool] = {}
        for source in ("real", "synthetic"):
            chosen = [
                (i, v) for i, v in zip(images, tool_verdicts, strict=True) if i.source == source
            ]
            if chosen:
                result[tool][source] = summary(
                    [i for i, _ in chosen], [v for _, v in chosen], tool=tool
                )
    return result


def held_reasons(outcomes: Sequence[InstanceOutcome]) -> dict[str, int]:
    """Why held instances were held (machine reasons, no PHI)."""
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.status is InstanceStatus.HELD:
            counts.update(outcome.reasons)
    return dict(counts.most_common())


def review_rate(
    images: Sequence[LabelledImage],
    radstream: RadstreamRun,
    study: StudyInputs,
    threshold: dict[str, Any],
) -> dict[str, Any]:
    """Held over text-bearing instances the stage saw: the labelled images and the study's US.

    ``threshold`` is the stage's risk threshold (its method says whether it fails closed).
    """
    text_bearing: list[InstanceOutcome] = [
        radstream.image_outcomes[image.name] for image in images if image.labels.has_text
    ]
    us_outcomes = radstream.study_outcomes[len(study.ct_series) :]
    text_bearing += [o for o, text in zip(us_outcomes, study.us_has_text, strict=True) if text]
    held = sum(o.status is InstanceStatus.HELD for o in text_bearing)
    ct_held = sum(
        o.status is InstanceStatus.HELD for o in radstream.study_outcomes[: len(study.ct_series)]
    )
    us_blank = [o for o, text in zip(us_outcomes, study.us_has_text, strict=True) if not text]
    return {
        "text_bearing": len(text_bearing),
        "held": held,
        "rate": held / len(text_bearing) if text_bearing else 0.0,
        "ct_without_text_held": ct_held,
        "us_without_text": len(us_blank),
        "us_without_text_held": sum(o.status is InstanceStatus.HELD for o in us_blank),
        "held_reasons": held_reasons(text_bearing),
        "threshold_method": threshold["method"],
        "threshold_engine": threshold["engine"],
        "threshold_n": threshold["n_calibration"],
    }


def comparison_rows(
    judged: dict[str, dict[str, EvalSummary]],
    images: Sequence[LabelledImage],
    radstream: RadstreamRun,
    peer: PeerRun,
) -> list[dict[str, Any]]:
    """Part 4's figures per tool (JSON-ready)."""
    rows = []
    for tool, times in ((RADSTREAM, radstream.image_s), (PRESIDIO, peer.image_s)):
        row: dict[str, Any] = {"tool": tool}
        for source, result in judged.get(tool, {}).items():
            row[source] = {
                "phi_boxes": result.phi_boxes,
                "phi_hidden": result.phi_boxes_hidden,
                "annotations": result.annotation_boxes,
                "annotations_altered": result.annotation_boxes - result.annotation_boxes_kept,
                "held": result.held,
            }
            per_image = [
                median_or_none(times.get(i.name, [])) for i in images if i.source == source
            ]
            measured = [v for v in per_image if v is not None]
            row[source]["s_per_image"] = statistics.mean(measured) if measured else None
        study = radstream.study_s if tool == RADSTREAM else peer.study_s
        row["study_s"] = median_or_none(study)
        row["study_rounds_s"] = list(study)
        rows.append(row)
    return rows


def comparison_table(rows: Sequence[dict[str, Any]], study_label: str) -> str:
    """Part 4 as a Markdown table."""
    table_rows = []
    for row in rows:
        cells = [row["tool"]]
        for source in ("real", "synthetic"):
            item = row.get(source)
            if item is None:
                cells += ["-", "-", "-"]
                continue
            cells += [
                f"{item['phi_hidden']}/{item['phi_boxes']}",
                f"{item['annotations_altered']}/{item['annotations']}",
                number_text(item["s_per_image"], 2),
            ]
        cells.append(number_text(row["study_s"], 1))
        table_rows.append(cells)
    radstream = rows[0]["study_s"]
    for cells, row in zip(table_rows, rows, strict=True):
        cells.append(ratio_text(row["study_s"], radstream))
    return markdown_table(
        [
            "tool",
            "real: PHI hidden",
            "real: non-PHI altered",
            "real: s/img",
            "synth: PHI hidden",
            "synth: non-PHI altered",
            "synth: s/img",
            f"s/study ({study_label})",
            "/radstream",
        ],
        table_rows,
    )


def study_table(
    radstream: RadstreamRun, metadata: dict[str, list[float]], peer: PeerRun, study: StudyInputs
) -> tuple[str, dict[str, Any]]:
    """Part 3 as a Markdown table (presidio's row from part 4), and its figures."""
    n = len(study.ct_series) + len(study.us)
    statuses = Counter(o.status.value for o in radstream.study_outcomes)
    decisions = Counter(
        o.pixel_report.decision.value for o in radstream.study_outcomes if o.pixel_report
    )
    rad_s, meta_s = median_or_none(radstream.study_s), median_or_none(metadata.get("study_s", []))
    peer_s = median_or_none(peer.study_s)
    peer_ct, peer_us = median_or_none(peer.ct_s), median_or_none(peer.us_s)
    figures: dict[str, Any] = {
        "instances": n,
        "radstream_study_s": rad_s,
        "radstream_per_s": n / rad_s if rad_s else None,
        "radstream_ct_ms": median_or_none(radstream.ct_ms),
        "radstream_us_ms": median_or_none(radstream.us_ms),
        "metadata_study_s": meta_s,
        "metadata_per_s": n / meta_s if meta_s else None,
        "metadata_ct_ms": median_or_none(metadata.get("ct_ms", [])),
        "peer_study_s": peer_s,
        "peer_ct_ms": 1000 * peer_ct if peer_ct is not None else None,
        "peer_us_ms": 1000 * peer_us if peer_us is not None else None,
        "statuses": dict(statuses),
        "pixel_decisions": dict(decisions),
        "rounds_s": {
            RADSTREAM: radstream.study_s,
            METADATA: metadata.get("study_s", []),
            PRESIDIO: peer.study_s,
        },
    }
    rows = [
        [
            "pipeline + pixel stage",
            number_text(figures["radstream_per_s"], 1),
            number_text(rad_s, 1),
            number_text(figures["radstream_ct_ms"], 2),
            number_text(figures["radstream_us_ms"]),
            ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
        ],
        [
            "pipeline, no pixel stage",
            number_text(figures["metadata_per_s"], 1),
            number_text(meta_s, 1),
            number_text(figures["metadata_ct_ms"], 2),
            "-",
            "header-only policy",
        ],
        [
            PRESIDIO,
            number_text(n / peer_s if peer_s else None, 1),
            number_text(peer_s, 1),
            number_text(figures["peer_ct_ms"], 2),
            number_text(figures["peer_us_ms"]),
            "redact call only; CT scaled from a sample" if peer_s else peer.error or "-",
        ],
    ]
    table = markdown_table(
        ["mixed study", "inst/s", "s/study", "ms/CT slice", "ms/US inst", "outcomes"], rows
    )
    return table, figures


# -- targets and main ----------------------------------------------------------------------


def targets(
    comparison: Sequence[dict[str, Any]], review: dict[str, Any]
) -> list[tuple[str, bool, str]]:
    """The issue's targets: (name, met, the figures behind the verdict)."""
    rad = next(r for r in comparison if r["tool"] == RADSTREAM)
    peer = next(r for r in comparison if r["tool"] == PRESIDIO)
    rad_real, peer_real = rad.get("real", {}), peer.get("real", {})
    real_ok = bool(rad_real) and (
        rad_real["phi_hidden"] == rad_real["phi_boxes"] and rad_real["annotations_altered"] == 0
    )
    peer_text = (
        f"presidio hides {peer_real['phi_hidden']}/{peer_real['phi_boxes']}, alters "
        f"{peer_real['annotations_altered']}/{peer_real['annotations']}"
        if peer_real
        else "presidio not run"
    )
    found = [
        (
            "real files: every PHI box hidden, no annotation altered",
            real_ok,
            (
                f"radstream hides {rad_real['phi_hidden']}/{rad_real['phi_boxes']}, alters "
                f"{rad_real['annotations_altered']}/{rad_real['annotations']}; {peer_text}"
                if rad_real
                else "radstream not run"
            ),
        )
    ]
    rad_s, peer_s = rad.get("study_s"), peer.get("study_s")

    def spread(row: dict[str, Any]) -> str:
        rounds = row.get("study_rounds_s") or []
        return f" (rounds {'/'.join(f'{v:.1f}' for v in rounds)})" if len(rounds) > 1 else ""

    found.append(
        (
            "less time per study than presidio-image-redactor",
            rad_s is not None and peer_s is not None and rad_s < peer_s,
            f"radstream {number_text(rad_s, 1)} s{spread(rad)}, presidio "
            f"{number_text(peer_s, 1)} s{spread(peer)}: {ratio_text(rad_s, peer_s)}",
        )
    )
    reasons = ", ".join(f"{k} {v}" for k, v in list(review["held_reasons"].items())[:4])
    cause = ""
    if review.get("threshold_method") == "fail_closed":
        cause = (
            f"; the risk threshold fails closed (n={review.get('threshold_n', 0)} calibration "
            f"records for {review.get('threshold_engine')}): everything with text is held"
        )
    found.append(
        (
            "fewer than 10% of text-bearing instances sent to review",
            review["rate"] < REVIEW_RATE_TARGET,
            f"{review['held']}/{review['text_bearing']} held ({100 * review['rate']:.0f}%)"
            + (f"; held for: {reasons}" if reasons else "")
            + cause,
        )
    )
    return found


def _versions() -> dict[str, str]:
    versions = {}
    for package in (
        "pydicom",
        "rapidocr",
        "onnxruntime",
        "pytesseract",
        "easyocr",
        "torch",
        "tritonclient",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    for site in (REPOSITORY_ROOT / ".venv-peers" / "lib").glob("python*/site-packages"):
        for dist in importlib.metadata.distributions(path=[str(site)]):
            if dist.metadata["Name"] in {"presidio-image-redactor", "presidio_image_redactor"}:
                versions["presidio-image-redactor"] = dist.version
    return versions


def run(config: BenchConfig) -> dict[str, Any]:
    """Build the inputs, run the four parts, judge, and gather the report (no PHI in it)."""
    started = time.perf_counter()
    cores = pin_cores(config.cores)
    load_before = os.getloadavg()
    images, study = build_inputs(
        synthetic=config.synthetic,
        ct_slices=config.ct_slices,
        ct_named=config.ct_named,
        us_instances=config.us_instances,
    )
    print(
        f"  inputs: {len(images)} labelled images, {len(study.ct_series)} CT slices, "
        f"{len(study.ct_named)} named CT slices, {len(study.us)} US instances "
        f"({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    cleaner = build_text_cleaner()
    stage = DeidSettings(ocr_engine=config.stage_engine, leak_rate=config.leak_rate).pixel_stage(
        cleaner
    )
    sides = stage.settings.recognize_sides
    with tempfile.TemporaryDirectory(prefix="radstream-bench-pixels-") as tmp:
        work = Path(tmp)
        engine_runs = run_engines(config, images, sides, work)
        text = run_text_check(config, study, stage, cleaner)
        radstream, metadata, peer, files = run_study(config, images, study, stage, cleaner, work)
    judge_engine = load_engine(config.judge_engine)
    judged = judge_tools(images, radstream, peer, judge_engine)
    engines = engine_rows(
        engine_runs, images, padding=stage.settings.padding, baseline=config.stage_engine
    )
    study_text, study_figures = study_table(radstream, metadata, peer, study)
    comparison = comparison_rows(judged, images, radstream, peer)
    review = review_rate(images, radstream, study, asdict(stage.threshold))
    sample = len(files.ct_indexes)
    return {
        "config": asdict(config),
        "cores": cores,
        "load_average_before_after": [load_before, os.getloadavg()],
        "images": [
            {
                "name": i.name,
                "shape": list(i.original.shape),
                "phi_boxes": sum(b.is_phi for b in i.labels.boxes),
            }
            for i in images
        ],
        "stage": {
            "engine": stage.engine.info.name,
            "recognize_sides": list(sides),
            "threshold": asdict(stage.threshold),
            "reads_once_at_full": all(
                stage_reads_once_at_full(image.original.shape[1:3], sides) for image in images
            ),
            "padding": stage.settings.padding,
        },
        "engines": engines,
        "text_check": text,
        "study": study_figures,
        "comparison": comparison,
        "peer_study": {
            "ct_sampled": sample,
            "ct_slices": len(study.ct_series),
            "us": len(study.us),
            "error": peer.error,
            "boxes_filled": peer.boxes,
        },
        "review": review,
        "targets": [
            {"target": name, "met": ok, "figures": text}
            for name, ok, text in targets(comparison, review)
        ],
        "wall_s": time.perf_counter() - started,
        "python": platform.python_version(),
        "versions": _versions(),
        "_tables": {
            "engines": engine_table(engines, config.stage_engine),
            "text_check": text_check_table(text, study_figures),
            "study": study_text,
            "comparison": comparison_table(
                comparison,
                f"{len(study.ct_series)} CT + {len(study.us)} US"
                + (f"; presidio CT scaled from {sample}" if sample < len(study.ct_series) else ""),
            ),
        },
    }


def describe(report: dict[str, Any]) -> str:
    """What was run, in a few lines."""
    config, stage = report["config"], report["stage"]
    threshold = stage["threshold"]
    before, after = report["load_average_before_after"]
    return "\n".join(
        [
            f"Pixel de-identification on {len(report['cores'])} CPU cores {report['cores']} "
            f"(load average {before[0]:.1f} before, {after[0]:.1f} after), Python "
            f"{report['python']}; {config['rounds']} rounds, order rotating, medians. "
            + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
            f"Images: {', '.join(i['name'] for i in report['images'])}. Stage: engine "
            f"{stage['engine']}, reads at sides {stage['recognize_sides']}, padding "
            f"{stage['padding']}, risk threshold {threshold['value']:.3f} ({threshold['method']}, "
            f"n={threshold['n_calibration']}, leak rate {threshold['leak_rate']}). Judge: "
            f"{config['judge_engine']} re-reads covered PHI boxes.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tests.bench.bench_pixels``."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_pixels",
        description="\n\n".join((__doc__ or "").split("\n\n")[:2]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = FULL
    parser.add_argument("--quick", action="store_true", help="a small run, for development")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {defaults.rounds})")
    parser.add_argument(
        "--synthetic", type=int, help=f"labelled synthetic images ({defaults.synthetic})"
    )
    parser.add_argument(
        "--ct-slices", type=int, help=f"CT slices in the study ({defaults.ct_slices})"
    )
    parser.add_argument("--ct-named", type=int, help=f"CT slices with a name ({defaults.ct_named})")
    parser.add_argument(
        "--us", type=int, dest="us_instances", help=f"US instances ({defaults.us_instances})"
    )
    parser.add_argument("--engines", help=f"comma-separated ({','.join(defaults.engines)})")
    parser.add_argument(
        "--stage-engine", help=f"the pixel stage's engine ({defaults.stage_engine})"
    )
    parser.add_argument(
        "--peer-ct-sample",
        type=int,
        help=f"CT slices presidio runs on ({defaults.peer_ct_sample}; 0 all)",
    )
    parser.add_argument(
        "--slow-engine-s",
        type=float,
        help=f"no second round above this ({defaults.slow_engine_s:.0f} s)",
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    changes: dict[str, Any] = {
        key: value
        for key in (
            "rounds",
            "synthetic",
            "ct_slices",
            "ct_named",
            "us_instances",
            "stage_engine",
            "peer_ct_sample",
            "slow_engine_s",
        )
        if (value := getattr(args, key)) is not None
    }
    if args.engines:
        changes["engines"] = tuple(name.strip() for name in args.engines.split(",") if name.strip())
    config = replace(config, **changes)
    warnings.simplefilter("ignore")  # pydicom's value warnings, the same for every tool
    report = run(config)
    tables = report.pop("_tables")
    print()
    print(describe(report))
    print()
    print("1. OCR engines (recognize; PHI boxes found = covered by its lines, read = text read)")
    print(tables["engines"])
    if report["stage"]["reads_once_at_full"]:
        print("   (as the stage reads = one full-resolution recognize here: no image is larger")
        print(f"   than its smallest side, {min(report['stage']['recognize_sides'])} px)")
    print()
    print("2. The text check per CT slice, next to the metadata pipeline")
    print(tables["text_check"])
    print()
    print(
        f"3. Mixed study: {report['peer_study']['ct_slices']} text-free CT slices + "
        f"{report['peer_study']['us']} synthetic US instances (single-frame, not a cine)"
    )
    print(tables["study"])
    print()
    print("4. presidio-image-redactor side by side (judged by eval_pixels' definitions)")
    print(tables["comparison"])
    print(
        "   s/img: radstream = the whole deidentify_instance (metadata, text check, OCR, fill, "
        "re-OCR verification); presidio = its redact call only"
    )
    print()
    for item in report["targets"]:
        print(f"target {verdict_text(item['met'])}: {item['target']} -- {item['figures']}")
    save_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
