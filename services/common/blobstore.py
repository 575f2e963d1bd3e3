"""The claim check: content-addressed blob stores for payloads too big to ride on Kafka.

A producer puts the bytes, gets a :class:`BlobRef` (URI, sha256, size) and publishes the ref;
a consumer gets the bytes back, verified against the ref. There are two stores, one
per zone: ``phi`` holds raw studies, ``release`` only de-identified copies, and the release store
refuses refs that point into the PHI store.

Keys are the sha256 of the content, fanned out by its first two hex digits (``ab/abcdef...``),
so putting the same bytes twice is harmless and a ref's URI can be checked against its hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import re
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol
from urllib.parse import unquote

from radstream.common.errors import (
    MisconfiguredError,
    MissingExtraError,
    PoisonEventError,
    TransientError,
)
from radstream.common.settings import BlobSettings

__all__ = [
    "DEFAULT_MEDIA_TYPE",
    "BlobIntegrityError",
    "BlobNotFoundError",
    "BlobRef",
    "BlobRefRejectedError",
    "BlobStore",
    "BlobStoreUnavailableError",
    "BlobStores",
    "FilesystemBlobStore",
    "S3BlobStore",
    "S3Client",
    "Zone",
    "ZoneViolationError",
    "open_blob_store",
    "open_blob_stores",
]

Zone = Literal["phi", "release"]
DEFAULT_MEDIA_TYPE: Final = "application/octet-stream"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
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

    async def exists(self, ref: BlobRef) -> bool:
        """Tell whether the blob is stored."""

    async def delete(self, ref: BlobRef) -> None:
        """Remove the blob; removing a missing blob is not an error (handlers may run twice)."""

    async def check(self) -> None:
        """Write and read back a probe object; raise a radstream error saying what is wrong."""


class _ContentAddressedStore(ABC):
    """The semantics both backends share; a backend supplies four blocking primitives.

    Every public coroutine runs its whole operation, hashing included, in a worker thread, so
    neither a large study nor a slow disk stalls the event loop.
    """

    def __init__(self, *, zone: Zone, root_uri: str, refused_roots: Iterable[str]) -> None:
        self._zone: Zone = zone
        self._root_uri = root_uri.rstrip("/")
        self._refused_roots = tuple(refused_roots)

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
        return await asyncio.to_thread(self._put, bytes(data), media_type)

    async def get(self, ref: BlobRef) -> bytes:
        """Return the blob's bytes, verified against the ref's size and sha256."""
        return await asyncio.to_thread(self._get, ref)

    async def exists(self, ref: BlobRef) -> bool:
        """Tell whether the blob is stored."""
        key = self._key_of(ref)
        return await asyncio.to_thread(self._stored_size, key) is not None

    async def delete(self, ref: BlobRef) -> None:
        """Remove the blob; removing a missing blob is not an error (handlers may run twice)."""
        await asyncio.to_thread(self._remove, self._key_of(ref))

    async def check(self) -> None:
        """Write and read back a probe object; raise a radstream error saying what is wrong."""
        await asyncio.to_thread(self._probe)

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
            raise BlobNotFoundError(
                f"blob sha256={ref.sha256} is not in the {self._zone} store at {self._root_uri}; "
                "it was deleted or never written. Replay the producing event if it must exist"
            )
        _verify(ref, data)
        return data

    def _probe(self) -> None:
        token = f"radstream blob store probe {uuid.uuid4()}".encode()
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
                if not self._root.is_dir():
                    # An unmounted volume looks like an empty one; say so, don't dead-letter.
                    raise BlobStoreUnavailableError(
                        f"blob store root {self._root} is missing; is its volume mounted?"
                    ) from None
                return None

    def _remove(self, key: str) -> None:
        with self._os_errors():
            (self._root / key).unlink(missing_ok=True)

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


class S3Client(Protocol):
    """The part of a boto3 S3 client the store calls (boto3 ships no type hints)."""

    def head_object(self, **kwargs: Any) -> Any:
        """Call S3 HeadObject."""

    def get_object(self, **kwargs: Any) -> Any:
        """Call S3 GetObject."""

    def put_object(self, **kwargs: Any) -> Any:
        """Call S3 PutObject."""

    def delete_object(self, **kwargs: Any) -> Any:
        """Call S3 DeleteObject."""


class _ObjectMissingError(Exception):
    """Internal: the S3 object is not there (HEAD cannot tell a missing bucket from a key)."""


class S3BlobStore(_ContentAddressedStore):
    """Blobs as objects under ``s3://bucket/prefix`` on S3 or an S3-compatible store.

    The boto3 client is blocking and thread-safe, so calls run in worker threads.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        zone: Zone,
        client: S3Client,
        *,
        refused_roots: Iterable[str] = (),
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._client = client
        root_uri = f"s3://{bucket}/{self._prefix}" if self._prefix else f"s3://{bucket}"
        super().__init__(zone=zone, root_uri=root_uri, refused_roots=refused_roots)

    @property
    def bucket(self) -> str:
        """Bucket holding the blobs."""
        return self._bucket

    def _object_key(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    def _stored_size(self, key: str) -> int | None:
        try:
            with self._s3_errors("HeadObject"):
                head = self._client.head_object(Bucket=self._bucket, Key=self._object_key(key))
        except _ObjectMissingError:
            return None
        return int(head["ContentLength"])

    def _write(self, key: str, data: bytes, media_type: str) -> None:
        with self._s3_errors("PutObject"):
            self._client.put_object(
                Bucket=self._bucket, Key=self._object_key(key), Body=data, ContentType=media_type
            )

    def _read(self, key: str) -> bytes | None:
        try:
            with self._s3_errors("GetObject"):
                response = self._client.get_object(Bucket=self._bucket, Key=self._object_key(key))
                return bytes(response["Body"].read())
        except _ObjectMissingError:
            return None

    def _remove(self, key: str) -> None:
        with self._s3_errors("DeleteObject"):
            self._client.delete_object(Bucket=self._bucket, Key=self._object_key(key))

    @contextlib.contextmanager
    def _s3_errors(self, operation: str) -> Iterator[None]:
        """Turn botocore errors into radstream errors; a missing object into _ObjectMissingError."""
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 -- optional extra

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_OBJECT_CODES:
                raise _ObjectMissingError from exc
            if code in _MISCONFIGURED_S3_CODES:
                raise MisconfiguredError(
                    f"S3 {operation} on {self.root_uri} was refused ({code}); check the bucket "
                    "name in RADSTREAM_BLOB_*_URI and the credentials' permissions"
                ) from exc
            raise BlobStoreUnavailableError(
                f"S3 {operation} on {self.root_uri} failed ({code}); retry later"
            ) from exc
        except BotoCoreError as exc:
            raise BlobStoreUnavailableError(
                f"S3 {operation} on {self.root_uri} failed ({type(exc).__name__}); check "
                "RADSTREAM_BLOB_S3_ENDPOINT_URL and the network"
            ) from exc


@dataclass(frozen=True, kw_only=True)
class BlobStores:
    """The two zones' stores a service works with."""

    phi: BlobStore
    release: BlobStore


def open_blob_store(
    uri: str, zone: Zone, settings: BlobSettings, *, refused_roots: Iterable[str] = ()
) -> BlobStore:
    """Open the store a ``file://`` or ``s3://bucket/prefix`` URI names.

    ``file://relative/path`` resolves against the working directory, ``file:///abs/path`` is
    absolute. ``refused_roots`` lists store roots whose refs this store must refuse.
    """
    scheme, separator, rest = uri.partition("://")
    if separator and scheme == "file":
        return FilesystemBlobStore(_path_of(rest), zone, refused_roots=refused_roots)
    if separator and scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise MisconfiguredError(
                f"blob store URI {uri!r} names no bucket: use s3://bucket/prefix"
            )
        return S3BlobStore(bucket, prefix, zone, _s3_client(settings), refused_roots=refused_roots)
    raise MisconfiguredError(
        f"blob store URI {uri!r} is neither file:// nor s3://; "
        f"fix RADSTREAM_BLOB_{zone.upper()}_URI"
    )


def open_blob_stores(settings: BlobSettings) -> BlobStores:
    """Open the PHI and release stores; the release store refuses refs into the PHI store."""
    phi = open_blob_store(settings.phi_uri, "phi", settings)
    release = open_blob_store(
        settings.release_uri, "release", settings, refused_roots=[phi.root_uri]
    )
    phi_root, release_root = _normalized(phi.root_uri), _normalized(release.root_uri)
    if _lies_under(phi_root, release_root) or _lies_under(release_root, phi_root):
        raise MisconfiguredError(
            f"the PHI store ({phi.root_uri}) and the release store ({release.root_uri}) overlap; "
            "point RADSTREAM_BLOB_PHI_URI and RADSTREAM_BLOB_RELEASE_URI at separate locations"
        )
    return BlobStores(phi=phi, release=release)


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


def _s3_client(settings: BlobSettings) -> S3Client:
    try:
        import boto3  # noqa: PLC0415 -- optional extra
        from botocore.config import Config  # noqa: PLC0415 -- optional extra
    except ImportError as exc:
        raise MissingExtraError("boto3", "s3") from exc
    key_id, secret = settings.s3_access_key_id, settings.s3_secret_access_key
    if (key_id is None) != (secret is None):
        raise MisconfiguredError(
            "set both RADSTREAM_BLOB_S3_ACCESS_KEY_ID and RADSTREAM_BLOB_S3_SECRET_ACCESS_KEY, "
            "or neither to use the default AWS credential chain"
        )
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=key_id.get_secret_value() if key_id else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=Config(
            s3={"addressing_style": settings.s3_addressing_style},
            retries={"mode": "standard"},
        ),
    )
    return client
