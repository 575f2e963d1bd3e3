"""How a radstream service runs: registry, FastStream app lifecycle, probes.

Every service's ``app.py`` exposes ``create_app() -> FastStream`` built with :func:`service_app`,
so it runs the same way under ``radstream run NAME``, ``radstream up`` and
``faststream run radstream.<svc>.app:create_app --factory``. Services register in
:data:`SERVICES` as they land; ``radstream up`` and ``make demo`` start all of them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from faststream import FastStream

from radstream.common.bus import Bus
from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.health import HealthServer


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """A runnable service: its name and where its app factory lives."""

    name: str
    app_factory: str  # "module:function" returning a FastStream app
    description: str
    # Listening ports a local stack gives a free loopback port each: label -> env variable.
    ports: Mapping[str, str] = field(default_factory=dict)
    # Settings a local stack (`radstream up`, `make demo`, loopback only) applies, and says so:
    # never defaults, because a hospital deployment must choose its own senders.
    local_settings: Mapping[str, str] = field(default_factory=dict)

    def load_factory(self) -> Callable[[], FastStream]:
        """Import and return the app factory."""
        module_name, _, function = self.app_factory.partition(":")
        factory: Callable[[], FastStream] = getattr(importlib.import_module(module_name), function)
        return factory


# Services add themselves here as their issues land (ingest, deid, ocr, restructure, ...).
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="ingest",
        app_factory="radstream.ingest.app:create_app",
        description=(
            "Receives studies and reports from hospital systems (DICOM C-STORE, STOW-RS, "
            "HL7 v2 MLLP, FHIR): stores instances in the PHI zone, publishes instance.stored, "
            "study.received once a study is quiet, report.received and clinical.observation."
        ),
        ports={
            "DICOM": "RADSTREAM_INGEST_DICOM_PORT",
            "HTTP (STOW-RS, FHIR)": "RADSTREAM_INGEST_HTTP_PORT",
            "HL7 MLLP": "RADSTREAM_INGEST_MLLP_PORT",
        },
        local_settings={
            "RADSTREAM_INGEST_DICOM_ALLOW_ANY_CALLING_AE": "true",
            "RADSTREAM_INGEST_HTTP_AUTH": "open",
            "RADSTREAM_INGEST_MLLP_ALLOW_ANY_PEER": "true",
            "RADSTREAM_INGEST_ASSEMBLY_QUIET_PERIOD_S": "5",
        },
    ),
    ServiceSpec(
        name="deid",
        app_factory="radstream.deid.app:create_app",
        description=(
            "De-identifies received studies (PS3.15 Annex E profile, verified, fail closed): "
            "releases clean instances, holds the doubtful ones for review."
        ),
    ),
)


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
