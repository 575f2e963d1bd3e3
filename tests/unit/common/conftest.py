"""Fixtures shared by the tests of radstream.common."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from radstream.common.blobstore import FilesystemBlobStore, S3BlobStore
from radstream.common.idempotency import SqliteIdempotencyGuard
from tests.unit.common.blob_stores import make_client


@pytest.fixture
async def guard(tmp_path: Path) -> AsyncIterator[SqliteIdempotencyGuard]:
    """A real SQLite idempotency guard in a fresh file."""
    store = SqliteIdempotencyGuard(tmp_path / "idempotency.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def phi_store(tmp_path: Path) -> FilesystemBlobStore:
    """A filesystem PHI store in a fresh directory."""
    return FilesystemBlobStore(tmp_path / "phi", "phi")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible HTTP server on loopback, one per test module."""
    from moto.server import ThreadedMotoServer  # imported here: only the S3 tests start it

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    return make_client(s3_endpoint)


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A fresh bucket on the S3 server."""
    name = f"radstream-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_client: Any, bucket: str) -> S3BlobStore:
    """An S3 PHI store in a fresh bucket."""
    return S3BlobStore(bucket, "phi", "phi", s3_client)
