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

class ReportReceived(_message.Message):
    __slots__ = ("report_id", "accession_number", "patient_id", "modality", "text", "text_ref", "source", "observed_at")
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SOURCE_UNSPECIFIED: _ClassVar[ReportReceived.Source]
        SOURCE_HL7_ORU: _ClassVar[ReportReceived.Source]
        SOURCE_FHIR: _ClassVar[ReportReceived.Source]
    SOURCE_UNSPECIFIED: ReportReceived.Source
    SOURCE_HL7_ORU: ReportReceived.Source
    SOURCE_FHIR: ReportReceived.Source
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TEXT_REF_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    accession_number: str
    patient_id: str
    modality: str
    text: str
    text_ref: _common_pb2.BlobRef
    source: ReportReceived.Source
    observed_at: _timestamp_pb2.Timestamp
    def __init__(self, report_id: _Optional[str] = ..., accession_number: _Optional[str] = ..., patient_id: _Optional[str] = ..., modality: _Optional[str] = ..., text: _Optional[str] = ..., text_ref: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., source: _Optional[_Union[ReportReceived.Source, str]] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportStructured(_message.Message):
    __slots__ = ("report_id", "template_id", "template_version", "sections", "impression", "ungrounded_count", "model", "needs_review")
    class Finding(_message.Message):
        __slots__ = ("text", "source_start", "source_end", "grounded")
        TEXT_FIELD_NUMBER: _ClassVar[int]
        SOURCE_START_FIELD_NUMBER: _ClassVar[int]
        SOURCE_END_FIELD_NUMBER: _ClassVar[int]
        GROUNDED_FIELD_NUMBER: _ClassVar[int]
        text: str
        source_start: int
        source_end: int
        grounded: bool
        def __init__(self, text: _Optional[str] = ..., source_start: _Optional[int] = ..., source_end: _Optional[int] = ..., grounded: bool = ...) -> None: ...
    class OrganSection(_message.Message):
        __slots__ = ("organ", "findings")
        ORGAN_FIELD_NUMBER: _ClassVar[int]
        FINDINGS_FIELD_NUMBER: _ClassVar[int]
        organ: str
        findings: _containers.RepeatedCompositeFieldContainer[ReportStructured.Finding]
        def __init__(self, organ: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[ReportStructured.Finding, _Mapping]]] = ...) -> None: ...
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SECTIONS_FIELD_NUMBER: _ClassVar[int]
    IMPRESSION_FIELD_NUMBER: _ClassVar[int]
    UNGROUNDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NEEDS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    template_id: str
    template_version: str
    sections: _containers.RepeatedCompositeFieldContainer[ReportStructured.OrganSection]
    impression: str
    ungrounded_count: int
    model: _common_pb2.ModelRef
    needs_review: bool
    def __init__(self, report_id: _Optional[str] = ..., template_id: _Optional[str] = ..., template_version: _Optional[str] = ..., sections: _Optional[_Iterable[_Union[ReportStructured.OrganSection, _Mapping]]] = ..., impression: _Optional[str] = ..., ungrounded_count: _Optional[int] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., needs_review: bool = ...) -> None: ...
