"""The memory budget's metrics: its size, what is reserved and waiting, waits and refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from radstream.common.memory_budget import (
    MemoryBudget,
    MemorySettings,
    OverBudgetError,
    memory_budget_metrics,
)
from radstream.common.settings import (
    BlobSettings,
    DeliverySettings,
    KafkaSettings,
    ObservabilitySettings,
)

MiB = 1024 * 1024


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def budget_in(registry: CollectorRegistry, capacity: int = 100) -> MemoryBudget:
    return MemoryBudget(capacity, metrics=memory_budget_metrics(registry), service="ingest")


async def test_the_budget_reports_its_size_what_is_reserved_and_what_waits() -> None:
    registry = CollectorRegistry()
    budget = budget_in(registry)
    assert sample(registry, "radstream_memory_budget_bytes", service="ingest") == 100
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with budget.reserve(70):
            holding.set()
            await release.wait()

    async def wait_for_room() -> None:
        async with budget.reserve(50):
            pass

    first = asyncio.create_task(hold())
    await holding.wait()
    second = asyncio.create_task(wait_for_room())
    await asyncio.sleep(0)

    assert sample(registry, "radstream_memory_budget_reserved_bytes", service="ingest") == 70
    assert sample(registry, "radstream_memory_budget_waiting", service="ingest") == 1
    release.set()
    await asyncio.gather(first, second)
    assert sample(registry, "radstream_memory_budget_reserved_bytes", service="ingest") == 0
    assert sample(registry, "radstream_memory_budget_waiting", service="ingest") == 0
    # Both grants are timed: the first at once, the second after it waited.
    assert sample(registry, "radstream_memory_budget_wait_seconds_count", service="ingest") == 2
    assert (
        sample(
            registry, "radstream_memory_budget_wait_seconds_bucket", service="ingest", le="0.001"
        )
        >= 1
    )


async def test_refusals_are_counted_by_reason() -> None:
    registry = CollectorRegistry()
    budget = budget_in(registry)

    with pytest.raises(OverBudgetError):
        async with budget.reserve(101):
            pass
    budget.count_refusal("too_large")
    async with budget.reserve(100):
        waiter = asyncio.create_task(budget.reserve(1).__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()  # the sender gave up while it waited
        with pytest.raises(asyncio.CancelledError):
            await waiter

    def refused(reason: str) -> float | None:
        return sample(
            registry, "radstream_memory_budget_refusals_total", service="ingest", reason=reason
        )

    assert (refused("over_budget"), refused("too_large"), refused("abandoned")) == (1, 1, 1)
    assert budget.in_use == 0


async def test_ingest_reports_its_budget_and_counts_an_instance_over_its_limit(
    tmp_path: Path,
) -> None:
    from radstream.ingest.app import create_app
    from radstream.ingest.config import AssemblySettings, IngestSettings

    registry = CollectorRegistry()
    settings = IngestSettings(
        kafka=KafkaSettings(bootstrap="127.0.0.1:9"),  # nothing connects before start
        delivery=DeliverySettings(idempotency_dsn=f"sqlite:///{tmp_path / 'ids.sqlite3'}"),
        blob=BlobSettings(
            phi_uri=f"file://{tmp_path / 'phi'}", release_uri=f"file://{tmp_path / 'rel'}"
        ),
        observability=ObservabilitySettings(service_name="ingest", health_port=0),
        audit_path=tmp_path / "audit.jsonl",
        assembly=AssemblySettings(dsn=f"sqlite:///{tmp_path / 'assembly.sqlite3'}"),
        memory=MemorySettings(budget_bytes=64 * MiB),
    )

    create_app(settings, registry=registry)

    assert sample(registry, "radstream_memory_budget_bytes", service="ingest") == 64 * MiB
    assert sample(registry, "radstream_memory_budget_reserved_bytes", service="ingest") == 0


async def test_deid_reports_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radstream.deid import clean
    from radstream.deid.app import create_app
    from radstream.deid.config import DeidSettings
    from tests.unit.deid.study_builder import shared_text_cleaner

    monkeypatch.setattr(clean, "build_text_cleaner", shared_text_cleaner)
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    registry = CollectorRegistry()
    settings = DeidSettings(
        kafka=KafkaSettings(bootstrap="127.0.0.1:9"),
        delivery=DeliverySettings(idempotency_dsn=f"sqlite:///{tmp_path / 'ids.sqlite3'}"),
        blob=BlobSettings(
            phi_uri=f"file://{tmp_path / 'phi'}", release_uri=f"file://{tmp_path / 'rel'}"
        ),
        key_file=key,
        memory=MemorySettings(budget_bytes=128 * MiB),
    )

    create_app(settings, registry=registry)

    assert sample(registry, "radstream_memory_budget_bytes", service="deid") == 128 * MiB
    assert sample(registry, "radstream_memory_budget_waiting", service="deid") == 0


async def test_an_instance_over_ingests_limit_is_counted_as_too_large(tmp_path: Path) -> None:
    from radstream.ingest.receipt import InstanceReceiver
    from tests.unit.ingest.instances import SyntheticStudy
    from tests.unit.ingest.test_receipt import SENDER, make_harness

    harness = await make_harness(tmp_path, max_file_bytes=100)
    registry = CollectorRegistry()
    receiver = InstanceReceiver(
        phi_store=harness.phi,
        assembly=harness.assembly,
        publish_instance=harness.publish,
        audit=harness.receiver._audit,
        limits=harness.receiver._limits,
        budget=budget_in(registry, capacity=MiB),
    )

    receipt = await receiver.receive(SyntheticStudy.new().instance("CT", 1), sender=SENDER)

    assert receipt.failure == "file_too_large"
    assert (
        sample(
            registry, "radstream_memory_budget_refusals_total", service="ingest", reason="too_large"
        )
        == 1
    )
    await harness.assembly.close()
