"""Fuzz target: the ocr service's image intake (``TextRecognition.Detect`` over loopback gRPC).

Requests as a caller sends them -- encoded PNG and JPEG files and raw pixels -- go through the
real server on a TCP port: decoding (:mod:`radstream.ocr.images`), the limits, admission, and
RapidOCR's detector for what decodes. Seeds are small images of every PNG mode Pillow writes
(1-bit, gray, 16-bit, palette, RGB, RGBA) and baseline and progressive JPEGs, with planted PHI in
their metadata (PNG text chunks, a JPEG comment, EXIF) and drawn into their pixels; raw images
whose layout fields are rewritten. Mutations are byte-level, aimed at PNG chunk boundaries and
JPEG markers (where the sizes live); half the mutated PNGs get their chunk checksums fixed, so
that the mutation reaches the decoder instead of stopping at the CRC check.

Promise: every request is answered OK (the image's size within the limits, every box inside
it, no text: detection reads nothing) or INVALID_ARGUMENT with a status message that starts
with an ``ERROR_CODE_OCR_IMAGE_`` name; never another status, never a hang, and no planted PHI
in the status message or a log line.
"""

from __future__ import annotations

import asyncio
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw, PngImagePlugin
from prometheus_client import CollectorRegistry

from radstream.contracts.v1 import ocr_pb2, ocr_pb2_grpc
from radstream.ocr.engines import shared_engine
from radstream.ocr.images import ImageLimits
from radstream.ocr.metrics import OcrMetrics
from radstream.ocr.server import OcrServer, ServiceOptions
from tests.fuzz import phi
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.campaign import Campaign, Emitted, Finding
from tests.fuzz.mutations import INTERESTING_U16, mutated_bytes

CAMPAIGN = Campaign("ocr.images")
# Small limits, so that a mutated header claiming a large image is refused, not decoded.
LIMITS = ImageLimits(max_pixels=250_000, max_side=2048, max_encoded_bytes=1024 * 1024)


def _drawn(mode: str = "L") -> Image.Image:
    image = Image.new("L", (96, 40), 0)
    ImageDraw.Draw(image).text((4, 12), phi.PATIENT_NAME_PLAIN, fill=255)
    return image.convert(mode) if mode != "L" else image


def _png(image: Image.Image) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", phi.FREE_TEXT)
    info.add_itxt("Author", phi.PATIENT_NAME, lang="en", tkey="Patient")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _jpeg(image: Image.Image, **params: object) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = phi.FREE_TEXT  # ImageDescription
    exif[0x013B] = phi.PATIENT_NAME  # Artist
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", comment=phi.PATIENT_ID, exif=exif.tobytes(), **params)
    return buffer.getvalue()


def _seeds() -> list[bytes]:
    sixteen = Image.fromarray(np.asarray(_drawn()).astype(np.uint16) * 200 + 1000)
    return [
        _png(_drawn()),
        _png(_drawn("1")),
        _png(_drawn("RGB")),
        _png(_drawn("RGBA")),
        _png(_drawn("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=8)),
        _png(sixteen),
        _jpeg(_drawn(), quality=80),
        _jpeg(_drawn("RGB"), quality=70, progressive=True),
        _jpeg(_drawn("RGB"), quality=90, subsampling=0),
    ]


SEEDS = _seeds()


def _landmarks(data: bytes) -> list[int]:
    """Offsets of PNG chunk lengths and JPEG markers: where sizes and segment lengths live."""
    if data.startswith(b"\x89PNG"):
        offsets, at = [], 8
        while at + 8 <= len(data):
            offsets.append(at)
            at += 12 + int.from_bytes(data[at : at + 4], "big")
        return offsets
    return [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] not in (0, 0xFF)]


def _with_png_checksums(data: bytes) -> bytes:
    """``data`` with each PNG chunk's CRC recomputed, so a mutation gets past the CRC check."""
    fixed, at = bytearray(data), 8
    while at + 12 <= len(fixed):
        length = int.from_bytes(fixed[at : at + 4], "big")
        end = at + 8 + length
        if end + 4 > len(fixed):
            break
        fixed[end : end + 4] = zlib.crc32(bytes(fixed[at + 4 : end])).to_bytes(4, "big")
        at = end + 4
    return bytes(fixed)


@dataclass(frozen=True)
class ImageCase:
    request: ocr_pb2.RecognizeRequest
    operations: tuple[str, ...]

    def data(self) -> bytes:
        return self.request.SerializeToString()

    def __repr__(self) -> str:
        return f"ImageCase({self.request.WhichOneof('image')}, {self.operations})"


_FIELD_VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 8, 12, 16, 32, 40, 96, -1, 2**31 - 1, -(2**31)]),
    st.sampled_from(INTERESTING_U16),
    st.integers(-5, 5000),
)


@st.composite
def image_cases(draw: st.DrawFn) -> ImageCase:
    if draw(st.integers(0, 4)) == 0:
        pixels = np.asarray(_drawn())
        bits = draw(st.sampled_from([8, 16]))
        channels = draw(st.sampled_from([1, 3]))
        stacked = np.repeat(pixels[:, :, None], channels, axis=2) if channels == 3 else pixels
        data = stacked.astype("<u2" if bits == 16 else np.uint8).tobytes()
        message = ocr_pb2.RawImage(pixels=data, width=96, height=40, channels=channels, bits=bits)
        operations = []
        for name in draw(st.lists(st.sampled_from(["width", "height", "channels", "bits"]))):
            setattr(message, name, draw(_FIELD_VALUES))
            operations.append(f"raw.{name}")
        if draw(st.booleans()):
            message.pixels = draw(mutated_bytes(data, max_operations=2))
            operations.append("raw.pixels")
        return ImageCase(ocr_pb2.RecognizeRequest(raw=message), tuple(operations))
    seed = draw(st.sampled_from(SEEDS))
    data = draw(mutated_bytes(seed, anchors=_landmarks(seed), donors=SEEDS))
    operations = ["encoded bytes"]
    if data.startswith(b"\x89PNG") and draw(st.booleans()):
        data = _with_png_checksums(data)
        operations.append("PNG checksums fixed")
    return ImageCase(ocr_pb2.RecognizeRequest(encoded=data), tuple(operations))


@dataclass
class Loopback:
    runner: asyncio.Runner
    server: OcrServer
    stub: ocr_pb2_grpc.TextRecognitionStub


@pytest.fixture(scope="module")
def loopback() -> Iterator[Loopback]:
    with asyncio.Runner() as runner:
        server = OcrServer(
            ServiceOptions(limits=LIMITS, max_message_bytes=4 * 1024 * 1024, queue_limit=4),
            metrics=OcrMetrics(CollectorRegistry()),
        )
        runner.run(server.start())
        runner.run(server.service.attach(shared_engine("rapidocr")))
        channel = runner.run(_channel(server.address))
        try:
            yield Loopback(runner, server, ocr_pb2_grpc.TextRecognitionStub(channel))
        finally:
            runner.run(channel.close())
            runner.run(server.stop(2))


async def _channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address)


async def _detect(
    stub: ocr_pb2_grpc.TextRecognitionStub, request: ocr_pb2.RecognizeRequest
) -> ocr_pb2.RecognizeResponse:
    return await stub.Detect(request, timeout=60)


def detect(loopback: Loopback, case: ImageCase, emitted: Emitted) -> None:
    try:
        response = loopback.runner.run(_detect(loopback.stub, case.request))
    except grpc.aio.AioRpcError as error:
        details = error.details() or ""
        emitted("status message", details)
        emitted.answered(f"{error.code().name} {details.partition(':')[0]}")
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise Finding("bad-status", "Detect", f"{error.code().name}") from None
        if not details.startswith("ERROR_CODE_OCR_IMAGE_"):
            raise Finding(
                "no-error-code", "Detect", "INVALID_ARGUMENT without an OCR code"
            ) from None
        return
    emitted.answered("OK")
    width, height = response.image_width, response.image_height
    if width * height > LIMITS.max_pixels or max(width, height) > LIMITS.max_side:
        raise Finding("bad-answer", "Detect", f"decoded {width} x {height}, over the limits")
    for region in response.regions:
        box = region.box
        if region.text or not (box.x >= 0 and box.x + box.width <= width):
            raise Finding("bad-answer", "Detect", "a region with text or outside the image")
        if not (box.y >= 0 and box.y + box.height <= height and box.width > 0 < box.height):
            raise Finding("bad-answer", "Detect", "a box outside the image or empty")


@fuzz_settings(weight=0.5)
@given(case=image_cases())
def _fuzz(loopback: Loopback, case: ImageCase) -> None:
    CAMPAIGN.attempt(case.data(), lambda emitted: detect(loopback, case, emitted))


def test_every_mutated_image_is_read_or_refused_with_an_ocr_error_code(loopback: Loopback) -> None:
    with CAMPAIGN.running():
        _fuzz(loopback)
    CAMPAIGN.assert_clean()
