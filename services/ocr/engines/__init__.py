"""OCR engines behind :class:`radstream.ocr.engine.OcrEngine`, chosen by name.

* ``rapidocr`` (the default): PP-OCRv6 small, ONNX on onnxruntime, in process; extra ``ocr``.
* ``tesseract``: the Debian ``tesseract`` 5 program, one process per call; extra ``ocr``.
* ``easyocr``: EasyOCR's CRAFT and english_g2 on torch, CPU; extra ``easyocr``.
* ``kserve``: PP-OCRv6 on a KServe v2 model server (Triton), tensors over gRPC; extra ``kserve``.

Importing this package loads no engine and imports none of rapidocr, onnxruntime, pytesseract,
easyocr or torch: :func:`load_engine` imports an engine's module when it is asked for.
"""

from radstream.ocr.engines.registry import (
    DEFAULT_ENGINE,
    ENGINE_NAMES,
    load_engine,
    shared_engine,
)

__all__ = ["DEFAULT_ENGINE", "ENGINE_NAMES", "load_engine", "shared_engine"]
