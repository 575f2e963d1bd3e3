"""The remote OCR engine: PP-OCR's detector and recognizer on a KServe v2 model server.

In production the models run on Triton (``deploy/triton/``, built by
:mod:`radstream.ocr.triton_repository`), next to the other models of the department, on a GPU
when there is one; in the tests they run on MLServer with the same ONNX files
(``deploy/mlserver/``). Only tensors cross the wire: the image is turned into the detector's
input here, the probability map comes back and DB post-processing runs here, the text strips are
cut and batched here, and the recognizer's class probabilities are CTC-decoded here
(:mod:`radstream.ocr.engines.ppocr_postprocess`). So

* the text read never leaves the PHI zone's process that asked for it (the model server sees
  normalised pixels, never text), and nothing about it can reach the server's logs;
* the engine reads exactly what the local RapidOCR engine reads: same model files, same
  :class:`PpOcrParameters`, same steps (the integration tests compare them box for box).

The server is named by one URL: ``grpc://host:8001`` (or plain ``host:8001``), ``grpcs://`` for
TLS, ``http://host:8000`` or ``https://``. gRPC is the default and the faster (tensors travel as
raw bytes); over HTTP tensors go as binary unless ``binary_tensors=False`` (MLServer accepts JSON
only).

Failures say what to do about them: the server away or too slow is a
:class:`KServeUnavailableError` (a :class:`TransientError`: retry later); a model or version
the server does not serve is a :class:`KServeModelMissingError`, and a served model whose
tensors do not fit PP-OCR's is a :class:`KServeModelMismatchError` (both
:class:`MisconfiguredError`: fix the deployment).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from radstream.common.errors import MisconfiguredError, MissingExtraError, TransientError
from radstream.ocr.engine import EngineInfo, Image, TextRegion, sorted_regions
from radstream.ocr.engines.ppocr import PpOcrParameters, recognizer_classes
from radstream.ocr.engines.ppocr_postprocess import (
    Framed,
    Quad,
    bgr,
    ctc_greedy_decode,
    db_quads,
    detector_input,
    framed,
    recognizer_batches,
    upright_crop,
)
from radstream.ocr.engines.prepared import PreparedImage, prepare
from radstream.ocr.engines.rapid import detector_limit
from radstream.ocr.triton_repository import DETECTOR, RECOGNIZER

__all__ = [
    "KServeEngine",
    "KServeModel",
    "KServeModelMismatchError",
    "KServeModelMissingError",
    "KServeUnavailableError",
]

FloatArray = npt.NDArray[np.float32]
_T = TypeVar("_T")

# Statuses after which the same request may well succeed later (gRPC codes as tritonclient
# spells them, and HTTP statuses).
_RETRYABLE = frozenset(
    {
        "StatusCode.UNAVAILABLE",
        "StatusCode.DEADLINE_EXCEEDED",
        "StatusCode.RESOURCE_EXHAUSTED",
        "StatusCode.ABORTED",
        "429",
        "502",
        "503",
        "504",
    }
)
_NOT_FOUND = frozenset({"StatusCode.NOT_FOUND", "404"})
# A readiness probe's question to the server; the probe itself gives up after 2 s.
_READY_TIMEOUT_S = 1.5


class KServeUnavailableError(TransientError):
    """The model server did not answer (down, unreachable, overloaded, past the deadline)."""


class KServeModelMissingError(MisconfiguredError):
    """The server does not serve a model (or version) the engine is configured to use."""


class KServeModelMismatchError(MisconfiguredError):
    """A served model's tensors are not PP-OCR's: the repository and the engine disagree."""


@dataclass(frozen=True, slots=True)
class KServeModel:
    """A model on the server: its name and version (``""``: the server's choice, the latest)."""

    name: str
    version: str = ""

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


@dataclass(frozen=True, slots=True)
class _Signature:
    """A served model's one input and one output, as its metadata names them."""

    input: str
    output: str
    output_shape: tuple[int, ...]


class _Transport(Protocol):
    """One protocol's client: model metadata and inference, errors left as the client raises."""

    def signature(self, model: KServeModel) -> _Signature: ...

    def infer(
        self, model: KServeModel, signature: _Signature, tensor: FloatArray
    ) -> FloatArray: ...

    def ready(self, timeout_s: float) -> bool: ...


def _signature(inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> _Signature:
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"{len(inputs)} inputs and {len(outputs)} outputs")
    for tensor in (*inputs, *outputs):
        if tensor["datatype"] != "FP32":
            raise ValueError(f"tensor {tensor['name']} is {tensor['datatype']}, not FP32")
    return _Signature(
        input=str(inputs[0]["name"]),
        output=str(outputs[0]["name"]),
        output_shape=tuple(int(d) for d in outputs[0]["shape"]),
    )


class _GrpcTransport:
    """tritonclient's gRPC client; one for all threads (its ``infer`` is thread-safe)."""

    def __init__(self, address: str, *, ssl: bool, timeout_s: float) -> None:
        import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]  # noqa: PLC0415

        self._module = grpcclient
        self._client = grpcclient.InferenceServerClient(address, ssl=ssl)
        self._timeout_s = timeout_s
        # Closed when the transport goes, or at exit while gRPC's modules are still loaded:
        # tritonclient's own __del__ closes again, after them at interpreter shutdown, and fails.
        weakref.finalize(self, _close_once, self._client)

    def signature(self, model: KServeModel) -> _Signature:
        answer = self._client.get_model_metadata(
            model.name, model.version, as_json=True, client_timeout=self._timeout_s
        )
        return _signature(answer.get("inputs", []), answer.get("outputs", []))

    def infer(self, model: KServeModel, signature: _Signature, tensor: FloatArray) -> FloatArray:
        request = self._module.InferInput(signature.input, list(tensor.shape), "FP32")
        request.set_data_from_numpy(tensor)
        result = self._client.infer(
            model.name,
            [request],
            model_version=model.version,
            outputs=[self._module.InferRequestedOutput(signature.output)],
            client_timeout=self._timeout_s,
        )
        return np.asarray(result.as_numpy(signature.output), dtype=np.float32)

    def ready(self, timeout_s: float) -> bool:
        return bool(self._client.is_server_ready(client_timeout=timeout_s))


def _close_once(client: Any) -> None:
    """Close a tritonclient gRPC client; its later ``__del__`` then closes nothing."""
    client.close()
    client.close = lambda: None


class _HttpTransport:
    """tritonclient's HTTP client; one per thread (it is not thread-safe)."""

    def __init__(self, address: str, *, ssl: bool, timeout_s: float, binary: bool) -> None:
        import tritonclient.http as httpclient  # type: ignore[import-untyped]  # noqa: PLC0415

        self._module = httpclient
        self._address, self._ssl, self._timeout_s, self._binary = address, ssl, timeout_s, binary
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._module.InferenceServerClient(
                self._address,
                ssl=self._ssl,
                connection_timeout=self._timeout_s,
                network_timeout=self._timeout_s,
            )
            self._local.client = client
        return client

    def signature(self, model: KServeModel) -> _Signature:
        answer = self._client().get_model_metadata(model.name, model.version)
        return _signature(answer.get("inputs", []), answer.get("outputs", []))

    def infer(self, model: KServeModel, signature: _Signature, tensor: FloatArray) -> FloatArray:
        request = self._module.InferInput(signature.input, list(tensor.shape), "FP32")
        request.set_data_from_numpy(tensor, binary_data=self._binary)
        result = self._client().infer(
            model.name,
            [request],
            model_version=model.version,
            outputs=[self._module.InferRequestedOutput(signature.output, binary_data=self._binary)],
        )
        return np.asarray(result.as_numpy(signature.output), dtype=np.float32)

    def ready(self, timeout_s: float) -> bool:  # the client's own timeouts bound it
        return bool(self._client().is_server_ready())


def _transport(url: str, *, timeout_s: float, binary_tensors: bool) -> tuple[_Transport, str]:
    """The client for ``url`` and the URL as the errors will name it."""
    parts = urlsplit(url if "://" in url else f"grpc://{url}")
    if parts.scheme not in {"grpc", "grpcs", "http", "https"} or not parts.hostname:
        raise MisconfiguredError(
            "a KServe URL is grpc://host:port, grpcs://, http:// or https://host:port"
        )
    if parts.path not in {"", "/"}:
        raise MisconfiguredError("a KServe URL names a server (host:port), not a path")
    address = parts.netloc
    shown = f"{parts.scheme}://{address}"
    ssl = parts.scheme in {"grpcs", "https"}
    try:
        if parts.scheme.startswith("grpc"):
            return _GrpcTransport(address, ssl=ssl, timeout_s=timeout_s), shown
        return (
            _HttpTransport(address, ssl=ssl, timeout_s=timeout_s, binary=binary_tensors),
            shown,
        )
    except ImportError as error:
        raise MissingExtraError("tritonclient", "kserve") from error


class KServeEngine:
    """PP-OCR over KServe v2 with ``tritonclient``: models on a server, the rest in process.

    Parameters
    ----------
    url
        The server: ``grpc://host:port`` (the default scheme), ``grpcs://``, ``http://`` or
        ``https://``. Nothing connects until the first call, so the OCR service may start before
        the model server does.
    detector, recognizer
        The served models; by default the names :mod:`radstream.ocr.triton_repository` gives
        them, at the server's latest version.
    parameters
        PP-OCR's pre- and post-processing, shared with the local RapidOCR engine.
    timeout_s
        The deadline of each request to the server.
    binary_tensors
        HTTP only: send and receive tensors as binary (Triton) or as JSON (MLServer).
    """

    def __init__(
        self,
        url: str,
        *,
        detector: KServeModel | None = None,
        recognizer: KServeModel | None = None,
        parameters: PpOcrParameters | None = None,
        timeout_s: float = 30.0,
        binary_tensors: bool = True,
    ) -> None:
        self.parameters = parameters if parameters is not None else PpOcrParameters()
        self.detector = detector if detector is not None else KServeModel(DETECTOR.name)
        self.recognizer = recognizer if recognizer is not None else KServeModel(RECOGNIZER.name)
        self._transport, self.url = _transport(
            url, timeout_s=timeout_s, binary_tensors=binary_tensors
        )
        self._classes = recognizer_classes()
        self._signatures: dict[KServeModel, _Signature] = {}
        self._lock = threading.Lock()
        self._info = EngineInfo(
            name="kserve",
            version=metadata.version("tritonclient"),
            models=f"{self.detector}+{self.recognizer}",
        )

    @property
    def info(self) -> EngineInfo:
        """The tritonclient version and the served models' names (with versions when pinned)."""
        return self._info

    @property
    def concurrent(self) -> bool:
        """True: requests from many threads go out at once, and the server batches them."""
        return True

    def check_backend(self) -> None:
        """Return when the model server says it is ready (its models loaded); one cheap call.

        Raises :class:`KServeUnavailableError` otherwise (the ocr service's readiness check).
        """
        if not self._call(self.detector, lambda: self._transport.ready(_READY_TIMEOUT_S)):
            raise KServeUnavailableError(f"the model server at {self.url} is not ready")

    def detect(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """The detector alone: boxes with DB scores, no text."""
        prepared, frame, quads = self._detect(image, max_side)
        regions = [
            prepared.region(frame.unframed(quad), detection_score=quad.score) for quad in quads
        ]
        return sorted_regions([r for r in regions if r is not None])

    def recognize(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """Detector, then recognizer: every detected box with its text and confidences.

        A box the recognizer reads as nothing is kept with empty text and confidence 0.
        """
        prepared, frame, quads = self._detect(image, max_side)
        if not quads:
            return []
        p = self.parameters
        strips = [upright_crop(frame.image, quad) for quad in quads]
        reads: list[tuple[str, float]] = [("", 0.0)] * len(quads)
        _, height, width = p.rec_image_shape
        for indices, tensor in recognizer_batches(
            strips, height=height, width=width, batch_size=p.rec_batch_num, mean=p.mean, std=p.std
        ):
            probabilities = self._infer(self.recognizer, tensor)
            try:
                decoded = ctc_greedy_decode(probabilities, self._classes)
            except ValueError as error:
                raise KServeModelMismatchError(
                    f"model {self.recognizer} at {self.url} does not fit the local character "
                    f"dictionary: {error}"
                ) from None
            for index, read in zip(indices, decoded, strict=True):
                reads[index] = read
        regions: list[TextRegion | None] = []
        for quad, (raw, confidence) in zip(quads, reads, strict=True):
            text = raw.strip()
            regions.append(
                prepared.region(
                    frame.unframed(quad),
                    text=text,
                    confidence=confidence if text else 0.0,
                    detection_score=quad.score,
                )
            )
        return sorted_regions([r for r in regions if r is not None])

    def _detect(self, image: Image, max_side: int) -> tuple[PreparedImage, Framed, list[Quad]]:
        """Prepare, bound, pad, detect remotely, post-process: the quads in the framed image."""
        prepared = prepare(image, max_side)
        p = self.parameters
        frame = framed(
            bgr(prepared.pixels),
            min_side=p.min_side_len,
            max_side=p.max_side_len,
            stride=p.det_stride,
            vertical_padding=p.use_vertical_padding,
            min_height=p.min_height,
            width_height_ratio=p.width_height_ratio,
        )
        height, width = frame.image.shape[:2]
        limit, limit_type = detector_limit(height, width, p, max_side)
        request = detector_input(
            frame.image,
            limit_side=limit,
            limit_type=limit_type,
            stride=p.det_stride,
            mean=p.mean,
            std=p.std,
        )
        probabilities = self._infer(self.detector, request.tensor)
        if probabilities.ndim != 4 or probabilities.shape[2:] != request.tensor.shape[2:]:
            raise KServeModelMismatchError(
                f"model {self.detector} at {self.url} answered a {probabilities.shape} map "
                f"for a {request.tensor.shape} image"
            )
        quads = db_quads(
            probabilities[0, 0],
            image_height=height,
            image_width=width,
            threshold=p.det_thresh,
            box_threshold=p.det_box_thresh,
            unclip_ratio=p.det_unclip_ratio,
            max_candidates=p.det_max_candidates,
            dilate=p.det_use_dilation,
            score_mode=p.det_score_mode,
        )
        return prepared, frame, quads

    def _infer(self, model: KServeModel, tensor: FloatArray) -> FloatArray:
        signature = self._signature(model)
        return self._call(model, lambda: self._transport.infer(model, signature, tensor))

    def _signature(self, model: KServeModel) -> _Signature:
        """The model's tensor names, asked once of the server (again after a failure)."""
        with self._lock:
            known = self._signatures.get(model)
        if known is not None:
            return known
        try:
            signature = self._call(model, lambda: self._transport.signature(model))
        except (KeyError, TypeError, ValueError) as error:
            raise KServeModelMismatchError(
                f"model {model} at {self.url} is not a PP-OCR model: {error}"
            ) from None
        if model == self.recognizer and signature.output_shape[-1:] not in {
            (-1,),
            (len(self._classes),),
        }:
            raise KServeModelMismatchError(
                f"model {model} at {self.url} has {signature.output_shape[-1]} classes, the "
                f"local character dictionary {len(self._classes)}: not the same recognizer"
            )
        with self._lock:
            self._signatures[model] = signature
        return signature

    def _call(self, model: KServeModel, request: Callable[[], _T]) -> _T:
        """Run one request, turning the client's errors into radstream's."""
        from tritonclient.utils import (  # type: ignore[import-untyped]  # noqa: PLC0415
            InferenceServerException,
        )

        try:
            return request()
        except InferenceServerException as error:
            status = str(error.status())
            if status in _NOT_FOUND:
                raise KServeModelMissingError(
                    f"model {model} is not served at {self.url} ({status})"
                ) from None
            if status in _RETRYABLE:
                raise KServeUnavailableError(
                    f"the model server at {self.url} is unavailable ({status})"
                ) from None
            raise KServeModelMismatchError(
                f"model {model} at {self.url} refused the request ({status})"
            ) from None
        except OSError as error:  # the HTTP client: refused, reset, timed out
            raise KServeUnavailableError(
                f"the model server at {self.url} is unavailable ({type(error).__name__})"
            ) from None
