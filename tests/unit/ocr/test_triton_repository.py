"""The Triton model repository: its config.pbtxt files fit the ONNX files they serve.

Triton refuses to load a model whose configuration names tensors the model does not have, or
types them wrongly, and it does so at deploy time, far from here. So the checked-in
``deploy/triton/models/*/config.pbtxt`` are parsed with Triton's own ``ModelConfig`` schema and
compared with the wheel's ONNX files as onnxruntime reads them.
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import onnxruntime
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from radstream.ocr.engines.ppocr import model_files, recognizer_classes
from radstream.ocr.triton_repository import MODELS, RECOGNIZER, ServedModel, build, main

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
CHECKED_IN = REPOSITORY_ROOT / "deploy" / "triton" / "models"
MLSERVER = REPOSITORY_ROOT / "deploy" / "mlserver"
ONNX_TO_TRITON = {"tensor(float)": model_config_pb2.TYPE_FP32}


def _parsed(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _session(model: ServedModel) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(
        str(model.source_file(model_files())), providers=["CPUExecutionProvider"]
    )


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_config_names_and_types_the_onnx_models_tensors(model: ServedModel) -> None:
    config = _parsed(CHECKED_IN / model.name / "config.pbtxt")
    session = _session(model)
    assert config.name == model.name
    assert config.backend == "onnxruntime"
    assert config.max_batch_size > 0
    for declared, actual in (
        (config.input, session.get_inputs()),
        (config.output, session.get_outputs()),
    ):
        assert [t.name for t in declared] == [a.name for a in actual]
        for tensor, node in zip(declared, actual, strict=True):
            assert tensor.data_type == ONNX_TO_TRITON[node.type]
            # dims leave out the batch axis; fixed axes agree, dynamic ones are -1
            onnx_dims = [d if isinstance(d, int) else -1 for d in node.shape[1:]]
            assert len(tensor.dims) == len(onnx_dims)
            for dim, onnx_dim in zip(tensor.dims, onnx_dims, strict=True):
                assert dim == onnx_dim or onnx_dim == -1


def test_the_recognizer_has_a_class_per_character_of_the_local_dictionary() -> None:
    config = _parsed(CHECKED_IN / RECOGNIZER.name / "config.pbtxt")
    assert config.output[0].dims[-1] == len(recognizer_classes())


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_batching_and_instances_are_configured(model: ServedModel) -> None:
    config = _parsed(CHECKED_IN / model.name / "config.pbtxt")
    assert config.HasField("dynamic_batching")
    assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 10_000
    assert [g.kind for g in config.instance_group] == [
        model_config_pb2.ModelInstanceGroup.KIND_AUTO
    ]


def test_build_writes_the_layout_with_the_wheels_files(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    for model in MODELS:
        folder = tmp_path / model.name
        # the checked-in configurations are exactly what the module writes
        assert (folder / "config.pbtxt").read_text() == (
            CHECKED_IN / model.name / "config.pbtxt"
        ).read_text()
        assert filecmp.cmp(folder / "1" / "model.onnx", model.source_file(model_files()), False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(m.name for m in MODELS)


def test_build_leaves_other_models_alone_and_replaces_its_own(tmp_path: Path) -> None:
    other = tmp_path / "cachexia" / "config.pbtxt"
    other.parent.mkdir()
    other.write_text('name: "cachexia"')
    stale = tmp_path / RECOGNIZER.name / "config.pbtxt"
    stale.parent.mkdir()
    stale.write_text("stale")
    build(tmp_path)
    assert other.read_text() == 'name: "cachexia"'
    assert stale.read_text() == RECOGNIZER.config()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_mlserver_serves_the_same_models_from_the_same_layout(model: ServedModel) -> None:
    settings = json.loads((MLSERVER / "models" / model.name / "model-settings.json").read_text())
    assert settings["name"] == model.name
    assert settings["implementation"] == "onnx_runtime.OnnxRuntime"
    assert settings["parameters"]["uri"] == "./1/model.onnx"
    assert (MLSERVER / "onnx_runtime.py").is_file()
