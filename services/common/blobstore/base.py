"""Blob references, the store protocol, errors, and the content-addressed core both stores share."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Literal, Protocol
from urllib.parse import unquote

from radstream.common.errors import (
    PoisonEventError,
    TransientError,
)
from radstream.common.store_health import WriteFailures
from radstream.contracts.v1 import common_pb2

Zone = Literal["phi", "release"]
DEFAULT_MEDIA_TYPE: Final = "application/octet-stream"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HASH_CHUNK: Final = 1024 * 1024
_PROBE_KEY: Final = "_probe"  # never a fan-out directory: those are two hex digits
_MISSING_OBJECT_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound"})
_MISCONFIGURED_S3_CODES: Final = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "AuthorizationHeaderMalformed",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "NoSuchBucket",
        "PermanentRedirect",
        "SignatureDoesNotMatch",
    }
)


class BlobNotFoundError(PoisonEventError):
    """The blob a ref names is not in the store.

    Poison, not transient: a producer publishes a ref only after its put is durable, and both
    backends read their own writes, so a blob missing now will not appear on retry. A store that
    is *away* (unmounted volume, unreachable endpoint) raises :class:`BlobStoreUnavailableError`
    instead, so an outage does not flood the dead-letter topic.
    """


class BlobIntegrityError(PoisonEventError):
    """The stored bytes do not match the ref's size or sha256.

    Poison: writes are atomic and content-addressed, so every retry reads the same bytes. The
    blob was damaged at rest or the ref is wrong; either way a person has to look.
    """


class BlobRefRejectedError(PoisonEventError):
    """A ref this store will not serve: malformed, outside its root, or another store's.

    Poison: the ref came in an event, and no retry changes it.
    """


class ZoneViolationError(BlobRefRejectedError):
    """A ref into the PHI zone was offered to the release store; nothing PHI is released."""


class BlobStoreUnavailableError(TransientError):
    """The storage backend did not answer (I/O error, network, throttling); retry with backoff."""


@dataclass(frozen=True, kw_only=True)
class BlobRef:
    """Where a blob lives and what it must hash to: the claim check an event carries."""

    uri: str
    sha256: str
    size: int
    media_type: str = DEFAULT_MEDIA_TYPE

    def __post_init__(self) -> None:
        if not _SHA256_HEX.fullmatch(self.sha256):
            raise BlobRefRejectedError("BlobRef.sha256 must be 64 lowercase hex digits")
        if self.size < 0:
            raise BlobRefRejectedError(f"BlobRef.size must not be negative (got {self.size})")

    @classmethod
    def from_proto(
        cls, message: common_pb2.BlobRef, *, default_media_type: str = DEFAULT_MEDIA_TYPE
    ) -> BlobRef:
        """The ref an event carries; an empty media type becomes ``default_media_type``.

        Raises :class:`BlobRefRejectedError` (poison) for a malformed hash or size.
        """
        return cls(
            uri=message.uri,
            sha256=message.sha256,
            size=message.size,
            media_type=message.media_type or default_media_type,
        )

    def to_proto(self) -> common_pb2.BlobRef:
        """The ref as an event field (``radstream.common.v1.BlobRef``)."""
        return common_pb2.BlobRef(
            uri=self.uri, sha256=self.sha256, size=self.size, media_type=self.media_type
        )


class BlobStore(Protocol):
    """A content-addressed blob store in one zone."""

    @property
    def zone(self) -> Zone:
        """The zone this store serves: ``phi`` (raw) or ``release`` (de-identified only)."""

    @property
    def root_uri(self) -> str:
        """URI under which every blob of this store lives."""

    async def put(self, data: bytes, *, media_type: str = DEFAULT_MEDIA_TYPE) -> BlobRef:
        """Store ``data`` under its sha256 (once, however often it is put) and return its ref."""

    async def get(self, ref: BlobRef) -> bytes:
        """Return the blob's bytes, verified against the ref's size and sha256."""

    def open_file(
        self, ref: BlobRef, *, spool_dir: Path | None = None
    ) -> AbstractAsyncContextManager[BinaryIO]:
        """The blob as a read-only file at offset 0, verified, never whole in memory.

        For blobs too large to copy around: the filesystem store opens the blob's own file,
        S3 downloads it into a spool file in ``spool_dir`` (the system's temp directory when
        None). The file is closed (a spool file removed) when the ``async with`` block ends.
        """

    async def exists(self, ref: BlobRef) -> bool:
        """Tell whether the blob is stored."""

    async def delete(self, ref: BlobRef) -> None:
        """Remove the blob; removing a missing blob is not an error (handlers may run twice)."""

    async def check(self) -> None:
        """Write and read back a probe object; raise a radstream error saying what is wrong."""


class _ContentAddressedStore(ABC):
    """The semantics both backends share; a backend supplies five blocking primitives.

    Every public coroutine runs its whole operation, hashing included, in a worker thread, so
    neither a large study nor a slow disk stalls the event loop.
    """

    def __init__(self, *, zone: Zone, root_uri: str, refused_roots: Iterable[str]) -> None:
        self._zone: Zone = zone
        self._root_uri = root_uri.rstrip("/")
        self._refused_roots = tuple(refused_roots)
        # Puts that failed in a row: the probe alone passes where only real writes are refused.
        self.write_failures = WriteFailures()

    @property
    def zone(self) -> Zone:
        """The zone this store serves."""
        return self._zone

    @property
    def root_uri(self) -> str:
        """URI under which every blob of this store lives."""
        return self._root_uri

    def uri_for(self, sha256: str) -> str:
        """Return the URI a blob with this hash has in this store."""
        return f"{self._root_uri}/{_fanout(sha256)}"

    async def put(self, data: bytes, *, media_type: str = DEFAULT_MEDIA_TYPE) -> BlobRef:
        """Store ``data`` under its sha256 (once, however often it is put) and return its ref."""
        try:
            ref = await asyncio.to_thread(self._put, bytes(data), media_type)
        except Exception as exc:
            self.write_failures.failed(exc)
            raise
        self.write_failures.succeeded()
        return ref

    async def get(self, ref: BlobRef) -> bytes:
        """Return the blob's bytes, verified against the ref's size and sha256."""
        return await asyncio.to_thread(self._get, ref)

    @contextlib.asynccontextmanager
    async def open_file(
        self, ref: BlobRef, *, spool_dir: Path | None = None
    ) -> AsyncIterator[BinaryIO]:
        """The blob as a read-only file at offset 0, verified, never whole in memory."""
        file = await asyncio.to_thread(self._open_verified, ref, spool_dir)
        try:
            yield file
        finally:
            file.close()

    async def exists(self, ref: BlobRef) -> bool:
        """Tell whether the blob is stored."""
        key = self._key_of(ref)
        return await asyncio.to_thread(self._stored_size, key) is not None

    async def delete(self, ref: BlobRef) -> None:
        """Remove the blob; removing a missing blob is not an error (handlers may run twice)."""
        await asyncio.to_thread(self._remove, self._key_of(ref))

    async def check(self) -> None:
        """Probe as a put does (HEAD, write, read back); fail too when the last puts all failed."""
        await asyncio.to_thread(self._probe)
        self.write_failures.raise_if_failing(
            lambda problem: BlobStoreUnavailableError(f"the {self._zone} store: {problem}")
        )

    def _put(self, data: bytes, media_type: str) -> BlobRef:
        sha256 = hashlib.sha256(data).hexdigest()
        key = _fanout(sha256)
        # Same key means same bytes, so a blob already there is not written again. The size
        # comparison catches a truncated leftover; get() verifies the full hash anyway.
        if self._stored_size(key) != len(data):
            self._write(key, data, media_type)
        return BlobRef(
            uri=self.uri_for(sha256), sha256=sha256, size=len(data), media_type=media_type
        )

    def _get(self, ref: BlobRef) -> bytes:
        data = self._read(self._key_of(ref))
        if data is None:
            raise self._not_found(ref)
        _verify(ref, data)
        return data

    def _open_verified(self, ref: BlobRef, spool_dir: Path | None) -> BinaryIO:
        file = self._open(self._key_of(ref), spool_dir)
        if file is None:
            raise self._not_found(ref)
        try:
            _verify_file(ref, file)
        except BaseException:
            file.close()
            raise
        return file

    def _not_found(self, ref: BlobRef) -> BlobNotFoundError:
        return BlobNotFoundError(
            f"blob sha256={ref.sha256} is not in the {self._zone} store at {self._root_uri}; "
            "it was deleted or never written. Replay the producing event if it must exist"
        )

    def _probe(self) -> None:
        token = f"radstream blob store probe {uuid.uuid4()}".encode()
        self._stored_size(_PROBE_KEY)  # what a put asks first (an S3 HEAD)
        self._write(_PROBE_KEY, token, "text/plain")
        if self._read(_PROBE_KEY) != token:
            raise BlobStoreUnavailableError(
                f"the {self._zone} store at {self._root_uri} did not return the probe just "
                "written; check the storage backend's consistency"
            )

    def _key_of(self, ref: BlobRef) -> str:
        """Return this store's key for ``ref``, refusing refs this store must not serve."""
        target = _normalized(ref.uri)
        for refused in self._refused_roots:
            if _lies_under(target, _normalized(refused)):
                raise ZoneViolationError(
                    f"the {self._zone} store refuses {ref.uri}: it lies in {refused}. Only "
                    "de-identified copies put into the release store may be released"
                )
        if ref.uri == self.uri_for(ref.sha256):
            return _fanout(ref.sha256)
        if _lies_under(target, _normalized(self._root_uri)):
            raise BlobRefRejectedError(
                f"{ref.uri} does not match its sha256 under {self._root_uri} (expected "
                f"{self.uri_for(ref.sha256)}); the ref was altered"
            )
        if _lies_under(ref.uri, self._root_uri):
            raise BlobRefRejectedError(
                f"{ref.uri} climbs out of the store root {self._root_uri}; refusing it"
            )
        raise BlobRefRejectedError(
            f"{ref.uri} belongs to another store, not the {self._zone} store at "
            f"{self._root_uri}; read it through the store that wrote it"
        )

    @abstractmethod
    def _stored_size(self, key: str) -> int | None:
        """Return the stored object's size, or None when there is none."""

    @abstractmethod
    def _write(self, key: str, data: bytes, media_type: str) -> None:
        """Store ``data`` under ``key`` so that readers see all of it or nothing."""

    @abstractmethod
    def _read(self, key: str) -> bytes | None:
        """Return the stored object's bytes, or None when there is none."""

    @abstractmethod
    def _remove(self, key: str) -> None:
        """Remove the object if it is there."""

    @abstractmethod
    def _open(self, key: str, spool_dir: Path | None) -> BinaryIO | None:
        """Return the stored object as a file open for reading, or None when there is none."""


def _fanout(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256}"


def _verify(ref: BlobRef, data: bytes) -> None:
    if len(data) != ref.size:
        raise BlobIntegrityError(
            f"blob sha256={ref.sha256} holds {len(data)} bytes, the ref says {ref.size}; the "
            "stored copy is damaged or the ref is wrong"
        )
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise BlobIntegrityError(
            f"blob sha256={ref.sha256} does not hash to its ref; the stored copy is damaged"
        )


def _verify_file(ref: BlobRef, file: BinaryIO) -> None:
    """:func:`_verify` for a file, hashed in chunks; leaves the file at offset 0."""
    size = os.fstat(file.fileno()).st_size
    if size != ref.size:
        raise BlobIntegrityError(
            f"blob sha256={ref.sha256} holds {size} bytes, the ref says {ref.size}; the "
            "stored copy is damaged or the ref is wrong"
        )
    file.seek(0)
    hasher = hashlib.sha256()
    while chunk := file.read(_HASH_CHUNK):
        hasher.update(chunk)
    file.seek(0)
    if hasher.hexdigest() != ref.sha256:
        raise BlobIntegrityError(
            f"blob sha256={ref.sha256} does not hash to its ref; the stored copy is damaged"
        )


def _normalized(uri: str) -> str:
    """Decode and collapse ``.``/``..`` segments, so a ref cannot hide where it points."""
    scheme, separator, rest = uri.partition("://")
    if not separator:
        return uri
    authority, _, path = unquote(rest).partition("/")
    return f"{scheme}://{authority}{posixpath.normpath('/' + path)}".rstrip("/")


def _lies_under(uri: str, root_uri: str) -> bool:
    root = root_uri.rstrip("/")
    return uri == root or uri.startswith(root + "/")
