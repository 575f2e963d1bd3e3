"""Push mode against a real Orthanc: Orthanc sends a study to ingest's SCP over C-STORE.

Orthanc is configured with a ``DicomModalities`` entry for ingest's SCP (as a hospital PACS
would be, with a forwarding rule); ``POST /modalities/radstream/store`` sends the study. The SCP
receives it, and ``InstanceStored`` plus, after the quiet period, ``StudyReceived`` appear on
the real broker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from radstream.common.settings import KafkaSettings
from radstream.contracts.v1 import imaging_pb2
from radstream.ingest.config import AssemblySettings, DicomSettings
from radstream.ingest.scp import DicomScp
from tests.integration.ingest.conftest import StartOrthanc
from tests.integration.ingest.test_orthanc_pull import (
    TopicReader,
    ingest_settings,
    new_topics,
    running_ingest,
    studies,
)
from tests.orthanc import DicomModality, OrthancOptions, synthetic_ct_study

pytestmark = pytest.mark.integration

ORTHANC_AE = "HOSPITALPACS"


async def test_orthanc_pushes_a_study_to_the_scp_and_it_is_published(
    start_orthanc: StartOrthanc,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    chosen = await new_topics(new_topic)
    settings = ingest_settings(tmp_path, kafka_settings, idempotency_dsn).model_copy(
        update={
            "assembly": AssemblySettings(
                quiet_period_s=1.0,
                dsn=f"sqlite:///{tmp_path}/assembly.sqlite3",
                poll_interval_s=0.2,
            ),
            "dicom": DicomSettings(
                ae_title="RADSTREAM", port=0, allowed_calling_aes=frozenset({ORTHANC_AE})
            ),
        }
    )
    study = synthetic_ct_study(4)

    async with (
        running_ingest(settings, chosen) as ingest,
        TopicReader(kafka_settings, chosen.instance_stored.name) as instances,
        TopicReader(kafka_settings, chosen.study_received.name) as received,
    ):
        scp = DicomScp(settings.dicom, ingest.core.receiver, metrics=ingest.core.metrics)
        await scp.start()
        try:
            orthanc = start_orthanc(
                OrthancOptions(
                    ae_title=ORTHANC_AE,
                    modalities=(
                        DicomModality(name="radstream", ae_title="RADSTREAM", port=scp.port),
                    ),
                )
            )
            await asyncio.to_thread(orthanc.upload, study)
            [study_id] = await asyncio.to_thread(orthanc.get_json, "/studies")
            job = await asyncio.to_thread(
                orthanc.post_json,
                "/modalities/radstream/store",
                {"Resources": [study_id], "Synchronous": True},
            )
            stored = [
                imaging_pb2.InstanceStored.FromString(value) for value in await instances.until(4)
            ]
            [published] = studies(await received.until(1))
        finally:
            await scp.stop()

    assert job["FailedInstancesCount"] == 0
    assert len(stored) == 4
    assert all(message.source == imaging_pb2.InstanceStored.SOURCE_C_STORE for message in stored)
    assert {message.calling_ae_title for message in stored} == {ORTHANC_AE}
    assert len(published.instances) == 4
    assert {ref.sop_instance_uid for ref in published.instances} == {
        message.instance.sop_instance_uid for message in stored
    }


async def test_a_pacs_whose_ae_title_is_not_allowed_is_refused_and_nothing_is_published(
    start_orthanc: StartOrthanc,
    kafka_settings: KafkaSettings,
    new_topic,
    idempotency_dsn: str,
    tmp_path: Path,
) -> None:
    chosen = await new_topics(new_topic)
    settings = ingest_settings(tmp_path, kafka_settings, idempotency_dsn).model_copy(
        update={
            "dicom": DicomSettings(
                ae_title="RADSTREAM", port=0, allowed_calling_aes=frozenset({ORTHANC_AE})
            )
        }
    )

    async with (
        running_ingest(settings, chosen) as ingest,
        TopicReader(kafka_settings, chosen.instance_stored.name) as instances,
    ):
        scp = DicomScp(settings.dicom, ingest.core.receiver, metrics=ingest.core.metrics)
        await scp.start()
        try:
            orthanc = start_orthanc(
                OrthancOptions(
                    ae_title="OTHERPACS",
                    modalities=(
                        DicomModality(name="radstream", ae_title="RADSTREAM", port=scp.port),
                    ),
                )
            )
            await asyncio.to_thread(orthanc.upload, synthetic_ct_study(1))
            [study_id] = await asyncio.to_thread(orthanc.get_json, "/studies")
            with pytest.raises(httpx.HTTPStatusError):
                await asyncio.to_thread(
                    orthanc.post_json,
                    "/modalities/radstream/store",
                    {"Resources": [study_id], "Synchronous": True},
                )
            await instances.poll(1.0)
        finally:
            await scp.stop()

    assert instances.values == []
    rejected = ingest.registry.get_sample_value(
        "radstream_ingest_dicom_associations_total", {"outcome": "rejected"}
    )
    assert rejected == 1
