"""The event catalogue is generated from the contracts, and every contract element is documented."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2

from radstream.common.topics import ALL_TOPICS, Topic
from radstream.contracts import docs, generate

EVENTS_MD = generate.REPO_ROOT / "docs" / "events.md"


@pytest.fixture(scope="module")
def rendered() -> str:
    return docs.render()


@pytest.fixture(scope="module")
def comments() -> dict[str, str]:
    return docs.proto_comments(generate.compile_descriptors(source_info=True))


def _declared_names() -> list[str]:
    """Full names of every message, field, enum, enum value, service and method declared."""
    names: list[str] = []

    def message(prefix: str, m: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{m.name}"
        names.append(name)
        names.extend(f"{name}.{f.name}" for f in m.field)
        names.extend(f"{name}.{o.name}" for o in m.oneof_decl)
        for nested in m.nested_type:
            message(name, nested)
        for e in m.enum_type:
            enum(name, e)

    def enum(prefix: str, e: descriptor_pb2.EnumDescriptorProto) -> None:
        name = f"{prefix}.{e.name}"
        names.append(name)
        names.extend(f"{name}.{v.name}" for v in e.value)

    for file in generate.compile_descriptors().file:
        for m in file.message_type:
            message(file.package, m)
        for e in file.enum_type:
            enum(file.package, e)
        for s in file.service:
            names.append(f"{file.package}.{s.name}")
            names.extend(f"{file.package}.{s.name}.{method.name}" for method in s.method)
    return names


def test_every_message_field_oneof_enum_value_service_and_method_has_a_comment(
    comments: dict[str, str],
) -> None:
    undocumented = [name for name in _declared_names() if not comments.get(name)]
    assert undocumented == []


def test_comments_come_from_the_proto_source(comments: dict[str, str]) -> None:
    assert comments["radstream.v1.BlobRef.size"] == "Size of the blob in bytes."


def test_committed_events_doc_is_up_to_date(rendered: str) -> None:
    assert EVENTS_MD.read_text(encoding="utf-8") == rendered, (
        "docs/events.md is stale; run `make docs`"
    )


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda topic: topic.name)
def test_events_doc_describes_each_topic(rendered: str, topic: Topic) -> None:
    for fact in ("name", "dlq", "event_type", "key_field", "description"):
        assert str(getattr(topic, fact)) in rendered, fact


def test_events_doc_documents_each_message_type_once(rendered: str) -> None:
    anchors = [line for line in rendered.splitlines() if line.startswith("#### <a id=")]
    assert len(anchors) == len(set(anchors))
    assert '<a id="radstream.v1.BlobRef"></a>' in rendered


def test_events_doc_describes_the_record_headers(rendered: str) -> None:
    for header in ("ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "traceparent"):
        assert f"`{header}`" in rendered
    assert "`ce_causationid`" in rendered
    assert "application/protobuf" in rendered
    assert "x-radstream-error-" in rendered


def test_events_doc_lists_the_grpc_services(rendered: str) -> None:
    assert "## gRPC services" in rendered
    assert "radstream.v1.TextRecognition" in rendered


def test_docs_module_prints_the_catalogue(
    rendered: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert docs.main() == 0
    assert capsys.readouterr().out == rendered
