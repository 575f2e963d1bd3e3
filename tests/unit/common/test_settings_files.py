"""Settings from secret files: how the Helm chart hands every secret to a service."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from radstream.common.settings import SECRETS_DIR_VARIABLE, DeliverySettings, KafkaSettings
from radstream.ingest.config import IngestSettings


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("RADSTREAM_KAFKA_SASL_PASSWORD", "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(tmp_path))
    return tmp_path


def test_a_secret_comes_from_the_file_named_after_its_variable(secrets: Path) -> None:
    (secrets / "RADSTREAM_KAFKA_SASL_PASSWORD").write_text("s3cret\n")  # as a Secret mounts it
    (secrets / "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN").write_text("postgresql://guard@pg/rs")

    kafka = KafkaSettings()

    assert kafka.sasl_password is not None
    assert kafka.sasl_password.get_secret_value() == "s3cret"
    assert DeliverySettings().idempotency_dsn == "postgresql://guard@pg/rs"


def test_a_services_nested_settings_and_structured_values_read_files_too(secrets: Path) -> None:
    tokens = {"ris": "0" * 64}
    (secrets / "RADSTREAM_KAFKA_SASL_PASSWORD").write_text("s3cret")
    (secrets / "RADSTREAM_INGEST_HTTP_TOKEN_SHA256").write_text(json.dumps(tokens))

    settings = IngestSettings()

    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "s3cret"
    assert settings.http.token_sha256 == tokens


def test_a_variable_that_is_set_wins_over_a_file(
    secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (secrets / "RADSTREAM_KAFKA_SASL_PASSWORD").write_text("from-file")
    monkeypatch.setenv("RADSTREAM_KAFKA_SASL_PASSWORD", "from-env")

    password = KafkaSettings().sasl_password

    assert password is not None and password.get_secret_value() == "from-env"


def test_without_a_secrets_directory_nothing_is_read_and_nothing_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RADSTREAM_KAFKA_SASL_PASSWORD", raising=False)
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(tmp_path / "absent"))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings = KafkaSettings()

    assert settings.sasl_password is None
