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
    __slots__ = ("task_id", "kind", "subject_ids", "reasons", "min_confidence", "priority", "payload", "created_at", "held_instances", "max_risk")
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
    HELD_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MAX_RISK_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    kind: ReviewKind
    subject_ids: _containers.RepeatedScalarFieldContainer[str]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    min_confidence: float
    priority: ReviewTask.Priority
    payload: _containers.RepeatedCompositeFieldContainer[_common_pb2.BlobRef]
    created_at: _timestamp_pb2.Timestamp
    held_instances: _containers.RepeatedCompositeFieldContainer[HeldInstance]
    max_risk: float
    def __init__(self, task_id: _Optional[str] = ..., kind: _Optional[_Union[ReviewKind, str]] = ..., subject_ids: _Optional[_Iterable[str]] = ..., reasons: _Optional[_Iterable[str]] = ..., min_confidence: _Optional[float] = ..., priority: _Optional[_Union[ReviewTask.Priority, str]] = ..., payload: _Optional[_Iterable[_Union[_common_pb2.BlobRef, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., held_instances: _Optional[_Iterable[_Union[HeldInstance, _Mapping]]] = ..., max_risk: _Optional[float] = ...) -> None: ...

class PixelBox(_message.Message):
    __slots__ = ("frame", "x", "y", "width", "height")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    frame: int
    x: int
    y: int
    width: int
    height: int
    def __init__(self, frame: _Optional[int] = ..., x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class TextFinding(_message.Message):
    __slots__ = ("box", "text", "recognition_confidence", "detection_score", "phi", "phi_kinds", "phi_score", "reason", "source")
    BOX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RECOGNITION_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    PHI_FIELD_NUMBER: _ClassVar[int]
    PHI_KINDS_FIELD_NUMBER: _ClassVar[int]
    PHI_SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    box: PixelBox
    text: str
    recognition_confidence: float
    detection_score: float
    phi: bool
    phi_kinds: _containers.RepeatedScalarFieldContainer[str]
    phi_score: float
    reason: str
    source: str
    def __init__(self, box: _Optional[_Union[PixelBox, _Mapping]] = ..., text: _Optional[str] = ..., recognition_confidence: _Optional[float] = ..., detection_score: _Optional[float] = ..., phi: bool = ..., phi_kinds: _Optional[_Iterable[str]] = ..., phi_score: _Optional[float] = ..., reason: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class HeldInstance(_message.Message):
    __slots__ = ("original", "candidate", "preview", "findings", "reasons", "risk", "risk_reasons", "min_confidence", "frames_total", "frames_checked")
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    RISK_REASONS_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FRAMES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    original: _common_pb2.InstanceRef
    candidate: _common_pb2.BlobRef
    preview: _common_pb2.BlobRef
    findings: _containers.RepeatedCompositeFieldContainer[TextFinding]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    risk: float
    risk_reasons: _containers.RepeatedScalarFieldContainer[str]
    min_confidence: float
    frames_total: int
    frames_checked: int
    def __init__(self, original: _Optional[_Union[_common_pb2.InstanceRef, _Mapping]] = ..., candidate: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., preview: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., findings: _Optional[_Iterable[_Union[TextFinding, _Mapping]]] = ..., reasons: _Optional[_Iterable[str]] = ..., risk: _Optional[float] = ..., risk_reasons: _Optional[_Iterable[str]] = ..., min_confidence: _Optional[float] = ..., frames_total: _Optional[int] = ..., frames_checked: _Optional[int] = ...) -> None: ...

class ReviewDecision(_message.Message):
    __slots__ = ("task_id", "kind", "decision", "reviewer_pseudonym", "amended_payload", "decided_at", "time_spent_ms", "ai_suggestion_shown_first", "reviewed_instances")
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
    class ReviewedInstance(_message.Message):
        __slots__ = ("original_sha256", "boxes")
        ORIGINAL_SHA256_FIELD_NUMBER: _ClassVar[int]
        BOXES_FIELD_NUMBER: _ClassVar[int]
        original_sha256: str
        boxes: _containers.RepeatedCompositeFieldContainer[PixelBox]
        def __init__(self, original_sha256: _Optional[str] = ..., boxes: _Optional[_Iterable[_Union[PixelBox, _Mapping]]] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    AMENDED_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    TIME_SPENT_MS_FIELD_NUMBER: _ClassVar[int]
    AI_SUGGESTION_SHOWN_FIRST_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    kind: ReviewKind
    decision: ReviewDecision.Decision
    reviewer_pseudonym: str
    amended_payload: _common_pb2.BlobRef
    decided_at: _timestamp_pb2.Timestamp
    time_spent_ms: int
    ai_suggestion_shown_first: bool
    reviewed_instances: _containers.RepeatedCompositeFieldContainer[ReviewDecision.ReviewedInstance]
    def __init__(self, task_id: _Optional[str] = ..., kind: _Optional[_Union[ReviewKind, str]] = ..., decision: _Optional[_Union[ReviewDecision.Decision, str]] = ..., reviewer_pseudonym: _Optional[str] = ..., amended_payload: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., time_spent_ms: _Optional[int] = ..., ai_suggestion_shown_first: bool = ..., reviewed_instances: _Optional[_Iterable[_Union[ReviewDecision.ReviewedInstance, _Mapping]]] = ...) -> None: ...
