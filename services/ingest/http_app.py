"""The ingest HTTP server: STOW-RS, status lookups and FHIR in one FastAPI app, behind auth.

:func:`create_http_app` combines the DICOMweb routes (:mod:`radstream.ingest.stow`) and the
FHIR routes (:mod:`radstream.ingest.fhir`), every one behind the configured
:class:`~radstream.ingest.http_auth.HttpAuthenticator`. Refusals are rendered for the caller:
an OperationOutcome under ``/fhir``, a small JSON object elsewhere, and never with a value from
the request (FastAPI's own validation errors would quote the input; they are replaced).

:class:`HttpServer` runs the app with uvicorn as a task on the service's event loop, like
:class:`radstream.common.health.HealthServer`, with HTTPS when certificates are configured and
client certificates required in ``mtls`` mode. uvicorn does not pass the peer certificate to
the app, so the HTTP protocol is subclassed to put it into the ASGI scope's ``tls`` extension
(``client_cert_name``, ``client_cert_chain``), where authentication reads it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from types import TracebackType
from typing import Any, Final, cast

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from radstream.common.asgi_server import EmbeddedAsgiServer
from radstream.common.errors import MisconfiguredError
from radstream.ingest.audit import ReceiptAudit
from radstream.ingest.fhir import FHIR_JSON, FhirEndpoints, fhir_router, operation_outcome
from radstream.ingest.http_auth import (
    AuthenticationRefused,
    HttpAuthenticator,
    HttpSettings,
    rfc4514_name,
)
from radstream.ingest.rejections import Rejections
from radstream.ingest.stow import StowEndpoints, stow_router

__all__ = ["HttpServer", "create_http_app"]

log = logging.getLogger(__name__)

_SPARE_CONNECTIONS: Final = 64


def create_http_app(
    settings: HttpSettings,
    *,
    rejections: Rejections,
    stow: StowEndpoints | None = None,
    fhir: FhirEndpoints | None = None,
    audit: ReceiptAudit | None = None,
) -> FastAPI:
    """The ingest HTTP app: the routes of the parts given, authenticated and scoped per settings.

    ``audit`` receives a record for each request refused for a missing scope.
    """
    authenticate = HttpAuthenticator.from_settings(settings, rejections, audit)
    # No interactive docs or schema: this app faces hospital systems, not browsers.
    app = FastAPI(title="radstream ingest", docs_url=None, redoc_url=None, openapi_url=None)
    if stow is not None:
        app.include_router(stow_router(stow, authenticate))
    if fhir is not None:
        app.include_router(fhir_router(fhir, authenticate))
    app.add_exception_handler(AuthenticationRefused, _render_refusal)
    app.add_exception_handler(RequestValidationError, _render_invalid_request)
    app.add_middleware(
        _ConcurrencyLimit, limit=settings.max_concurrent_requests, rejections=rejections
    )
    return app


class _ConcurrencyLimit:
    """At most ``limit`` requests at once; one more is answered 503 with Retry-After, counted.

    Before authentication, so a flood of unauthenticated requests is bounded too. uvicorn's
    own ``limit_concurrency`` (connections plus tasks) stays above it, as a backstop.
    """

    def __init__(self, app: Any, *, limit: int, rejections: Rejections) -> None:
        self._app = app
        self._limit = limit
        self._rejections = rejections
        self._in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self._in_flight >= self._limit:
            self._rejections.count("http", "too_many_requests", status=503)
            await _busy(str(scope.get("path", "")))(scope, receive, send)
            return
        self._in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._in_flight -= 1


def _busy(path: str) -> Response:
    headers = {"Retry-After": "1"}
    if path.startswith("/fhir"):
        outcome = operation_outcome("throttled", "too many requests at once; send again")
        return JSONResponse(outcome, status_code=503, media_type=FHIR_JSON, headers=headers)
    return JSONResponse({"error": "too_many_requests"}, status_code=503, headers=headers)


async def _render_refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthenticationRefused)
    if request.url.path.startswith("/fhir"):
        code = "login" if exc.status == 401 else "forbidden"
        diagnostics = (
            "authentication required"
            if exc.status == 401
            else f"this client is not granted the {exc.scope} scope"
            if exc.scope
            else "this client is not allowed"
        )
        return JSONResponse(
            operation_outcome(code, diagnostics),
            status_code=exc.status,
            media_type=FHIR_JSON,
            headers=exc.headers,
        )
    body = {"error": exc.reason, **({"scope": exc.scope} if exc.scope else {})}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _render_invalid_request(request: Request, exc: Exception) -> Response:
    """A 400 naming the invalid parameters by location, without FastAPI's quoted input."""
    assert isinstance(exc, RequestValidationError)
    where = sorted({".".join(str(step) for step in error.get("loc", ())) for error in exc.errors()})
    if request.url.path.startswith("/fhir"):
        outcome = operation_outcome("invalid", "invalid request", expression=tuple(where))
        return JSONResponse(outcome, status_code=400, media_type=FHIR_JSON)
    return JSONResponse({"error": "invalid_request", "parameters": where}, status_code=400)


class HttpServer:
    """Serve the ingest app with uvicorn on the running event loop.

    Port 0 binds a free port; :attr:`port` tells which after :meth:`start`.
    """

    def __init__(self, settings: HttpSettings, app: Any) -> None:
        self._settings = settings
        self._app = app
        self._port = settings.port
        self._runner: EmbeddedAsgiServer | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the configured one before)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``https://127.0.0.1:8104``."""
        host = self._settings.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self._settings.tls else 'http'}://{host}:{self._port}"

    async def start(self) -> None:
        """Bind and serve; raise MisconfiguredError when the port is taken or TLS files fail."""
        if self._runner is not None:
            raise RuntimeError("HttpServer.start() called twice; call stop() first")
        self._warn_about_weak_settings()
        runner = EmbeddedAsgiServer(
            self._config(),
            host=self._settings.host,
            port=self._port,
            what="the ingest HTTP server",
            settings_hint="set RADSTREAM_INGEST_HTTP_HOST and RADSTREAM_INGEST_HTTP_PORT",
        )
        await runner.start()
        self._runner, self._port = runner, runner.port
        log.info("ingest HTTP listening on port %d", self._port, extra={"port": self._port})

    async def stop(self) -> None:
        """Stop serving and release the port; stopping a stopped server does nothing."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.stop()

    async def check(self) -> None:
        """Readiness: raise unless the server is serving."""
        if self._runner is None or not self._runner.running:
            raise RuntimeError("the ingest HTTP server is not running")

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _config(self) -> uvicorn.Config:
        settings = self._settings
        tls: dict[str, Any] = {}
        if settings.tls:
            tls = {
                "ssl_certfile": str(settings.tls_certfile),
                "ssl_keyfile": str(settings.tls_keyfile),
                "ssl_version": ssl.PROTOCOL_TLS_SERVER,
            }
            if settings.auth == "mtls":
                tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED
                tls["ssl_ca_certs"] = str(settings.tls_client_cafile)
        config = uvicorn.Config(
            self._app,
            http=_ClientCertProtocol,
            log_config=None,  # keep the service's logging (and its PHI filter) in charge
            access_log=False,  # request lines carry query strings (AccessionNumber=...)
            lifespan="off",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=2,
            # A backstop over the app's own request limit: idle keep-alive connections count.
            limit_concurrency=settings.max_concurrent_requests + _SPARE_CONNECTIONS,
            **tls,
        )
        try:
            config.load()
            if config.ssl is not None:
                config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        except (OSError, ssl.SSLError) as exc:
            raise MisconfiguredError(
                "the ingest HTTP server cannot load its TLS files; check "
                "RADSTREAM_INGEST_HTTP_TLS_CERTFILE, _TLS_KEYFILE and _TLS_CLIENT_CAFILE "
                f"({type(exc).__name__})"
            ) from exc
        return config

    def _warn_about_weak_settings(self) -> None:
        settings = self._settings
        if settings.auth == "open":
            log.warning(
                "!!! ingest HTTP endpoints are OPEN: no authentication "
                "(RADSTREAM_INGEST_HTTP_AUTH=open). Anyone who reaches port %d can send "
                "studies and reports. Use this only for a local demo. !!!",
                self._port,
                extra={"port": self._port},
            )
        elif settings.auth == "bearer" and not settings.token_sha256:
            log.warning(
                "ingest HTTP has no bearer tokens (RADSTREAM_INGEST_HTTP_TOKEN_SHA256): every "
                "request will be refused with 401",
                extra={"port": self._port},
            )
        elif unscoped := sorted(set(settings.token_sha256) - set(settings.scopes)):
            log.warning(
                "ingest HTTP subjects without scopes (RADSTREAM_INGEST_HTTP_SCOPES) are "
                "refused every endpoint with 403: %s",
                ", ".join(unscoped),
                extra={"port": self._port},
            )
        if (
            settings.auth == "bearer"
            and not settings.tls
            and settings.host not in ("127.0.0.1", "::1", "localhost")
        ):
            log.warning(
                "ingest HTTP serves bearer tokens over plain HTTP on a non-loopback address; "
                "set RADSTREAM_INGEST_HTTP_TLS_CERTFILE/_KEYFILE or terminate TLS in front",
                extra={"port": self._port},
            )


class _ClientCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus the peer certificate in the ASGI ``tls`` extension."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        extension = _tls_extension(ssl_object)
        inner = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                scope["extensions"] = {**scope.get("extensions", {}), "tls": extension}
            await inner(scope, receive, send)

        self.app = with_tls


def _tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The ASGI TLS extension of a connection (client certificate fields)."""
    peer = ssl_object.getpeercert()
    der = ssl_object.getpeercert(binary_form=True)
    # getpeercert() types its values as a union; "subject" is always the RDN tuple.
    subject = cast(tuple[tuple[tuple[str, str], ...], ...], peer.get("subject", ()) if peer else ())
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": rfc4514_name(subject) if subject else None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }
