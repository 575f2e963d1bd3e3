"""PP-OCR's tensors in and out, in NumPy and OpenCV: everything around the two ONNX models.

The remote engine (:mod:`radstream.ocr.engines.kserve`) runs only the detector and the
recognizer on a model server; pixels become input tensors here, and the output tensors become
boxes and text here. Keeping this side pure (arrays in, arrays out, no model, no I/O) makes it
testable on hand-made probability maps and logits, and lets the remote engine agree with the
local RapidOCR engine box for box: both follow PaddleOCR's published algorithm with the same
parameters.

* Detection (DB, "Differentiable Binarization"): the detector returns, per pixel of a resized
  image, the probability that it lies inside text. Thresholding gives a mask; each connected
  region's minimum-area rectangle is scored by the mean probability inside it, and -- because DB
  is trained to predict a *shrunk* text kernel -- grown back by ``area * unclip_ratio /
  perimeter`` pixels (a rounded polygon offset) before it is mapped to image coordinates.
* Recognition (CRNN/SVTR with CTC): each region is warped upright to a strip 48 pixels high,
  normalised, padded on the right to the batch's widest strip; the recognizer returns per time
  step a distribution over ``[blank] + characters + [" "]``; greedy CTC decoding takes the best
  class per step, merges repeats and drops blanks, and the confidence is the mean probability of
  the characters kept.

Nothing here logs: the text decoded may be PHI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import pyclipper  # type: ignore[import-untyped]

__all__ = [
    "DetectorInput",
    "Framed",
    "Quad",
    "bgr",
    "ctc_greedy_decode",
    "db_quads",
    "detector_input",
    "framed",
    "recognizer_batches",
    "upright_crop",
]

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

Triple = tuple[float, float, float]

_MIN_SHORT_SIDE = 3  # DB drops rectangles thinner than this (pixels of the probability map)


@dataclass(frozen=True, slots=True)
class Quad:
    """A text region's corners in image pixels, clockwise from the top-left, and its DB score."""

    points: tuple[tuple[float, float], ...]
    score: float

    def array(self) -> FloatArray:
        """The corners as a ``(4, 2)`` float32 array."""
        return np.asarray(self.points, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Framed:
    """The image the detector sees, and how its pixels map back to the image it was made from.

    A framed pixel at ``(x, y)`` is the original's ``(x * scale_x, (y - top) * scale_y)``.
    """

    image: UInt8Array
    scale_y: float
    scale_x: float
    top: int

    def unframed(self, quad: Quad) -> list[tuple[float, float]]:
        """``quad``'s corners in the original image's coordinates (unclipped)."""
        return [(x * self.scale_x, (y - self.top) * self.scale_y) for x, y in quad.points]


@dataclass(frozen=True, slots=True)
class DetectorInput:
    """The detector's input tensor and the size of the image its probability map covers.

    ``tensor`` is ``(1, 3, H, W)`` float32 with ``H`` and ``W`` multiples of the stride. The
    detector's probability map has the same ``H`` x ``W``; :func:`db_quads` maps it to the image
    itself (``image_height`` x ``image_width``).
    """

    tensor: FloatArray
    image_height: int
    image_width: int


def bgr(image: UInt8Array) -> UInt8Array:
    """The image as three-channel BGR, the channel order PP-OCR's models were trained on.

    Engines receive grayscale ``(H, W)`` or RGB ``(H, W, 3)``: gray is repeated into three
    channels, RGB is reversed.
    """
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image[:, :, ::-1])
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def _stride_multiple(length: float, stride: int) -> int:
    return max(stride, round(int(length) / stride) * stride)


def _normalised_chw(image: UInt8Array, mean: Triple, std: Triple) -> FloatArray:
    scaled = image.astype(np.float32) * np.float32(1 / 255)
    normalised = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)


def framed(
    image: UInt8Array,
    *,
    min_side: int,
    max_side: int,
    stride: int,
    vertical_padding: bool,
    min_height: int,
    width_height_ratio: float,
) -> Framed:
    """Bring an image within the pipeline's bounds, and pad strips, before detection.

    A longer side above ``max_side`` is brought down to it, a shorter side below ``min_side``
    up to it (both sides then rounded to multiples of ``stride``). With ``vertical_padding``, an
    image at most ``min_height`` high or more than ``width_height_ratio`` times as wide as high
    -- a band of annotations cut from a frame -- gets black rows above and below up to a height
    of ``2 * max(width / width_height_ratio, min_height)``: the detector, trained on pages and
    scenes, finds little in a strip a line or two high.
    """
    height, width = image.shape[:2]
    current = image
    if max(height, width) > max_side:
        ratio = max_side / max(height, width)
        size = (_stride_multiple(width * ratio, stride), _stride_multiple(height * ratio, stride))
        current = np.asarray(cv2.resize(current, size), dtype=np.uint8)
    if min(current.shape[:2]) < min_side:
        ratio = min_side / min(current.shape[:2])
        rows, cols = current.shape[:2]
        size = (_stride_multiple(cols * ratio, stride), _stride_multiple(rows * ratio, stride))
        current = np.asarray(cv2.resize(current, size), dtype=np.uint8)
    rows, cols = current.shape[:2]
    top = 0
    if vertical_padding and (rows <= min_height or cols / rows > width_height_ratio):
        target = max(int(cols / width_height_ratio), min_height) * 2
        top = abs(target - rows) // 2
        padded = cv2.copyMakeBorder(current, top, top, 0, 0, cv2.BORDER_CONSTANT, value=0)
        current = np.asarray(padded, dtype=np.uint8)
    return Framed(
        image=np.asarray(current, dtype=np.uint8),
        scale_y=height / rows,
        scale_x=width / cols,
        top=top,
    )


def detector_input(
    image: UInt8Array,
    *,
    limit_side: int,
    limit_type: Literal["min", "max"],
    stride: int,
    mean: Triple,
    std: Triple,
) -> DetectorInput:
    """Resize a BGR image for the detector and normalise it into a ``(1, 3, H, W)`` tensor.

    ``limit_type="min"`` brings the *shorter* side up to ``limit_side`` when it is shorter (small
    text needs pixels to be found); ``"max"`` brings the *longer* side down to it when it is
    longer (a ceiling on cost). Either way both sides are then rounded to multiples of
    ``stride`` (the detector downsamples by it), so the aspect ratio changes slightly;
    :func:`db_quads` maps each axis back on its own.
    """
    height, width = image.shape[:2]
    ratio = 1.0
    if limit_type == "max" and max(height, width) > limit_side:
        ratio = limit_side / max(height, width)
    elif limit_type == "min" and min(height, width) < limit_side:
        ratio = limit_side / min(height, width)
    size = (_stride_multiple(width * ratio, stride), _stride_multiple(height * ratio, stride))
    resized = np.asarray(cv2.resize(image, size), dtype=np.uint8)
    tensor = _normalised_chw(resized, mean, std)[None]
    return DetectorInput(tensor=tensor, image_height=height, image_width=width)


def _rectangle_corners(rect: cv2.typing.RotatedRect) -> tuple[FloatArray, float]:
    """A rotated rectangle's corners clockwise from the top-left, and its shorter side."""
    corners = np.asarray(cv2.boxPoints(rect), dtype=np.float32)
    return _clockwise(corners), float(min(rect[1]))


def _clockwise(corners: FloatArray) -> FloatArray:
    """Four corners ordered top-left, top-right, bottom-right, bottom-left.

    The two leftmost points (by x) are the left edge, the upper of them (smaller y) its top.
    """
    by_x = corners[np.argsort(corners[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.stack([left[0], right[0], right[1], left[1]]).astype(np.float32)


def _mean_inside(probabilities: FloatArray, polygon: FloatArray) -> float:
    """The mean probability inside a polygon (DB's box score), over its bounding box."""
    rows, cols = probabilities.shape
    left = int(np.clip(np.floor(polygon[:, 0].min()), 0, cols - 1))
    right = int(np.clip(np.ceil(polygon[:, 0].max()), 0, cols - 1))
    top = int(np.clip(np.floor(polygon[:, 1].min()), 0, rows - 1))
    bottom = int(np.clip(np.ceil(polygon[:, 1].max()), 0, rows - 1))
    inside = np.zeros((bottom - top + 1, right - left + 1), dtype=np.uint8)
    shifted = (polygon - np.array([left, top], dtype=np.float32)).astype(np.int32)
    cv2.fillPoly(inside, [shifted], 1)
    window = probabilities[top : bottom + 1, left : right + 1]
    return float(cv2.mean(window, inside)[0])


def _grown(corners: FloatArray, unclip_ratio: float) -> npt.NDArray[np.int64] | None:
    """The quadrilateral offset outward by ``area * unclip_ratio / perimeter`` (rounded joins)."""
    area = abs(float(cv2.contourArea(corners)))
    perimeter = float(cv2.arcLength(corners, True))
    if perimeter <= 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(corners.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(area * unclip_ratio / perimeter)
    if len(paths) != 1:  # a degenerate quad vanishes, a pinched one splits: neither is text
        return None
    return np.asarray(paths[0], dtype=np.int64)


def db_quads(
    probabilities: FloatArray,
    *,
    image_height: int,
    image_width: int,
    threshold: float,
    box_threshold: float,
    unclip_ratio: float,
    max_candidates: int,
    dilate: bool,
    score_mode: Literal["fast", "slow"] = "fast",
) -> list[Quad]:
    """Text regions from the detector's probability map, in the image's pixel coordinates.

    ``probabilities`` is the map, ``(H, W)`` (or with leading axes of size 1). Pixels above
    ``threshold`` form the mask (``dilate``: grown by a 2 x 2 kernel, which joins characters a
    pixel apart); regions scoring below ``box_threshold`` are dropped. The score is the mean
    probability inside the region's minimum-area rectangle (``"fast"``) or inside its contour
    (``"slow"``: exact for curved text, costlier). Quads are returned in the order the contours
    are found; callers sort.
    """
    rows, cols = (int(n) for n in probabilities.shape[-2:])
    prob = np.asarray(probabilities, dtype=np.float32).reshape(rows, cols)
    mask = (prob > threshold).astype(np.uint8)
    if dilate:
        mask = np.asarray(cv2.dilate(mask, np.ones((2, 2), dtype=np.uint8)), dtype=np.uint8)
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    scale = np.array([image_width / cols, image_height / rows], dtype=np.float32)
    quads: list[Quad] = []
    for contour in contours[:max_candidates]:
        corners, short_side = _rectangle_corners(cv2.minAreaRect(contour))
        if short_side < _MIN_SHORT_SIDE:
            continue
        outline = corners if score_mode == "fast" else contour.reshape(-1, 2).astype(np.float32)
        score = _mean_inside(prob, outline)
        if score < box_threshold:
            continue
        grown = _grown(corners, unclip_ratio)
        if grown is None:
            continue
        corners, short_side = _rectangle_corners(cv2.minAreaRect(grown.reshape(-1, 1, 2)))
        if short_side < _MIN_SHORT_SIDE + 2:
            continue
        mapped = np.round(corners * scale)
        mapped[:, 0] = np.clip(mapped[:, 0], 0, image_width - 1)
        mapped[:, 1] = np.clip(mapped[:, 1], 0, image_height - 1)
        mapped = _clockwise(mapped)
        if (
            int(np.linalg.norm(mapped[0] - mapped[1])) <= _MIN_SHORT_SIDE
            or int(np.linalg.norm(mapped[0] - mapped[3])) <= _MIN_SHORT_SIDE
        ):
            continue
        points = tuple((float(x), float(y)) for x, y in mapped)
        quads.append(Quad(points=points, score=score))
    return quads


def upright_crop(image: UInt8Array, quad: Quad) -> UInt8Array:
    """The quad's pixels warped into an upright rectangle (a strip, for the recognizer).

    Strips at least 1.5 times taller than wide are read as vertical text and turned a quarter
    counter-clockwise, so the recognizer always reads left to right.
    """
    corners = quad.array()
    width = int(
        max(np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[2] - corners[3]))
    )
    height = int(
        max(np.linalg.norm(corners[0] - corners[3]), np.linalg.norm(corners[1] - corners[2]))
    )
    width, height = max(1, width), max(1, height)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    warp = cv2.getPerspectiveTransform(corners, target)
    strip = cv2.warpPerspective(
        image,
        warp,
        (width, height),
        borderMode=cv2.BORDER_REPLICATE,
        flags=cv2.INTER_CUBIC,
    )
    if height / width >= 1.5:
        strip = np.rot90(strip)
    return np.ascontiguousarray(strip, dtype=np.uint8)


def recognizer_batches(
    strips: Sequence[UInt8Array],
    *,
    height: int,
    width: int,
    batch_size: int,
    mean: Triple,
    std: Triple,
) -> list[tuple[list[int], FloatArray]]:
    """Strips grouped into recognizer input tensors, ``(N, 3, height, W)`` float32 each.

    Strips are sorted by aspect ratio so that each batch holds similar widths (less padding, and
    the padding is what the recognizer reads as trailing blanks). Each strip is resized to
    ``height`` keeping its aspect ratio and padded with zeros on the right to the batch's width:
    ``height`` times the widest ratio in the batch, never below ``width``. Returns, per batch,
    the indices of its strips in ``strips`` and the tensor.
    """
    ratios = [s.shape[1] / s.shape[0] for s in strips]
    order = [int(i) for i in np.argsort(np.array(ratios), kind="stable")]
    batches: list[tuple[list[int], FloatArray]] = []
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        widest = max([width / height, *(ratios[i] for i in indices)])
        batch_width = int(height * widest)
        tensor = np.zeros((len(indices), 3, height, batch_width), dtype=np.float32)
        for row, index in enumerate(indices):
            resized_width = min(batch_width, math.ceil(height * ratios[index]))
            resized = cv2.resize(strips[index], (resized_width, height))
            tensor[row, :, :, :resized_width] = _normalised_chw(
                np.asarray(resized, np.uint8), mean, std
            )
        batches.append((indices, tensor))
    return batches


def ctc_greedy_decode(
    probabilities: FloatArray, characters: Sequence[str]
) -> list[tuple[str, float]]:
    """Text and confidence per strip from the recognizer's ``(N, T, C)`` class probabilities.

    ``characters`` are the recognizer's classes in order: index 0 is CTC's blank. At each time
    step the likeliest class is taken; a class equal to the previous step's is the same
    character held, not a new one; blanks separate characters and are dropped. The confidence is
    the mean probability of the steps kept, 0 when nothing was read.
    """
    if probabilities.ndim != 3:
        raise ValueError(f"expected (N, T, C) probabilities, got shape {probabilities.shape}")
    if probabilities.shape[2] != len(characters):
        raise ValueError(
            f"the recognizer has {probabilities.shape[2]} classes, "
            f"the character list {len(characters)}"
        )
    best = probabilities.argmax(axis=2)
    best_probability = probabilities.max(axis=2)
    results: list[tuple[str, float]] = []
    for steps, step_probability in zip(best, best_probability, strict=True):
        keep = steps != 0
        keep[1:] &= steps[1:] != steps[:-1]
        text = "".join(characters[int(i)] for i in steps[keep])
        confidence = float(step_probability[keep].mean()) if keep.any() else 0.0
        results.append((text, confidence))
    return results
