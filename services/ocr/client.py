"""Calling an ocr service: :class:`OcrClient` (the RPCs) and :class:`GrpcOcrEngine` (an engine).

:class:`GrpcOcrEngine` implements :class:`~radstream.ocr.engine.OcrEngine` over the network, so
de-identification uses a remote ocr service exactly as it uses an engine in its own process:
same calls, same regions, same coordinates. It sends each image as 8-bit ``RawImage`` pixels
(the caller already decoded them; re-encoding a PNG would cost more CPU than the bytes it
saves on a cluster network) and asks for full resolution when ``max_side`` is 0, as an
in-process engine reads it.

The client is synchronous (deid's pixel stage runs in worker threads) and thread-safe (one
gRPC channel, shared). The channel balances round robin over every address its target
resolves to (a headless Service's pods; ``dns:///ocr:50051``), not gRPC's default of one.
Each call has a deadline, ``timeout_s``, that covers its retries; only UNAVAILABLE is retried
(the engine loading, a server restarting, a connection refused), with exponential backoff
inside the deadline. Every other status is raised at once as an :class:`OcrCallError` whose
message carries the status and the server's message, which starts with the ErrorCode name and
quotes no text or pixels.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

import grpc
import numpy as np

from radstream.common.errors import PoisonEventError, RadstreamError, TransientError
from radstream.contracts.v1 import common_pb2, ocr_pb2, ocr_pb2_grpc
from radstream.ocr.config import OcrClientSettings
from radstream.ocr.engine import Box, EngineInfo, Image, TextRegion, sorted_regions

__all__ = [
    "GrpcOcrEngine",
    "OcrCallError",
    "OcrClient",
    "OcrEngineFailedError",
    "OcrRefusedError",
    "OcrUnavailableError",
    "raw_image",
]

M = TypeVar("M")
_Codes = common_pb2.ErrorCode
# Statuses that say "not now" rather than "not this": a caller may try again later.
_TRANSIENT: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)
_REFUSED: Final = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.NOT_FOUND,
    }
)


class OcrCallError(RadstreamError):
    """A call the ocr service did not answer with a result.

    ``status`` is the gRPC status name (``INVALID_ARGUMENT``), ``code`` the ErrorCode name the
    server's message starts with (``ERROR_CODE_OCR_IMAGE_UNDECODABLE``), or "" without one.
    """

    def __init__(self, status: str, details: str) -> None:
        head = details.partition(":")[0].strip()
        self.status = status
        self.code = head if head.startswith("ERROR_CODE_") else ""
        super().__init__(f"ocr call failed with {status}: {details}")


class OcrRefusedError(OcrCallError, PoisonEventError):
    """The service refused the request (an undecodable or oversized image): do not retry it."""


class OcrUnavailableError(OcrCallError, TransientError):
    """The service is away, loading, overloaded, or did not answer in time: retry later."""


class OcrEngineFailedError(OcrCallError):
    """The service's engine failed on the image (INTERNAL), or another unexpected status."""


def _error_of(error: grpc.RpcError) -> OcrCallError:
    code = error.code()
    details = error.details() or ""
    if code in _TRANSIENT:
        return OcrUnavailableError(code.name, details)
    if code in _REFUSED:
        return OcrRefusedError(code.name, details)
    return OcrEngineFailedError(code.name, details)


class OcrClient:
    """The ``TextRecognition`` RPCs over one channel, each with a deadline and retries."""

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 30.0,
        attempts: int = 3,
        backoff_s: float = 0.2,
        max_message_bytes: int = 64 * 1024 * 1024,
        credentials: Any = None,
        server_name: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # Every address the name resolves to gets calls in turn: the chart's headless
            # Service resolves to each ocr pod (gRPC's default, pick_first, uses one of them).
            ("grpc.lb_policy_name", "round_robin"),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = ocr_pb2_grpc.TextRecognitionStub(self._channel)
        self.target = target
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_message_bytes = max_message_bytes
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: OcrClientSettings) -> OcrClient:
        """A client as ``RADSTREAM_OCR_CLIENT_*`` configures it (TLS files read now)."""
        credentials = None
        if settings.tls:
            files = settings.tls_files()
            credentials = grpc.ssl_channel_credentials(
                root_certificates=files.read(files.cafile, "RADSTREAM_OCR_CLIENT_TLS_CA_FILE"),
                private_key=files.read(files.keyfile, "RADSTREAM_OCR_CLIENT_TLS_KEYFILE"),
                certificate_chain=files.read(files.certfile, "RADSTREAM_OCR_CLIENT_TLS_CERTFILE"),
            )
        return cls(
            settings.target,
            timeout_s=settings.timeout_s,
            attempts=settings.attempts,
            backoff_s=settings.backoff_s,
            max_message_bytes=settings.max_message_bytes,
            credentials=credentials,
            server_name=settings.tls_server_name,
        )

    def recognize(
        self, request: ocr_pb2.RecognizeRequest, *, timeout_s: float | None = None
    ) -> ocr_pb2.RecognizeResponse:
        """Find and read text in one image."""
        response: ocr_pb2.RecognizeResponse = self._call(self._stub.Recognize, request, timeout_s)
        return response

    def detect(
        self, request: ocr_pb2.RecognizeRequest, *, timeout_s: float | None = None
    ) -> ocr_pb2.RecognizeResponse:
        """Find text in one image without reading it."""
        response: ocr_pb2.RecognizeResponse = self._call(self._stub.Detect, request, timeout_s)
        return response

    def recognize_batch(
        self, request: ocr_pb2.RecognizeBatchRequest, *, timeout_s: float | None = None
    ) -> ocr_pb2.RecognizeBatchResponse:
        """Find (and read, unless ``detect_only``) text in several images in one call."""
        response: ocr_pb2.RecognizeBatchResponse = self._call(
            self._stub.RecognizeBatch, request, timeout_s
        )
        return response

    def describe(
        self, languages: Sequence[str] = (), *, timeout_s: float | None = None
    ) -> ocr_pb2.DescribeEngineResponse:
        """The server's engine and limits; refused when it does not read ``languages``."""
        request = ocr_pb2.DescribeEngineRequest(languages=list(languages))
        response: ocr_pb2.DescribeEngineResponse = self._call(
            self._stub.DescribeEngine, request, timeout_s
        )
        return response

    def _call(self, method: Callable[..., M], request: Any, timeout_s: float | None) -> M:
        size = request.ByteSize()
        if size > self.max_message_bytes:  # gRPC would refuse it after serializing it all
            raise OcrRefusedError(
                "INVALID_ARGUMENT",
                f"{_Codes.Name(_Codes.ERROR_CODE_OCR_IMAGE_TOO_LARGE)}: the request has {size} "
                f"bytes, more than the {self.max_message_bytes} the client sends "
                "(RADSTREAM_OCR_CLIENT_MAX_MESSAGE_BYTES)",
            )
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        backoff = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            remaining = deadline - time.monotonic()
            try:
                return method(request, timeout=max(remaining, 0.001))
            except grpc.RpcError as error:
                failure = _error_of(error)
                last = attempt == self.attempts
                if error.code() != grpc.StatusCode.UNAVAILABLE or last:
                    raise failure from None  # the RpcError's repr holds the channel's debug text
                if deadline - time.monotonic() <= backoff:
                    raise failure from None
            self._sleep(backoff)
            backoff *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> OcrClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def raw_image(image: Image) -> ocr_pb2.RawImage:
    """An engine image (``uint8``, (H, W) or (H, W, 3)) as ``RawImage`` pixels."""
    if image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    ):
        raise ValueError(
            f"an engine image is uint8 of shape (H, W) or (H, W, 3); got {image.dtype} "
            f"of shape {image.shape}"
        )
    height, width = image.shape[:2]
    return ocr_pb2.RawImage(
        pixels=np.ascontiguousarray(image).tobytes(),
        width=width,
        height=height,
        channels=1 if image.ndim == 2 else 3,
        bits=8,
    )


def _regions(response: ocr_pb2.RecognizeResponse) -> list[TextRegion]:
    return sorted_regions(
        [
            TextRegion(
                box=Box(region.box.x, region.box.y, region.box.width, region.box.height),
                text=region.text,
                confidence=region.confidence,
                detection_score=region.detection_score,
                polygon=tuple((point.x, point.y) for point in region.polygon),
            )
            for region in response.regions
        ]
    )


class GrpcOcrEngine:
    """An :class:`~radstream.ocr.engine.OcrEngine` whose work a remote ocr service does.

    ``info`` asks the server once (``DescribeEngine``, which also checks ``languages``) and
    keeps the answer. :meth:`detect_many` and :meth:`recognize_many` send several images per
    call (``RecognizeBatch``), in chunks of the server's batch limit.
    """

    def __init__(
        self,
        client: OcrClient,
        *,
        languages: Sequence[str] = (),
        min_confidence: float = 0.0,
    ) -> None:
        self.client = client
        self.languages = tuple(languages)
        self.min_confidence = min_confidence
        self._described: ocr_pb2.DescribeEngineResponse | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: OcrClientSettings, *, languages: Sequence[str] = ()
    ) -> GrpcOcrEngine:
        """An engine over a client that ``RADSTREAM_OCR_CLIENT_*`` configures."""
        return cls(OcrClient.from_settings(settings), languages=languages)

    def _description(self) -> ocr_pb2.DescribeEngineResponse:
        with self._lock:
            if self._described is None:
                self._described = self.client.describe(self.languages)
            return self._described

    @property
    def info(self) -> EngineInfo:
        """The server's engine and models (asked once)."""
        described = self._description()
        return EngineInfo(
            name=described.engine.name, version=described.engine.version, models=described.models
        )

    @property
    def concurrent(self) -> bool:
        """True: the channel is shared by threads; the server queues what it cannot run."""
        return True

    def detect(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """Where text is, with detection scores; ``text`` empty."""
        return _regions(self.client.detect(self._request(image, max_side)))

    def recognize(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """Where text is and what it says."""
        return _regions(self.client.recognize(self._request(image, max_side)))

    def detect_many(self, images: Sequence[Image], *, max_side: int = 0) -> list[list[TextRegion]]:
        """:meth:`detect` for each image, in as few calls as the server's batch limit allows."""
        return self._many(images, max_side, detect_only=True)

    def recognize_many(
        self, images: Sequence[Image], *, max_side: int = 0
    ) -> list[list[TextRegion]]:
        """:meth:`recognize` for each image, in as few calls as the batch limit allows."""
        return self._many(images, max_side, detect_only=False)

    def _many(
        self, images: Sequence[Image], max_side: int, *, detect_only: bool
    ) -> list[list[TextRegion]]:
        chunk = max(1, self._description().max_batch_images)
        results: list[list[TextRegion]] = []
        for start in range(0, len(images), chunk):
            batch = ocr_pb2.RecognizeBatchRequest(
                requests=[
                    self._request(image, max_side) for image in images[start : start + chunk]
                ],
                detect_only=detect_only,
            )
            response = self.client.recognize_batch(batch)
            results.extend(_regions(single) for single in response.responses)
        return results

    def _request(self, image: Image, max_side: int) -> ocr_pb2.RecognizeRequest:
        return ocr_pb2.RecognizeRequest(
            raw=raw_image(image),
            options=ocr_pb2.RecognizeOptions(
                languages=list(self.languages),
                min_confidence=self.min_confidence,
                # 0 reads the full resolution in-process; on the wire 0 is the server's default.
                max_side=max_side if max_side > 0 else -1,
            ),
        )
