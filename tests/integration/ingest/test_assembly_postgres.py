"""The study assembly's specification, run again on the machine's real PostgreSQL server."""

from __future__ import annotations

import pytest

from radstream.ingest.assembly_db import open_assembly_database
from radstream.ingest.errors import AssemblyStoreUnavailableError
from tests.conftest import drop_postgres_connections
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


async def test_a_dropped_connection_is_transient_and_the_assembly_reconnects(
    postgres_dsn: str,
) -> None:
    database = open_assembly_database(postgres_dsn)
    await database.open()
    try:
        assert await database.request_completion("1.2.3") is False
        drop_postgres_connections(postgres_dsn)

        with pytest.raises(AssemblyStoreUnavailableError):
            await database.study("1.2.3")
        assert await database.study("1.2.3") is None  # reconnected
    finally:
        await database.close()
