"""The ocr client spreads its calls over every server its target resolves to.

The chart's headless Service resolves to every ocr pod; here two loopback servers stand for two
pods, named by one target that resolves to both (``ipv4:`` with two addresses, as DNS would give
them). gRPC's default policy, pick_first, would send every call to the first.
"""

from __future__ import annotations

import asyncio

from radstream.ocr.client import OcrClient
from tests.unit.ocr.scripted import ScriptedEngine, raw_request, serving

CALLS = 8


async def test_calls_go_round_robin_to_every_server_of_the_target() -> None:
    first, second = ScriptedEngine(), ScriptedEngine()
    async with serving(first) as one, serving(second) as two:
        target = f"ipv4:127.0.0.1:{one.server.port},127.0.0.1:{two.server.port}"
        client = OcrClient(target, timeout_s=10)
        try:
            for _ in range(CALLS):
                await asyncio.to_thread(client.detect, raw_request())
        finally:
            client.close()

    assert len(first.calls) + len(second.calls) == CALLS
    assert len(first.calls) >= CALLS // 4 and len(second.calls) >= CALLS // 4, (
        len(first.calls),
        len(second.calls),
    )
