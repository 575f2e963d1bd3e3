"""A consumer killed mid-batch loses nothing, and the idempotency guard drops the redeliveries."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radstream.common import topics
from radstream.common.bus import create_bus
from radstream.common.settings import EMBEDDED_BROKER_TUNING, DeliverySettings
from radstream.contracts.v1.imaging_pb2 import StudyReceived

pytestmark = pytest.mark.integration

EVENTS = 120


def effects(db: Path) -> list[tuple[str, str]]:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT event_id, study FROM effects").fetchall()
    except sqlite3.OperationalError:
        return []  # the consumer has not created the table yet


def start_consumer(bootstrap: str, topic: str, db: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.crash_consumer",
            bootstrap,
            topic,
            str(db),
            *extra,
        ],
        cwd=Path(__file__).parents[2],
        env={**os.environ, **EMBEDDED_BROKER_TUNING},
    )


async def wait_for(condition, timeout: float, process: subprocess.Popen[bytes] | None = None):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        if process is not None and process.poll() is not None and not condition():
            return
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kill", ["from-outside", "between-done-mark-and-offset-commit"])
async def test_consumer_killed_mid_batch_loses_nothing_and_repeats_no_effect(
    kill, kafka_settings, new_topic, tmp_path
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=2)
    db = tmp_path / "consumer.sqlite3"
    publisher = create_bus(
        kafka_settings,
        DeliverySettings(idempotency_dsn=f"sqlite:///{tmp_path / 'publisher.sqlite3'}"),
        service="ingest",
    )
    await publisher.start()
    try:
        ids = [
            await publisher.publish(topic, StudyReceived(study_instance_uid=f"2.25.{n}"))
            for n in range(EVENTS)
        ]
    finally:
        await publisher.stop()

    die = ["--die-after", "40"] if kill != "from-outside" else []
    first = start_consumer(kafka_settings.bootstrap, topic.name, db, *die)
    try:
        if kill == "from-outside":
            await wait_for(lambda: len(effects(db)) >= 40, 60)
            first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    done_before_restart = len(effects(db))
    assert 0 < done_before_restart < EVENTS, "the kill did not land mid-batch"

    second = start_consumer(kafka_settings.bootstrap, topic.name, db)
    try:
        await wait_for(lambda: len(effects(db)) >= EVENTS, 90)
        await asyncio.sleep(1.0)  # give any duplicate effect the chance to appear
    finally:
        second.terminate()
        second.wait(timeout=30)

    rows = effects(db)
    assert sorted(event_id for event_id, _ in rows) == sorted(ids), "lost or repeated effects"
    outcomes = db.with_suffix(".outcomes").read_text().split()
    if kill != "from-outside":
        assert "duplicate" in outcomes, "the redelivered event was not recognised as done"
