"""The Kafka topic registry: every topic radstream publishes, its event type and record key.

Topic names are versioned and read ``radstream.<domain>.<event>.v1`` (for example
``radstream.study.received.v1``); constants mirror them (``STUDY_RECEIVED_V1``). Each topic
carries exactly one protobuf message type, whose full name (``radstream.v1.StudyReceived``) is
the CloudEvents ``ce_type`` header of its records. A breaking change to a message makes a new
``.v2`` topic, announced with a removal date for ``.v1``.

The record key is the ordering key. Kafka keeps order only within a partition, and the key
picks the partition, so every event about one study (one report, one patient, one review task)
is consumed in the order it was produced. Keys are identifiers and some are PHI: error messages
name the key field, never its value.

Every topic has a dead-letter topic, ``<name>.dlq``, which receives records that failed after
bounded retries, with their original bytes and headers.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from radstream.contracts.v1 import (
    clinical_pb2,
    deid_pb2,
    fusion_pb2,
    imaging_pb2,
    reports_pb2,
    review_pb2,
)

__all__ = [
    "ALL_TOPICS",
    "CLINICAL_OBSERVATION_V1",
    "DEID_COMPLETED_V1",
    "DLQ_SUFFIX",
    "FUSION_PREDICTION_V1",
    "INSTANCE_STORED_V1",
    "REPORT_RECEIVED_V1",
    "REPORT_STRUCTURED_V1",
    "REVIEW_DECISION_V1",
    "REVIEW_TASK_V1",
    "STUDY_RECEIVED_V1",
    "Topic",
    "Zone",
    "is_dlq",
    "topic_for_event_type",
    "topic_named",
]

Zone = Literal["phi", "release"]
"""Where a topic's data may flow: ``phi`` stays inside the PHI zone, ``release`` may leave it."""

DLQ_SUFFIX = ".dlq"

_NAME = re.compile(r"^radstream\.[a-z]+\.[a-z-]+\.v[1-9][0-9]*$")


def _descriptor(message: type[Message]) -> Descriptor:
    """Return the descriptor of a generated message class."""
    # types-protobuf types DESCRIPTOR as a union with upb's class; at run time they are one.
    return cast(Descriptor, message.DESCRIPTOR)


@functools.cache  # every publish asks for its key; the answer never changes
def _key_field_path(descriptor: Descriptor, key_field: str) -> tuple[FieldDescriptor, ...]:
    """Resolve a dotted *key_field* on *descriptor* to its chain of fields, or raise ValueError."""
    path: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for part in key_field.split("."):
        field = current.fields_by_name.get(part) if current is not None else None
        if field is None:
            raise ValueError(f"{descriptor.full_name} has no field {key_field!r}")
        path.append(field)
        current = field.message_type
    if path[-1].type != FieldDescriptor.TYPE_STRING or any(field.is_repeated for field in path):
        raise ValueError(f"key field {key_field!r} of {descriptor.full_name} must be a string")
    return tuple(path)


@dataclass(frozen=True, kw_only=True)
class Topic:
    """A Kafka topic and the one event type it carries.

    Parameters
    ----------
    name
        The topic name, ``radstream.<domain>.<event>.v1``.
    message
        The generated protobuf class of the record values.
    key_field
        The field whose value is the record key (the ordering key); dots reach into
        sub-messages, e.g. ``"instance.study_instance_uid"``.
    partitions
        Partitions to create the topic with; the most consumers one group can run in parallel.
    zone
        ``"phi"`` when records hold protected health information, ``"release"`` when they
        hold only de-identified or pseudonymous data.
    description
        One or two sentences for the event catalogue (``docs/events.md``).
    """

    name: str
    message: type[Message]
    key_field: str
    partitions: int = 3
    zone: Zone
    description: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"topic name {self.name!r} is not radstream.<domain>.<event>.v<N>")
        if self.zone not in ("phi", "release"):
            raise ValueError(f"topic {self.name}: zone must be 'phi' or 'release'")
        if self.partitions < 1:
            raise ValueError(f"topic {self.name}: partitions must be at least 1")
        _key_field_path(_descriptor(self.message), self.key_field)

    @property
    def dlq(self) -> str:
        """Name of the dead-letter topic, ``<name>.dlq``."""
        return self.name + DLQ_SUFFIX

    @property
    def event_type(self) -> str:
        """The message's full protobuf name, used as the CloudEvents ``ce_type``."""
        return _descriptor(self.message).full_name

    def key_of(self, message: Message) -> bytes:
        """Return the record key of *message*: its key field, UTF-8 encoded.

        Parameters
        ----------
        message
            An event of this topic's message type.

        Returns
        -------
        bytes
            The key field's value as UTF-8.

        Raises
        ------
        TypeError
            If *message* is not of this topic's message type.
        ValueError
            If the key field is empty; the message names the field, never a value.
        """
        if not isinstance(message, self.message):
            raise TypeError(
                f"topic {self.name} carries {self.event_type}, not {message.DESCRIPTOR.full_name}"
            )
        value: object = message
        for field in _key_field_path(_descriptor(self.message), self.key_field):
            value = getattr(value, field.name)
        if not isinstance(value, str) or not value:
            raise ValueError(
                f"{self.event_type}.{self.key_field} is empty; it is the record key of "
                f"{self.name}, so the producer must set it"
            )
        return value.encode("utf-8")


INSTANCE_STORED_V1 = Topic(
    name="radstream.instance.stored.v1",
    message=imaging_pb2.InstanceStored,
    key_field="instance.study_instance_uid",
    zone="phi",
    description=(
        "Ingest stored one DICOM instance in the PHI store. Keyed by study, so the study "
        "assembler sees a study's instances in arrival order."
    ),
)

STUDY_RECEIVED_V1 = Topic(
    name="radstream.study.received.v1",
    message=imaging_pb2.StudyReceived,
    key_field="study_instance_uid",
    zone="phi",
    description=(
        "A study is complete (no new instance for the quiet period). Late arrivals emit it "
        "again with a higher revision; consumers keep the highest."
    ),
)

DEID_COMPLETED_V1 = Topic(
    name="radstream.deid.completed.v1",
    message=deid_pb2.DeidCompleted,
    key_field="study_instance_uid",
    zone="phi",
    description=(
        "De-identification of a study revision finished: per instance, released to the "
        "release zone, held for review, or rejected. PHI zone because it maps original "
        "UIDs to released ones."
    ),
)

REVIEW_TASK_V1 = Topic(
    name="radstream.review.task.v1",
    message=review_pb2.ReviewTask,
    key_field="task_id",
    zone="phi",
    description="A case held for a human decision; the review service queues it.",
)

REVIEW_DECISION_V1 = Topic(
    name="radstream.review.decision.v1",
    message=review_pb2.ReviewDecision,
    key_field="task_id",
    zone="phi",
    description=(
        "A reviewer decided a review task; the service that raised it releases, amends or "
        "discards the case."
    ),
)

REPORT_RECEIVED_V1 = Topic(
    name="radstream.report.received.v1",
    message=reports_pb2.ReportReceived,
    key_field="report_id",
    zone="phi",
    description="A free-text radiology report arrived from the RIS or EHR (HL7 ORU or FHIR).",
)

REPORT_STRUCTURED_V1 = Topic(
    name="radstream.report.structured.v1",
    message=reports_pb2.ReportStructured,
    key_field="report_id",
    zone="phi",
    description=(
        "A report restructured organ by organ into a template, every finding grounded in "
        "the source text or flagged for review."
    ),
)

FUSION_PREDICTION_V1 = Topic(
    name="radstream.fusion.prediction.v1",
    message=fusion_pb2.FusionPrediction,
    key_field="patient_pseudonym",
    zone="release",
    description=(
        "A cachexia risk and prognosis prediction for a patient, identified by pseudonym, "
        "with the input streams it rested on."
    ),
)

CLINICAL_OBSERVATION_V1 = Topic(
    name="radstream.clinical.observation.v1",
    message=clinical_pb2.ClinicalObservation,
    key_field="patient_id",
    zone="phi",
    description=(
        "A lab result, clinical variable or note-extracted feature for a patient; an input "
        "of fusion."
    ),
)

ALL_TOPICS: tuple[Topic, ...] = (
    INSTANCE_STORED_V1,
    STUDY_RECEIVED_V1,
    DEID_COMPLETED_V1,
    REVIEW_TASK_V1,
    REVIEW_DECISION_V1,
    REPORT_RECEIVED_V1,
    REPORT_STRUCTURED_V1,
    FUSION_PREDICTION_V1,
    CLINICAL_OBSERVATION_V1,
)


def _index(key: str, values: dict[str, Topic]) -> dict[str, Topic]:
    """Return *values*, raising if two topics share a *key* (a registry mistake)."""
    if len(values) != len(ALL_TOPICS):
        raise ValueError(f"two topics in ALL_TOPICS share a {key}; each must be unique")
    return values


_BY_NAME = _index("name", {topic.name: topic for topic in ALL_TOPICS})
_BY_EVENT_TYPE = _index("event type", {topic.event_type: topic for topic in ALL_TOPICS})


def topic_named(name: str) -> Topic:
    """Return the registered topic called *name*.

    Raises
    ------
    KeyError
        If no topic has that name; dead-letter names (``<topic>.dlq``) are not topics here,
        see :func:`is_dlq`.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        hint = (
            "; it is a dead-letter topic, look up its source topic instead" if is_dlq(name) else ""
        )
        raise KeyError(f"no registered topic named {name!r}{hint}") from None


def is_dlq(name: str) -> bool:
    """Return True when *name* is the dead-letter topic of a registered topic."""
    return name.endswith(DLQ_SUFFIX) and name.removesuffix(DLQ_SUFFIX) in _BY_NAME


def topic_for_event_type(ce_type: str) -> Topic:
    """Return the topic that carries events of CloudEvents type *ce_type*.

    Raises
    ------
    KeyError
        If no registered topic carries that event type.
    """
    try:
        return _BY_EVENT_TYPE[ce_type]
    except KeyError:
        raise KeyError(f"no registered topic carries event type {ce_type!r}") from None
