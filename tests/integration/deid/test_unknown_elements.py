"""The deid service never releases an element the data dictionary does not know."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from radstream.common.blobstore import BlobRef
from radstream.common.settings import KafkaSettings
from radstream.contracts.v1 import deid_pb2, imaging_pb2
from radstream.deid.app import DeidTopics
from radstream.deid.metrics import deid_metrics
from tests.integration.buses import running
from tests.integration.deid.deid_service import (
    deid_and_ingest_buses,
    deid_worker,
    instance_ref,
    stores_in,
)
from tests.integration.topic_reader import read_records
from tests.unit.deid.study_builder import (
    CT_IMAGE_STORAGE,
    PATIENT_ID,
    STUDY_UID,
    assert_no_unknown_element_in,
    instance_bytes,
    with_unknown_elements,
)

pytestmark = pytest.mark.integration

Completed = deid_pb2.DeidCompleted


async def test_unknown_elements_are_removed_from_what_the_service_releases(
    kafka_settings: KafkaSettings, deid_topics: DeidTopics, idempotency_dsn: str, tmp_path: Path
) -> None:
    stores = stores_in(tmp_path)
    registry = CollectorRegistry()
    worker = deid_worker(stores, deid_metrics(registry))
    deid_bus, ingest_bus = deid_and_ingest_buses(
        kafka_settings, idempotency_dsn, worker, deid_topics, registry=registry
    )
    stored = await stores.phi.put(instance_bytes(customize=with_unknown_elements))
    study = imaging_pb2.StudyReceived(
        study_instance_uid=STUDY_UID,
        patient_id=PATIENT_ID,
        instances=[instance_ref(1, stored, sop_class=CT_IMAGE_STORAGE, modality="CT")],
        revision=0,
    )

    async with running(ingest_bus), running(deid_bus):
        await ingest_bus.publish(deid_topics.study_received, study)
        [record] = await read_records(kafka_settings, deid_topics.completed.name, 1)

    [result] = Completed.FromString(record.value).results
    assert result.outcome == Completed.OUTCOME_RELEASED
    blob = result.released.blob
    data = await stores.release.get(BlobRef(uri=blob.uri, sha256=blob.sha256, size=blob.size))
    assert_no_unknown_element_in(data)
