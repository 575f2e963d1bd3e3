"""Deid settings from the environment, and the service factory that validates them at startup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from faststream import FastStream
from prometheus_client import CollectorRegistry

from radstream.common.errors import MisconfiguredError
from radstream.common.service import service_named
from radstream.common.settings import BlobSettings, DeliverySettings, KafkaSettings
from radstream.deid import clean
from radstream.deid.config import DeidSettings, parse_options
from radstream.deid.errors import DeidConfigurationError
from radstream.deid.profile import DeidKeys, DeidProfile, ProfileOption
from tests.unit.deid.study_builder import shared_text_cleaner

KEY = "0123456789abcdef0123456789abcdef-config-test"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KEY", "KEY_FILE", "OPTIONS", "PROFILE_NAME", "MAX_PRIVATE_BYTES"):
        monkeypatch.delenv(f"RADSTREAM_DEID_{name}", raising=False)


class TestOptions:
    def test_options_come_from_a_comma_list_in_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RADSTREAM_DEID_OPTIONS", "retain-uids, clean-descriptors")
        settings = DeidSettings()
        assert settings.options == {ProfileOption.RETAIN_UIDS, ProfileOption.CLEAN_DESCRIPTORS}
        assert settings.profile().options == settings.options

    def test_no_options_is_the_basic_profile(self) -> None:
        assert DeidSettings().profile().options == frozenset()
        assert parse_options("") == frozenset()

    def test_an_unknown_option_fails_naming_the_valid_ones(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RADSTREAM_DEID_OPTIONS", "retain-uids,keep-everything")
        with pytest.raises(DeidConfigurationError, match="keep-everything.*retain-safe-private"):
            DeidSettings()


class TestKey:
    def test_the_key_comes_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RADSTREAM_DEID_KEY", KEY)
        assert DeidSettings().keys() == DeidKeys.from_secret(KEY.encode())

    def test_the_key_comes_from_a_file_with_its_newline_stripped(self, tmp_path: Path) -> None:
        key_file = tmp_path / "key"
        key_file.write_text(KEY + "\n")
        assert DeidSettings(key_file=key_file).keys() == DeidKeys.from_secret(KEY.encode())

    def test_without_a_key_the_service_refuses_to_start(self) -> None:
        with pytest.raises(MisconfiguredError, match="RADSTREAM_DEID_KEY"):
            DeidSettings().keys()

    def test_a_short_key_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RADSTREAM_DEID_KEY", "short")
        with pytest.raises(DeidConfigurationError, match="at least 32"):
            DeidSettings().keys()

    def test_two_key_sources_are_refused(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("RADSTREAM_DEID_KEY", KEY)
        with pytest.raises(DeidConfigurationError, match="not both"):
            DeidSettings(key_file=tmp_path / "key")

    def test_an_unreadable_key_file_names_the_file_not_its_content(self, tmp_path: Path) -> None:
        with pytest.raises(DeidConfigurationError, match="cannot read the key file"):
            DeidSettings(key_file=tmp_path / "missing").keys()

    def test_the_key_never_appears_in_the_settings_repr(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RADSTREAM_DEID_KEY", KEY)
        assert KEY not in repr(DeidSettings())


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADSTREAM_DEID_MAX_PRIVATE_BYTES", "2048")
    assert DeidSettings().reader_limits().max_private_bytes == 2048


def test_composed_settings_read_their_own_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADSTREAM_KAFKA_BOOTSTRAP", "broker.example:9092")
    settings = DeidSettings()
    assert settings.kafka.bootstrap == "broker.example:9092"
    assert settings.observability.service_name == "deid"
    assert settings.group_id == "deid"


class TestServiceFactory:
    @staticmethod
    def settings(tmp_path: Path, **overrides: object) -> DeidSettings:
        return DeidSettings(
            kafka=KafkaSettings(bootstrap="127.0.0.1:9"),  # nothing connects before start
            delivery=DeliverySettings(idempotency_dsn=f"sqlite:///{tmp_path / 'ids.sqlite3'}"),
            blob=BlobSettings(
                phi_uri=f"file://{tmp_path / 'phi'}", release_uri=f"file://{tmp_path / 'rel'}"
            ),
            **overrides,  # type: ignore[arg-type]
        )

    def test_the_deid_service_is_registered(self) -> None:
        assert service_named("deid").app_factory == "radstream.deid.app:create_app"

    async def test_the_factory_builds_a_faststream_app(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from radstream.deid.app import create_app

        monkeypatch.setattr(clean, "build_text_cleaner", shared_text_cleaner)
        app = create_app(self.settings(tmp_path, key=KEY), registry=CollectorRegistry())
        assert isinstance(app, FastStream)

    def test_the_factory_fails_at_startup_without_a_key(self, tmp_path: Path) -> None:
        from radstream.deid.app import create_app

        with pytest.raises(DeidConfigurationError, match="no pseudonymisation key"):
            create_app(self.settings(tmp_path), registry=CollectorRegistry())

    async def test_the_service_runs_the_settings_pixel_stage_built_once_at_startup(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        from radstream.deid.app import create_app
        from radstream.deid.pixels.risk import threshold_for
        from radstream.deid.pixels.stage import PixelStage
        from radstream.ocr.engines import shared_engine

        built: list[PixelStage] = []
        real_pixel_stage = DeidSettings.pixel_stage

        def recording_pixel_stage(settings: DeidSettings, clean_text: object) -> PixelStage:
            stage = real_pixel_stage(settings, clean_text)  # type: ignore[arg-type]
            built.append(stage)
            return stage

        monkeypatch.setattr(clean, "build_text_cleaner", shared_text_cleaner)
        monkeypatch.setattr(DeidSettings, "pixel_stage", recording_pixel_stage)
        caplog.set_level("INFO", logger="radstream.deid.app")

        create_app(
            self.settings(tmp_path, key=KEY, ocr_engine="rapidocr", leak_rate=0.05),
            registry=CollectorRegistry(),
        )

        assert len(built) == 1
        stage = built[0]
        assert stage.engine is shared_engine("rapidocr")  # the process's one engine
        assert stage.threshold == threshold_for(0.05, "rapidocr")
        started = [record for record in caplog.records if record.getMessage().startswith("pixel")]
        assert [getattr(record, "model", None) for record in started] == ["rapidocr"]

    def test_an_unknown_ocr_engine_stops_the_start(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from radstream.deid.app import create_app

        monkeypatch.setattr(clean, "build_text_cleaner", shared_text_cleaner)
        with pytest.raises(MisconfiguredError, match="unknown OCR engine 'no-such-engine'"):
            create_app(
                self.settings(tmp_path, key=KEY, ocr_engine="no-such-engine"),
                registry=CollectorRegistry(),
            )

    async def test_a_pixel_policy_passed_in_replaces_the_stage(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        from radstream.deid.app import create_app
        from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY

        monkeypatch.setattr(clean, "build_text_cleaner", shared_text_cleaner)
        caplog.set_level("INFO", logger="radstream.deid.app")
        create_app(
            self.settings(tmp_path, key=KEY, ocr_engine="no-such-engine"),  # never loaded
            registry=CollectorRegistry(),
            pixel_policy=DEFAULT_PIXEL_POLICY,
        )
        assert any(record.getMessage().startswith("no pixel stage") for record in caplog.records)


class TestPackage:
    def test_importing_the_package_loads_neither_pydicom_nor_spacy(self) -> None:
        code = (
            "import sys, radstream.deid\n"
            "assert 'pydicom' not in sys.modules, 'pydicom'\n"
            "assert 'spacy' not in sys.modules, 'spacy'\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr

    def test_public_names_resolve_on_first_use(self) -> None:
        import radstream.deid as deid

        assert deid.DeidProfile is DeidProfile
        assert set(deid.__all__) <= set(dir(deid))
        for name in deid.__all__:
            assert getattr(deid, name) is not None

    def test_an_unknown_name_is_an_attribute_error(self) -> None:
        import radstream.deid as deid

        with pytest.raises(AttributeError):
            _ = deid.no_such_name
