"""PACS settings and the pull cursor, without a PACS."""

from __future__ import annotations

from pathlib import Path

import pytest

from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.pacs import PacsSettings
from radstream.ingest.pull_cursor import SqlitePullCursor, open_pull_cursor


class TestPacsSettings:
    def test_pull_mode_reads_its_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RADSTREAM_INGEST_PACS_MODE", "pull")
        monkeypatch.setenv("RADSTREAM_INGEST_PACS_ORTHANC_URL", "https://orthanc.example:8042/")
        monkeypatch.setenv("RADSTREAM_INGEST_PACS_USERNAME", "radstream")
        monkeypatch.setenv("RADSTREAM_INGEST_PACS_PASSWORD", "synthetic-secret")
        monkeypatch.setenv(
            "RADSTREAM_INGEST_PACS_EXPORT_TARGETS",
            '[{"name": "research", "transport": "c-store", "host": "10.0.0.9", "port": 104,'
            ' "ae_title": "RESEARCH"}]',
        )
        settings = PacsSettings()
        assert settings.mode == "pull"
        assert settings.orthanc_url == "https://orthanc.example:8042"
        assert settings.auth() is not None
        assert "synthetic-secret" not in repr(settings)
        [target] = settings.export_targets
        assert (target.name, target.transport, target.port) == ("research", "c-store", 104)

    def test_credentials_do_not_belong_in_the_url(self) -> None:
        with pytest.raises(
            IngestConfigurationError, match="not in RADSTREAM_INGEST_PACS_ORTHANC_URL"
        ):
            PacsSettings(orthanc_url="http://user:pw@orthanc.example:8042")

    def test_username_and_password_come_together(self) -> None:
        with pytest.raises(IngestConfigurationError, match="both"):
            PacsSettings(username="radstream")

    def test_export_target_names_are_unique(self) -> None:
        target = {"name": "research", "transport": "stow-rs", "stow_url": "https://x.example"}
        with pytest.raises(IngestConfigurationError, match="own name"):
            PacsSettings(export_targets=[target, target])


class TestPullCursor:
    async def test_the_position_survives_a_reopen(self, tmp_path: Path) -> None:
        dsn = f"sqlite:///{tmp_path}/cursor.sqlite3"
        cursor = open_pull_cursor(dsn)
        await cursor.open()
        assert await cursor.load("orthanc:http://pacs") is None
        await cursor.save("orthanc:http://pacs", 41)
        await cursor.save("orthanc:http://pacs", 42)
        await cursor.close()

        reopened = open_pull_cursor(dsn)
        await reopened.open()
        assert isinstance(reopened, SqlitePullCursor)
        assert await reopened.load("orthanc:http://pacs") == 42
        assert await reopened.load("orthanc:http://other") is None
        await reopened.close()

    def test_an_unknown_dsn_is_a_configuration_error(self) -> None:
        with pytest.raises(IngestConfigurationError, match="CURSOR_DSN"):
            open_pull_cursor("mysql://somewhere")
