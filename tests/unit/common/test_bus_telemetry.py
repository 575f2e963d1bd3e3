"""The bus's own spans and metrics: trace context carried, nothing of the record's content."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from radstream.common.bus_telemetry import (
    BusTelemetry,
    format_traceparent,
    parse_traceparent,
    trace_headers,
)

UPSTREAM = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def telemetry(exporter: InMemorySpanExporter, registry: CollectorRegistry) -> BusTelemetry:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return BusTelemetry(tracer_provider=provider, registry=registry)


class TestTraceparent:
    def test_a_valid_header_names_a_remote_sampled_parent(self) -> None:
        parent = parse_traceparent(UPSTREAM, b"vendor=abc")

        assert parent.is_valid and parent.is_remote and parent.trace_flags.sampled
        assert parent.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        assert parent.trace_state.get("vendor") == "abc"
        assert format_traceparent(parent) == UPSTREAM

    @pytest.mark.parametrize(
        "value",
        [
            None,
            b"",
            b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # unknown version
            b"00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
            b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
            b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",  # short span id
            b"\xff\xfe",
        ],
    )
    def test_anything_else_names_no_parent(self, value: bytes | None) -> None:
        assert not parse_traceparent(value).is_valid

    def test_an_invalid_context_writes_no_headers(self) -> None:
        assert trace_headers(trace.INVALID_SPAN_CONTEXT) == {}


class TestPublishScope:
    def test_a_publish_is_a_producer_span_whose_context_goes_in_the_headers(
        self, telemetry: BusTelemetry, exporter: InMemorySpanExporter, registry: CollectorRegistry
    ) -> None:
        with telemetry.publishing("radstream.imaging.study-received.v1", "ev-1", 100) as scope:
            headers = dict(scope.headers)

        [span] = exporter.get_finished_spans()
        assert span.name == "radstream.imaging.study-received.v1 publish"
        assert span.kind is SpanKind.PRODUCER
        assert span.attributes["messaging.system"] == "kafka"
        assert span.attributes["messaging.message.id"] == "ev-1"
        assert headers["traceparent"] == format_traceparent(span.context)
        labels = {"topic": "radstream.imaging.study-received.v1"}
        assert (
            registry.get_sample_value(
                "radstream_events_published_total", {**labels, "outcome": "ok"}
            )
            == 1
        )
        assert registry.get_sample_value("radstream_event_publish_seconds_count", labels) == 1

    def test_a_failed_publish_is_counted_and_its_span_names_only_the_error_type(
        self, telemetry: BusTelemetry, exporter: InMemorySpanExporter, registry: CollectorRegistry
    ) -> None:
        with pytest.raises(RuntimeError), telemetry.publishing("t", "ev-2", 1):
            raise RuntimeError("patient DOE^JANE not found")

        [span] = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "RuntimeError"
        assert not span.events, "exception events would carry the message, which may hold PHI"
        assert (
            registry.get_sample_value(
                "radstream_events_published_total", {"topic": "t", "outcome": "error"}
            )
            == 1
        )

    def test_without_a_tracer_the_callers_trace_is_passed_on(
        self, registry: CollectorRegistry
    ) -> None:
        quiet = BusTelemetry(tracer_provider=trace.NoOpTracerProvider(), registry=registry)
        upstream = trace.NonRecordingSpan(parse_traceparent(UPSTREAM))

        with trace.use_span(upstream), quiet.publishing("t", "ev-3", 1) as scope:
            headers = dict(scope.headers)

        assert headers["traceparent"] == UPSTREAM


class TestProcessScope:
    def test_processing_continues_the_records_trace_and_is_current_for_the_handler(
        self, telemetry: BusTelemetry, exporter: InMemorySpanExporter
    ) -> None:
        headers = [("ce_id", b"ev-4"), ("traceparent", UPSTREAM)]

        with telemetry.processing(
            topic="in", group="deid", partition=2, offset=41, headers=headers, size=10
        ):
            inside = trace.get_current_span().get_span_context()
            with telemetry.publishing("out", "ev-5", 1):
                pass

        publish, process = exporter.get_finished_spans()
        assert process.name == "in process" and process.kind is SpanKind.CONSUMER
        assert process.parent.span_id == 0xB7AD6B7169203331
        assert process.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        assert inside.span_id == process.context.span_id
        assert publish.parent.span_id == process.context.span_id
        assert process.attributes["messaging.consumer.group.name"] == "deid"
        assert process.attributes["messaging.kafka.offset"] == 41
        assert process.attributes["messaging.message.id"] == "ev-4"
        assert trace.get_current_span() is trace.INVALID_SPAN, "the context is restored"

    def test_a_record_without_trace_context_starts_a_new_trace(
        self, telemetry: BusTelemetry, exporter: InMemorySpanExporter
    ) -> None:
        with telemetry.processing(
            topic="in", group="g", partition=0, offset=0, headers=[("traceparent", b"junk")], size=0
        ):
            pass

        [process] = exporter.get_finished_spans()
        assert process.parent is None

    def test_without_a_tracer_the_handler_still_continues_the_trace(
        self, registry: CollectorRegistry
    ) -> None:
        quiet = BusTelemetry(tracer_provider=trace.NoOpTracerProvider(), registry=registry)

        with (
            quiet.processing(
                topic="in",
                group="g",
                partition=0,
                offset=0,
                headers=[("traceparent", UPSTREAM)],
                size=0,
            ),
            quiet.publishing("out", "ev-6", 1) as scope,
        ):
            forwarded = dict(scope.headers)["traceparent"]

        assert forwarded == UPSTREAM

    def test_without_a_tracer_an_untraced_record_leaves_the_handler_outside_any_trace(
        self, registry: CollectorRegistry
    ) -> None:
        quiet = BusTelemetry(tracer_provider=trace.NoOpTracerProvider(), registry=registry)
        ambient = trace.NonRecordingSpan(parse_traceparent(UPSTREAM))

        with (
            trace.use_span(ambient),
            quiet.processing(topic="in", group="g", partition=0, offset=0, headers=[], size=0),
            quiet.publishing("out", "ev-7", 1) as scope,
        ):
            inside = trace.get_current_span()

        assert inside is trace.INVALID_SPAN, "the consume loop's own context does not leak in"
        assert "traceparent" not in dict(scope.headers)


class TestRecording:
    def test_spans_are_made_only_when_a_provider_can_record_them(
        self, telemetry: BusTelemetry, registry: CollectorRegistry
    ) -> None:
        quiet = BusTelemetry(tracer_provider=trace.NoOpTracerProvider(), registry=registry)

        assert telemetry.recording() and not quiet.recording()
        with (
            quiet.publishing("t", "ev-8", 1) as silent,
            telemetry.publishing("t", "ev-9", 1) as live,
        ):
            assert silent.span is None
            assert live.span is not None and live.span.is_recording()

    def test_a_global_provider_installed_later_is_picked_up_within_the_recheck_interval(
        self, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        now = [100.0]
        monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
        follower = BusTelemetry(
            tracer_provider=None, registry=registry, recheck_s=1.0, clock=lambda: now[0]
        )
        assert not follower.recording()

        monkeypatch.setattr(trace, "get_tracer_provider", TracerProvider)
        now[0] += 0.5
        assert not follower.recording(), "not asked again before the interval is over"
        now[0] += 0.5
        assert follower.recording()

        monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
        now[0] += 10
        assert follower.recording(), "a global provider, once installed, stays"

    def test_a_provider_given_to_the_bus_is_final(
        self, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        now = [100.0]
        quiet = BusTelemetry(
            tracer_provider=trace.NoOpTracerProvider(), registry=registry, clock=lambda: now[0]
        )
        monkeypatch.setattr(trace, "get_tracer_provider", TracerProvider)
        now[0] += 10

        assert not quiet.recording(), "the global provider does not override the bus's own"

    def test_publish_metrics_are_kept_without_a_tracer(self, registry: CollectorRegistry) -> None:
        quiet = BusTelemetry(tracer_provider=trace.NoOpTracerProvider(), registry=registry)

        with quiet.publishing("t", "ev-10", 1):
            pass

        labels = {"topic": "t", "outcome": "ok"}
        assert registry.get_sample_value("radstream_events_published_total", labels) == 1
