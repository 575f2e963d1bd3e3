"""RapidOCR: PP-OCRv6 (small) detector and recognizer as ONNX on onnxruntime, in process.

The models are the three files in the rapidocr wheel (:func:`ppocr.model_files`); nothing is
downloaded. The engine drives rapidocr's own stages -- its detector (DB), direction classifier
and recognizer (CTC) -- rather than calling ``RapidOCR()(image)``, for four reasons:

* ``detect`` runs the detector alone, and both calls keep DB's per-box score, which rapidocr's
  combined output drops;
* rapidocr's per-call ``use_det``/``use_rec`` switches set attributes on the shared object, so
  two threads asking for different things would race; the stages themselves keep no per-call
  state, so one engine serves many threads (``concurrent`` is True);
* rapidocr drops reads below 0.5 confidence and empty reads; here every detected region is
  returned, read or not, because "text found but not read" is a risk signal for de-identification;
* ``max_side`` must bound the cost: rapidocr's detector brings the shorter side *up* to 736
  pixels, which would undo any downscaling. With ``max_side`` set, the detector's input is capped
  at ``max_side`` on its longer side as well (see :func:`detector_limit`).

Without ``max_side`` the result is rapidocr's own (the tests check it against ``RapidOCR()``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from radstream.common.errors import MissingExtraError
from radstream.ocr.engine import EngineInfo, Image, TextRegion, sorted_regions
from radstream.ocr.engines.ppocr import PpOcrParameters, model_files
from radstream.ocr.engines.prepared import PreparedImage, prepare

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["RapidOcrEngine", "detector_limit"]

_RAPIDOCR_LOGGER = "RapidOCR"


@contextlib.contextmanager
def _quiet_rapidocr() -> Iterator[None]:
    """Hold rapidocr's logger at WARNING while models load, then restore its level.

    rapidocr logs each model it loads at INFO through its own stderr handler, past our log
    filters; nothing it logs at run time is reached by this engine.
    """
    logger = logging.getLogger(_RAPIDOCR_LOGGER)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def detector_limit(
    height: int, width: int, parameters: PpOcrParameters, max_side: int
) -> tuple[int, Literal["min", "max"]]:
    """The detector's resize rule for an image this size: ``(limit_side_len, limit_type)``.

    PP-OCR's rule (``parameters.det_limit_*``) scales the image up so its shorter side reaches
    736 pixels; when ``max_side`` is positive the scale is also capped so the longer side does
    not pass ``max_side``. The result is expressed in rapidocr's two modes: "min" when the image
    is scaled up (or kept), "max" when it is scaled down.
    """
    shorter, longer = min(height, width), max(height, width)
    limit = parameters.det_limit_side_len
    ratio = 1.0
    if parameters.det_limit_type == "min" and shorter < limit:
        ratio = limit / shorter
    elif parameters.det_limit_type == "max" and longer > limit:
        ratio = limit / longer
    if max_side > 0:
        ratio = min(ratio, max_side / longer)
    if ratio >= 1.0:
        return max(1, round(shorter * ratio)), "min"
    return max(1, round(longer * ratio)), "max"


@dataclass(frozen=True, slots=True)
class _Detection:
    """The detector's quads in the prepared image's coordinates, and the image they came from."""

    quads: npt.NDArray[np.float32]  # (N, 4, 2), clockwise from top-left
    scores: list[float]
    padded: Image  # the BGR image the quads index (after bounds and vertical padding)
    prepared: PreparedImage
    top: int = 0  # rows of vertical padding above the image
    ratio_h: float = 1.0  # prepared pixels per padded pixel, down and across
    ratio_w: float = 1.0

    def unpadded(self, quad: npt.NDArray[np.float32]) -> list[tuple[float, float]]:
        """A quad's corners in the prepared image's coordinates (padding and bounds undone)."""
        return [(float(x) * self.ratio_w, (float(y) - self.top) * self.ratio_h) for x, y in quad]


class RapidOcrEngine:
    """PP-OCRv6 small on onnxruntime (CPU); ``threads`` caps onnxruntime's intra-op threads.

    ``threads=0`` leaves onnxruntime's default (one per physical core).
    """

    def __init__(self, *, parameters: PpOcrParameters | None = None, threads: int = 0) -> None:
        try:
            from rapidocr import RapidOCR  # noqa: PLC0415 -- heavy; loaded with the engine
            from rapidocr.ch_ppocr_cls import TextClassifier  # noqa: PLC0415
            from rapidocr.ch_ppocr_det import TextDetector  # noqa: PLC0415
            from rapidocr.ch_ppocr_rec import TextRecognizer  # noqa: PLC0415
        except ImportError as error:
            raise MissingExtraError("rapidocr", "ocr") from error

        self.parameters = parameters if parameters is not None else PpOcrParameters()
        self.model_files = model_files()
        params: dict[str, Any] = self.parameters.rapidocr_params()
        params |= {
            "Global.log_level": "warning",  # RapidOCR() sets it; _quiet_rapidocr restores it
            "Det.model_path": str(self.model_files.detector),
            "Cls.model_path": str(self.model_files.classifier),
            "Rec.model_path": str(self.model_files.recognizer),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads if threads > 0 else -1,
        }
        with _quiet_rapidocr():
            config = RapidOCR(params=params).cfg  # rapidocr's config, resolved and validated
            onnxruntime_config = config.EngineConfig.onnxruntime
            for stage in (config.Det, config.Cls, config.Rec):
                stage.engine_cfg = onnxruntime_config
                stage.model_root_dir = config.Global.model_root_dir
            config.Rec.font_path = None
            self._detector = TextDetector(config.Det)
            self._classifier = TextClassifier(config.Cls) if self.parameters.use_cls else None
            self._recognizer = TextRecognizer(config.Rec)
        models = self.model_files.names
        if self.parameters.use_cls:
            models += f"+{self.model_files.classifier.stem}"
        self._info = EngineInfo(
            name="rapidocr", version=metadata.version("rapidocr"), models=models
        )

    @property
    def info(self) -> EngineInfo:
        """The rapidocr version and the PP-OCR models it runs."""
        return self._info

    @property
    def concurrent(self) -> bool:
        """True: onnxruntime sessions and rapidocr's stages keep no per-call state."""
        return True

    def detect(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """The detector alone: boxes with DB scores, no text."""
        detection = self._detect(image, max_side)
        prepared = detection.prepared
        regions = [
            prepared.region(detection.unpadded(quad), detection_score=score)
            for quad, score in zip(detection.quads, detection.scores, strict=True)
        ]
        return sorted_regions([r for r in regions if r is not None])

    def recognize(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """Detector, (classifier,) recognizer: every detected box with its text and confidences.

        A box the recognizer reads as nothing is kept with empty text and confidence 0.
        """
        from rapidocr.ch_ppocr_rec import TextRecInput  # noqa: PLC0415
        from rapidocr.utils.process_img import get_rotate_crop_image  # noqa: PLC0415

        detection = self._detect(image, max_side)
        if not len(detection.quads):
            return []
        strips = [get_rotate_crop_image(detection.padded, quad.copy()) for quad in detection.quads]
        if self._classifier is not None:
            strips = self._classifier(strips).img_list or strips
        read = self._recognizer(TextRecInput(img=strips, return_word_box=False))
        texts = read.txts or ("",) * len(strips)
        confidences = read.scores or (0.0,) * len(strips)
        regions: list[TextRegion | None] = []
        for quad, score, raw, confidence in zip(
            detection.quads, detection.scores, texts, confidences, strict=True
        ):
            text = str(raw).strip()
            regions.append(
                detection.prepared.region(
                    detection.unpadded(quad),
                    text=text,
                    confidence=float(confidence) if text else 0.0,
                    detection_score=score,
                )
            )
        return sorted_regions([r for r in regions if r is not None])

    def _detect(self, image: Image, max_side: int) -> _Detection:
        """Prepare, bound, pad, detect: rapidocr's pipeline up to the quads."""
        import cv2  # noqa: PLC0415
        from rapidocr.ch_ppocr_det.utils import DetPreProcess  # noqa: PLC0415
        from rapidocr.utils.process_img import (  # noqa: PLC0415
            apply_vertical_padding,
            resize_image_within_bounds,
        )

        prepared = prepare(image, max_side)
        pixels = prepared.pixels
        bgr = (
            cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
            if pixels.ndim == 2
            else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        )
        p = self.parameters
        bounded, ratio_h, ratio_w = resize_image_within_bounds(bgr, p.min_side_len, p.max_side_len)
        top = 0
        if p.use_vertical_padding:
            bounded, record = apply_vertical_padding(
                bounded, {}, p.width_height_ratio, p.min_height
            )
            top = int(record["padding_1"]["top"])
        height, width = bounded.shape[:2]
        limit, limit_type = detector_limit(height, width, p, max_side)
        tensor = DetPreProcess(limit, limit_type, list(p.mean), list(p.std))(bounded)
        empty = np.zeros((0, 4, 2), np.float32)
        if tensor is None:
            return _Detection(empty, [], bounded, prepared)
        probabilities = self._detector.session(tensor)
        quads, scores = self._detector.postprocess_op(probabilities, (height, width))
        if not len(quads):
            return _Detection(empty, [], bounded, prepared)
        return _Detection(
            np.asarray(quads, np.float32),
            [float(s) for s in scores],
            bounded,
            prepared,
            top=top,
            ratio_h=float(ratio_h),
            ratio_w=float(ratio_w),
        )
