"""A consumer process for the crash test: records each event in SQLite, can SIGKILL itself.

Run as ``python -m tests.integration.crash_consumer BOOTSTRAP TOPIC DB [--die-after N]
[--kill-on STUDY_UID]``. Each handled event stages ``INSERT INTO effects`` on its claim, so the
effect and the guard's done mark commit together. With ``--die-after N`` the process kills
itself with SIGKILL right after the N-th event is marked done and *before* its Kafka offset is
committed: the worst moment, which makes a redelivery after restart certain. With ``--kill-on``
the handler kills the process whenever it gets that study, as an instance too large for the
pod's memory would: the record that crashes its consumer every time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
from pathlib import Path

from prometheus_client import CollectorRegistry

from radstream.common import topics
from radstream.common.bus import create_bus
from radstream.common.delivery import Outcome, RawRecord
from radstream.common.envelope import Event
from radstream.common.idempotency import Claim
from radstream.common.settings import DeliverySettings, KafkaSettings
from radstream.common.topics import Topic
from radstream.contracts.v1.imaging_pb2 import StudyReceived


class DieAfter:
    """Observer that SIGKILLs the process after N processed events (before the offset commit)."""

    def __init__(self, count: int | None, outcomes: Path) -> None:
        self.count = count
        self.processed = 0
        self.outcomes = outcomes.open("a", buffering=1)

    def on_outcome(
        self, record: RawRecord, group: str, outcome: Outcome, attempts: int, seconds: float
    ) -> None:
        self.outcomes.write(f"{outcome.value} {record.partition}:{record.offset}\n")
        if outcome is Outcome.PROCESSED:
            self.processed += 1
            if self.count is not None and self.processed >= self.count:
                os.kill(os.getpid(), signal.SIGKILL)

    def on_retry(self, record: RawRecord, group: str, attempt: int, error: BaseException) -> None:
        pass


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("db", type=Path)
    parser.add_argument("--die-after", type=int, default=None)
    parser.add_argument("--kill-on", default=None)
    args = parser.parse_args()

    with sqlite3.connect(args.db) as db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT, study TEXT)")
    template = topics.STUDY_RECEIVED_V1
    topic = Topic(
        name=args.topic,
        message=template.message,
        key_field=template.key_field,
        partitions=template.partitions,
        zone=template.zone,
        description=template.description,
    )
    bus = create_bus(
        KafkaSettings(bootstrap=args.bootstrap),
        DeliverySettings(idempotency_dsn=f"sqlite:///{args.db}"),
        service="crash-test",
        registry=CollectorRegistry(),
        observers=(DieAfter(args.die_after, args.db.with_suffix(".outcomes")),),
    )

    @bus.subscribe(topic, group="crash-test")
    async def record_effect(event: Event[StudyReceived], claim: Claim) -> None:
        await asyncio.sleep(0.005)  # some work, so the kill lands mid-batch
        if event.message.study_instance_uid == args.kill_on:
            os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer, as far as Kafka can tell
        claim.stage(
            "INSERT INTO effects VALUES (?, ?)", (event.id, event.message.study_instance_uid)
        )

    await bus.start()
    try:
        await asyncio.Event().wait()
    finally:
        await bus.stop()


if __name__ == "__main__":
    asyncio.run(main())
