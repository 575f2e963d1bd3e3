"""Every ingest list setting is read by one parser, so each accepts the same forms."""

from __future__ import annotations

from types import ModuleType

import pytest

from radstream.ingest import config, http_auth, mllp, name_lists
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.name_lists import parse_names


def test_a_comma_list_from_the_environment_becomes_a_set_without_blanks() -> None:
    assert parse_names(" CT01, MR02,,CT01 ") == frozenset({"CT01", "MR02"})


def test_a_sequence_from_code_is_taken_as_it_is() -> None:
    assert parse_names(["10.0.0.1", " 10.0.0.2 "]) == frozenset({"10.0.0.1", "10.0.0.2"})


def test_anything_else_is_a_configuration_error() -> None:
    with pytest.raises(IngestConfigurationError, match="comma-separated"):
        parse_names(42)


@pytest.mark.parametrize("module", [config, http_auth, mllp])
def test_each_settings_module_uses_the_one_parser(module: ModuleType) -> None:
    assert module.parse_names is name_lists.parse_names
    assert not hasattr(module, "_names_from")


def test_the_settings_classes_read_lists_alike() -> None:
    assert mllp.MllpSettings(allowed_peers="10.0.0.1, 10.0.0.2").allowed_peers == frozenset(
        {"10.0.0.1", "10.0.0.2"}
    )
    assert http_auth.HttpSettings(allowed_client_cns="ris, ehr").allowed_client_cns == frozenset(
        {"ris", "ehr"}
    )
    assert config.DicomSettings(allowed_calling_aes="CT01, MR02").allowed_calling_aes == (
        frozenset({"CT01", "MR02"})
    )
