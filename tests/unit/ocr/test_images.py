"""Decoding a request's image: PNG, JPEG, raw pixels and claim checks, and every refusal."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from radstream.common.blobstore import FilesystemBlobStore
from radstream.contracts.v1 import common_pb2, ocr_pb2
from radstream.ocr.images import (
    ImageLimits,
    ImageRefusedError,
    ImageTooLargeError,
    UndecodableImageError,
    decode_encoded,
    decode_image,
    decode_raw,
    fetch_encoded,
    header_size,
    image_format,
    window_to_uint8,
)

LIMITS = ImageLimits(max_pixels=1_000_000, max_side=4096, max_encoded_bytes=4 * 1024 * 1024)
PHI = "QUIXBERG^ZANTHEA"


def gradient(height: int = 40, width: int = 60, *, rgb: bool = False) -> np.ndarray:
    rows = np.arange(height, dtype=np.uint16)[:, None] * 3
    cols = np.arange(width, dtype=np.uint16)[None, :] * 2
    gray = ((rows + cols) % 256).astype(np.uint8)
    if not rgb:
        return gray
    return np.stack([gray, 255 - gray, gray // 2], axis=-1)


def encoded(pixels: np.ndarray, kind: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=kind, **params)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` 8-bit gray pixels, with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def code_of(error: ImageRefusedError) -> str:
    return str(error).split(":", 1)[0]


# -- encoded images ---------------------------------------------------------------------------


def test_a_grayscale_png_decodes_to_its_exact_pixels() -> None:
    pixels = gradient()

    decoded = decode_encoded(encoded(pixels), LIMITS)

    assert decoded.dtype == np.uint8
    assert decoded.shape == (40, 60)
    assert np.array_equal(decoded, pixels)


def test_an_rgb_png_decodes_to_three_channels() -> None:
    pixels = gradient(rgb=True)

    decoded = decode_encoded(encoded(pixels), LIMITS)

    assert decoded.shape == (40, 60, 3)
    assert np.array_equal(decoded, pixels)


def test_alpha_is_dropped_and_palettes_are_expanded() -> None:
    rgb = gradient(rgb=True)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")

    from_rgba = decode_encoded(encoded(rgba), LIMITS)
    from_palette = decode_encoded(buffer.getvalue(), LIMITS)

    assert np.array_equal(from_rgba, rgb)
    assert from_palette.shape == (40, 60, 3)
    assert np.array_equal(from_palette, np.asarray(palette.convert("RGB")))


def test_a_16_bit_png_is_windowed_over_its_own_range() -> None:
    pixels = np.array([[1000, 1500], [2000, 3000]], dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")

    decoded = decode_encoded(buffer.getvalue(), LIMITS)

    assert decoded.dtype == np.uint8
    assert decoded.tolist() == [[0, 64], [128, 255]]


def test_a_jpeg_decodes_close_to_what_was_encoded() -> None:
    pixels = gradient(64, 64)

    decoded = decode_encoded(encoded(pixels, "JPEG", quality=95), LIMITS)

    assert decoded.shape == (64, 64)
    assert np.abs(decoded.astype(int) - pixels.astype(int)).mean() < 3


def test_a_truncated_jpeg_is_refused_as_undecodable() -> None:
    data = encoded(gradient(64, 64, rgb=True), "JPEG", quality=90)

    with pytest.raises(UndecodableImageError) as refused:
        decode_encoded(data[: len(data) // 2], LIMITS)

    assert code_of(refused.value) == "ERROR_CODE_OCR_IMAGE_UNDECODABLE"
    assert refused.value.reason == "undecodable"
    assert refused.value.error_code == common_pb2.ERROR_CODE_OCR_IMAGE_UNDECODABLE


def test_a_png_with_broken_image_data_is_refused_without_quoting_its_bytes() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", PHI)
    buffer = io.BytesIO()
    Image.fromarray(gradient()).save(buffer, format="PNG", pnginfo=info)
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 4
    data[start : start + 20] = b"\xff" * 20  # the zlib stream no longer inflates

    with pytest.raises(UndecodableImageError) as refused:
        decode_encoded(bytes(data), LIMITS)

    assert code_of(refused.value) == "ERROR_CODE_OCR_IMAGE_UNDECODABLE"
    assert PHI not in str(refused.value)
    assert "QUIXBERG" not in repr(refused.value)


@pytest.mark.parametrize("kind", ["GIF", "BMP", "TIFF", "WEBP"])
def test_formats_other_than_png_and_jpeg_are_refused_by_their_signature(kind: str) -> None:
    data = encoded(gradient(rgb=True), kind)

    with pytest.raises(UndecodableImageError) as refused:
        decode_encoded(data, LIMITS)

    assert refused.value.reason == "unsupported_format"
    assert image_format(data) is None


def test_bytes_that_are_no_image_are_refused() -> None:
    with pytest.raises(UndecodableImageError, match="neither PNG nor JPEG"):
        decode_encoded(f"name {PHI}".encode(), LIMITS)


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding() -> None:
    bomb = png_header_only(100_000, 100_000)  # 10 GB of pixels claimed by 70 bytes

    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError) as refused:
        decode_encoded(bomb, ImageLimits(max_pixels=50_000_000, max_side=200_000))

    assert time.perf_counter() - started < 1.0
    assert code_of(refused.value) == "ERROR_CODE_OCR_IMAGE_TOO_LARGE"
    assert "100000 x 100000" in str(refused.value)


def test_the_size_is_read_from_png_and_jpeg_headers() -> None:
    rgb = gradient(37, 53, rgb=True)

    assert header_size(encoded(rgb)) == (53, 37)
    assert header_size(encoded(rgb, "JPEG", quality=80)) == (53, 37)
    assert header_size(encoded(rgb, "JPEG", progressive=True, exif=b"Exif\x00\x00")) == (53, 37)
    assert header_size(png_header_only(70_000, 3)) == (70_000, 3)
    assert header_size(b"\xff\xd8\xff\xe0\x00") is None


def test_a_jpeg_bomb_is_refused_from_its_frame_header() -> None:
    data = bytearray(encoded(gradient(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)

    with pytest.raises(ImageTooLargeError, match="60000 x 60000"):
        decode_encoded(bytes(data), ImageLimits(max_pixels=50_000_000, max_side=65_535))


def test_the_pixel_count_and_the_side_are_both_limits() -> None:
    square = encoded(np.zeros((300, 300), np.uint8))
    strip = encoded(np.zeros((1, 5000), np.uint8))

    with pytest.raises(ImageTooLargeError, match="RADSTREAM_OCR_MAX_IMAGE_PIXELS"):
        decode_encoded(square, ImageLimits(max_pixels=80_000, max_side=4096))
    with pytest.raises(ImageTooLargeError, match="RADSTREAM_OCR_MAX_IMAGE_SIDE"):
        decode_encoded(strip, ImageLimits(max_pixels=80_000, max_side=4096))
    assert decode_encoded(square, ImageLimits(max_pixels=90_000, max_side=300)).shape == (300, 300)


def test_encoded_bytes_beyond_the_limit_are_refused_unread() -> None:
    data = encoded(gradient())

    with pytest.raises(ImageTooLargeError, match=f"{len(data)} bytes"):
        decode_encoded(data, ImageLimits(max_encoded_bytes=len(data) - 1))


# -- raw pixels -------------------------------------------------------------------------------


def raw(pixels: np.ndarray, *, bits: int = 8) -> ocr_pb2.RawImage:
    data = pixels.astype("<u2" if bits == 16 else np.uint8).tobytes()
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return ocr_pb2.RawImage(
        pixels=data, width=pixels.shape[1], height=pixels.shape[0], channels=channels, bits=bits
    )


def test_raw_8_bit_pixels_come_back_as_they_were_sent() -> None:
    gray, rgb = gradient(), gradient(rgb=True)

    decoded_gray = decode_raw(raw(gray), LIMITS)
    decoded_rgb = decode_raw(raw(rgb), LIMITS)

    assert np.array_equal(decoded_gray, gray)
    assert np.array_equal(decoded_rgb, rgb)
    assert decoded_gray.flags.writeable


def test_raw_16_bit_pixels_are_little_endian_and_windowed() -> None:
    pixels = np.array([[40000, 40010], [40020, 40040]], dtype=np.uint16)
    message = raw(pixels, bits=16)

    assert message.pixels[:2] == struct.pack("<H", 40000)
    assert decode_raw(message, LIMITS).tolist() == [[0, 64], [128, 255]]


def test_raw_16_bit_rgb_is_windowed_over_all_channels_alike() -> None:
    pixels = np.zeros((2, 2, 3), dtype=np.uint16)
    pixels[0, 0] = (0, 1000, 2000)

    decoded = decode_raw(raw(pixels, bits=16), LIMITS)

    assert decoded[0, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("delta", [-1, 1, -100])
def test_raw_pixels_must_fill_their_layout_exactly(delta: int) -> None:
    message = raw(gradient(rgb=True))
    message.pixels = message.pixels[:delta] if delta < 0 else message.pixels + b"\x00" * delta

    with pytest.raises(UndecodableImageError) as refused:
        decode_raw(message, LIMITS)

    assert refused.value.reason == "raw_size_mismatch"
    assert code_of(refused.value) == "ERROR_CODE_OCR_IMAGE_UNDECODABLE"
    assert "need 7200" in str(refused.value)


@pytest.mark.parametrize(("channels", "bits"), [(2, 8), (4, 8), (0, 8), (1, 12), (3, 32)])
def test_raw_layouts_other_than_1_or_3_channels_of_8_or_16_bits_are_refused(
    channels: int, bits: int
) -> None:
    message = ocr_pb2.RawImage(pixels=b"\x00" * 64, width=4, height=4, channels=channels, bits=bits)

    with pytest.raises(UndecodableImageError) as refused:
        decode_raw(message, LIMITS)

    assert refused.value.reason == "unsupported_layout"


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-5, 10)])
def test_raw_images_without_pixels_are_refused(width: int, height: int) -> None:
    message = ocr_pb2.RawImage(pixels=b"", width=width, height=height, channels=1, bits=8)

    with pytest.raises(UndecodableImageError, match="must be positive"):
        decode_raw(message, LIMITS)


def test_a_raw_image_claiming_too_many_pixels_is_refused_before_its_length_is_checked() -> None:
    message = ocr_pb2.RawImage(pixels=b"\x00", width=2_000_000, height=2_000, channels=1, bits=8)

    with pytest.raises(ImageTooLargeError):
        decode_raw(message, ImageLimits(max_pixels=1_000_000, max_side=10_000_000))


# -- windowing --------------------------------------------------------------------------------


def test_windowing_maps_the_extremes_to_0_and_255_and_a_flat_image_to_black() -> None:
    assert window_to_uint8(np.array([[3, 7]], dtype=np.uint16)).tolist() == [[0, 255]]
    assert window_to_uint8(np.array([[-5, 5]], dtype=np.int32)).tolist() == [[0, 255]]
    assert window_to_uint8(np.full((2, 2), 900, dtype=np.uint16)).tolist() == [[0, 0], [0, 0]]
    assert window_to_uint8(np.array([[0.0, np.nan, 2.0]])).tolist() == [[0, 0, 255]]


# -- the request's image, and claim checks ----------------------------------------------------


def test_a_request_without_an_image_is_refused() -> None:
    with pytest.raises(UndecodableImageError, match="carries no image"):
        decode_image(ocr_pb2.RecognizeRequest(), LIMITS)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[FilesystemBlobStore, FilesystemBlobStore]:
    phi = FilesystemBlobStore(tmp_path / "phi", "phi")
    release = FilesystemBlobStore(tmp_path / "release", "release")
    return phi, release


async def test_a_claim_check_is_fetched_from_the_phi_store_and_decoded(stores) -> None:
    phi, _ = stores
    pixels = gradient(rgb=True)
    ref = await phi.put(encoded(pixels), media_type="image/png")
    request = ocr_pb2.RecognizeRequest(ref=ref.to_proto())

    data = await fetch_encoded(request.ref, phi, LIMITS)

    assert np.array_equal(decode_image(request, LIMITS, fetched=data), pixels)


async def test_a_claim_check_whose_bytes_differ_is_refused(stores) -> None:
    phi, _ = stores
    ref = (await phi.put(encoded(gradient()))).to_proto()
    ref.size += 1

    with pytest.raises(ImageRefusedError) as refused:
        await fetch_encoded(ref, phi, LIMITS)

    assert code_of(refused.value) == "ERROR_CODE_BLOB_CHECKSUM_MISMATCH"


async def test_a_claim_check_for_a_missing_blob_is_refused(stores) -> None:
    phi, _ = stores
    stored = await phi.put(encoded(gradient()))
    await phi.delete(stored)
    ref = stored.to_proto()

    with pytest.raises(ImageRefusedError) as refused:
        await fetch_encoded(ref, phi, LIMITS)

    assert code_of(refused.value) == "ERROR_CODE_BLOB_NOT_FOUND"


async def test_a_claim_check_into_another_store_is_refused(stores) -> None:
    phi, release = stores
    ref = (await release.put(encoded(gradient()))).to_proto()

    with pytest.raises(ImageRefusedError) as refused:
        await fetch_encoded(ref, phi, LIMITS)

    assert code_of(refused.value) == "ERROR_CODE_INVALID_EVENT"
    assert refused.value.reason == "blob_ref_rejected"


async def test_a_claim_check_larger_than_the_limit_is_refused_before_fetching(stores) -> None:
    phi, _ = stores
    ref = common_pb2.BlobRef(
        uri="file:///nowhere", sha256="0" * 64, size=LIMITS.max_encoded_bytes + 1
    )

    with pytest.raises(ImageTooLargeError):
        await fetch_encoded(ref, phi, LIMITS)
