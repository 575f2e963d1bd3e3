"""PP-OCR's models and parameters, shared by every engine that runs them.

Two engines run the same three ONNX files from the ``rapidocr`` wheel: the local
:mod:`radstream.ocr.engines.rapid` (onnxruntime in process) and the remote
:mod:`radstream.ocr.engines.kserve` (the same files on Triton or MLServer, tensors over KServe
v2). They must agree box for box, so the numbers that turn pixels into tensors and tensors into
boxes and text live here once, in :class:`PpOcrParameters`, next to the model files
(:func:`model_files`) and the recognizer's classes (:func:`recognizer_classes`).

The defaults are rapidocr 3.10.0's own (its ``config.yaml``), so the local engine reads what
``RapidOCR()`` reads, with two deliberate differences:

* ``use_cls`` is off: the direction classifier only decides whether a strip is upside down.
  Burned-in annotations are upright; a false "180" (the v2 classifier's threshold is 0.9, and it
  does misfire on short strips) turns a name into unreadable text, which is worse for
  de-identification than the time it costs (one more model per strip).
* no confidence cut: rapidocr drops reads below ``text_score`` 0.5 (and empty reads); an engine
  here keeps every detected region, with its text and confidence, because a region found but not
  read is itself a risk signal for the pixel stage.

Importing this module imports neither rapidocr nor onnxruntime.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from radstream.common.errors import MisconfiguredError, MissingExtraError

__all__ = [
    "CLASSIFIER_MODEL",
    "DETECTOR_MODEL",
    "RECOGNIZER_MODEL",
    "ModelFiles",
    "PpOcrParameters",
    "character_dict",
    "model_files",
    "recognizer_classes",
]

DETECTOR_MODEL = "PP-OCRv6_det_small"
RECOGNIZER_MODEL = "PP-OCRv6_rec_small"
CLASSIFIER_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile"


@dataclass(frozen=True, slots=True)
class PpOcrParameters:
    """Everything between pixels and PP-OCR's tensors, for the detector, classifier, recognizer.

    Images enter the models as 3-channel ``channel_order`` (BGR: the models were trained on
    OpenCV's order), scaled ``(pixel / 255 - mean) / std`` (into [-1, 1]) and laid out NCHW.
    """

    channel_order: Literal["BGR"] = "BGR"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    # Whole-image bounds before detection (rapidocr's Global.max_side_len / min_side_len).
    max_side_len: int = 2000
    min_side_len: int = 30
    # Wide or short images (a cropped band of annotations) are padded with black above and below
    # to a height of 2 * max(width / width_height_ratio, min_height): the detector finds nothing
    # in strips only a few text lines high.
    use_vertical_padding: bool = True
    min_height: int = 30
    width_height_ratio: float = 8.0

    # Detector (DB): the input is resized so that its shorter side is at least det_limit_side_len
    # ("min"; "max": longer side at most), both sides rounded to multiples of det_stride.
    det_limit_side_len: int = 736
    det_limit_type: Literal["min", "max"] = "min"
    det_stride: int = 32
    det_thresh: float = 0.3  # probability above which a pixel is text
    det_box_thresh: float = 0.5  # mean probability inside a box below which it is dropped
    det_max_candidates: int = 1000
    det_unclip_ratio: float = 1.6  # boxes grow by area * ratio / perimeter (DB predicts kernels)
    det_use_dilation: bool = True  # 2 x 2 dilation of the mask before contours
    det_score_mode: Literal["fast", "slow"] = "fast"  # box score over the min-area rectangle

    # Direction classifier (0 or 180 degrees); off by default, see the module docstring.
    use_cls: bool = False
    cls_image_shape: tuple[int, int, int] = (3, 48, 192)
    cls_batch_num: int = 6
    cls_thresh: float = 0.9
    cls_labels: tuple[str, str] = ("0", "180")

    # Recognizer (CTC): strips 48 high, padded on the right to at least 320 wide per batch.
    rec_image_shape: tuple[int, int, int] = (3, 48, 320)
    rec_batch_num: int = 6

    def rapidocr_params(self) -> dict[str, object]:
        """These parameters as ``RapidOCR(params=...)`` keys, for rapidocr's own classes."""
        return {
            "Global.max_side_len": self.max_side_len,
            "Global.min_side_len": self.min_side_len,
            "Global.use_vertical_padding": self.use_vertical_padding,
            "Global.min_height": self.min_height,
            "Global.width_height_ratio": self.width_height_ratio,
            "Global.use_cls": self.use_cls,
            "Global.text_score": 0.0,  # keep every read (module docstring)
            "Det.limit_side_len": self.det_limit_side_len,
            "Det.limit_type": self.det_limit_type,
            "Det.mean": list(self.mean),
            "Det.std": list(self.std),
            "Det.thresh": self.det_thresh,
            "Det.box_thresh": self.det_box_thresh,
            "Det.max_candidates": self.det_max_candidates,
            "Det.unclip_ratio": self.det_unclip_ratio,
            "Det.use_dilation": self.det_use_dilation,
            "Det.score_mode": self.det_score_mode,
            "Cls.cls_batch_num": self.cls_batch_num,
            "Cls.cls_thresh": self.cls_thresh,
            "Cls.label_list": list(self.cls_labels),
            "Rec.rec_img_shape": list(self.rec_image_shape),
            "Rec.rec_batch_num": self.rec_batch_num,
        }


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """The three ONNX files in the installed rapidocr wheel."""

    detector: Path
    recognizer: Path
    classifier: Path

    @property
    def names(self) -> str:
        """The models' names for ``EngineInfo.models``: detector+recognizer."""
        return f"{self.detector.stem}+{self.recognizer.stem}"


@cache
def model_files() -> ModelFiles:
    """Where the installed rapidocr wheel keeps its ONNX models (found without importing it).

    Raises :class:`MissingExtraError` without rapidocr and :class:`MisconfiguredError` when a
    file is missing: rapidocr would download it, which nothing here may do.
    """
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("rapidocr", "ocr")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = ModelFiles(
        detector=folder / f"{DETECTOR_MODEL}.onnx",
        recognizer=folder / f"{RECOGNIZER_MODEL}.onnx",
        classifier=folder / f"{CLASSIFIER_MODEL}.onnx",
    )
    for path in (files.detector, files.recognizer, files.classifier):
        if not path.is_file():
            raise MisconfiguredError(
                f"the rapidocr wheel has no {path.name}; reinstall rapidocr==3.10.0"
            )
    return files


@cache
def character_dict(recognizer: Path | None = None) -> tuple[str, ...]:
    """The recognizer's characters, in class order, from the ONNX file's ``character`` metadata.

    The wheel's recognizer carries its dictionary inside the model (18,708 characters for
    PP-OCRv6); there is no separate keys file to drift from it.
    """
    try:
        import onnxruntime  # type: ignore[import-untyped]  # noqa: PLC0415 -- heavy, engines only
    except ImportError as error:
        raise MissingExtraError("onnxruntime", "ocr") from error
    path = recognizer if recognizer is not None else model_files().recognizer
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    session = onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    metadata = session.get_modelmeta().custom_metadata_map
    if "character" not in metadata:
        raise MisconfiguredError(f"{path.name} carries no character dictionary")
    return tuple(metadata["character"].splitlines())


def recognizer_classes(recognizer: Path | None = None) -> tuple[str, ...]:
    """The recognizer's output classes in order: CTC blank (``""``), the characters, ``" "``.

    Its last output axis has exactly this many entries (18,710 for PP-OCRv6); index 0 is the
    blank that greedy CTC decoding drops.
    """
    return ("", *character_dict(recognizer), " ")
