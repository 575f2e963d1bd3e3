"""deid within its memory budget, against the real embedded broker and filesystem stores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from radstream.common.memory_budget import MemoryBudget, memory_budget_metrics
from radstream.common.settings import KafkaSettings
from radstream.contracts.v1 import common_pb2, deid_pb2, imaging_pb2
from radstream.deid.app import DeidTopics, DeidWorker, instance_weight
from radstream.deid.config import DEID_COPIES, DEID_PIXEL_COPIES
from radstream.deid.metrics import deid_metrics
from radstream.deid.pixels.calibration import FAIL_CLOSED, RiskThreshold
from radstream.deid.pixels.classify import PhiClassifier
from radstream.deid.pixels.stage import PixelStage
from radstream.dicom import ReaderLimits
from radstream.ocr.engines import shared_engine
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
    shared_text_cleaner,
    synthetic_instance,
    to_bytes,
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
    small_result, heavy_result, huge_result = await _study_results(
        kafka_settings, deid_topics, idempotency_dsn, worker, refs
    )
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


def _compressed(number: int) -> bytes:
    """An RLE CT slice of flat pixels: a few KB of file that decode to 128 KB of frames."""

    def flat(ds: Dataset) -> None:
        ds.Rows = ds.Columns = 256
        ds.PixelData = np.full((256, 256), 40, np.uint16).tobytes()

    ds = synthetic_instance(number=number, customize=flat)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    return to_bytes(ds)


DECODED = 256 * 256 * 2
HOLD_ALL_TEXT = RiskThreshold(
    value=0.0, leak_rate=0.01, engine="rapidocr", n_calibration=0, method=FAIL_CLOSED
)


def _stage() -> PixelStage:
    return PixelStage(
        shared_engine("rapidocr"),
        classifier=PhiClassifier(shared_text_cleaner().analyzer),
        threshold=HOLD_ALL_TEXT,
    )


async def _two_compressed_slices(
    kafka_settings: KafkaSettings,
    deid_topics: DeidTopics,
    idempotency_dsn: str,
    tmp_path: Path,
    capacity: int,
) -> tuple[list[Completed.InstanceResult], MemoryBudget]:
    """De-identify two compressed slices within a budget of ``capacity``; their results."""
    stores = stores_in(tmp_path)
    budget = MemoryBudget(
        capacity, metrics=memory_budget_metrics(CollectorRegistry()), service="deid"
    )
    worker = deid_worker(
        stores, deid_metrics(CollectorRegistry()), budget=budget, pixel_policy=_stage()
    )
    refs = []
    for number in (1, 2):
        ref = instance_ref(
            number,
            await stores.phi.put(_compressed(number)),
            sop_class=CT_IMAGE_STORAGE,
            modality="CT",
        )
        ref.transfer_syntax_uid = str(RLELossless)
        refs.append(ref)
    results = await _study_results(kafka_settings, deid_topics, idempotency_dsn, worker, refs)
    assert (budget.in_use, budget.waiting) == (0, 0)  # every reservation was given back
    return results, budget


async def _study_results(
    kafka_settings: KafkaSettings,
    deid_topics: DeidTopics,
    idempotency_dsn: str,
    worker: DeidWorker,
    refs: list[common_pb2.InstanceRef],
) -> list[Completed.InstanceResult]:
    """Publish a study of ``refs`` and return deid's results, on the real broker."""
    deid_bus, ingest_bus = deid_and_ingest_buses(
        kafka_settings, idempotency_dsn, worker, deid_topics, registry=CollectorRegistry()
    )
    study = imaging_pb2.StudyReceived(
        study_instance_uid=STUDY_UID, patient_id=PATIENT_ID, instances=refs, revision=0
    )
    async with running(ingest_bus), running(deid_bus):
        await ingest_bus.publish(deid_topics.study_received, study)
        [record] = await read_records(kafka_settings, deid_topics.completed.name, 1)
    return list(Completed.FromString(record.value).results)


def test_compressed_pixels_weigh_what_they_decode_to_not_what_they_are_stored_in(
    tmp_path: Path,
) -> None:
    data = _compressed(1)
    assert len(data) * 10 < DECODED  # RLE of flat pixels
    worker = deid_worker(stores_in(tmp_path), deid_metrics(CollectorRegistry()))
    with_stage = deid_worker(
        stores_in(tmp_path), deid_metrics(CollectorRegistry()), pixel_policy=_stage()
    )
    assert instance_weight(worker, data) == len(data) * DEID_COPIES  # nothing is decoded
    assert instance_weight(with_stage, data) == math.ceil(
        len(data) * DEID_COPIES + DECODED * DEID_PIXEL_COPIES
    )
    native = instance_bytes(rows=256, columns=256)  # read in place: its copies hold it
    assert instance_weight(with_stage, native) == len(native) * DEID_COPIES


async def test_an_instance_whose_frames_outweigh_the_budget_is_refused_before_decoding(
    kafka_settings: KafkaSettings, deid_topics: DeidTopics, idempotency_dsn: str, tmp_path: Path
) -> None:
    # Room for many copies of the file, not for its decoded frames.
    capacity = len(_compressed(1)) * DEID_COPIES * 4
    results, budget = await _two_compressed_slices(
        kafka_settings, deid_topics, idempotency_dsn, tmp_path, capacity
    )
    assert [result.outcome for result in results] == [Completed.OUTCOME_REJECTED] * 2
    assert all("memory budget" in result.reasons[0] for result in results)
    assert budget.capacity < DECODED * DEID_PIXEL_COPIES


async def test_instances_that_fit_once_their_frames_are_counted_are_decoded_one_at_a_time(
    kafka_settings: KafkaSettings, deid_topics: DeidTopics, idempotency_dsn: str, tmp_path: Path
) -> None:
    # Room for one instance's decoded frames, not two: the second waits, nothing is refused.
    data = _compressed(1)
    one = math.ceil(len(data) * DEID_COPIES + DECODED * DEID_PIXEL_COPIES)
    results, _ = await _two_compressed_slices(
        kafka_settings, deid_topics, idempotency_dsn, tmp_path, one + one // 2
    )
    assert [result.outcome for result in results] == [Completed.OUTCOME_RELEASED] * 2
