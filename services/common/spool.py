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

__all__ = ["SpoolContentDroppedError", "SpoolFile", "open_spool_file"]


class SpoolContentDroppedError(RuntimeError):
    """A spool file's content was asked for after :meth:`SpoolFile.drop_content` (a bug)."""


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
        self._dropped = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    @property
    def dropped(self) -> bool:
        """True once :meth:`drop_content` was called: sizes and hashes only, no content."""
        return self._dropped

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (counted and hashed only, once the content is dropped)."""
        if not self._dropped:
            self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    def drop_content(self) -> None:
        """Free the disk the content takes, and keep only counting and hashing what comes.

        For a payload found over a size limit while it arrives: it will be refused unread,
        with its full size and digest, and need not fill the spool directory meanwhile.
        """
        self._dropped = True
        self._file.truncate(0)

    def sha256(self) -> str:
        """The hex sha256 of what was written."""
        return self._hash.hexdigest()

    def read_all(self) -> bytes:
        """Everything written, as one ``bytes`` (one allocation of the spooled size)."""
        self._check_content()
        self._file.flush()
        data = os.pread(self._file.fileno(), self._size, 0) if self._size else b""
        if len(data) < self._size:  # a read is capped at 2 GiB on Linux: read the rest
            self._file.seek(len(data))
            data += self._file.read()
        return data

    def open_reader(self) -> BinaryIO:
        """A new read-only file object on the content, at its start; the caller closes it."""
        self._check_content()
        self._file.flush()
        reader = os.fdopen(os.dup(self._file.fileno()), "rb")
        reader.seek(0)
        return reader

    def _check_content(self) -> None:
        if self._dropped:
            raise SpoolContentDroppedError(
                "the spooled content was dropped for being over a limit; only its size and "
                "digest are known"
            )

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
