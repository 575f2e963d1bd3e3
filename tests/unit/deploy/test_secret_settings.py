"""Passwords and tokens inside larger settings come only from secret files, never the environment.

A DSN with a password or an export target with an inline bearer token, given as a plain
environment variable, sits in every child's environment, ``/proc/<pid>/environ`` and crash
reports. The settings refuse it there and take it from the secrets directory
(``RADSTREAM_SECRETS_DIR``), where the Helm chart projects Secrets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from radstream.common.settings import (
    SECRETS_DIR_VARIABLE,
    DeliverySettings,
    SecretInEnvironmentError,
    dsn_has_password,
)
from radstream.ingest.config import AssemblySettings, IngestSettings
from radstream.ingest.pacs import PacsSettings

PASSWORD = "synthetic-pw-4711"
DSN = f"postgresql://radstream:{PASSWORD}@pg.hospital.local:5432/radstream"
DSN_SETTINGS: list[tuple[type[BaseSettings], str, str]] = [
    (DeliverySettings, "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN", "idempotency_dsn"),
    (AssemblySettings, "RADSTREAM_INGEST_ASSEMBLY_DSN", "dsn"),
    (PacsSettings, "RADSTREAM_INGEST_PACS_CURSOR_DSN", "cursor_dsn"),
]
STOW_TARGET = {"name": "research", "transport": "stow-rs", "stow_url": "https://r.example"}


@pytest.fixture(autouse=True)
def no_secrets_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(directory))
    return directory


@pytest.mark.parametrize(("model", "variable", "field"), DSN_SETTINGS)
def test_a_dsn_with_a_password_in_the_environment_is_refused_without_quoting_it(
    model: type[BaseSettings], variable: str, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, DSN)

    with pytest.raises(SecretInEnvironmentError, match=f"{variable} carries a password") as err:
        model()

    assert PASSWORD not in str(err.value)
    assert "pg.hospital.local" not in str(err.value)


@pytest.mark.parametrize(("model", "variable", "field"), DSN_SETTINGS)
def test_the_same_dsn_from_a_secret_file_is_accepted(
    model: type[BaseSettings], variable: str, field: str, no_secrets_dir: Path
) -> None:
    (no_secrets_dir / variable).write_text(DSN + "\n")

    assert getattr(model(), field) == DSN


@pytest.mark.parametrize(("model", "variable", "field"), DSN_SETTINGS)
def test_a_dsn_without_a_password_may_sit_in_the_environment(
    model: type[BaseSettings], variable: str, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = "postgresql://radstream@pg.hospital.local/radstream?sslmode=verify-full"
    monkeypatch.setenv(variable, dsn)

    assert getattr(model(), field) == dsn


def test_the_service_settings_refuse_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADSTREAM_INGEST_ASSEMBLY_DSN", DSN)

    with pytest.raises(SecretInEnvironmentError, match="RADSTREAM_INGEST_ASSEMBLY_DSN"):
        IngestSettings()


@pytest.mark.parametrize(
    ("dsn", "carries"),
    [
        (DSN, True),
        ("postgresql://pg.hospital.local/radstream?user=rs&password=x", True),
        ("host=pg.hospital.local user=radstream password=x dbname=radstream", True),
        ("postgresql://radstream@pg.hospital.local/radstream", False),
        ("postgresql://radstream:@pg.hospital.local/radstream", False),
        ("sqlite:///.radstream/idempotency.sqlite3", False),
        ("host=pg.hospital.local user=radstream passfile=/etc/pgpass", False),
        ("postgresql://[::1/radstream", True),  # unparseable: fail closed
    ],
)
def test_a_password_is_found_in_every_dsn_form(dsn: str, *, carries: bool) -> None:
    assert dsn_has_password(dsn) is carries


def test_an_export_target_token_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = STOW_TARGET | {"bearer_token": "synthetic-token-0815"}
    monkeypatch.setenv("RADSTREAM_INGEST_PACS_EXPORT_TARGETS", json.dumps([target]))

    with pytest.raises(SecretInEnvironmentError, match="EXPORT_TARGETS") as err:
        PacsSettings()

    assert "synthetic-token-0815" not in str(err.value)


def test_export_targets_with_a_token_come_from_a_secret_file(no_secrets_dir: Path) -> None:
    target = STOW_TARGET | {"bearer_token": "synthetic-token-0815"}
    (no_secrets_dir / "RADSTREAM_INGEST_PACS_EXPORT_TARGETS").write_text(json.dumps([target]))

    [loaded] = PacsSettings().export_targets

    assert loaded.token() == "synthetic-token-0815"


def test_an_export_target_with_a_token_file_may_sit_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = STOW_TARGET | {"bearer_token_file": "/etc/radstream/export/token"}
    monkeypatch.setenv("RADSTREAM_INGEST_PACS_EXPORT_TARGETS", json.dumps([target]))

    [loaded] = PacsSettings().export_targets

    assert loaded.bearer_token_file == Path("/etc/radstream/export/token")
