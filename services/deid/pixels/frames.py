"""Decoded frames of an instance, and the 8-bit images the OCR engines read from them.

:func:`decode_frames` turns an instance's Pixel Data into one NumPy array of every frame, in
the stored sample type, whatever the transfer syntax pydicom can decode here: native (little,
big endian, deflated), JPEG baseline and extended (Pillow or libjpeg), JPEG lossless (libjpeg),
JPEG-LS (libjpeg, through pylibjpeg), JPEG 2000 and HTJ2K (OpenJPEG), RLE (pydicom). Colour
frames arrive as RGB: YBR_FULL, YBR_FULL_422 (JPEG or native) and the JPEG 2000 colour
transforms are converted by the decoder, so what is redacted and written back is RGB (and the
output's Photometric Interpretation says so, see :mod:`radstream.deid.pixels.encode`).

The common case takes a short cut: native, single-sample, 8- or 16-bit frames are viewed in
place with :func:`numpy.frombuffer` (no copy; pydicom's general path costs 0.2 ms more per CT
slice, a fifth of the text check's budget). The raw values keep their unused high bits, which
is deliberate: an overlay embedded in the high bits of a retired-style image is drawn there,
shows up white in the display image, and is checked (and filled) like any burned-in text.

:meth:`DecodedFrames.display` gives an engine its ``uint8`` image of one frame:

* 8-bit monochrome and RGB as stored: the device drew its text for that display (fewer bits,
  such as 1-bit masks, stretched to the full range);
* deeper monochrome through the VOI window of the header (Window Center/Width, the first pair,
  top level or the shared functional groups, in rescaled units), else between the 0.5th and
  99.5th percentiles of a sample of the frame: burned-in text sits at or beyond the extremes
  and stays saturated and legible in either;
* MONOCHROME1 inverted, so text reads as it does on a viewer;
* PALETTE COLOR through its lookup table.

Overlay planes (60xx,3000) are rendered by :func:`overlay_images` as white-on-black images in
the image's coordinates, for the stage to read; the profile removes every overlay plane with
its data (PS3.15 Table E.1-1 gives (60xx,3000) X, and a C under Clean Graphics cannot clean a
bitmap), so reading them only tells the reviewer what was there. The Icon Image Sequence
(0088,0200) is removed by the profile too (Table E.1-1: X); it is a thumbnail of the unredacted
pixels, so the stage also deletes any left in its output and the verification fails an output
that still has one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array

from radstream.ocr.engine import Box, Image

__all__ = [
    "NATIVE_SYNTAXES",
    "DecodedFrames",
    "OverlayImage",
    "PixelFormatError",
    "Window",
    "decode_frames",
    "overlay_images",
]

NATIVE_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    }
)
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_PERCENTILE_SAMPLE = 16_384  # pixels the robust range is estimated from
_LOW_PERCENTILE, _HIGH_PERCENTILE = 0.005, 0.995

Pixels = npt.NDArray[Any]


class PixelFormatError(ValueError):
    """The pixel data is in a form this stage cannot turn into images (no value in the message)."""


@dataclass(frozen=True, slots=True)
class Window:
    """A linear map of stored values onto 0..255: ``(value - low) * 255 / (high - low)``."""

    low: float
    high: float

    def apply(self, frame: Pixels) -> Image:
        """``frame`` windowed to ``uint8``, saturating at both ends (OpenCV: ~50 µs for 512²)."""
        span = max(self.high - self.low, 1e-6)
        alpha = 255.0 / span
        source = frame if frame.dtype in _CV_DEPTHS else frame.astype(np.float32)
        out = cv2.addWeighted(source, alpha, source, 0.0, -self.low * alpha, dtype=cv2.CV_8U)
        return np.asarray(out, dtype=np.uint8)


_CV_DEPTHS = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.float32))


@dataclass(frozen=True, kw_only=True)
class DecodedFrames:
    """Every frame of an instance: ``frames`` is (F, H, W) or (F, H, W, 3), the stored type.

    ``photometric`` is the interpretation of ``frames`` (RGB for decoded YBR), ``source_
    photometric`` the header's. ``window`` is the header's VOI window in stored units, if any.
    """

    frames: Pixels
    photometric: str
    source_photometric: str
    bits_stored: int
    transfer_syntax: str
    window: Window | None = None
    palette: Dataset | None = field(default=None, repr=False)
    fast_path: bool = False

    @property
    def count(self) -> int:
        """Frames in the instance."""
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        """Rows."""
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        """Columns."""
        return int(self.frames.shape[2])

    @property
    def colour(self) -> bool:
        """Three samples per pixel (RGB after decoding)."""
        return self.frames.ndim == 4

    def display(self, index: int) -> Image:
        """Frame ``index`` as the ``uint8`` image an engine reads (see the module docstring)."""
        frame = self.frames[index]
        if self.photometric == "PALETTE COLOR" and self.palette is not None:
            return np.ascontiguousarray(apply_color_lut(frame, self.palette), dtype=np.uint8)
        if self.colour:
            if frame.dtype == np.uint8:
                return np.ascontiguousarray(frame)
            return _robust_window(frame).apply(frame)
        if frame.dtype == np.uint8 and self.bits_stored >= 8:
            image = np.ascontiguousarray(frame)  # 8-bit: as the device drew it, whatever window
        elif frame.dtype == np.uint8:
            image = Window(0, (1 << max(1, self.bits_stored)) - 1).apply(frame)  # 1-bit and such
        else:
            window = self.window if self.window is not None else _robust_window(frame)
            image = window.apply(frame)
        if self.photometric == "MONOCHROME1":
            image = cv2.bitwise_not(image)
        return image

    def background(self, index: int) -> Pixels:
        """The value a filled box gets in frame ``index``: black as displayed.

        The minimum stored value (MONOCHROME1: the maximum, which displays black); zeros for
        RGB; for palette colour the index whose colour in the palette is darkest (index 0 is
        not black in every palette: an inverted grey palette makes it white).
        """
        frame = self.frames[index]
        if self.colour:
            return np.zeros(frame.shape[-1:], dtype=frame.dtype)
        if self.photometric == "PALETTE COLOR":
            return np.asarray(self._darkest_palette_index, dtype=frame.dtype)
        value = frame.max() if self.photometric == "MONOCHROME1" else frame.min()
        return np.asarray(value, dtype=frame.dtype)

    @functools.cached_property
    def _darkest_palette_index(self) -> int:
        """The stored value whose palette colour has the lowest luma (the first of equals).

        Every value Bits Stored allows is looked up (at most 65,536), so entries outside the
        table's range count as the table maps them (to its first or last colour).
        """
        if self.palette is None:
            return 0
        dtype = self.frames.dtype
        count = min(1 << max(1, self.bits_stored), int(np.iinfo(dtype).max) + 1)
        colours = apply_color_lut(np.arange(count, dtype=dtype), self.palette)
        luma = np.asarray(colours, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
        return int(np.argmin(luma))


def decode_frames(ds: Dataset) -> DecodedFrames:
    """Decode the Pixel Data (or Float/Double Float Pixel Data) of ``ds``.

    Raises
    ------
    PixelFormatError
        No pixel data, or a layout this stage does not handle (the message names the
        attributes, never a value of the instance).
    """
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    window = _voi_window(ds)
    fast = _native_view(ds, syntax, photometric)
    if fast is not None:
        return DecodedFrames(
            frames=fast,
            photometric=photometric,
            source_photometric=photometric,
            bits_stored=bits_stored,
            transfer_syntax=syntax,
            window=window,
            fast_path=True,
        )
    try:
        array = pixel_array(ds, as_rgb=True)
    except Exception as exc:  # pydicom and the codecs raise many types; none may quote values
        raise PixelFormatError(
            f"the pixel data cannot be decoded here ({type(exc).__name__}; transfer syntax "
            f"{syntax or 'unknown'}, photometric interpretation {photometric or 'absent'})"
        ) from None
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames_count = int(ds.get("NumberOfFrames", 1) or 1)
    if (samples == 1 and array.ndim == 2) or (samples == 3 and array.ndim == 3):
        array = array[np.newaxis]
    if array.shape[0] != frames_count and not (frames_count <= 1 and array.shape[0] == 1):
        raise PixelFormatError("Number of Frames does not match the decoded pixel data")
    decoded = photometric
    if samples == 3:
        decoded = "RGB"  # pydicom converted YBR_FULL(_422), YBR_ICT/RCT are RGB after decoding
    elif photometric not in (*_MONOCHROME, "PALETTE COLOR"):
        raise PixelFormatError(
            f"photometric interpretation {photometric or 'absent'} with one sample"
        )
    return DecodedFrames(
        frames=array,
        photometric=decoded,
        source_photometric=photometric,
        bits_stored=bits_stored,
        transfer_syntax=syntax,
        window=window if samples == 1 else None,
        palette=ds if decoded == "PALETTE COLOR" else None,
    )


def _native_view(ds: Dataset, syntax: str, photometric: str) -> Pixels | None:
    """The frames viewed in place for native single-sample 8/16-bit data, else None."""
    if syntax not in NATIVE_SYNTAXES or photometric not in _MONOCHROME:
        return None
    if "PixelData" not in ds or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16):
        return None
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    if bits == 16:
        dtype = dtype.newbyteorder(">" if syntax == _BIG_ENDIAN else "<")
    raw = ds.PixelData
    needed = rows * columns * count * dtype.itemsize
    if rows <= 0 or columns <= 0 or count <= 0 or not isinstance(raw, bytes | bytearray):
        return None
    if len(raw) < needed:
        raise PixelFormatError(
            f"Pixel Data holds {len(raw)} bytes, {needed} expected from Rows, Columns, "
            "Number of Frames and Bits Allocated"
        )
    frames = np.frombuffer(raw, dtype=dtype, count=rows * columns * count)
    frames = frames.reshape(count, rows, columns)
    if not dtype.isnative:
        frames = frames.astype(dtype.newbyteorder("="))
    bits_stored = int(ds.get("BitsStored", bits) or bits)
    if signed and bits_stored < bits:
        # Sign-extend from Bits Stored (the high bits of a negative value may be anything).
        shift = bits - bits_stored
        frames = (frames << shift) >> shift
    return frames


def _voi_window(ds: Dataset) -> Window | None:
    """The first VOI window in stored units (top level, else shared functional groups)."""
    sources = [ds]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        item = shared[0]
        for keyword in ("FrameVOILUTSequence", "PixelValueTransformationSequence"):
            nested = item.get(keyword)
            if nested:
                sources.append(nested[0])
    center = width = None
    slope, intercept = 1.0, 0.0
    for source in sources:
        if center is None and "WindowCenter" in source and "WindowWidth" in source:
            center, width = _first(source.WindowCenter), _first(source.WindowWidth)
        if "RescaleSlope" in source:
            slope = _first(source.RescaleSlope) or 1.0
        if "RescaleIntercept" in source:
            intercept = _first(source.RescaleIntercept) or 0.0
    if center is None or width is None or width <= 0 or slope == 0:
        return None
    low, high = (center - width / 2 - intercept) / slope, (center + width / 2 - intercept) / slope
    return Window(min(low, high), max(low, high))


def _first(value: Any) -> float | None:
    """The first of a (possibly multi-valued) numeric element's values, as a float."""
    if not isinstance(value, str | bytes) and hasattr(value, "__getitem__"):
        try:
            value = value[0]
        except (IndexError, TypeError):
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _robust_window(frame: Pixels) -> Window:
    """Between the 0.5th and 99.5th percentile of a strided sample of ``frame``."""
    flat = frame.reshape(-1)
    step = max(1, flat.size // _PERCENTILE_SAMPLE)
    sample = np.asarray(flat[::step], dtype=np.float64)
    low_index = int(_LOW_PERCENTILE * (sample.size - 1))
    high_index = int(_HIGH_PERCENTILE * (sample.size - 1))
    parted = np.partition(sample, (low_index, high_index))
    low, high = float(parted[low_index]), float(parted[high_index])
    if high <= low:
        low, high = float(flat.min()), float(flat.max())
        if high <= low:
            high = low + 1.0
    return Window(low, high)


@dataclass(frozen=True, kw_only=True)
class OverlayImage:
    """One frame of one overlay plane as a white-on-black image, placed in the image."""

    group: int
    frame: int
    image: Image
    origin: tuple[int, int]  # (x, y) of the overlay's top-left pixel in the image, 0-based

    def to_image(self, box: Box) -> Box:
        """A box in the overlay's coordinates, moved into the image's."""
        return Box(box.x + self.origin[0], box.y + self.origin[1], box.width, box.height)


def overlay_images(ds: Dataset) -> list[OverlayImage]:
    """Every frame of every overlay plane with Overlay Data (60xx,3000) in ``ds``.

    Planes whose data cannot be unpacked are skipped here: the profile removes them whatever
    they hold.
    """
    from pydicom.overlays.numpy_handler import get_overlay_array  # noqa: PLC0415 -- rarely needed

    found: list[OverlayImage] = []
    # keys(), not iteration: iterating a Dataset converts every raw element it passes.
    groups = sorted({tag.group for tag in ds.keys() if 0x6000 <= tag.group <= 0x601E})  # noqa: SIM118
    for group in groups:
        if (group << 16 | 0x3000) not in ds:
            continue
        try:
            bits = get_overlay_array(ds, group)
        except Exception:  # noqa: S112 -- a malformed plane; the profile removes it anyway
            continue
        planes = bits[np.newaxis] if bits.ndim == 2 else bits
        origin_element = ds.get((group << 16) | 0x0050)
        row, column = (1, 1)
        if origin_element is not None and origin_element.value is not None:
            values = list(origin_element.value)
            if len(values) == 2:
                row, column = int(values[0]), int(values[1])
        first = (
            int(ds.get((group << 16) | 0x0051, 1).value or 1) if (group << 16 | 0x0051) in ds else 1
        )
        for index, plane in enumerate(planes):
            image = np.where(plane > 0, np.uint8(255), np.uint8(0)).astype(np.uint8)
            found.append(
                OverlayImage(
                    group=group,
                    frame=first - 1 + index,
                    image=image,
                    origin=(column - 1, row - 1),
                )
            )
    return found
