"""Markdown tables for benchmark output: readable in a terminal, pasteable into docs."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A pipe table: the first column left-aligned (names), the others right-aligned (figures).

    Cells are ``str()`` of what is given, padded so the columns line up as plain text too; a
    ``|`` inside a cell is escaped so it cannot split the row.
    """
    if not columns:
        raise ValueError("a table needs at least one column")
    cells = [[_cell(value) for value in row] for row in rows]
    for row in cells:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns")
    header = [_cell(name) for name in columns]
    widths = [max(3, len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.ljust(width) if index == 0 else value.rjust(width)
            for index, (value, width) in enumerate(zip(values, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * widths[0], *(("-" * (width - 1)) + ":" for width in widths[1:])]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *(line(row) for row in cells)])


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
