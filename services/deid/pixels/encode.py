"""Writing redacted frames back into a data set, with its pixel module telling the truth.

Which transfer syntax the output gets:

====================================================  ==========================================
input                                                 output
====================================================  ==========================================
native (implicit, explicit, deflated little endian)   the same
explicit big endian (retired)                         explicit VR little endian
RLE Lossless                                          RLE Lossless (pydicom's encoder)
JPEG 2000 lossless                                    JPEG 2000 lossless (OpenJPEG), no colour
                                                      transform, so RGB stays RGB
JPEG lossless (14, 14 SV1), JPEG-LS lossless,         explicit VR little endian: no encoder is
HTJ2K lossless                                        installed for them (pyjpegls would give
                                                      JPEG-LS back; not a dependency)
JPEG baseline/extended, JPEG-LS near-lossless,        explicit VR little endian, Lossy Image
JPEG 2000, HTJ2K (lossy)                              Compression "01" (it was lossy once; the
                                                      ratio and method kept describe that)
====================================================  ==========================================

Re-compressing lossy input would lose detail a second time and smear the filled boxes' edges,
so it is written uncompressed. Colour data decoded from YBR (JPEG's YBR_FULL_422, native
YBR_FULL) is written as RGB with Planar Configuration 0 (the decoder delivers interleaved RGB),
and Photometric Interpretation says RGB. Float and double float pixel data go back where they
came from. The stage decodes the written output again and compares it with the frames it meant
to write (:mod:`radstream.deid.pixels.verify`), so a codec that writes something else holds the
instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from radstream.deid.pixels.frames import NATIVE_SYNTAXES, DecodedFrames

__all__ = ["LOSSLESS_REENCODED", "EncodedPixels", "write_frames"]

_BIG_ENDIAN = "1.2.840.10008.1.2.2"
# Lossless encapsulated syntaxes re-encoded in their own syntax (an encoder is installed).
LOSSLESS_REENCODED = frozenset({str(RLELossless), str(JPEG2000Lossless)})
_LOSSLESS_TO_NATIVE = frozenset(
    {
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless Only
        "1.2.840.10008.1.2.4.202",  # HTJ2K with RPCL Options (lossless)
    }
)
_ENCAPSULATION_ONLY = ("ExtendedOffsetTable", "ExtendedOffsetTableLengths")


@dataclass(frozen=True, kw_only=True)
class EncodedPixels:
    """What :func:`write_frames` did: the output's transfer syntax and how it got there."""

    transfer_syntax: str
    method: str  # "native", "rle", "jpeg2000-lossless"
    lossy_source: bool


def write_frames(
    output: Dataset, decoded: DecodedFrames, frames: npt.NDArray[np.generic]
) -> EncodedPixels:
    """Set the pixel data of ``output`` to ``frames`` (shaped as ``decoded.frames``).

    ``output`` is the de-identified data set whose file meta says the input's transfer syntax.
    """
    source = decoded.transfer_syntax
    if "FloatPixelData" in output or "DoubleFloatPixelData" in output:
        return _write_float(output, frames, source)
    _set_colour_model(output, decoded)
    lossy = source not in NATIVE_SYNTAXES and source not in LOSSLESS_REENCODED | _LOSSLESS_TO_NATIVE
    if source in LOSSLESS_REENCODED:
        shaped = frames if decoded.count > 1 else frames[0]
        if source == str(JPEG2000Lossless):  # no colour transform: RGB stays RGB
            output.compress(source, shaped, generate_instance_uid=False, use_mct=False)
        else:
            output.compress(source, shaped, generate_instance_uid=False)
        method = "rle" if source == str(RLELossless) else "jpeg2000-lossless"
        return EncodedPixels(transfer_syntax=source, method=method, lossy_source=False)
    target = source if source in NATIVE_SYNTAXES and source != _BIG_ENDIAN else None
    _write_native(output, frames, target or str(ExplicitVRLittleEndian))
    if lossy:
        output.LossyImageCompression = "01"
    return EncodedPixels(
        transfer_syntax=target or str(ExplicitVRLittleEndian), method="native", lossy_source=lossy
    )


def _set_colour_model(output: Dataset, decoded: DecodedFrames) -> None:
    """RGB after a YBR decode, interleaved samples (what the decoder produced)."""
    if decoded.colour:
        output.PhotometricInterpretation = decoded.photometric
        output.PlanarConfiguration = 0


def _write_native(output: Dataset, frames: npt.NDArray[np.generic], syntax: str) -> None:
    if int(output.get("BitsAllocated", 8) or 8) == 1:
        data = pack_bits(np.ascontiguousarray(frames, dtype=np.uint8))  # 1-bit: 8 pixels a byte
    else:
        little = frames.astype(frames.dtype.newbyteorder("<"), copy=False)
        data = np.ascontiguousarray(little).tobytes()
    if len(data) % 2:
        data += b"\0"  # PS3.5 7.1.1: values have even length
    for keyword in _ENCAPSULATION_ONLY:
        if keyword in output:
            delattr(output, keyword)
    output.PixelData = data
    element = output["PixelData"]
    element.VR = "OB" if frames.dtype.itemsize == 1 else "OW"  # 1-bit packed is OB too
    element.is_undefined_length = False
    _forget_decoded(output)
    output.file_meta.TransferSyntaxUID = UID(syntax)


def _write_float(output: Dataset, frames: npt.NDArray[np.generic], source: str) -> EncodedPixels:
    keyword, dtype = (
        ("FloatPixelData", "<f4") if "FloatPixelData" in output else ("DoubleFloatPixelData", "<f8")
    )
    setattr(output, keyword, np.ascontiguousarray(frames.astype(dtype)).tobytes())
    _forget_decoded(output)
    syntax = source if source in NATIVE_SYNTAXES and source != _BIG_ENDIAN else None
    output.file_meta.TransferSyntaxUID = UID(syntax or ExplicitVRLittleEndian)
    return EncodedPixels(
        transfer_syntax=syntax or str(ExplicitVRLittleEndian), method="native", lossy_source=False
    )


def _forget_decoded(output: Dataset) -> None:
    """Drop pydicom's cached pixel array: it shows the pixels before redaction."""
    output._pixel_array = None
    output._pixel_id = {}
