"""The topic registry: names, keys, dead-letter topics and event types."""

from __future__ import annotations

import dataclasses
import re

import pytest
from google.protobuf.descriptor import FieldDescriptor

from radstream.common import topics
from radstream.common.topics import (
    ALL_TOPICS,
    CLINICAL_OBSERVATION_V1,
    INSTANCE_STORED_V1,
    REPORT_RECEIVED_V1,
    STUDY_RECEIVED_V1,
    Topic,
    is_dlq,
    topic_for_event_type,
    topic_named,
)
from radstream.contracts.v1 import clinical_pb2, common_pb2, imaging_pb2, reports_pb2

TOPIC_NAME = re.compile(r"^radstream\.[a-z]+\.[a-z-]+\.v1$")

# Synthetic identifiers standing in for PHI: none may appear in an error message.
PATIENT_ID = "PAT-0042-SYNTHETIC"
ACCESSION = "ACC-9917-SYNTHETIC"

by_name = pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda topic: topic.name)


@by_name
def test_every_topic_name_reads_radstream_domain_event_v1(topic: Topic) -> None:
    assert TOPIC_NAME.match(topic.name)


@by_name
def test_topic_constant_mirrors_the_topic_name(topic: Topic) -> None:
    constant = topic.name.removeprefix("radstream.").replace(".", "_").replace("-", "_").upper()
    assert getattr(topics, constant) is topic


def test_topic_names_are_unique() -> None:
    names = [topic.name for topic in ALL_TOPICS]
    assert len(names) == len(set(names))


def test_each_message_type_has_exactly_one_topic() -> None:
    event_types = [topic.event_type for topic in ALL_TOPICS]
    assert len(event_types) == len(set(event_types))


@by_name
def test_key_field_is_a_string_field_of_the_message(topic: Topic) -> None:
    descriptor = topic.message.DESCRIPTOR
    *parents, leaf = topic.key_field.split(".")
    for part in parents:
        field = descriptor.fields_by_name[part]
        assert field.message_type is not None
        descriptor = field.message_type
    assert descriptor.fields_by_name[leaf].type == FieldDescriptor.TYPE_STRING


@by_name
def test_event_type_is_the_full_protobuf_name_of_the_message(topic: Topic) -> None:
    assert topic.event_type == topic.message.DESCRIPTOR.full_name
    assert topic.event_type.startswith("radstream.v1.")


@by_name
def test_dead_letter_topic_is_the_name_with_a_dlq_suffix(topic: Topic) -> None:
    assert topic.dlq == f"{topic.name}.dlq"
    assert is_dlq(topic.dlq)
    assert not is_dlq(topic.name)


@by_name
def test_zone_is_phi_or_release_and_partitions_positive(topic: Topic) -> None:
    assert topic.zone in ("phi", "release")
    assert topic.partitions >= 1
    assert topic.description


def test_only_pseudonymous_predictions_leave_the_phi_zone() -> None:
    released = [topic.name for topic in ALL_TOPICS if topic.zone == "release"]
    assert released == ["radstream.fusion.prediction.v1"]


def test_dead_letter_topics_of_unknown_topics_are_not_recognised() -> None:
    assert not is_dlq("radstream.unknown.thing.v1.dlq")


@by_name
def test_topic_named_finds_every_registered_topic(topic: Topic) -> None:
    assert topic_named(topic.name) is topic


def test_topic_named_rejects_a_dead_letter_name_and_says_so() -> None:
    with pytest.raises(KeyError, match="dead-letter"):
        topic_named(STUDY_RECEIVED_V1.dlq)


def test_topic_named_rejects_unknown_names() -> None:
    with pytest.raises(KeyError, match=r"radstream\.nothing\.here\.v1"):
        topic_named("radstream.nothing.here.v1")


@by_name
def test_topic_for_event_type_finds_the_topic_carrying_it(topic: Topic) -> None:
    assert topic_for_event_type(topic.event_type) is topic


def test_topic_for_event_type_rejects_messages_without_a_topic() -> None:
    with pytest.raises(KeyError, match=r"radstream\.v1\.BlobRef"):
        topic_for_event_type("radstream.v1.BlobRef")


def test_key_of_returns_the_key_field_as_utf8() -> None:
    event = reports_pb2.ReportReceived(report_id="ris-1/Bericht-ü", patient_id=PATIENT_ID)
    assert REPORT_RECEIVED_V1.key_of(event) == "ris-1/Bericht-ü".encode()


def test_key_of_follows_a_dotted_key_field_into_sub_messages() -> None:
    instance = common_pb2.InstanceRef(study_instance_uid="1.2.3", sop_instance_uid="1.2.3.4")
    event = imaging_pb2.InstanceStored(instance=instance)
    assert INSTANCE_STORED_V1.key_of(event) == b"1.2.3"


def test_key_of_an_unset_sub_message_is_an_empty_key() -> None:
    with pytest.raises(ValueError, match=r"instance\.study_instance_uid"):
        INSTANCE_STORED_V1.key_of(imaging_pb2.InstanceStored(calling_ae_title="MODALITY1"))


def test_key_of_an_empty_key_names_the_field_but_no_value() -> None:
    event = imaging_pb2.StudyReceived(accession_number=ACCESSION, patient_id=PATIENT_ID)

    with pytest.raises(ValueError, match="study_instance_uid") as raised:
        STUDY_RECEIVED_V1.key_of(event)

    assert PATIENT_ID not in str(raised.value)
    assert ACCESSION not in str(raised.value)


def test_key_of_a_message_of_another_type_is_refused_without_its_values() -> None:
    event = clinical_pb2.ClinicalObservation(patient_id=PATIENT_ID, observation_id="obs-1")

    with pytest.raises(TypeError, match=r"radstream\.v1\.ClinicalObservation") as raised:
        STUDY_RECEIVED_V1.key_of(event)

    assert PATIENT_ID not in str(raised.value)


def test_key_of_a_patient_keyed_topic_is_the_patient_id() -> None:
    event = clinical_pb2.ClinicalObservation(patient_id=PATIENT_ID)
    assert CLINICAL_OBSERVATION_V1.key_of(event) == PATIENT_ID.encode()


def test_topics_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        STUDY_RECEIVED_V1.partitions = 12  # type: ignore[misc]


def test_partitions_default_to_three() -> None:
    topic = Topic(
        name="radstream.test.thing-happened.v1",
        message=imaging_pb2.StudyReceived,
        key_field="study_instance_uid",
        zone="phi",
        description="test",
    )
    assert topic.partitions == 3


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"name": "study-received"}, "radstream.<domain>.<event>"),
        ({"key_field": "no_such_field"}, "no field 'no_such_field'"),
        ({"key_field": "instances"}, "must be a string"),
        ({"key_field": "revision"}, "must be a string"),
        ({"zone": "public"}, "zone"),
        ({"partitions": 0}, "partitions"),
    ],
)
def test_a_misdeclared_topic_is_refused_when_defined(
    change: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        dataclasses.replace(STUDY_RECEIVED_V1, **change)
