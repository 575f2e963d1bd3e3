"""Python code generated from proto/radstream/v1 by radstream.contracts.generate; do not edit.

Regenerate with ``make proto``. gRPC modules are listed by name and not imported here,
so importing the messages does not import grpc.
"""

from types import ModuleType

from radstream.contracts.v1 import (
    clinical_pb2,
    common_pb2,
    deid_pb2,
    fusion_pb2,
    imaging_pb2,
    ocr_pb2,
    reports_pb2,
    review_pb2,
)

__all__ = [
    "GRPC_MODULES",
    "MODULES",
    "clinical_pb2",
    "common_pb2",
    "deid_pb2",
    "fusion_pb2",
    "imaging_pb2",
    "ocr_pb2",
    "reports_pb2",
    "review_pb2",
]

#: Every generated message module, in file-name order.
MODULES: tuple[ModuleType, ...] = (
    clinical_pb2,
    common_pb2,
    deid_pb2,
    fusion_pb2,
    imaging_pb2,
    ocr_pb2,
    reports_pb2,
    review_pb2,
)

#: Import paths of the generated gRPC service modules.
GRPC_MODULES: tuple[str, ...] = (
    "radstream.contracts.v1.ocr_pb2_grpc",
)
