# mypy: disable-error-code="type-arg"
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_EVENT: _ClassVar[ErrorCode]
    ERROR_CODE_BLOB_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_BLOB_CHECKSUM_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_DEPENDENCY_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_TIMEOUT: _ClassVar[ErrorCode]
    ERROR_CODE_RETRIES_EXHAUSTED: _ClassVar[ErrorCode]
    ERROR_CODE_INGEST_NOT_DICOM: _ClassVar[ErrorCode]
    ERROR_CODE_INGEST_MISSING_UID: _ClassVar[ErrorCode]
    ERROR_CODE_INGEST_UNSUPPORTED_TRANSFER_SYNTAX: _ClassVar[ErrorCode]
    ERROR_CODE_INGEST_CONFLICTING_DUPLICATE: _ClassVar[ErrorCode]
    ERROR_CODE_INGEST_UNPARSEABLE_REPORT: _ClassVar[ErrorCode]
    ERROR_CODE_INGEST_UNKNOWN_SENDER: _ClassVar[ErrorCode]
    ERROR_CODE_DEID_PROFILE_ACTION_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_DEID_PIXEL_DECODE_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_DEID_LOW_CONFIDENCE: _ClassVar[ErrorCode]
    ERROR_CODE_DEID_BURNED_IN_TEXT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_DEID_UNSAFE_PRIVATE_TAGS: _ClassVar[ErrorCode]
    ERROR_CODE_DEID_UNSUPPORTED_SOP_CLASS: _ClassVar[ErrorCode]
    ERROR_CODE_DEID_OCR_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_OCR_IMAGE_UNDECODABLE: _ClassVar[ErrorCode]
    ERROR_CODE_OCR_IMAGE_TOO_LARGE: _ClassVar[ErrorCode]
    ERROR_CODE_OCR_UNSUPPORTED_LANGUAGE: _ClassVar[ErrorCode]
    ERROR_CODE_OCR_ENGINE_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_OCR_OVERLOADED: _ClassVar[ErrorCode]
    ERROR_CODE_OCR_ENGINE_NOT_READY: _ClassVar[ErrorCode]
    ERROR_CODE_RESTRUCTURE_TEMPLATE_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_RESTRUCTURE_MODEL_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_RESTRUCTURE_OUTPUT_INVALID: _ClassVar[ErrorCode]
    ERROR_CODE_RESTRUCTURE_UNGROUNDED_FINDINGS: _ClassVar[ErrorCode]
    ERROR_CODE_RESTRUCTURE_REPORT_TOO_LONG: _ClassVar[ErrorCode]
    ERROR_CODE_FUSION_INSUFFICIENT_DATA: _ClassVar[ErrorCode]
    ERROR_CODE_FUSION_FEATURE_OUT_OF_RANGE: _ClassVar[ErrorCode]
    ERROR_CODE_FUSION_STALE_INPUTS: _ClassVar[ErrorCode]
    ERROR_CODE_FUSION_MODEL_FAILED: _ClassVar[ErrorCode]
    ERROR_CODE_REVIEW_TASK_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_REVIEW_TASK_ALREADY_DECIDED: _ClassVar[ErrorCode]
    ERROR_CODE_REVIEW_TASK_EXPIRED: _ClassVar[ErrorCode]
    ERROR_CODE_REVIEW_NOT_AUTHORIZED: _ClassVar[ErrorCode]
    ERROR_CODE_FL_ROUND_TIMEOUT: _ClassVar[ErrorCode]
    ERROR_CODE_FL_UPDATE_REJECTED: _ClassVar[ErrorCode]
    ERROR_CODE_FL_PRIVACY_BUDGET_EXHAUSTED: _ClassVar[ErrorCode]
    ERROR_CODE_FL_AGGREGATION_FAILED: _ClassVar[ErrorCode]

class Zone(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ZONE_UNSPECIFIED: _ClassVar[Zone]
    ZONE_PHI: _ClassVar[Zone]
    ZONE_RELEASE: _ClassVar[Zone]
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_INVALID_EVENT: ErrorCode
ERROR_CODE_BLOB_NOT_FOUND: ErrorCode
ERROR_CODE_BLOB_CHECKSUM_MISMATCH: ErrorCode
ERROR_CODE_DEPENDENCY_UNAVAILABLE: ErrorCode
ERROR_CODE_TIMEOUT: ErrorCode
ERROR_CODE_RETRIES_EXHAUSTED: ErrorCode
ERROR_CODE_INGEST_NOT_DICOM: ErrorCode
ERROR_CODE_INGEST_MISSING_UID: ErrorCode
ERROR_CODE_INGEST_UNSUPPORTED_TRANSFER_SYNTAX: ErrorCode
ERROR_CODE_INGEST_CONFLICTING_DUPLICATE: ErrorCode
ERROR_CODE_INGEST_UNPARSEABLE_REPORT: ErrorCode
ERROR_CODE_INGEST_UNKNOWN_SENDER: ErrorCode
ERROR_CODE_DEID_PROFILE_ACTION_FAILED: ErrorCode
ERROR_CODE_DEID_PIXEL_DECODE_FAILED: ErrorCode
ERROR_CODE_DEID_LOW_CONFIDENCE: ErrorCode
ERROR_CODE_DEID_BURNED_IN_TEXT_FOUND: ErrorCode
ERROR_CODE_DEID_UNSAFE_PRIVATE_TAGS: ErrorCode
ERROR_CODE_DEID_UNSUPPORTED_SOP_CLASS: ErrorCode
ERROR_CODE_DEID_OCR_UNAVAILABLE: ErrorCode
ERROR_CODE_OCR_IMAGE_UNDECODABLE: ErrorCode
ERROR_CODE_OCR_IMAGE_TOO_LARGE: ErrorCode
ERROR_CODE_OCR_UNSUPPORTED_LANGUAGE: ErrorCode
ERROR_CODE_OCR_ENGINE_FAILED: ErrorCode
ERROR_CODE_OCR_OVERLOADED: ErrorCode
ERROR_CODE_OCR_ENGINE_NOT_READY: ErrorCode
ERROR_CODE_RESTRUCTURE_TEMPLATE_NOT_FOUND: ErrorCode
ERROR_CODE_RESTRUCTURE_MODEL_FAILED: ErrorCode
ERROR_CODE_RESTRUCTURE_OUTPUT_INVALID: ErrorCode
ERROR_CODE_RESTRUCTURE_UNGROUNDED_FINDINGS: ErrorCode
ERROR_CODE_RESTRUCTURE_REPORT_TOO_LONG: ErrorCode
ERROR_CODE_FUSION_INSUFFICIENT_DATA: ErrorCode
ERROR_CODE_FUSION_FEATURE_OUT_OF_RANGE: ErrorCode
ERROR_CODE_FUSION_STALE_INPUTS: ErrorCode
ERROR_CODE_FUSION_MODEL_FAILED: ErrorCode
ERROR_CODE_REVIEW_TASK_NOT_FOUND: ErrorCode
ERROR_CODE_REVIEW_TASK_ALREADY_DECIDED: ErrorCode
ERROR_CODE_REVIEW_TASK_EXPIRED: ErrorCode
ERROR_CODE_REVIEW_NOT_AUTHORIZED: ErrorCode
ERROR_CODE_FL_ROUND_TIMEOUT: ErrorCode
ERROR_CODE_FL_UPDATE_REJECTED: ErrorCode
ERROR_CODE_FL_PRIVACY_BUDGET_EXHAUSTED: ErrorCode
ERROR_CODE_FL_AGGREGATION_FAILED: ErrorCode
ZONE_UNSPECIFIED: Zone
ZONE_PHI: Zone
ZONE_RELEASE: Zone

class BlobRef(_message.Message):
    __slots__ = ("uri", "sha256", "size", "media_type")
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    sha256: str
    size: int
    media_type: str
    def __init__(self, uri: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., media_type: _Optional[str] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "backend")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    backend: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., backend: _Optional[str] = ...) -> None: ...

class InstanceRef(_message.Message):
    __slots__ = ("study_instance_uid", "series_instance_uid", "sop_instance_uid", "sop_class_uid", "transfer_syntax_uid", "modality", "blob")
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SOP_CLASS_UID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_SYNTAX_UID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str
    blob: BlobRef
    def __init__(self, study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., sop_instance_uid: _Optional[str] = ..., sop_class_uid: _Optional[str] = ..., transfer_syntax_uid: _Optional[str] = ..., modality: _Optional[str] = ..., blob: _Optional[_Union[BlobRef, _Mapping]] = ...) -> None: ...
