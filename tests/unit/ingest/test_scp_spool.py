"""C-STORE data sets wait in the spool directory, not in memory, until the receiver reads them.

Through real associations on loopback (pynetdicom in a child process sends; the SCP under test
receives), with the peak of the receiving process traced.
"""

from __future__ import annotations

import gc
import hashlib
import os
from pathlib import Path

import pynetdicom._config
from pynetdicom import dimse_messages

from radstream.common.memory_budget import MemorySettings
from radstream.common.spool import SpoolFile
from radstream.ingest.config import INGEST_COPIES, IngestSettings
from radstream.ingest.cstore_spool import (
    SPOOL_ABOVE,
    ReceivingDataset,
    _Target,
    spool_received_datasets,
    stop_spooling_received_datasets,
)
from radstream.ingest.receipt import OUT_OF_RESOURCES, SUCCESS
from tests.unit.ingest.cstore_memory import large_ct, traced_c_store

MiB = 1024 * 1024


def dataset_part(part10: bytes) -> bytes:
    """The bytes after the File Meta Information (whose group length says where it ends)."""
    meta_length = int.from_bytes(part10[140:144], "little")
    return part10[144 + meta_length :]


async def test_a_large_c_store_is_held_at_most_twice_while_it_is_received(
    tmp_path: Path,
) -> None:
    data = large_ct(32 * MiB)

    run = await traced_c_store(data, tmp_path, spool_dir=tmp_path / "spool")

    assert (run.status, run.receipt.accepted) == (SUCCESS, True)
    # The receiver's copy and pydicom's data set; pynetdicom held none (it was on disk). In
    # pynetdicom's memory, the same C-STORE took 3 copies.
    assert run.peak < (INGEST_COPIES + 0.25) * len(data), f"{run.peak / len(data):.2f} copies"
    assert run.receipt.blob is not None
    stored = await run.harness.phi.get(run.receipt.blob)
    assert dataset_part(stored) == dataset_part(data), "stored as sent (File Meta apart)"
    assert list((tmp_path / "spool").iterdir()) == [], "nothing left in the spool directory"
    await run.harness.assembly.close()


def test_ingest_takes_instances_of_half_its_memory_budget() -> None:
    settings = IngestSettings(memory=MemorySettings(budget_bytes=2 * 1024 * MiB))

    assert INGEST_COPIES == 2
    assert settings.reader_limits().max_file_bytes == 1024 * MiB


async def test_pynetdicoms_defaults_are_back_once_the_scp_stopped(tmp_path: Path) -> None:
    before = (pynetdicom._config.STORE_RECV_CHUNKED_DATASET, dimse_messages.NamedTemporaryFile)

    await traced_c_store(large_ct(2 * MiB), tmp_path, spool_dir=tmp_path / "spool")

    after = (pynetdicom._config.STORE_RECV_CHUNKED_DATASET, dimse_messages.NamedTemporaryFile)
    assert after == before


async def test_without_a_spool_directory_the_scp_receives_in_memory_as_before(
    tmp_path: Path,
) -> None:
    data = large_ct(2 * MiB)

    run = await traced_c_store(data, tmp_path, spool_dir=None)

    assert (run.status, run.receipt.accepted) == (SUCCESS, True)
    assert run.receipt.blob is not None
    stored = await run.harness.phi.get(run.receipt.blob)
    assert dataset_part(stored) == dataset_part(data)
    await run.harness.assembly.close()


async def test_a_c_store_over_the_instance_limit_is_refused_without_filling_the_disk(
    tmp_path: Path,
) -> None:
    data = large_ct(8 * MiB)
    spool = tmp_path / "spool"
    spool_received_datasets(spool, max_bytes=2 * MiB)
    try:
        receiving = ReceivingDataset(_Target(spool, 2 * MiB))
        for start in range(0, len(data), 64 * 1024):
            receiving.write(data[start : start + 64 * 1024])
        taken = receiving.take()
    finally:
        stop_spooling_received_datasets()

    assert isinstance(taken, SpoolFile)
    with taken:
        assert taken.dropped
        assert (taken.size, taken.sha256()) == (len(data), hashlib.sha256(data).hexdigest())
        assert os.fstat(taken._file.fileno()).st_size < 3 * MiB, "the rest was not written"


def test_a_small_data_set_stays_in_memory_and_a_large_one_goes_to_an_unnamed_file(
    tmp_path: Path,
) -> None:
    target = _Target(tmp_path, 1 << 40)
    small, large = ReceivingDataset(target), ReceivingDataset(target)
    small.write(b"\x00" * 1000)
    large.write(b"\x00" * SPOOL_ABOVE)
    large.write(b"\x01" * 10)

    assert small.take() == b"\x00" * 1000
    spooled = large.take()
    assert isinstance(spooled, SpoolFile)
    with spooled:
        assert spooled.read_all() == b"\x00" * SPOOL_ABOVE + b"\x01" * 10
        assert list(tmp_path.iterdir()) == [], "no name on disk, nothing left if we die"
    assert not Path(large.name).exists()


def test_what_nobody_took_is_removed_when_the_transfer_is_abandoned(tmp_path: Path) -> None:
    receiving = ReceivingDataset(_Target(tmp_path, 1 << 40))
    receiving.write(b"\x00" * (SPOOL_ABOVE + 1))
    spool = receiving._spool
    assert spool is not None

    del receiving  # pynetdicom drops the message of an aborted association
    gc.collect()

    assert spool._file.closed


async def test_an_over_limit_c_store_through_the_scp_is_answered_out_of_resources(
    tmp_path: Path,
) -> None:
    data = large_ct(4 * MiB)

    run = await traced_c_store(data, tmp_path, spool_dir=tmp_path / "spool", max_bytes=MiB * 2)

    assert (run.status, run.receipt.failure) == (OUT_OF_RESOURCES, "file_too_large")
    assert run.receipt.size > len(dataset_part(data)), "counted to the end, past the limit"
    assert run.harness.published == []
    await run.harness.assembly.close()
