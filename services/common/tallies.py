"""Counters, gauges and histograms for the bus's per-record path, turned into metrics on scrape.

``prometheus_client`` metrics take a lock and run several layers of Python on every update.
That is nothing for a request handler, but the bus updates five of them per record, and the
benchmark (``make bench``) measured them at about 7% of the bus's throughput: on a busy event
loop their cost is less the instructions than the code and data they pull through the CPU's
caches, at the expense of aiokafka's. A tally is a plain dict of numbers keyed by label values;
the registry asks it for its metric families only when scraped.

Tallies are updated from the event loop's thread only (the bus's path). A scrape from another
thread copies each dict in one step under the GIL, so it sees every update or none of it; a
histogram's buckets and sum may be one observation apart, as with ``prometheus_client``'s own.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# How prometheus_client writes a bucket's bound, so ``le`` labels match its own histograms'.
_bound_text = cast(Callable[[float], str], floatToGoString)
Labels = tuple[str, ...]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The bounds ``prometheus_client.Histogram`` uses when given none (``+Inf`` is added)."""


class _Tally(Collector):
    """One metric family: its name, help text and label names, registered in ``registry``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        """The family with one sample set per label combination seen so far."""
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        """The family without samples, so the registry can refuse a duplicate name."""
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


class _ValueTally(_Tally):
    """One number per label combination."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self._values: dict[Labels, float] = {}
        super().__init__(name, documentation, labelnames, registry)

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        """The family, one sample per label combination."""
        family = self._family()
        for labels, value in list(self._values.items()):
            family.add_metric(labels, value)
        yield family


class CounterTally(_ValueTally):
    """A counter; ``name`` may end in ``_total``, which is what the exposition shows."""

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        """Add ``amount`` to the count of ``labels`` (label values in ``labelnames`` order)."""
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)


class GaugeTally(_ValueTally):
    """A gauge: the last value set per label combination."""

    def set(self, labels: Labels, value: float) -> None:
        """Set the gauge of ``labels`` to ``value``."""
        self._values[labels] = value

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)


class HistogramTally(_Tally):
    """A histogram with fixed upper bounds; ``+Inf`` is always the last bucket."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds:
            raise ValueError(f"{name}: a histogram needs at least one finite bucket")
        self._bounds = bounds
        self._les = [*(_bound_text(b) for b in bounds), "+Inf"]
        # Per label combination: one count per bucket (not cumulative), then the sum.
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}
        super().__init__(name, documentation, labelnames, registry)

    def observe(self, labels: Labels, value: float) -> None:
        """Count ``value`` in its bucket and add it to the sum."""
        counts = self._counts.get(labels)
        if counts is None:
            counts = self._counts[labels] = [0] * len(self._les)
            self._sums[labels] = 0.0
        counts[bisect.bisect_left(self._bounds, value)] += 1  # a value on a bound counts in it
        self._sums[labels] += value

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        """The histogram family, with cumulative buckets as the exposition format wants."""
        family = self._family()
        sums = dict(self._sums)
        for labels, counts in list(self._counts.items()):
            running, cumulative = 0, []
            for le, count in zip(self._les, list(counts), strict=True):
                running += count
                cumulative.append((le, float(running)))
            family.add_metric(labels, cumulative, sum_value=sums.get(labels, 0.0))
        yield family
