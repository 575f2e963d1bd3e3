# mypy: disable-error-code="type-arg"
import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from radstream.contracts.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Estimate(_message.Message):
    __slots__ = ("value", "lower", "upper", "level")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    value: float
    lower: float
    upper: float
    level: float
    def __init__(self, value: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., level: _Optional[float] = ...) -> None: ...

class ModalityAvailability(_message.Message):
    __slots__ = ("modality", "present", "age")
    class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODALITY_UNSPECIFIED: _ClassVar[ModalityAvailability.Modality]
        MODALITY_CT_BODY_COMPOSITION: _ClassVar[ModalityAvailability.Modality]
        MODALITY_CLINICAL: _ClassVar[ModalityAvailability.Modality]
        MODALITY_LABS: _ClassVar[ModalityAvailability.Modality]
        MODALITY_NOTES: _ClassVar[ModalityAvailability.Modality]
    MODALITY_UNSPECIFIED: ModalityAvailability.Modality
    MODALITY_CT_BODY_COMPOSITION: ModalityAvailability.Modality
    MODALITY_CLINICAL: ModalityAvailability.Modality
    MODALITY_LABS: ModalityAvailability.Modality
    MODALITY_NOTES: ModalityAvailability.Modality
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    modality: ModalityAvailability.Modality
    present: bool
    age: _duration_pb2.Duration
    def __init__(self, modality: _Optional[_Union[ModalityAvailability.Modality, str]] = ..., present: bool = ..., age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class FeatureContribution(_message.Message):
    __slots__ = ("feature", "modality", "contribution")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    feature: str
    modality: ModalityAvailability.Modality
    contribution: float
    def __init__(self, feature: _Optional[str] = ..., modality: _Optional[_Union[ModalityAvailability.Modality, str]] = ..., contribution: _Optional[float] = ...) -> None: ...

class FusionPrediction(_message.Message):
    __slots__ = ("patient_pseudonym", "cachexia_risk", "survival_months", "modalities", "contributions", "model", "predicted_at")
    PATIENT_PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    CACHEXIA_RISK_FIELD_NUMBER: _ClassVar[int]
    SURVIVAL_MONTHS_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_AT_FIELD_NUMBER: _ClassVar[int]
    patient_pseudonym: str
    cachexia_risk: Estimate
    survival_months: Estimate
    modalities: _containers.RepeatedCompositeFieldContainer[ModalityAvailability]
    contributions: _containers.RepeatedCompositeFieldContainer[FeatureContribution]
    model: _common_pb2.ModelRef
    predicted_at: _timestamp_pb2.Timestamp
    def __init__(self, patient_pseudonym: _Optional[str] = ..., cachexia_risk: _Optional[_Union[Estimate, _Mapping]] = ..., survival_months: _Optional[_Union[Estimate, _Mapping]] = ..., modalities: _Optional[_Iterable[_Union[ModalityAvailability, _Mapping]]] = ..., contributions: _Optional[_Iterable[_Union[FeatureContribution, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., predicted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
