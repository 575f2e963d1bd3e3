"""OCR engines behind :class:`radstream.ocr.engine.OcrEngine`. Importing this package loads none."""
