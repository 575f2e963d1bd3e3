"""Limits on the real listeners: STOW parts per request, HTTP requests and MLLP connections at
once, and TLS 1.2 as the oldest protocol any listener speaks. Each refusal is an answer the
sender can read (413, 503, a closed connection) and a count in ``radstream_ingest_refused_total``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import hl7
import httpx
import pytest
from hl7.mllp import open_hl7_connection

from radstream.common.embedded_broker import EmbeddedBroker
from radstream.common.settings import KafkaSettings
from radstream.ingest.http_app import HttpServer, create_http_app
from radstream.ingest.http_auth import HttpSettings, token_sha256
from radstream.ingest.listener_tls import listener_tls_context
from radstream.ingest.mllp import MllpServer, MllpSettings
from radstream.ingest.stow import StowEndpoints
from tests.integration.ingest.dicom_peers import DicomPki, make_pki
from tests.integration.ingest.http_stack import ReceivingStack, receiving_stack
from tests.integration.ingest.test_mllp import exchange, msa, new_filler, oru
from tests.integration.ingest.test_stow import STOW_TYPE, endpoints, multipart, stow
from tests.unit.ingest.instances import SyntheticStudy

pytestmark = pytest.mark.integration

TOKEN = "synthetic-limits-token-3e4f5a6b"


@dataclass
class Limited:
    stack: ReceivingStack
    http: HttpServer
    https: HttpServer
    mllp: MllpServer
    pki: DicomPki

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.http.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )


def old_tls_client(pki: DicomPki) -> ssl.SSLContext:
    """A client that offers nothing newer than TLS 1.1 (OpenSSL needs security level 0 for it)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pki.ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


@pytest.fixture(scope="module")
async def limited(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Limited]:
    root = tmp_path_factory.mktemp("ingest-limits")
    pki = make_pki(root / "pki")
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    async with receiving_stack(root, kafka, label="limits") as stack:
        scoped = {
            "token_sha256": {"sender": token_sha256(TOKEN)},
            "scopes": {"sender": ["stow", "query"]},
        }
        http = HttpSettings(port=0, max_concurrent_requests=1, max_stow_parts=2, **scoped)
        https = HttpSettings(
            port=0, tls_certfile=pki.server_cert, tls_keyfile=pki.server_key, **scoped
        )
        mllp = MllpSettings(port=0, allowed_peers="127.0.0.1", max_connections=1)

        def app(settings: HttpSettings, stow_endpoints: StowEndpoints) -> object:
            return create_http_app(settings, rejections=stack.rejections, stow=stow_endpoints)

        base = endpoints(stack)
        capped = StowEndpoints(**{**base.__dict__, "max_parts": 2})
        async with (
            HttpServer(http, app(http, capped)) as plain,
            HttpServer(https, app(https, base)) as secure,
            MllpServer(mllp, sink=stack.sink, rejections=stack.rejections) as listener,
        ):
            yield Limited(stack=stack, http=plain, https=secure, mllp=listener, pki=pki)


class TestStowParts:
    async def test_a_request_with_more_parts_than_allowed_is_413(self, limited: Limited) -> None:
        study = SyntheticStudy.new()
        async with limited.client() as client:
            response = await stow(client, [study.instance("CT", n) for n in (1, 2, 3)])
        assert response.status_code == 413
        assert response.json() == {"error": "too_many_parts"}
        assert limited.stack.refused("stow", "too_many_parts") >= 1

    async def test_a_request_within_the_cap_is_stored(self, limited: Limited) -> None:
        study = SyntheticStudy.new()
        async with limited.client() as client:
            response = await stow(client, [study.instance("CT", n) for n in (1, 2)])
        assert response.status_code == 200


class TestConcurrentRequests:
    async def test_a_request_beyond_the_limit_is_503_with_retry_after(
        self, limited: Limited
    ) -> None:
        body, boundary = multipart([SyntheticStudy.new().instance("CT", 1)])
        head = (
            "POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {STOW_TYPE.format(boundary=boundary)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        # A sender whose body is still on the wire holds the one request slot.
        reader, writer = await asyncio.open_connection("127.0.0.1", limited.http.port)
        writer.write(head + body[:100])
        await writer.drain()
        async with limited.client() as client:
            busy = None
            for _ in range(200):  # until the held request is in flight
                response = await client.get("/dicomweb/studies")
                if response.status_code == 503:
                    busy = response
                    break
                await asyncio.sleep(0.02)
            writer.write(body[100:])
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 30)
            writer.close()
            after = await client.get("/dicomweb/studies")

        assert busy is not None
        assert busy.json() == {"error": "too_many_requests"}
        assert busy.headers["retry-after"] == "1"
        assert limited.stack.refused("http", "too_many_requests") >= 1
        assert status_line.startswith(b"HTTP/1.1 200")
        assert after.status_code == 200


class TestMllpConnections:
    async def test_a_connection_beyond_the_limit_is_closed_and_the_first_goes_on(
        self, limited: Limited
    ) -> None:
        reader, writer = await open_hl7_connection("127.0.0.1", limited.mllp.port)
        try:
            writer.writemessage(hl7.parse(oru(new_filler())))
            await writer.drain()
            assert msa(await asyncio.wait_for(reader.readmessage(), 10))[0] == "AA"

            extra_reader, extra_writer = await asyncio.open_connection(
                "127.0.0.1", limited.mllp.port
            )
            assert await asyncio.wait_for(extra_reader.read(), 10) == b""
            extra_writer.close()

            writer.writemessage(hl7.parse(oru(new_filler())))
            await writer.drain()
            assert msa(await asyncio.wait_for(reader.readmessage(), 10))[0] == "AA"
        finally:
            writer.close()
            await writer.wait_closed()
        assert limited.stack.refused("mllp", "too_many_connections") >= 1
        # Once the first is closed, a new sender is served again.
        for _ in range(100):
            try:
                (ack,) = await exchange(limited.mllp.port, oru(new_filler()))
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                await asyncio.sleep(0.05)
        assert msa(ack)[0] == "AA"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
class TestTlsMinimum:
    async def test_https_refuses_a_client_older_than_tls_1_2(self, limited: Limited) -> None:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection(
                "127.0.0.1", limited.https.port, ssl=old_tls_client(limited.pki)
            )

    async def test_https_speaks_tls_1_2_to_a_client_that_offers_no_more(
        self, limited: Limited
    ) -> None:
        context = limited.pki.client_context(with_certificate=False)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        _, writer = await asyncio.open_connection("127.0.0.1", limited.https.port, ssl=context)
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
        writer.close()

    async def test_dicom_and_mllp_listeners_refuse_a_client_older_than_tls_1_2(
        self, limited: Limited
    ) -> None:
        context = listener_tls_context(
            limited.pki.server_cert, limited.pki.server_key, None, settings="the test's"
        )
        assert context is not None
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.open_connection("127.0.0.1", port, ssl=old_tls_client(limited.pki))
        finally:
            server.close()
            await server.wait_closed()
