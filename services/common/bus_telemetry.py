"""Traces and Prometheus metrics for every record the bus publishes or processes.

The bus instruments its own hot path instead of wrapping it in generic middlewares: each
publish gets one ``PRODUCER`` span (``<topic> publish``) whose context travels in the record's
``traceparent``, and each delivered record one ``CONSUMER`` span (``<topic> process``) that
continues the trace from that header and is current while the handler runs, so the handler's
own publishes become its children. Attributes follow OpenTelemetry's messaging conventions and
carry no record keys or bodies: keys are study UIDs, which are PHI.

Without an SDK tracer provider no span is started at all (not even OpenTelemetry's no-op ones,
whose attribute dictionaries cost more than the rest of a publish), and the incoming trace
context is still passed through, so a service without tracing does not cut a trace in two. An
SDK provider installed globally after the bus was built is picked up within a second. A
span's attributes are set once it is known to be recorded, so samplers decide without them.

The benchmark (``make bench``) measured why: FastStream's OpenTelemetry and Prometheus
middlewares cost about 300 us of CPU per event on this path, more than the 20% budget of the
whole plumbing over bare aiokafka.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
    TraceState,
)
from prometheus_client import CollectorRegistry, Counter

from radstream.common.metrics import per_registry
from radstream.common.tallies import CounterTally, GaugeTally, HistogramTally

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_SYSTEM = "kafka"
# What a handler sees as current when its record carries no trace and nothing is recorded.
_NO_TRACE: Final = trace.set_span_in_context(INVALID_SPAN)


class BusMetrics:
    """Prometheus metrics of the bus's producer side and of its consume loops.

    Those updated per record are tallies (:mod:`radstream.common.tallies`); the rare ones are
    ordinary ``prometheus_client`` metrics.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = CounterTally(
            "radstream_events_published_total",
            "Records published, by outcome (ok: acknowledged by the broker, error: not).",
            ["topic", "outcome"],
            registry,
        )
        self.publish_seconds = HistogramTally(
            "radstream_event_publish_seconds",
            "Time from publish to the broker's acknowledgement.",
            ["topic"],
            registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.consumer_errors = Counter(
            "radstream_consumer_errors_total",
            "Consume-loop failures by stage: poll (fetch failed), redeliver (the record is "
            "delivered again later), commit (offset not committed; the guard absorbs the repeat), "
            "mark (a batch's done marks not written; its records stay committed), prepare (a "
            "fetched batch could not be prepared; it is delivered again), loop (the consume loop "
            "failed and restarts itself).",
            ["topic", "group", "stage", "error_type"],
            registry=registry,
        )
        self.marks_pruned = Counter(
            "radstream_idempotency_marks_pruned_total",
            "Done marks deleted from the idempotency store for being older than the retention.",
            registry=registry,
        )
        self.prune_failures = Counter(
            "radstream_idempotency_prune_failures_total",
            "Pruning rounds of the idempotency store that failed (the store keeps growing).",
            ["error_type"],
            registry=registry,
        )
        self.lag = GaugeTally(
            "radstream_consumer_lag",
            "Records behind the partition's end, as of the last record this consumer handled.",
            ["topic", "group", "partition"],
            registry,
        )
        self.stalled = GaugeTally(
            "radstream_consumer_stalled_seconds",
            "How long the partition's next record has been failing and delivered again "
            "(a dependency away, the store failing); 0 once a record of it is committed.",
            ["topic", "group", "partition"],
            registry,
        )


bus_metrics = per_registry(BusMetrics)
"""The bus metrics of a registry, registered on first use."""


def parse_traceparent(value: bytes | str | None, state: bytes | str | None = None) -> SpanContext:
    """The remote span context a ``traceparent`` names, or an invalid one if it names none."""
    if value is None:
        return trace.INVALID_SPAN_CONTEXT
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    match = _TRACEPARENT.match(text)
    if match is None:
        return trace.INVALID_SPAN_CONTEXT
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:
        return trace.INVALID_SPAN_CONTEXT
    trace_state = None
    if state:
        state_text = state.decode("ascii", "replace") if isinstance(state, bytes) else state
        trace_state = TraceState.from_header([state_text])
    return SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=True,
        trace_flags=TraceFlags(int(match[3], 16)),
        trace_state=trace_state,
    )


def format_traceparent(span_context: SpanContext) -> bytes:
    """The W3C ``traceparent`` header of ``span_context`` (which must be valid)."""
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    ).encode()


def trace_headers(span_context: SpanContext) -> dict[str, bytes]:
    """``traceparent`` (and ``tracestate``) for ``span_context``; empty when it is invalid."""
    if not span_context.is_valid:
        return {}
    headers = {TRACEPARENT: format_traceparent(span_context)}
    if span_context.trace_state:
        headers[TRACESTATE] = span_context.trace_state.to_header().encode()
    return headers


def _trace_context(headers: Iterable[tuple[str, bytes]]) -> tuple[bytes | None, bytes | None]:
    """A record's ``traceparent`` and ``tracestate`` (the last of each, as in the envelope)."""
    parent = state = None
    for name, value in headers:  # Kafka allows repeats; the last one wins, as in the envelope
        if name == TRACEPARENT:
            parent = value
        elif name == TRACESTATE:
            state = value
    return parent, state


def _event_id(headers: Sequence[tuple[str, bytes]]) -> str:
    """A record's ``ce_id`` (the last one), bounded, for span attributes."""
    value = next((value for name, value in reversed(headers) if name == "ce_id"), b"")
    return value.decode("utf-8", "replace")[:128]


def _can_record(provider: TracerProvider) -> bool:
    return not isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)


class BusTelemetry:
    """The tracer and metrics one bus reports to.

    Without a provider of its own the bus follows the global one, which a service may install
    after the bus was built. OpenTelemetry installs a global provider once and for good, but
    asking for it reads the environment on every call, so the answer is looked up again at most
    every ``recheck_s`` seconds while it is "not recording", and kept once it is "recording".
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None,
        registry: CollectorRegistry,
        recheck_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer = provider.get_tracer("radstream.bus")
        self.metrics = bus_metrics(registry)
        self._recording = _can_record(provider)
        # A given provider is final; the global one is looked up again until it records.
        self._follows_global = tracer_provider is None and not self._recording
        self._recheck_s, self._clock = recheck_s, clock
        self._checked_at = clock()

    def recording(self) -> bool:
        """Whether spans can be recorded: an SDK provider was given, or is installed globally."""
        if self._follows_global and (now := self._clock()) - self._checked_at >= self._recheck_s:
            self._checked_at = now
            if _can_record(trace.get_tracer_provider()):
                self._recording, self._follows_global = True, False
        return self._recording

    def publishing(self, topic: str, event_id: str, size: int) -> PublishScope:
        """A scope around one publish: its span, its timing and its outcome."""
        return PublishScope(self, topic, event_id, size)

    def processing(
        self,
        *,
        topic: str,
        group: str,
        partition: int,
        offset: int,
        headers: Iterable[tuple[str, bytes]],
        size: int,
    ) -> ProcessScope:
        """A scope around the delivery of one consumed record, current while it runs."""
        return ProcessScope(
            self,
            topic=topic,
            group=group,
            partition=partition,
            offset=offset,
            headers=headers,
            size=size,
        )

    def handled(self, topic: str, group: str, partition: int, lag: int) -> None:
        """Record how far a partition's consumer is behind after handling a record."""
        self.metrics.lag.set((topic, group, str(partition)), lag)

    def stalled(self, topic: str, group: str, partition: int, seconds: float) -> None:
        """Record how long a partition has been stuck at a record delivered again (0: flowing)."""
        self.metrics.stalled.set((topic, group, str(partition)), seconds)

    def consumer_error(self, topic: str, group: str, stage: str, error: BaseException) -> None:
        """Count a consume-loop failure at ``stage``."""
        self.metrics.consumer_errors.labels(topic, group, stage, type(error).__name__).inc()


def _end(span: Span, error: BaseException | None) -> None:
    """End ``span``; a failure's status names the error's type only (its message may hold PHI)."""
    if error is not None and span.is_recording():
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


class PublishScope:
    """Times one publish in a ``PRODUCER`` span; :attr:`headers` carry its trace context."""

    __slots__ = ("_started", "_telemetry", "_topic", "headers", "span")

    def __init__(self, telemetry: BusTelemetry, topic: str, event_id: str, size: int) -> None:
        self._telemetry = telemetry
        self._topic = topic
        self.span: Span | None = None
        context = trace.INVALID_SPAN_CONTEXT
        if telemetry.recording():
            self.span = telemetry.tracer.start_span(f"{topic} publish", kind=SpanKind.PRODUCER)
            if self.span.is_recording():  # a trace sampled out gets no attributes built
                self.span.set_attributes(
                    {
                        "messaging.system": _SYSTEM,
                        "messaging.operation.type": "publish",
                        "messaging.destination.name": topic,
                        "messaging.message.id": event_id,
                        "messaging.message.body.size": size,
                    }
                )
            context = self.span.get_span_context()
        if not context.is_valid:  # nothing recorded: pass the caller's trace on unchanged
            context = trace.get_current_span().get_span_context()
        self.headers: Mapping[str, bytes] = trace_headers(context)
        self._started = time.perf_counter()

    def __enter__(self) -> PublishScope:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        metrics = self._telemetry.metrics
        if exc is None:
            metrics.publish_seconds.observe((self._topic,), time.perf_counter() - self._started)
            metrics.published.inc((self._topic, "ok"))
        else:
            metrics.published.inc((self._topic, "error"))
        if self.span is not None:
            _end(self.span, exc)


class ProcessScope:
    """A ``CONSUMER`` span continuing the record's trace, current while the record is handled."""

    __slots__ = ("_current", "_token", "span")
    _current: Context

    def __init__(
        self,
        telemetry: BusTelemetry,
        *,
        topic: str,
        group: str,
        partition: int,
        offset: int,
        headers: Iterable[tuple[str, bytes]],
        size: int,
    ) -> None:
        self._token: Token[Context] | None = None
        self.span: Span | None = None
        headers = tuple(headers)
        parent = parse_traceparent(*_trace_context(headers))
        parent_context = (
            trace.set_span_in_context(NonRecordingSpan(parent)) if parent.is_valid else None
        )
        if not telemetry.recording():
            # No span; the handler still continues the record's trace (or none at all).
            self._current = parent_context if parent_context is not None else _NO_TRACE
            return
        self.span = telemetry.tracer.start_span(
            f"{topic} process", context=parent_context, kind=SpanKind.CONSUMER
        )
        if self.span.is_recording():  # a trace sampled out gets no attributes built
            self.span.set_attributes(
                {
                    "messaging.system": _SYSTEM,
                    "messaging.operation.type": "process",
                    "messaging.destination.name": topic,
                    "messaging.consumer.group.name": group,
                    "messaging.destination.partition.id": str(partition),
                    "messaging.message.id": _event_id(headers),
                    "messaging.kafka.offset": offset,
                    "messaging.message.body.size": size,
                }
            )
        current: Span = self.span
        if not current.get_span_context().is_valid and parent.is_valid:
            current = NonRecordingSpan(parent)  # a provider that made no span: keep the trace
        self._current = trace.set_span_in_context(current)

    def __enter__(self) -> ProcessScope:
        self._token = otel_context.attach(self._current)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        if self.span is not None:
            _end(self.span, exc)
