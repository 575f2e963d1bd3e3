"""``radstream replay`` against the real broker: dead letters go home once the cause is fixed."""

from __future__ import annotations

import json

import pytest

from radstream.cli.replay import REPLAYED_FROM, Action, Outcome, Selection, replay
from radstream.common import topics
from radstream.common.bus import Bus
from radstream.common.envelope import H_ID, Event
from radstream.common.errors import MisconfiguredError
from radstream.common.idempotency import Claim
from radstream.common.settings import KafkaSettings
from radstream.common.topics import Topic
from radstream.contracts.v1.imaging_pb2 import StudyReceived
from tests.integration.buses import make_bus
from tests.integration.operator import cli
from tests.integration.topic_reader import read_records, write_raw_record
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


async def replayed(
    settings: KafkaSettings, dlq: str, selection: Selection | None = None, **options: bool
) -> list[Outcome]:
    return [
        outcome
        async for outcome in replay(settings, dlq, selection=selection or Selection(), **options)
    ]


async def dead_letter_a_failed_and_a_poison_event(
    settings: KafkaSettings, topic: Topic, dsn: str, handled: list[str], fixed: list[bool]
) -> Bus:
    """A consuming bus whose handler fails for ``broken`` until ``fixed``; one poison record."""
    consumer = make_bus(settings, dsn, "deid")

    @consumer.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        if event.message.study_instance_uid == "broken" and not fixed:
            raise ValueError("a bug in the handler")
        handled.append(event.message.study_instance_uid)

    await consumer.start()
    publisher = make_bus(settings, dsn + "-publisher", "ingest")
    await publisher.start()
    try:
        await publisher.publish(topic, StudyReceived(study_instance_uid="broken"))
        await publisher.publish(topic, StudyReceived(study_instance_uid="fine"))
    finally:
        await publisher.stop()
    await write_raw_record(settings, topic.name, b"\xff not protobuf", key=b"k")
    await eventually(lambda: handled == ["fine"])
    return consumer


async def test_a_fixed_failure_is_replayed_and_handled_and_poison_stays_put(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    handled: list[str] = []
    fixed: list[bool] = []
    consumer = await dead_letter_a_failed_and_a_poison_event(
        kafka_settings, topic, idempotency_dsn, handled, fixed
    )
    try:
        letters = await read_records(kafka_settings, topic.dlq, 2)
        assert len(letters) == 2
        fixed.append(True)  # the corrected service is deployed

        outcomes = await replayed(kafka_settings, topic.dlq)

        assert [o.action for o in outcomes] == [Action.REPLAYED, Action.SKIPPED]
        assert outcomes[0].letter.kind == "handler-failed"
        assert outcomes[0].letter.error_type == "builtins.ValueError"
        assert outcomes[1].letter.kind == "poison"
        await eventually(lambda: handled == ["fine", "broken"])
        assert await replayed(kafka_settings, topic.dlq) == [], "the replay group moved on"
    finally:
        await consumer.stop()


async def test_the_original_record_goes_back_unchanged_but_for_where_it_came_from(
    kafka_settings, new_topic
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    original = {"ce_id": b"ev-1", "ce_type": b"radstream.v1.StudyReceived", "other": b"kept"}
    letter_headers = {
        **original,
        "x-radstream-error-kind": b"handler-failed",
        "x-radstream-error-type": b"builtins.ValueError",
        "x-radstream-original-topic": topic.name.encode(),
        "x-radstream-consumer-group": b"deid",
    }
    await write_raw_record(
        kafka_settings, topic.dlq, b"\x01body", key=b"the-key", headers=letter_headers
    )

    [outcome] = await replayed(kafka_settings, topic.dlq)

    assert outcome.action is Action.REPLAYED
    assert outcome.letter.event_id == "ev-1"
    [back] = await read_records(kafka_settings, topic.name, 1)
    assert (back.key, back.value) == (b"the-key", b"\x01body")
    headers = list(back.headers)
    assert headers[:-1] == list(original.items()), "the original headers, in order"
    assert headers[-1] == (REPLAYED_FROM, f"{topic.dlq}/0/0".encode())
    assert dict(headers)[H_ID] == b"ev-1", "the same event id: the failed group's guard lets it in"


async def test_a_record_that_is_not_a_dead_letter_of_this_topic_is_refused_and_the_rest_go_on(
    kafka_settings, new_topic
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    elsewhere = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)

    def letter(original_topic: str) -> dict[str, bytes]:
        return {
            "ce_id": b"ev",
            "x-radstream-error-kind": b"handler-failed",
            "x-radstream-original-topic": original_topic.encode(),
        }

    await write_raw_record(kafka_settings, topic.dlq, b"a", headers={"ce_id": b"no-letter"})
    await write_raw_record(kafka_settings, topic.dlq, b"b", headers=letter(elsewhere.name))
    await write_raw_record(kafka_settings, topic.dlq, b"c", headers=letter(topic.name))

    outcomes = await replayed(kafka_settings, topic.dlq)

    assert [o.action for o in outcomes] == [Action.REFUSED, Action.REFUSED, Action.REPLAYED]
    assert "not a radstream dead letter" in outcomes[0].reason
    assert elsewhere.name in outcomes[1].reason
    assert await read_records(kafka_settings, elsewhere.name, 1, timeout=2) == []
    assert [r.value for r in await read_records(kafka_settings, topic.name, 1)] == [b"c"]


async def test_a_dry_run_publishes_and_commits_nothing_and_from_beginning_looks_again(
    kafka_settings, new_topic
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=2)
    for n, kind in enumerate((b"handler-failed", b"poison", b"handler-failed")):
        await write_raw_record(
            kafka_settings,
            topic.dlq,
            b"%d" % n,
            key=b"%d" % n,
            headers={
                "ce_id": b"ev-%d" % n,
                "x-radstream-error-kind": kind,
                "x-radstream-original-topic": topic.name.encode(),
            },
        )

    dry = await replayed(kafka_settings, topic.dlq, dry_run=True)
    everything = Selection(kinds=frozenset({"handler-failed", "poison"}))
    for_real = await replayed(kafka_settings, topic.dlq, everything)
    again = await replayed(kafka_settings, topic.dlq, everything, from_beginning=True, dry_run=True)

    assert sorted(o.action for o in dry) == [Action.REPLAYED, Action.REPLAYED, Action.SKIPPED]
    assert [o.action for o in for_real] == [Action.REPLAYED] * 3, "nothing was committed dry"
    assert len(again) == 3
    records = await read_records(kafka_settings, topic.name, 4, timeout=3)
    assert sorted(r.value for r in records) == [b"0", b"1", b"2"], "each replayed once"


async def test_replay_refuses_a_topic_that_is_not_a_dead_letter_topic(
    kafka_settings, new_topic
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)

    with pytest.raises(MisconfiguredError, match="not a dead-letter topic"):
        await replayed(kafka_settings, topic.name)


async def test_the_command_reports_each_letter_without_its_key_or_body(
    kafka_settings, new_topic, operator_env
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    await write_raw_record(
        kafka_settings,
        topic.dlq,
        b"SYNTH-PATIENT-BODY",
        key=b"SYNTH-PATIENT-KEY",
        headers={
            "ce_id": b"ev-9",
            "x-radstream-error-kind": b"handler-failed",
            "x-radstream-error-type": b"radstream.deid.errors.DeidError",
            "x-radstream-original-topic": topic.name.encode(),
        },
    )

    dry = cli("replay", topic.dlq, "--dry-run", "--json", env=operator_env)
    real = cli("replay", topic.dlq, "--error-type", "DeidError", env=operator_env)
    wrong = cli("replay", topic.dlq, "--kind", "everything", env=operator_env)

    assert dry.returncode == 0, dry.stderr
    [line] = dry.stdout.splitlines()
    expected = {"action": "replayed", "ce_id": "ev-9", "offset": 0, "dry_run": True}
    assert json.loads(line) | expected == json.loads(line)
    assert "would replay 1, skipped 0, refused 0" in dry.stderr
    assert real.returncode == 0, real.stderr
    assert real.stdout.startswith(f"replayed {topic.dlq}[0]@0 -> {topic.name} ce_id=ev-9")
    assert "replayed 1, skipped 0, refused 0" in real.stderr
    for output in (dry.stdout, dry.stderr, real.stdout, real.stderr):
        assert "SYNTH-PATIENT" not in output
    assert wrong.returncode == 1
    assert "--kind is one of" in wrong.stdout


def test_the_command_names_an_unreachable_cluster_and_fails(operator_env) -> None:
    result = cli(
        "replay",
        "radstream.study.received.v1.dlq",
        env={**operator_env, "RADSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )

    assert result.returncode == 1
    assert result.stdout.startswith("error: KafkaConnectionError")
    assert "Traceback" not in result.stderr
