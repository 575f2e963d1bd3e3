"""deid within its memory budget, against the real embedded broker and filesystem stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from radstream.common.memory_budget import MemoryBudget, memory_budget_metrics
from radstream.common.settings import KafkaSettings
from radstream.contracts.v1 import deid_pb2, imaging_pb2
from radstream.deid.app import DeidTopics
from radstream.deid.config import DEID_COPIES
from radstream.deid.metrics import deid_metrics
from radstream.dicom import ReaderLimits
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
    instance_bytes,
)

pytestmark = pytest.mark.integration

Completed = deid_pb2.DeidCompleted


async def test_instances_the_budget_or_the_limit_cannot_hold_are_rejected_unread_and_the_rest_go_on(
    kafka_settings: KafkaSettings, deid_topics: DeidTopics, idempotency_dsn: str, tmp_path: Path
) -> None:
    stores = stores_in(tmp_path)
    small = instance_bytes(number=1)
    heavy = instance_bytes(number=2, rows=128, columns=128)  # ~33 KB: 4 copies > the budget
    huge = instance_bytes(number=3, rows=256, columns=256)  # ~131 KB: over the file limit
    registry = CollectorRegistry()
    budget = MemoryBudget(
        len(small) * DEID_COPIES * 4, metrics=memory_budget_metrics(registry), service="deid"
    )
    worker = deid_worker(
        stores,
        deid_metrics(CollectorRegistry()),
        limits=ReaderLimits(max_file_bytes=100_000),
        budget=budget,
    )
    assert len(heavy) * DEID_COPIES > budget.capacity and len(heavy) < 100_000 < len(huge)
    refs = [
        instance_ref(number, await stores.phi.put(data), sop_class=CT_IMAGE_STORAGE, modality="CT")
        for number, data in ((1, small), (2, heavy), (3, huge))
    ]
    # The huge instance's blob is gone: had deid fetched it, the reason would be blob_not_found.
    await stores.phi.delete(await stores.phi.put(huge))
    deid_bus, ingest_bus = deid_and_ingest_buses(
        kafka_settings, idempotency_dsn, worker, deid_topics, registry=CollectorRegistry()
    )
    study = imaging_pb2.StudyReceived(
        study_instance_uid=STUDY_UID, patient_id=PATIENT_ID, instances=refs, revision=0
    )

    async with running(ingest_bus), running(deid_bus):
        await ingest_bus.publish(deid_topics.study_received, study)
        [record] = await read_records(kafka_settings, deid_topics.completed.name, 1)

    small_result, heavy_result, huge_result = Completed.FromString(record.value).results
    assert small_result.outcome == Completed.OUTCOME_RELEASED
    # Rejected with the reason, once: the event completed, so nothing is redelivered.
    assert heavy_result.outcome == Completed.OUTCOME_REJECTED
    assert "memory budget" in heavy_result.reasons[0]
    assert "RADSTREAM_MEMORY_BUDGET_BYTES" in heavy_result.reasons[0]
    assert huge_result.outcome == Completed.OUTCOME_REJECTED
    assert "RADSTREAM_DEID_MAX_FILE_BYTES" in huge_result.reasons[0]
    assert (budget.in_use, budget.waiting) == (0, 0)  # every reservation was given back
    refusals = {
        reason: registry.get_sample_value(
            "radstream_memory_budget_refusals_total", {"service": "deid", "reason": reason}
        )
        for reason in ("over_budget", "too_large")
    }
    assert refusals == {"over_budget": 1, "too_large": 1}
