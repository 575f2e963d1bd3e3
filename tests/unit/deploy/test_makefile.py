"""What the Makefile installs: the demo only what it needs, `make test` everything.

Make's dry run (``make -n``) prints the commands a target would run without running them; a
virtual environment folder of our own (``VENV=``) stands for a fresh clone or one where
``make demo`` has already run.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
EXTRAS: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]
ALL_EXTRAS = set(EXTRAS)
EDITABLE_INSTALL = re.compile(r'pip install .*-e "\.\[([a-z0-9,-]+)\]"')
SELF_REFERENCE = re.compile(r"^radstream\[([a-z0-9,-]+)\]$")


def dry_run(target: str, venv: Path) -> str:
    # Under `make test` the outer make's MAKEFLAGS and MAKELEVEL reach this one, which would then
    # print "Entering directory" lines and inherit the outer flags: run it as a user would.
    outer = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"}
    env = {name: value for name, value in os.environ.items() if name not in outer}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return done.stdout


def installed_extras(commands: str) -> set[str]:
    """The extras the commands install, with those they bring in (``radstream[dicom]``)."""
    named = [extra for found in EDITABLE_INSTALL.findall(commands) for extra in found.split(",")]
    covered = set()
    while named:
        extra = named.pop()
        covered.add(extra)
        for requirement in EXTRAS[extra]:
            if found := SELF_REFERENCE.match(requirement):
                named.extend(found.group(1).split(","))
    return covered


def test_make_demo_installs_only_what_the_demo_runs(tmp_path: Path) -> None:
    commands = dry_run("demo", tmp_path / "venv")

    assert installed_extras(commands) == {"local", "ingest", "deid", "dicom", "ocr"}
    assert "apt-get" not in commands, "the demo needs no Debian packages"
    assert commands.rstrip().endswith("radstream demo")


def test_make_test_on_a_fresh_clone_installs_every_extra(tmp_path: Path) -> None:
    assert installed_extras(dry_run("test", tmp_path / "venv")) == ALL_EXTRAS


def test_make_test_after_make_demo_installs_the_rest(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed-demo").touch()  # what `make demo` leaves

    assert installed_extras(dry_run("test", venv)) == ALL_EXTRAS
    assert installed_extras(dry_run("demo", venv)) == set(), "the demo's stamp is current"


def test_make_demo_after_make_test_installs_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    (venv / ".installed-demo").touch()  # what `make test` leaves

    assert installed_extras(dry_run("demo", venv)) == set()
