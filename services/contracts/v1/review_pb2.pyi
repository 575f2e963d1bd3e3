# mypy: disable-error-code="type-arg"
import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from radstream.contracts.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviewKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_KIND_UNSPECIFIED: _ClassVar[ReviewKind]
    REVIEW_KIND_DEID: _ClassVar[ReviewKind]
    REVIEW_KIND_REPORT: _ClassVar[ReviewKind]
    REVIEW_KIND_FUSION: _ClassVar[ReviewKind]
REVIEW_KIND_UNSPECIFIED: ReviewKind
REVIEW_KIND_DEID: ReviewKind
REVIEW_KIND_REPORT: ReviewKind
REVIEW_KIND_FUSION: ReviewKind

class ReviewTask(_message.Message):
    __slots__ = ("task_id", "kind", "subject_ids", "reasons", "min_confidence", "priority", "payload", "created_at")
    class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PRIORITY_UNSPECIFIED: _ClassVar[ReviewTask.Priority]
        PRIORITY_ROUTINE: _ClassVar[ReviewTask.Priority]
        PRIORITY_URGENT: _ClassVar[ReviewTask.Priority]
        PRIORITY_STAT: _ClassVar[ReviewTask.Priority]
    PRIORITY_UNSPECIFIED: ReviewTask.Priority
    PRIORITY_ROUTINE: ReviewTask.Priority
    PRIORITY_URGENT: ReviewTask.Priority
    PRIORITY_STAT: ReviewTask.Priority
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    kind: ReviewKind
    subject_ids: _containers.RepeatedScalarFieldContainer[str]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    min_confidence: float
    priority: ReviewTask.Priority
    payload: _containers.RepeatedCompositeFieldContainer[_common_pb2.BlobRef]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, task_id: _Optional[str] = ..., kind: _Optional[_Union[ReviewKind, str]] = ..., subject_ids: _Optional[_Iterable[str]] = ..., reasons: _Optional[_Iterable[str]] = ..., min_confidence: _Optional[float] = ..., priority: _Optional[_Union[ReviewTask.Priority, str]] = ..., payload: _Optional[_Iterable[_Union[_common_pb2.BlobRef, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReviewDecision(_message.Message):
    __slots__ = ("task_id", "kind", "decision", "reviewer_pseudonym", "amended_payload", "decided_at", "time_spent_ms", "ai_suggestion_shown_first")
    class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DECISION_UNSPECIFIED: _ClassVar[ReviewDecision.Decision]
        DECISION_APPROVE: _ClassVar[ReviewDecision.Decision]
        DECISION_REJECT: _ClassVar[ReviewDecision.Decision]
        DECISION_AMEND: _ClassVar[ReviewDecision.Decision]
    DECISION_UNSPECIFIED: ReviewDecision.Decision
    DECISION_APPROVE: ReviewDecision.Decision
    DECISION_REJECT: ReviewDecision.Decision
    DECISION_AMEND: ReviewDecision.Decision
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    AMENDED_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    TIME_SPENT_MS_FIELD_NUMBER: _ClassVar[int]
    AI_SUGGESTION_SHOWN_FIRST_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    kind: ReviewKind
    decision: ReviewDecision.Decision
    reviewer_pseudonym: str
    amended_payload: _common_pb2.BlobRef
    decided_at: _timestamp_pb2.Timestamp
    time_spent_ms: int
    ai_suggestion_shown_first: bool
    def __init__(self, task_id: _Optional[str] = ..., kind: _Optional[_Union[ReviewKind, str]] = ..., decision: _Optional[_Union[ReviewDecision.Decision, str]] = ..., reviewer_pseudonym: _Optional[str] = ..., amended_payload: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., time_spent_ms: _Optional[int] = ..., ai_suggestion_shown_first: bool = ...) -> None: ...
