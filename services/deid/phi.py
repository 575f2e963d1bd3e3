"""The PHI values an instance carries in its header, and a walk over every value of a header.

The values collected here are what the free-text cleaner removes from descriptors and what the
verification pass hunts for in the de-identified output. The walk (:func:`header_values`) is the
one both use: it reaches every element of every sequence item, private elements included, and
reads values that pydicom cannot convert (wrong VR, bad charset) from their raw bytes, so a
non-conformant header never hides a value from either.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.valuerep import IS, DSdecimal, DSfloat, PersonName

__all__ = [
    "HeaderValue",
    "PhiCategory",
    "PhiValue",
    "PhiValues",
    "category_for_kind",
    "collect_phi_values",
    "format_tag",
    "header_values",
]


class PhiCategory(StrEnum):
    """What a PHI value is, which decides its textual variants and its replacement token."""

    AUTO = "auto"  # derive from the kind (the source attribute keyword)
    NAME = "name"
    DATE = "date"
    IDENTIFIER = "identifier"
    ORGANIZATION = "organization"
    PLACE = "place"
    PHONE = "phone"


@dataclass(frozen=True, kw_only=True)
class PhiValue:
    """One identifying value found in a header; ``kind`` is the keyword of its attribute."""

    kind: str
    text: str
    category: PhiCategory = PhiCategory.AUTO

    def __post_init__(self) -> None:
        if self.category is PhiCategory.AUTO:
            object.__setattr__(self, "category", category_for_kind(self.kind))

    def __repr__(self) -> str:
        # The text is PHI: a repr may end up in a log or a test report.
        return f"PhiValue(kind={self.kind!r}, category={self.category.value!r}, text=<redacted>)"


@dataclass(frozen=True, kw_only=True)
class PhiValues:
    """The identifying values of one instance (hashable, so results can be memoized on it)."""

    values: tuple[PhiValue, ...] = ()

    def texts(self) -> tuple[str, ...]:
        """The distinct texts, in collection order."""
        return tuple(dict.fromkeys(value.text for value in self.values))

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"PhiValues(<{len(self.values)} values>)"


# Attributes whose values identify the patient or a person whatever the profile options say.
# PN attributes are not listed: every PN value anywhere is collected.
IDENTIFIER_KEYWORDS = frozenset(
    {
        "PatientID",
        "IssuerOfPatientID",
        "OtherPatientIDs",
        "AccessionNumber",
        "StudyID",
        "AdmissionID",
        "IssuerOfAdmissionID",
        "ServiceEpisodeID",
        "IssuerOfServiceEpisodeID",
        "MedicalRecordLocator",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberProcedure",
        "FillerOrderNumberProcedure",
        "InsurancePlanIdentification",
        "ClinicalTrialSubjectID",
        "ClinicalTrialSubjectReadingID",
        "SpecimenAccessionNumber",
        "SpecimenIdentifier",
        "ContainerIdentifier",
        "InterpretationID",
        "ResultsID",
        "MilitaryRank",
        "BranchOfService",
        "ResponsibleOrganization",
        "PatientAddress",
        "PatientInstitutionResidence",
        "CurrentPatientLocation",
        "ReferringPhysicianAddress",
        "PersonAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "ReferringPhysicianTelephoneNumbers",
        "PersonTelephoneNumbers",
        "PersonTelecomInformation",
        "OrderCallbackPhoneNumber",
        "OrderCallbackTelecomInformation",
    }
)

# Retained by the Retain Institution Identity option (Table E.1-1, rtnInstIdOpt column).
INSTITUTION_KEYWORDS = frozenset(
    {
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "ClinicalTrialSiteName",
        "ClinicalTrialSiteID",
        "ClinicalTrialCoordinatingCenterName",
        "HumanPerformerOrganization",
        "VerifyingOrganization",
    }
)

# Retained by the Retain Device Identity option (Table E.1-1, rtnDevIdOpt column): the
# identifiers and names of devices and stations, and the dates that describe a device.
DEVICE_KEYWORDS = frozenset(
    {
        "DeviceSerialNumber",
        "StationName",
        "StationAETitle",
        "PerformedStationName",
        "PerformedStationAETitle",
        "ScheduledStationName",
        "ScheduledStationAETitle",
        "DetectorID",
        "GantryID",
        "PlateID",
        "CassetteID",
        "GeneratorID",
        "SourceSerialNumber",
        "DeviceLabel",
        "LensSerialNumber",
        "XRayDetectorID",
        "XRaySourceID",
        "TreatmentMachineName",
        "UniqueDeviceIdentifier",
        "ManufacturerDeviceIdentifier",
        "DeviceAlternateIdentifier",
        "ModifyingDeviceID",
    }
)
DEVICE_DATE_KEYWORDS = frozenset(
    {
        "CalibrationDate",
        "CalibrationDateTime",
        "DateOfInstallation",
        "DateOfLastCalibration",
        "DateOfLastDetectorCalibration",
        "DateOfManufacture",
        "DateTimeOfLastCalibration",
        "BeamHoldTransitionDateTime",
    }
)

_EQUIPMENT_KEYWORDS = ("Manufacturer", "ManufacturerModelName")
_PHONE_KEYWORD = re.compile(r"Telephone|PhoneNumber|Telecom")
_PLACE_KEYWORD = re.compile(r"Address|Residence|Location")
_ORGANIZATION_KEYWORDS = INSTITUTION_KEYWORDS - {
    "InstitutionAddress",
    "ClinicalTrialSiteID",
} | {"ResponsibleOrganization", "IssuerOfPatientID", "InstitutionCodeSequence"}

# Sample data and other bulk binary: never text, and far too big to scan for it.
_BULK_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010, 0x54001010, 0x56000020})
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "OF", "OD", "OL", "OV"})
_TEXT_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_ASCII_RUN = re.compile(rb"[\x20-\x7e]{3,}")
_LATIN_RUN = re.compile(rb"[\x20-\x7e\xc0-\xff]{3,}")
_DATE_DIGITS = re.compile(r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
_NAME_PART = re.compile(r"[\s\-]+")
# Family-name particles: too common to be identifying on their own.
_NAME_PARTICLES = frozenset(
    {"van", "von", "der", "den", "del", "des", "de", "la", "le", "di", "da"}
)


def category_for_kind(kind: str) -> PhiCategory:
    """The category of values of an attribute, from its keyword (IDENTIFIER when unknown)."""
    try:
        vr = dictionary_VR(kind)
    except (KeyError, ValueError, TypeError):
        vr = ""
    if vr == "PN":
        return PhiCategory.NAME
    if vr in ("DA", "DT"):
        return PhiCategory.DATE
    if _PHONE_KEYWORD.search(kind):
        return PhiCategory.PHONE
    if kind in _ORGANIZATION_KEYWORDS:
        return PhiCategory.ORGANIZATION
    if _PLACE_KEYWORD.search(kind):
        return PhiCategory.PLACE
    return PhiCategory.IDENTIFIER


def format_tag(tag: int) -> str:
    """``(gggg,eeee)``, the notation paths use."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@dataclass(frozen=True, kw_only=True)
class HeaderValue:
    """The text of one element, wherever it sits in the header."""

    path: str  # "(0008,1115)[0]/(0008,1155)"
    tag: int
    keyword: str  # "" for private and unknown tags
    vr: str
    texts: tuple[str, ...]  # one per value of a multi-valued element
    parents: tuple[str, ...] = ()  # keywords of the enclosing sequences, outermost first
    from_bytes: bool = False  # decoded from binary (UN, OB, raw) rather than a typed value
    binary: bool = False  # not text: ``texts`` are the printable runs found in it


def header_values(ds: Dataset, *, include_meta: bool = False) -> Iterator[HeaderValue]:
    """Every non-empty textual value of ``ds``, sequence items included, depth first."""
    encodings = _encodings_of(ds, ["iso8859"])
    if include_meta and getattr(ds, "file_meta", None) is not None:
        yield from _walk(ds.file_meta, "", (), ["iso8859"])
    yield from _walk(ds, "", (), encodings)


def _encodings_of(ds: Dataset, inherited: list[str]) -> list[str]:
    if 0x00080005 not in ds:
        return inherited
    try:
        return list(convert_encodings(ds[0x00080005].value))
    except Exception:  # a broken charset must not stop the walk
        return ["latin_1"]


def _walk(
    ds: Dataset, prefix: str, parents: tuple[str, ...], encodings: list[str]
) -> Iterator[HeaderValue]:
    for tag in list(ds.keys()):
        if _is_bulk(tag):
            continue
        path = f"{prefix}{format_tag(tag)}"
        raw = ds.get_item(tag)
        if raw is None:
            continue
        keyword = "" if BaseTag(tag).is_private else keyword_for_tag(tag)
        vr = raw.VR or _dictionary_vr(tag)
        if vr == "SQ" or isinstance(raw.value, DicomSequence):
            items = _sequence_items(ds, tag)
            if items is not None:
                for index, item in enumerate(items):
                    item_encodings = _encodings_of(item, encodings)
                    yield from _walk(item, f"{path}[{index}]/", (*parents, keyword), item_encodings)
                continue
        found = _element_texts(raw, vr, encodings)
        if found is not None:
            texts, from_bytes, binary = found
            texts = tuple(text for text in texts if text.strip(" \x00"))
            if texts:
                yield HeaderValue(
                    path=path,
                    tag=int(tag),
                    keyword=keyword,
                    vr=vr,
                    texts=texts,
                    parents=parents,
                    from_bytes=from_bytes,
                    binary=binary,
                )


def _is_bulk(tag: int) -> bool:
    overlay_data = ((tag >> 16) & 0xFF01) == 0x6000 and (tag & 0xFFFF) == 0x3000
    return tag in _BULK_TAGS or overlay_data


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _sequence_items(ds: Dataset, tag: int) -> Sequence[Dataset] | None:
    try:
        value = ds[tag].value
    except Exception:  # an unparsable sequence is read as bytes instead
        return None
    return value if isinstance(value, DicomSequence) else None


def _element_texts(
    raw: DataElement | RawDataElement, vr: str, encodings: list[str]
) -> tuple[tuple[str, ...], bool, bool] | None:
    """(texts, from_bytes, binary), or None where the element cannot hold text."""
    value = raw.value
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return _bytes_texts(bytes(value), vr, encodings)
    if vr in _NUMERIC_VRS or vr == "AT":
        return None
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    texts = [text for text in (_scalar_text(item) for item in values) if text is not None]
    return tuple(texts), False, False


def _scalar_text(value: object) -> str | None:
    if isinstance(value, str | PersonName | IS | DSfloat | DSdecimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("latin_1")
    return None  # plain numbers (US, FL, ...) cannot carry text


def _bytes_texts(value: bytes, vr: str, encodings: list[str]) -> tuple[tuple[str, ...], bool, bool]:
    stripped = value.rstrip(b"\x00 ")
    if _TEXT_BYTES.search(stripped):
        return _printable_runs(stripped), True, True
    try:
        text = decode_bytes(stripped, encodings, {0x5C, 0x5E, 0x3D} if vr == "PN" else set())
    except Exception:  # an undecodable value is still searched as latin-1
        text = stripped.decode("latin_1")
    texts = (text,) if vr in ("LT", "ST", "UT", "UR", "OB", "OW", "UN") else tuple(text.split("\\"))
    return texts, True, False


def _printable_runs(value: bytes) -> tuple[str, ...]:
    """The text a ``strings`` reader sees in binary.

    ASCII runs, runs with Latin-1 letters, and each run without its first character too (a
    length prefix can look like a letter).
    """
    runs = {run.decode("latin_1") for run in _ASCII_RUN.findall(value)}
    runs |= {run.decode("latin_1") for run in _LATIN_RUN.findall(value)}
    runs |= {run[1:] for run in runs if len(run) > 3}
    return tuple(sorted(runs))


def collect_phi_values(
    ds: Dataset,
    *,
    include_dates: bool = True,
    include_institution: bool = True,
    include_device: bool = True,
) -> PhiValues:
    """Collect the identifying values of ``ds`` from every element and sequence item.

    Parameters
    ----------
    ds
        The original (identified) header.
    include_dates
        Add every date (DA, and the date part of DT); pass False when the profile retains
        dates. The patient's birth date is collected either way.
    include_institution
        Add institution names, addresses and departments; False under Retain Institution
        Identity.
    include_device
        Add device serial numbers, station names and AE titles, and device dates; False under
        Retain Device Identity.
    """
    scope = _Scope(dates=include_dates, institution=include_institution, device=include_device)
    found: dict[tuple[str, str], PhiValue] = {}
    for item in header_values(ds):
        decision = None if item.binary else _phi_kind(item, scope)
        if decision is None:
            continue
        kind, category = decision
        for text in item.texts:
            if category is PhiCategory.NAME:
                texts = _name_values(text)
            elif category is PhiCategory.DATE:
                texts = _DATE_DIGITS.findall(re.sub(r"[.\-/]", "", text)[:8])
            else:
                texts = [text]
            for each in texts:
                value = PhiValue(kind=kind, text=each.strip(" \x00"), category=category)
                if value.text:
                    found.setdefault((value.kind, value.text), value)
    # An institution or station named like (part of) the equipment maker ("TOSHIBA" for
    # "TOSHIBA_MEC") names the equipment, which the profile keeps in Manufacturer; it
    # identifies no one, and collecting it would hold every instance from that scanner.
    makers = {_alphanumeric(_text_of(ds, keyword)) for keyword in _EQUIPMENT_KEYWORDS} - {""}
    return PhiValues(
        values=tuple(
            value
            for value in found.values()
            if value.category is PhiCategory.NAME
            or not any(_alphanumeric(value.text) in maker for maker in makers)
        )
    )


def _alphanumeric(text: str) -> str:
    return "".join(char for char in text.casefold() if char.isalnum())


def _text_of(ds: Dataset, keyword: str) -> str:
    try:
        return str(ds.get(keyword, "") or "")
    except Exception:  # an unreadable Manufacturer only means nothing is excused
        return ""


@dataclass(frozen=True)
class _Scope:
    dates: bool
    institution: bool
    device: bool

    @cached_property
    def keywords(self) -> frozenset[str]:
        """The attributes, other than names and dates, whose values are PHI in this scope."""
        keywords = IDENTIFIER_KEYWORDS
        if self.institution:
            keywords |= INSTITUTION_KEYWORDS
        if self.device:
            keywords |= DEVICE_KEYWORDS
        return keywords


def _phi_kind(item: HeaderValue, scope: _Scope) -> tuple[str, PhiCategory] | None:
    """The kind and category under which the values of ``item`` are PHI; None if they are not."""
    keyword = item.keyword
    kind = keyword or format_tag(item.tag)
    # A wrong VR in the file must not hide a name or a date: trust the dictionary too.
    vrs = {item.vr, _dictionary_vr(item.tag) if keyword else item.vr}
    if "PN" in vrs:
        return kind, PhiCategory.NAME
    if keyword == "PatientBirthDate" or (
        scope.dates and vrs & {"DA", "DT"} and (scope.device or keyword not in DEVICE_DATE_KEYWORDS)
    ):
        return kind, PhiCategory.DATE
    if keyword in scope.keywords:
        return kind, PhiCategory.AUTO
    institution_code = keyword == "CodeMeaning" and item.parents[-1:] == (
        "InstitutionCodeSequence",
    )
    if scope.institution and institution_code:
        return "InstitutionCodeSequence", PhiCategory.ORGANIZATION
    return None


def _name_values(text: str) -> list[str]:
    """A PN value, and its family, given and middle names (and their parts) on their own."""
    names = [text]
    for group in text.split("="):
        names.append(group)
        for raw_component in group.split("^")[:3]:  # family, given, middle; not prefix/suffix
            component = raw_component.strip()
            if len(component) >= 2:
                names.append(component)
            parts = [part for part in _NAME_PART.split(component) if part]
            if len(parts) > 1:
                names.extend(
                    part
                    for part in parts
                    if len(part) >= 3 and part.casefold() not in _NAME_PARTICLES
                )
    return [name for name in dict.fromkeys(names) if name.strip(" ^=")]
