"""Typing stub for the gRPC code generated from radstream/v1/ocr.proto; do not edit.

Written by radstream.contracts.generate; regenerate with ``make proto``.
"""

from collections.abc import AsyncIterator as _AsyncIterator
from collections.abc import Awaitable as _Awaitable
from collections.abc import Iterator as _Iterator
from typing import Any as _Any

import grpc
import grpc.aio

from radstream.contracts.v1 import ocr_pb2 as _ocr_pb2


class TextRecognitionStub:
    def __init__(self, channel: grpc.Channel | grpc.aio.Channel) -> None: ...
    Recognize: _Any
    Detect: _Any
    RecognizeBatch: _Any
    DescribeEngine: _Any


class TextRecognitionServicer:
    def Recognize(self, request: _ocr_pb2.RecognizeRequest, context: grpc.ServicerContext | grpc.aio.ServicerContext) -> _ocr_pb2.RecognizeResponse | _Awaitable[_ocr_pb2.RecognizeResponse]: ...
    def Detect(self, request: _ocr_pb2.RecognizeRequest, context: grpc.ServicerContext | grpc.aio.ServicerContext) -> _ocr_pb2.RecognizeResponse | _Awaitable[_ocr_pb2.RecognizeResponse]: ...
    def RecognizeBatch(self, request: _ocr_pb2.RecognizeBatchRequest, context: grpc.ServicerContext | grpc.aio.ServicerContext) -> _ocr_pb2.RecognizeBatchResponse | _Awaitable[_ocr_pb2.RecognizeBatchResponse]: ...
    def DescribeEngine(self, request: _ocr_pb2.DescribeEngineRequest, context: grpc.ServicerContext | grpc.aio.ServicerContext) -> _ocr_pb2.DescribeEngineResponse | _Awaitable[_ocr_pb2.DescribeEngineResponse]: ...


def add_TextRecognitionServicer_to_server(servicer: TextRecognitionServicer, server: grpc.Server | grpc.aio.Server) -> None: ...
