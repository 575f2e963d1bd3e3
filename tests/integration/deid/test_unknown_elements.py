"""The deid service never releases an element the data dictionary does not know."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radstream.common import topics
from radstream.common.blobstore import BlobRef, BlobStores, FilesystemBlobStore
from radstream.common.bus import create_bus
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.contracts.v1 import common_pb2, deid_pb2, imaging_pb2
from radstream.deid.app import DeidTopics, DeidWorker, register_deid
from radstream.deid.metrics import deid_metrics
from radstream.deid.profile import DeidKeys, DeidProfile
from tests.integration.buses import running
from tests.integration.topic_reader import read_records
from tests.unit.deid.study_builder import (
    CT_IMAGE_STORAGE,
    PATIENT_ID,
    SERIES_UID,
    STUDY_UID,
    TEST_KEYS_SECRET,
    instance_bytes,
    shared_text_cleaner,
)

pytestmark = pytest.mark.integration

Completed = deid_pb2.DeidCompleted


def unknown_elements(ds: Dataset) -> None:
    """Text about someone in elements no dictionary knows, top level and inside an item."""
    ds.add_new(0x44440010, "LO", "SMITH^JOHN MRN 12345678")
    ds.add_new(0x00089999, "UT", "Patient John Smith seen at St Mary hospital")
    region = Dataset()
    region.CodeValue = "T-D4000"
    region.CodingSchemeDesignator = "SRT"
    region.CodeMeaning = "Abdomen"
    region.add_new(0x44440012, "LO", "SMITH^JOHN")
    ds.AnatomicRegionSequence = Sequence([region])


async def test_unknown_elements_are_removed_from_what_the_service_releases(
    kafka_settings: KafkaSettings, new_topic, idempotency_dsn: str, tmp_path: Path
) -> None:
    chosen = DeidTopics(
        study_received=await new_topic(topics.STUDY_RECEIVED_V1),
        completed=await new_topic(topics.DEID_COMPLETED_V1),
        review=await new_topic(topics.REVIEW_TASK_V1),
    )
    phi = FilesystemBlobStore(tmp_path / "phi", "phi")
    release = FilesystemBlobStore(tmp_path / "release", "release", refused_roots=[phi.root_uri])
    stores = BlobStores(phi=phi, release=release)
    registry = CollectorRegistry()
    worker = DeidWorker(
        profile=DeidProfile(),
        keys=DeidKeys.from_secret(TEST_KEYS_SECRET),
        clean_text=shared_text_cleaner(),
        stores=stores,
        metrics=deid_metrics(registry),
    )
    delivery = DeliverySettings(idempotency_dsn=idempotency_dsn, backoff_initial_s=0.05)
    deid_bus = create_bus(kafka_settings, delivery, service="deid", registry=registry)
    register_deid(deid_bus, worker, topic_set=chosen)
    ingest_bus = create_bus(
        kafka_settings, delivery, service="ingest", registry=CollectorRegistry()
    )
    stored = await phi.put(instance_bytes(customize=unknown_elements))
    study = imaging_pb2.StudyReceived(
        study_instance_uid=STUDY_UID,
        patient_id=PATIENT_ID,
        instances=[
            common_pb2.InstanceRef(
                study_instance_uid=STUDY_UID,
                series_instance_uid=SERIES_UID,
                sop_instance_uid=f"{SERIES_UID}.1",
                sop_class_uid=CT_IMAGE_STORAGE,
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                modality="CT",
                blob=common_pb2.BlobRef(
                    uri=stored.uri,
                    sha256=stored.sha256,
                    size=stored.size,
                    media_type=stored.media_type,
                ),
            )
        ],
        revision=0,
    )

    async with running(ingest_bus), running(deid_bus):
        await ingest_bus.publish(chosen.study_received, study)
        [record] = await read_records(kafka_settings, chosen.completed.name, 1)

    [result] = Completed.FromString(record.value).results
    assert result.outcome == Completed.OUTCOME_RELEASED
    blob = result.released.blob
    data = await release.get(BlobRef(uri=blob.uri, sha256=blob.sha256, size=blob.size))
    for fragment in (b"SMITH", b"Smith", b"12345678", b"St Mary"):
        assert fragment not in data
    released = dcmread(io.BytesIO(data))
    assert 0x44440010 not in released
    assert 0x00089999 not in released
    assert 0x44440012 not in released.AnatomicRegionSequence[0]
