"""Spool files: large payloads wait on disk, not in memory, until their turn comes.

A spool file is an unnamed temporary file (``O_TMPFILE`` where the filesystem has it) in the
spool directory (``RADSTREAM_MEMORY_SPOOL_DIR``), mode 0600 since it holds PHI: closing it, or
the process dying, removes it, so nothing is left behind to clean up. The directory must be on
disk; a memory-backed tmpfs would charge the spooled bytes to the memory limit after all.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = ["SpoolFile", "open_spool_file"]


def open_spool_file(directory: Path) -> BinaryIO:
    """Open a new, empty, unnamed read-write file in ``directory`` (created 0700 if missing)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return tempfile.TemporaryFile(dir=directory)


class SpoolFile:
    """Bytes written piece by piece to a spool file, hashed on the way, read back once."""

    def __init__(self, directory: Path) -> None:
        self._file = open_spool_file(directory)
        self._size = 0
        self._hash = hashlib.sha256()

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``."""
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    def sha256(self) -> str:
        """The hex sha256 of what was written."""
        return self._hash.hexdigest()

    def read_all(self) -> bytes:
        """Everything written, as one ``bytes`` (one allocation of the spooled size)."""
        self._file.flush()
        data = os.pread(self._file.fileno(), self._size, 0) if self._size else b""
        if len(data) < self._size:  # a read is capped at 2 GiB on Linux: read the rest
            self._file.seek(len(data))
            data += self._file.read()
        return data

    def open_reader(self) -> BinaryIO:
        """A new read-only file object on the content, at its start; the caller closes it."""
        self._file.flush()
        reader = os.fdopen(os.dup(self._file.fileno()), "rb")
        reader.seek(0)
        return reader

    def close(self) -> None:
        """Remove the file (idempotent)."""
        self._file.close()

    def __enter__(self) -> SpoolFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
