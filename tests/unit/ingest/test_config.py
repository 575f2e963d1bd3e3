"""Ingest settings: read from RADSTREAM_INGEST_* variables, refused when inconsistent."""

from __future__ import annotations

from pathlib import Path

import pytest

from radstream.common.errors import MisconfiguredError
from radstream.common.service import service_named
from radstream.ingest.config import AssemblySettings, DicomSettings, IngestSettings
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.scp import DicomScp


class TestDicomSettings:
    def test_allowed_calling_aes_come_from_a_comma_list(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RADSTREAM_INGEST_DICOM_ALLOWED_CALLING_AES", "CT_1, MR_2 ,")
        monkeypatch.setenv("RADSTREAM_INGEST_DICOM_AE_TITLE", "RS_INGEST")
        settings = IngestSettings()
        assert settings.dicom.allowed_calling_aes == frozenset({"CT_1", "MR_2"})
        assert settings.dicom.ae_title == "RS_INGEST"

    @pytest.mark.parametrize("title", ["", "A" * 17, "BACK\\SLASH"])
    def test_an_invalid_ae_title_is_refused(self, title: str) -> None:
        with pytest.raises((MisconfiguredError, ValueError)):
            DicomSettings(ae_title=title)

    def test_tls_needs_both_certificate_and_key(self, tmp_path: Path) -> None:
        with pytest.raises((MisconfiguredError, ValueError), match="KEYFILE"):
            DicomSettings(tls_certfile=tmp_path / "scp.pem")

    def test_client_certificates_need_the_scp_certificate(self, tmp_path: Path) -> None:
        with pytest.raises((MisconfiguredError, ValueError), match="CERTFILE"):
            DicomSettings(tls_ca_file=tmp_path / "ca.pem")

    def test_accepted_sop_classes_must_be_uids(self) -> None:
        with pytest.raises((MisconfiguredError, ValueError)):
            DicomSettings(accepted_sop_classes="CT Image Storage")


class TestIngestSettings:
    def test_the_assembly_waits_thirty_seconds_by_default(self) -> None:
        assert AssemblySettings().quiet_period_s == 30.0

    def test_reader_limits_follow_the_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RADSTREAM_INGEST_MAX_FILE_BYTES", "4096")
        assert IngestSettings().reader_limits().max_file_bytes == 4096

    def test_push_mode_needs_the_scp_orthanc_sends_to(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RADSTREAM_INGEST_PACS_MODE", "push")
        monkeypatch.setenv("RADSTREAM_INGEST_DICOM_ENABLED", "false")
        with pytest.raises(IngestConfigurationError, match="PACS_MODE=push"):
            IngestSettings()
        monkeypatch.setenv("RADSTREAM_INGEST_DICOM_ENABLED", "true")
        assert IngestSettings().pacs.mode == "push"

    def test_the_ingest_service_is_registered(self) -> None:
        assert service_named("ingest").app_factory == "radstream.ingest.app:create_app"


class TestFailClosedScp:
    async def test_without_allowed_calling_aes_the_scp_does_not_listen_and_is_not_ready(
        self,
    ) -> None:
        scp = DicomScp(DicomSettings(port=0), receiver=None, metrics=None)  # type: ignore[arg-type]
        await scp.start()
        assert scp.refuses_everyone
        with pytest.raises(MisconfiguredError, match="ALLOWED_CALLING_AES"):
            await scp.check()
        await scp.stop()

    async def test_a_demo_may_allow_any_calling_ae_explicitly(self) -> None:
        settings = DicomSettings(host="127.0.0.1", port=0, allow_any_calling_ae=True)
        scp = DicomScp(settings, receiver=None, metrics=None)  # type: ignore[arg-type]
        await scp.start()
        try:
            await scp.check()
            assert scp.port > 0
        finally:
            await scp.stop()
