"""One conversion between :class:`BlobRef` and its protobuf message, used by every service."""

from __future__ import annotations

import pytest

from radstream.common.blobstore import BlobRef, BlobRefRejectedError
from radstream.contracts.v1 import common_pb2

SHA = "ab" * 32


def test_a_blob_ref_survives_the_round_trip_through_its_event_field() -> None:
    ref = BlobRef(uri="file:///phi/ab/" + SHA, sha256=SHA, size=12, media_type="application/dicom")

    assert BlobRef.from_proto(ref.to_proto()) == ref


def test_an_event_ref_without_media_type_gets_the_callers_default() -> None:
    message = common_pb2.BlobRef(uri="s3://phi/" + SHA, sha256=SHA, size=3)

    assert BlobRef.from_proto(message).media_type == "application/octet-stream"
    assert (
        BlobRef.from_proto(message, default_media_type="application/dicom").media_type
        == "application/dicom"
    )


def test_an_event_ref_with_a_malformed_hash_is_poison() -> None:
    with pytest.raises(BlobRefRejectedError):
        BlobRef.from_proto(common_pb2.BlobRef(uri="s3://phi/x", sha256="not-a-hash", size=3))
