"""The deid service as its integration tests run it: filesystem stores, test keys, two buses.

A test builds the worker it needs (a budget, a file limit) and runs it on deid's bus, with
ingest's bus to publish ``study.received`` to it, both against the embedded broker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from radstream.common.blobstore import BlobRef, BlobStores, FilesystemBlobStore
from radstream.common.bus import Bus, create_bus
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.contracts.v1 import common_pb2
from radstream.deid.app import DeidTopics, DeidWorker, register_deid
from radstream.deid.metrics import DeidMetrics
from radstream.deid.profile import DeidKeys, DeidProfile
from tests.unit.deid.study_builder import (
    SERIES_UID,
    STUDY_UID,
    TEST_KEYS_SECRET,
    shared_text_cleaner,
)


def stores_in(root: Path) -> BlobStores:
    """A PHI store and a release store under ``root``; the release store refuses the PHI root."""
    phi = FilesystemBlobStore(root / "phi", "phi")
    release = FilesystemBlobStore(root / "release", "release", refused_roots=[phi.root_uri])
    return BlobStores(phi=phi, release=release)


def instance_ref(
    number: int, ref: BlobRef, *, sop_class: str, modality: str
) -> common_pb2.InstanceRef:
    """The reference to instance ``number`` of the synthetic series, stored at ``ref``."""
    return common_pb2.InstanceRef(
        study_instance_uid=STUDY_UID,
        series_instance_uid=SERIES_UID,
        sop_instance_uid=f"{SERIES_UID}.{number}",
        sop_class_uid=sop_class,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        modality=modality,
        blob=common_pb2.BlobRef(
            uri=ref.uri, sha256=ref.sha256, size=ref.size, media_type=ref.media_type
        ),
    )


def deid_worker(stores: BlobStores, metrics: DeidMetrics, **options: Any) -> DeidWorker:
    """A worker with the basic profile, the test keys and the shared Presidio cleaner."""
    return DeidWorker(
        profile=DeidProfile(),
        keys=DeidKeys.from_secret(TEST_KEYS_SECRET),
        clean_text=shared_text_cleaner(),
        stores=stores,
        metrics=metrics,
        **options,
    )


def deid_and_ingest_buses(
    kafka_settings: KafkaSettings,
    idempotency_dsn: str,
    worker: DeidWorker,
    chosen: DeidTopics,
    *,
    registry: CollectorRegistry,
) -> tuple[Bus, Bus]:
    """deid's bus running ``worker`` on ``chosen`` (its series in ``registry``), and ingest's."""
    delivery = DeliverySettings(idempotency_dsn=idempotency_dsn, backoff_initial_s=0.05)
    deid_bus = create_bus(kafka_settings, delivery, service="deid", registry=registry)
    register_deid(deid_bus, worker, topic_set=chosen)
    ingest_bus = create_bus(
        kafka_settings, delivery, service="ingest", registry=CollectorRegistry()
    )
    return deid_bus, ingest_bus
