"""One set of Prometheus metrics per registry, shared by everything that reports into it."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry

MetricSet = TypeVar("MetricSet")


def per_registry(
    build: Callable[[CollectorRegistry], MetricSet],
) -> Callable[[CollectorRegistry], MetricSet]:
    """Wrap ``build`` so each registry gets its metrics registered once and then reused.

    Registering the same metric names twice in one registry raises, so every component that
    reports into a registry must share one instance. Keys are weak: a dropped registry (a
    test's) frees its metrics and can never hand them to a new registry that reuses its id().
    """
    cache: weakref.WeakKeyDictionary[CollectorRegistry, MetricSet] = weakref.WeakKeyDictionary()
    lock = threading.Lock()  # pynetdicom and FastStream report from different threads

    def metrics_of(registry: CollectorRegistry) -> MetricSet:
        with lock:
            found = cache.get(registry)
            if found is None:
                found = cache[registry] = build(registry)
            return found

    metrics_of.__doc__ = f"The {getattr(build, '__name__', 'metric set')} of a registry."
    return metrics_of
