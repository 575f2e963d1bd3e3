"""Blobs handed out as files: verified, and never whole in memory on the way."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radstream.common.blobstore import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobRef,
    BlobStoreUnavailableError,
    FilesystemBlobStore,
    S3BlobStore,
)
from tests.unit.common.blob_stores import STUDY

MiB = 1024 * 1024


def damage(path: Path) -> None:
    """Flip the last byte of a stored blob, as a failing disk would."""
    path.write_bytes(path.read_bytes()[:-1] + b"!")


class TestFilesystemFiles:
    async def test_the_file_holds_the_bytes_that_were_put(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)
        async with phi_store.open_file(ref) as file:
            assert file.read() == STUDY
        assert file.closed

    async def test_a_damaged_blob_is_refused_before_it_is_handed_out(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)
        damage(Path(ref.uri.removeprefix("file://")))
        with pytest.raises(BlobIntegrityError, match="does not hash"):
            async with phi_store.open_file(ref):
                pytest.fail("a damaged blob was handed out")

    async def test_a_missing_blob_is_not_found(self, phi_store: FilesystemBlobStore) -> None:
        ref = await phi_store.put(STUDY)
        await phi_store.delete(ref)
        with pytest.raises(BlobNotFoundError):
            async with phi_store.open_file(ref):
                pytest.fail("a deleted blob was handed out")

    async def test_a_missing_root_is_an_outage_not_a_missing_blob(self, tmp_path: Path) -> None:
        store = FilesystemBlobStore(tmp_path / "unmounted", "phi")
        digest = hashlib.sha256(STUDY).hexdigest()
        ref = BlobRef(uri=store.uri_for(digest), sha256=digest, size=len(STUDY))
        with pytest.raises(BlobStoreUnavailableError, match="is its volume mounted"):
            async with store.open_file(ref):
                pytest.fail("a blob was handed out from a store with no root")


@pytest.mark.integration
class TestS3Files:
    async def test_the_object_is_downloaded_into_a_spool_file_that_goes_away(
        self, s3_store: S3BlobStore, tmp_path: Path
    ) -> None:
        spool = tmp_path / "spool"
        ref = await s3_store.put(STUDY)
        async with s3_store.open_file(ref, spool_dir=spool) as file:
            assert file.read() == STUDY
            assert os.fstat(file.fileno()).st_mode & 0o077 == 0  # PHI: the owner only
        assert file.closed
        assert list(spool.iterdir()) == []  # unnamed, and gone once closed

    async def test_a_missing_object_is_not_found(
        self, s3_store: S3BlobStore, tmp_path: Path
    ) -> None:
        ref = await s3_store.put(STUDY)
        await s3_store.delete(ref)
        with pytest.raises(BlobNotFoundError):
            async with s3_store.open_file(ref, spool_dir=tmp_path):
                pytest.fail("a deleted object was handed out")


class _GeneratedBody:
    """A GetObject body that makes its bytes as they are read (no copy of its own to count)."""

    def __init__(self, size: int, chunk: bytes) -> None:
        self._size, self._chunk = size, chunk

    def iter_chunks(self, chunk_size: int) -> Iterator[bytes]:
        for start in range(0, self._size, len(self._chunk)):
            yield self._chunk[: min(len(self._chunk), self._size - start)]

    def read(self) -> bytes:
        return b"".join(self.iter_chunks(len(self._chunk)))


class _GeneratingClient:
    """The S3 calls open_file makes, answered from a generated object (pure-logic fake)."""

    def __init__(self, size: int, chunk: bytes) -> None:
        self._size, self._chunk = size, chunk

    def get_object(self, **_: Any) -> Any:
        return {"Body": _GeneratedBody(self._size, self._chunk)}


async def test_a_large_s3_object_is_never_whole_in_memory(tmp_path: Path) -> None:
    chunk = bytes(range(256)) * 4096  # 1 MiB
    size = 24 * MiB
    digest = hashlib.sha256()
    for _ in range(size // len(chunk)):
        digest.update(chunk)
    store = S3BlobStore("bucket", "phi", "phi", _GeneratingClient(size, chunk))  # type: ignore[arg-type]
    ref = BlobRef(uri=store.uri_for(digest.hexdigest()), sha256=digest.hexdigest(), size=size)
    tracemalloc.start()
    try:
        async with store.open_file(ref, spool_dir=tmp_path) as file:
            assert os.fstat(file.fileno()).st_size == size
        _, spooled_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert len(await store.get(ref)) == size
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read_peak > size  # get() holds the whole object
    assert spooled_peak < 4 * MiB  # the spooled download a chunk or two
