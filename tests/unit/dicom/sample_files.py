"""The real DICOM files pydicom and deid-data ship, which the codec, writer and reader tests share.

``SAMPLE_FILES`` is every one of them; ``READABLE`` those the strict reader accepts (charsets,
implicit VR and big-endian files, nested and private sequences, encapsulated pixels).
"""

from __future__ import annotations

from pathlib import Path

import deid_data
import pydicom

from radstream.dicom.errors import InvalidInstanceError
from radstream.dicom.reader import read_instance

SAMPLE_FILES = sorted(
    [
        *(Path(pydicom.__file__).parent / "data").rglob("*.dcm"),
        *Path(deid_data.__file__).parent.rglob("*.dcm"),
    ]
)


def _readable(path: Path) -> bool:
    try:
        read_instance(path.read_bytes())
    except InvalidInstanceError:
        return False
    return True


READABLE = [path for path in SAMPLE_FILES if _readable(path)]
