"""The claim check: content-addressed blob stores for payloads too big to ride on Kafka.

A producer puts the bytes, gets a :class:`BlobRef` (URI, sha256, size) and publishes the ref;
a consumer gets the bytes back, verified against the ref. There are two stores, one
per zone: ``phi`` holds raw studies, ``release`` only de-identified copies, and the release store
refuses refs that point into the PHI store.

Keys are the sha256 of the content, fanned out by its first two hex digits (``ab/abcdef...``),
so putting the same bytes twice is harmless and a ref's URI can be checked against its hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from radstream.common.blobstore.base import (
    DEFAULT_MEDIA_TYPE,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobRef,
    BlobRefRejectedError,
    BlobStore,
    BlobStoreUnavailableError,
    Zone,
    ZoneViolationError,
    _lies_under,
    _normalized,
)
from radstream.common.blobstore.filesystem import FilesystemBlobStore, _path_of
from radstream.common.blobstore.s3 import S3BlobStore, S3Client, _s3_client
from radstream.common.errors import MisconfiguredError
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
