"""A user's clone stands on its own: nothing in it points outside the checkout.

Files may not refer to a ``shared`` folder beside the checkout or to the absolute paths of the
machine the project was built on; a clone has neither. An evaluation target that reads
evaluation data kept outside the repository may, if the line that names it says so with
``EVALUATION_MARKER``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
EVALUATION_MARKER = "evaluation data outside the repository"
# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join([re.escape("../" + "shared"), re.escape("/" + "work/")]))


def repository_files() -> list[Path]:
    """Tracked files and new ones git does not ignore (what a commit would carry)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def test_no_file_points_outside_the_checkout() -> None:
    offending = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary: images, DICOM samples
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE.search(line) and EVALUATION_MARKER not in line:
                offending.append(f"{path.relative_to(ROOT)}:{number}")

    assert offending == []


def test_the_pattern_finds_what_it_must() -> None:
    assert OUTSIDE.search("see [plan](../" + "shared/design/architecture.md)")
    assert OUTSIDE.search('Path("/' + 'work/shared/data/table.json")')
    assert not OUTSIDE.search("a network/ path and shared memory")
