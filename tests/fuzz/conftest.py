"""The fuzz targets: marked ``fuzz``, and summarised (inputs tried, failures) after the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fuzz.budget import budget, full_run
from tests.fuzz.campaign import CAMPAIGNS, FUZZ_DIR

_HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fuzz: a fuzz target (short budget in make test, FUZZ_BUDGET in make fuzz)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.fuzz)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    campaigns = [campaign for campaign in CAMPAIGNS if campaign.tried]
    if not campaigns:
        return
    write = terminalreporter.write_line
    terminalreporter.section(f"fuzz targets (budget {budget()} inputs per target)")
    write(f"{'target':<26} {'inputs':>8} {'failed':>7} {'distinct':>9} {'known':>6} {'seconds':>8}")
    for campaign in campaigns:
        write(
            f"{campaign.target:<26} {campaign.tried:>8} {campaign.failed:>7} "
            f"{len(campaign.failures):>9} {sum(campaign.known.values()):>6} "
            f"{campaign.seconds:>8.1f}"
        )
    for campaign in campaigns:
        write(f"  {campaign.target}: {campaign.answer_mix()}")
    for campaign in campaigns:
        if campaign.failures or campaign.known:
            write(campaign.report())
    if full_run():
        FUZZ_DIR.mkdir(parents=True, exist_ok=True)
        report = [
            {
                "target": campaign.target,
                "inputs": campaign.tried,
                "failed": campaign.failed,
                "distinct_failures": [
                    {"kind": f.kind, "where": f.where, "count": f.count, "detail": f.detail}
                    for f in campaign.failures.values()
                ],
                "known_open": [
                    {"kind": kind, "where": where, "count": count}
                    for (kind, where), count in campaign.known.items()
                ],
                "seconds": round(campaign.seconds, 1),
                "answers": dict(campaign.answers.most_common()),
            }
            for campaign in campaigns
        ]
        (FUZZ_DIR / "report.json").write_text(json.dumps(report, indent=2) + "\n")
