"""The service registry as the CLI shows it: each service's own spec, its names, what `up` says."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

from radstream.cli.main import app
from radstream.cli.stack import RunningService
from radstream.common.service import SERVICE_PACKAGES, SERVICES, collect_services, service_named
from radstream.deid.config import DeidSettings
from radstream.ingest.config import IngestSettings
from tests.settings_variables import variables

SERVICES_DIR = Path(__file__).resolve().parents[3] / "services"
SETTINGS_OF: dict[str, type[BaseSettings]] = {"ingest": IngestSettings, "deid": DeidSettings}


def defaults(model: type[BaseSettings]) -> Iterator[tuple[str, Any]]:
    """Each variable a settings class reads, with its default."""
    for variable, field in variables(model):
        yield variable, field.default


def test_run_help_lists_every_registered_service() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    for spec in SERVICES:
        assert spec.name in result.output


def test_each_service_declares_itself_in_its_own_package() -> None:
    assert [spec.name for spec in SERVICES] == list(SERVICE_PACKAGES)
    registry = (SERVICES_DIR / "common" / "service.py").read_text()
    for spec in SERVICES:
        for variable in (*spec.ports.values(), *spec.local_settings):
            assert variable not in registry, f"the registry names {spec.name}'s {variable}"
    assert service_named("ingest").ports["DICOM"] == "RADSTREAM_INGEST_DICOM_PORT"


def test_a_package_without_a_spec_of_its_own_name_is_refused() -> None:
    with pytest.raises(ModuleNotFoundError):
        collect_services(("common",))


def test_collecting_the_services_loads_no_service_extra() -> None:
    code = (
        "import sys, radstream.common.service as s; "
        "assert s.SERVICES; "
        "print(sorted(m for m in ('pydicom', 'pynetdicom', 'spacy', 'presidio_analyzer') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_shown_setting_has_the_settings_class_default() -> None:
    shown = [(spec.name, item) for spec in SERVICES for item in spec.shown]
    assert shown, "ingest shows its AE title"
    for name, item in shown:
        assert dict(defaults(SETTINGS_OF[name]))[item.variable] == item.default, item.variable


def test_up_prints_the_ae_title_a_sender_must_call_with_the_ports() -> None:
    spec = service_named("ingest")
    running = RunningService(
        spec=spec,
        health_port=40124,
        process=SimpleNamespace(pid=41230),  # type: ignore[arg-type]
        ports={"DICOM": 40126},
        shown=spec.shown_values({}),
    )

    lines = running.describe()

    assert "  DICOM: 127.0.0.1:40126" in lines
    assert "  DICOM called AE title (storescu -aec): RADSTREAM" in lines


def test_the_shown_value_is_the_one_the_service_gets() -> None:
    spec = service_named("ingest")

    shown = spec.shown_values({"RADSTREAM_INGEST_DICOM_AE_TITLE": "RSTEST"})

    assert shown == {"DICOM called AE title (storescu -aec)": "RSTEST"}
