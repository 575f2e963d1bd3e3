"""One large instance over a real C-STORE association on loopback, the SCP's peak memory traced.

The sender is pynetdicom in a child process (streaming the file, as a modality would), so the
traced peak is the receiving side alone: pynetdicom's SCP, the handler and the receiver.
Shared by the tests and ``tests/bench/memory_peak.py``.
"""

from __future__ import annotations

import asyncio
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from radstream.common.embedded_broker import free_loopback_port
from radstream.ingest.config import DicomSettings
from radstream.ingest.metrics import ingest_metrics
from radstream.ingest.receipt import Receipt
from radstream.ingest.scp import DicomScp
from tests.unit.ingest.instances import SyntheticStudy, to_part10
from tests.unit.ingest.test_receipt import Harness, make_harness

SENDER_AE = "SYNTH_PYNET"

_SEND = """
import sys
from pynetdicom import AE, _config
_config.STORE_SEND_CHUNKED_DATASET = True
path, port, sop_class, syntax = sys.argv[1:]
ae = AE(ae_title="SYNTH_PYNET")
ae.add_requested_context(sop_class, syntax)
assoc = ae.associate("127.0.0.1", int(port), ae_title="RADSTREAM")
assert assoc.is_established, "association refused"
status = assoc.send_c_store(path)
assoc.release()
print(int(status.Status))
"""


def large_ct(size: int) -> bytes:
    """A CT instance of about ``size`` bytes (16-bit pixels, 2048 columns)."""
    ds: Dataset = SyntheticStudy.new().dataset("CT", 1)
    columns = 2048
    rows = max(size // (2 * columns), 1)
    ds.Rows, ds.Columns = rows, columns
    ds.PixelData = b"\x01\x02" * (rows * columns)
    return to_part10(ds)


@dataclass(frozen=True)
class CStoreRun:
    """What one traced C-STORE left: the sender's status, the receipt, the traced peak."""

    status: int
    receipt: Receipt
    peak: int
    harness: Harness


async def traced_c_store(
    data: bytes, tmp_path: Path, *, spool_dir: Path | None, max_bytes: int | None = None
) -> CStoreRun:
    """Send ``data`` to an SCP (spooling into ``spool_dir``, or pynetdicom's memory if None).

    ``max_bytes`` is the instance limit (default: twice the instance).
    """
    limit = max_bytes or len(data) * 2
    harness = await make_harness(tmp_path, max_file_bytes=limit)
    receipts: list[Receipt] = []
    receive = harness.receiver.receive

    async def recording(*args: object, **kwargs: object) -> Receipt:
        receipt = await receive(*args, **kwargs)  # type: ignore[arg-type]
        receipts.append(receipt)
        return receipt

    harness.receiver.receive = recording  # type: ignore[method-assign]
    path = tmp_path / "large.dcm"
    path.write_bytes(data)
    settings = DicomSettings(port=free_loopback_port(), allowed_calling_aes=frozenset({SENDER_AE}))
    scp = DicomScp(
        settings,
        harness.receiver,
        metrics=ingest_metrics(harness.registry),
        spool_dir=spool_dir,
        max_dataset_bytes=limit,
    )
    await scp.start()
    tracemalloc.start()
    try:
        sender = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _SEND,
            str(path),
            str(scp.port),
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.840.10008.1.2.1",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await sender.communicate()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await scp.stop()
    [receipt] = receipts
    return CStoreRun(status=int(out.decode().strip()), receipt=receipt, peak=peak, harness=harness)
