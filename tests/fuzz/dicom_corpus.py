"""Real DICOM files with fake PHI planted in them, and mutations of them for the fuzz targets.

Seeds are files no one here wrote: pydicom's test and character-set files and the ``deid-data``
package's CT, ultrasound and photograph files (large ones keep their header only). Each seed
that pydicom reads gets the fake PHI of :mod:`tests.fuzz.phi` in its patient, study and
free-text attributes (and in a private block), so every mutation of it carries PHI a leak
would show; seeds pydicom cannot read stay as they are, to exercise the reader's refusals.

A case is a seed, then *structural* mutations made with pydicom (unknown and private elements,
hostile text, character sets, swapped VRs, deep sequences, missing UIDs, other SOP classes and
transfer syntaxes, nonsense numbers), then *byte* mutations aimed at element headers.
"""

from __future__ import annotations

import copy
import functools
import io
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import deid_data
import pydicom
from hypothesis import strategies as st
from pydicom import dcmread, dcmwrite
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from radstream.dicom import InvalidInstanceError, read_instance
from tests.fuzz import phi
from tests.fuzz.mutations import mutated_bytes, sometimes

PYDICOM_DATA: Final = Path(pydicom.__file__).parent / "data"
DEID_DATA: Final = Path(deid_data.__file__).parent / "data"
MAX_SEED_BYTES: Final = 96 * 1024

# Attributes that hold PHI in real files, with the fake value each seed gets.
_PLANTED: Final[dict[str, str]] = {
    "PatientName": phi.PATIENT_NAME,
    "PatientID": phi.PATIENT_ID,
    "PatientBirthDate": phi.BIRTH_DATE,
    "PatientAddress": phi.ADDRESS,
    "PatientTelephoneNumbers": phi.PHONE,
    "OtherPatientNames": phi.PATIENT_NAME_PLAIN.replace(" ", "^"),
    "AccessionNumber": phi.ACCESSION,
    "InstitutionName": phi.INSTITUTION,
    "ReferringPhysicianName": phi.PHYSICIAN,
    "StudyDescription": phi.FREE_TEXT[:64],
    "ImageComments": phi.FREE_TEXT,
    "PatientComments": phi.FREE_TEXT,
    "AdditionalPatientHistory": phi.FREE_TEXT,
}
_TEXT_KEYWORDS: Final = (
    *_PLANTED,
    "SeriesDescription",
    "ProtocolName",
    "BodyPartExamined",
    "OperatorsName",
    "PerformingPhysicianName",
    "RequestedProcedureDescription",
    "DerivationDescription",
    "StationName",
    "Manufacturer",
    "ContentCreatorName",
    "IssuerOfPatientID",
    "PatientSex",
    "PatientAge",
    "StudyID",
)
_NUMBER_KEYWORDS: Final = (
    "PatientAge",
    "StudyDate",
    "StudyTime",
    "AcquisitionDateTime",
    "NumberOfFrames",
    "InstanceNumber",
    "SliceThickness",
    "PixelSpacing",
    "WindowCenter",
    "PatientWeight",
)
_REQUIRED: Final = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "SpecificCharacterSet",
    "Modality",
    "Rows",
    "BitsAllocated",
)
_SOP_CLASSES: Final = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.77.1.6",  # VL Whole Slide Microscopy
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic
    "1.2.840.10008.5.1.4.1.1.66",  # Raw Data
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT Plan
    "1.2.3.4.5.6.7",
    "",
    "not a uid",
)
_TRANSFER_SYNTAXES: Final = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.94",
    "1.2.840.10008.1.2.5",
    "1.2.3.4",
    "",
)
_CHARSETS: Final = (
    "ISO_IR 100",
    "ISO_IR 192",
    "GB18030",
    "GBK",
    "ISO 2022 IR 87",
    "ISO 2022 IR 149",
    "ISO_IR 13",
    "ISO_IR 144",
    "ISO_IR 6",
    "ISO-8859-1",
    "utf-8",
    "BOGUS CHARSET",
    "",
)
_TEXT_VRS: Final = ("LO", "SH", "ST", "LT", "UT", "PN", "UC", "CS", "UN", "OB", "DS", "IS", "DA")
_UNKNOWN_TAGS: Final = (0x44440010, 0x00089999, 0x00109999, 0x00200FFF, 0x7FDE0010, 0x00320999)


@dataclass(frozen=True)
class Seed:
    """A real file: where it came from, its bytes, and its data set if pydicom reads it."""

    name: str
    data: bytes
    dataset: Dataset | None
    anchors: tuple[int, ...]


@dataclass(frozen=True)
class DicomCase:
    """A mutated instance: its seed, what was done to it, and its bytes."""

    seed: str
    operations: tuple[str, ...]
    data: bytes

    def __repr__(self) -> str:  # Hypothesis prints this for a failing example
        return f"DicomCase(seed={self.seed!r}, operations={self.operations}, {len(self.data)} B)"


def _real_files() -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    for folder in ("test_files", "charset_files"):
        for path in sorted((PYDICOM_DATA / folder).glob("*.dcm")):
            files.append((f"pydicom/{path.name}", path.read_bytes()))
    for folder in ("humans", "dicom-cookies", "ultrasounds", "animals"):
        for path in sorted((DEID_DATA / folder).iterdir()):
            if path.suffix == ".dcm":
                files.append((f"deid-data/{folder}/{path.name}", _header_of(path.read_bytes())))
            elif path.suffix == ".zip":
                with zipfile.ZipFile(path) as archive:
                    member = next(n for n in archive.namelist() if n.endswith(".dcm"))
                    files.append(
                        (f"deid-data/{path.name}!{member}", _header_of(archive.read(member)))
                    )
    return files


def _header_of(data: bytes) -> bytes:
    """A large file's header alone (pixel data dropped), so mutations stay cheap."""
    if len(data) <= MAX_SEED_BYTES:
        return data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return write(dataset) or data[:MAX_SEED_BYTES]


def write(dataset: Dataset) -> bytes | None:
    """``dataset`` as Part 10 bytes, or None when pydicom cannot write it."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcmwrite(buffer, dataset, enforce_file_format=True)
    except Exception:  # pydicom refuses many hostile data sets; the case falls back
        return None
    return buffer.getvalue()


def _planted(dataset: Dataset) -> Dataset:
    planted = copy.deepcopy(dataset)
    for keyword, value in _PLANTED.items():
        setattr(planted, keyword, value)
    block = planted.private_block(0x0029, "QX FUZZ PRIVATE", create=True)
    block.add_new(0x10, "LO", phi.PATIENT_NAME_PLAIN)
    block.add_new(0x11, "UT", phi.FREE_TEXT)
    return planted


def element_offsets(data: bytes, dataset: Dataset | None) -> tuple[int, ...]:
    """Offsets in ``data`` where an element of ``dataset`` (or of its meta) seems to start."""
    if dataset is None:
        return ()
    try:
        tags = {element.tag for element in dataset.iterall()}
        tags |= {element.tag for element in getattr(dataset, "file_meta", Dataset())}
    except Exception:  # a raw value pydicom cannot convert: no landmarks, mutate anywhere
        return ()
    offsets: set[int] = set()
    for tag in tags:
        needle = struct.pack("<HH", tag.group, tag.element)
        start = data.find(needle)
        while start >= 0 and len(offsets) < 2048:
            offsets.add(start)
            start = data.find(needle, start + 1)
    return tuple(sorted(offsets))


@functools.cache
def seeds() -> tuple[Seed, ...]:
    """Every seed, loaded once per process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # planted values break VR rules on purpose
        return _load_seeds()


def _load_seeds() -> tuple[Seed, ...]:
    found: list[Seed] = []
    for name, data in _real_files():
        if len(data) > MAX_SEED_BYTES:
            continue
        try:
            read_instance(data)
        except InvalidInstanceError:
            found.append(Seed(name, data, None, ()))  # the reader's refusals, as they are
            continue
        dataset = dcmread(io.BytesIO(data))
        planted = write(_planted(dataset))
        if planted is None:
            continue
        try:
            read_instance(planted)
        except InvalidInstanceError:
            continue
        parsed = dcmread(io.BytesIO(planted))
        found.append(Seed(name, planted, parsed, element_offsets(planted, parsed)))
    return tuple(found)


def planted_seeds() -> tuple[Seed, ...]:
    """The seeds that carry planted PHI."""
    return tuple(seed for seed in seeds() if seed.dataset is not None)


# -- structural mutations -------------------------------------------------------------------

_HOSTILE_TEXT: Final = st.one_of(
    st.sampled_from(
        [
            phi.PATIENT_NAME,
            phi.PATIENT_NAME_PLAIN,
            phi.FREE_TEXT,
            f"{phi.PATIENT_ID}\\{phi.OTHER_PATIENT_ID}\\{phi.ACCESSION}",
            f"  {phi.PATIENT_NAME}  ",
            f"{phi.PATIENT_NAME}=QUIXBERG^ZANTHEA=\u30af\u30a4\u30c3\u30af\u30b9",
            "\x1b$B\x1b(B" + phi.PATIENT_NAME_PLAIN,
            phi.FREE_TEXT + "\x00\x00",
            "",
            "\\\\\\",
            "\u00e9\u00e8\u4e2d\u6587\U0001f600" + phi.PATIENT_NAME_PLAIN,
            phi.FREE_TEXT * 40,
        ]
    ),
    st.text(max_size=80),
    st.text(max_size=20).map(lambda text: f"{text} {phi.PATIENT_NAME_PLAIN} {text}"),
)


def _raw(ds: Dataset, tag: int, vr: str, value: bytes) -> None:
    """Put ``value`` into ``ds`` as raw bytes: pydicom writes them as they are, unvalidated."""
    if len(value) % 2:
        value += b" "
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _unknown_element(draw: st.DrawFn, ds: Dataset) -> str:
    tag = draw(
        st.sampled_from(_UNKNOWN_TAGS)
        | st.builds(
            lambda group, element: (group << 16) | element,
            st.integers(0x0004, 0x3FFF).map(lambda g: g * 2),
            st.integers(0x0000, 0xFFFF),
        )
    )
    vr = draw(st.sampled_from(_TEXT_VRS))
    text = draw(_HOSTILE_TEXT)
    _raw(
        ds,
        tag,
        vr,
        text.encode(draw(st.sampled_from(["utf-8", "latin-1", "utf-16-le"])), "replace"),
    )
    return f"unknown {tag:08X} {vr}"


def _private_block(draw: st.DrawFn, ds: Dataset) -> str:
    group = draw(st.sampled_from([0x0009, 0x0011, 0x0029, 0x0043, 0x7FE1]))
    creator = draw(
        st.sampled_from(["QX FUZZ", "GEMS_IDEN_01", "SIEMENS CSA HEADER", phi.PATIENT_NAME_PLAIN])
    )
    block = ds.private_block(group, creator, create=True)
    block.add_new(draw(st.integers(0, 0xFF)), draw(st.sampled_from(_TEXT_VRS)), draw(_HOSTILE_TEXT))
    return f"private {group:04X} {creator[:12]}"


def _text_value(draw: st.DrawFn, ds: Dataset) -> str:
    keyword = draw(st.sampled_from(_TEXT_KEYWORDS))
    setattr(ds, keyword, draw(_HOSTILE_TEXT))
    return f"text {keyword}"


def _charset(draw: st.DrawFn, ds: Dataset) -> str:
    value = draw(
        st.sampled_from(_CHARSETS)
        | st.lists(st.sampled_from(_CHARSETS), min_size=2, max_size=3)
        | st.text(max_size=16)
    )
    ds.SpecificCharacterSet = value
    return "charset"


def _vr_swap(draw: st.DrawFn, ds: Dataset) -> str:
    keyword = draw(
        st.sampled_from(["PatientName", "PatientID", "ImageComments", "StudyDate", "Rows"])
    )
    vr = draw(st.sampled_from([*_TEXT_VRS, "US", "UL", "FD", "SQ", "AT"]))
    value: object
    if vr == "SQ":
        item = Dataset()
        item.PatientName = phi.PATIENT_NAME
        value = Sequence([item])
    elif vr in ("US", "UL", "FD", "AT"):
        value = draw(st.integers(0, 0xFFFF))
    else:
        encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16-le"]))
        value = draw(_HOSTILE_TEXT).encode(encoding, "replace")
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if isinstance(value, bytes):
        _raw(ds, tag, vr, value)
    else:
        ds.add(DataElement(tag, vr, value))
    return f"vr {keyword} {vr}"


def _deep_sequence(draw: st.DrawFn, ds: Dataset) -> str:
    depth = draw(st.integers(1, 300))
    inner = Dataset()
    inner.TextValue = phi.FREE_TEXT
    inner.PersonName = phi.PATIENT_NAME
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    keyword = draw(
        st.sampled_from(["ContentSequence", "ReferencedImageSequence", "RequestAttributesSequence"])
    )
    setattr(ds, keyword, inner.ContentSequence)
    return f"sequence {keyword} depth {depth}"


def _remove(draw: st.DrawFn, ds: Dataset) -> str:
    keyword = draw(st.sampled_from(_REQUIRED))
    if keyword in ds:
        delattr(ds, keyword)
    return f"remove {keyword}"


def _sop_class(draw: st.DrawFn, ds: Dataset) -> str:
    ds.SOPClassUID = draw(st.sampled_from(_SOP_CLASSES))
    if draw(st.booleans()) and hasattr(ds, "file_meta"):
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    return "sop class"


def _transfer_syntax(draw: st.DrawFn, ds: Dataset) -> str:
    if hasattr(ds, "file_meta"):
        ds.file_meta.TransferSyntaxUID = draw(st.sampled_from(_TRANSFER_SYNTAXES))
    return "transfer syntax"


def _number(draw: st.DrawFn, ds: Dataset) -> str:
    keyword = draw(st.sampled_from(_NUMBER_KEYWORDS))
    value = draw(
        st.sampled_from(
            ["-1", "0", "1e309", "NaN", "2024-13-45", "99999999999999999", "\\", phi.PATIENT_ID]
        )
        | st.text(max_size=12)
    )
    tag = pydicom.datadict.tag_for_keyword(keyword)
    vr = draw(st.sampled_from(["UN", pydicom.datadict.dictionary_VR(keyword)]))
    _raw(ds, tag, vr, value.encode("utf-8"))
    return f"number {keyword}"


def _image(draw: st.DrawFn, ds: Dataset) -> str:
    keyword = draw(
        st.sampled_from(["Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "NumberOfFrames"])
    )
    setattr(ds, keyword, draw(st.sampled_from([0, 1, 7, 65535, 3]) | st.integers(0, 70000)))
    return f"image {keyword}"


def _burned_in(draw: st.DrawFn, ds: Dataset) -> str:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        ds.BurnedInAnnotation = draw(st.sampled_from(["NO", "YES", "", "no", phi.PATIENT_ID]))
    elif choice == 1:
        ds.ImageType = draw(
            st.sampled_from([["ORIGINAL", "PRIMARY", "LABEL"], ["DERIVED", "OVERVIEW"], []])
        )
    elif choice == 2:
        ds.SpecimenLabelInImage = draw(st.sampled_from(["YES", "NO", ""]))
    else:
        ds.RecognizableVisualFeatures = draw(st.sampled_from(["YES", "NO", ""]))
    return "burned-in"


def _structured_text(draw: st.DrawFn, ds: Dataset) -> str:
    item = Dataset()
    item.ValueType = draw(st.sampled_from(["TEXT", "PNAME", "CODE", "CONTAINER", ""]))
    item.TextValue = draw(_HOSTILE_TEXT)
    item.PersonName = phi.PATIENT_NAME
    concept = Dataset()
    concept.CodeValue = "121071"
    concept.CodingSchemeDesignator = "DCM"
    concept.CodeMeaning = draw(_HOSTILE_TEXT)
    item.ConceptNameCodeSequence = Sequence([concept])
    ds.ContentSequence = Sequence([item])
    return "structured text"


def _empty(draw: st.DrawFn, ds: Dataset) -> str:
    elements = [element for element in ds if element.tag != 0x7FE00010]
    if not elements:
        return "empty none"
    element = draw(st.sampled_from(elements))
    ds[element.tag].value = None
    return f"empty {element.tag}"


_STRUCTURAL: Final[tuple[Callable[[st.DrawFn, Dataset], str], ...]] = (
    _unknown_element,
    _private_block,
    _text_value,
    _charset,
    _vr_swap,
    _deep_sequence,
    _remove,
    _sop_class,
    _transfer_syntax,
    _number,
    _image,
    _burned_in,
    _structured_text,
    _empty,
)


def _apply(mutate: Callable[[st.DrawFn, Dataset], str], draw: st.DrawFn, ds: Dataset) -> str:
    """Apply one structural mutation; pydicom refuses some values outright (then: none)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mutate(draw, ds)
    except Exception as exc:  # a value pydicom will not even hold: the case goes on without it
        return f"{mutate.__name__.strip('_')} refused ({type(exc).__name__})"


@st.composite
def dicom_cases(
    draw: st.DrawFn, *, planted_only: bool = False, byte_chance: float = 0.5
) -> DicomCase:
    """A mutated real instance (see the module doc).

    ``byte_chance``: how often byte mutations follow structural ones. Most byte mutations make
    a file the reader refuses, so a target that wants to get past the reader asks for fewer.
    """
    pool = planted_seeds() if planted_only else seeds()
    seed = draw(st.sampled_from(pool))
    operations: list[str] = []
    data = seed.data
    anchors = seed.anchors
    if seed.dataset is not None and sometimes(draw, 1 - byte_chance / 2):
        dataset = copy.deepcopy(seed.dataset)
        for mutate in draw(st.lists(st.sampled_from(_STRUCTURAL), min_size=1, max_size=4)):
            operations.append(_apply(mutate, draw, dataset))
        written = write(dataset)
        if written is None:
            operations.append("(not writable: seed kept)")
        else:
            data = written
            anchors = element_offsets(data, dataset)
    if not operations or sometimes(draw, byte_chance):
        donors = [other.data for other in pool[:8]]
        data = draw(mutated_bytes(data, anchors=anchors, donors=donors))
        operations.append("bytes")
    return DicomCase(seed.name, tuple(operations), data)
