# mypy: disable-error-code="type-arg"
import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from radstream.contracts.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Code(_message.Message):
    __slots__ = ("system", "code", "display")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    system: str
    code: str
    display: str
    def __init__(self, system: _Optional[str] = ..., code: _Optional[str] = ..., display: _Optional[str] = ...) -> None: ...

class Quantity(_message.Message):
    __slots__ = ("value", "unit")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    value: float
    unit: str
    def __init__(self, value: _Optional[float] = ..., unit: _Optional[str] = ...) -> None: ...

class ClinicalObservation(_message.Message):
    __slots__ = ("patient_id", "observation_id", "code", "quantity", "text", "coded", "effective_time", "source", "extracted_by")
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SOURCE_UNSPECIFIED: _ClassVar[ClinicalObservation.Source]
        SOURCE_FHIR: _ClassVar[ClinicalObservation.Source]
        SOURCE_HL7_ORU: _ClassVar[ClinicalObservation.Source]
        SOURCE_NOTE_EXTRACTION: _ClassVar[ClinicalObservation.Source]
    SOURCE_UNSPECIFIED: ClinicalObservation.Source
    SOURCE_FHIR: ClinicalObservation.Source
    SOURCE_HL7_ORU: ClinicalObservation.Source
    SOURCE_NOTE_EXTRACTION: ClinicalObservation.Source
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CODED_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXTRACTED_BY_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    observation_id: str
    code: Code
    quantity: Quantity
    text: str
    coded: Code
    effective_time: _timestamp_pb2.Timestamp
    source: ClinicalObservation.Source
    extracted_by: _common_pb2.ModelRef
    def __init__(self, patient_id: _Optional[str] = ..., observation_id: _Optional[str] = ..., code: _Optional[_Union[Code, _Mapping]] = ..., quantity: _Optional[_Union[Quantity, _Mapping]] = ..., text: _Optional[str] = ..., coded: _Optional[_Union[Code, _Mapping]] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[_Union[ClinicalObservation.Source, str]] = ..., extracted_by: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...
