"""How a radstream service runs: registry, FastStream app lifecycle, probes.

Every consuming service's ``app.py`` exposes ``create_app() -> FastStream`` built with
:func:`service_app`, so it runs the same way under ``radstream run NAME``, ``radstream up`` and
``faststream run radstream.<svc>.app:create_app --factory``; a service that consumes no topic
(ocr, a gRPC server) returns an app of its own with an async ``run()``
(:class:`~radstream.common.service_spec.RunnableApp`). Each service declares itself (ports,
local settings, what ``radstream up`` prints) in its own ``radstream.<svc>.spec``;
:data:`SERVICES` collects them, and ``radstream up`` and ``make demo`` start all of them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable

from faststream import FastStream

from radstream.common.bus import Bus
from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.health import HealthServer
from radstream.common.service_spec import ServiceSpec, ShownSetting

__all__ = [
    "SERVICES",
    "SERVICE_PACKAGES",
    "ServiceSpec",
    "ShownSetting",
    "collect_services",
    "service_app",
    "service_named",
]


# The packages of the services, each declaring its ServiceSpec as ``SERVICE`` in
# ``radstream.<package>.spec``. Services add their package here as they land.
SERVICE_PACKAGES: tuple[str, ...] = ("ingest", "deid", "ocr")


def collect_services(packages: tuple[str, ...] = SERVICE_PACKAGES) -> tuple[ServiceSpec, ...]:
    """Each package's own ``SERVICE`` spec, in the order of ``packages``."""
    specs = []
    for package in packages:
        spec = importlib.import_module(f"radstream.{package}.spec").SERVICE
        if not isinstance(spec, ServiceSpec) or spec.name != package:
            raise MisconfiguredError(
                f"radstream.{package}.spec must declare SERVICE, a ServiceSpec named {package!r}"
            )
        specs.append(spec)
    return tuple(specs)


SERVICES: tuple[ServiceSpec, ...] = collect_services()


def service_named(name: str) -> ServiceSpec:
    """Return the registered service called ``name``."""
    for spec in SERVICES:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in SERVICES) or "none yet"
    raise MisconfiguredError(f"no service named {name!r}; registered services: {known}")


def _broker_answers(bus: Bus) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        if not await bus.ping(within_s=2.0):
            raise TransientError("Kafka does not answer")
        if not bus.consuming():
            raise TransientError("a consume loop has stopped")

    return check


def service_app(bus: Bus, health: HealthServer) -> FastStream:
    """Wrap ``bus`` in a FastStream app that also serves probes and closes what it opened.

    Readiness reports the idempotency store, the Kafka cluster and the consume loops.
    FastStream's lifecycle handles SIGINT/SIGTERM; the bus then stops gracefully (records in
    flight finish and their offsets are committed) before its resources close.
    """
    # FastStream's own logger has a handler of its own and does not propagate: its lifecycle
    # lines would skip the PHI filter and the JSON format. This one goes through the root's.
    app = FastStream(bus.broker, logger=logging.getLogger("radstream.faststream.app"))
    health.add_check("idempotency-store", bus.config.guard.check)
    health.add_check("kafka", _broker_answers(bus))
    health.add_liveness("consume-loops", bus.alive)

    @app.on_startup
    async def open_resources() -> None:
        await bus.open()

    @app.after_startup
    async def consume_and_serve_probes() -> None:
        await bus.start_consuming()
        await health.start()

    @app.on_shutdown
    async def stop_probes_and_consuming() -> None:
        await health.stop()
        await bus.stop_consuming()

    @app.after_shutdown
    async def close_resources() -> None:
        await bus.close()

    return app
