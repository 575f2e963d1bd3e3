# mypy: disable-error-code="type-arg"
from radstream.contracts.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RawImage(_message.Message):
    __slots__ = ("pixels", "width", "height", "channels", "bits")
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    pixels: bytes
    width: int
    height: int
    channels: int
    bits: int
    def __init__(self, pixels: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., bits: _Optional[int] = ...) -> None: ...

class RecognizeOptions(_message.Message):
    __slots__ = ("languages", "min_confidence", "max_side")
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    languages: _containers.RepeatedScalarFieldContainer[str]
    min_confidence: float
    max_side: int
    def __init__(self, languages: _Optional[_Iterable[str]] = ..., min_confidence: _Optional[float] = ..., max_side: _Optional[int] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("encoded", "raw", "ref", "options")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    ref: _common_pb2.BlobRef
    options: RecognizeOptions
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ..., ref: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., options: _Optional[_Union[RecognizeOptions, _Mapping]] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class TextRegion(_message.Message):
    __slots__ = ("box", "polygon", "text", "confidence")
    BOX_FIELD_NUMBER: _ClassVar[int]
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    box: BoundingBox
    polygon: _containers.RepeatedCompositeFieldContainer[Point]
    text: str
    confidence: float
    def __init__(self, box: _Optional[_Union[BoundingBox, _Mapping]] = ..., polygon: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., text: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("regions", "engine", "elapsed_ms")
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    regions: _containers.RepeatedCompositeFieldContainer[TextRegion]
    engine: _common_pb2.ModelRef
    elapsed_ms: int
    def __init__(self, regions: _Optional[_Iterable[_Union[TextRegion, _Mapping]]] = ..., engine: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., elapsed_ms: _Optional[int] = ...) -> None: ...
