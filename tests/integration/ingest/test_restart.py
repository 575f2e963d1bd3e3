"""Kill the ingest service while it assembles a study; after a restart the study is published once.

The service runs as an operator runs it (``python -m radstream.cli.main run ingest``, settings
from the environment), receives instances over C-STORE, and is SIGKILLed inside the quiet
period: nothing was published for the study yet, and nothing of the assembly is in memory only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from radstream.common import topics
from radstream.common.embedded_broker import EmbeddedBroker, free_loopback_port
from radstream.common.kafka_client import ensure_topics
from radstream.common.settings import KafkaSettings
from tests.integration.ingest.dicom_peers import EventLog, pynetdicom_send
from tests.unit.ingest.instances import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, SyntheticStudy

pytestmark = pytest.mark.integration

QUIET_S = 4.0
CONTEXTS = [
    (CT_IMAGE_STORAGE, ["1.2.840.10008.1.2.1"]),
    (MR_IMAGE_STORAGE, ["1.2.840.10008.1.2.1"]),
]


class IngestProcess:
    """``radstream run ingest`` in a subprocess, its output kept in a log file."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.env, self.cwd, self.log = env, cwd, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "radstream.cli.main", "run", "ingest"],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def signal(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def service_env(kafka_broker: EmbeddedBroker, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_")}
    env.update(
        {
            "RADSTREAM_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN": f"sqlite:///{tmp_path / 'idempotency.db'}",
            "RADSTREAM_BLOB_PHI_URI": f"file://{tmp_path / 'phi'}",
            "RADSTREAM_BLOB_RELEASE_URI": f"file://{tmp_path / 'release'}",
            "RADSTREAM_OBS_HEALTH_PORT": str(free_loopback_port()),
            "RADSTREAM_OBS_LOG_JSON": "false",
            "RADSTREAM_INGEST_AUDIT_PATH": str(tmp_path / "audit.jsonl"),
            "RADSTREAM_INGEST_DICOM_PORT": str(free_loopback_port()),
            "RADSTREAM_INGEST_HTTP_PORT": str(free_loopback_port()),
            "RADSTREAM_INGEST_MLLP_PORT": str(free_loopback_port()),
            "RADSTREAM_INGEST_DICOM_ALLOWED_CALLING_AES": "SYNTH_PYNET",
            "RADSTREAM_INGEST_ASSEMBLY_DSN": f"sqlite:///{tmp_path / 'assembly.db'}",
            "RADSTREAM_INGEST_ASSEMBLY_QUIET_PERIOD_S": str(QUIET_S),
            "RADSTREAM_INGEST_ASSEMBLY_POLL_INTERVAL_S": "0.2",
        }
    )
    return env


@pytest.fixture
def ingest_process(service_env: dict[str, str], tmp_path: Path) -> Iterator[IngestProcess]:
    process = IngestProcess(service_env, tmp_path, tmp_path / "ingest.log")
    yield process
    if process.process is not None:
        process.signal(signal.SIGKILL)


async def until_listening(port: int, process: IngestProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.process is not None
        if process.process.poll() is not None:
            raise AssertionError(f"ingest exited early:\n{process.output()}")
        result = await pynetdicom_send(port, ["echo"])
        if result.statuses == [0x0000]:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the SCP never answered:\n{process.output()}")


async def test_a_study_killed_during_its_quiet_period_is_published_once_after_restart(
    kafka_broker: EmbeddedBroker, service_env: dict[str, str], ingest_process: IngestProcess
) -> None:
    await ensure_topics(
        KafkaSettings(bootstrap=kafka_broker.bootstrap),
        [topics.INSTANCE_STORED_V1, topics.STUDY_RECEIVED_V1],
    )
    events = EventLog(kafka_broker.bootstrap, [topics.INSTANCE_STORED_V1, topics.STUDY_RECEIVED_V1])
    await events.start()
    try:
        port = int(service_env["RADSTREAM_INGEST_DICOM_PORT"])
        study = SyntheticStudy.new()

        def of_study(message) -> bool:
            uid = getattr(message, "study_instance_uid", "") or message.instance.study_instance_uid
            return uid == study.study_uid

        ingest_process.start()
        await until_listening(port, ingest_process)
        sent = [study.dataset("CT", 1), study.dataset("CT", 2), study.dataset("MR", 1)]
        result = await pynetdicom_send(port, sent, contexts=CONTEXTS)
        last_sent = time.monotonic()
        assert result.statuses == [0x0000] * 3
        await events.wait_for(topics.INSTANCE_STORED_V1, 3, of_study)

        assert time.monotonic() - last_sent < QUIET_S, "too slow to kill inside the quiet period"
        assert ingest_process.signal(signal.SIGKILL) == -signal.SIGKILL
        assert events.on(topics.STUDY_RECEIVED_V1, of_study) == []

        ingest_process.start()
        [received] = await events.wait_for(topics.STUDY_RECEIVED_V1, 1, of_study, timeout=60)
        message = received.message
        assert sorted(i.sop_instance_uid for i in message.instances) == sorted(
            ds.SOPInstanceUID for ds in sent
        )
        assert message.revision == 0

        await asyncio.sleep(QUIET_S / 2 + 1.0)  # several assembler polls after the publish
        assert len(events.on(topics.STUDY_RECEIVED_V1, of_study)) == 1
        assert len(events.on(topics.INSTANCE_STORED_V1, of_study)) == 3
        assert ingest_process.signal(signal.SIGTERM) == 0, ingest_process.output()
    finally:
        await events.stop()
