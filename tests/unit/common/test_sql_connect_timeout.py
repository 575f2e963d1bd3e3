"""Every PostgreSQL store gives up connecting after a bound, unless its DSN says otherwise."""

from __future__ import annotations

from radstream.common.sql.postgres import DEFAULT_CONNECT_TIMEOUT_S, _timeout


def test_a_dsn_without_a_connect_timeout_gets_the_default_bound() -> None:
    assert _timeout("postgresql://radstream@db.hospital.local/radstream", None) == {
        "connect_timeout": DEFAULT_CONNECT_TIMEOUT_S
    }


def test_the_dsns_own_connect_timeout_is_kept() -> None:
    assert _timeout("postgresql://db.hospital.local/radstream?connect_timeout=3", None) == {}
    assert _timeout("host=db.hospital.local dbname=radstream connect_timeout=3", None) == {}


def test_the_callers_timeout_wins_over_both() -> None:
    dsn = "postgresql://db.hospital.local/radstream?connect_timeout=3"
    assert _timeout(dsn, 7) == {"connect_timeout": 7}
