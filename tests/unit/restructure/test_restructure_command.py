"""``radstream restructure``: side by side for a report, JSON Lines in and out for a dataset."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from radstream.cli.main import app

RUNNER = CliRunner()


def test_a_report_is_shown_beside_its_structure_with_what_validation_found(
    tmp_path: Path,
) -> None:
    report = tmp_path / "ct.txt"
    report.write_text(
        "FINDINGS: 2.1 cm hypodense lesion in the liver. Large free air.\n"
        "IMPRESSION: Pneumoperitoneum.\n"
    )
    result = RUNNER.invoke(app, ["restructure", str(report), "--template", "ct-abdomen"])
    assert result.exit_code == 0, result.output
    assert "source report" in result.output and "structured" in result.output
    assert "lesion: present" in result.output
    assert "critical_not_communicated" in result.output
    assert "goes to review" in result.output


def test_jsonl_in_rad_restruct_format_gives_one_line_per_report(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        {"uid": "1", "findings": "Mild cardiomegaly. No pleural effusion.", "impression": ""},
        {"uid": "2", "findings": "", "impression": "No acute cardiopulmonary disease."},
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n\nnot json\n")
    out = tmp_path / "out.jsonl"
    result = RUNNER.invoke(
        app,
        ["restructure", str(source), "--template", "chest-xray-radrestruct", "--out", str(out)],
    )
    assert result.exit_code == 1, result.output  # one line was refused, the rest went on
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w.get("uid") for w in written[:2]] == ["1", "2"]
    cardiomegaly = ["cardiovascular system", "diseases", "cardiomegaly"]
    assert [entry["path"] for entry in written[0]["structured"]] == [cardiomegaly]
    assert written[1]["structured"] == []
    assert written[2] == {"line": 4, "error": "not JSON"}
    assert "2 reports structured" in result.output and "1 lines refused" in result.output


def test_an_unknown_template_or_backend_is_refused_clearly(tmp_path: Path) -> None:
    report = tmp_path / "r.txt"
    report.write_text("FINDINGS: Normal.")
    unknown = RUNNER.invoke(app, ["restructure", str(report), "--template", "mr-knee"])
    assert unknown.exit_code == 2 and "no template 'mr-knee'" in unknown.output
    no_model = RUNNER.invoke(app, ["restructure", str(report), "--backend", "hybrid"])
    assert no_model.exit_code == 2 and "no classifier ships for ct-abdomen" in no_model.output
