"""The ``ocr`` service: finds and reads text in images over gRPC (``TextRecognition``).

Engines (RapidOCR, EasyOCR, Tesseract, a KServe v2 remote) sit behind one interface,
:class:`radstream.ocr.engine.OcrEngine`. Importing this package loads no engine.
"""
