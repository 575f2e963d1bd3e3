"""Receiving within the memory budget: large instances wait for each other, or are refused."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from radstream.common.memory_budget import MemoryBudget
from radstream.common.spool import SpoolFile
from radstream.contracts.v1 import imaging_pb2
from radstream.dicom import ReaderLimits
from radstream.ingest.audit import JsonLinesAuditSink, ReceiptAudit
from radstream.ingest.metrics import ingest_metrics
from radstream.ingest.receipt import OUT_OF_RESOURCES, InstanceReceiver
from tests.unit.ingest.instances import SyntheticStudy
from tests.unit.ingest.test_receipt import SENDER, Harness, make_harness


def with_budget(
    harness: Harness,
    budget: MemoryBudget,
    publish: Callable[[imaging_pb2.InstanceStored], Awaitable[None]] | None = None,
) -> InstanceReceiver:
    """The harness's receiver again, with a memory budget (2 copies an instance)."""
    return InstanceReceiver(
        phi_store=harness.phi,
        assembly=harness.assembly,
        publish_instance=publish or harness.publish,
        audit=ReceiptAudit(
            JsonLinesAuditSink(harness.audit_path), ingest_metrics(CollectorRegistry())
        ),
        limits=ReaderLimits(),
        budget=budget,
        copies=2,
    )


async def test_a_second_instance_waits_until_the_first_is_through(tmp_path: Path) -> None:
    harness = await make_harness(tmp_path)
    study = SyntheticStudy.new()
    first, second = study.instance("CT", 1), study.instance("CT", 2)
    budget = MemoryBudget(max(len(first), len(second)) * 3)  # room for one at 2 copies
    gate, first_in = asyncio.Event(), asyncio.Event()
    published: list[str] = []

    async def publish_slowly(message: imaging_pb2.InstanceStored) -> None:
        published.append(message.instance.sop_instance_uid)
        if len(published) == 1:  # the first holds its reservation here
            first_in.set()
            await gate.wait()

    receiver = with_budget(harness, budget, publish_slowly)
    first_task = asyncio.create_task(receiver.receive(first, sender=SENDER))
    await first_in.wait()
    second_task = asyncio.create_task(receiver.receive(second, sender=SENDER))
    for _ in range(20):
        await asyncio.sleep(0)
    assert budget.waiting == 1 and len(published) == 1  # not parsed, not stored yet
    gate.set()
    receipts = await asyncio.gather(first_task, second_task)
    assert [receipt.accepted for receipt in receipts] == [True, True]
    assert published == [study.sop_uid("CT", 1), study.sop_uid("CT", 2)]
    assert budget.in_use == 0
    await harness.assembly.close()


async def test_an_instance_heavier_than_the_whole_budget_is_refused_and_audited(
    tmp_path: Path,
) -> None:
    harness = await make_harness(tmp_path)
    data = SyntheticStudy.new().instance("CT", 1)
    receiver = with_budget(harness, MemoryBudget(len(data)))  # 2 copies never fit
    receipt = await receiver.receive(data, sender=SENDER)
    assert not receipt.accepted
    assert (receipt.failure, receipt.dicom_status) == ("over_budget", OUT_OF_RESOURCES)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    assert harness.published == []
    [line] = harness.audit_lines()
    assert line["outcome"] == "over_budget"
    await harness.assembly.close()


async def test_a_spooled_instance_is_received_like_its_bytes(tmp_path: Path) -> None:
    harness = await make_harness(tmp_path)
    data = SyntheticStudy.new().instance("CT", 1)
    with SpoolFile(tmp_path / "spool") as spooled:
        spooled.write(data)
        receipt = await harness.receiver.receive(spooled, sender=SENDER)
    assert receipt.accepted
    assert (receipt.sha256, receipt.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert receipt.blob is not None
    assert await harness.phi.get(receipt.blob) == data
    await harness.assembly.close()


async def test_a_spooled_instance_over_the_file_limit_is_refused_unread(tmp_path: Path) -> None:
    harness = await make_harness(tmp_path, max_file_bytes=100)
    data = SyntheticStudy.new().instance("CT", 1)
    with SpoolFile(tmp_path / "spool") as spooled:
        spooled.write(data)
        receipt = await harness.receiver.receive(spooled, sender=SENDER)
    assert (receipt.failure, receipt.dicom_status) == ("file_too_large", OUT_OF_RESOURCES)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest()
    await harness.assembly.close()
