"""Which database a store's DSN names.

DSNs follow the SQLAlchemy convention for SQLite (what follows ``sqlite:///`` is the path, so
``sqlite:////abs`` is absolute) and libpq's for PostgreSQL (``postgresql://`` or
``postgres://``, passed to the driver as it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class SqliteDsn:
    """A SQLite file."""

    path: Path


@dataclass(frozen=True)
class PostgresDsn:
    """A PostgreSQL database, as libpq's connection URI."""

    dsn: str


def parse_dsn(dsn: str, *, setting: str, invalid: type[Exception]) -> SqliteDsn | PostgresDsn:
    """The database ``dsn`` names; ``invalid`` (naming ``setting``, not the value) if none.

    The message never quotes the DSN: a PostgreSQL one may carry a password.
    """
    scheme = urlsplit(dsn).scheme
    if scheme == "sqlite" and dsn.startswith("sqlite:///"):
        return SqliteDsn(Path(dsn.removeprefix("sqlite:///")))
    if scheme in {"postgresql", "postgres"}:
        return PostgresDsn(dsn)
    raise invalid(f"{setting} must be sqlite:///path or postgresql://...")
