"""Benchmark: metadata de-identification, radstream next to dicognito and pydicom/deid.

Run with ``make bench`` (``python -m tests.bench.bench_deid``); ``--quick`` for a smaller run,
``--json PATH`` for the results file (default ``.build/bench/deid.json``), ``--profile`` to
profile radstream even within the target (it runs by itself below it). A benchmark, not a test:
nothing asserts on time.

Input: synthetic CT studies built in code (:mod:`tests.unit.deid.study_builder` plus the
patient, study, series, equipment, frame of reference, image plane and CT image modules, three
image references, two private blocks, free-text comments that name the patient, 512x512 16-bit
pixels of a CT phantom -- body, lungs, spine, ribs, table, noise -- with no burned-in text),
written once to a temporary folder. Every tool reads those files from disk and writes
its result to its own output folder, which is emptied before each round, so I/O is the same.

* **radstream** -- ``dcmread`` -> ``apply_profile`` (the production profile: Basic Profile, no
  options, as ``DeidSettings`` defaults; with the production Presidio text cleaner, which the
  Basic Profile never calls since it has no C action) -> ``dcmwrite``. This is the headline.
* **radstream-pipeline** -- ``deidentify_instance`` on the file's bytes: strict reading, the
  pixel policy, PHI collection, ``apply_profile``, writing, reading the output back (its
  structure walked strictly, every value read by radstream's codec) and searching it for every
  PHI value of the original; the released bytes are written to the output folder.
  What fail-closed verification costs on top of the profile.
* **radstream-pipeline-text** (``--no-text-check`` skips it) -- the same with the production
  pixel stage as the pixel policy (``DeidSettings().pixel_stage``: the text check on every
  slice, OCR where it finds text, the written pixels verified). The issue's comparison: the
  whole fail-closed pipeline against dicognito on the same files.

Both pipeline tools start every round cold: the verifier's compiled searches and memoized
answers are dropped before it (not timed), so a round costs what a new series would.
* **radstream-clean** (``--no-clean`` skips it) -- as **radstream**, with the Clean Descriptors
  Option: the instance's PHI values are collected and descriptors go through Presidio (spaCy NER
  and patterns) instead of being removed; a fresh cleaner each round, so its memo starts empty.
  Not part of the comparison: the peers clean no text. It shows what cleaning costs.
* **dicognito**, **deid** -- see :mod:`tests.bench.deid_peers`.

Rounds: every tool processes every instance once per round; the order of the tools rotates
each round; a few warm-up instances per tool run first (not timed). Outputs are deleted right
after each round (not timed); set ``TMPDIR`` (e.g. to ``/dev/shm``) to take the disk out.
Reported: the median over rounds of instances per second (wall time of the whole folder),
process CPU per instance, and radstream's ratios. Coverage of PS3.15 Table E.1-1 is measured
with the probe of :mod:`tests.bench.deid_peers` for every tool; radstream's own claim
(``annex_e_coverage``) is printed beside its measured figure.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.metadata
import io
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY, PixelPolicy
from radstream.deid.clean import CleanerStats, PresidioTextCleaner, build_text_cleaner
from radstream.deid.config import DeidSettings
from radstream.deid.phi import PhiValues, collect_phi_values
from radstream.deid.pipeline import InstanceOutcome, deidentify_instance
from radstream.deid.profile import DeidKeys, DeidProfile, ProfileOption, apply_profile
from radstream.deid.rules import annex_e_coverage
from radstream.deid.verify import forget_searches
from tests.bench.deid_peers import (
    Coverage,
    DeidTool,
    DicognitoTool,
    PydicomDeidTool,
    annex_e_rows,
    probe_tool,
    write_probe,
)
from tests.bench.report import save_report
from tests.unit.deid.pixels.builders import ct_slice
from tests.unit.deid.study_builder import TEST_KEYS_SECRET, synthetic_instance

DEFAULT_JSON = Path(".build/bench/deid.json")
TARGET_RATIO = 2.0
RADSTREAM, PIPELINE, CLEAN = "radstream", "radstream-pipeline", "radstream-clean"
PIPELINE_TEXT = "radstream-pipeline-text"
PIPELINES = (PIPELINE, PIPELINE_TEXT)
PHANTOMS = 8  # distinct CT phantom slices, cycled through the instances
DICOGNITO, DEID = "dicognito", "deid"
PEERS = (DICOGNITO, DEID)
WARMUP_INSTANCES = 3

# Fake patients only: (name, id, birth date, sex, referring physician).
PATIENTS = (
    ("QUIMBY^ZELDA", "SYN-MRN-40117", "19580412", "F", "VANTERPOOL^HUGO^^DR"),
    ("FARNSWORTH^OTTO", "SYN-MRN-40253", "19710923", "M", "MALLARD^INES^^DR"),
    ("BRIGHTWATER^NELL", "SYN-MRN-40381", "19640130", "F", "OKONKWO^ADA^^DR"),
    ("TALLGRASS^RUFUS", "SYN-MRN-40402", "19820706", "M", "VANTERPOOL^HUGO^^DR"),
    ("WINTERBOTTOM^IDA", "SYN-MRN-40519", "19490215", "F", "LINDQVIST^PER^^DR"),
    ("MCALLISTER^BO", "SYN-MRN-40666", "19900808", "M", "MALLARD^INES^^DR"),
)
SERIES = (("AXIAL 5MM STANDARD", "STANDARD", "5"), ("AXIAL 1.25MM LUNG", "LUNG", "1.25"))


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Size of a run."""

    instances: int
    studies: int
    rounds: int = 3
    rows: int = 512
    columns: int = 512
    profile_instances: int = 100


FULL = BenchConfig(instances=300, studies=6)
QUICK = BenchConfig(instances=60, studies=2, profile_instances=30)


# -- input -------------------------------------------------------------------------------------


def _uid(*parts: int) -> str:
    return "2.25.77001122334455667788" + "".join(f".{part}" for part in parts)


def _ct_modules(
    ds: Dataset, study: int, series: int, number: int, pixels: bytes, rows: int, columns: int
) -> None:
    """Fill in a realistic CT header around the study builder's basics."""
    name, patient_id, birth, sex, referring = PATIENTS[study % len(PATIENTS)]
    description, kernel, thickness = SERIES[series % len(SERIES)]
    family = name.split("^")[0]
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, patient_id, birth, sex
    ds.IssuerOfPatientID = "HOSP-A-MRN"
    ds.PatientAge, ds.PatientWeight, ds.PatientSize = "061Y", "72.5", "1.68"
    ds.AdditionalPatientHistory = f"Follow-up of nodule, {family} reports cough since 2023-11-02"
    ds.StudyInstanceUID = _uid(study)
    ds.SeriesInstanceUID = _uid(study, series + 1)
    ds.SOPInstanceUID = _uid(study, series + 1, number)
    ds.FrameOfReferenceUID = _uid(study, 99)
    ds.AccessionNumber, ds.StudyID = f"SYN-ACC-{9100 + study}", f"S{study}"
    ds.StudyDescription, ds.SeriesDescription = "CT CHEST W/O CONTRAST", description
    ds.ReferringPhysicianName, ds.RequestingPhysician = referring, referring
    ds.OperatorsName, ds.PerformingPhysicianName = "TECH^ROBIN", "OKAFOR^LENA^^DR"
    ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = series + 1, number, 1
    ds.SeriesTime = ds.AcquisitionTime = f"1015{number % 60:02d}"
    ds.AcquisitionDate = ds.InstanceCreationDate = ds.StudyDate
    ds.InstanceCreationTime = ds.ContentTime
    ds.InstitutionAddress = "1 Synthetic Way, Springfield"
    ds.InstitutionalDepartmentName = "Radiology"
    ds.ManufacturerModelName, ds.DeviceSerialNumber = "SynthScan 64", "SN-0042-77"
    ds.SoftwareVersions, ds.ProtocolName = "VA48A", "CHEST ROUTINE"
    ds.BodyPartExamined, ds.PatientPosition = "CHEST", "HFS"
    ds.PositionReferenceIndicator, ds.BurnedInAnnotation = "", "NO"
    ds.PerformedProcedureStepID = f"PPS-{study}"
    ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = ds.StudyDate, "1014"
    ds.PerformedProcedureStepDescription = "CT CHEST"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "24627-2", "LN", "CT Chest"
    ds.ProcedureCodeSequence = DicomSequence([code])
    request = Dataset()
    request.RequestedProcedureID, request.ScheduledProcedureStepID = f"RP-{study}", f"SPS-{study}"
    request.RequestedProcedureDescription = "CT chest without contrast"
    ds.RequestAttributesSequence = DicomSequence([request])
    references = []
    for offset in (-1, 1, 2):
        reference = Dataset()
        reference.ReferencedSOPClassUID = ds.SOPClassUID
        reference.ReferencedSOPInstanceUID = _uid(study, series + 1, number + offset)
        references.append(reference)
    ds.ReferencedImageSequence = DicomSequence(references)
    ds.SliceThickness, ds.SliceLocation = thickness, f"{-120 + 2.5 * number:.2f}"
    ds.ImagePositionPatient = [-250.0, -250.0, -120 + 2.5 * number]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.976562, 0.976562]
    ds.KVP, ds.XRayTubeCurrent, ds.ExposureTime, ds.CTDIvol = "120", 210, 500, 7.8
    ds.ConvolutionKernel, ds.FilterType, ds.RotationDirection = kernel, "BODY", "CW"
    ds.DataCollectionDiameter, ds.ReconstructionDiameter = "500", "500"
    ds.GantryDetectorTilt, ds.TableHeight = "0", "145.5"
    ds.DateOfLastCalibration = "20231229"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter, ds.WindowWidth = ["40", "-600"], ["400", "1500"]
    if number % 10 == 1:
        ds.ImageComments = f"Repeat after motion, pt {family} moved. Tech: Robin"
    vendor = ds.private_block(0x0019, "SYNTHCORP CT 1.0", create=True)
    vendor.add_new(0x01, "LO", "HELICAL")
    vendor.add_new(0x02, "DS", "0.984375")
    vendor.add_new(0x03, "OB", bytes(range(64)))
    header = ds.private_block(0x0029, "SYNTHCORP HEADER", create=True)
    header.add_new(0x10, "OB", bytes(1024))
    header.add_new(0x20, "LO", f"{patient_id} {name}")
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.Rows, ds.Columns = rows, columns
    ds.PixelData = pixels


def write_inputs(config: BenchConfig, folder: Path) -> list[Path]:
    """Write the synthetic instances once; returns their paths in processing order."""
    phantoms = [
        np.ascontiguousarray(ct_slice(seed, size=config.rows), dtype="<u2").tobytes()
        for seed in range(PHANTOMS)
    ]
    per_study = -(-config.instances // config.studies)
    paths = []
    for index in range(config.instances):
        study, number = divmod(index, per_study)
        series = number * len(SERIES) // per_study

        def customize(
            ds: Dataset, study: int = study, series: int = series, n: int = number
        ) -> None:
            pixels = phantoms[n % PHANTOMS]
            _ct_modules(ds, study, series, n + 1, pixels, config.rows, config.columns)

        ds = synthetic_instance(
            number=number + 1,
            rows=config.rows,
            columns=config.columns,
            with_pixels=False,
            customize=customize,
        )
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"ct-{index:04d}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


# -- radstream ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RadstreamProfileTool:
    """``dcmread`` -> ``apply_profile`` -> ``dcmwrite``, the metadata profile alone.

    With ``fresh_cleaner`` a new cleaner is built for every round (not timed), so its memo of
    cleaned texts starts empty each time: rounds after the first would otherwise only hit it.
    """

    cleaner: PresidioTextCleaner
    profile: DeidProfile = field(default_factory=DeidProfile)
    keys: DeidKeys = field(default_factory=lambda: DeidKeys.from_secret(TEST_KEYS_SECRET))
    name: str = RADSTREAM
    description: str = "dcmread -> apply_profile(Basic Profile, Presidio cleaner) -> dcmwrite"
    fresh_cleaner: bool = False
    warm: CleanerStats | None = None  # the cleaner's counters when the round started

    def prepare(self) -> None:
        if self.fresh_cleaner:
            self.cleaner = warm_cleaner()
        self.warm = self.cleaner.stats

    def cleaner_use(self) -> str:
        """What the cleaner did since the last :meth:`prepare` (this round)."""
        now, then = self.cleaner.stats, self.warm
        assert then is not None, "prepare() first"
        return (
            f"cleaner calls {now.calls - then.calls}, memo hits "
            f"{now.cache_hits - then.cache_hits}, NER runs {now.ner_runs - then.ner_runs}"
        )

    def needs_phi(self) -> bool:
        """Whether the cleaner can be called: only options with a C action clean text."""
        return any(option.value.startswith("clean-") for option in self.profile.options)

    def run(self, inputs: Sequence[Path], out_dir: Path) -> None:
        collect = self.needs_phi()
        for path in inputs:
            dataset = dcmread(path)
            phi = collect_phi_values(dataset) if collect else PhiValues()
            result = apply_profile(
                dataset, self.profile, self.keys, clean_text=self.cleaner, phi=phi
            )
            dcmwrite(out_dir / path.name, result.dataset, enforce_file_format=True)


def warm_cleaner() -> PresidioTextCleaner:
    """The production cleaner, with spaCy's pipeline run once on an unrelated text."""
    cleaner = build_text_cleaner()
    cleaner("Seen by Dr. Nobody on 2020-01-01", PhiValues())
    return cleaner


@dataclass(kw_only=True)
class RadstreamPipelineTool:
    """``deidentify_instance`` on the file's bytes; released output is written."""

    cleaner: PresidioTextCleaner
    profile: DeidProfile = field(default_factory=DeidProfile)
    keys: DeidKeys = field(default_factory=lambda: DeidKeys.from_secret(TEST_KEYS_SECRET))
    name: str = PIPELINE
    description: str = "deidentify_instance(bytes): strict read, PHI, profile, write, verify"
    pixel_policy: PixelPolicy = DEFAULT_PIXEL_POLICY
    statuses: Counter[str] = field(default_factory=Counter)

    def prepare(self) -> None:
        self.statuses.clear()
        forget_searches()  # every round starts cold, as a new series would

    def deidentify(self, data: bytes, pixel_policy: PixelPolicy | None = None) -> InstanceOutcome:
        """``deidentify_instance`` with this tool's settings (another pixel policy if given)."""
        return deidentify_instance(
            data,
            profile=self.profile,
            keys=self.keys,
            clean_text=self.cleaner,
            pixel_policy=pixel_policy or self.pixel_policy,
        )

    def run(self, inputs: Sequence[Path], out_dir: Path) -> None:
        for path in inputs:
            outcome = self.deidentify(path.read_bytes())
            self.statuses[outcome.status.value] += 1
            if outcome.output is not None:
                (out_dir / path.name).write_bytes(outcome.output)


# -- rounds ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RoundResult:
    """One tool over every instance, once."""

    tool: str
    round: int
    seconds: float
    cpu_seconds: float
    instances: int
    outputs: int

    @property
    def per_s(self) -> float:
        """Instances per second (wall)."""
        return self.instances / self.seconds


def _reset(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def run_round(tool: DeidTool, number: int, inputs: Sequence[Path], out_dir: Path) -> RoundResult:
    """Time ``tool`` over ``inputs`` (preparation and the emptied output folder not timed)."""
    _reset(out_dir)
    tool.prepare()
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    tool.run(inputs, out_dir)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    outputs = sum(1 for _ in out_dir.iterdir())
    return RoundResult(
        tool=tool.name,
        round=number,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        instances=len(inputs),
        outputs=outputs,
    )


def residual_identity(out_dir: Path) -> int:
    """Output files whose header (sequences, private blocks) still holds a family name or ID."""
    needles = [token for patient in PATIENTS for token in (patient[0].split("^")[0], patient[1])]
    leaking = 0
    for path in sorted(out_dir.iterdir()):
        dataset = dcmread(path, stop_before_pixels=True, force=True)
        for element in dataset.iterall():
            value = element.value
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if any(needle in text.upper() for needle in needles):
                leaking += 1
                break
    return leaking


# -- profiling ---------------------------------------------------------------------------------


def stage_split(
    inputs: Sequence[Path],
    out_dir: Path,
    transform: Callable[[Dataset], Dataset],
    *,
    enforce_file_format: bool,
) -> dict[str, float]:
    """Microseconds per instance in read, de-identify, encode and store, timed separately."""
    totals = dict.fromkeys(("read", "de-identify", "encode", "store"), 0.0)
    _reset(out_dir)
    for path in inputs:
        t0 = time.perf_counter()
        dataset = dcmread(path)
        t1 = time.perf_counter()
        result = transform(dataset)
        t2 = time.perf_counter()
        buffer = io.BytesIO()
        dcmwrite(buffer, result, enforce_file_format=enforce_file_format)
        t3 = time.perf_counter()
        (out_dir / path.name).write_bytes(buffer.getvalue())
        t4 = time.perf_counter()
        for stage, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[stage] += seconds
    return {stage: 1e6 * total / len(inputs) for stage, total in totals.items()}


def _dicognito_transform() -> Callable[[Dataset], Dataset]:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer()

    def transform(dataset: Dataset) -> Dataset:
        anonymizer.anonymize(dataset)
        return dataset

    return transform


# (label, file suffix, function): where apply_profile's time goes; the shares overlap.
HOTSPOTS = (
    ("ProfileWalk.dataset: the element walk", "deid/actions.py", "dataset"),
    ("ProfileWalk._table: rule, Type, code, label, VR", "deid/actions.py", "_table"),
    ("pydicom Dataset.__setitem__: output assembly", "pydicom/dataset.py", "__setitem__"),
    ("pydicom DataElement.__init__: new elements", "pydicom/dataelem.py", "__init__"),
    ("pydicom raw value decoding", "pydicom/dataelem.py", "convert_raw_data_element"),
    ("ProfileWalk._replace_uids: UID remap", "deid/actions.py", "_replace_uids"),
    ("ProfileWalk.record: audit entries", "deid/actions.py", "record"),
    ("replace_file_meta", "deid/markers.py", "replace_file_meta"),
    ("add_deid_markers", "deid/markers.py", "add_deid_markers"),
    ("_top_text: identity lookups", "deid/profile.py", "_top_text"),
)
PIPELINE_HOTSPOTS = (
    ("read (strict structure, codec values, lazy pydicom)", "dicom/raw_header.py",
     "read_instance_lazily"),
    ("  of which scan_layout (structure check, input and output)", "dicom/layout.py",
     "scan_layout"),
    ("pixel policy (assess)", "deid/burned_in.py", "assess"),
    ("collect_phi_values (from the codec's values)", "deid/phi.py", "collect_phi_values"),
    ("pixel stage: text check (inspect)", "deid/pixels/stage.py", "inspect"),
    ("apply_profile", "deid/profile.py", "apply_profile"),
    ("kept elements converted before writing", "deid/pipeline.py", "_convert_kept"),
    ("_encode (dcmwrite to bytes)", "deid/pipeline.py", "_encode"),
    ("read back (structure and codec values)", "deid/pipeline.py", "_read_back"),
    ("find_residual_phi (verification search)", "deid/verify.py", "find_residual_phi"),
    ("pixel stage: verify", "deid/pixels/stage.py", "verify"),
    ("outcome: audit, re-identification record", "deid/pipeline.py", "_finished"),
)  # fmt: skip


def hotspot_shares(
    stats: pstats.Stats, total: float, hotspots: Sequence[tuple[str, str, str]]
) -> dict[str, float]:
    """Cumulative time of each hotspot as a fraction of ``total`` (cProfile seconds)."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    shares = {}
    for label, suffix, function in hotspots:
        cumulative = sum(
            row[3]
            for (filename, _, name), row in raw.items()
            if name == function and filename.endswith(suffix)
        )
        shares[label] = cumulative / total if total else 0.0
    return shares


def profile_radstream(
    tool: RadstreamProfileTool,
    pipeline: RadstreamPipelineTool,
    inputs: Sequence[Path],
    workdir: Path,
) -> dict[str, Any]:
    """Where radstream's time goes: stage split next to dicognito's, cProfiles of both paths."""

    def radstream(dataset: Dataset) -> Dataset:
        result = apply_profile(
            dataset, tool.profile, tool.keys, clean_text=tool.cleaner, phi=PhiValues()
        )
        out: Dataset = result.dataset
        return out

    stages = {
        RADSTREAM: stage_split(
            inputs, workdir / "split-radstream", radstream, enforce_file_format=True
        ),
        DICOGNITO: stage_split(
            inputs, workdir / "split-dicognito", _dicognito_transform(), enforce_file_format=False
        ),
    }
    datasets = [dcmread(path) for path in inputs]
    profiler = cProfile.Profile()
    profiler.enable()
    for dataset in datasets:
        radstream(dataset)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    by_module: dict[str, float] = {}
    for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
        module = module_of(filename)
        by_module[module] = by_module.get(module, 0.0) + row[2]
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    text = out.getvalue()
    return {
        "instances": len(inputs),
        "stages_us": stages,
        "apply_profile_share_by_module": {
            k: v / total for k, v in sorted(by_module.items(), key=lambda kv: -kv[1])
        },
        "apply_profile_hotspot_share": hotspot_shares(stats, total, HOTSPOTS),
        "top_functions": text[text.find("   ncalls") :],
        "pipeline": profile_pipeline(pipeline, inputs),
    }


def profile_pipeline(tool: RadstreamPipelineTool, inputs: Sequence[Path]) -> dict[str, Any]:
    """The pipeline's steps: cProfile shares scaled by an unprofiled pass over the same bytes."""
    data = [path.read_bytes() for path in inputs]

    def one_pass() -> None:
        for item in data:
            tool.deidentify(item)

    forget_searches()
    started = time.perf_counter()
    one_pass()
    us = 1e6 * (time.perf_counter() - started) / len(data)
    forget_searches()
    profiler = cProfile.Profile()
    profiler.runcall(one_pass)
    stats = pstats.Stats(profiler)
    total = sum(
        row[3]
        for (filename, _, name), row in stats.stats.items()  # type: ignore[attr-defined]
        if name == "deidentify_instance" and filename.endswith("deid/pipeline.py")
    )
    return {"us_per_instance": us, "share": hotspot_shares(stats, total, PIPELINE_HOTSPOTS)}


def module_of(filename: str) -> str:
    """A short module name for a profiled file: ``radstream/deid/actions.py``, ``pydicom/...``."""
    if filename.startswith(("~", "<")):
        return "(builtins)"
    parts = Path(filename).parts
    for anchor in ("services", "pydicom"):
        if anchor in parts:
            tail = parts[parts.index(anchor) + 1 :]
            return "/".join(("pydicom" if anchor == "pydicom" else "radstream", *tail))
    return f"(stdlib) {Path(filename).name}"


def profile_text(report: dict[str, Any]) -> str:
    """The profiling section of the printed report."""
    stages = report["stages_us"]
    rad, dcg = stages[RADSTREAM], stages[DICOGNITO]
    lines = [
        f"where the time goes ({report['instances']} instances, one pass each, us per instance;"
        " radstream encodes with enforce_file_format=True like the pipeline, dicognito with"
        " save_as's default False):",
        f"  {'stage':<14}{'radstream':>11}{'dicognito':>11}",
    ]
    for stage in rad:
        lines.append(f"  {stage:<14}{rad[stage]:>11.0f}{dcg[stage]:>11.0f}")
    lines.append(f"  {'total':<14}{sum(rad.values()):>11.0f}{sum(dcg.values()):>11.0f}")
    io_floor = sum(rad.values()) - rad["de-identify"]
    budget = sum(dcg.values()) / TARGET_RATIO - io_floor
    lines.append(
        f"  pydicom I/O alone (read + encode + store) is {io_floor:.0f} us: with apply_profile "
        f"free the ratio to dicognito would be x{sum(dcg.values()) / io_floor:.2f}; x2 leaves "
        f"apply_profile {budget:.0f} us (it takes {rad['de-identify']:.0f})"
    )
    profile_us = rad["de-identify"]
    lines.append(
        "apply_profile hotspots (cumulative cProfile share, overlapping; us = share x the "
        "measured de-identify time):"
    )
    for label, share in report["apply_profile_hotspot_share"].items():
        lines.append(f"  {label:<50}{100 * share:>5.0f}%{share * profile_us:>7.0f} us")
    lines.append("apply_profile own time by module (cProfile share):")
    for module, share in list(report["apply_profile_share_by_module"].items())[:8]:
        lines.append(f"  {module:<50}{100 * share:>5.0f}%")
    lines.append("apply_profile top functions by own time (cProfile):")
    lines.append(report["top_functions"].rstrip())
    pipeline = report["pipeline"]
    us = pipeline["us_per_instance"]
    lines.append(
        f"radstream-pipeline steps ({us:.0f} us per instance unprofiled, in memory; cumulative "
        "cProfile share of deidentify_instance x that time):"
    )
    for label, share in pipeline["share"].items():
        lines.append(f"  {label:<50}{100 * share:>5.0f}%{share * us:>7.0f} us")
    return "\n".join(lines)


# -- report ------------------------------------------------------------------------------------


def medians(results: dict[str, list[RoundResult]]) -> dict[str, dict[str, float]]:
    """Median instances/s and CPU ms per instance, per tool."""
    return {
        tool: {
            "per_s": statistics.median(r.per_s for r in rounds),
            "cpu_ms": statistics.median(1e3 * r.cpu_seconds / r.instances for r in rounds),
            "outputs": min(r.outputs for r in rounds),
        }
        for tool, rounds in results.items()
    }


def table(
    results: dict[str, list[RoundResult]],
    median: dict[str, dict[str, float]],
    extra: dict[str, str],
) -> str:
    """Throughput per tool: median, each round, ratios to the peers, CPU, outputs, checks."""
    peers = "".join(f"{'/' + p:>11}" for p in PEERS)
    lines = [
        f"{'tool':<24}{'inst/s':>8}  {'rounds (inst/s)':<18}{peers}{'CPU ms/inst':>12}"
        f"{'outputs':>9}  check"
    ]
    for tool, rounds in results.items():
        m = median[tool]
        each = " / ".join(f"{r.per_s:.0f}" for r in rounds)
        ratios = "".join(
            f"{'x' + format(m['per_s'] / median[p]['per_s'], '.2f'):>11}" for p in PEERS
        )
        lines.append(
            f"{tool:<24}{m['per_s']:>8.1f}  {each:<18}{ratios}{m['cpu_ms']:>12.2f}"
            f"{int(m['outputs']):>5}/{rounds[0].instances:<3}  {extra.get(tool, '')}"
        )
    return "\n".join(lines)


def coverage_table(coverage: dict[str, Coverage], claimed: tuple[int, int]) -> str:
    """Table E.1-1 rows handled per tool, and what happened to the rest."""
    total = next(iter(coverage.values())).rows
    lines = [
        f"{'Table E.1-1 (probe)':<20}{'as profile':>11}{'value gone':>11}"
        f"{'removed':>9}{'emptied':>9}{'replaced':>9}{'kept':>6}  per code (handled/rows)"
    ]
    for tool, c in coverage.items():
        codes = " ".join(f"{code} {h}/{n}" for code, (h, n) in sorted(c.by_code.items()))
        o = c.outcomes
        lines.append(
            f"{tool:<20}{c.handled:>6}/{total:<4}{c.value_gone:>7}/{total:<4}"
            f"{o['removed']:>8}{o['emptied']:>9}{o['replaced']:>9}{o['kept']:>6}  {codes}"
            + (f"  ERROR {c.error}" if c.error else "")
        )
    lines.append(
        f"{'':<20}radstream claims {claimed[0]}/{claimed[1]} (annex_e_coverage: rows its walk "
        f"matches and implements); probed: {next(iter(coverage.values())).probed}/{total} rows, "
        "the 2 command-set rows (0000,1000)/(0000,1001) cannot be stored in a file"
    )
    return "\n".join(lines)


def summary(median: dict[str, dict[str, float]], coverage: dict[str, Coverage]) -> tuple[str, bool]:
    """The headline line and whether the target is met."""
    rad = median[RADSTREAM]["per_s"]
    claimed, total = annex_e_coverage()
    faster = max(PEERS, key=lambda peer: median[peer]["per_s"])
    ratio = rad / median[faster]["per_s"]
    full = claimed == total and coverage[RADSTREAM].handled == coverage[RADSTREAM].probed
    ok = ratio >= TARGET_RATIO and full
    ratios = ", ".join(f"radstream/{p} x{rad / median[p]['per_s']:.2f}" for p in PEERS)
    ratios = ratios.replace(" x", " throughput x", 1)
    peers = ", ".join(f"{p} {coverage[p].handled}/{coverage[p].rows}" for p in PEERS)
    pipelines = "".join(
        f"; {name}/{faster} x{median[name]['per_s'] / median[faster]['per_s']:.2f}"
        for name in PIPELINES
        if name in median
    )
    line = (
        f"{ratios}; coverage radstream {claimed}/{total}, {peers} "
        f"(target: >=2x the faster peer, {faster}: {'MET' if ok else 'MISSED'}, "
        f"x{ratio:.2f}){pipelines}"
    )
    return line, ok


# -- main --------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    return {
        package: importlib.metadata.version(package)
        for package in ("pydicom", "dicognito", "deid", "presidio-analyzer", "spacy")
    }


def _tools(cleaner: PresidioTextCleaner, *, clean: bool, text_check: bool) -> list[DeidTool]:
    """The tools of a run, radstream's first (preparing the pixel stage is not timed)."""
    tools: list[DeidTool] = [
        RadstreamProfileTool(cleaner=cleaner),
        RadstreamPipelineTool(cleaner=cleaner),
        DicognitoTool(),
        PydicomDeidTool(),
    ]
    if text_check:
        # The production pixel stage (engine loaded, thresholds calibrated): not timed.
        tools.insert(
            2,
            RadstreamPipelineTool(
                cleaner=cleaner,
                name=PIPELINE_TEXT,
                description="as radstream-pipeline, + the pixel stage (DeidSettings defaults): "
                "text check on every slice, OCR where text is found, written pixels verified",
                pixel_policy=DeidSettings().pixel_stage(cleaner),
            ),
        )
    if clean:
        tools.append(
            RadstreamProfileTool(
                cleaner=cleaner,
                profile=DeidProfile(options=frozenset({ProfileOption.CLEAN_DESCRIPTORS})),
                name=CLEAN,
                description="as radstream, + Clean Descriptors Option: PHI values collected, "
                "Presidio on descriptors, fresh cleaner (empty memo) each round",
                fresh_cleaner=True,
            )
        )
    return tools


def run(
    config: BenchConfig, *, profile: bool | None, clean: bool, text_check: bool = True
) -> dict[str, Any]:
    """Write the inputs, measure coverage, run the rounds, profile if asked or below target."""
    started = time.perf_counter()
    cleaner = warm_cleaner()
    warm_calls = cleaner.stats.calls
    tools = _tools(cleaner, clean=clean, text_check=text_check)
    radstream = next(t for t in tools if isinstance(t, RadstreamProfileTool))
    with tempfile.TemporaryDirectory(prefix="radstream-bench-deid-") as tmp:
        root = Path(tmp)
        inputs = write_inputs(config, _reset(root / "in"))
        rows, source = annex_e_rows()
        probe_path = _reset(root / "probe") / "probe.dcm"
        original = write_probe(rows, probe_path)
        coverage = {
            tool.name: probe_tool(tool, rows, probe_path, original, root / "probe" / tool.name)
            for tool in tools
            if tool.name not in (*PIPELINES, CLEAN)  # the same apply_profile as radstream
        }
        for tool in tools:  # warm-up: imports, dictionaries, caches; not timed
            run_round(tool, -1, inputs[:WARMUP_INSTANCES], root / "warmup" / tool.name)
        results: dict[str, list[RoundResult]] = {tool.name: [] for tool in tools}
        leaks: dict[str, int] = {}
        for number in range(config.rounds):
            shift = number % len(tools)
            for tool in [*tools[shift:], *tools[:shift]]:
                out_dir = root / "out" / tool.name
                result = run_round(tool, number, inputs, out_dir)
                results[tool.name].append(result)
                if number == config.rounds - 1:
                    leaks[tool.name] = residual_identity(out_dir)
                # Deleted at once, so the output never queues up for writeback to disk.
                shutil.rmtree(out_dir)
                print(
                    f"  round {number + 1}/{config.rounds} {tool.name:<20}"
                    f"{result.per_s:8.1f} inst/s {1e3 * result.cpu_seconds / result.instances:6.2f}"
                    f" CPU ms/inst",
                    flush=True,
                )
        pipeline = next(t for t in tools if t.name == PIPELINE)
        assert isinstance(pipeline, RadstreamPipelineTool)
        checks = {name: f"name/ID left in {leaks[name]} files" for name in results}
        for tool in tools:
            if isinstance(tool, RadstreamPipelineTool):
                statuses = ", ".join(f"{k} {v}" for k, v in sorted(tool.statuses.items()))
                checks[tool.name] += f"; last round: {statuses}"
        checks[PIPELINE] += f"; cleaner calls, all rounds: {cleaner.stats.calls - warm_calls}"
        for tool in tools:
            if isinstance(tool, RadstreamProfileTool):
                checks[tool.name] += f"; last round: {tool.cleaner_use()}"
        median = medians(results)
        line, ok = summary(median, coverage)
        profile_report = None
        if profile or (profile is None and not ok):
            print("  profiling radstream (not part of the figures)", flush=True)
            subset = inputs[: config.profile_instances]
            profile_report = profile_radstream(radstream, pipeline, subset, root / "profile")
        input_bytes = inputs[0].stat().st_size
    return {
        "config": asdict(config),
        "tools": {tool.name: tool.description for tool in tools},
        "input_bytes_per_instance": input_bytes,
        "table_source": source,
        "median": median,
        "ratio_radstream_vs": {
            p: median[RADSTREAM]["per_s"] / median[p]["per_s"] for p in median if p != RADSTREAM
        },
        "coverage": {name: c.as_dict() for name, c in coverage.items()},
        "coverage_claimed": annex_e_coverage(),
        "checks": checks,
        "summary": line,
        "within_target": ok,
        "rounds": {name: [asdict(r) for r in rs] for name, rs in results.items()},
        "profile": profile_report,
        "wall_s": time.perf_counter() - started,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "versions": _versions(),
        "_results": results,
        "_coverage": coverage,
    }


def describe(report: dict[str, Any]) -> str:
    """What was run, in a few lines."""
    config, versions = report["config"], report["versions"]
    lines = [
        f"{config['instances']} synthetic CT instances ({config['studies']} studies, "
        f"{config['rows']}x{config['columns']} 16-bit, {report['input_bytes_per_instance']} "
        f"bytes each), file in -> file out, {config['rounds']} rounds, tool order rotating; "
        f"median reported. Python {report['python']}, {report['cpus']} CPUs, "
        + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]
    lines += [f"  {name:<20}{text}" for name, text in report["tools"].items()]
    lines.append(
        "check: output files whose header (sequences and private blocks included) still holds a"
        " patient's family name or ID; every input carries them in Patient's Name/ID, in"
        " Additional Patient History and in a private element, every 10th in Image Comments"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tests.bench.bench_deid``."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_deid",
        description="\n\n".join((__doc__ or "").split("\n\n")[:3]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="60 instances, for development")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    parser.add_argument("--rounds", type=int, help="rounds per tool (default 3)")
    parser.add_argument("--profile", action="store_true", help="profile even within the target")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument(
        "--no-text-check",
        action="store_true",
        help="skip the radstream-pipeline-text variant (the pixel stage: OCR engine loaded)",
    )
    parser.add_argument(
        "--no-clean",
        action="store_true",
        help="skip the radstream-clean variant (Clean Descriptors Option, Presidio NER)",
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.rounds:
        config = BenchConfig(**{**asdict(config), "rounds": args.rounds})
    warnings.simplefilter("ignore")  # pydicom's value warnings, the same for every tool
    profile = True if args.profile else False if args.no_profile else None
    report = run(
        config, profile=profile, clean=not args.no_clean, text_check=not args.no_text_check
    )
    results, coverage = report.pop("_results"), report.pop("_coverage")
    print()
    print(describe(report))
    print()
    print(table(results, report["median"], report["checks"]))
    print()
    print(coverage_table(coverage, report["coverage_claimed"]))
    print()
    print(report["summary"])
    if report["profile"]:
        print()
        print(profile_text(report["profile"]))
    save_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
