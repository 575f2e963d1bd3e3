"""JPEG Lossless, Process 14 (1.2.840.10008.1.2.4.57) with a predictor other than 1.

pydicom ships no file in this syntax except with selection value 1 (which is also 4.70), and
nothing in Python writes it; dcmtk's ``dcmcjpeg`` (the Debian package radstream depends on)
does. Selection value 6 predicts from three neighbours, so a decoder that ignored it would not
give back the original samples.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from radstream.deid.pixels.encode import write_frames
from radstream.deid.pixels.frames import decode_frames
from radstream.deid.pixels.redact import fill_boxes
from radstream.ocr.engine import Box

PROCESS_14 = "1.2.840.10008.1.2.4.57"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def process_14(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    native = get_testdata_file("MR_small.dcm")
    assert native is not None
    encoded = tmp_path_factory.mktemp("jpeg") / "mr_process14_sv6.dcm"
    subprocess.run(["dcmcjpeg", "+el", "+sv", "6", native, str(encoded)], check=True)
    return Path(native), encoded


def test_selection_value_6_decodes_to_the_original_samples(process_14: tuple[Path, Path]) -> None:
    native, encoded = process_14
    ds = dcmread(encoded)
    assert ds.file_meta.TransferSyntaxUID == PROCESS_14
    decoded = decode_frames(ds)
    assert decoded.transfer_syntax == PROCESS_14
    assert np.array_equal(decoded.frames, decode_frames(dcmread(native)).frames)


def test_redacted_it_is_written_native_and_exactly_as_meant(process_14: tuple[Path, Path]) -> None:
    _, encoded = process_14
    ds = dcmread(encoded)
    decoded = decode_frames(ds)
    box = Box(4, 6, 20, 8)
    frames = fill_boxes(decoded, {0: (box,)}, padding=0)
    written = write_frames(ds, decoded, frames)
    assert written.transfer_syntax == EXPLICIT_LE
    assert not written.lossy_source  # lossless in, so no Lossy Image Compression claim
    assert np.array_equal(decode_frames(ds).frames, frames)
    filled = frames[0, 6:14, 4:24]
    assert (filled == filled.reshape(-1)[0]).all()
