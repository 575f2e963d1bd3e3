"""Verifying the written pixels: decoded again, compared, and read again by the engine.

Release needs proof about *what is written*, not about what the stage meant to write. So the
output bytes, re-read by the pipeline, are checked here:

* **unchanged pixels** (no box filled): the written Pixel Data must be the very bytes the text
  check read. Nothing else can have changed them, so the check's verdict is the verdict on the
  output; no second OCR is needed (this is what keeps a CT slice within its budget);
* **redacted pixels**: the output is decoded and must equal, sample for sample, the frames the
  redaction produced (every output syntax is lossless, :mod:`~radstream.deid.pixels.encode`);
  then the engine **recognizes** the redacted frames and the same classifier judges every line
  it reads. The first redacted frame is read whole; later ones only around their filled boxes
  (a margin of twice the box height), and only where those surroundings differ from a frame
  already read -- the rest of a frame is pixel for pixel what the text check read before.
* overlay planes still present in the output (the profile removes them) are read too; an icon
  image still present fails the check (the stage removes it: it is a thumbnail of the
  unredacted pixels).
* **a reviewer's boxes** (``read_every_frame``): the text check did not run, so no verdict
  about the unchanged pixels exists; every distinct frame of the output is read whole, filled
  or not (a reviewer who draws no box, or misses a line, is caught here).

Any PHI line read is a failure: the instance is held, its findings are the lines read (PHI
zone), and the reason says that PHI is still readable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from radstream.deid.phi import PhiValues
from radstream.deid.pixels.classify import PhiClassifier
from radstream.deid.pixels.findings import PixelFinding
from radstream.deid.pixels.frames import (
    DecodedFrames,
    PixelFormatError,
    decode_frames,
    overlay_images,
)
from radstream.deid.pixels.reading import read_lines
from radstream.dicom.raw_header import RawInstance
from radstream.ocr.engine import Box, Image, OcrEngine, TextRegion

__all__ = ["PixelVerification", "verify_pixels"]


@dataclass(frozen=True, kw_only=True)
class PixelVerification:
    """The outcome of verifying one output: ``passed``, and if not, why and what was read."""

    passed: bool
    reason: str = ""  # "pixel_output_mismatch", "phi_still_readable", "pixel_data_not_decodable"
    findings: tuple[PixelFinding, ...] = ()  # PHI lines read in the output (PHI zone)
    frames_read: int = 0
    milliseconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class _Reader:
    """The engine and the classifier, as the verification uses them."""

    engine: OcrEngine
    classifier: PhiClassifier
    phi: PhiValues
    sides: tuple[int, ...]

    def phi_lines(self, image: Image) -> list[tuple[TextRegion, tuple[str, ...], float]]:
        """The lines of ``image`` the classifier calls PHI, with their kinds and scores."""
        found = []
        for region in read_lines(self.engine, image, self.sides):
            verdict = self.classifier.classify(region.text, self.phi)
            if verdict.phi:
                found.append((region, verdict.kinds, verdict.score))
        return found


def verify_pixels(
    written: Dataset | RawInstance,
    *,
    original_pixels: bytes | None,
    expected: npt.NDArray[np.generic] | None,
    filled: Mapping[int, Sequence[Box]],
    engine: OcrEngine,
    classifier: PhiClassifier,
    phi: PhiValues,
    recognize_sides: tuple[int, ...] = (0,),
    read_every_frame: bool = False,
) -> PixelVerification:
    """Verify the pixels of the re-read output ``written`` (see the module docstring).

    ``expected`` is None when no box was filled: then the written Pixel Data must equal
    ``original_pixels``. ``read_every_frame`` reads every distinct frame whole (a reviewer's
    boxes: nothing was read before them).
    """
    started = time.perf_counter()
    reader = _Reader(engine=engine, classifier=classifier, phi=phi, sides=recognize_sides)
    reason, found, frames_read = _check(
        written, original_pixels, expected, filled, reader, read_every_frame=read_every_frame
    )
    return PixelVerification(
        passed=not reason,
        reason=reason,
        findings=tuple(found),
        frames_read=frames_read,
        milliseconds=(time.perf_counter() - started) * 1000,
    )


def _check(
    written: Dataset | RawInstance,
    original_pixels: bytes | None,
    expected: npt.NDArray[np.generic] | None,
    filled: Mapping[int, Sequence[Box]],
    reader: _Reader,
    *,
    read_every_frame: bool = False,
) -> tuple[str, list[PixelFinding], int]:
    """The reason the output fails ("" when it passes), the PHI read, the frames read.

    ``written`` read by radstream's codec is parsed by pydicom only to decode redacted frames or
    overlays left in it: an unchanged CT slice is checked from its bytes alone.
    """
    tags = written.top_level_tags if isinstance(written, RawInstance) else written.keys()
    if _ICON_IMAGE_SEQUENCE in tags:  # the stage removes it; here only if something failed
        return "icon_image_left", [], 0
    overlays = any(_is_overlay_data(int(tag)) for tag in tags)
    found = _leftover_overlays(_parsed(written), reader) if overlays else []
    frames_read = 0
    unchanged = expected is None and original_pixels is not None
    if unchanged and not _same_bytes(_pixel_bytes(written), original_pixels):
        return "pixel_output_mismatch", found, 0
    if expected is not None or read_every_frame:
        try:
            decoded = decode_frames(_parsed(written))
        except PixelFormatError:
            return "pixel_data_not_decodable", found, 0
        if expected is not None and (
            decoded.frames.shape != expected.shape or not np.array_equal(decoded.frames, expected)
        ):
            return "pixel_output_mismatch", found, 0
        if read_every_frame:
            read, frames_read = _read_every_frame(decoded, reader)
        else:
            read, frames_read = _reread(decoded, filled, reader)
        found = read + found
    return ("phi_still_readable" if found else ""), found, frames_read


def _read_every_frame(decoded: DecodedFrames, reader: _Reader) -> tuple[list[PixelFinding], int]:
    """Recognize every frame whole, once per distinct frame (a still cine repeats itself)."""
    found: list[PixelFinding] = []
    read: list[Image] = []
    whole = Box(0, 0, decoded.width, decoded.height)
    for index in range(decoded.count):
        image = decoded.display(index)
        if any(np.array_equal(image, other) for other in read):
            continue
        found.extend(
            _finding(index, region, whole, kinds, score)
            for region, kinds, score in reader.phi_lines(image)
        )
        read.append(image)
    return found, len(read)


_ICON_IMAGE_SEQUENCE = 0x00880200
_PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float


def _parsed(written: Dataset | RawInstance) -> Dataset:
    return written.parsed if isinstance(written, RawInstance) else written


def _is_overlay_data(tag: int) -> bool:
    """(60xx,3000) Overlay Data, the even groups 6000-601E."""
    return (tag >> 16) & 0xFF01 == 0x6000 and tag & 0xFFFF == 0x3000


def _same_bytes(written: bytes | memoryview | None, original: bytes | None) -> bool:
    """Byte-for-byte equality; one memcmp (``memoryview == bytes`` goes value by value)."""
    if written is None or original is None:
        return written is None and original is None
    return len(written) == len(original) and original.startswith(written)


def _pixel_bytes(ds: Dataset | RawInstance) -> bytes | memoryview | None:
    if isinstance(ds, RawInstance):
        for tag in _PIXEL_DATA_TAGS:
            samples = ds.samples(tag)
            if samples is not None:
                return samples
        return None
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            value = ds[keyword].value
            return bytes(value) if isinstance(value, bytes | bytearray) else None
    return None


def _reread(
    decoded: DecodedFrames, filled: Mapping[int, Sequence[Box]], reader: _Reader
) -> tuple[list[PixelFinding], int]:
    """Recognize the redacted frames (first whole, later ones around their boxes if changed)."""
    found: list[PixelFinding] = []
    read: list[Image] = []
    frames_read = 0
    for index in sorted(filled):
        image = decoded.display(index)
        if not read:
            regions = [Box(0, 0, decoded.width, decoded.height)]
        else:
            regions = [
                area
                for box in filled[index]
                if (area := _surroundings(box, decoded.width, decoded.height)) is not None
                and not any(_same(image, other, area) for other in read)
            ]
        for area in regions:
            crop = np.ascontiguousarray(image[area.y : area.bottom, area.x : area.right])
            found.extend(
                _finding(index, region, area, kinds, score)
                for region, kinds, score in reader.phi_lines(crop)
            )
        frames_read += bool(regions)
        read.append(image)
    return found, frames_read


def _surroundings(box: Box, width: int, height: int) -> Box | None:
    margin = 2 * box.height
    return box.padded(margin, width=width, height=height).clipped(width=width, height=height)


def _same(image: Image, other: Image, area: Box) -> bool:
    window = (slice(area.y, area.bottom), slice(area.x, area.right))
    return bool(np.array_equal(image[window], other[window]))


def _finding(
    frame: int,
    region: TextRegion,
    origin: Box,
    kinds: tuple[str, ...],
    score: float,
    *,
    source: str = "pixels",
) -> PixelFinding:
    box = Box(region.box.x + origin.x, region.box.y + origin.y, region.box.width, region.box.height)
    return PixelFinding(
        frame=frame,
        box=box,
        text=region.text,
        confidence=region.confidence,
        detection_score=region.detection_score,
        phi=True,
        phi_kinds=kinds,
        phi_score=score,
        source=source,
        reason="still readable after redaction",
    )


def _leftover_overlays(written: Dataset, reader: _Reader) -> list[PixelFinding]:
    """PHI read in overlay planes left in the output (the profile removes them)."""
    return [
        _finding(
            overlay.frame,
            region,
            Box(overlay.origin[0], overlay.origin[1], 1, 1),
            kinds,
            score,
            source=f"overlay:{overlay.group:04X}",
        )
        for overlay in overlay_images(written)
        for region, kinds, score in reader.phi_lines(overlay.image)
    ]
