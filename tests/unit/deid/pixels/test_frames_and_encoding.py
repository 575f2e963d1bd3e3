"""Every common transfer syntax decodes, and redacted frames are written back consistently.

Inputs: pydicom's own test files for the syntaxes no encoder here can produce (JPEG lossless,
JPEG-LS, JPEG extended, big endian, deflate, palette colour, overlays), and instances encoded
here with pydicom's encoders (RLE, JPEG 2000) or Pillow (JPEG baseline, YBR_FULL_422).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from radstream.deid.pixels.encode import write_frames
from radstream.deid.pixels.frames import DecodedFrames, decode_frames, overlay_images
from radstream.deid.pixels.redact import fill_boxes
from radstream.ocr.engine import Box
from tests.unit.deid.pixels.builders import ct_slice, us_instance

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def reread(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return dcmread(io.BytesIO(buffer.getvalue()))


def reference_file(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, name
    return dcmread(path)


def redact_and_write(ds: Dataset, box: Box) -> tuple[DecodedFrames, np.ndarray, Dataset]:
    """Decode, fill ``box`` in every frame, write back; return what was meant and the re-read."""
    decoded = decode_frames(ds)
    frames = fill_boxes(decoded, dict.fromkeys(range(decoded.count), (box,)), padding=0)
    write_frames(ds, decoded, frames)
    return decoded, frames, reread(ds)


# (file, syntax, the syntax written back after redaction, lossy source)
TESTDATA = [
    ("MR_small.dcm", "1.2.840.10008.1.2.1", EXPLICIT_LE, False),
    ("MR_small_implicit.dcm", "1.2.840.10008.1.2", "1.2.840.10008.1.2", False),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2", EXPLICIT_LE, False),
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.1.99", False),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.5", False),
    ("SC_rgb_rle_2frame.dcm", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.5", False),
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.90", False),
    ("examples_jpeg2k.dcm", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.90", False),
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", EXPLICIT_LE, True),
    ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70", EXPLICIT_LE, False),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", EXPLICIT_LE, False),
    ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81", EXPLICIT_LE, True),
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", EXPLICIT_LE, True),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "1.2.840.10008.1.2.4.50", EXPLICIT_LE, True),
    ("examples_ybr_color.dcm", "1.2.840.10008.1.2.4.50", EXPLICIT_LE, True),
    ("SC_ybr_full_422_uncompressed.dcm", "1.2.840.10008.1.2.1", EXPLICIT_LE, False),
    ("examples_palette.dcm", "1.2.840.10008.1.2.1", EXPLICIT_LE, False),
    ("liver_1frame.dcm", "1.2.840.10008.1.2.1", EXPLICIT_LE, False),  # 1-bit, packed again
    ("rtdose.dcm", "1.2.840.10008.1.2", "1.2.840.10008.1.2", False),  # 32-bit, 15 frames
]


class TestEverySyntax:
    @pytest.mark.parametrize(("name", "syntax", "written", "lossy"), TESTDATA)
    def test_decodes_redacts_and_writes_back_what_it_meant(
        self, name: str, syntax: str, written: str, lossy: bool
    ) -> None:
        ds = reference_file(name)
        assert str(ds.file_meta.TransferSyntaxUID) == syntax
        source_photometric = str(ds.PhotometricInterpretation)
        box = Box(2, 3, 9, 5)
        decoded, frames, output = redact_and_write(ds, box)
        assert str(output.file_meta.TransferSyntaxUID) == written
        again = decode_frames(output)
        assert np.array_equal(again.frames, frames)  # the output says what was meant, exactly
        for frame in frames:  # one value throughout the box, the frame's background
            filled = frame[3:8, 2:11]
            assert (filled == filled.reshape(-1)[0]).all()
        outside = np.ones(frames.shape[1:3], bool)
        outside[3:8, 2:11] = False
        assert np.array_equal(frames[:, outside], decoded.frames[:, outside])  # the rest kept
        assert output.get("LossyImageCompression") == (
            "01" if lossy else ds.get("LossyImageCompression")
        )
        if source_photometric.startswith("YBR") or int(ds.SamplesPerPixel) == 3:
            assert output.PhotometricInterpretation == "RGB"
            assert output.PlanarConfiguration == 0
        else:
            assert output.PhotometricInterpretation == source_photometric

    def test_colour_decoded_from_ybr_is_rgb(self) -> None:
        ds = reference_file("SC_rgb_dcmtk_+eb+cy+np.dcm")  # JPEG baseline, YBR_FULL_422
        decoded = decode_frames(ds)
        assert decoded.photometric == "RGB" and decoded.source_photometric == "YBR_FULL_422"
        reference = pixel_array(reference_file("SC_rgb_dcmtk_+eb+cr.dcm"))  # the same picture, RGB
        assert np.abs(decoded.frames[0].astype(int) - reference.astype(int)).mean() < 3

    def test_a_jpeg_baseline_instance_encoded_here_decodes_to_its_picture(self) -> None:
        picture = np.zeros((64, 96, 3), np.uint8)
        picture[10:30, 20:70] = (200, 40, 40)
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=95, subsampling=1)  # 4:2:2
        ds = us_instance(picture[np.newaxis])
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        decoded = decode_frames(reread(ds))
        assert decoded.photometric == "RGB"
        assert np.abs(decoded.frames[0].astype(int) - picture.astype(int)).mean() < 4

    @pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
    def test_instances_encoded_with_pydicoms_encoders_round_trip(self, syntax: str) -> None:
        pixels = ct_slice(1, size=128)
        ds = us_instance(np.zeros((1, 8, 8), np.uint8))  # a header; its pixels are replaced
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.compress(syntax, pixels, generate_instance_uid=False)
        box = Box(0, 0, 40, 12)
        _, frames, output = redact_and_write(reread(ds), box)
        assert str(output.file_meta.TransferSyntaxUID) == syntax
        assert np.array_equal(decode_frames(output).frames, frames)

    def test_lossy_jpeg_2000_encoded_here_is_written_uncompressed(self) -> None:
        pixels = ct_slice(2, size=128)
        ds = us_instance(np.zeros((1, 8, 8), np.uint8))
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.compress(JPEG2000, pixels, j2k_cr=[10], generate_instance_uid=False)
        _, frames, output = redact_and_write(reread(ds), Box(0, 0, 30, 10))
        assert output.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert output.LossyImageCompression == "01"
        assert np.array_equal(decode_frames(output).frames, frames)


class TestDisplay:
    def test_monochrome1_is_inverted_and_filled_with_its_maximum(self) -> None:
        pixels = ct_slice(3, size=64)
        ds = us_instance(np.zeros((1, 8, 8), np.uint8))
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.PixelData = pixels.tobytes()
        decoded = decode_frames(ds)
        shown = decoded.display(0)
        brightest = np.unravel_index(np.argmax(pixels), pixels.shape)
        assert shown[brightest] == shown.min()  # the highest value displays darkest
        assert decoded.background(0) == pixels.max()  # ... and a fill displays black

    def test_the_header_window_is_used_for_16_bit_frames(self) -> None:
        pixels = np.full((32, 32), 1024 + 40, np.uint16)  # 40 HU: the centre of the window
        ds = us_instance(np.zeros((1, 8, 8), np.uint8))
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = pixels.tobytes()
        assert abs(int(decode_frames(ds).display(0).mean()) - 127) <= 1

    def test_one_bit_frames_are_shown_black_and_white(self) -> None:
        decoded = decode_frames(reference_file("liver_1frame.dcm"))
        shown = decoded.display(0)
        assert set(np.unique(shown).tolist()) == {0, 255}

    def test_palette_colour_is_shown_through_its_table_and_filled_dark(self) -> None:
        decoded = decode_frames(reference_file("examples_palette.dcm"))
        shown = decoded.display(0)
        assert shown.ndim == 3 and shown.shape[-1] == 3
        index = decoded.background(0)
        darkest = shown.sum(axis=-1).min()
        assert shown[decoded.frames[0] == index].sum(axis=-1).min() == darkest


class TestOverlays:
    def test_overlay_planes_are_rendered_in_image_coordinates(self) -> None:
        ds = reference_file("examples_overlay.dcm")
        [overlay] = overlay_images(ds)
        assert overlay.group == 0x6000
        assert overlay.image.shape == (int(ds[0x60000010].value), int(ds[0x60000011].value))
        assert set(np.unique(overlay.image).tolist()) <= {0, 255} and overlay.image.max() == 255
        row, column = ds[0x60000050].value
        assert overlay.origin == (column - 1, row - 1)
