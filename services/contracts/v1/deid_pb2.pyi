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

class DeidCompleted(_message.Message):
    __slots__ = ("study_instance_uid", "study_revision", "pseudonymous_study_instance_uid", "results", "profile", "options", "software_version", "audit_record", "burned_in_text_model", "review_task_id", "completed_at")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[DeidCompleted.Outcome]
        OUTCOME_RELEASED: _ClassVar[DeidCompleted.Outcome]
        OUTCOME_HELD: _ClassVar[DeidCompleted.Outcome]
        OUTCOME_REJECTED: _ClassVar[DeidCompleted.Outcome]
    OUTCOME_UNSPECIFIED: DeidCompleted.Outcome
    OUTCOME_RELEASED: DeidCompleted.Outcome
    OUTCOME_HELD: DeidCompleted.Outcome
    OUTCOME_REJECTED: DeidCompleted.Outcome
    class InstanceResult(_message.Message):
        __slots__ = ("original", "released", "outcome", "reasons", "error_code", "min_confidence", "pixel_decision", "pixel_check_ms", "phi_boxes_filled", "text_boxes_kept", "pixel_risk")
        ORIGINAL_FIELD_NUMBER: _ClassVar[int]
        RELEASED_FIELD_NUMBER: _ClassVar[int]
        OUTCOME_FIELD_NUMBER: _ClassVar[int]
        REASONS_FIELD_NUMBER: _ClassVar[int]
        ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
        MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
        PIXEL_DECISION_FIELD_NUMBER: _ClassVar[int]
        PIXEL_CHECK_MS_FIELD_NUMBER: _ClassVar[int]
        PHI_BOXES_FILLED_FIELD_NUMBER: _ClassVar[int]
        TEXT_BOXES_KEPT_FIELD_NUMBER: _ClassVar[int]
        PIXEL_RISK_FIELD_NUMBER: _ClassVar[int]
        original: _common_pb2.InstanceRef
        released: _common_pb2.InstanceRef
        outcome: DeidCompleted.Outcome
        reasons: _containers.RepeatedScalarFieldContainer[str]
        error_code: _common_pb2.ErrorCode
        min_confidence: float
        pixel_decision: str
        pixel_check_ms: float
        phi_boxes_filled: int
        text_boxes_kept: int
        pixel_risk: float
        def __init__(self, original: _Optional[_Union[_common_pb2.InstanceRef, _Mapping]] = ..., released: _Optional[_Union[_common_pb2.InstanceRef, _Mapping]] = ..., outcome: _Optional[_Union[DeidCompleted.Outcome, str]] = ..., reasons: _Optional[_Iterable[str]] = ..., error_code: _Optional[_Union[_common_pb2.ErrorCode, str]] = ..., min_confidence: _Optional[float] = ..., pixel_decision: _Optional[str] = ..., pixel_check_ms: _Optional[float] = ..., phi_boxes_filled: _Optional[int] = ..., text_boxes_kept: _Optional[int] = ..., pixel_risk: _Optional[float] = ...) -> None: ...
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_REVISION_FIELD_NUMBER: _ClassVar[int]
    PSEUDONYMOUS_STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUDIT_RECORD_FIELD_NUMBER: _ClassVar[int]
    BURNED_IN_TEXT_MODEL_FIELD_NUMBER: _ClassVar[int]
    REVIEW_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    study_revision: int
    pseudonymous_study_instance_uid: str
    results: _containers.RepeatedCompositeFieldContainer[DeidCompleted.InstanceResult]
    profile: str
    options: _containers.RepeatedScalarFieldContainer[str]
    software_version: str
    audit_record: _common_pb2.BlobRef
    burned_in_text_model: _common_pb2.ModelRef
    review_task_id: str
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, study_instance_uid: _Optional[str] = ..., study_revision: _Optional[int] = ..., pseudonymous_study_instance_uid: _Optional[str] = ..., results: _Optional[_Iterable[_Union[DeidCompleted.InstanceResult, _Mapping]]] = ..., profile: _Optional[str] = ..., options: _Optional[_Iterable[str]] = ..., software_version: _Optional[str] = ..., audit_record: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., burned_in_text_model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., review_task_id: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
