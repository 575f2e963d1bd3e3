"""The S3-compatible blob store (AWS S3, MinIO, Ceph RGW) over boto3."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

from radstream.common.blobstore.base import (
    _MISCONFIGURED_S3_CODES,
    _MISSING_OBJECT_CODES,
    BlobStoreUnavailableError,
    Zone,
    _ContentAddressedStore,
)
from radstream.common.errors import (
    MisconfiguredError,
    MissingExtraError,
)
from radstream.common.settings import BlobSettings
from radstream.common.spool import open_spool_file

_DOWNLOAD_CHUNK: Final = 1024 * 1024


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

    def _open(self, key: str, spool_dir: Path | None) -> BinaryIO | None:
        """Download the object into a spool file chunk by chunk (never whole in memory)."""
        directory = spool_dir or Path(tempfile.gettempdir())
        try:
            spool = open_spool_file(directory)
        except OSError as exc:
            raise MisconfiguredError(
                f"cannot create a spool file in {directory} ({exc.strerror}); point "
                "RADSTREAM_MEMORY_SPOOL_DIR at a writable directory on disk"
            ) from exc
        try:
            with self._s3_errors("GetObject"):
                response = self._client.get_object(Bucket=self._bucket, Key=self._object_key(key))
                for chunk in response["Body"].iter_chunks(_DOWNLOAD_CHUNK):
                    spool.write(chunk)
            spool.flush()
        except _ObjectMissingError:
            spool.close()
            return None
        except OSError as exc:  # the spool disk, not S3: full or failing
            spool.close()
            raise BlobStoreUnavailableError(
                f"cannot spool an object of {self.root_uri} to {directory} ({exc.strerror}); "
                "free space under RADSTREAM_MEMORY_SPOOL_DIR"
            ) from exc
        except BaseException:
            spool.close()
            raise
        return spool

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
