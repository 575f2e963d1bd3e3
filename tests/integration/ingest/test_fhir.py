"""The FHIR R4 endpoint over real HTTP: resources in, events on the real broker."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from radstream.common.embedded_broker import EmbeddedBroker
from radstream.common.settings import KafkaSettings
from radstream.contracts.v1 import reports_pb2
from radstream.ingest.fhir import FhirEndpoints
from radstream.ingest.http_app import HttpServer, create_http_app
from radstream.ingest.http_auth import HttpSettings, token_sha256
from tests.integration.ingest.http_stack import ReceivingStack, receiving_stack

pytestmark = pytest.mark.integration

TOKEN = "synthetic-ehr-token-7a1e2b3c4d5e"
FHIR_JSON = "application/fhir+json"
PATIENT_ID = "SYNTH-MRN-70311"
REPORT_TEXT = "CT abdomen: hypodense lesion in the pancreatic head, 2 cm."


@dataclass
class Running:
    stack: ReceivingStack
    server: HttpServer

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.server.url, headers=headers, timeout=30)

    async def reports(self, report_id: str, count: int = 1) -> list:
        return await self.stack.events.wait_for(
            self.stack.topics.report_received, count, lambda m: m.report_id == report_id
        )

    async def observations(self, patient_id: str, count: int) -> list:
        return await self.stack.events.wait_for(
            self.stack.topics.clinical_observation, count, lambda m: m.patient_id == patient_id
        )


@pytest.fixture(scope="module")
async def running(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    root = tmp_path_factory.mktemp("ingest-fhir")
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    async with receiving_stack(root, kafka, label="fhir") as stack:
        settings = HttpSettings(
            port=0, token_sha256={"ehr": token_sha256(TOKEN)}, scopes={"ehr": ["fhir"]}
        )
        fhir = FhirEndpoints(sink=stack.sink, rejections=stack.rejections, max_body_bytes=65536)
        app = create_http_app(settings, rejections=stack.rejections, fhir=fhir)
        async with HttpServer(settings, app) as server:
            yield Running(stack=stack, server=server)


def report(report_number: str, text: str = REPORT_TEXT) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "urn:synthetic:ris", "value": report_number}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "presentedForm": [
            {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}
        ],
    }


def weight(patient_id: str, kilograms: float = 61.5) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"wt-{uuid.uuid4().hex[:8]}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2024-01-02T08:00:00Z",
        "valueQuantity": {"value": kilograms, "code": "kg"},
    }


async def post(client: httpx.AsyncClient, path: str, resource: Any, **headers: str):
    body = resource if isinstance(resource, bytes) else json.dumps(resource).encode()
    return await client.post(path, content=body, headers={"Content-Type": FHIR_JSON, **headers})


def new_number() -> str:
    return f"RPT-{uuid.uuid4().hex[:10]}"


class TestDiagnosticReport:
    async def test_a_report_is_created_and_report_received_published(
        self, running: Running
    ) -> None:
        number = new_number()
        async with running.client() as client:
            response = await post(client, "/fhir/DiagnosticReport", report(number))
        assert response.status_code == 201
        assert response.headers["content-type"] == FHIR_JSON
        assert "/fhir/DiagnosticReport/" in response.headers["location"]
        assert number not in response.headers["location"]
        (event,) = await running.reports(f"fhir/urn:synthetic:ris|{number}")
        assert event.message.text == REPORT_TEXT
        assert event.message.patient_id == PATIENT_ID
        assert event.message.source == reports_pb2.ReportReceived.SOURCE_FHIR

    async def test_a_long_report_travels_as_a_claim_check(self, running: Running) -> None:
        number = new_number()
        long_text = REPORT_TEXT * 200  # over the stack's 4 KiB inline limit
        async with running.client() as client:
            response = await post(client, "/fhir/DiagnosticReport", report(number, long_text))
        assert response.status_code == 201
        (event,) = await running.reports(f"fhir/urn:synthetic:ris|{number}")
        assert event.message.WhichOneof("body") == "text_ref"
        assert event.message.text_ref.size == len(long_text.encode())

    async def test_return_minimal_gets_an_empty_body(self, running: Running) -> None:
        async with running.client() as client:
            response = await post(
                client, "/fhir/DiagnosticReport", report(new_number()), Prefer="return=minimal"
            )
        assert (response.status_code, response.content) == (201, b"")

    async def test_a_report_without_text_is_422_and_publishes_nothing(
        self, running: Running
    ) -> None:
        number = new_number()
        resource = report(number)
        del resource["presentedForm"]
        async with running.client() as client:
            response = await post(client, "/fhir/DiagnosticReport", resource)
            fence = new_number()
            await post(client, "/fhir/DiagnosticReport", report(fence))
        assert response.status_code == 422
        assert response.json()["issue"][0]["code"] == "required"
        await running.reports(f"fhir/urn:synthetic:ris|{fence}")
        assert not running.stack.events.on(
            running.stack.topics.report_received,
            lambda m: m.report_id.endswith(number),
        )


class TestObservation:
    async def test_an_observation_publishes_clinical_observation(self, running: Running) -> None:
        patient = f"SYNTH-{uuid.uuid4().hex[:8]}"
        async with running.client() as client:
            response = await post(client, "/fhir/Observation", weight(patient))
        assert response.status_code == 201
        (event,) = await running.observations(patient, 1)
        assert (event.message.code.code, event.message.quantity.value) == ("29463-7", 61.5)

    async def test_a_transaction_bundle_publishes_every_entry(self, running: Running) -> None:
        patient, number = f"SYNTH-{uuid.uuid4().hex[:8]}", new_number()
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": report(number),
                    "request": {"method": "POST", "url": "DiagnosticReport"},
                },
                {"resource": weight(patient), "request": {"method": "POST", "url": "Observation"}},
            ],
        }
        async with running.client() as client:
            response = await post(client, "/fhir", bundle)
        assert response.status_code == 200
        body = response.json()
        assert body["type"] == "transaction-response"
        assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * 2
        await running.reports(f"fhir/urn:synthetic:ris|{number}")
        await running.observations(patient, 1)


class TestRefusals:
    async def test_invalid_json_is_400_operation_outcome_without_echo(
        self, running: Running
    ) -> None:
        async with running.client() as client:
            response = await post(
                client, "/fhir/Observation", f'{{"resourceType": "{PATIENT_ID}'.encode()
            )
        assert response.status_code == 400
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "structure"
        assert PATIENT_ID not in response.text
        assert running.stack.receipts("fhir", "invalid_json") >= 1

    async def test_an_invalid_resource_is_400_naming_the_element(self, running: Running) -> None:
        resource = weight(PATIENT_ID)
        resource["subject"] = {"reference": 42}
        async with running.client() as client:
            response = await post(client, "/fhir/Observation", resource)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["Observation.subject.reference"]

    async def test_xml_is_415(self, running: Running) -> None:
        async with running.client() as client:
            response = await client.post(
                "/fhir/Observation",
                content=b"<Observation/>",
                headers={"Content-Type": "application/fhir+xml"},
            )
        assert response.status_code == 415
        assert response.json()["resourceType"] == "OperationOutcome"

    async def test_unauthenticated_is_401_operation_outcome(self, running: Running) -> None:
        async with running.client(token=None) as client:
            response = await post(client, "/fhir/DiagnosticReport", report(new_number()))
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["issue"][0]["code"] == "login"


def audited(running: Running, outcome: str) -> bool:
    lines = running.stack.audit_path.read_text().splitlines()
    return any(
        record["channel"] == "fhir" and record["outcome"] == outcome
        for record in map(json.loads, lines)
    )


class TestUnreadableResources:
    """Whatever a resource does to the parser, the sender gets a 4xx OperationOutcome."""

    async def test_deeply_nested_json_is_400_operation_outcome(self, running: Running) -> None:
        body = b'{"resourceType": "DiagnosticReport", "contained": ' + b"[" * 30_000
        body += b"]" * 30_000 + b"}"
        async with running.client() as client:
            response = await post(client, "/fhir/DiagnosticReport", body)
        assert response.status_code == 400
        assert response.json()["resourceType"] == "OperationOutcome"
        assert running.stack.receipts("fhir", "json_too_deep") >= 1
        assert audited(running, "json_too_deep")

    @pytest.mark.parametrize("charset", ["undefined", "no-such-charset", "base64"])
    async def test_an_attachment_in_a_charset_that_is_no_text_encoding_is_422(
        self, running: Running, charset: str
    ) -> None:
        resource = report(new_number())
        resource["presentedForm"][0]["contentType"] = f"text/plain; charset={charset}"
        async with running.client() as client:
            response = await post(client, "/fhir/DiagnosticReport", resource)
        assert response.status_code == 422
        assert response.json()["issue"][0]["expression"] == [
            "DiagnosticReport.presentedForm[0].data"
        ]
        assert running.stack.receipts("fhir", "invalid_attachment") >= 1

    async def test_an_attachment_that_decodes_to_unpaired_surrogates_is_422_not_a_retry(
        self, running: Running
    ) -> None:
        resource = report(new_number())
        resource["presentedForm"][0] = {
            "contentType": "text/plain; charset=raw_unicode_escape",
            "data": base64.b64encode(b"lesion \\ud800").decode(),
        }
        async with running.client() as client:
            response = await post(client, "/fhir/DiagnosticReport", resource)
        assert response.status_code == 422
        assert running.stack.receipts("fhir", "publish_failed") == 0

    async def test_a_json_string_with_an_unpaired_surrogate_is_400_not_a_retry(
        self, running: Running
    ) -> None:
        resource = report(new_number())
        del resource["presentedForm"]
        resource["conclusion"] = "lesion \ud800"
        body = json.dumps(resource).encode()  # ensure_ascii writes the escape \ud800
        async with running.client() as client:
            response = await post(client, "/fhir/DiagnosticReport", body)
        assert response.status_code == 400
        assert response.json()["resourceType"] == "OperationOutcome"
        assert running.stack.receipts("fhir", "publish_failed") == 0

    async def test_any_failure_while_mapping_is_400_audited_and_counted(
        self, running: Running, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def unforeseen(resource: object) -> object:
            raise KeyError("a case nobody foresaw")

        monkeypatch.setattr("radstream.ingest.fhir.report_from_fhir", unforeseen)
        async with running.client() as client:
            response = await post(client, "/fhir/DiagnosticReport", report(new_number()))
        assert response.status_code == 400
        assert response.json()["resourceType"] == "OperationOutcome"
        assert "nobody" not in response.text
        assert running.stack.receipts("fhir", "unreadable_resource") >= 1
        assert audited(running, "unreadable_resource")

    async def test_one_unreadable_entry_of_a_batch_fails_alone(
        self, running: Running, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def unforeseen(resource: object) -> object:
            raise KeyError("a case nobody foresaw")

        monkeypatch.setattr("radstream.ingest.fhir.report_from_fhir", unforeseen)
        patient = f"SYNTH-{uuid.uuid4().hex[:8]}"
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"resource": report(new_number()), "request": {"method": "POST", "url": "x"}},
                {"resource": weight(patient), "request": {"method": "POST", "url": "x"}},
            ],
        }
        async with running.client() as client:
            response = await post(client, "/fhir", bundle)
        assert response.status_code == 200
        statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
        assert statuses == ["400", "201 Created"]
        await running.observations(patient, 1)
