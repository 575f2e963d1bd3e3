"""The real ultrasound files of ``deid-data``, with the PHI burned into their top band.

The strings are the files' own burned-in text (public test data, not a person's record); the
tests look for them in what the engines read.
"""

from __future__ import annotations

from pathlib import Path

import deid_data
import numpy as np
import pydicom

__all__ = ["TOP_BAND_PHI", "ULTRASOUNDS", "ultrasound"]

ULTRASOUNDS = Path(deid_data.__file__).parent / "data" / "ultrasounds"

TOP_BAND_PHI = {
    "GREYSCALE_IMAGE.dcm": ("00079241539", "DOB: 08/29/1951", "03/02/2017"),
    "RGB_IMAGE.dcm": ("ZZZDOWNTIME,MARY", "00047431395", "4/14/2020", "CCHS CLEVELAND CLINIC"),
}


def ultrasound(name: str) -> np.ndarray:
    """The file's pixels: 8-bit, (768, 1024) grayscale or (768, 1024, 3) RGB."""
    return np.asarray(pydicom.dcmread(ULTRASOUNDS / name).pixel_array, dtype=np.uint8)
