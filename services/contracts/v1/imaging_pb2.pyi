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

class InstanceStored(_message.Message):
    __slots__ = ("instance", "received_at", "source", "calling_ae_title", "sender_id", "replaces")
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SOURCE_UNSPECIFIED: _ClassVar[InstanceStored.Source]
        SOURCE_C_STORE: _ClassVar[InstanceStored.Source]
        SOURCE_STOW_RS: _ClassVar[InstanceStored.Source]
        SOURCE_PACS_PULL: _ClassVar[InstanceStored.Source]
    SOURCE_UNSPECIFIED: InstanceStored.Source
    SOURCE_C_STORE: InstanceStored.Source
    SOURCE_STOW_RS: InstanceStored.Source
    SOURCE_PACS_PULL: InstanceStored.Source
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CALLING_AE_TITLE_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    instance: _common_pb2.InstanceRef
    received_at: _timestamp_pb2.Timestamp
    source: InstanceStored.Source
    calling_ae_title: str
    sender_id: str
    replaces: _common_pb2.BlobRef
    def __init__(self, instance: _Optional[_Union[_common_pb2.InstanceRef, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[_Union[InstanceStored.Source, str]] = ..., calling_ae_title: _Optional[str] = ..., sender_id: _Optional[str] = ..., replaces: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ...) -> None: ...

class StudyReceived(_message.Message):
    __slots__ = ("study_instance_uid", "accession_number", "patient_id", "instances", "revision", "amended", "first_received_at", "last_received_at")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    ACCESSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    AMENDED_FIELD_NUMBER: _ClassVar[int]
    FIRST_RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    accession_number: str
    patient_id: str
    instances: _containers.RepeatedCompositeFieldContainer[_common_pb2.InstanceRef]
    revision: int
    amended: bool
    first_received_at: _timestamp_pb2.Timestamp
    last_received_at: _timestamp_pb2.Timestamp
    def __init__(self, study_instance_uid: _Optional[str] = ..., accession_number: _Optional[str] = ..., patient_id: _Optional[str] = ..., instances: _Optional[_Iterable[_Union[_common_pb2.InstanceRef, _Mapping]]] = ..., revision: _Optional[int] = ..., amended: bool = ..., first_received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
