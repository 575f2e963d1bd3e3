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

class RecognizeBatchRequest(_message.Message):
    __slots__ = ("requests", "detect_only")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DETECT_ONLY_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RecognizeRequest]
    detect_only: bool
    def __init__(self, requests: _Optional[_Iterable[_Union[RecognizeRequest, _Mapping]]] = ..., detect_only: bool = ...) -> None: ...

class RecognizeBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[RecognizeResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[RecognizeResponse, _Mapping]]] = ...) -> None: ...

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
    __slots__ = ("box", "polygon", "text", "confidence", "detection_score")
    BOX_FIELD_NUMBER: _ClassVar[int]
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DETECTION_SCORE_FIELD_NUMBER: _ClassVar[int]
    box: BoundingBox
    polygon: _containers.RepeatedCompositeFieldContainer[Point]
    text: str
    confidence: float
    detection_score: float
    def __init__(self, box: _Optional[_Union[BoundingBox, _Mapping]] = ..., polygon: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., text: _Optional[str] = ..., confidence: _Optional[float] = ..., detection_score: _Optional[float] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("regions", "engine", "elapsed_ms", "models", "image_width", "image_height")
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    regions: _containers.RepeatedCompositeFieldContainer[TextRegion]
    engine: _common_pb2.ModelRef
    elapsed_ms: int
    models: str
    image_width: int
    image_height: int
    def __init__(self, regions: _Optional[_Iterable[_Union[TextRegion, _Mapping]]] = ..., engine: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., elapsed_ms: _Optional[int] = ..., models: _Optional[str] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ...) -> None: ...

class DescribeEngineRequest(_message.Message):
    __slots__ = ("languages",)
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    languages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, languages: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeEngineResponse(_message.Message):
    __slots__ = ("engine", "models", "languages", "default_max_side", "max_image_pixels", "max_image_side", "max_message_bytes", "max_batch_images")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_IMAGES_FIELD_NUMBER: _ClassVar[int]
    engine: _common_pb2.ModelRef
    models: str
    languages: _containers.RepeatedScalarFieldContainer[str]
    default_max_side: int
    max_image_pixels: int
    max_image_side: int
    max_message_bytes: int
    max_batch_images: int
    def __init__(self, engine: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., models: _Optional[str] = ..., languages: _Optional[_Iterable[str]] = ..., default_max_side: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., max_image_side: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_batch_images: _Optional[int] = ...) -> None: ...
