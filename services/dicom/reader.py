"""Strict reading of DICOM Part 10 bytes: refuse what cannot be de-identified safely.

:func:`read_instance` accepts only a whole Part 10 file (preamble, ``DICM``, File Meta
Information with a Transfer Syntax UID) in a transfer syntax radstream can rewrite, within size
limits, and returns the pydicom ``Dataset`` with every element already parsed. Anything else
raises a specific :class:`~radstream.dicom.errors.InvalidInstanceError` whose message names the
offset, tag or size at fault and never a value.

Missing meta header: pydicom can read a bare data set with ``force=True`` by *assuming*
implicit VR little endian. A wrong assumption misreads every value (and so every PHI value the
verifier looks for), so radstream fails closed and rejects it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import get_expected_length

from radstream.common.logs import withhold_library_messages
from radstream.dicom.errors import (
    MalformedDicomError,
    MissingFileMetaError,
    TruncatedDicomError,
)
from radstream.dicom.layout import SUPPORTED_TRANSFER_SYNTAXES, Layout, LayoutLimits, scan_layout

__all__ = [
    "DEFAULT_READER_LIMITS",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "ReaderLimits",
    "parse_dataset",
    "read_instance",
    "require_whole",
]

MiB = 1024 * 1024

# pydicom logs every warning it issues, value included, on its own logger: withhold those
# messages for every handler (a test runner's log capture too), once per process.
withhold_library_messages()


@dataclass(frozen=True, kw_only=True)
class ReaderLimits:
    """Size limits for incoming instances.

    Parameters
    ----------
    max_file_bytes
        Largest file accepted (after inflating a deflated data set).
    max_element_bytes
        Largest single element other than bulk data (pixel, waveform and spectroscopy data,
        encapsulated documents), sequences counted whole.
    max_private_bytes
        Most bytes all private elements of an instance may span together. Private blocks are
        removed by the profile anyway; a huge one is a sign of a hostile or broken file.
    """

    max_file_bytes: int = 1024 * MiB
    max_element_bytes: int = 64 * MiB
    max_private_bytes: int = 16 * MiB

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_element_bytes", "max_private_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ReaderLimits.{name} must be positive")

    def layout_limits(self) -> LayoutLimits:
        """The same limits, as :func:`~radstream.dicom.layout.scan_layout` takes them."""
        return LayoutLimits(
            max_file_bytes=self.max_file_bytes,
            max_element_bytes=self.max_element_bytes,
            max_private_bytes=self.max_private_bytes,
        )


DEFAULT_READER_LIMITS = ReaderLimits()


def read_instance(data: bytes, *, limits: ReaderLimits = DEFAULT_READER_LIMITS) -> Dataset:
    """Parse DICOM Part 10 ``data`` strictly and return the data set, every element parsed.

    Raises
    ------
    NotDicomError
        The bytes are neither a Part 10 file nor a DICOM data set.
    MissingFileMetaError
        A data set without (usable) File Meta Information: the transfer syntax is unknown.
    TruncatedDicomError
        The file ends inside an element, a sequence or the pixel data.
    UnsupportedTransferSyntaxError
        The transfer syntax is unknown or keeps its pixel data elsewhere.
    MalformedDicomError
        The structure is broken, or pydicom cannot parse an element.
    OversizedFileError, OversizedElementError, OversizedPrivateDataError
        A size limit is exceeded.
    """
    layout = scan_layout(data, limits.layout_limits())
    dataset = parse_dataset(data)
    require_whole(dataset, layout)
    return dataset


def _require_sop_identity(dataset: Dataset) -> None:
    """A storable instance names its SOP class and instance (both Type 1, SOP Common module).

    Without them the instance cannot be tracked, referenced or released under a new UID; a file
    cut off at an element boundary early on also ends up here.
    """
    missing = [keyword for keyword in ("SOPClassUID", "SOPInstanceUID") if not dataset.get(keyword)]
    if missing:
        raise MalformedDicomError(
            f"the data set has no {' or '.join(missing)}, so it is not a storable instance"
        )


def require_whole(dataset: Dataset, layout: Layout) -> None:
    """The checks :func:`read_instance` makes on the parsed data set (SOP identity, pixels).

    For readers that parse with :func:`parse_dataset` themselves
    (:func:`~radstream.dicom.raw_header.read_instance_lazily`).
    """
    _require_sop_identity(dataset)
    _check_pixel_data_length(dataset, layout)


def parse_dataset(data: bytes, *, convert: bool = True) -> Dataset:
    """Read with pydicom; ``convert``: every element now, so no parse error surfaces later.

    Without ``convert`` pydicom converts each element when it is first used (its default);
    only :func:`~radstream.dicom.raw_header.read_instance_lazily` asks for that, having
    proved every value convertible from the bytes.
    """
    position = "the data set"
    try:
        # pydicom warns (and logs) with values quoted from the file. No catch_warnings here: it
        # swaps process-wide state and this runs in worker threads. configure_logging routes
        # warnings to the log as their category and place; pydicom's own log lines are withheld.
        dataset = dcmread(io.BytesIO(data))
        for element in dataset.iterall() if convert else ():
            position = f"element {element.tag}"
    except InvalidDicomError as exc:
        raise MissingFileMetaError(
            f"pydicom rejects the File Meta Information ({type(exc).__name__})"
        ) from exc
    except EOFError as exc:
        raise TruncatedDicomError(f"pydicom ran off the end of the data after {position}") from exc
    except Exception as exc:
        # Any parse failure, whatever pydicom raises, means the file cannot be trusted.
        raise MalformedDicomError(
            f"pydicom could not parse {position} or the one after it ({type(exc).__name__})"
        ) from exc
    return dataset


def _check_pixel_data_length(dataset: Dataset, layout: Layout) -> None:
    """Native pixel data must hold every frame the image attributes promise.

    The layout walk already proved the element is whole as declared; this catches a writer that
    cut frames off and fixed the length. Without usable Rows, Columns, Bits Allocated and
    Samples per Pixel (non-conformant, but it happens) nothing is promised, so nothing is
    checked here; the pixel policy and the conformance checks judge such files.
    """
    if layout.pixel_data_length is None or layout.pixel_data_encapsulated:
        return
    keywords = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel")
    if not all(isinstance(dataset.get(keyword), int) for keyword in keywords):
        return
    frames = dataset.get("NumberOfFrames", 1)
    if frames not in (None, "") and not _is_integer(frames):
        return
    try:
        expected = get_expected_length(dataset, "bytes")
    except (AttributeError, KeyError, TypeError, ValueError):
        return
    if isinstance(expected, int) and layout.pixel_data_length < expected:
        raise TruncatedDicomError(
            f"Pixel Data holds {layout.pixel_data_length} bytes but Rows, Columns, Bits "
            f"Allocated, Samples per Pixel and Number of Frames need {expected}"
        )


def _is_integer(value: object) -> bool:
    try:
        int(str(value))
    except ValueError:
        return False
    return True
