"""The text check: does an instance's pixel data hold text, and where? Cheap first, sure after.

Every instance with pixel data goes through here, whatever its modality or flag. A 300-slice CT
series must not pay a neural detector per slice, so the check is layered:

1. **Text-prone instances** (ultrasound, secondary capture, angiography, endoscopy,
   projection radiographs, anything flagged or with overlays: :func:`radstream.deid.burned_in.
   text_prone_reason`) carry text by design; their first frame goes straight to full OCR
   (a detector pass first would find text and only add its own cost).
2. **Everything else** (CT, MR, PET, NM ...) meets the **stroke screen**, a classical test on
   the display image: a *stroke* is a strong edge followed within a few pixels by the opposite
   edge (a bright line on dark or a dark line on bright), and text is a patch with many strokes
   across rows *and* across columns -- letters have stems and bars. Anatomy gives few strokes
   in both directions at once: air and padding are flat, the body outline and the table are
   single edges or strokes in one direction only, and noise does not reach the contrast of
   text drawn to be read (the stroke contrast is ``max(min_contrast, noise_factor x the
   frame's noise)``, the noise estimated from the median step between neighbours inside the
   displayed range, so a narrow brain window does not read noise as strokes). The screen runs
   on the whole frame -- borders and interior in one pass of OpenCV filters, about 0.5 ms for
   a 512x512 slice -- because text over the field of view (annotations, measurements, a
   technologist's label) is as identifying as text in the corners, and screening it costs no
   more than cropping the borders would. Patches it cannot clear (flagged tiles, grown by one
   tile, in border-first order) go to the engine's :meth:`~radstream.ocr.engine.OcrEngine.
   detect` at reduced resolution; only if the detector finds text does the frame go to full
   OCR. A normal CT slice is cleared by the screen alone; a name burned into its top rows
   fails the screen, is confirmed by the detector and read. The thresholds sit between what
   was measured: text from 8 to 18 px gives at least 43 row strokes and 36 column strokes in
   its busiest window, the phantoms' anatomy (bodies touching the field of view, ribs beside
   lungs, the table; soft tissue, lung and bone windows) at most 15 and 16. What the screen
   lets through is a lone character (an L or R marker): no PHI value is one character (the
   classifier ignores names under two letters and numbers under four digits), and
   two-letter initials from 9 px up are flagged.

Frames of a multi-frame instance are not sampled at random. Frame 0 is checked whole; every
other frame is compared with it, cell by cell (16 px), and only its **changed cells** are
checked (grown by one cell, so a line of text crossing the edge of the change is seen whole;
the unchanged pixels around them are blanked, so static text is not read again in pieces),
by the stroke screen and then the detector whatever the modality: a cine loop's moving sector
is not text, and the screen clears most of it. That is safe because a frame is the union of
its changed cells and its unchanged ones, and the unchanged ones are pixel for pixel those of
frame 0, whose text was found: whatever text a frame holds is either read again in its changed
cells or is the same text, in the same place, as frame 0's -- and the redaction fills frame
0's PHI boxes in every frame where they are not wholly inside changed cells
(:mod:`radstream.deid.pixels.redact`). A frame identical to frame 0 costs one comparison.
"Unchanged" means equal for lossless transfer syntaxes; after lossy compression, within a small
tolerance on the display scale (``lossy_tolerance``), below the contrast of legible text.
Frames checked (wholly or in part) and frames present go into the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import numpy.typing as npt

from radstream.deid.pixels.frames import DecodedFrames
from radstream.ocr.engine import Box, Image, OcrEngine, TextRegion

__all__ = [
    "LOSSY_SYNTAXES",
    "FrameChange",
    "FramePlan",
    "ScreenSettings",
    "Triage",
    "TriageSettings",
    "changed_regions",
    "frame_change",
    "screen_regions",
    "triage",
]

# Transfer syntaxes whose decoded pixels may differ from frame to frame where the picture did not.
LOSSY_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline
        "1.2.840.10008.1.2.4.51",  # JPEG Extended
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.203",  # HTJ2K
        "1.2.840.10008.1.2.4.100",  # MPEG2 and the video syntaxes after it
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.107",
        "1.2.840.10008.1.2.4.108",
    }
)

_TILE = 16  # the screen's and the frame comparison's cell; windows of 2x2 cells are judged


@dataclass(frozen=True, kw_only=True)
class ScreenSettings:
    """The stroke screen's thresholds (counts are per 32x32 window, see the module docstring)."""

    min_contrast: int = 40  # display levels (0-255) a stroke's two edges must each reach
    noise_factor: float = 4.0  # ... and this many times the frame's noise
    max_stroke_width: int = 8  # pixels between a stroke's two edges
    # Strokes found scanning rows (stems) and columns (bars) in one window: text 8-18 px gives
    # >= 43 and >= 36, anatomy <= 15 and <= 16 (measured; see the module docstring).
    min_row_strokes: int = 24
    min_column_strokes: int = 12
    max_side: int = 1024  # larger frames are screened downscaled to this (their text is larger)


@dataclass(frozen=True, kw_only=True)
class TriageSettings:
    """How the check runs; the defaults are the measured trade-offs (docs/benchmarks.md)."""

    screen: ScreenSettings = field(default_factory=ScreenSettings)
    detect_max_side: int = 768  # the detector's resolution on a region the screen did not clear
    lossy_tolerance: int = 12  # display levels two lossy frames may differ by and be "unchanged"


@dataclass(frozen=True, kw_only=True)
class FramePlan:
    """What the check did with one frame and what it found.

    ``regions`` are the parts of the frame that were checked (the whole frame, the changed
    cells, or nothing when it equals frame 0); ``ocr_regions`` what goes on to full OCR (the
    detector's boxes grown by their height, overlapping ones joined; the whole first frame of
    a text-prone instance).
    ``detections`` are the detector's boxes, in frame coordinates, for the risk signals.
    """

    index: int
    whole: bool
    regions: tuple[Box, ...]
    change: FrameChange | None = None  # None for frame 0, checked whole
    ocr_regions: tuple[Box, ...] = ()
    detections: tuple[TextRegion, ...] = ()
    screened: bool = False  # the stroke screen ran on it
    detector_runs: int = 0

    @property
    def checked(self) -> bool:
        """Whether any of the frame's pixels were looked at (identical frames were not)."""
        return bool(self.regions)


@dataclass(frozen=True, kw_only=True)
class Triage:
    """The check of one instance: a plan per frame, and what it cost."""

    plans: tuple[FramePlan, ...]
    text_prone: bool
    milliseconds: float

    @property
    def frames_checked(self) -> int:
        """Frames of which some pixels were checked."""
        return sum(1 for plan in self.plans if plan.checked)

    @property
    def needs_ocr(self) -> bool:
        """Whether any frame goes on to full OCR."""
        return any(plan.ocr_regions for plan in self.plans)

    @property
    def detector_runs(self) -> int:
        """How many times the detector ran (0 for a slice the screen cleared)."""
        return sum(plan.detector_runs for plan in self.plans)

    @property
    def decision(self) -> str:
        """How the check ended, for the report's reasons (no values)."""
        if self.needs_ocr:
            return "text_check_positive"
        if self.detector_runs:
            return "text_check_negative_detector"
        return "text_check_negative_screen"


def triage(
    decoded: DecodedFrames,
    engine: OcrEngine,
    *,
    text_prone: bool,
    settings: TriageSettings | None = None,
) -> Triage:
    """Check every frame of ``decoded`` for text (see the module docstring)."""
    settings = settings if settings is not None else TriageSettings()
    started = time.perf_counter()
    tolerance = settings.lossy_tolerance if decoded.transfer_syntax in LOSSY_SYNTAXES else 0
    whole = Box(0, 0, decoded.width, decoded.height)
    first = decoded.display(0)
    plans = [_check(first, (whole,), 0, engine, settings, text_prone=text_prone, whole=True)]
    for index in range(1, decoded.count):
        image = decoded.display(index)
        change = frame_change(first, image, tolerance=tolerance)
        plan = _check(
            change.masked(image),
            change.regions(),
            index,
            engine,
            settings,
            text_prone=False,
            whole=False,
        )
        plans.append(replace(plan, change=change))
    return Triage(
        plans=tuple(plans),
        text_prone=text_prone,
        milliseconds=(time.perf_counter() - started) * 1000,
    )


def _check(
    image: Image,
    regions: Sequence[Box],
    index: int,
    engine: OcrEngine,
    settings: TriageSettings,
    *,
    text_prone: bool,
    whole: bool,
) -> FramePlan:
    if not regions:
        return FramePlan(index=index, whole=False, regions=())
    if text_prone and whole:
        # Text-prone first frames carry text by design: straight to OCR (see rule 1).
        return FramePlan(
            index=index, whole=True, regions=tuple(regions), ocr_regions=tuple(regions)
        )
    suspects = [
        _offset(box, region)
        for region in regions
        for box in screen_regions(_crop(image, region), settings.screen)
    ]
    if len(suspects) > _MAX_SEPARATE_CROPS:
        # Many patches (a cine's speckle, a busy screen): one detector pass over all of them
        # costs less than a pass each.
        suspects = [_union(suspects)]
    detections: list[TextRegion] = []
    for suspect in _border_first(suspects, image.shape[1], image.shape[0]):
        found = engine.detect(_crop(image, suspect), max_side=settings.detect_max_side)
        detections.extend(_moved(region, suspect) for region in found)
    height, width = image.shape[:2]
    ocr_regions = _merged(
        [
            found.box.padded(max(8, found.box.height), width=width, height=height)
            for found in detections
        ]
    )
    return FramePlan(
        index=index,
        whole=whole,
        regions=tuple(regions),
        ocr_regions=ocr_regions,
        detections=tuple(detections),
        screened=True,
        detector_runs=len(suspects),
    )


_MAX_SEPARATE_CROPS = 2


def _merged(boxes: Sequence[Box]) -> tuple[Box, ...]:
    """``boxes`` with every overlapping group replaced by its union."""
    merged: list[Box] = []
    for box in sorted(boxes, key=lambda b: (b.y, b.x)):
        for index, other in enumerate(merged):
            if box.intersection(other):
                merged[index] = _union([box, other])
                break
        else:
            merged.append(box)
    if len(merged) < len(boxes):
        return _merged(merged)  # a union may now overlap another
    return tuple(merged)


def _union(boxes: Sequence[Box]) -> Box:
    left, top = min(b.x for b in boxes), min(b.y for b in boxes)
    right, bottom = max(b.right for b in boxes), max(b.bottom for b in boxes)
    return Box(left, top, right - left, bottom - top)


def _border_first(boxes: Sequence[Box], width: int, height: int) -> list[Box]:
    """Boxes ordered by their distance to the nearest image edge (borders first)."""

    def distance(box: Box) -> int:
        return min(box.x, box.y, width - box.right, height - box.bottom)

    return sorted(boxes, key=lambda box: (distance(box), box.y, box.x))


def _crop(image: Image, box: Box) -> Image:
    return np.ascontiguousarray(image[box.y : box.bottom, box.x : box.right])


def _offset(box: Box, origin: Box) -> Box:
    return Box(box.x + origin.x, box.y + origin.y, box.width, box.height)


def _moved(region: TextRegion, origin: Box) -> TextRegion:
    return TextRegion(
        box=_offset(region.box, origin),
        text=region.text,
        confidence=region.confidence,
        detection_score=region.detection_score,
        polygon=tuple((x + origin.x, y + origin.y) for x, y in region.polygon),
    )


# -- the stroke screen ------------------------------------------------------------------------


def screen_regions(image: Image, settings: ScreenSettings | None = None) -> list[Box]:
    """The regions of ``image`` the stroke screen cannot clear, in ``image``'s coordinates.

    Empty for an image without text-like patches. Each region is a group of flagged 32x32
    windows grown by one 16-pixel cell on every side.
    """
    settings = settings if settings is not None else ScreenSettings()
    gray = image if image.ndim == 2 else _u8(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    height, width = gray.shape
    scale = 1.0
    longer = max(height, width)
    if longer > settings.max_side:
        scale = settings.max_side / longer
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = _u8(cv2.resize(gray, size, interpolation=cv2.INTER_AREA))
    if min(gray.shape) < 2 * _TILE:
        gray = _padded(gray)
    flagged = _flagged_windows(gray, settings)
    if not flagged.any():
        return []
    return [
        box.scaled(1 / scale).clipped(width=width, height=height) or box
        for box in _grouped(flagged, gray.shape)
    ]


def _padded(gray: Image) -> Image:
    """A small image padded (with its edge value) to at least two cells each way."""
    height, width = gray.shape
    bottom, right = max(0, 2 * _TILE - height), max(0, 2 * _TILE - width)
    return _u8(cv2.copyMakeBorder(gray, 0, bottom, 0, right, cv2.BORDER_REPLICATE))


def _u8(image: object) -> Image:
    """OpenCV's result as the ``uint8`` array it is (its stubs say Mat or any ndarray)."""
    return np.asarray(image, dtype=np.uint8)


def _flagged_windows(gray: Image, settings: ScreenSettings) -> npt.NDArray[np.bool_]:
    """Per 16-px cell: whether the 32x32 window starting there looks like text."""
    contrast = _stroke_contrast(gray, settings)
    rows = _strokes(gray, contrast, along_rows=True, width=settings.max_stroke_width)
    flagged = _window_counts(rows) >= settings.min_row_strokes
    if not flagged.any():
        # A window needs both counts: without one busy with stems, bars cannot flag any (the
        # usual CT slice stops here, at half the screen's cost).
        return flagged
    columns = _strokes(gray, contrast, along_rows=False, width=settings.max_stroke_width)
    return flagged & (_window_counts(columns) >= settings.min_column_strokes)


def _stroke_contrast(gray: Image, settings: ScreenSettings) -> int:
    """The edge strength a stroke needs: the floor, or a multiple of the frame's noise.

    The noise is the median absolute step between horizontal neighbours that both lie inside
    the displayed range (saturated air, padding, bone or text say nothing about noise),
    scaled to a standard deviation (x 1.4826 / sqrt(2) for a difference of two samples).
    """
    sample = gray[::4]
    left, right = sample[:, :-1], sample[:, 1:]
    inside = (left > 0) & (left < 255) & (right > 0) & (right < 255)
    if int(np.count_nonzero(inside)) < 64:
        return settings.min_contrast
    steps = cv2.absdiff(left, right)[inside]
    histogram = np.bincount(steps, minlength=256)
    median = int(np.searchsorted(np.cumsum(histogram), steps.size / 2))
    noise = median * 1.4826 / np.sqrt(2.0)
    return int(min(254, max(settings.min_contrast, round(settings.noise_factor * noise))))


def _strokes(gray: Image, contrast: int, *, along_rows: bool, width: int) -> Image:
    """255 where a stroke starts: an edge with the opposite edge within the next ``width`` px.

    Saturating ``uint8`` subtraction gives the rising and the falling steps separately, which
    is several times cheaper than a signed derivative filter.
    """
    if along_rows:
        following, current, ahead = gray[:, 1:], gray[:, :-1], (1, width + 1)
    else:
        following, current, ahead = gray[1:], gray[:-1], (width + 1, 1)
    _, rising = cv2.threshold(
        cv2.subtract(following, current), contrast - 1, 255, cv2.THRESH_BINARY
    )
    _, falling = cv2.threshold(
        cv2.subtract(current, following), contrast - 1, 255, cv2.THRESH_BINARY
    )
    window = np.ones(ahead, np.uint8)
    falling_ahead = cv2.dilate(
        falling, window, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    rising_ahead = cv2.dilate(
        rising, window, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    starts = cv2.bitwise_or(
        cv2.bitwise_and(rising, falling_ahead), cv2.bitwise_and(falling, rising_ahead)
    )
    right, bottom = (1, 0) if along_rows else (0, 1)
    return _u8(cv2.copyMakeBorder(starts, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=0))


def _window_counts(mask: Image) -> npt.NDArray[np.float32]:
    """Strokes per 32x32 window, one window per 16-px cell (overlapping by half)."""
    height, width = mask.shape
    cells_y, cells_x = height // _TILE, width // _TILE
    cropped = mask[: cells_y * _TILE, : cells_x * _TILE]
    per_cell = cv2.resize(cropped, (cells_x, cells_y), interpolation=cv2.INTER_AREA).astype(
        np.float32
    ) * (_TILE * _TILE / 255.0)
    windows = cv2.boxFilter(
        per_cell, -1, (2, 2), anchor=(0, 0), normalize=False, borderType=cv2.BORDER_CONSTANT
    )
    return np.asarray(windows, dtype=np.float32)


def _grouped(flagged: npt.NDArray[np.bool_], shape: tuple[int, ...]) -> Iterator[Box]:
    """Flagged windows joined into boxes, grown by one cell, in pixels."""
    height, width = int(shape[0]), int(shape[1])
    cells = flagged.astype(np.uint8)
    # A window at cell (i, j) covers cells i..i+1, j..j+1; grow by one more cell each way.
    grown = cv2.dilate(cells, np.ones((4, 4), np.uint8), anchor=(2, 2))
    count, _labels, stats, _centroids = cv2.connectedComponentsWithStats(grown, connectivity=8)
    for label in range(1, count):
        x, y, w, h = (int(v) for v in stats[label, :4])
        box = Box(x * _TILE, y * _TILE, w * _TILE, h * _TILE).clipped(width=width, height=height)
        if box is not None:
            yield box


# -- frame comparison -------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameChange:
    """Where a frame differs from frame 0: its 16-px cells that changed, grown by one cell.

    ``cells`` is None for a frame equal to frame 0. The regions checked are the boxes around
    groups of changed cells; what is inside a region but did not change is blanked before the
    check (:meth:`masked`), and whether a box of frame 0 is still in the frame is asked of the
    cells themselves (:meth:`covers`), never of the looser boxes.
    """

    cells: npt.NDArray[np.bool_] | None
    height: int
    width: int

    @property
    def identical(self) -> bool:
        """The frame equals frame 0 (within the tolerance)."""
        return self.cells is None

    def regions(self) -> tuple[Box, ...]:
        """Boxes around the groups of changed cells, in pixels."""
        if self.cells is None:
            return ()
        count, _labels, stats, _centroids = cv2.connectedComponentsWithStats(
            self.cells.astype(np.uint8), connectivity=8
        )
        boxes = []
        for label in range(1, count):
            x, y, w, h = (int(v) for v in stats[label, :4])
            box = Box(x * _TILE, y * _TILE, w * _TILE, h * _TILE)
            clipped = box.clipped(width=self.width, height=self.height)
            if clipped is not None:
                boxes.append(clipped)
        return tuple(boxes)

    def covers(self, box: Box) -> bool:
        """Whether every cell ``box`` touches changed (so frame 0's pixels there are gone)."""
        if self.cells is None:
            return False
        top, left = box.y // _TILE, box.x // _TILE
        bottom, right = -(-box.bottom // _TILE), -(-box.right // _TILE)
        window = self.cells[top:bottom, left:right]
        return bool(window.size) and bool(window.all())

    def masked(self, image: Image) -> Image:
        """``image`` with its unchanged pixels set to 0: only the change is left to check."""
        if self.cells is None:
            return np.zeros_like(image)
        keep = np.repeat(np.repeat(self.cells, _TILE, axis=0), _TILE, axis=1)
        keep = keep[: self.height, : self.width]
        out = image.copy()
        out[~keep] = 0
        return out


def frame_change(reference: Image, image: Image, *, tolerance: int = 0) -> FrameChange:
    """How ``image`` differs from ``reference`` (display images of the same size)."""
    height, width = image.shape[:2]
    difference = cv2.absdiff(reference, image)
    if difference.ndim == 3:
        difference = difference.max(axis=2)
    changed = (np.asarray(difference) > tolerance).astype(np.uint8)
    if not changed.any():
        return FrameChange(None, height, width)
    cells_y, cells_x = -(-height // _TILE), -(-width // _TILE)
    padded = np.zeros((cells_y * _TILE, cells_x * _TILE), np.uint8)
    padded[:height, :width] = changed
    per_cell = padded.reshape(cells_y, _TILE, cells_x, _TILE).max(axis=(1, 3))
    grown = cv2.dilate(per_cell, np.ones((3, 3), np.uint8))
    return FrameChange(np.asarray(grown, dtype=bool), height, width)


def changed_regions(reference: Image, image: Image, *, tolerance: int = 0) -> tuple[Box, ...]:
    """The regions of ``image`` that differ from ``reference`` (16-px cells, grown by one).

    Empty when the two are equal (within ``tolerance`` display levels).
    """
    return frame_change(reference, image, tolerance=tolerance).regions()
