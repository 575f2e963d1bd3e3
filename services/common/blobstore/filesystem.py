"""The filesystem blob store: atomic writes under a root directory (the embedded default)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from radstream.common.blobstore.base import (
    BlobStoreUnavailableError,
    Zone,
    _ContentAddressedStore,
)
from radstream.common.errors import (
    MisconfiguredError,
)


class FilesystemBlobStore(_ContentAddressedStore):
    """Blobs as files under ``root``: the embedded default, a volume in Kubernetes.

    Files are created mode 0600 (PHI is readable by the service user only).
    """

    def __init__(self, root: Path, zone: Zone, *, refused_roots: Iterable[str] = ()) -> None:
        self._root = Path(root).resolve()
        super().__init__(zone=zone, root_uri=self._root.as_uri(), refused_roots=refused_roots)

    @property
    def root(self) -> Path:
        """Directory holding the blobs."""
        return self._root

    def _stored_size(self, key: str) -> int | None:
        with self._os_errors():
            try:
                return (self._root / key).stat().st_size
            except FileNotFoundError:
                return None

    def _write(self, key: str, data: bytes, media_type: str) -> None:
        path = self._root / key
        with self._os_errors():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, data)

    def _read(self, key: str) -> bytes | None:
        with self._os_errors():
            try:
                return (self._root / key).read_bytes()
            except FileNotFoundError:
                self._require_root()
                return None

    def _remove(self, key: str) -> None:
        with self._os_errors():
            (self._root / key).unlink(missing_ok=True)

    def _open(self, key: str, spool_dir: Path | None) -> BinaryIO | None:
        """The blob's own file: it is replaced only by a rename, never rewritten in place."""
        with self._os_errors():
            try:
                return (self._root / key).open("rb")
            except FileNotFoundError:
                self._require_root()
                return None

    def _require_root(self) -> None:
        """Raise when a blob is missing because the whole root is: an unmounted volume.

        It looks like an empty one; saying so retries the record instead of dead-lettering it.
        """
        if not self._root.is_dir():
            raise BlobStoreUnavailableError(
                f"blob store root {self._root} is missing; is its volume mounted?"
            ) from None

    @contextlib.contextmanager
    def _os_errors(self) -> Iterator[None]:
        """Turn OSError into the radstream error that tells the operator what to do."""
        try:
            yield
        except (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
            raise MisconfiguredError(
                f"blob store root {self._root} is unusable ({exc.strerror}); point "
                "RADSTREAM_BLOB_*_URI at a directory this process may read and write"
            ) from exc
        except OSError as exc:
            raise BlobStoreUnavailableError(
                f"I/O error in blob store {self._root} ({exc.strerror}); retry once the "
                "volume is healthy"
            ) from exc


def _path_of(file_uri_rest: str) -> Path:
    path = Path(unquote(file_uri_rest))
    return path if path.is_absolute() else Path.cwd() / path


def _write_atomically(path: Path, data: bytes) -> None:
    """Write through a temp file, fsync and rename, so a reader sees all of the blob or none."""
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(descriptor, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    # The rename is durable only once the directory entry is on disk.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
