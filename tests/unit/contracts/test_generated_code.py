"""The generated contract code is fresh, importable, and every message survives the wire."""

from __future__ import annotations

import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from radstream.common.topics import ALL_TOPICS, Topic
from radstream.contracts import all_message_types, generate, message_type
from radstream.contracts.v1 import common_pb2, ocr_pb2


@pytest.fixture(scope="module")
def rendered() -> dict[str, bytes]:
    return generate.render()


def test_committed_generated_code_matches_the_proto_files(rendered: dict[str, bytes]) -> None:
    problems = generate.compare(rendered, generate.OUTPUT_DIR)
    assert problems == [], f"generated code is out of date: {problems}; {generate.FIX_HINT}"


def test_check_command_passes_on_the_committed_tree() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "radstream.contracts.generate", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_lists_stale_missing_and_extra_files_with_the_fix(
    rendered: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate.write(rendered, tmp_path)
    (tmp_path / "common_pb2.py").write_bytes(b"# edited by hand\n")
    (tmp_path / "ocr_pb2.pyi").unlink()
    (tmp_path / "legacy_pb2.py").write_bytes(b"")
    monkeypatch.setattr(generate, "OUTPUT_DIR", tmp_path)

    status = generate.main(["--check"])

    assert status == 1
    assert generate.compare(rendered, tmp_path) == [
        "stale:   common_pb2.py",
        "extra:   legacy_pb2.py",
        "missing: ocr_pb2.pyi",
    ]


def test_check_prints_the_fix(
    rendered: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(generate, "OUTPUT_DIR", tmp_path)

    assert generate.main(["--check"]) == 1
    assert "make proto" in capsys.readouterr().out


def test_writing_removes_generated_modules_no_longer_produced(
    rendered: dict[str, bytes], tmp_path: Path
) -> None:
    (tmp_path / "retired_pb2.py").write_bytes(b"")
    (tmp_path / "README.txt").write_bytes(b"kept")

    generate.write(rendered, tmp_path)

    assert not (tmp_path / "retired_pb2.py").exists()
    assert (tmp_path / "README.txt").exists()
    assert generate.compare(rendered, tmp_path) == ["extra:   README.txt"]


def test_generation_is_deterministic(rendered: dict[str, bytes]) -> None:
    assert generate.render() == rendered


def test_generated_imports_use_the_python_package_not_the_proto_package(
    rendered: dict[str, bytes],
) -> None:
    for name, content in rendered.items():
        text = content.decode()
        assert "from radstream.v1 import" not in text, name
        assert "import radstream.v1." not in text, name
        if name.endswith("_pb2.py"):
            module = f"radstream.contracts.v1.{name.removesuffix('.py')}"
            assert f"BuildTopDescriptorsAndMessages(DESCRIPTOR, '{module}'" in text, name


def test_package_init_lists_every_message_module(rendered: dict[str, bytes]) -> None:
    init = rendered["__init__.py"].decode()
    for name in rendered:
        if name.endswith("_pb2.py"):
            assert f"    {name.removesuffix('.py')},\n" in init


def _sample(field: FieldDescriptor) -> object:
    """A non-default value for a scalar or enum field."""
    if field.enum_type is not None:
        return field.enum_type.values[-1].number
    samples: dict[int, object] = {
        FieldDescriptor.CPPTYPE_STRING: b"\x00\xff" if field.type == field.TYPE_BYTES else "x-ü",
        FieldDescriptor.CPPTYPE_BOOL: True,
        FieldDescriptor.CPPTYPE_DOUBLE: 0.25,
        FieldDescriptor.CPPTYPE_FLOAT: 0.25,
    }
    return samples.get(field.cpp_type, 7)


def _populated(cls: type[Message]) -> Message:
    """An instance of *cls* with every field set (the first member of each oneof)."""
    message = cls()
    oneofs_set: set[str] = set()
    for field in cls.DESCRIPTOR.fields:
        if field.containing_oneof is not None:
            if field.containing_oneof.name in oneofs_set:
                continue
            oneofs_set.add(field.containing_oneof.name)
        target = getattr(message, field.name)
        if field.message_type is not None:
            value = _populated(type(target) if not field.is_repeated else type(target.add()))
            if field.is_repeated:
                target[0].CopyFrom(value)
            else:
                target.CopyFrom(value)
        elif field.is_repeated:
            target.append(_sample(field))
        else:
            setattr(message, field.name, _sample(field))
    return message


@pytest.mark.parametrize("cls", all_message_types(), ids=lambda cls: cls.DESCRIPTOR.full_name)
def test_every_message_type_round_trips_through_its_wire_format(cls: type[Message]) -> None:
    message = _populated(cls)
    assert len(message.ListFields()) > 0

    decoded = cls.FromString(message.SerializeToString())

    assert decoded == message


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda topic: topic.name)
def test_message_type_resolves_each_topics_event_type(topic: Topic) -> None:
    assert message_type(topic.event_type) is topic.message


def test_message_type_resolves_nested_messages() -> None:
    assert message_type("radstream.v1.BlobRef") is common_pb2.BlobRef
    assert message_type("radstream.v1.ReportStructured.Finding").DESCRIPTOR.name == "Finding"


def test_message_type_names_the_unknown_type_in_its_error() -> None:
    with pytest.raises(KeyError, match=r"radstream\.v1\.NoSuchEvent"):
        message_type("radstream.v1.NoSuchEvent")


def test_all_message_types_are_sorted_by_full_name() -> None:
    names = [cls.DESCRIPTOR.full_name for cls in all_message_types()]
    assert names == sorted(names)
    assert "radstream.v1.StudyReceived" in names


def test_text_recognition_service_answers_over_grpc() -> None:
    from radstream.contracts.v1 import ocr_pb2_grpc

    class EchoSize(ocr_pb2_grpc.TextRecognitionServicer):
        def Recognize(
            self, request: ocr_pb2.RecognizeRequest, context: object
        ) -> ocr_pb2.RecognizeResponse:
            region = ocr_pb2.TextRegion(text=str(request.raw.width), confidence=0.5)
            return ocr_pb2.RecognizeResponse(regions=[region], elapsed_ms=1)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    ocr_pb2_grpc.add_TextRecognitionServicer_to_server(EchoSize(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ocr_pb2_grpc.TextRecognitionStub(channel)
            request = ocr_pb2.RecognizeRequest(raw=ocr_pb2.RawImage(width=640, height=480))
            response = stub.Recognize(request, timeout=10)
    finally:
        server.stop(grace=1).wait()

    assert [region.text for region in response.regions] == ["640"]


def test_a_broken_proto_file_fails_generation_with_the_fix_to_make(tmp_path: Path) -> None:
    package = tmp_path / "radstream" / "v1"
    package.mkdir(parents=True)
    (package / "broken.proto").write_text('syntax = "proto3";\nmessage Broken { strin x = 1; }\n')

    with pytest.raises(generate.ContractGenerationError, match=r"fix the \.proto error"):
        generate.render(tmp_path)
