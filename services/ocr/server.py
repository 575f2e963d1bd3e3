"""The ``TextRecognition`` gRPC service (``proto/radstream/v1/ocr.proto``) over one engine.

A call goes through, in order:

1. readiness -- until the engine has loaded, every call is answered UNAVAILABLE
   (``ERROR_CODE_OCR_ENGINE_NOT_READY``) and the gRPC health service says NOT_SERVING;
2. cheap checks of the request (languages, batch size) -- INVALID_ARGUMENT;
3. admission (:mod:`radstream.ocr.admission`) -- RESOURCE_EXHAUSTED when the queue is full,
   DEADLINE_EXCEEDED when the call's deadline passes while it waits; nothing has run yet;
4. in an engine thread: decoding (:mod:`radstream.ocr.images`; INVALID_ARGUMENT for a refused
   image) and the engine (INTERNAL, ``ERROR_CODE_OCR_ENGINE_FAILED``, when it raises;
   UNAVAILABLE, ``ERROR_CODE_DEPENDENCY_UNAVAILABLE``, when it raises a
   :class:`~radstream.common.errors.TransientError`: the kserve engine's model server away,
   which the client retries).

Decoding runs inside the slot on purpose: a decoded image is many times its encoded size, so
only the calls that hold a slot hold one. A ``ref`` image is fetched from the PHI store after
admission too, for the same reason.

Batching is a call, ``RecognizeBatch``: its images share one admission and run one after
another on the slot it holds; a server-side micro-batcher would buy nothing here, because the
engines take one image per call (their detectors resize each image to its own shape).

Responses: regions sorted (:func:`~radstream.ocr.engine.sorted_regions`), boxes clipped to the
image (engines map them back to the original resolution), the engine as a ``ModelRef``, and
``elapsed_ms`` of decoding plus engine work. Status messages start with the ErrorCode name and
never quote text or pixels; logs carry the call, the status and the reason, never the text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

import grpc
from grpc_health.v1 import (  # type: ignore[import-untyped]
    health,
    health_pb2,
    health_pb2_grpc,
)

from radstream.common.blobstore import BlobStore
from radstream.common.errors import MisconfiguredError, TransientError
from radstream.common.logs import describe_error
from radstream.contracts.v1 import common_pb2, ocr_pb2, ocr_pb2_grpc
from radstream.ocr.admission import Admission, Job, OverloadedError, QueueDeadlineError
from radstream.ocr.engine import OcrEngine, TextRegion, sorted_regions
from radstream.ocr.images import ImageLimits, ImageRefusedError, decode_image, fetch_encoded
from radstream.ocr.metrics import OcrMetrics

R = TypeVar("R")

__all__ = ["SERVICE_NAME", "OcrServer", "ServiceOptions", "TextRecognitionService"]

log = logging.getLogger(__name__)

SERVICE_NAME: Final = ocr_pb2.DESCRIPTOR.services_by_name["TextRecognition"].full_name
_Codes = common_pb2.ErrorCode
# The runtime each engine's models run on, for ModelRef.backend.
_BACKENDS: Final = {
    "rapidocr": "onnxruntime",
    "easyocr": "torch",
    "tesseract": "tesseract",
    "kserve": "triton",
}


@dataclass(frozen=True, kw_only=True)
class ServiceOptions:
    """How the service treats calls (from :class:`~radstream.ocr.config.OcrSettings`)."""

    limits: ImageLimits = field(default_factory=ImageLimits)
    max_concurrency: int = 1
    queue_limit: int = 16
    max_batch_images: int = 64
    default_max_side: int = 0
    languages: tuple[str, ...] = ("en",)
    max_message_bytes: int = 64 * 1024 * 1024


class _CallFailed(Exception):  # noqa: N818 -- an answer, carried up to the handler's edge
    """A status to answer with; ``message`` starts with the ErrorCode name."""

    def __init__(self, status: grpc.StatusCode, code: int, detail: str, *, reason: str) -> None:
        self.code_name = _Codes.Name(code)
        super().__init__(f"{self.code_name}: {detail}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Answer:
    """One image's regions and the time its decoding and reading took."""

    regions: list[TextRegion]
    width: int
    height: int
    seconds: float


class TextRecognitionService(ocr_pb2_grpc.TextRecognitionServicer):
    """The servicer: readiness, admission, decoding, the engine, answers and metrics."""

    def __init__(
        self,
        options: ServiceOptions,
        *,
        metrics: OcrMetrics,
        phi_store: BlobStore | None = None,
        health_servicer: Any = None,
    ) -> None:
        self.options = options
        self._metrics = metrics
        self._phi_store = phi_store
        self._health = health_servicer
        self._engine: OcrEngine | None = None
        self._admission: Admission | None = None

    @property
    def engine(self) -> OcrEngine | None:
        """The engine once loaded."""
        return self._engine

    @property
    def admission(self) -> Admission | None:
        """The slots and queue, once the engine has loaded."""
        return self._admission

    async def attach(self, engine: OcrEngine) -> None:
        """Serve ``engine`` from now on; the health service says SERVING."""
        slots = self.options.max_concurrency if engine.concurrent else 1
        self._admission = Admission(slots, self.options.queue_limit)
        self._engine = engine
        if self._health is not None:
            for name in ("", SERVICE_NAME):
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "ocr engine ready with %d slot(s)",
            slots,
            extra={"model": engine.info.name, "model_version": engine.info.version, "count": slots},
        )

    async def load(self, factory: Callable[[], OcrEngine]) -> None:
        """Build the engine in a thread (models load for seconds), then :meth:`attach` it."""
        await self.attach(await asyncio.to_thread(factory))

    def close(self) -> None:
        """Stop the engine threads after the work they run."""
        if self._admission is not None:
            self._admission.close()

    # -- the calls ---------------------------------------------------------------------------

    async def Recognize(  # noqa: N802 -- the generated servicer's method name
        self, request: ocr_pb2.RecognizeRequest, context: Any
    ) -> ocr_pb2.RecognizeResponse:
        """Find and read text in one image."""
        return await self._answer("recognize", context, self._one(request, context, False))

    async def Detect(  # noqa: N802
        self, request: ocr_pb2.RecognizeRequest, context: Any
    ) -> ocr_pb2.RecognizeResponse:
        """Find text in one image without reading it."""
        return await self._answer("detect", context, self._one(request, context, True))

    async def RecognizeBatch(  # noqa: N802
        self, request: ocr_pb2.RecognizeBatchRequest, context: Any
    ) -> ocr_pb2.RecognizeBatchResponse:
        """Find (and read) text in several images, one admission for all of them."""
        call = "detect_batch" if request.detect_only else "recognize_batch"
        return await self._answer(call, context, self._batch(request, context, call))

    async def DescribeEngine(  # noqa: N802
        self, request: ocr_pb2.DescribeEngineRequest, context: Any
    ) -> ocr_pb2.DescribeEngineResponse:
        """The engine and the limits; refuses languages the server is not set up for."""
        return await self._answer("describe", context, self._describe(request))

    # -- how a call is answered --------------------------------------------------------------

    async def _answer(self, call: str, context: Any, handle: Awaitable[R]) -> R:
        """Await ``handle``; turn a refusal into its status, count the call either way."""
        started = time.perf_counter()
        engine = self._engine.info.name if self._engine is not None else "none"
        self._metrics.inflight.inc()
        status = grpc.StatusCode.OK
        try:
            return await handle
        except _CallFailed as failed:
            status = failed.status
            log.info(
                "ocr %s refused (%s)",
                call,
                failed.reason,
                extra={"status": status.name, "error_code": failed.code_name},
            )
            await context.abort(status, str(failed))
            raise AssertionError("context.abort returned") from failed  # it raises
        except asyncio.CancelledError:
            status = grpc.StatusCode.CANCELLED  # deadline passed or client gone, while it ran
            raise
        finally:
            self._metrics.inflight.dec()
            self._metrics.answered(call, engine, status.name, time.perf_counter() - started)

    def _ready(self) -> tuple[OcrEngine, Admission]:
        if self._engine is None or self._admission is None:
            raise _CallFailed(
                grpc.StatusCode.UNAVAILABLE,
                _Codes.ERROR_CODE_OCR_ENGINE_NOT_READY,
                "the OCR engine is loading; retry shortly",
                reason="not_ready",
            )
        return self._engine, self._admission

    def _check_languages(self, languages: Sequence[str]) -> None:
        unsupported = sorted({lang for lang in languages if lang not in self.options.languages})
        if unsupported:
            raise _CallFailed(
                grpc.StatusCode.INVALID_ARGUMENT,
                _Codes.ERROR_CODE_OCR_UNSUPPORTED_LANGUAGE,
                f"{len(unsupported)} requested language(s) are not among those this server "
                f"reads ({', '.join(self.options.languages)})",
                reason="unsupported_language",
            )

    async def _one(
        self, request: ocr_pb2.RecognizeRequest, context: Any, detect: bool
    ) -> ocr_pb2.RecognizeResponse:
        engine, admission = self._ready()
        self._check_languages(request.options.languages)
        call = "detect" if detect else "recognize"

        async def run() -> list[_Answer]:
            async with admission.slot(deadline=_deadline(context)) as slot:
                fetched = [await self._fetch(request)]
                return await slot.run(
                    lambda job: self._read([request], fetched, engine, detect, job, indexed=False)
                )

        [answer] = await self._admitted(run)
        return self._response(call, engine, request, answer, detect)

    async def _batch(
        self, request: ocr_pb2.RecognizeBatchRequest, context: Any, call: str
    ) -> ocr_pb2.RecognizeBatchResponse:
        engine, admission = self._ready()
        images = list(request.requests)
        if len(images) > self.options.max_batch_images:
            raise _CallFailed(
                grpc.StatusCode.INVALID_ARGUMENT,
                _Codes.ERROR_CODE_OCR_IMAGE_TOO_LARGE,
                f"the batch holds {len(images)} images; at most "
                f"{self.options.max_batch_images} are accepted (RADSTREAM_OCR_MAX_BATCH_IMAGES)",
                reason="batch_too_large",
            )
        for single in images:
            self._check_languages(single.options.languages)
        detect = request.detect_only

        async def run() -> list[_Answer]:
            async with admission.slot(deadline=_deadline(context)) as slot:
                fetched = [
                    await self._fetch(single, index=index) for index, single in enumerate(images)
                ]
                return await slot.run(
                    lambda job: self._read(images, fetched, engine, detect, job, indexed=True)
                )

        answers = await self._admitted(run)
        return ocr_pb2.RecognizeBatchResponse(
            responses=[
                self._response(call, engine, single, answer, detect)
                for single, answer in zip(images, answers, strict=True)
            ]
        )

    async def _admitted(self, run: Callable[[], Awaitable[list[_Answer]]]) -> list[_Answer]:
        """Run the admitted work; map the queue's and the images' refusals to statuses."""
        try:
            return await run()
        except OverloadedError as exc:
            raise _CallFailed(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                _Codes.ERROR_CODE_OCR_OVERLOADED,
                f"the server is busy ({exc}); retry later, with backoff",
                reason="overloaded",
            ) from exc
        except QueueDeadlineError as exc:
            raise _CallFailed(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                _Codes.ERROR_CODE_TIMEOUT,
                f"{exc}; the engine did not run",
                reason="deadline_in_queue",
            ) from exc
        except _IndexedRefusal as refused:
            prefix = f"images[{refused.index}]: " if refused.index is not None else ""
            raise _CallFailed(
                grpc.StatusCode.INVALID_ARGUMENT,
                refused.error.error_code,
                prefix + str(refused.error).partition(": ")[2],
                reason=refused.error.reason,
            ) from refused.error
        except TransientError as exc:  # the PHI blob store is away
            raise _CallFailed(
                grpc.StatusCode.UNAVAILABLE,
                _Codes.ERROR_CODE_DEPENDENCY_UNAVAILABLE,
                "the PHI blob store did not answer; retry later",
                reason="blob_store_unavailable",
            ) from exc
        except _EngineFailed as failed:
            if isinstance(failed.error, TransientError):  # kserve's model server away
                raise _CallFailed(
                    grpc.StatusCode.UNAVAILABLE,
                    _Codes.ERROR_CODE_DEPENDENCY_UNAVAILABLE,
                    f"the engine's backend did not answer ({type(failed.error).__name__}); "
                    "retry later",
                    reason="engine_unavailable",
                ) from failed.error
            log.error(
                "ocr engine failed: %s",
                failed.described,
                extra={"error_type": type(failed.error).__name__},
            )
            raise _CallFailed(
                grpc.StatusCode.INTERNAL,
                _Codes.ERROR_CODE_OCR_ENGINE_FAILED,
                f"the engine failed on the image ({type(failed.error).__name__})",
                reason="engine_failed",
            ) from failed.error

    async def _fetch(
        self, request: ocr_pb2.RecognizeRequest, *, index: int | None = None
    ) -> bytes | None:
        """The encoded bytes of a ``ref`` image (None for the other forms)."""
        if request.WhichOneof("image") != "ref":
            return None
        try:
            if self._phi_store is None:
                raise ImageRefusedError(
                    "no_blob_store",
                    "this server reads no blob store; send the image inline",
                    code=_Codes.ERROR_CODE_INVALID_EVENT,
                )
            return await fetch_encoded(request.ref, self._phi_store, self.options.limits)
        except ImageRefusedError as exc:
            raise _IndexedRefusal(exc, index) from exc

    def _read(
        self,
        requests: Sequence[ocr_pb2.RecognizeRequest],
        fetched: Sequence[bytes | None],
        engine: OcrEngine,
        detect: bool,
        job: Job,
        *,
        indexed: bool,
    ) -> list[_Answer]:
        """Decode and read each image in turn (in an engine thread); stop when given up."""
        answers = []
        for index, (request, data) in enumerate(zip(requests, fetched, strict=True)):
            job.check()  # nobody waits for the rest
            started = time.perf_counter()
            try:
                image = decode_image(request, self.options.limits, fetched=data)
            except ImageRefusedError as exc:
                raise _IndexedRefusal(exc, index if indexed else None) from exc
            max_side = self._max_side(request.options.max_side)
            try:
                if detect:
                    regions = engine.detect(image, max_side=max_side)
                else:
                    regions = engine.recognize(image, max_side=max_side)
            except Exception as exc:
                raise _EngineFailed(exc) from exc
            height, width = image.shape[:2]
            answers.append(
                _Answer(
                    _kept(regions, request.options.min_confidence, detect, width, height),
                    width,
                    height,
                    time.perf_counter() - started,
                )
            )
        return answers

    def _max_side(self, requested: int) -> int:
        """The engine's max_side: the request's, the default for 0, none (0) when negative."""
        if requested < 0:
            return 0
        return requested or self.options.default_max_side

    def _response(
        self,
        call: str,
        engine: OcrEngine,
        request: ocr_pb2.RecognizeRequest,
        answer: _Answer,
        detect: bool,
    ) -> ocr_pb2.RecognizeResponse:
        info = engine.info
        self._metrics.image_read(
            call,
            info.name,
            len(answer.regions),
            None if detect else [region.confidence for region in answer.regions],
        )
        return ocr_pb2.RecognizeResponse(
            regions=[_region_message(region) for region in answer.regions],
            engine=_model_ref(engine),
            elapsed_ms=round(answer.seconds * 1000),
            models=info.models,
            image_width=answer.width,
            image_height=answer.height,
        )

    async def _describe(
        self, request: ocr_pb2.DescribeEngineRequest
    ) -> ocr_pb2.DescribeEngineResponse:
        engine, _ = self._ready()
        self._check_languages(request.languages)
        limits = self.options.limits
        return ocr_pb2.DescribeEngineResponse(
            engine=_model_ref(engine),
            models=engine.info.models,
            languages=list(self.options.languages),
            default_max_side=self.options.default_max_side,
            max_image_pixels=limits.max_pixels,
            max_image_side=limits.max_side,
            max_message_bytes=self.options.max_message_bytes,
            max_batch_images=self.options.max_batch_images,
        )


class _IndexedRefusal(Exception):  # noqa: N818 -- carries a refusal and the image it is about
    def __init__(self, error: ImageRefusedError, index: int | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.index = index


class _EngineFailed(Exception):  # noqa: N818 -- carries the engine's own exception
    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.error = error
        self.described = describe_error(error)


def _deadline(context: Any) -> float | None:
    """The call's deadline as a :func:`time.monotonic` value (None: the caller set none)."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _kept(
    regions: Sequence[TextRegion], min_confidence: float, detect: bool, width: int, height: int
) -> list[TextRegion]:
    """Regions at or above the threshold, boxes inside the image, in reading order."""
    kept = []
    for region in regions:
        score = region.detection_score if detect else region.confidence
        if score < min_confidence:
            continue
        box = region.box.clipped(width=width, height=height)
        if box is None:
            continue
        kept.append(region if box == region.box else replace(region, box=box))
    return sorted_regions(kept)


def _region_message(region: TextRegion) -> ocr_pb2.TextRegion:
    box = region.box
    return ocr_pb2.TextRegion(
        box=ocr_pb2.BoundingBox(x=box.x, y=box.y, width=box.width, height=box.height),
        polygon=[ocr_pb2.Point(x=x, y=y) for x, y in region.polygon],
        text=region.text,
        confidence=region.confidence,
        detection_score=region.detection_score,
    )


def _model_ref(engine: OcrEngine) -> common_pb2.ModelRef:
    info = engine.info
    return common_pb2.ModelRef(
        name=info.name, version=info.version, backend=_BACKENDS.get(info.name, info.name)
    )


class OcrServer:
    """The grpc.aio server: TextRecognition and grpc.health.v1.Health on one port.

    ``credentials`` are the server's TLS credentials (None: plaintext, for loopback stacks).
    The health service says NOT_SERVING until :meth:`TextRecognitionService.attach` and again
    from the start of :meth:`stop`, so a load balancer drains the server before it goes.
    """

    def __init__(
        self,
        options: ServiceOptions,
        *,
        metrics: OcrMetrics,
        host: str = "127.0.0.1",
        port: int = 0,
        phi_store: BlobStore | None = None,
        credentials: Any = None,
    ) -> None:
        self._host, self._port, self._credentials = host, port, credentials
        self.health = health.aio.HealthServicer()
        self.service = TextRecognitionService(
            options, metrics=metrics, phi_store=phi_store, health_servicer=self.health
        )
        self._server: Any = None

    @property
    def port(self) -> int:
        """The bound port once started (the configured one before)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` to dial."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    async def start(self) -> None:
        """Bind and serve; the engine is not there yet (UNAVAILABLE, NOT_SERVING)."""
        size = self.service.options.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
            ]
        )
        ocr_pb2_grpc.add_TextRecognitionServicer_to_server(self.service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{self._host}:{self._port}"
        try:
            if self._credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self._credentials)
        except RuntimeError as exc:
            port = 0
            cause: BaseException | None = exc
        else:
            cause = None
        if not port:
            raise MisconfiguredError(
                f"the ocr gRPC server cannot listen on {address}; set RADSTREAM_OCR_HOST and "
                "RADSTREAM_OCR_PORT to a free local address"
            ) from cause
        self._port = port
        await server.start()
        self._server = server
        log.info("ocr gRPC server listening on port %d", port, extra={"port": port})

    async def stop(self, grace_s: float = 10.0) -> None:
        """NOT_SERVING, then stop taking calls; calls in flight get ``grace_s`` to finish."""
        server, self._server = self._server, None
        if server is None:
            return
        await self.health.enter_graceful_shutdown()
        await server.stop(grace_s)
        self.service.close()
