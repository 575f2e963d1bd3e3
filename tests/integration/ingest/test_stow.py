"""STOW-RS, QIDO-style status and completion over real HTTP, events on the real broker.

One ingest HTTP server (bearer tokens) runs for the module on a free loopback port, in front of
a real receiver, assembly and bus; each test sends its own synthetic study with httpx.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from radstream.common.embedded_broker import EmbeddedBroker
from radstream.common.settings import KafkaSettings
from radstream.contracts.v1 import imaging_pb2
from radstream.ingest.export import ExportItem, ExportTarget
from radstream.ingest.export_stow import StowRsTransport
from radstream.ingest.http_app import HttpServer, create_http_app
from radstream.ingest.http_auth import HttpSettings, token_sha256
from radstream.ingest.stow import StowEndpoints
from tests.integration.ingest.dicom_peers import DicomPki, make_pki
from tests.integration.ingest.http_stack import ReceivingStack, receiving_stack
from tests.unit.ingest.instances import (
    PATIENT_ID,
    PATIENT_NAME,
    SC_IMAGE_STORAGE,
    SyntheticStudy,
    to_part10,
)

pytestmark = pytest.mark.integration

TOKEN = "synthetic-pacs-gateway-token-5d1f0c9e"
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary={boundary}'
DICOM_JSON = "application/dicom+json"
REFERENCED, FAILED = "00081199", "00081198"
REF_SOP_INSTANCE, FAILURE_REASON = "00081155", "00081197"
MAX_REQUEST_BYTES = 256 * 1024


@dataclass
class Running:
    stack: ReceivingStack
    server: HttpServer

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.server.url, headers=headers, timeout=30)

    async def instances_of(self, study: SyntheticStudy, count: int) -> list:
        return await self.stack.events.wait_for(
            self.stack.topics.instance_stored,
            count,
            lambda m: m.instance.study_instance_uid == study.study_uid,
        )

    async def fence(self) -> None:
        """Store one marker instance and wait for its event: what came before has arrived."""
        marker = SyntheticStudy.new()
        async with self.client() as client:
            response = await stow(client, [marker.instance("CT", 1)])
        assert response.status_code == 200
        await self.instances_of(marker, 1)


def endpoints(stack: ReceivingStack) -> StowEndpoints:
    return StowEndpoints(
        receiver=stack.receiver,
        assembly=stack.assembly,
        complete_study=stack.assembler.complete,
        audit=stack.audit,
        rejections=stack.rejections,
        max_request_bytes=MAX_REQUEST_BYTES,
        max_part_bytes=64 * 1024,
    )


@pytest.fixture(scope="module")
async def running(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    root = tmp_path_factory.mktemp("ingest-stow")
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    async with receiving_stack(root, kafka, label="stow") as stack:
        settings = HttpSettings(
            port=0,
            token_sha256={"pacs-gateway": token_sha256(TOKEN)},
            scopes={"pacs-gateway": ["stow", "query", "complete"]},
            max_request_bytes=MAX_REQUEST_BYTES,
        )
        app = create_http_app(settings, rejections=stack.rejections, stow=endpoints(stack))
        async with HttpServer(settings, app) as server:
            yield Running(stack=stack, server=server)


def multipart(parts: list[bytes], *, part_type: str = "application/dicom") -> tuple[bytes, str]:
    boundary = f"stow-{uuid.uuid4().hex}"
    body = b""
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), boundary


async def stow(
    client: httpx.AsyncClient, parts: list[bytes], *, study: str | None = None
) -> httpx.Response:
    body, boundary = multipart(parts)
    url = "/dicomweb/studies" + (f"/{study}" if study else "")
    return await client.post(
        url,
        content=body,
        headers={"Content-Type": STOW_TYPE.format(boundary=boundary), "Accept": DICOM_JSON},
    )


def sequence(response: httpx.Response, tag: str) -> list[dict]:
    return response.json().get(tag, {}).get("Value", [])


class TestStore:
    async def test_an_upload_stores_every_instance_and_publishes_instance_stored(
        self, running: Running
    ) -> None:
        study = SyntheticStudy.new()
        parts = [study.instance("CT", 1), study.instance("CT", 2), study.instance("MR", 1)]
        async with running.client() as client:
            response = await stow(client, parts)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == DICOM_JSON
        stored = {item[REF_SOP_INSTANCE]["Value"][0] for item in sequence(response, REFERENCED)}
        assert stored == {study.sop_uid("CT", 1), study.sop_uid("CT", 2), study.sop_uid("MR", 1)}
        assert FAILED not in response.json()
        events = await running.instances_of(study, 3)
        assert {e.message.sender_id for e in events} == {"pacs-gateway"}
        assert {e.message.source for e in events} == {imaging_pb2.InstanceStored.SOURCE_STOW_RS}

    async def test_a_garbage_part_fails_alone_and_the_answer_is_202(self, running: Running) -> None:
        study = SyntheticStudy.new()
        parts = [study.instance("CT", 1), b"this is not DICOM at all", study.instance("CT", 2)]
        async with running.client() as client:
            response = await stow(client, parts)
        assert response.status_code == 202
        assert len(sequence(response, REFERENCED)) == 2
        (failure,) = sequence(response, FAILED)
        assert 0xC000 <= failure[FAILURE_REASON]["Value"][0] <= 0xCFFF
        await running.instances_of(study, 2)
        assert running.stack.receipts("stow", "not_dicom") >= 1

    async def test_when_every_part_fails_the_answer_is_409(self, running: Running) -> None:
        study = SyntheticStudy.new()
        refused_class = study.instance("CT", 1, sop_class=SC_IMAGE_STORAGE)
        async with running.client() as client:
            response = await stow(client, [b"garbage", refused_class])
        assert response.status_code == 409
        reasons = [item[FAILURE_REASON]["Value"][0] for item in sequence(response, FAILED)]
        assert reasons[1] == 0x0122  # SOP class not supported
        assert REFERENCED not in response.json()

    async def test_an_instance_of_another_study_than_the_url_names_is_refused(
        self, running: Running
    ) -> None:
        study, other = SyntheticStudy.new(), SyntheticStudy.new()
        async with running.client() as client:
            response = await stow(
                client, [study.instance("CT", 1), other.instance("CT", 1)], study=study.study_uid
            )
        assert response.status_code == 202
        (failure,) = sequence(response, FAILED)
        assert failure[FAILURE_REASON]["Value"] == [0xC409]
        assert failure[REF_SOP_INSTANCE]["Value"] == [other.sop_uid("CT", 1)]
        await running.fence()
        assert (
            running.stack.events.on(
                running.stack.topics.instance_stored,
                lambda m: m.instance.study_instance_uid == other.study_uid,
            )
            == []
        )

    async def test_a_duplicate_is_acknowledged_but_not_published_again(
        self, running: Running
    ) -> None:
        study = SyntheticStudy.new()
        async with running.client() as client:
            first = await stow(client, [study.instance("CT", 1)])
            again = await stow(client, [study.instance("CT", 1)])
        assert (first.status_code, again.status_code) == (200, 200)
        await running.fence()
        assert len(await running.instances_of(study, 1)) == 1

    async def test_the_audit_trail_names_sender_and_hash_but_no_patient_data(
        self, running: Running
    ) -> None:
        study = SyntheticStudy.new()
        async with running.client() as client:
            await stow(client, [study.instance("CT", 1)])
        text = running.stack.audit_path.read_text()
        records = [json.loads(line) for line in text.splitlines()]
        assert any(r["channel"] == "stow" and r["sender"] == "pacs-gateway" for r in records)
        assert PATIENT_ID not in text
        assert PATIENT_NAME not in text


class TestRefusedRequests:
    async def test_another_media_type_is_415(self, running: Running) -> None:
        study = SyntheticStudy.new()
        async with running.client() as client:
            single = await client.post(
                "/dicomweb/studies",
                content=study.instance("CT", 1),
                headers={"Content-Type": "application/dicom"},
            )
            xml = await client.post(
                "/dicomweb/studies",
                content=b"<x/>",
                headers={
                    "Content-Type": 'multipart/related; type="application/dicom+xml"; boundary=b'
                },
            )
        assert (single.status_code, xml.status_code) == (415, 415)
        assert running.stack.refused("stow", "unsupported_media_type") >= 2

    async def test_a_body_without_multipart_framing_is_400(self, running: Running) -> None:
        async with running.client() as client:
            response = await client.post(
                "/dicomweb/studies",
                content=b"no delimiters anywhere",
                headers={"Content-Type": STOW_TYPE.format(boundary="b0undary")},
            )
        assert response.status_code == 400
        assert running.stack.refused("stow", "no_parts") >= 1

    async def test_a_body_over_the_limit_is_413(self, running: Running) -> None:
        async with running.client() as client:
            response = await stow(client, [b"\0" * (MAX_REQUEST_BYTES + 1)])
        assert response.status_code == 413

    async def test_without_a_token_the_answer_is_401_with_a_bearer_challenge(
        self, running: Running
    ) -> None:
        study = SyntheticStudy.new()
        async with running.client(token=None) as client:
            response = await stow(client, [study.instance("CT", 1)])
            lookup = await client.get("/dicomweb/studies")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert lookup.status_code == 401
        assert running.stack.refused("http", "missing_credentials") >= 2

    async def test_invalid_query_parameters_are_400_without_echoing_them(
        self, running: Running
    ) -> None:
        async with running.client() as client:
            response = await client.get("/dicomweb/studies", params={"limit": "SYNTH-MRN-1"})
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_request", "parameters": ["query.limit"]}

    async def test_a_wrong_token_is_401_invalid_token(self, running: Running) -> None:
        async with running.client(token="not-the-token") as client:
            response = await client.get("/dicomweb/studies")
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


class TestStatusAndCompletion:
    async def test_qido_lookups_show_what_was_received_without_patient_data(
        self, running: Running
    ) -> None:
        study = SyntheticStudy.new()
        async with running.client() as client:
            await stow(
                client, [study.instance("CT", 1), study.instance("CT", 2), study.instance("MR", 1)]
            )
            studies = await client.get(
                "/dicomweb/studies", params={"StudyInstanceUID": study.study_uid}
            )
            series = await client.get(f"/dicomweb/studies/{study.study_uid}/series")
            instances = await client.get(f"/dicomweb/studies/{study.study_uid}/instances")
        assert studies.status_code == 200
        assert studies.headers["content-type"] == DICOM_JSON
        (found,) = studies.json()
        assert found["0020000D"]["Value"] == [study.study_uid]
        assert found["00201208"]["Value"] == [3]
        assert found["00201206"]["Value"] == [2]
        assert found["00080061"]["Value"] == ["CT", "MR"]
        assert found["00091001"]["Value"] == ["PENDING"]
        assert sorted(s["00201209"]["Value"][0] for s in series.json()) == [1, 2]
        assert len(instances.json()) == 3
        for response in (studies, series, instances):
            assert PATIENT_ID not in response.text
            assert study.accession not in response.text

    async def test_an_unknown_study_is_404(self, running: Running) -> None:
        async with running.client() as client:
            response = await client.get("/dicomweb/studies/2.25.999/series")
            completion = await client.post("/ingest/studies/2.25.999/complete")
            lookup = await client.get("/dicomweb/studies", params={"StudyInstanceUID": "2.25.9"})
        assert (response.status_code, completion.status_code) == (404, 404)
        assert lookup.json() == []

    async def test_the_explicit_trigger_publishes_study_received(self, running: Running) -> None:
        study = SyntheticStudy.new()
        async with running.client() as client:
            await stow(client, [study.instance("CT", 1), study.instance("CT", 2)])
            completion = await client.post(f"/ingest/studies/{study.study_uid}/complete")
            assert completion.status_code == 202
            (event,) = await running.stack.events.wait_for(
                running.stack.topics.study_received,
                1,
                lambda m: m.study_instance_uid == study.study_uid,
            )
            status = await client.get(
                "/dicomweb/studies", params={"StudyInstanceUID": study.study_uid}
            )
        assert len(event.message.instances) == 2
        assert status.json()[0]["00091001"]["Value"] == ["COMPLETE"]


@pytest.fixture(scope="module")
async def mtls(
    running: Running, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[HttpServer, DicomPki]]:
    """A second server on the same stack that requires client certificates."""
    pki = make_pki(tmp_path_factory.mktemp("http-pki"))
    settings = HttpSettings(
        port=0,
        auth="mtls",
        tls_certfile=pki.server_cert,
        tls_keyfile=pki.server_key,
        tls_client_cafile=pki.ca,
        scopes={"SYNTH_CT_TLS": ["stow"]},
    )
    app = create_http_app(
        settings, rejections=running.stack.rejections, stow=endpoints(running.stack)
    )
    async with HttpServer(settings, app) as server:
        yield server, pki


class TestMutualTls:
    async def test_the_client_certificate_cn_is_the_sender(self, running: Running, mtls) -> None:
        server, pki = mtls
        study = SyntheticStudy.new()
        context = pki.client_context(with_certificate=True)
        async with httpx.AsyncClient(base_url=server.url, verify=context) as client:
            response = await stow(client, [study.instance("CT", 1)])
        assert response.status_code == 200
        (event,) = await running.instances_of(study, 1)
        assert event.message.sender_id == "SYNTH_CT_TLS"

    async def test_without_a_client_certificate_the_handshake_fails(self, mtls) -> None:
        server, pki = mtls
        context = pki.client_context(with_certificate=False)
        async with httpx.AsyncClient(base_url=server.url, verify=context) as client:
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                await client.get("/dicomweb/studies")


class TestExportOverTls:
    """The STOW-RS export to a research PACS over https, against this stack's mTLS server."""

    @staticmethod
    def item(study: SyntheticStudy) -> ExportItem:
        data = study.instance("CT", 1)
        return ExportItem(
            sop_instance_uid=study.sop_uid("CT", 1),
            sop_class_uid=str(study.dataset("CT", 1).SOPClassUID),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
        )

    async def test_it_trusts_the_targets_ca_and_presents_its_certificate(
        self, running: Running, mtls
    ) -> None:
        server, pki = mtls
        study = SyntheticStudy.new()
        target = ExportTarget(
            name="research-tls",
            transport="stow-rs",
            stow_url=f"{server.url}/dicomweb",
            tls_ca_file=pki.ca,
            tls_certfile=pki.client_cert,
            tls_keyfile=pki.client_key,
        )
        transport = StowRsTransport.from_target(target)
        try:
            [result] = await transport.send([self.item(study)])
        finally:
            await transport.close()

        assert result.outcome == "sent", result
        (event,) = await running.instances_of(study, 1)
        assert event.message.sender_id == "SYNTH_CT_TLS"

    async def test_without_the_targets_ca_the_server_is_not_trusted_and_nothing_is_sent(
        self, mtls
    ) -> None:
        server, pki = mtls
        target = ExportTarget(
            name="research-tls",
            transport="stow-rs",
            stow_url=f"{server.url}/dicomweb",
            tls_certfile=pki.client_cert,
            tls_keyfile=pki.client_key,
        )
        transport = StowRsTransport.from_target(target)
        try:
            [result] = await transport.send([self.item(SyntheticStudy.new())])
        finally:
            await transport.close()

        assert result.outcome == "retry"
        assert result.status == "http-ConnectError"


class TestConflicts:
    async def test_a_changed_instance_under_a_known_uid_is_stored_and_announced_as_a_conflict(
        self, running: Running
    ) -> None:
        study = SyntheticStudy.new()
        ds = study.dataset("CT", 1)
        first = to_part10(ds)
        ds.PixelData = bytes(reversed(range(128)))
        corrected = to_part10(ds)
        async with running.client() as client:
            assert (await stow(client, [first])).status_code == 200
            response = await stow(client, [corrected])

        assert response.status_code == 200
        original, replacing = await running.instances_of(study, 2)
        assert replacing.message.replaces.sha256 == original.message.instance.blob.sha256
        assert replacing.message.instance.blob.sha256 == hashlib.sha256(corrected).hexdigest()
        assert running.stack.receipts("stow", "conflict") >= 1
        [recorded] = await running.stack.assembly.instances(study.study_uid)
        assert recorded.blob.sha256 == hashlib.sha256(corrected).hexdigest()
