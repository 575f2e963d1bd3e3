"""Fuzz target: the FHIR R4 endpoint (``/fhir``, ``/fhir/DiagnosticReport``, ``/fhir/Observation``).

Mutated resources go through the real ASGI app (authentication, body reading, JSON parsing,
validation with ``fhir.resources``, mapping, publishing, audit, error rendering) in process.
Promise: every request is answered 200/201 (accepted) or 4xx with an OperationOutcome, never
5xx and never an exception; no planted PHI is in a response's body or headers, an audit
record or a log line.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import given

from tests.fuzz.budget import fuzz_settings
from tests.fuzz.campaign import Campaign, Emitted, Finding
from tests.fuzz.fhir_corpus import FhirCase, fhir_cases
from tests.fuzz.ingest_stack import IngestStack, ingest_stack

CAMPAIGN = Campaign("fhir")


@dataclass
class Endpoint:
    runner: asyncio.Runner
    stack: IngestStack
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    with tempfile.TemporaryDirectory() as root, asyncio.Runner() as runner:
        context = ingest_stack(Path(root))
        stack = runner.run(context.__aenter__())
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stack.app), base_url="http://ingest.fuzz"
        )
        try:
            yield Endpoint(runner, stack, client)
        finally:
            runner.run(client.aclose())
            runner.run(context.__aexit__(None, None, None))


def check_fhir_answer(response: httpx.Response, where: str) -> None:
    """200/201, or 4xx with an OperationOutcome (FHIR JSON); never anything else."""
    status = response.status_code
    if status >= 500 or status < 200 or 300 <= status < 400:
        raise Finding("bad-answer", where, f"HTTP {status}")
    if status in (200, 201):
        return
    try:
        body = response.json()
    except ValueError:
        raise Finding("bad-answer", where, f"HTTP {status} without a JSON body") from None
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        raise Finding("bad-answer", where, f"HTTP {status} without an OperationOutcome")
    if not body.get("issue"):
        raise Finding("bad-answer", where, f"HTTP {status}: an OperationOutcome without issues")


def post(endpoint: Endpoint, case: FhirCase, emitted: Emitted) -> None:
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    if case.prefer_minimal:
        headers["Prefer"] = "return=minimal"
    before = len(endpoint.stack.published)
    response = endpoint.runner.run(
        endpoint.client.post(case.path, content=case.body, headers=headers)
    )
    emitted("response body", response.content)
    emitted("response headers", json.dumps(dict(response.headers)))
    for line in endpoint.stack.take_audit():
        emitted("audit record", line)
    emitted.answered(f"HTTP {response.status_code}")
    check_fhir_answer(response, f"POST {case.path}")
    published = len(endpoint.stack.published) > before
    if response.status_code >= 400 and published:
        raise Finding("partial", f"POST {case.path}", "a refused request published events")
    if response.status_code == 200:  # a Bundle's response: each entry answered
        body = response.json()
        statuses = [entry.get("response", {}).get("status") for entry in body.get("entry", [])]
        if not all(statuses):
            raise Finding("bad-answer", "Bundle response", "an entry without a status")
        failed = any(not status.startswith("201") for status in statuses)
        if body.get("type") == "transaction-response" and failed:
            raise Finding("partial", "transaction", "a transaction answered in part")


@fuzz_settings()
@given(case=fhir_cases())
def _fuzz(endpoint: Endpoint, case: FhirCase) -> None:
    CAMPAIGN.attempt(case.body, lambda emitted: post(endpoint, case, emitted))


def test_every_mutated_fhir_request_is_answered_with_a_resource_or_an_operation_outcome(
    endpoint: Endpoint,
) -> None:
    with CAMPAIGN.running():
        _fuzz(endpoint)
    CAMPAIGN.assert_clean()
