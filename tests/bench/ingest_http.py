"""radstream's STOW-RS endpoint for the ingest benchmark: the production HTTP app, bearer auth."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry

from radstream.ingest.app import IngestCore
from radstream.ingest.config import IngestSettings
from radstream.ingest.http_app import HttpServer, create_http_app
from radstream.ingest.http_auth import HttpSettings
from radstream.ingest.rejections import rejections
from radstream.ingest.stow import StowEndpoints

BENCH_TOKEN = secrets.token_urlsafe(32)


@contextlib.asynccontextmanager
async def serve_stow(
    settings: IngestSettings, core: IngestCore, registry: CollectorRegistry
) -> AsyncIterator[str]:
    """Serve ``POST /dicomweb/studies`` on a free loopback port; yield its URL.

    Authentication is the production default (bearer); the sender uses :data:`BENCH_TOKEN`.
    """
    http = HttpSettings(
        host="127.0.0.1",
        port=0,
        auth="bearer",
        token_sha256={"bench": hashlib.sha256(BENCH_TOKEN.encode()).hexdigest()},
        scopes={"bench": ["stow"]},
    )
    refused = rejections(registry)
    app = create_http_app(
        http,
        rejections=refused,
        stow=StowEndpoints(
            receiver=core.receiver,
            assembly=core.assembly,
            complete_study=core.assembler.complete,
            audit=core.audit,
            rejections=refused,
            max_request_bytes=http.max_request_bytes,
            max_part_bytes=settings.reader_limits().max_file_bytes,
        ),
    )
    async with HttpServer(http, app) as server:
        yield f"{server.url}/dicomweb/studies"
