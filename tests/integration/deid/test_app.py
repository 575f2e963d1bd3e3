"""The deid service edge against the real embedded broker and filesystem blob stores."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydicom import dcmread

from radstream.common.blobstore import BlobRef
from radstream.common.settings import KafkaSettings
from radstream.contracts.v1 import common_pb2, deid_pb2, imaging_pb2, review_pb2
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
    PHI_TEXTS,
    SERIES_UID,
    STUDY_UID,
    US_IMAGE_STORAGE,
    instance_bytes,
)

pytestmark = pytest.mark.integration

Completed = deid_pb2.DeidCompleted


def rot(path: Path) -> None:
    """Damage a stored blob, as a failing disk would."""
    path.write_bytes(path.read_bytes()[:-10])


async def test_a_study_is_released_held_and_rejected_per_instance_with_a_review_task(
    kafka_settings: KafkaSettings, deid_topics: DeidTopics, idempotency_dsn: str, tmp_path: Path
) -> None:
    stores = stores_in(tmp_path)
    registry = CollectorRegistry()
    worker = deid_worker(stores, deid_metrics(registry))
    deid_bus, ingest_bus = deid_and_ingest_buses(
        kafka_settings, idempotency_dsn, worker, deid_topics, registry=registry
    )

    ct_refs = [
        instance_ref(
            number,
            await stores.phi.put(instance_bytes(number=number), media_type="application/dicom"),
            sop_class=CT_IMAGE_STORAGE,
            modality="CT",
        )
        for number in (1, 2)
    ]
    us_bytes = instance_bytes(number=3, modality="US", sop_class=US_IMAGE_STORAGE)
    us_ref = instance_ref(
        3, await stores.phi.put(us_bytes), sop_class=US_IMAGE_STORAGE, modality="US"
    )
    damaged = await stores.phi.put(instance_bytes(number=4))
    rot(Path(damaged.uri.removeprefix("file://")))
    damaged_ref = instance_ref(4, damaged, sop_class=CT_IMAGE_STORAGE, modality="CT")
    study = imaging_pb2.StudyReceived(
        study_instance_uid=STUDY_UID,
        accession_number="SYNTH-ACC-90417",
        patient_id=PATIENT_ID,
        instances=[*ct_refs, us_ref, damaged_ref],
        revision=0,
    )

    async with running(ingest_bus), running(deid_bus):
        event_id = await ingest_bus.publish(deid_topics.study_received, study)
        [completed_record] = await read_records(kafka_settings, deid_topics.completed.name, 1)
        [review_record] = await read_records(kafka_settings, deid_topics.review.name, 1)

    completed = Completed.FromString(completed_record.value)
    headers = dict(completed_record.headers)
    assert headers["ce_causationid"] == event_id.encode()
    assert completed.study_instance_uid == STUDY_UID
    assert completed.profile == "basic"
    assert completed.software_version
    outcomes = [result.outcome for result in completed.results]
    assert outcomes == [
        Completed.OUTCOME_RELEASED,
        Completed.OUTCOME_RELEASED,
        Completed.OUTCOME_HELD,
        Completed.OUTCOME_REJECTED,
    ]
    released_results = completed.results[:2]
    held, rejected = completed.results[2], completed.results[3]

    # Released instances point into the release store, carry no original UID or PHI.
    for result in released_results:
        ref = result.released
        assert ref.blob.uri.startswith(stores.release.root_uri)
        assert ref.study_instance_uid == completed.pseudonymous_study_instance_uid
        assert ref.study_instance_uid != STUDY_UID
        assert ref.sop_instance_uid != result.original.sop_instance_uid
        data = await stores.release.get(
            BlobRef(uri=ref.blob.uri, sha256=ref.blob.sha256, size=ref.blob.size)
        )
        for value in (*PHI_TEXTS, STUDY_UID, SERIES_UID):
            assert value.encode() not in data
        reread = dcmread(io.BytesIO(data))
        assert reread.SOPInstanceUID == ref.sop_instance_uid
        assert reread.PatientIdentityRemoved == "YES"
        assert result.error_code == common_pb2.ERROR_CODE_UNSPECIFIED

    # The held ultrasound is not in the release store; its reasons say why.
    assert not held.HasField("released")
    assert held.reasons == ["possible burned-in text: BurnedInAnnotation is absent on modality US"]
    assert held.error_code == common_pb2.ERROR_CODE_DEID_LOW_CONFIDENCE
    released_files = [path for path in (tmp_path / "release").rglob("*") if path.is_file()]
    assert len(released_files) == 2
    us_hash = hashlib.sha256(us_bytes).hexdigest()
    assert all(us_hash not in path.name for path in released_files)

    # The damaged blob is a rejected instance, not a crashed handler.
    assert rejected.error_code == common_pb2.ERROR_CODE_BLOB_CHECKSUM_MISMATCH
    assert not rejected.HasField("released")

    # A review task names the study and the reasons, and carries the candidate (PHI store).
    task = review_pb2.ReviewTask.FromString(review_record.value)
    assert dict(review_record.headers)["ce_causationid"] == event_id.encode()
    assert completed.review_task_id == task.task_id
    assert task.kind == review_pb2.REVIEW_KIND_DEID
    assert list(task.subject_ids) == [STUDY_UID]
    assert list(task.reasons) == list(held.reasons)
    [candidate] = task.payload
    assert candidate.uri.startswith(stores.phi.root_uri)

    # The audit record lives in the PHI store and holds no value from the instances.
    audit_ref = completed.audit_record
    assert audit_ref.uri.startswith(stores.phi.root_uri)
    audit_bytes = await stores.phi.get(
        BlobRef(uri=audit_ref.uri, sha256=audit_ref.sha256, size=audit_ref.size)
    )
    audit = json.loads(audit_bytes)
    assert [record["outcome"] for record in audit["instances"]] == [
        "released",
        "released",
        "held",
        "rejected",
    ]
    assert all(value not in audit_bytes.decode() for value in PHI_TEXTS)
    reid_ref = audit["reidentification_record"]
    assert reid_ref["uri"].startswith(stores.phi.root_uri)

    assert registry.get_sample_value("radstream_deid_instances_total", {"outcome": "released"}) == 2
    assert registry.get_sample_value("radstream_deid_instances_total", {"outcome": "held"}) == 1
    assert registry.get_sample_value("radstream_deid_instances_total", {"outcome": "rejected"}) == 1
    assert (
        registry.get_sample_value("radstream_deid_instance_seconds_count", {"outcome": "released"})
        == 2
    )
