"""STOW-RS parts beyond a threshold wait in a spool file, not in memory."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from radstream.ingest.multipart import MultipartReader, Part

BOUNDARY = "radstream-boundary-7f3a"
MiB = 1024 * 1024
CHUNK = 64 * 1024  # what an ASGI server hands the app at a time


def streamed_body(part_sizes: list[int]) -> Iterator[bytes]:
    """A multipart body, made chunk by chunk as a socket would deliver it (never whole)."""
    pattern = bytes(range(256)) * (CHUNK // 256)
    for size in part_sizes:
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        for start in range(0, size, CHUNK):
            yield pattern[: min(CHUNK, size - start)]
        yield b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


def expected_sha256(size: int) -> str:
    pattern = bytes(range(256)) * (CHUNK // 256)
    digest = hashlib.sha256()
    for start in range(0, size, CHUNK):
        digest.update(pattern[: min(CHUNK, size - start)])
    return digest.hexdigest()


def read_parts_traced(reader: MultipartReader, part_sizes: list[int]) -> tuple[list[Part], int]:
    """Feed the body; return the parts and the peak of memory allocated meanwhile."""
    parts: list[Part] = []
    tracemalloc.start()
    try:
        for chunk in streamed_body(part_sizes):
            parts.extend(reader.feed(chunk))
        reader.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return parts, peak


def test_a_big_part_is_spooled_and_never_whole_in_memory(tmp_path: Path) -> None:
    size = 32 * MiB
    reader = MultipartReader(BOUNDARY, max_part_bytes=64 * MiB, spool_dir=tmp_path)
    [part], peak = read_parts_traced(reader, [size])
    assert peak < 2 * MiB  # a chunk or two, not the part
    assert part.spooled is not None and part.size == size and part.data == b""
    assert part.spooled.sha256() == expected_sha256(size)
    content = part.content()
    assert len(content) == size
    assert hashlib.sha256(content).hexdigest() == expected_sha256(size)
    part.close()


def test_without_a_spool_directory_a_big_part_is_held_twice_while_it_is_joined() -> None:
    # What the spool avoids: the chunks and their join, both the size of the part.
    size = 32 * MiB
    reader = MultipartReader(BOUNDARY, max_part_bytes=64 * MiB)
    [part], peak = read_parts_traced(reader, [size])
    assert part.spooled is None and len(part.data) == size
    assert peak > 2 * size


def test_small_parts_stay_in_memory_and_spool_files_leave_nothing_behind(tmp_path: Path) -> None:
    reader = MultipartReader(BOUNDARY, max_part_bytes=64 * MiB, spool_dir=tmp_path)
    parts, _ = read_parts_traced(reader, [1000, 3 * MiB, 2000])
    small, big, other = parts
    assert (small.spooled, other.spooled) == (None, None)
    assert len(small.content()) == 1000 and len(other.content()) == 2000
    assert big.spooled is not None and len(big.content()) == 3 * MiB
    big.close()
    assert os.listdir(tmp_path) == []  # unnamed spool files: nothing to clean up


def test_an_oversized_part_keeps_neither_memory_nor_spool(tmp_path: Path) -> None:
    reader = MultipartReader(BOUNDARY, max_part_bytes=4 * MiB, spool_dir=tmp_path)
    [part], peak = read_parts_traced(reader, [8 * MiB])
    assert part.oversized and part.spooled is None and part.size == 8 * MiB
    assert peak < 2 * MiB
