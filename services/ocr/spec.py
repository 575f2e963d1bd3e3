"""The ocr service as the registry knows it: its gRPC port. Light: no engine, no numpy."""

from __future__ import annotations

from radstream.common.service_spec import ServiceSpec

SERVICE = ServiceSpec(
    name="ocr",
    app_factory="radstream.ocr.app:create_app",
    description=(
        "Finds and reads text in images over gRPC (TextRecognition: Recognize, Detect, "
        "RecognizeBatch) for deid's pixel stage; one engine per server (RapidOCR by default)."
    ),
    ports={"gRPC (TextRecognition)": "RADSTREAM_OCR_PORT"},
)
