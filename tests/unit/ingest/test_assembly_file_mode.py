"""The SQLite study assembly holds patient IDs and accession numbers: owner-only on disk."""

from __future__ import annotations

import stat
from pathlib import Path

from radstream.ingest.assembly import StudyAssembly


async def test_the_sqlite_assembly_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "assembly.sqlite3"
    assembly = StudyAssembly.open_dsn(f"sqlite:///{path}", quiet_period_s=1.0)
    await assembly.open()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        await assembly.close()
