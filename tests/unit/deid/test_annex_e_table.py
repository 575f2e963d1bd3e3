"""The committed Table E.1-1 data module: fresh, complete, and every row handled."""

from __future__ import annotations

from pathlib import Path

import pytest

from radstream.deid import _generate_annex_e
from radstream.deid._annex_e import EDITION, OPTION_COLUMNS, ROWS
from radstream.deid.profile import ProfileOption, annex_e_coverage
from radstream.deid.rules import compile_rules

VENDORED_TABLE = _generate_annex_e.default_source()


def test_the_source_table_and_its_licence_are_vendored_in_the_repository() -> None:
    root = _generate_annex_e.repository_root()

    assert VENDORED_TABLE.is_relative_to(root), "a clone holds nothing beside itself"
    assert VENDORED_TABLE.is_file()
    licence = _generate_annex_e.licence_path().read_text(encoding="utf-8")
    assert licence.strip() == _generate_annex_e._INNOLITICS_LICENCE.strip()


def test_the_committed_module_matches_a_fresh_generation() -> None:
    fresh = _generate_annex_e.render(_generate_annex_e.load_rows(VENDORED_TABLE))
    assert _generate_annex_e.target_path().read_text(encoding="utf-8") == fresh


def test_the_generator_check_mode_passes_on_its_default_source() -> None:
    assert _generate_annex_e.main(["--check"]) == 0


def test_the_table_is_edition_2024b_with_621_rows() -> None:
    assert EDITION == "2024b"
    assert len(ROWS) == 621
    assert len({row.tag for row in ROWS}) == 621


def test_every_row_is_handled() -> None:
    assert annex_e_coverage() == (621, 621)


def test_a_row_with_an_unknown_tag_form_is_not_counted_as_handled() -> None:
    odd = ROWS[0]._replace(tag="(00XX,0010)")
    assert annex_e_coverage((odd, ROWS[1])) == (1, 2)


def test_option_columns_are_the_profile_options() -> None:
    assert set(OPTION_COLUMNS) == {option.value for option in ProfileOption}


@pytest.mark.parametrize("options", [frozenset(), frozenset(o.value for o in ProfileOption)])
def test_every_row_compiles_into_the_rule_book(options: frozenset[str]) -> None:
    book = compile_rules(options)
    # 617 exact tags + curves + two overlay rows + the private-attributes row.
    assert len(book.exact) + 1 + len(book.overlay) + 1 == 621


def test_the_source_table_is_refused_when_malformed(tmp_path: Path) -> None:
    source = tmp_path / "table.json"
    source.write_text(
        '[{"name": "x", "tag": "(0008,0050)", "id": "1", "stdCompIOD": "Y", "basicProfile": "Q"}]',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="unknown action"):
        _generate_annex_e.load_rows(source)
