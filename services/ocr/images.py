"""The image of a request, decoded into what an engine reads: ``uint8``, (H, W) or (H, W, 3).

Three forms arrive (``RecognizeRequest.image``):

* ``encoded`` -- PNG or JPEG bytes, told apart by their signature (anything else is refused
  without being handed to a decoder). The header's size is checked against the limits
  *before* the pixels are decoded: a PNG of a hundred bytes can claim 50,000 x 50,000 pixels,
  and decoding it first would be the decompression bomb.
* ``raw`` -- uncompressed pixels with their layout, which must add up exactly
  (``width * height * channels * bits / 8`` bytes); 16-bit samples are little-endian.
* ``ref`` -- a claim check for an encoded image in the PHI blob store, the only store the
  service opens: the blob is fetched verified against the ref's SHA-256 and size, and its size
  is checked against the limit before it is fetched.

16-bit (and 32-bit or float) pixels are windowed to 8 bits over their own minimum and maximum
(:func:`window_to_uint8`): burned-in text is drawn at the extreme of the range, so a full-range
window keeps it legible wherever the anatomy sits.

Every refusal raises an :class:`ImageRefusedError` whose message starts with the wire's
``ErrorCode`` name and then says which field or limit is at fault; no message quotes pixel
values or text (they may be PHI). The server answers these with INVALID_ARGUMENT.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt
from PIL import Image as PilImage

from radstream.common.blobstore import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobRef,
    BlobRefRejectedError,
    BlobStore,
)
from radstream.common.errors import PoisonEventError
from radstream.contracts.v1 import common_pb2, ocr_pb2
from radstream.ocr.engine import Image

__all__ = [
    "ImageLimits",
    "ImageRefusedError",
    "ImageTooLargeError",
    "UndecodableImageError",
    "decode_encoded",
    "decode_image",
    "decode_raw",
    "fetch_encoded",
    "header_size",
    "image_format",
    "window_to_uint8",
]

_Codes = common_pb2.ErrorCode
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE: Final = b"\xff\xd8\xff"
# Modes Pillow decodes wider than 8 bits per sample: windowed, not clipped.
_WIDE_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_GRAY_MODES: Final = frozenset({"1", "L", "LA", "La"})
# What Pillow raises on broken data: its own errors are OSError/SyntaxError/ValueError, zlib's
# and struct's come through from the PNG and TIFF-in-JPEG (EXIF) readers.
_DECODER_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
)


class ImageRefusedError(PoisonEventError):
    """An image the service will not read; the message starts with the ErrorCode name.

    Poison: the same bytes are refused every time, so a caller does not retry them.
    ``reason`` is a short machine-readable phrase for logs and metrics.
    """

    code: ClassVar[int] = _Codes.ERROR_CODE_OCR_IMAGE_UNDECODABLE

    def __init__(self, reason: str, detail: str, *, code: int | None = None) -> None:
        self.error_code = self.code if code is None else code
        self.reason = reason
        super().__init__(f"{self.code_name}: {detail}")

    @property
    def code_name(self) -> str:
        """The ErrorCode's name, e.g. ``ERROR_CODE_OCR_IMAGE_UNDECODABLE``."""
        return _Codes.Name(self.error_code)


class UndecodableImageError(ImageRefusedError):
    """Not PNG or JPEG, broken or truncated, or raw pixels whose layout does not add up."""


class ImageTooLargeError(ImageRefusedError):
    """More pixels, a longer side or more bytes than the service accepts."""

    code: ClassVar[int] = _Codes.ERROR_CODE_OCR_IMAGE_TOO_LARGE


@dataclass(frozen=True, kw_only=True)
class ImageLimits:
    """What the service accepts (``RADSTREAM_OCR_MAX_IMAGE_*``, ``_MAX_MESSAGE_BYTES``)."""

    max_pixels: int = 50_000_000
    max_side: int = 16_384
    max_encoded_bytes: int = 64 * 1024 * 1024

    def check_size(self, width: int, height: int, *, what: str) -> None:
        """Refuse an image of ``width`` x ``height`` beyond the limits (before decoding it)."""
        if width <= 0 or height <= 0:
            raise UndecodableImageError(
                "empty_image", f"{what} is {width} x {height} pixels; both must be positive"
            )
        if max(width, height) > self.max_side:
            raise ImageTooLargeError(
                "image_too_large",
                f"{what} is {width} x {height} pixels; the longer side may be at most "
                f"{self.max_side} (RADSTREAM_OCR_MAX_IMAGE_SIDE)",
            )
        if width * height > self.max_pixels:
            raise ImageTooLargeError(
                "image_too_large",
                f"{what} is {width} x {height} = {width * height} pixels; at most "
                f"{self.max_pixels} are accepted (RADSTREAM_OCR_MAX_IMAGE_PIXELS)",
            )


def image_format(data: bytes) -> str | None:
    """``"PNG"`` or ``"JPEG"`` by the file signature, else None."""
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data.startswith(JPEG_SIGNATURE):
        return "JPEG"
    return None


# JPEG start-of-frame markers (SOF0-SOF15 less DHT, JPG and DAC): they carry the frame's size.
_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RSTn, SOI, EOI.
_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xDA)})


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` as a PNG's IHDR or a JPEG's start-of-frame says, without decoding.

    None when the header cannot be found (the decoder then refuses the file).
    """
    if data.startswith(PNG_SIGNATURE):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        return None
    if data.startswith(JPEG_SIGNATURE):
        return _jpeg_frame_size(data)
    return None


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG's marker segments up to its start-of-frame; None if broken first."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker in _STANDALONE_MARKERS:
            at += 2
        elif marker in _SOF_MARKERS:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return int(width), int(height)
        else:
            (length,) = struct.unpack(">H", data[at + 2 : at + 4])
            if marker == 0xDA or length < 2:  # a scan before any frame header: broken
                return None
            at += 2 + length
    return None


def decode_encoded(data: bytes, limits: ImageLimits, *, what: str = "the encoded image") -> Image:
    """Decode PNG or JPEG bytes, refusing other formats and images beyond ``limits``.

    Pillow reads only the header when it opens the image; the size is checked then, and the
    pixels are decoded after. A truncated file fails to decode (Pillow's
    ``LOAD_TRUNCATED_IMAGES`` stays off: a partly grey image would read as "no text").
    """
    if len(data) > limits.max_encoded_bytes:
        raise ImageTooLargeError(
            "image_too_large",
            f"{what} has {len(data)} bytes; at most {limits.max_encoded_bytes} are accepted",
        )
    kind = image_format(data)
    if kind is None:
        raise UndecodableImageError(
            "unsupported_format", f"{what} is neither PNG nor JPEG (by its signature)"
        )
    claimed = header_size(data)
    if claimed is not None:  # before Pillow opens it: its own bomb check is coarser
        limits.check_size(*claimed, what=what)
    try:
        with PilImage.open(io.BytesIO(data), formats=[kind]) as image:
            width, height = image.size
            limits.check_size(width, height, what=what)
            image.load()
            return _pixels_of(image)
    except ImageRefusedError:
        raise
    except PilImage.DecompressionBombError as exc:  # Pillow's own ceiling, past ours
        raise ImageTooLargeError(
            "image_too_large", f"{what} claims more pixels than the decoder allows"
        ) from exc
    except _DECODER_ERRORS as exc:
        # The decoder's message may quote bytes of the file: only its type is named.
        raise UndecodableImageError(
            "undecodable", f"{what} is a {kind} that cannot be decoded ({type(exc).__name__})"
        ) from exc


def _pixels_of(image: PilImage.Image) -> Image:
    """The decoded image as ``uint8`` (H, W) or (H, W, 3); alpha dropped, palettes expanded."""
    mode = image.mode
    if mode in _WIDE_MODES:
        return window_to_uint8(np.asarray(image))
    if mode == "L":
        return np.array(image, dtype=np.uint8)
    if mode in _GRAY_MODES:
        return np.array(image.convert("L"), dtype=np.uint8)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def decode_raw(raw: ocr_pb2.RawImage, limits: ImageLimits) -> Image:
    """Uncompressed pixels as an engine image; the layout must account for every byte."""
    width, height, channels, bits = raw.width, raw.height, raw.channels, raw.bits
    if channels not in (1, 3):
        raise UndecodableImageError(
            "unsupported_layout", f"RawImage.channels is {channels}; 1 or 3 are accepted"
        )
    if bits not in (8, 16):
        raise UndecodableImageError(
            "unsupported_layout", f"RawImage.bits is {bits}; 8 or 16 are accepted"
        )
    limits.check_size(width, height, what="the raw image")
    expected = width * height * channels * bits // 8
    if len(raw.pixels) != expected:
        raise UndecodableImageError(
            "raw_size_mismatch",
            f"RawImage.pixels holds {len(raw.pixels)} bytes; {width} x {height} pixels of "
            f"{channels} channel(s) at {bits} bits need {expected}",
        )
    dtype = np.dtype("<u2")
    shape = (height, width) if channels == 1 else (height, width, 3)
    if bits == 8:  # a copy: writable, and free of the request's buffer
        return np.frombuffer(raw.pixels, dtype=np.uint8).reshape(shape).copy()
    return window_to_uint8(np.frombuffer(raw.pixels, dtype=dtype).reshape(shape))


def window_to_uint8(pixels: npt.NDArray[np.generic]) -> Image:
    """Map ``pixels`` linearly so their minimum is 0 and their maximum 255 (all channels alike).

    A constant image maps to zeros. Unsigned 16-bit input goes through a 64 K lookup table
    (one byte per pixel of extra memory); wider or float input through float64.
    """
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.size == 0:
        return np.zeros(pixels.shape, dtype=np.uint8)
    if pixels.dtype.kind == "f":
        finite = np.isfinite(pixels)
        if not finite.any():
            return np.zeros(pixels.shape, dtype=np.uint8)
        values = np.where(finite, pixels, np.nanmin(np.where(finite, pixels, np.nan)))
    else:
        values = pixels
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    if values.dtype == np.uint16:
        span = int(high) - int(low)
        levels = np.arange(65536, dtype=np.int64) - int(low)
        table = ((np.clip(levels, 0, span) * 255 + span // 2) // span).astype(np.uint8)
        return table[values]
    scaled = (values.astype(np.float64) - float(low)) * (255.0 / (float(high) - float(low)))
    return np.rint(scaled).astype(np.uint8)


async def fetch_encoded(ref: common_pb2.BlobRef, store: BlobStore, limits: ImageLimits) -> bytes:
    """The encoded image a claim check names, from the PHI store, verified against the ref.

    Its size is checked (from the ref, which the store verifies) before it is fetched. A ref
    the store will not serve, a missing blob and damaged bytes are refusals; a store that is
    away raises its :class:`~radstream.common.errors.TransientError` for the caller to retry.
    """
    if ref.size > limits.max_encoded_bytes:
        raise ImageTooLargeError(
            "image_too_large",
            f"the referenced blob has {ref.size} bytes; at most {limits.max_encoded_bytes} "
            "are accepted",
        )
    try:
        blob = BlobRef.from_proto(ref)
        return await store.get(blob)
    except BlobNotFoundError as exc:
        raise ImageRefusedError(
            "blob_not_found",
            "the referenced blob is not in the PHI store",
            code=_Codes.ERROR_CODE_BLOB_NOT_FOUND,
        ) from exc
    except BlobIntegrityError as exc:
        raise ImageRefusedError(
            "blob_integrity",
            "the referenced blob does not match the ref's sha256 and size",
            code=_Codes.ERROR_CODE_BLOB_CHECKSUM_MISMATCH,
        ) from exc
    except BlobRefRejectedError as exc:
        raise ImageRefusedError(
            "blob_ref_rejected",
            "the ref is malformed or points outside the PHI store, the only store the "
            "service reads",
            code=_Codes.ERROR_CODE_INVALID_EVENT,
        ) from exc


def decode_image(
    request: ocr_pb2.RecognizeRequest, limits: ImageLimits, *, fetched: bytes | None = None
) -> Image:
    """The request's image; a ``ref`` image must have been fetched first (``fetched``)."""
    which = request.WhichOneof("image")
    if which == "encoded":
        return decode_encoded(request.encoded, limits)
    if which == "raw":
        return decode_raw(request.raw, limits)
    if which == "ref":
        if fetched is None:
            raise ValueError("a ref image is fetched (fetch_encoded) before it is decoded")
        return decode_encoded(fetched, limits, what="the referenced image")
    raise UndecodableImageError("no_image", "the request carries no image (encoded, raw or ref)")
