"""Per-sender scopes on the real HTTP server: a credential may do only what it was granted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from radstream.common.embedded_broker import EmbeddedBroker
from radstream.common.settings import KafkaSettings
from radstream.ingest.errors import IngestConfigurationError
from radstream.ingest.fhir import FhirEndpoints
from radstream.ingest.http_app import HttpServer, create_http_app
from radstream.ingest.http_auth import HttpSettings, token_sha256
from tests.integration.ingest.http_stack import ReceivingStack, receiving_stack
from tests.integration.ingest.test_fhir import report
from tests.integration.ingest.test_stow import endpoints, stow
from tests.unit.ingest.instances import SyntheticStudy

pytestmark = pytest.mark.integration

TOKENS = {
    "pacs": "synthetic-scope-pacs-token-1a2b3c",
    "ehr": "synthetic-scope-ehr-token-4d5e6f",
    "monitor": "synthetic-scope-monitor-token-7a8b",
    "ungranted": "synthetic-scope-ungranted-token-9c0d",
}
SCOPES = {"pacs": ["stow", "complete"], "ehr": ["fhir"], "monitor": ["query"]}


@dataclass
class Running:
    stack: ReceivingStack
    server: HttpServer

    def client(self, subject: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {TOKENS[subject]}"}
        return httpx.AsyncClient(base_url=self.server.url, headers=headers, timeout=30)

    def audited(self, subject: str, scope: str) -> bool:
        lines = self.stack.audit_path.read_text().splitlines()
        return any(
            r["sender"] == subject and r["outcome"] == "scope_missing" and r["kind"] == scope
            for r in map(json.loads, lines)
        )


@pytest.fixture(scope="module")
async def running(
    kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    root = tmp_path_factory.mktemp("ingest-scopes")
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    async with receiving_stack(root, kafka, label="scopes") as stack:
        settings = HttpSettings(
            port=0,
            token_sha256={subject: token_sha256(token) for subject, token in TOKENS.items()},
            scopes=SCOPES,
        )
        fhir = FhirEndpoints(sink=stack.sink, rejections=stack.rejections, max_body_bytes=65536)
        app = create_http_app(
            settings,
            rejections=stack.rejections,
            stow=endpoints(stack),
            fhir=fhir,
            audit=stack.audit,
        )
        async with HttpServer(settings, app) as server:
            yield Running(stack=stack, server=server)


class TestScopes:
    async def test_a_sender_granted_stow_may_store(self, running: Running) -> None:
        async with running.client("pacs") as client:
            response = await stow(client, [SyntheticStudy.new().instance("CT", 1)])
        assert response.status_code == 200

    async def test_a_sender_granted_only_fhir_may_not_store_and_is_told_why(
        self, running: Running
    ) -> None:
        async with running.client("ehr") as client:
            response = await stow(client, [SyntheticStudy.new().instance("CT", 1)])
        assert response.status_code == 403
        assert response.json() == {"error": "scope_missing", "scope": "stow"}
        assert running.stack.refused("http", "scope_missing") >= 1
        assert running.audited("ehr", "stow")

    async def test_listing_studies_needs_the_query_scope(self, running: Running) -> None:
        async with running.client("pacs") as client:
            refused = await client.get("/dicomweb/studies")
        async with running.client("monitor") as client:
            allowed = await client.get("/dicomweb/studies")
        assert refused.status_code == 403
        assert refused.json()["scope"] == "query"
        assert allowed.status_code == 200

    async def test_completion_needs_the_complete_scope(self, running: Running) -> None:
        async with running.client("monitor") as client:
            response = await client.post("/ingest/studies/2.25.1/complete")
        assert response.status_code == 403
        assert response.json()["scope"] == "complete"

    async def test_fhir_without_the_fhir_scope_is_a_forbidden_operation_outcome(
        self, running: Running
    ) -> None:
        async with running.client("pacs") as client:
            response = await client.post(
                "/fhir/DiagnosticReport",
                content=json.dumps(report("RPT-SCOPE-1")).encode(),
                headers={"Content-Type": "application/fhir+json"},
            )
        assert response.status_code == 403
        issue = response.json()["issue"][0]
        assert issue["code"] == "forbidden"
        assert "fhir" in issue["diagnostics"]
        assert running.audited("pacs", "fhir")

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/dicomweb/studies"),
            ("GET", "/dicomweb/studies"),
            ("POST", "/ingest/studies/2.25.1/complete"),
            ("POST", "/fhir/Observation"),
        ],
    )
    async def test_a_sender_without_scopes_may_do_nothing(
        self, running: Running, method: str, path: str
    ) -> None:
        async with running.client("ungranted") as client:
            response = await client.request(method, path, content=b"{}")
        assert response.status_code == 403


class TestScopeSettings:
    def test_an_unknown_scope_is_refused_at_startup(self) -> None:
        with pytest.raises(IngestConfigurationError, match="stow, fhir, query, complete"):
            HttpSettings(scopes={"pacs": ["store"]})

    def test_scopes_may_be_a_comma_list(self) -> None:
        assert HttpSettings(scopes={"pacs": "stow, query"}).scopes == {
            "pacs": frozenset({"stow", "query"})
        }

    def test_without_scopes_every_subject_is_granted_nothing(self) -> None:
        assert HttpSettings(token_sha256={"ris": token_sha256("t")}).scopes == {}
