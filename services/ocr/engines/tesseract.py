"""Tesseract 5 (the Debian package) through pytesseract: words grouped into line boxes.

Layout: page segmentation mode 11, "sparse text: find as much text as possible in no particular
order". Burned-in annotations are short runs scattered along the borders (a name and date band
across the top, probe and gain settings down one side), not paragraphs; the layout modes that
look for columns and blocks (3, the default, and 6, "one uniform block") drop isolated labels.
Measured on the two real ultrasound files of ``deid-data``: the words read at confidence >= 50
were 29 with psm 11 against 18 with psm 3 and 27-28 with psm 6 on the grayscale one (psm 3 lost
the whole left-hand settings column), and 34-35 with 11 and 6 against 31 with psm 3 on the RGB
one; every PHI word of the top band was read in all three. 12 (sparse with orientation
detection) reads the same as 11 and adds the orientation pass.

Polarity: Tesseract is built for dark text on a light page. Medical images are the opposite
(light text on black), so an image whose median is dark is inverted first; on the same files
this read the same words and took about a third less time (Tesseract's own inversion retry no
longer runs).

``detect`` runs the same recognition and drops the text: Tesseract has no separate detector,
so it is no cheaper. Tesseract has no detection score either: a line's ``detection_score`` is its
recognition confidence (the mean of its words' confidences), in both calls.

Each call runs its own ``tesseract`` process (pytesseract writes the image to a temporary file),
so one engine serves many threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

import cv2
import numpy as np

from radstream.common.errors import MisconfiguredError, MissingExtraError
from radstream.ocr.engine import EngineInfo, Image, TextRegion, sorted_regions
from radstream.ocr.engines.prepared import PreparedImage, prepare

__all__ = ["TesseractEngine"]

DEFAULT_PSM = 11


@dataclass(slots=True)
class _Line:
    """Words sharing Tesseract's (block, paragraph, line) number."""

    left: int
    top: int
    right: int
    bottom: int
    words: list[str]
    confidences: list[float]

    def add(self, box: tuple[int, int, int, int], word: str, conf: float) -> None:
        """One more word: ``box`` is its (left, top, right, bottom)."""
        left, top, right, bottom = box
        self.left, self.top = min(self.left, left), min(self.top, top)
        self.right, self.bottom = max(self.right, right), max(self.bottom, bottom)
        self.words.append(word)
        self.confidences.append(conf)


class TesseractEngine:
    """Tesseract via pytesseract; ``psm`` the page segmentation mode, ``timeout_s`` per call."""

    def __init__(
        self, *, psm: int = DEFAULT_PSM, language: str = "eng", timeout_s: float = 60.0
    ) -> None:
        try:
            import pytesseract  # type: ignore[import-untyped]  # noqa: PLC0415 -- lazy
        except ImportError as error:
            raise MissingExtraError("pytesseract", "ocr") from error
        try:
            version = str(pytesseract.get_tesseract_version())
        except (pytesseract.TesseractNotFoundError, OSError) as error:
            raise MisconfiguredError(
                "the tesseract program is not installed (Debian: apt-get install tesseract-ocr)"
            ) from error
        if language not in pytesseract.get_languages(config=""):
            raise MisconfiguredError(
                f"tesseract has no {language!r} language data (apt-get install tesseract-ocr-eng)"
            )
        self._pytesseract: Any = pytesseract
        self._config = f"--psm {int(psm)}"
        self._language = language
        self._timeout_s = timeout_s
        self._info = EngineInfo(
            name="tesseract",
            version=metadata.version("pytesseract"),
            models=f"tesseract {version} {language} psm {int(psm)}",
        )

    @property
    def info(self) -> EngineInfo:
        """Pytesseract's version; the models field names the tesseract binary and language."""
        return self._info

    @property
    def concurrent(self) -> bool:
        """True: every call is its own tesseract process."""
        return True

    def detect(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """Text lines without their text (a full recognition: Tesseract has no detector)."""
        return [
            TextRegion(
                box=r.box,
                detection_score=r.detection_score,
                polygon=r.polygon,
            )
            for r in self.recognize(image, max_side=max_side)
        ]

    def recognize(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """Text lines with their words joined by spaces and their mean confidence."""
        prepared = prepare(image, max_side)
        data = self._pytesseract.image_to_data(
            _dark_on_light(prepared.pixels),
            lang=self._language,
            config=self._config,
            output_type=self._pytesseract.Output.DICT,
            timeout=self._timeout_s,
        )
        return sorted_regions(_regions(data, prepared))


def _dark_on_light(pixels: Image) -> Image:
    """Grayscale with dark text on a light background (inverted when the median is dark)."""
    gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    gray = np.asarray(gray, dtype=np.uint8)
    if float(np.median(gray)) < 128:
        return np.asarray(255 - gray, dtype=np.uint8)
    return gray


def _regions(data: dict[str, list[Any]], prepared: PreparedImage) -> list[TextRegion]:
    """Tesseract's word rows grouped into lines, in the original image's coordinates."""
    lines: dict[tuple[int, int, int], _Line] = {}
    for index, raw in enumerate(data["text"]):
        word = str(raw).strip()
        conf = float(data["conf"][index])
        if not word or conf < 0:  # conf -1: a page, block, paragraph or line row, not a word
            continue
        key = (
            int(data["block_num"][index]),
            int(data["par_num"][index]),
            int(data["line_num"][index]),
        )
        left, top = int(data["left"][index]), int(data["top"][index])
        box = (left, top, left + int(data["width"][index]), top + int(data["height"][index]))
        line = lines.get(key)
        if line is None:
            lines[key] = _Line(*box, words=[word], confidences=[conf])
        else:
            line.add(box, word, conf)
    regions: list[TextRegion] = []
    for line in lines.values():
        corners = [
            (line.left, line.top),
            (line.right, line.top),
            (line.right, line.bottom),
            (line.left, line.bottom),
        ]
        confidence = float(np.mean(line.confidences)) / 100.0
        region = prepared.region(
            [(float(x), float(y)) for x, y in corners],
            text=" ".join(line.words),
            confidence=confidence,
            detection_score=confidence,
        )
        if region is not None:
            regions.append(region)
    return regions
