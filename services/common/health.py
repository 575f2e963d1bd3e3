"""Kubernetes probes and the Prometheus scrape endpoint, served from inside the service process.

* ``/healthz`` -- liveness: 200 when the event loop gets to answer and every liveness check
  (``add_liveness``: cheap, synchronous, e.g. "every consume loop is alive or restarting") says
  the process can still do its work; 503 naming the failing ones otherwise, so Kubernetes
  restarts a process whose consume loop died for good instead of leaving it idle.
* ``/readyz`` -- readiness: runs every registered check, each under a timeout; 200 when all
  pass, 503 naming each failing check, its error type and what
  :func:`~radstream.common.logs.describe_error` may say of it (no value).
* ``/metrics`` -- the Prometheus (or OpenMetrics, when asked) exposition of a registry.

:class:`HealthApp` is a plain ASGI callable; :class:`HealthServer` runs it with uvicorn as a task
on the service's own event loop, so liveness really does measure that loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import MappingProxyType, TracebackType
from typing import Any, Final

import uvicorn
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from radstream.common.asgi_server import EmbeddedAsgiServer
from radstream.common.logs import describe_error
from radstream.common.settings import ObservabilitySettings

__all__ = ["HealthApp", "HealthServer", "LivenessCheck", "ReadinessCheck"]

ReadinessCheck = Callable[[], Awaitable[None]]
"""A readiness check: returns when the dependency is usable, raises saying why it is not."""

LivenessCheck = Callable[[], bool]
"""A liveness check: False when only a restart of the process can help (never blocks)."""

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]

_JSON: Final = "application/json"
_NO_CHECKS: Final[Mapping[str, ReadinessCheck]] = MappingProxyType({})

logger = logging.getLogger(__name__)


class HealthApp:
    """ASGI app answering ``/healthz``, ``/readyz`` and ``/metrics``."""

    def __init__(
        self,
        checks: Mapping[str, ReadinessCheck] = _NO_CHECKS,
        registry: CollectorRegistry = REGISTRY,
        *,
        check_timeout_s: float = 2.0,
    ) -> None:
        self._checks = dict(checks)
        self._registry = registry
        self._check_timeout_s = check_timeout_s
        self._failing: frozenset[str] = frozenset()
        self._liveness: dict[str, LivenessCheck] = {}

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Register (or replace) a readiness check."""
        self._checks[name] = check

    def add_liveness(self, name: str, check: LivenessCheck) -> None:
        """Register (or replace) a liveness check."""
        self._liveness[name] = check

    def liveness(self) -> tuple[bool, dict[str, str]]:
        """Whether every liveness check passes, and each one's outcome."""
        results = {name: "ok" if check() else "failed" for name, check in self._liveness.items()}
        return all(outcome == "ok" for outcome in results.values()), results

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == "lifespan":
            await _serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here; uvicorn runs with ws="none"
        method, path = scope["method"], scope["path"]
        if path not in ("/healthz", "/readyz", "/metrics"):
            await _respond(send, 404, {"error": "not found"}, method=method)
        elif method not in ("GET", "HEAD"):
            await _respond(send, 405, {"error": "method not allowed"}, method=method)
        elif path == "/healthz":
            alive, outcomes = self.liveness()
            body: dict[str, object] = {"status": "alive" if alive else "dead", "checks": outcomes}
            await _respond(send, 200 if alive else 503, body, method=method)
        elif path == "/readyz":
            ready, checks = await self.readiness()
            body = {"status": "ready" if ready else "not ready", "checks": checks}
            await _respond(send, 200 if ready else 503, body, method=method)
        else:
            await self._serve_metrics(scope, send)

    async def readiness(self) -> tuple[bool, dict[str, object]]:
        """Run every check concurrently; return whether all passed and each one's outcome."""
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._run_check(self._checks[name]) for name in names))
        results = dict(zip(names, outcomes, strict=True))
        failing = {name for name, outcome in results.items() if outcome != "ok"}
        self._log_changes(failing, results)
        return not failing, results

    async def _run_check(self, check: ReadinessCheck) -> object:
        try:
            async with asyncio.timeout(self._check_timeout_s):
                await check()
        except TimeoutError:
            return {
                "error_type": "TimeoutError",
                "message": f"no answer within {self._check_timeout_s} s",
            }
        except Exception as exc:  # a failing check is an outcome to report, not a crash
            # A library's message may quote a value: only radstream's own errors keep theirs.
            return {"error_type": type(exc).__name__, "message": describe_error(exc)}
        return "ok"

    def _log_changes(self, failing: set[str], results: Mapping[str, object]) -> None:
        """Log checks that start or stop failing; probes arrive every few seconds."""
        for name in sorted(failing - self._failing):
            outcome = results[name]
            error_type = outcome.get("error_type") if isinstance(outcome, dict) else None
            logger.warning(
                "readiness check %s is failing",
                name,
                extra={"check": name, "error_type": error_type},
            )
        for name in sorted(self._failing - failing):
            logger.info("readiness check %s passes again", name, extra={"check": name})
        self._failing = frozenset(failing)

    async def _serve_metrics(self, scope: _Scope, send: _Send) -> None:
        accept = _header(scope, b"accept")
        encode, content_type = choose_encoder(accept)
        await _send_response(
            send, 200, encode(self._registry), content_type, head=scope["method"] == "HEAD"
        )


class HealthServer:
    """Serve a :class:`HealthApp` with uvicorn as a task on the running event loop.

    Port 0 binds a free port; :attr:`port` tells which after :meth:`start`. Signal handling
    stays with the host process, which calls :meth:`stop` (or leaves the ``async with``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        checks: Mapping[str, ReadinessCheck] = _NO_CHECKS,
        registry: CollectorRegistry = REGISTRY,
        *,
        check_timeout_s: float = 2.0,
    ) -> None:
        self._host = host
        self._port = port
        self.app = HealthApp(checks, registry, check_timeout_s=check_timeout_s)
        self._runner: EmbeddedAsgiServer | None = None

    @classmethod
    def from_settings(
        cls,
        settings: ObservabilitySettings,
        checks: Mapping[str, ReadinessCheck] = _NO_CHECKS,
        registry: CollectorRegistry = REGISTRY,
    ) -> HealthServer:
        """Build the server on ``RADSTREAM_OBS_HEALTH_HOST``/``_PORT``."""
        return cls(settings.health_host, settings.health_port, checks, registry)

    @property
    def port(self) -> int:
        """The bound port once started (the configured one before)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:8081``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Register (or replace) a readiness check."""
        self.app.add_check(name, check)

    def add_liveness(self, name: str, check: LivenessCheck) -> None:
        """Register (or replace) a liveness check."""
        self.app.add_liveness(name, check)

    async def start(self) -> None:
        """Bind the port and start serving; raise MisconfiguredError when the port is taken."""
        if self._runner is not None:
            raise RuntimeError("HealthServer.start() called twice; call stop() first")
        config = uvicorn.Config(
            self.app,
            log_config=None,  # keep the service's logging (and its PHI filter) in charge
            access_log=False,  # probes every few seconds would drown the log
            lifespan="off",
            http="h11",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        runner = EmbeddedAsgiServer(
            config,
            host=self._host,
            port=self._port,
            what="the health endpoint",
            settings_hint="set RADSTREAM_OBS_HEALTH_HOST and RADSTREAM_OBS_HEALTH_PORT to a free "
            "local address",
        )
        await runner.start()
        self._runner, self._port = runner, runner.port
        logger.info("health endpoint listening on port %d", self._port, extra={"port": self._port})

    async def stop(self) -> None:
        """Stop serving and release the port; stopping a stopped server does nothing."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.stop()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def _serve_lifespan(receive: _Receive, send: _Send) -> None:
    """Acknowledge lifespan events, for hosts that run the app with lifespan on."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _header(scope: _Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


async def _respond(send: _Send, status: int, body: Mapping[str, object], *, method: str) -> None:
    payload = json.dumps(body).encode()
    await _send_response(send, status, payload, _JSON, head=method == "HEAD")


async def _send_response(
    send: _Send, status: int, body: bytes, content_type: str, *, head: bool
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})
