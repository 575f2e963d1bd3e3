"""Options of the Basic Application Level Confidentiality Profile (PS3.15 E.3), with DCM codes."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BASIC_PROFILE_CODE", "BASIC_PROFILE_MEANING", "ProfileOption"]

BASIC_PROFILE_CODE = "113100"
BASIC_PROFILE_MEANING = "Basic Application Confidentiality Profile"


class ProfileOption(StrEnum):
    """A profile option; its value is the name used in configuration and on the command line."""

    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    RETAIN_UIDS = "retain-uids"
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain-longitudinal-full-dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain-longitudinal-modified-dates"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    CLEAN_GRAPHICS = "clean-graphics"

    @property
    def code(self) -> str:
        """The option's code in DICOM CID 7050 (scheme DCM)."""
        return _CODES[self][0]

    @property
    def meaning(self) -> str:
        """The option's code meaning in DICOM CID 7050."""
        return _CODES[self][1]


# PS3.16 CID 7050 "De-identification Method".
_CODES: dict[ProfileOption, tuple[str, str]] = {
    ProfileOption.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    ProfileOption.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    ProfileOption.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    ProfileOption.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
    ProfileOption.RETAIN_PATIENT_CHARACTERISTICS: (
        "113108",
        "Retain Patient Characteristics Option",
    ),
    ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    ProfileOption.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    ProfileOption.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    ProfileOption.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
}
