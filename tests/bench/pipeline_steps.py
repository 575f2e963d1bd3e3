"""Where ``deidentify_instance`` spends its time on a CT slice, step by step.

``python -m tests.bench.pipeline_steps`` (default: 60 synthetic CT slices of bench_deid's quick
set, 7 passes). Each step is timed with the calling thread's CPU clock (``time.thread_time``),
so another process on the machine adds nothing; a step's figure is its best pass, in
milliseconds per slice. The pipeline runs with the pixel stage (the text check) and without
it, pass by pass in turn. The steps are the pipeline's own functions, wrapped for the run and
restored after it; what no step covers (the audit record, the outcome, the pixel policy's
header check) is the difference to the total. The audit digests run on a helper thread and
are not in the main thread's clock.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from radstream.deid import pipeline
from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY, PixelPolicy
from radstream.deid.config import DeidSettings
from radstream.deid.pixels.stage import PixelStage
from radstream.deid.verify import forget_searches
from tests.bench.bench_deid import QUICK, RadstreamPipelineTool, warm_cleaner, write_inputs

# (label, owner, attribute): the pipeline's steps in the order they run.
STEPS: tuple[tuple[str, Any, str], ...] = (
    ("strict lazy read (structure scan, codec, pydicom lazily)", pipeline, "read_instance_lazily"),
    ("PHI values collected from the codec's values", pipeline, "_collect_phi"),
    ("text check: decode, screen, OCR where text is found", PixelStage, "inspect"),
    ("profile", pipeline, "apply_profile"),
    ("redaction of PHI boxes", PixelStage, "clean"),
    ("kept IS/DS/UN values proved readable", pipeline, "_convert_kept"),
    ("write (encode_part10)", pipeline, "_encode"),
    ("read back by the codec (structure scan again)", pipeline, "_read_back"),
    ("search of every PHI value in every value written", pipeline, "find_residual_phi"),
    ("written pixels verified", PixelStage, "verify"),
)
TOTAL = "whole deidentify_instance (main thread)"


@contextmanager
def timed_steps(spent: dict[str, float]) -> Iterator[None]:
    """Wrap every step to add its thread CPU seconds to ``spent``; unwrap on exit."""
    originals = [(owner, name, getattr(owner, name)) for _, owner, name in STEPS]
    for (label, owner, name), (_, _, original) in zip(STEPS, originals, strict=True):
        setattr(owner, name, _timed(label, original, spent))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _timed(label: str, function: Callable[..., Any], spent: dict[str, float]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.thread_time() - started

    return timed


def measure(
    data: Sequence[bytes],
    policies: dict[str, PixelPolicy],
    tool: RadstreamPipelineTool,
    passes: int,
) -> dict[str, dict[str, float]]:
    """Best pass per step and policy, in ms per instance."""
    best: dict[str, dict[str, float]] = {name: {} for name in policies}
    for _ in range(passes):
        for name, policy in policies.items():
            spent: dict[str, float] = {}
            forget_searches()  # each pass starts cold, as a new series would
            with timed_steps(spent):
                started = time.thread_time()
                for item in data:
                    tool.deidentify(item, policy)
                spent[TOTAL] = time.thread_time() - started
            for label, seconds in spent.items():
                ms = 1000 * seconds / len(data)
                best[name][label] = min(best[name].get(label, ms), ms)
    return best


def table(best: dict[str, dict[str, float]]) -> str:
    """Steps as rows, policies as columns."""
    names = list(best)
    lines = [f"| step | {' | '.join(names)} |", f"|---|{'---|' * len(names)}"]
    for label in [label for label, _, _ in STEPS] + [TOTAL]:
        cells = [f"{best[name][label]:.2f}" if label in best[name] else "" for name in names]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tests.bench.pipeline_steps``."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.pipeline_steps")
    parser.add_argument("--passes", type=int, default=7, help="passes per policy (default 7)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # pydicom's value warnings
    cleaner = warm_cleaner()
    tool = RadstreamPipelineTool(cleaner=cleaner)
    policies: dict[str, PixelPolicy] = {
        "with the text check": DeidSettings().pixel_stage(cleaner),
        "without": DEFAULT_PIXEL_POLICY,
    }
    with tempfile.TemporaryDirectory() as folder:
        data = [path.read_bytes() for path in write_inputs(QUICK, Path(folder))]
    print(f"{len(data)} CT slices, ms of thread CPU per slice, best of {args.passes} passes")
    print(table(measure(data, policies, tool, args.passes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
