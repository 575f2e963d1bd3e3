"""The PHI values an instance carries in its header.

The values collected here are what the free-text cleaner removes from descriptors and what the
verification pass hunts for in the de-identified output. They are gathered by the header walk
both use (:func:`radstream.deid.header.header_values`), so a non-conformant header never hides a
value from either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property, lru_cache

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from radstream.deid.elements import format_tag
from radstream.deid.header import (
    HeaderValue,
    dictionary_vr_or_un,
    header_values,
    raw_header_values,
)
from radstream.dicom.raw_header import RawInstance

__all__ = [
    "PhiCategory",
    "PhiValue",
    "PhiValues",
    "category_for_kind",
    "collect_phi_values",
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


def collect_phi_values(
    ds: Dataset | RawInstance,
    *,
    include_dates: bool = True,
    include_institution: bool = True,
    include_device: bool = True,
) -> PhiValues:
    """Collect the identifying values of ``ds`` from every element and sequence item.

    Parameters
    ----------
    ds
        The original (identified) header, parsed by pydicom or read by radstream's own codec
        (:func:`~radstream.dicom.raw_header.read_raw_instance`), which give the same values.
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
    every = raw_header_values(ds) if isinstance(ds, RawInstance) else header_values(ds)
    for item in every:
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
    makers = {_alphanumeric(_maker_text(ds, keyword)) for keyword in _EQUIPMENT_KEYWORDS} - {""}
    return PhiValues(
        values=tuple(
            value
            for value in found.values()
            if value.category is PhiCategory.NAME
            or not any(_alphanumeric(value.text) in maker for maker in makers)
        )
    )


@lru_cache(maxsize=4096)
def _alphanumeric(text: str) -> str:
    """``text`` casefolded, letters and digits only (re's word class less ``_`` is isalnum)."""
    return _NOT_ALPHANUMERIC.sub("", text.casefold())


_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")


def _maker_text(ds: Dataset | RawInstance, keyword: str) -> str:
    if isinstance(ds, RawInstance):
        element = ds.dataset.get(tag_for_keyword(keyword) or 0)
        return element.value.decode("latin_1").strip(" \x00") if element is not None else ""
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
    vrs = {item.vr, dictionary_vr_or_un(item.tag) if keyword else item.vr}
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
