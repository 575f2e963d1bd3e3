"""The bus against the real embedded Kafka-protocol broker (Tansu): no in-memory test broker."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from radstream.common import topics
from radstream.common.bus import Bus, create_bus
from radstream.common.envelope import REQUIRED_HEADERS, Event
from radstream.common.errors import TransientError
from radstream.common.idempotency import TABLE, Claim, SqliteIdempotencyGuard
from radstream.common.settings import DeliverySettings
from radstream.common.topics import Topic
from radstream.contracts.v1.imaging_pb2 import StudyReceived
from tests.integration.buses import FAST_RETRIES, make_bus, running
from tests.integration.topic_reader import read_records, write_raw_record
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


def study(uid: str) -> StudyReceived:
    return StudyReceived(study_instance_uid=uid, accession_number="ACC-SYNTH", revision=0)


async def test_event_round_trips_with_headers_intact_and_trace_continued(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    inbound = await new_topic(topics.STUDY_RECEIVED_V1)
    outbound = await new_topic(topics.STUDY_RECEIVED_V1)
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    producer = make_bus(kafka_settings, idempotency_dsn, "ingest", tracer_provider=tracing)
    consumer = make_bus(kafka_settings, idempotency_dsn, "deid", tracer_provider=tracing)
    received: list[Event[StudyReceived]] = []

    @consumer.subscribe(inbound, group="deid")
    async def forward(event: Event[StudyReceived], claim: Claim) -> None:
        received.append(event)
        await consumer.publish(outbound, event.message, caused_by=event)

    async with running(producer), running(consumer):
        with tracing.get_tracer("test").start_as_current_span("ingest study") as root:
            first_id = await producer.publish(inbound, study("1.2.3.4"), subject="study")
        forwarded = await read_records(kafka_settings, outbound.name, 1)

    [event] = received
    assert event.id == first_id
    assert event.message == study("1.2.3.4")
    assert event.key == b"1.2.3.4"
    assert event.meta.source == "/radstream/ingest"
    assert event.meta.subject == "study"
    sent_headers = dict(event.headers)
    assert set(REQUIRED_HEADERS) | {"traceparent"} <= set(sent_headers)

    [record] = forwarded
    headers = dict(record.headers)
    assert set(REQUIRED_HEADERS) <= set(headers)
    assert headers["ce_type"] == b"radstream.v1.StudyReceived"
    assert headers["ce_source"] == b"/radstream/deid"
    assert headers["ce_causationid"] == first_id.encode()
    assert record.key == b"1.2.3.4"
    assert StudyReceived.FromString(record.value) == study("1.2.3.4")

    trace_id = format(root.get_span_context().trace_id, "032x")
    assert sent_headers["traceparent"].decode().split("-")[1] == trace_id
    assert headers["traceparent"].decode().split("-")[1] == trace_id
    spans = {span.name: span for span in exporter.get_finished_spans()}
    process = spans[f"{inbound.name} process"]
    forward_publish = spans[f"{outbound.name} publish"]
    assert process.kind.name == "CONSUMER"
    assert process.context.trace_id == root.get_span_context().trace_id
    assert forward_publish.context.trace_id == root.get_span_context().trace_id


async def test_two_consumers_in_one_group_split_partitions_and_see_each_event_once(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic: Topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=4)
    seen: dict[str, list[str]] = {"a": [], "b": []}
    buses = {name: make_bus(kafka_settings, idempotency_dsn, f"worker-{name}") for name in seen}
    for name, bus in buses.items():

        def handler_for(who: str):
            async def handle(event: Event[StudyReceived], claim: Claim) -> None:
                seen[who].append(event.message.study_instance_uid)

            return handle

        bus.subscribe(topic, group="split")(handler_for(name))

    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    async with running(buses["a"]), running(buses["b"]), running(publisher):
        await eventually(
            lambda: (
                all(bus.assigned_partitions() for bus in buses.values())
                and len(buses["a"].assigned_partitions() | buses["b"].assigned_partitions()) == 4
            )
        )
        uids = [f"2.25.{n}" for n in range(60)]
        for uid in uids:
            await publisher.publish(topic, study(uid))
        await eventually(lambda: len(seen["a"]) + len(seen["b"]) >= len(uids))
        await asyncio.sleep(0.5)  # would a straggler duplicate arrive?

    assert sorted(seen["a"] + seen["b"]) == sorted(uids)
    assert seen["a"] and seen["b"], "one consumer got every partition"
    assert not set(seen["a"]) & set(seen["b"])
    parts = {name: {p for _, p in bus.assigned_partitions()} for name, bus in buses.items()}
    assert not parts["a"] & parts["b"]


async def test_failing_handler_sends_event_to_dlq_after_retries_and_stream_keeps_flowing(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    registry = CollectorRegistry()
    consumer = make_bus(kafka_settings, idempotency_dsn, "deid", registry)
    processed: list[str] = []
    attempts: list[str] = []

    @consumer.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        uid = event.message.study_instance_uid
        attempts.append(uid)
        if uid == "poison":
            raise RuntimeError("pixel data shorter than Rows*Columns")
        processed.append(uid)

    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    async with running(consumer), running(publisher):
        for uid in ("before", "poison", "after"):
            await publisher.publish(topic, study(uid))
        await eventually(lambda: processed == ["before", "after"])
        [letter] = await read_records(kafka_settings, topic.dlq, 1)

    assert attempts.count("poison") == 3
    headers = dict(letter.headers)
    assert headers["x-radstream-error-type"] == b"builtins.RuntimeError"
    # Not a radstream error: its type and where it was raised, never its text.
    assert headers["x-radstream-error-message"].startswith(b"RuntimeError raised in ")
    assert headers["x-radstream-attempts"] == b"3"
    assert headers["x-radstream-consumer-group"] == b"deid"
    assert headers["x-radstream-original-topic"] == topic.name.encode()
    assert headers["ce_type"] == b"radstream.v1.StudyReceived"
    assert StudyReceived.FromString(letter.value).study_instance_uid == "poison"
    labels = {"topic": topic.name, "group": "deid"}
    assert (
        registry.get_sample_value(
            "radstream_events_consumed_total", {**labels, "outcome": "dead_lettered"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "radstream_events_consumed_total", {**labels, "outcome": "processed"}
        )
        == 2
    )
    assert (
        registry.get_sample_value(
            "radstream_event_retries_total", {**labels, "error_type": "RuntimeError"}
        )
        == 2
    )
    assert registry.get_sample_value("radstream_consumer_lag", {**labels, "partition": "0"}) == 0


async def test_undecodable_record_is_dead_lettered_with_its_original_bytes(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    consumer = make_bus(kafka_settings, idempotency_dsn, "deid")
    processed: list[str] = []

    @consumer.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        processed.append(event.message.study_instance_uid)

    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    async with running(consumer), running(publisher):
        await write_raw_record(
            kafka_settings,
            topic.name,
            b"\x0a\xff garbage",
            key=b"k",
            headers={"content-type": b"text/plain"},
        )
        await publisher.publish(topic, study("fine"))
        await eventually(lambda: processed == ["fine"])
        [letter] = await read_records(kafka_settings, topic.dlq, 1)

    assert letter.value == b"\x0a\xff garbage"
    assert dict(letter.headers)["x-radstream-error-kind"] == b"poison"
    assert b"ce_" in dict(letter.headers)["x-radstream-error-message"]


async def test_a_dependency_down_past_the_retries_redelivers_the_record_instead_of_dropping_it(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    registry = CollectorRegistry()
    consumer = make_bus(kafka_settings, idempotency_dsn, "deid", registry)
    attempts: list[str] = []
    processed: list[str] = []

    @consumer.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        uid = event.message.study_instance_uid
        attempts.append(uid)
        if uid == "needs-blob-store" and attempts.count(uid) <= 4:  # two rounds of 3 attempts
            raise TransientError("blob store unreachable")
        processed.append(uid)

    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    async with running(consumer), running(publisher):
        for uid in ("needs-blob-store", "next"):
            await publisher.publish(topic, study(uid))
        await eventually(lambda: processed == ["needs-blob-store", "next"])
        dead = await read_records(kafka_settings, topic.dlq, 1, timeout=1.0)

    assert attempts.count("needs-blob-store") == 5
    assert not dead, "a dependency outage is not the event's fault"
    assert (
        registry.get_sample_value(
            "radstream_consumer_errors_total",
            {
                "topic": topic.name,
                "group": "deid",
                "stage": "redeliver",
                "error_type": "TransientError",
            },
        )
        == 1
    )


async def test_a_dependency_away_past_the_retry_time_dead_letters_the_record_and_moves_on(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    registry = CollectorRegistry()
    delivery = DeliverySettings(idempotency_dsn=idempotency_dsn, max_retry_s=0.5, **FAST_RETRIES)
    consumer = create_bus(kafka_settings, delivery, service="deid", registry=registry)
    processed: list[str] = []

    @consumer.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        uid = event.message.study_instance_uid
        if uid == "research-pacs-answers-503":
            raise TransientError("research PACS unavailable")
        processed.append(uid)

    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    async with running(consumer), running(publisher):
        for uid in ("research-pacs-answers-503", "next"):
            await publisher.publish(topic, study(uid))
        await eventually(lambda: processed == ["next"], timeout=30)
        [letter] = await read_records(kafka_settings, topic.dlq, 1)

    headers = dict(letter.headers)
    assert headers["x-radstream-error-kind"] == b"retry-time-exhausted"
    assert headers["x-radstream-error-type"] == b"radstream.common.errors.TransientError"
    labels = {"topic": topic.name, "group": "deid", "partition": "0"}
    assert registry.get_sample_value("radstream_consumer_stalled_seconds", labels) == 0, (
        "the partition was shown stalled and flows again"
    )


async def test_an_outage_in_the_middle_of_a_fetched_batch_loses_none_of_its_records(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=3)
    uids = [f"study-{n:02d}" for n in range(30)]
    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    async with running(publisher):
        for uid in uids:  # all there before the consumer's first fetch: one batch
            await publisher.publish(topic, study(uid))

    consumer = make_bus(kafka_settings, idempotency_dsn, "deid")
    failed: list[str] = []
    processed: list[str] = []

    @consumer.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        uid = event.message.study_instance_uid
        if not failed or (uid == failed[0] and len(failed) < 3):
            failed.append(uid)  # the batch's first record fails a whole round of attempts
            raise TransientError("blob store unreachable")
        processed.append(uid)

    async with running(consumer):
        await eventually(lambda: sorted(processed) == uids)
        await asyncio.sleep(0.5)  # nothing comes twice afterwards either

    assert len(failed) == 3 and failed[0] in processed
    assert sorted(processed) == uids, "each record handled once, none skipped"


async def test_no_fetch_is_in_flight_while_a_batch_is_handled_and_the_next_one_comes(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=2)
    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    consumer = make_bus(kafka_settings, idempotency_dsn, "deid")
    fetches_in_flight: list[int] = []
    handled: list[str] = []

    @consumer.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        await asyncio.sleep(0.05)  # long enough for aiokafka's fetcher to send a fetch ahead
        [kafka] = consumer.consumers
        fetches_in_flight.append(len(kafka._fetcher._in_flight))
        handled.append(event.message.study_instance_uid)

    async with running(publisher), running(consumer):
        await eventually(lambda: len(consumer.assigned_partitions()) == 2)
        await publisher.publish(topic, study("first"))
        await eventually(lambda: handled == ["first"])
        await publisher.publish(topic, study("second"))  # fetched once the batch is through
        await eventually(lambda: handled == ["first", "second"])

    assert fetches_in_flight == [0, 0], "the partitions are paused while a batch is handled"


async def test_an_event_twice_in_one_batch_runs_its_handler_once(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    registry = CollectorRegistry()
    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    async with running(publisher):
        for uid, event_id in (("first", "ev-1"), ("again", "ev-1"), ("last", "ev-2")):
            await publisher.publish(topic, study(uid), event_id=event_id)

    consumer = make_bus(kafka_settings, idempotency_dsn, "deid", registry)
    handled: list[str] = []

    @consumer.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        handled.append(event.message.study_instance_uid)

    async with running(consumer):
        await eventually(lambda: "last" in handled)

    assert handled == ["first", "last"], "the producer's repeat of ev-1 is recognised"
    labels = {"topic": topic.name, "group": "deid", "outcome": "duplicate"}
    assert registry.get_sample_value("radstream_events_consumed_total", labels) == 1


async def test_a_batchs_marks_outlive_the_consumer_so_a_later_repeat_is_recognised(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    handled: list[str] = []

    def consumer_bus() -> Bus:
        bus = make_bus(kafka_settings, idempotency_dsn, "deid")

        @bus.subscribe(topic, group="deid")
        async def handle(event: Event[StudyReceived], claim: Claim) -> None:
            handled.append(event.message.study_instance_uid)

        return bus

    async with running(publisher):
        for n in range(5):
            await publisher.publish(topic, study(f"study-{n}"), event_id=f"ev-{n}")
        async with running(consumer_bus()):
            await eventually(lambda: len(handled) == 5)
        # An upstream service that crashed before its commit publishes its output again.
        await publisher.publish(topic, study("study-3 again"), event_id="ev-3")
        await publisher.publish(topic, study("study-5"), event_id="ev-5")
        async with running(consumer_bus()):  # a new consumer: the marks come from the store
            await eventually(lambda: "study-5" in handled)

    assert handled == [f"study-{n}" for n in range(6)], "the repeat of ev-3 ran no handler"


async def test_a_consuming_bus_prunes_marks_older_than_the_retention(
    kafka_settings, new_topic, tmp_path
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    path = tmp_path / "guard.sqlite3"
    old = SqliteIdempotencyGuard(path)  # a mark from long ago, in the file the bus will use
    await old.open()
    await old.mark_done("deid/" + topic.name, ["ev-old"])
    await old.close()
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {TABLE} SET completed_at='2026-01-01T00:00:00.000Z'")
    registry = CollectorRegistry()
    delivery = DeliverySettings(
        idempotency_dsn=f"sqlite:///{path}",
        idempotency_retention_days=1,
        idempotency_prune_interval_s=0.2,
        **FAST_RETRIES,
    )
    bus = create_bus(kafka_settings, delivery, service="deid", registry=registry)
    handled: list[str] = []

    @bus.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        handled.append(event.id)

    publisher = make_bus(kafka_settings, f"sqlite:///{tmp_path / 'ingest.sqlite3'}", "ingest")
    async with running(publisher), running(bus):
        await publisher.publish(topic, study("new"), event_id="ev-new")
        await eventually(lambda: handled == ["ev-new"])
        await eventually(
            lambda: registry.get_sample_value("radstream_idempotency_marks_pruned_total") == 1
        )
        await asyncio.sleep(0.5)  # more rounds: the fresh mark stays

    guard = SqliteIdempotencyGuard(path)
    await guard.open()
    try:
        assert await guard.done_among("deid/" + topic.name, ["ev-old", "ev-new"]) == {"ev-new"}
    finally:
        await guard.close()
    assert registry.get_sample_value("radstream_idempotency_marks_pruned_total") == 1


async def test_stop_lets_the_record_in_flight_finish_and_commits_it(
    kafka_settings, new_topic, idempotency_dsn, tmp_path
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    started, release = asyncio.Event(), asyncio.Event()
    first_bus = make_bus(kafka_settings, idempotency_dsn, "deid")
    finished: list[str] = []

    @first_bus.subscribe(topic, group="deid")
    async def slow(event: Event[StudyReceived], claim: Claim) -> None:
        started.set()
        await release.wait()
        finished.append(event.message.study_instance_uid)

    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    async with running(publisher):
        await first_bus.start()
        await publisher.publish(topic, study("in-flight"))
        await asyncio.wait_for(started.wait(), 30)
        stopping = asyncio.create_task(first_bus.stop())
        await asyncio.sleep(0.3)
        assert not stopping.done(), "stop waits for the record in flight"
        release.set()
        await asyncio.wait_for(stopping, 30)
        assert finished == ["in-flight"]

        # A fresh guard: only the committed offset can keep the record from coming back.
        second_bus = make_bus(kafka_settings, f"sqlite:///{tmp_path / 'fresh.sqlite3'}", "deid")
        seen: list[str] = []

        @second_bus.subscribe(topic, group="deid")
        async def record(event: Event[StudyReceived], claim: Claim) -> None:
            seen.append(event.message.study_instance_uid)

        async with running(second_bus):
            await publisher.publish(topic, study("after"))
            await eventually(lambda: "after" in seen)

    assert seen == ["after"]


async def test_a_service_without_tracing_passes_the_trace_on(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    inbound = await new_topic(topics.STUDY_RECEIVED_V1)
    outbound = await new_topic(topics.STUDY_RECEIVED_V1)
    tracing = TracerProvider()
    producer = make_bus(kafka_settings, idempotency_dsn, "ingest", tracer_provider=tracing)
    untraced = make_bus(kafka_settings, idempotency_dsn, "deid")

    @untraced.subscribe(inbound, group="deid")
    async def forward(event: Event[StudyReceived], claim: Claim) -> None:
        await untraced.publish(outbound, event.message, caused_by=event)

    async with running(producer), running(untraced):
        with tracing.get_tracer("test").start_as_current_span("ingest study") as root:
            await producer.publish(inbound, study("1.2.3.5"))
        [record] = await read_records(kafka_settings, outbound.name, 1)

    trace_id = format(root.get_span_context().trace_id, "032x")
    assert dict(record.headers)["traceparent"].decode().split("-")[1] == trace_id


async def test_a_consume_loop_whose_consumer_fails_restarts_with_a_new_one_and_goes_on(
    kafka_settings, new_topic, idempotency_dsn
) -> None:
    topic = await new_topic(topics.STUDY_RECEIVED_V1, partitions=1)
    bus = make_bus(kafka_settings, idempotency_dsn, "deid")
    handled: list[str] = []

    @bus.subscribe(topic, group="deid")
    async def handle(event: Event[StudyReceived], claim: Claim) -> None:
        handled.append(event.message.study_instance_uid)

    publisher = make_bus(kafka_settings, idempotency_dsn, "ingest")
    async with running(bus), running(publisher):
        [consumer] = bus.consumers
        await consumer.stop()  # pulled from under the loop, as a defect would

        await eventually(lambda: bus.consumers not in ((), (consumer,)))
        await publisher.publish(topic, study("after-the-restart"))
        await eventually(lambda: handled == ["after-the-restart"])
        assert bus.consuming()
        assert bus.alive()
