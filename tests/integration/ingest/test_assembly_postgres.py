"""The study assembly's specification, run again on the machine's real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.unit.ingest.test_assembly import (  # noqa: F401 -- the specification, re-collected
    TestAssembler,
    TestDuplicates,
    TestDurability,
    TestExactlyOnce,
    TestExplicitTrigger,
    TestLateArrivals,
    TestQuietPeriod,
    assembly,
)

pytestmark = pytest.mark.integration

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def assembly_dsn() -> Iterator[str]:
    """A fresh database, dropped afterwards; skips when PostgreSQL is not running."""
    name = f"radstream_ingest_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
