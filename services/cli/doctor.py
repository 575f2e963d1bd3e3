"""``radstream doctor``: check every dependency a service needs and say what is wrong."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from radstream.common.blobstore import open_blob_stores
from radstream.common.errors import RadstreamError
from radstream.common.idempotency import open_guard
from radstream.common.kafka_client import aiokafka_options
from radstream.common.settings import BlobSettings, DeliverySettings, KafkaSettings
from radstream.common.topics import ALL_TOPICS


class Status(StrEnum):
    """Result of one check."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    INFO = "info"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One line of the doctor's report."""

    check: str
    status: Status
    detail: str


async def check_broker() -> Finding:
    """Connect with the configured security, list topics, name registry topics that are missing."""
    settings = KafkaSettings()
    admin = AIOKafkaAdminClient(request_timeout_ms=5000, **aiokafka_options(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    missing = [topic.name for topic in ALL_TOPICS if topic.name not in existing]
    if missing:
        return Finding(
            check="kafka",
            status=Status.WARN,
            detail=f"{settings.bootstrap}: {len(missing)} topic(s) missing; "
            "run `radstream topics --create`",
        )
    return Finding(
        check="kafka", status=Status.OK, detail=f"{settings.bootstrap}: all topics exist"
    )


async def check_idempotency_store() -> Finding:
    """Open the idempotency store, read from it, and say how far back its done marks go.

    Marks older than the retention by more than a day mean that no consuming service has
    pruned them lately: none is running, or its pruning fails.
    """
    settings = DeliverySettings()
    guard = open_guard(settings.idempotency_dsn)
    try:
        await guard.open()
        await guard.check()
        oldest = await guard.oldest_mark()
    finally:
        await guard.close()
    scheme = settings.idempotency_dsn.split(":", 1)[0]
    if oldest is None:
        return Finding(
            check="idempotency store", status=Status.OK, detail=f"{scheme} reachable, no marks"
        )
    age_days = (datetime.now(UTC) - oldest).total_seconds() / 86_400
    detail = f"{scheme} reachable, marks from the last {age_days:.1f} days"
    retention = settings.idempotency_retention_days
    if retention and age_days > retention + 1:
        return Finding(
            check="idempotency store",
            status=Status.WARN,
            detail=f"{detail}, past the {retention:g}-day retention: no consuming service has "
            "pruned them lately (see radstream_idempotency_prune_failures_total)",
        )
    return Finding(check="idempotency store", status=Status.OK, detail=detail)


async def check_blob_stores() -> Finding:
    """Write and read a probe object in the PHI and the release store."""
    stores = open_blob_stores(BlobSettings())
    await stores.phi.check()
    await stores.release.check()
    return Finding(
        check="blob stores",
        status=Status.OK,
        detail=f"phi={stores.phi.root_uri} release={stores.release.root_uri}",
    )


async def check_model_backends() -> Finding:
    """Report the model backends; none are configured until the model-serving services land."""
    return Finding(
        check="model backends",
        status=Status.INFO,
        detail="none configured yet (Triton and in-process backends come with ocr/restructure)",
    )


CHECKS: tuple[tuple[str, Callable[[], Awaitable[Finding]]], ...] = (
    ("kafka", check_broker),
    ("idempotency store", check_idempotency_store),
    ("blob stores", check_blob_stores),
    ("model backends", check_model_backends),
)


async def run_checks() -> list[Finding]:
    """Run every check; a failing check becomes a FAIL finding with its error, never a crash."""
    findings: list[Finding] = []
    for name, check in CHECKS:
        try:
            findings.append(await check())
        except (RadstreamError, ValidationError, OSError) as exc:
            findings.append(Finding(check=name, status=Status.FAIL, detail=_explain(exc)))
        except Exception as exc:
            findings.append(Finding(check=name, status=Status.FAIL, detail=_explain(exc)))
    return findings


def _explain(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
