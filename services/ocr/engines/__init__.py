"""OCR engines behind :class:`radstream.ocr.engine.OcrEngine`, chosen by name.

=============  ===============================================================  ==============
name           what runs                                                        extra
=============  ===============================================================  ==============
``rapidocr``   PP-OCRv6 small (ONNX, onnxruntime) in process; the default        ``ocr``
``tesseract``  the Debian ``tesseract`` 5 program, one process per call          ``ocr``
``easyocr``    EasyOCR's CRAFT + english_g2 on torch, CPU                        ``easyocr``
``kserve``     PP-OCRv6 on a KServe v2 model server (Triton), tensors over gRPC  ``kserve``
=============  ===============================================================  ==============

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
