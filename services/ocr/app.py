"""The ocr service process: the gRPC server, its engine, probes and metrics, and a clean stop.

The service consumes no topic, so it is not a FastStream app: :class:`OcrApp` is the object
``radstream run ocr`` awaits (:class:`~radstream.common.service_spec.RunnableApp`). Its
:meth:`~OcrApp.run`

1. starts the probe and metrics endpoint (:class:`~radstream.common.health.HealthServer`) and
   the gRPC server at once, so Kubernetes sees a live process while the engine loads: gRPC
   calls are answered UNAVAILABLE, the gRPC health service says NOT_SERVING and ``/readyz``
   fails its ``ocr-engine`` check (which, for an engine whose models run elsewhere -- kserve --
   also asks the model server whether it is ready, each time);
2. loads the engine in a thread (ONNX sessions or torch models take seconds) and then serves;
   an engine that cannot load stops the process with the reason (exit code 1);
3. on SIGTERM or SIGINT: NOT_SERVING, no new calls, the calls in flight get
   ``RADSTREAM_OCR_SHUTDOWN_GRACE_S`` to finish, then the engine threads and the probes stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry

from radstream.common.blobstore import BlobStore, open_blob_store
from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.health import HealthServer
from radstream.ocr.config import OcrSettings
from radstream.ocr.engine import BackendProbe, OcrEngine
from radstream.ocr.images import ImageLimits
from radstream.ocr.metrics import ocr_metrics
from radstream.ocr.server import OcrServer, ServiceOptions

__all__ = ["OcrApp", "create_app", "engine_options", "server_credentials", "service_options"]

log = logging.getLogger(__name__)

EngineFactory = Callable[[], OcrEngine]


def engine_options(settings: OcrSettings) -> dict[str, Any]:
    """The keyword arguments ``load_engine`` gets for the configured engine."""
    options: dict[str, Any] = {}
    if settings.engine in ("rapidocr", "easyocr") and settings.engine_threads is not None:
        options["threads"] = settings.engine_threads
    if settings.engine == "kserve":
        if not settings.kserve_url:
            raise MisconfiguredError(
                "RADSTREAM_OCR_ENGINE is kserve: set RADSTREAM_OCR_KSERVE_URL to the model "
                "server's KServe v2 endpoint (Triton: host:8001 for gRPC)"
            )
        options["url"] = settings.kserve_url
    return options


def service_options(settings: OcrSettings) -> ServiceOptions:
    """How the server treats calls, from the settings."""
    return ServiceOptions(
        limits=ImageLimits(
            max_pixels=settings.max_image_pixels,
            max_side=settings.max_image_side,
            max_encoded_bytes=settings.max_message_bytes,
        ),
        max_concurrency=settings.max_concurrency,
        queue_limit=settings.queue_limit,
        max_batch_images=settings.max_batch_images,
        default_max_side=settings.default_max_side,
        languages=settings.languages,
        max_message_bytes=settings.max_message_bytes,
    )


def server_credentials(settings: OcrSettings) -> Any:
    """The server's TLS credentials (mTLS with a client CA), or None for plaintext."""
    if not settings.tls:
        return None
    files = settings.tls_files()
    key = files.read(files.keyfile, "RADSTREAM_OCR_TLS_KEYFILE")
    cert = files.read(files.certfile, "RADSTREAM_OCR_TLS_CERTFILE")
    client_ca = files.read(files.cafile, "RADSTREAM_OCR_TLS_CLIENT_CA_FILE")
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class OcrApp:
    """The service: gRPC server, engine, probes; :meth:`run` until SIGTERM."""

    def __init__(
        self,
        settings: OcrSettings,
        *,
        engine_factory: EngineFactory,
        registry: CollectorRegistry = REGISTRY,
        phi_store: BlobStore | None = None,
    ) -> None:
        self.settings = settings
        self._engine_factory = engine_factory
        self.server = OcrServer(
            service_options(settings),
            metrics=ocr_metrics(registry),
            host=settings.host,
            port=settings.port,
            phi_store=phi_store,
            credentials=server_credentials(settings),
        )
        self.health = HealthServer.from_settings(settings.observability, registry=registry)
        self.health.add_check("ocr-engine", self._engine_loaded)
        self._stopping = asyncio.Event()

    async def _engine_loaded(self) -> None:
        engine = self.server.service.engine
        if engine is None:
            raise TransientError(f"the {self.settings.engine} engine is loading")
        if isinstance(engine, BackendProbe):  # kserve: ready only while its model server is
            await asyncio.to_thread(engine.check_backend)

    def stop(self) -> None:
        """Ask :meth:`run` to stop (what SIGTERM does)."""
        self._stopping.set()

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`); raise when the engine cannot load."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for number in signals:
            loop.add_signal_handler(number, self.stop)
        try:
            await self.health.start()
            try:
                await self._serve()
            finally:
                await self.health.stop()
        finally:
            for number in signals:
                loop.remove_signal_handler(number)

    async def _serve(self) -> None:
        await self.server.start()
        log.info(
            "ocr service loading its engine (%s)",
            "TLS" if self.settings.tls else "plaintext gRPC",
            extra={"model": self.settings.engine},
        )
        loading = asyncio.create_task(self.server.service.load(self._engine_factory))
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if loading.done():
                loading.result()  # an engine that cannot load stops the process, saying why
                await stopping
        finally:
            for task in (loading, stopping):
                task.cancel()
            await asyncio.gather(loading, stopping, return_exceptions=True)
            log.info(
                "ocr service stopping; calls in flight get %.1f s", self.settings.shutdown_grace_s
            )
            await self.server.stop(self.settings.shutdown_grace_s)


def create_app(
    settings: OcrSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    engine_factory: EngineFactory | None = None,
) -> OcrApp:
    """Build the ocr service from ``RADSTREAM_OCR_*`` (the engine loads when it runs)."""
    settings = settings if settings is not None else OcrSettings()
    if engine_factory is None:
        from radstream.ocr.engines import load_engine  # noqa: PLC0415 -- the registry

        options = engine_options(settings)
        name = settings.engine

        def engine_factory() -> OcrEngine:
            return load_engine(name, **options)

    phi_store = None
    if settings.reads_blob_refs:
        phi_store = open_blob_store(settings.blob.phi_uri, "phi", settings.blob)
    return OcrApp(
        settings,
        engine_factory=engine_factory,
        registry=registry if registry is not None else REGISTRY,
        phi_store=phi_store,
    )
