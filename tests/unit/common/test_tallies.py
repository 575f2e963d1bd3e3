"""Tallies expose exactly what prometheus_client's own metrics would for the same updates."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from radstream.common.tallies import CounterTally, GaugeTally, HistogramTally

BUCKETS = (0.001, 0.01, 0.1, 1.0)
OBSERVED = (0.0005, 0.001, 0.002, 0.05, 0.1, 0.5, 3.0, 3.0)


def samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample of a registry except prometheus_client's ``_created`` timestamps."""
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_counter_tally_counts_per_label_combination() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = CounterTally("t_events_total", "events", ["topic", "outcome"], ours)
    reference = Counter("t_events_total", "events", ["topic", "outcome"], registry=theirs)

    for labels in [("a", "ok"), ("a", "ok"), ("b", "error")]:
        tally.inc(labels)
        reference.labels(*labels).inc()
    tally.inc(("a", "ok"), 2.5)
    reference.labels("a", "ok").inc(2.5)

    assert samples(ours) == samples(theirs)
    assert ours.get_sample_value("t_events_total", {"topic": "a", "outcome": "ok"}) == 4.5


def test_a_gauge_tally_keeps_the_last_value() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = GaugeTally("t_lag", "lag", ["partition"], ours)
    reference = Gauge("t_lag", "lag", ["partition"], registry=theirs)

    for partition, value in [("0", 5), ("1", 2), ("0", 0)]:
        tally.set((partition,), value)
        reference.labels(partition).set(value)

    assert samples(ours) == samples(theirs)


@pytest.mark.parametrize("buckets", [BUCKETS, (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25)])
def test_a_histogram_tally_has_the_buckets_count_and_sum_of_prometheus_clients(
    buckets: tuple[float, ...],
) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = HistogramTally("t_seconds", "time", ["topic"], ours, buckets=buckets)
    reference = Histogram("t_seconds", "time", ["topic"], buckets=buckets, registry=theirs)

    for value in OBSERVED:
        tally.observe(("a",), value)
        reference.labels("a").observe(value)
    tally.observe(("b",), 0.01)
    reference.labels("b").observe(0.01)

    assert samples(ours) == samples(theirs)
    assert ours.get_sample_value("t_seconds_count", {"topic": "a"}) == len(OBSERVED)


def test_the_text_exposition_matches_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    tally = HistogramTally("t_seconds", "time", ["topic"], ours, buckets=BUCKETS)
    reference = Histogram("t_seconds", "time", ["topic"], buckets=BUCKETS, registry=theirs)
    tally.observe(("a",), 0.05)
    reference.labels("a").observe(0.05)

    lines = [
        line for line in generate_latest(theirs).decode().splitlines() if "_created" not in line
    ]
    assert generate_latest(ours).decode().splitlines() == lines


def test_a_name_is_registered_once_per_registry() -> None:
    registry = CollectorRegistry()
    CounterTally("t_events_total", "events", ["topic"], registry)

    with pytest.raises(ValueError, match="Duplicated"):
        CounterTally("t_events_total", "events", ["topic"], registry)


def test_a_family_with_no_updates_yet_is_exposed_without_samples() -> None:
    registry = CollectorRegistry()
    HistogramTally("t_seconds", "time", ["topic"], registry)

    assert samples(registry) == set()
    assert "# TYPE t_seconds histogram" in generate_latest(registry).decode()
