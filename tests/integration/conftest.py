"""Fixtures of the integration tests beyond the shared ones in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from radstream.common.settings import EMBEDDED_BROKER_TUNING, KafkaSettings


@pytest.fixture
def operator_env(kafka_settings: KafkaSettings, tmp_path: Path) -> dict[str, str]:
    """What an operator's shell holds to run `radstream` against the test broker."""
    return {
        "RADSTREAM_KAFKA_BOOTSTRAP": kafka_settings.bootstrap or "",
        "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN": f"sqlite:///{tmp_path / 'idem.sqlite3'}",
        "RADSTREAM_BLOB_PHI_URI": f"file://{tmp_path / 'phi'}",
        "RADSTREAM_BLOB_RELEASE_URI": f"file://{tmp_path / 'release'}",
        "COLUMNS": "200",
        **EMBEDDED_BROKER_TUNING,
    }
