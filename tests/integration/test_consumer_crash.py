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

from radstream.cli.replay import Selection, read_letter
from radstream.common import topics
from radstream.common.settings import EMBEDDED_BROKER_TUNING
from radstream.common.topics import Topic
from radstream.contracts.v1.imaging_pb2 import StudyReceived
from tests.integration.buses import publish_all
from tests.integration.topic_reader import read_records

pytestmark = pytest.mark.integration

EVENTS = 120


def effects(db: Path) -> list[tuple[str, str]]:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT event_id, study FROM effects").fetchall()
    except sqlite3.OperationalError:
        return []  # the consumer has not created the table yet


async def publish_studies(kafka_settings, topic: Topic, count: int, tmp_path: Path) -> list[str]:
    """Publish the studies 2.25.0, 2.25.1, ... in order; their event ids."""
    dsn = f"sqlite:///{tmp_path / 'publisher.sqlite3'}"
    studies = (StudyReceived(study_instance_uid=f"2.25.{n}") for n in range(count))
    return await publish_all(kafka_settings, dsn, topic, studies)


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
    ids = await publish_studies(kafka_settings, topic, EVENTS, tmp_path)

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


async def test_a_record_that_kills_its_consumer_is_dead_lettered_as_crashed_after_n_restarts(
    kafka_settings, new_topic, tmp_path
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    db = tmp_path / "consumer.sqlite3"
    ids = await publish_studies(kafka_settings, topic, 10, tmp_path)
    killer = ids[3]  # the study 2.25.3: one fetched batch holds it and the records behind it

    for restart in range(3):  # RADSTREAM_DELIVERY_MAX_CRASHES, default 3
        crashing = start_consumer(kafka_settings.bootstrap, topic.name, db, "--kill-on", "2.25.3")
        try:
            assert crashing.wait(timeout=60) == -signal.SIGKILL, f"run {restart} did not crash"
        finally:
            if crashing.poll() is None:
                crashing.kill()
        assert sorted(e for e, _ in effects(db)) == sorted(ids[:3]), "nothing behind it ran"

    last = start_consumer(kafka_settings.bootstrap, topic.name, db, "--kill-on", "2.25.3")
    try:
        await wait_for(lambda: len(effects(db)) >= 9, 60, last)
        assert last.poll() is None, "the fourth consumer met the record again"
    finally:
        last.terminate()
        last.wait(timeout=30)

    assert sorted(e for e, _ in effects(db)) == sorted(i for i in ids if i != killer)
    [letter] = await read_records(kafka_settings, f"{topic.name}.dlq", 1)
    headers = dict(letter.headers)
    assert headers["ce_id"] == killer.encode()
    assert headers["x-radstream-error-kind"] == b"crashed"
    assert headers["x-radstream-attempts"] == b"3"
    assert len(await read_records(kafka_settings, f"{topic.name}.dlq", 2, timeout=2)) == 1, (
        "only the culprit: the records behind it in its batch were never counted as crashed"
    )
    replayable = read_letter(letter.partition, letter.offset, letter.headers)
    assert Selection(kinds=frozenset({"crashed"})).reason_to_skip(replayable) is None
