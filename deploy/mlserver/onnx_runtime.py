"""An MLServer runtime that serves one ONNX file with onnxruntime over KServe v2.

MLServer stands in for Triton in radstream's tests: it speaks the same KServe v2 protocol (HTTP
and gRPC), so :class:`radstream.ocr.engines.kserve.KServeEngine` is exercised against a real
server with the very ONNX files Triton serves in production (``deploy/triton/``). MLServer has
no ONNX runtime of its own, hence this module, named as ``implementation`` in each
``model-settings.json`` (``onnx_runtime.OnnxRuntime``; the folder holding this file must be on
``PYTHONPATH``).

It is deliberately thin -- a request's inputs become NumPy arrays by name, the session runs,
its outputs go back by name -- so that what the tests measure is the protocol and the engine,
not a runtime of our own making. Like Triton's onnxruntime backend it refuses a request whose
inputs do not match the model's (names, datatype, rank), and it reports the model's tensors in
the model's metadata (dynamic axes as -1), which the engine reads to name its tensors.

It runs inside ``.venv-mlserver`` (``make mlserver-venv``), never in radstream's own venv:
MLServer pins a fastapi that conflicts with flwr's.
"""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor
from mlserver.utils import get_model_uri

# ONNX element types onnxruntime reports, and their KServe v2 datatypes.
_DATATYPES = {
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(double)": "FP64",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
}


def _metadata(node: onnxruntime.NodeArg) -> MetadataTensor:
    """A session input or output as KServe metadata: symbolic or unknown axes become -1."""
    shape = [axis if isinstance(axis, int) else -1 for axis in node.shape]
    return MetadataTensor(name=node.name, datatype=_DATATYPES[node.type], shape=shape)


class OnnxRuntime(MLModel):
    """One ONNX model on onnxruntime's CPU provider; ``parameters.uri`` names the file."""

    async def load(self) -> bool:
        """Open the session and publish the model's tensors as its metadata."""
        path = await get_model_uri(self.settings, wellknown_filenames=["model.onnx"])
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # warnings and worse only
        self._session = onnxruntime.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [_metadata(node) for node in self._session.get_inputs()]
        self.outputs = [_metadata(node) for node in self._session.get_outputs()]
        self._output_names = [node.name for node in self._session.get_outputs()]
        return True

    def _feeds(self, payload: InferenceRequest) -> dict[str, np.ndarray]:
        expected = {tensor.name: tensor for tensor in self.inputs or []}
        given = {request_input.name for request_input in payload.inputs}
        if given != set(expected):
            raise InferenceError(
                f"model {self.name} takes inputs {sorted(expected)}, got {sorted(given)}"
            )
        feeds: dict[str, np.ndarray] = {}
        for request_input in payload.inputs:
            tensor = expected[request_input.name]
            if request_input.datatype != tensor.datatype:
                raise InferenceError(
                    f"input {tensor.name} of model {self.name} is {tensor.datatype}, "
                    f"got {request_input.datatype}"
                )
            if len(request_input.shape) != len(tensor.shape):
                raise InferenceError(
                    f"input {tensor.name} of model {self.name} has rank {len(tensor.shape)}, "
                    f"got shape {request_input.shape}"
                )
            feeds[tensor.name] = NumpyCodec.decode_input(request_input)
        return feeds

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Run the session on the request's inputs; answer every requested output (or all)."""
        feeds = self._feeds(payload)
        wanted = [o.name for o in payload.outputs] if payload.outputs else self._output_names
        unknown = sorted(set(wanted) - set(self._output_names))
        if unknown:
            raise InferenceError(f"model {self.name} has no outputs {unknown}")
        # onnxruntime releases the GIL while it runs: keep the event loop answering meanwhile.
        results = await asyncio.to_thread(self._session.run, wanted, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, np.asarray(result))
                for name, result in zip(wanted, results, strict=True)
            ],
        )
