"""``radstream restructure``: free-text reports into a template, on the command line.

A text file (or a folder of them) is shown side by side: the source report and the structured
report, then what validation and report QA found. A ``.jsonl`` file in the Rad-ReStruct format is
structured line by line into ``--out`` (see :mod:`radstream.restructure.batch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from radstream.restructure.batch import Backend
    from radstream.restructure.template import Template

__all__ = ["restructure"]

console = Console()


def restructure(
    source: Annotated[
        Path, typer.Argument(exists=True, help="A report (.txt), a folder of them, or a .jsonl.")
    ],
    template: Annotated[
        str, typer.Option(help="Template id: ct-abdomen, ct-chest, chest-xray-radrestruct.")
    ] = "ct-abdomen",
    backend: Annotated[
        str | None,
        typer.Option(help="rules or hybrid; default the best the template has."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where a .jsonl input's results go (one line each).")
    ] = None,
) -> None:
    """Structure reports into a template: side by side, or JSON Lines to JSON Lines."""
    from radstream.restructure.batch import JsonlSummary, backend_for, structure_jsonl  # noqa: PLC0415
    from radstream.restructure.template import TemplateError, load_template  # noqa: PLC0415

    try:
        chosen = load_template(template)
        engine = backend_for(chosen, backend)
    except (TemplateError, ValueError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if source.suffix == ".jsonl":
        if out is None:
            console.print("[red]a .jsonl input needs --out for its results[/]")
            raise typer.Exit(2)
        summary = JsonlSummary()
        with source.open(encoding="utf-8") as lines, out.open("w", encoding="utf-8") as target:
            for line in structure_jsonl(lines, engine, summary):
                target.write(line + "\n")
        console.print(
            f"{summary.reports} reports structured ({summary.findings} findings present, "
            f"backend {engine.name}), {summary.errors} lines refused -> {out}"
        )
        raise typer.Exit(1 if summary.errors else 0)
    files = sorted(source.glob("*.txt")) if source.is_dir() else [source]
    for path in files:
        _side_by_side(path, chosen, engine)


def _side_by_side(path: Path, template: Template, engine: Backend) -> None:
    from radstream.restructure.qa import report_qa  # noqa: PLC0415
    from radstream.restructure.render import to_text  # noqa: PLC0415
    from radstream.restructure.validation import needs_review, validate  # noqa: PLC0415

    report = path.read_text(encoding="utf-8")
    structured = engine.structure(report)
    issues = validate(report, structured, template) + report_qa(report, structured, template)
    table = Table(title=f"{path.name} ({structured.provenance.backend})", show_lines=False)
    table.add_column("source report", overflow="fold")
    table.add_column("structured", overflow="fold")
    table.add_row(report.strip(), to_text(structured, template).strip())
    console.print(table)
    for issue in issues:
        where = " / ".join(issue.path) or "statement"
        console.print(f"  {issue.severity}: {issue.kind} ({where}) {issue.detail}")
    verdict = "goes to review" if needs_review(issues) else "may be finalized after sign-off"
    console.print(f"  -> {verdict}")
