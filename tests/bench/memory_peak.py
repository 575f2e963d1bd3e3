"""Measurement: the peak memory of one large instance through deid and ingest, in copies.

Run with ``python -m tests.bench.memory_peak [--mb 200]``. Each step runs under ``tracemalloc``
(Python allocations; pydicom's and the services' buffers are all Python objects), with the
instance built before tracing starts, and prints its peak divided by the instance's size: the
*copies factor* that ``DEID_COPIES`` and ``INGEST_COPIES`` state. A measurement, not a test.

* **deid** -- the blob as a file, as ``open_file`` hands it out, through ``_deidentify_file``
  (read once, strict reading, the profile, writing, re-reading for verification).
* **ingest receipt** -- ``_inspect`` (hash and strict reading) of the instance's bytes: with the
  input, what the receiver holds while the instance is checked and stored.
* **STOW-RS part, in memory / spooled** -- the multipart reader fed 64 KiB chunks as an ASGI
  server hands them over, without and with a spool directory, then the part's content read back.
* **deid pixel stage** (``--pixels``, alone) -- see :func:`pixel_peak`.
* **C-STORE, in memory / spooled** -- the instance sent over a real association on loopback by
  pynetdicom in a child process, into the SCP and its receiver (filesystem store, SQLite
  assembly), with pynetdicom's own buffering and with the SCP's spool directory.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import deid_data
from pydicom.dataset import Dataset

from radstream.deid.app import DeidWorker, _deidentify_file
from radstream.deid.config import DeidSettings
from radstream.deid.profile import DeidKeys, DeidProfile
from radstream.dicom import ReaderLimits
from radstream.dicom.raw_header import decoded_pixel_bytes, read_raw_instance
from radstream.ingest.multipart import MultipartReader
from radstream.ingest.receipt import _inspect
from tests.unit.deid.study_builder import (
    TEST_KEYS_SECRET,
    shared_text_cleaner,
    synthetic_instance,
    to_bytes,
)
from tests.unit.ingest.cstore_memory import traced_c_store

MiB = 1024 * 1024
CHUNK = 64 * 1024
BOUNDARY = "radstream-bench-boundary"


def large_instance(size: int) -> bytes:
    rows = 4096
    columns = size // (2 * rows)

    def pixels(ds: Dataset) -> None:
        ds.Rows, ds.Columns = rows, columns
        ds.PixelData = b"\x01" * (rows * columns * 2)

    return to_bytes(synthetic_instance(customize=pixels))


def traced(step: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def body_chunks(data: bytes) -> Iterator[bytes]:
    yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        yield bytes(view[start : start + CHUNK])
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def stow_part(data: bytes, spool_dir: Path | None) -> None:
    reader = MultipartReader(BOUNDARY, max_part_bytes=len(data) * 2, spool_dir=spool_dir)
    parts = [part for chunk in body_chunks(data) for part in reader.feed(chunk)]
    reader.close()
    [part] = parts
    content = part.content()
    assert len(content) == len(data)
    part.close()


def c_store_peak(data: bytes, scratch: Path, *, spooled: bool) -> int:
    async def run() -> int:
        result = await traced_c_store(
            data, scratch, spool_dir=scratch / "spool" if spooled else None
        )
        await result.harness.assembly.close()
        assert result.receipt.accepted
        return result.peak

    return asyncio.run(run())


def pixel_peak(scratch: Path) -> None:
    """``--pixels``: the pixel stage's peak on a compressed cine, in copies of its frames.

    deid-data's 30-frame native ultrasound cine, and the same compressed to JPEG baseline by
    dcmtk's ``dcmcjpeg`` (the Debian package), each through ``_deidentify_file`` with the
    production pixel stage: what ``DEID_COPIES`` (native) and ``DEID_PIXEL_COPIES``
    (compressed) state.
    """
    native = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "ultrasound-multiframe.dcm"
    compressed = scratch / "cine-jpeg.dcm"
    subprocess.run(["dcmcjpeg", "+eb", str(native), str(compressed)], check=True)
    cleaner = shared_text_cleaner()
    worker = DeidWorker(
        profile=DeidProfile(),
        keys=DeidKeys.from_secret(TEST_KEYS_SECRET),
        clean_text=cleaner,
        stores=None,  # type: ignore[arg-type] -- not used by _deidentify_file
        metrics=None,  # type: ignore[arg-type]
        pixel_policy=DeidSettings().pixel_stage(cleaner),
    )
    for path in (native, compressed):
        data = path.read_bytes()
        decoded = decoded_pixel_bytes(read_raw_instance(data))
        with open(path, "rb") as blob:
            _deidentify_file(worker, blob)  # the engine's models load outside the trace
        with open(path, "rb") as blob:
            peak = traced(lambda blob=blob: _deidentify_file(worker, blob))  # type: ignore[misc]
        print(
            f"{path.name:28} file {len(data) / MiB:6.1f} MiB, frames {decoded / MiB:6.1f} MiB: "
            f"peak {peak / MiB:7.1f} MiB = {peak / len(data):5.2f} files = "
            f"{peak / decoded:5.2f} decoded frames"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="instance size in MiB")
    parser.add_argument(
        "--pixels", action="store_true", help="only the pixel stage on a native and a JPEG cine"
    )
    args = parser.parse_args()
    if args.pixels:
        with tempfile.TemporaryDirectory() as scratch:
            pixel_peak(Path(scratch))
        return
    data = large_instance(args.mb * MiB)
    size = len(data)
    limits = ReaderLimits(max_file_bytes=size * 2)
    worker = DeidWorker(
        profile=DeidProfile(),
        keys=DeidKeys.from_secret(TEST_KEYS_SECRET),
        clean_text=shared_text_cleaner(),
        stores=None,  # type: ignore[arg-type] -- not used by _deidentify_file
        metrics=None,  # type: ignore[arg-type]
        limits=limits,
    )
    with tempfile.TemporaryDirectory() as scratch, open(Path(scratch) / "blob", "w+b") as blob:
        blob.write(data)
        blob.flush()
        blob.seek(0)
        deid_peak = traced(lambda: _deidentify_file(worker, blob))
        receipt_peak = traced(lambda: _inspect(data, limits))
        memory_peak = traced(lambda: stow_part(data, None))
        spooled_peak = traced(lambda: stow_part(data, Path(scratch) / "spool"))
        (Path(scratch) / "memory").mkdir()
        (Path(scratch) / "spooled").mkdir()
        c_store_memory = c_store_peak(data, Path(scratch) / "memory", spooled=False)
        c_store_spooled = c_store_peak(data, Path(scratch) / "spooled", spooled=True)
    print(f"instance: {size} bytes")
    for name, peak, plus_input in (
        ("deid (file in, read once)", deid_peak, 0),
        ("ingest receipt (bytes in)", receipt_peak, size),
        ("STOW-RS part, in memory", memory_peak, 0),
        ("STOW-RS part, spooled", spooled_peak, 0),
        ("C-STORE, in memory", c_store_memory, 0),
        ("C-STORE, spooled", c_store_spooled, 0),
    ):
        print(f"{name:28} peak {peak / MiB:8.1f} MiB = {(peak + plus_input) / size:4.2f} copies")


if __name__ == "__main__":
    main()
