"""Attribute Types (1, 2) per IOD, for resolving Table E.1-1's compound actions (X/Z, Z/D, ...).

Transcribed by hand from the module tables of DICOM PS3.3 (2024b) for the IODs of common storage
SOP classes, limited to attributes that Table E.1-1 names with an action whose outcome depends on
the Type (compound codes, and Z, which needs a dummy where the attribute is Type 1). Conditional
Types count as their base Type (1C as 1, 2C as 2): an attribute is only present when its
condition holds or the writer thought so, and keeping it conformant is the safe reading. An
attribute not listed for the instance's IOD is Type 3 there. SOP classes not listed fall back to
:data:`DEFAULT_MODULES`, the modules every composite image IOD shares (Patient, General Study,
General Series, SOP Common). Inside sequences the Type comes from the macro of the enclosing
sequence (:data:`NESTED_TYPES`); anything else nested is treated as Type 3.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Final

__all__ = [
    "DEFAULT_MODULES",
    "IOD_MODULES",
    "MODULE_TYPES",
    "NESTED_TYPES",
    "SOP_CLASS_IODS",
    "attribute_types",
    "iod_for_sop_class",
    "nested_type",
]

# Module -> {tag: Type}. PS3.3 section of each module in the comment.
MODULE_TYPES: Final[Mapping[str, Mapping[int, int]]] = {
    "patient": {  # C.7.1.1
        0x00100010: 2,  # Patient's Name
        0x00100020: 2,  # Patient ID
        0x00100030: 2,  # Patient's Birth Date
        0x00100040: 2,  # Patient's Sex
        0x00102203: 2,  # Patient's Sex Neutered (2C: non-human subjects)
    },
    "general-study": {  # C.7.2.1
        0x0020000D: 1,  # Study Instance UID
        0x00080020: 2,  # Study Date
        0x00080030: 2,  # Study Time
        0x00080090: 2,  # Referring Physician's Name
        0x00200010: 2,  # Study ID
        0x00080050: 2,  # Accession Number
    },
    "general-series": {0x0020000E: 1},  # C.7.3.1 Series Instance UID
    "frame-of-reference": {0x00200052: 1},  # C.7.4.1 Frame of Reference UID
    "synchronization": {0x00200200: 1},  # C.7.4.2 Synchronization Frame of Reference UID
    "enhanced-general-equipment": {0x00181000: 1},  # C.7.5.2 Device Serial Number
    "general-image": {  # C.7.6.1
        0x00080023: 2,  # Content Date (2C)
        0x00080033: 2,  # Content Time (2C)
    },
    "contrast-bolus": {0x00180010: 2},  # C.7.6.4 Contrast/Bolus Agent
    "acquisition-context": {0x00400555: 2},  # C.7.6.14 Acquisition Context Sequence
    "multi-frame-functional-groups": {  # C.7.6.16
        0x00080023: 1,  # Content Date
        0x00080033: 1,  # Content Time
    },
    "enhanced-image": {0x0008002A: 1},  # C.8.13.1 / C.8.16.1 Acquisition DateTime (1C)
    "dx-series": {0x00081111: 1},  # C.8.11.1 Referenced PPS Sequence (1C: MPPS supported)
    "pet-series": {  # C.8.9.1
        0x00080021: 1,  # Series Date
        0x00080031: 1,  # Series Time
    },
    "pet-image": {  # C.8.9.4
        0x00080022: 2,  # Acquisition Date
        0x00080032: 2,  # Acquisition Time
    },
    "rt-series": {0x00081070: 2},  # C.8.8.1 Operators' Name
    "structure-set": {  # C.8.8.5
        0x30060008: 2,  # Structure Set Date
        0x30060009: 2,  # Structure Set Time
    },
    "rt-general-plan": {  # C.8.8.9
        0x300A0006: 2,  # RT Plan Date
        0x300A0007: 2,  # RT Plan Time
    },
    "approval": {  # C.8.8.16
        0x300E0004: 2,  # Review Date (2C)
        0x300E0005: 2,  # Review Time (2C)
        0x300E0008: 2,  # Reviewer Name (2C)
    },
    "sr-document-series": {0x00081111: 2},  # C.17.1 Referenced PPS Sequence
    "sr-document-general": {  # C.17.2
        0x00080023: 1,  # Content Date
        0x00080033: 1,  # Content Time
    },
    "encapsulated-document": {  # C.24.2
        0x00080023: 2,  # Content Date
        0x00080033: 2,  # Content Time
        0x0008002A: 2,  # Acquisition DateTime
    },
    "segmentation-image": {0x00700084: 2},  # C.8.20.2 Content Creator's Name (Content Id.)
    "raw-data": {  # C.19.1
        0x00080023: 1,  # Content Date
        0x00080033: 1,  # Content Time
    },
    "sop-common": {  # C.12.1
        0x00080018: 1,  # SOP Instance UID
    },
}

DEFAULT_MODULES: Final = ("patient", "general-study", "general-series", "sop-common")
_IMAGE: Final = (*DEFAULT_MODULES, "frame-of-reference", "synchronization", "general-image")
_CONTRAST: Final = (*_IMAGE, "contrast-bolus")
_DX: Final = (*_CONTRAST, "dx-series", "acquisition-context")
_RT: Final = (*DEFAULT_MODULES, "frame-of-reference", "rt-series", "approval")
_SR: Final = (*DEFAULT_MODULES, "sr-document-series", "sr-document-general")
_ENHANCED: Final = (
    *DEFAULT_MODULES,
    "frame-of-reference",
    "synchronization",
    "contrast-bolus",
    "enhanced-general-equipment",
    "multi-frame-functional-groups",
    "acquisition-context",
    "enhanced-image",
)

# IOD -> modules (PS3.3 Annex A); modules without Type 1/2 attributes of interest are omitted.
IOD_MODULES: Final[Mapping[str, tuple[str, ...]]] = {
    "ct-image": _CONTRAST,  # A.3
    "mr-image": _CONTRAST,  # A.4
    "nm-image": (*_IMAGE, "acquisition-context"),  # A.5
    "us-image": _CONTRAST,  # A.6
    "us-multi-frame-image": _CONTRAST,  # A.7
    "sc-image": _IMAGE,  # A.8
    "multi-frame-sc-image": _IMAGE,  # A.8.2-A.8.5
    "cr-image": _CONTRAST,  # A.2
    "dx-image": _DX,  # A.26
    "mammography-image": _DX,  # A.27
    "intra-oral-image": _DX,  # A.28
    "xa-image": _CONTRAST,  # A.14
    "xrf-image": _CONTRAST,  # A.16
    "pet-image": (*_IMAGE, "pet-series", "pet-image", "acquisition-context"),  # A.21
    "rt-structure-set": (*_RT, "structure-set"),  # A.19
    "rt-plan": (*_RT, "rt-general-plan"),  # A.20
    "rt-dose": (*_RT, "general-image"),  # A.18
    "sr-document": _SR,  # A.35.1-A.35.3 (Basic Text, Enhanced, Comprehensive SR)
    "encapsulated-pdf": (*DEFAULT_MODULES, "encapsulated-document"),  # A.45.1
    "segmentation": (  # A.51
        *DEFAULT_MODULES,
        "frame-of-reference",
        "enhanced-general-equipment",
        "multi-frame-functional-groups",
        "segmentation-image",
    ),
    "raw-data": (*DEFAULT_MODULES, "frame-of-reference", "synchronization", "raw-data"),  # A.37
    "enhanced-ct-image": _ENHANCED,  # A.38
    "enhanced-mr-image": _ENHANCED,  # A.36.2
}

_STORAGE = "1.2.840.10008.5.1.4.1.1."
SOP_CLASS_IODS: Final[Mapping[str, str]] = {
    f"{_STORAGE}2": "ct-image",
    f"{_STORAGE}2.1": "enhanced-ct-image",
    f"{_STORAGE}4": "mr-image",
    f"{_STORAGE}4.1": "enhanced-mr-image",
    f"{_STORAGE}20": "nm-image",
    f"{_STORAGE}6.1": "us-image",
    f"{_STORAGE}3.1": "us-multi-frame-image",
    f"{_STORAGE}7": "sc-image",
    f"{_STORAGE}7.1": "multi-frame-sc-image",  # single bit
    f"{_STORAGE}7.2": "multi-frame-sc-image",  # grayscale byte
    f"{_STORAGE}7.3": "multi-frame-sc-image",  # grayscale word
    f"{_STORAGE}7.4": "multi-frame-sc-image",  # true color
    f"{_STORAGE}1": "cr-image",
    f"{_STORAGE}1.1": "dx-image",  # for presentation
    f"{_STORAGE}1.1.1": "dx-image",  # for processing
    f"{_STORAGE}1.2": "mammography-image",
    f"{_STORAGE}1.2.1": "mammography-image",
    f"{_STORAGE}1.3": "intra-oral-image",
    f"{_STORAGE}1.3.1": "intra-oral-image",
    f"{_STORAGE}12.1": "xa-image",
    f"{_STORAGE}12.2": "xrf-image",
    f"{_STORAGE}128": "pet-image",
    f"{_STORAGE}481.3": "rt-structure-set",
    f"{_STORAGE}481.5": "rt-plan",
    f"{_STORAGE}481.2": "rt-dose",
    f"{_STORAGE}88.11": "sr-document",  # Basic Text SR
    f"{_STORAGE}88.22": "sr-document",  # Enhanced SR
    f"{_STORAGE}88.33": "sr-document",  # Comprehensive SR
    f"{_STORAGE}104.1": "encapsulated-pdf",
    f"{_STORAGE}66.4": "segmentation",
    f"{_STORAGE}66": "raw-data",
}

# (enclosing sequence, attribute) -> Type, from the macros that define those items.
NESTED_TYPES: Final[Mapping[tuple[int, int], int]] = {
    # Referenced Series Sequence items (Presentation State Relationship, C.11.11):
    # Referenced Image Sequence is Type 1.
    (0x00081115, 0x00081140): 1,
    # Referenced Image Functional Group (C.7.6.16.2.5) inside Shared/Per-frame Functional Groups.
    (0x52009229, 0x00081140): 1,
    (0x52009230, 0x00081140): 1,
    # Derivation Image Functional Group (C.7.6.16.2.6): Source Image Sequence is Type 1.
    (0x00089124, 0x00082112): 1,
    # SR Referenced Request Sequence (C.17.2): Referenced Study Sequence and Requested Procedure
    # Description are Type 2.
    (0x0040A370, 0x00081110): 2,
    (0x0040A370, 0x00321060): 2,
    # RT Beams / Ion Beams (C.8.8.14, C.8.8.25): Treatment Machine Name is Type 2.
    (0x300A00B0, 0x300A00B2): 2,
    (0x300A03A2, 0x300A00B2): 2,
}


def iod_for_sop_class(sop_class_uid: str) -> str | None:
    """The IOD name of a storage SOP class, or None when it is not one of those transcribed."""
    return SOP_CLASS_IODS.get(sop_class_uid.strip("\x00 "))


@cache
def _types_of(iod: str | None) -> Mapping[int, int]:
    modules = IOD_MODULES.get(iod, DEFAULT_MODULES) if iod else DEFAULT_MODULES
    types: dict[int, int] = {}
    for module in modules:
        for tag, attr_type in MODULE_TYPES[module].items():
            # An attribute in two modules takes the stricter Type.
            types[tag] = min(attr_type, types.get(tag, 3))
    return types


def attribute_types(sop_class_uid: str) -> Mapping[int, int]:
    """Tag -> Type (1 or 2) of the top-level attributes of interest in this SOP class's IOD."""
    return _types_of(iod_for_sop_class(sop_class_uid))


def nested_type(sequence_tag: int, tag: int) -> int:
    """The Type of an attribute inside an item of ``sequence_tag`` (3 when not transcribed)."""
    return NESTED_TYPES.get((sequence_tag, tag), 3)
