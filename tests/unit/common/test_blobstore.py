"""The claim-check blob stores: content addressing, integrity, zone separation, S3 parity."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from radstream.common.blobstore import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobRef,
    BlobRefRejectedError,
    BlobStore,
    BlobStoreUnavailableError,
    FilesystemBlobStore,
    S3BlobStore,
    ZoneViolationError,
    open_blob_store,
    open_blob_stores,
)
from radstream.common.errors import (
    MisconfiguredError,
    MissingExtraError,
    PoisonEventError,
    TransientError,
)
from radstream.common.settings import BlobSettings
from tests.unit.common.blob_stores import STUDY, make_client


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temp_files(root: Path) -> list[Path]:
    return [path for path in root.rglob(".tmp-*")]


class TestErrorKinds:
    """Which errors dead-letter an event and which ones retry it."""

    def test_a_missing_or_corrupt_blob_poisons_the_event(self) -> None:
        assert issubclass(BlobNotFoundError, PoisonEventError)
        assert issubclass(BlobIntegrityError, PoisonEventError)
        assert issubclass(BlobRefRejectedError, PoisonEventError)
        assert issubclass(ZoneViolationError, BlobRefRejectedError)

    def test_an_unavailable_store_is_transient(self) -> None:
        assert issubclass(BlobStoreUnavailableError, TransientError)


class TestBlobRef:
    def test_is_frozen_and_keyword_only(self) -> None:
        ref = BlobRef(uri="file:///x", sha256=sha256_of(b"x"), size=1)
        with pytest.raises(AttributeError):
            ref.size = 2  # type: ignore[misc]
        with pytest.raises(TypeError):
            BlobRef("file:///x", sha256_of(b"x"), 1)  # type: ignore[call-arg]

    def test_media_type_defaults_to_octet_stream(self) -> None:
        ref = BlobRef(uri="file:///x", sha256=sha256_of(b"x"), size=1)
        assert ref.media_type == "application/octet-stream"

    @pytest.mark.parametrize("sha256", ["", "abc", "A" * 64, "g" * 64, "0" * 63])
    def test_a_malformed_hash_is_rejected(self, sha256: str) -> None:
        with pytest.raises(BlobRefRejectedError, match="64 lowercase hex"):
            BlobRef(uri="file:///x", sha256=sha256, size=1)

    def test_a_negative_size_is_rejected(self) -> None:
        with pytest.raises(BlobRefRejectedError, match="negative"):
            BlobRef(uri="file:///x", sha256=sha256_of(b""), size=-1)


class TestFilesystemBlobStore:
    async def test_put_returns_a_content_addressed_ref(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY, media_type="application/dicom")

        digest = sha256_of(STUDY)
        assert ref == BlobRef(
            uri=f"{phi_store.root.as_uri()}/{digest[:2]}/{digest}",
            sha256=digest,
            size=len(STUDY),
            media_type="application/dicom",
        )
        assert ref.uri.startswith("file:///")

    async def test_the_blob_lands_in_a_fan_out_directory_named_by_its_hash(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)

        path = phi_store.root / ref.sha256[:2] / ref.sha256
        assert path.read_bytes() == STUDY

    async def test_get_returns_the_bytes_that_were_put(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)

        assert await phi_store.get(ref) == STUDY

    async def test_empty_blobs_round_trip(self, phi_store: FilesystemBlobStore) -> None:
        ref = await phi_store.put(b"")

        assert ref.size == 0
        assert await phi_store.get(ref) == b""

    async def test_putting_the_same_bytes_twice_gives_the_same_ref_and_writes_once(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        first = await phi_store.put(STUDY)
        path = phi_store.root / first.sha256[:2] / first.sha256
        written = path.stat()

        second = await phi_store.put(STUDY)

        assert second == first
        assert path.stat().st_ino == written.st_ino  # os.replace would have made a new inode
        assert path.stat().st_mtime_ns == written.st_mtime_ns

    async def test_a_truncated_leftover_is_rewritten_on_put(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)
        path = phi_store.root / ref.sha256[:2] / ref.sha256
        path.write_bytes(STUDY[:10])

        await phi_store.put(STUDY)

        assert await phi_store.get(ref) == STUDY

    async def test_blobs_are_readable_by_the_service_user_only(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)

        mode = (phi_store.root / ref.sha256[:2] / ref.sha256).stat().st_mode
        assert mode & 0o077 == 0

    async def test_writes_leave_no_temporary_files(self, phi_store: FilesystemBlobStore) -> None:
        await phi_store.put(STUDY)
        await phi_store.check()

        assert temp_files(phi_store.root) == []

    async def test_a_failed_write_leaves_neither_a_partial_blob_nor_a_temp_file(
        self, phi_store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def disk_full(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", disk_full)

        with pytest.raises(BlobStoreUnavailableError, match="No space left"):
            await phi_store.put(STUDY)

        digest = sha256_of(STUDY)
        assert not (phi_store.root / digest[:2] / digest).exists()
        assert temp_files(phi_store.root) == []

    async def test_a_blob_altered_on_disk_fails_the_hash_check(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)
        path = phi_store.root / ref.sha256[:2] / ref.sha256
        path.write_bytes(STUDY[:-1] + b"X")  # same size, different content

        with pytest.raises(BlobIntegrityError, match="does not hash"):
            await phi_store.get(ref)

    async def test_a_blob_of_the_wrong_size_fails_the_size_check(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)

        with pytest.raises(BlobIntegrityError, match=f"the ref says {len(STUDY) + 1}"):
            await phi_store.get(replace(ref, size=len(STUDY) + 1))

    async def test_get_of_a_deleted_blob_raises_not_found(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)
        await phi_store.delete(ref)

        with pytest.raises(BlobNotFoundError, match="not in the phi store"):
            await phi_store.get(ref)

    async def test_a_missing_root_is_an_outage_not_a_missing_blob(self, tmp_path: Path) -> None:
        store = FilesystemBlobStore(tmp_path / "unmounted", "phi")
        ref = BlobRef(uri=store.uri_for(sha256_of(STUDY)), sha256=sha256_of(STUDY), size=1)

        with pytest.raises(BlobStoreUnavailableError, match="is its volume mounted"):
            await store.get(ref)

    async def test_exists_tells_whether_the_blob_is_stored(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)
        assert await phi_store.exists(ref)

        await phi_store.delete(ref)
        assert not await phi_store.exists(ref)

    async def test_deleting_twice_is_harmless(self, phi_store: FilesystemBlobStore) -> None:
        ref = await phi_store.put(STUDY)

        await phi_store.delete(ref)
        await phi_store.delete(ref)

    async def test_a_ref_climbing_out_of_the_root_is_refused(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        digest = sha256_of(STUDY)
        sneaky = BlobRef(uri=f"{phi_store.root.as_uri()}/../../etc/passwd", sha256=digest, size=1)

        for operation in (phi_store.get, phi_store.exists, phi_store.delete):
            with pytest.raises(BlobRefRejectedError, match="climbs out of the store root"):
                await operation(sneaky)

    async def test_a_ref_from_another_store_is_refused(
        self, phi_store: FilesystemBlobStore, tmp_path: Path
    ) -> None:
        other = FilesystemBlobStore(tmp_path / "other", "phi")
        ref = await other.put(STUDY)

        with pytest.raises(BlobRefRejectedError, match="belongs to another store"):
            await phi_store.get(ref)

    async def test_an_s3_ref_is_refused_by_a_filesystem_store(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        digest = sha256_of(STUDY)
        ref = BlobRef(uri=f"s3://bucket/phi/{digest[:2]}/{digest}", sha256=digest, size=1)

        with pytest.raises(BlobRefRejectedError, match="belongs to another store"):
            await phi_store.exists(ref)

    async def test_a_ref_whose_uri_does_not_match_its_hash_is_refused(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)
        other_hash = sha256_of(b"another study")

        with pytest.raises(BlobRefRejectedError, match="does not match its sha256"):
            await phi_store.get(replace(ref, sha256=other_hash))

    async def test_two_stores_on_the_same_root_share_refs(
        self, phi_store: FilesystemBlobStore
    ) -> None:
        ref = await phi_store.put(STUDY)

        assert await FilesystemBlobStore(phi_store.root, "phi").get(ref) == STUDY

    async def test_check_writes_and_reads_a_probe(self, tmp_path: Path) -> None:
        store = FilesystemBlobStore(tmp_path / "new" / "root", "release")

        await store.check()

        assert (store.root / "_probe").read_bytes().startswith(b"radstream blob store probe")

    async def test_check_on_a_root_that_is_a_file_says_what_to_fix(self, tmp_path: Path) -> None:
        (tmp_path / "blobs").write_text("not a directory")
        store = FilesystemBlobStore(tmp_path / "blobs", "phi")

        with pytest.raises(MisconfiguredError, match="RADSTREAM_BLOB_"):
            await store.check()

    async def test_a_store_whose_every_put_fails_is_not_ready_though_its_probe_passes(
        self, tmp_path: Path
    ) -> None:
        class RefusingBlobs(FilesystemBlobStore):
            """Writes the probe, refuses every blob (a role allowed one prefix only)."""

            refusing = True

            def _write(self, key: str, data: bytes, media_type: str) -> None:
                if self.refusing and key != "_probe":
                    raise BlobStoreUnavailableError("AccessDenied on PutObject")
                super()._write(key, data, media_type)

        store = RefusingBlobs(tmp_path / "phi", "phi")
        await store.check()
        for n in range(3):
            with pytest.raises(BlobStoreUnavailableError):
                await store.put(f"study {n}".encode())

        with pytest.raises(BlobStoreUnavailableError, match="writes failed"):
            await store.check()
        store.refusing = False
        await store.put(b"study 3")
        await store.check()  # a put went through: ready again

    async def test_the_probe_asks_what_a_put_asks_first(self, tmp_path: Path) -> None:
        class HeadRefused(FilesystemBlobStore):
            """Answers 403 to a HEAD (the size a put asks for), as a narrow S3 role does."""

            def _stored_size(self, key: str) -> int | None:
                raise MisconfiguredError("AccessDenied on HeadObject")

        with pytest.raises(MisconfiguredError, match="HeadObject"):
            await HeadRefused(tmp_path / "phi", "phi").check()


class TestOpenBlobStore:
    def test_a_relative_file_uri_resolves_against_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)

        store = open_blob_store("file://.radstream/blobs/phi", "phi", BlobSettings())

        assert isinstance(store, FilesystemBlobStore)
        assert store.root == tmp_path.resolve() / ".radstream" / "blobs" / "phi"
        assert store.zone == "phi"

    def test_an_absolute_file_uri_is_taken_as_is(self, tmp_path: Path) -> None:
        store = open_blob_store(f"file://{tmp_path}/release", "release", BlobSettings())

        assert isinstance(store, FilesystemBlobStore)
        assert store.root == tmp_path.resolve() / "release"
        assert store.root_uri == (tmp_path.resolve() / "release").as_uri()

    def test_an_unknown_scheme_names_the_setting_to_fix(self) -> None:
        with pytest.raises(MisconfiguredError, match="RADSTREAM_BLOB_RELEASE_URI"):
            open_blob_store("ftp://host/blobs", "release", BlobSettings())

    def test_an_s3_uri_without_a_bucket_is_misconfigured(self) -> None:
        with pytest.raises(MisconfiguredError, match="names no bucket"):
            open_blob_store("s3:///prefix", "phi", BlobSettings())

    def test_an_s3_uri_without_boto3_names_the_extra_to_install(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "boto3", None)

        with pytest.raises(MissingExtraError, match=r"pip install 'radstream\[s3\]'"):
            open_blob_store("s3://bucket/phi", "phi", BlobSettings())

    def test_half_a_pair_of_s3_credentials_is_misconfigured(self) -> None:
        settings = BlobSettings(s3_access_key_id=SecretStr("AKIDEXAMPLE"))

        with pytest.raises(MisconfiguredError, match="set both"):
            open_blob_store("s3://bucket/phi", "phi", settings)


class TestOpenBlobStores:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> BlobSettings:
        return BlobSettings(
            phi_uri=f"file://{tmp_path}/phi", release_uri=f"file://{tmp_path}/release"
        )

    def test_each_zone_gets_its_own_store(self, settings: BlobSettings, tmp_path: Path) -> None:
        stores = open_blob_stores(settings)

        assert stores.phi.zone == "phi"
        assert stores.release.zone == "release"
        assert stores.phi.root_uri == (tmp_path.resolve() / "phi").as_uri()
        assert stores.release.root_uri == (tmp_path.resolve() / "release").as_uri()

    async def test_the_release_store_refuses_refs_into_the_phi_store(
        self, settings: BlobSettings
    ) -> None:
        stores = open_blob_stores(settings)
        phi_ref = await stores.phi.put(STUDY)

        for operation in (stores.release.get, stores.release.exists, stores.release.delete):
            with pytest.raises(ZoneViolationError, match="Only de-identified copies"):
                await operation(phi_ref)
        assert await stores.phi.get(phi_ref) == STUDY

    async def test_a_phi_ref_dressed_up_with_dot_segments_is_still_refused(
        self, settings: BlobSettings
    ) -> None:
        stores = open_blob_stores(settings)
        phi_ref = await stores.phi.put(STUDY)
        disguised = phi_ref.uri.replace("/phi/", "/release/../phi/")

        with pytest.raises(ZoneViolationError):
            await stores.release.get(replace(phi_ref, uri=disguised))

    async def test_the_phi_store_does_not_serve_release_refs(self, settings: BlobSettings) -> None:
        stores = open_blob_stores(settings)
        release_ref = await stores.release.put(b"de-identified")

        with pytest.raises(BlobRefRejectedError):
            await stores.phi.get(release_ref)

    def test_nested_zone_roots_are_misconfigured(self, tmp_path: Path) -> None:
        settings = BlobSettings(
            phi_uri=f"file://{tmp_path}/blobs", release_uri=f"file://{tmp_path}/blobs/release"
        )

        with pytest.raises(MisconfiguredError, match="overlap"):
            open_blob_stores(settings)

    def test_two_spellings_of_one_root_are_misconfigured(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        settings = BlobSettings(phi_uri="file://blobs", release_uri=f"file://{tmp_path}/blobs")

        with pytest.raises(MisconfiguredError, match="overlap"):
            open_blob_stores(settings)


# --- S3, against moto's S3-compatible HTTP server on loopback ------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def s3_settings(s3_endpoint: str) -> BlobSettings:
    return BlobSettings(
        phi_uri="s3://unused-phi/phi",
        release_uri="s3://unused-release/release",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id=SecretStr("testing"),
        s3_secret_access_key=SecretStr("testing"),
        s3_addressing_style="path",
    )


def count_calls(client: Any, operation: str) -> Callable[[], int]:
    calls: list[str] = []
    client.meta.events.register(f"before-call.s3.{operation}", lambda **_: calls.append(operation))
    return lambda: len(calls)


@pytest.mark.integration
class TestS3BlobStore:
    async def test_put_returns_an_s3_uri_under_bucket_and_prefix(
        self, s3_store: S3BlobStore, bucket: str
    ) -> None:
        ref = await s3_store.put(STUDY, media_type="application/dicom")

        digest = sha256_of(STUDY)
        assert ref.uri == f"s3://{bucket}/phi/{digest[:2]}/{digest}"
        assert (ref.sha256, ref.size, ref.media_type) == (digest, len(STUDY), "application/dicom")

    async def test_get_returns_the_bytes_that_were_put(self, s3_store: S3BlobStore) -> None:
        ref = await s3_store.put(STUDY)

        assert await s3_store.get(ref) == STUDY

    async def test_the_object_carries_the_media_type(
        self, s3_store: S3BlobStore, s3_client: Any, bucket: str
    ) -> None:
        ref = await s3_store.put(STUDY, media_type="application/dicom")

        head = s3_client.head_object(Bucket=bucket, Key=ref.uri.removeprefix(f"s3://{bucket}/"))
        assert head["ContentType"] == "application/dicom"

    async def test_putting_the_same_bytes_twice_writes_once(
        self, s3_store: S3BlobStore, s3_client: Any
    ) -> None:
        puts = count_calls(s3_client, "PutObject")

        first = await s3_store.put(STUDY)
        second = await s3_store.put(STUDY)

        assert first == second
        assert puts() == 1

    async def test_an_object_altered_in_the_bucket_fails_the_hash_check(
        self, s3_store: S3BlobStore, s3_client: Any, bucket: str
    ) -> None:
        ref = await s3_store.put(STUDY)
        key = ref.uri.removeprefix(f"s3://{bucket}/")
        s3_client.put_object(Bucket=bucket, Key=key, Body=STUDY[:-1] + b"X")

        with pytest.raises(BlobIntegrityError):
            await s3_store.get(ref)

    async def test_get_of_a_deleted_object_raises_not_found(self, s3_store: S3BlobStore) -> None:
        ref = await s3_store.put(STUDY)
        await s3_store.delete(ref)

        assert not await s3_store.exists(ref)
        with pytest.raises(BlobNotFoundError):
            await s3_store.get(ref)

    async def test_deleting_twice_is_harmless(self, s3_store: S3BlobStore) -> None:
        ref = await s3_store.put(STUDY)

        await s3_store.delete(ref)
        await s3_store.delete(ref)

    async def test_a_ref_from_another_prefix_is_refused(
        self, s3_store: S3BlobStore, s3_client: Any, bucket: str
    ) -> None:
        ref = await S3BlobStore(bucket, "other", "phi", s3_client).put(STUDY)

        with pytest.raises(BlobRefRejectedError, match="belongs to another store"):
            await s3_store.get(ref)

    async def test_a_ref_climbing_out_of_the_prefix_is_refused(
        self, s3_store: S3BlobStore, bucket: str
    ) -> None:
        digest = sha256_of(STUDY)
        sneaky = BlobRef(uri=f"s3://{bucket}/phi/../secrets/{digest}", sha256=digest, size=1)

        with pytest.raises(BlobRefRejectedError, match="climbs out"):
            await s3_store.get(sneaky)

    async def test_check_passes_on_a_writable_bucket(self, s3_store: S3BlobStore) -> None:
        await s3_store.check()

    async def test_check_on_a_missing_bucket_is_misconfigured(self, s3_client: Any) -> None:
        store = S3BlobStore("no-such-bucket-radstream", "phi", "phi", s3_client)

        with pytest.raises(MisconfiguredError, match="NoSuchBucket"):
            await store.check()

    async def test_an_unreachable_endpoint_is_transient(self) -> None:
        client = make_client(f"http://127.0.0.1:{free_port()}", retries={"max_attempts": 1})
        store = S3BlobStore("bucket", "phi", "phi", client)

        with pytest.raises(BlobStoreUnavailableError, match="RADSTREAM_BLOB_S3_ENDPOINT_URL"):
            await store.check()

    async def test_open_blob_store_builds_an_s3_store_from_settings(
        self, s3_settings: BlobSettings, bucket: str
    ) -> None:
        store: BlobStore = open_blob_store(f"s3://{bucket}/studies/", "phi", s3_settings)

        ref = await store.put(STUDY)

        assert store.root_uri == f"s3://{bucket}/studies"
        assert await store.get(ref) == STUDY

    async def test_the_release_store_refuses_refs_into_the_phi_prefix(
        self, s3_settings: BlobSettings, bucket: str
    ) -> None:
        settings = s3_settings.model_copy(
            update={"phi_uri": f"s3://{bucket}/phi", "release_uri": f"s3://{bucket}/release"}
        )
        stores = open_blob_stores(settings)
        phi_ref = await stores.phi.put(STUDY)

        with pytest.raises(ZoneViolationError):
            await stores.release.get(phi_ref)
        release_ref = await stores.release.put(b"de-identified")
        assert await stores.release.get(release_ref) == b"de-identified"
