"""The conformal guarantee on the real pipeline: `radstream deid --leak-rate` on a held-out split.

The CLI runs as a user runs it (real OCR engine, the calibration shipped as package data); the
outputs are judged against the synthetic ground truth. The measured leak rate must be
consistent with the configured bound -- the bound lies inside or above its exact 95% interval
-- and the review rate it costs is reported. The split is small (CPU time); ``make eval-deid``
runs the same on 200 instances.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radstream.deid.eval_pixels import ensure_split, evaluate_run, run_cli
from radstream.deid.pixels.risk import threshold_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEAK_RATE = 0.05
COUNT = 40


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    root = tmp_path_factory.mktemp("eval-deid")
    split_dir, out_dir = root / "held-out", root / "out"
    ensure_split(split_dir, "held-out", COUNT)
    seconds = run_cli(split_dir, out_dir, engine="rapidocr", leak_rate=LEAK_RATE)
    return split_dir, out_dir, seconds


def test_measured_leak_rate_is_within_the_bound_and_the_review_rate_is_reported(
    run: tuple[Path, Path, float],
) -> None:
    split_dir, out_dir, seconds = run
    summary, verdicts = evaluate_run(
        split_dir, out_dir, engine_name="rapidocr", leak_rate=LEAK_RATE, seconds=seconds
    )
    print("\n" + summary.table())  # the review rate it costs, in the test log
    assert summary.instances == COUNT
    assert summary.rejected == 0
    low, _ = summary.leak_rate_ci95
    assert low <= LEAK_RATE, summary.to_dict()
    threshold = threshold_for(LEAK_RATE, "rapidocr")
    for verdict in verdicts:
        if verdict.status == "released" and verdict.risk is not None:
            assert not threshold.holds(verdict.risk)  # released only within the threshold
    if threshold.fail_closed:  # then nothing with text may have been released
        assert all(
            v.status == "held" for v in verdicts if v.pixel_decision not in {None, "no_text"}
        )


def test_each_run_writes_report_html_for_its_owner_in_the_phi_zone(
    run: tuple[Path, Path, float],
) -> None:
    _, out_dir, _ = run
    report = out_dir / "report.html"
    assert report.stat().st_mode & 0o777 == 0o600
    content = report.read_text(encoding="utf-8")
    held = json.loads((out_dir / "held.json").read_text(encoding="utf-8"))
    assert content.count("<section") >= len(held)
    assert "data:image/png;base64," in content or not held
