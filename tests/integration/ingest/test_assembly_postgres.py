"""The study assembly's specification, run again on the machine's real PostgreSQL server."""

from __future__ import annotations

import pytest

from tests.unit.ingest.test_assembly import (  # noqa: F401 -- the specification, re-collected
    TestAssembler,
    TestCorrections,
    TestDuplicates,
    TestDurability,
    TestExactlyOnce,
    TestExplicitTrigger,
    TestLateArrivals,
    TestQuietPeriod,
    assembly,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def assembly_dsn(postgres_dsn: str) -> str:
    """The assembly specification's store, on a fresh PostgreSQL database."""
    return postgres_dsn
