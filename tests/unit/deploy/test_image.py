"""What the container image installs (deploy/Dockerfile), checked without a container engine.

The image installs radstream's wheel with some extras. A module left out of the wheel, or an
extra a service needs left out of the image, would only show when the pod starts in the
hospital; these tests show it here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from radstream.common.service import SERVICES

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """radstream's wheel, built as the image's ``pip install .`` builds it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("radstream-*.whl")
    return zipfile.ZipFile(built)


def image_extras() -> set[str]:
    [extras] = re.findall(
        r'pip install -c requirements/constraints\.txt "\.\[([a-z0-9,]+)\]"', DOCKERFILE
    )
    return set(extras.split(","))


def test_the_wheel_carries_every_module_of_the_package(wheel: zipfile.ZipFile) -> None:
    sources = {
        "radstream/" + path.relative_to(ROOT / "services").as_posix()
        for path in (ROOT / "services").rglob("*.py")
    }

    missing = sorted(sources - set(wheel.namelist()))

    assert missing == [], "modules the image would lack"
    assert "radstream/py.typed" in wheel.namelist()


def test_the_wheel_installs_the_radstream_command(wheel: zipfile.ZipFile) -> None:
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]

    text = wheel.read(entry_points).decode()

    assert "radstream = radstream.cli.main:main" in text, "the chart runs `radstream run NAME`"


def test_the_image_installs_what_every_registered_service_needs() -> None:
    extras = image_extras()
    declared = set(PYPROJECT["project"]["optional-dependencies"])

    assert extras <= declared, "extras the project does not declare"
    assert {spec.name for spec in SERVICES} <= extras, "each service's own extra"
    assert {"postgres", "s3"} <= extras, "the production guard and object storage"
    assert not extras & {"local", "bench", "dev"}, "no embedded broker or test tools in production"


def test_the_image_runs_as_the_user_the_chart_expects() -> None:
    values = (ROOT / "helm" / "radstream" / "values.yaml").read_text()

    assert re.search(r"^USER 10001:10001$", DOCKERFILE, re.MULTILINE)
    assert "runAsUser: 10001" in values
    assert re.search(r"^WORKDIR /var/lib/radstream$", DOCKERFILE, re.MULTILINE)
    assert (
        "workingDir: /var/lib/radstream"
        in (ROOT / "helm" / "radstream" / "templates" / "deployment.yaml").read_text()
    )
