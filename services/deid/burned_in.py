"""Pixel policies: whether an instance's pixels may carry text that identifies the patient.

Metadata de-identification cannot see text burned into the pixels (ultrasound banners, scanned
forms, screen captures, technologist labels on radiographs). The pipeline asks a
:class:`PixelPolicy` and holds the instance for review when it says so. The pixel stage
(:class:`radstream.deid.pixels.stage.PixelStage`: OCR, filling, verification, a calibrated
risk) is such a policy, passed where this one is passed; it keeps only the holds reading cannot
lift (:class:`HoldUncheckableContent`) and reads everything else, and uses
:func:`text_prone_reason` to read text-prone instances whole.

:class:`HoldPossibleBurnedInText`, the header-only policy (no OCR engine at hand), decides from
the header alone and leans to holding. Its rules, first match wins:

1. No pixels (no Pixel Data, Float or Double Float Pixel Data, no encapsulated document):
   nothing can be burned in; release as far as this policy goes.
2. An encapsulated document (PDF, CDA, STL, ...): its content is opaque to the header cleaner;
   hold.
3. A picture of a label: ``SpecimenLabelInImage`` (0048,0010) is ``YES`` (or anything but
   ``NO``), or ``ImageType`` (0008,0008) has a ``LABEL`` or ``OVERVIEW`` value (the slide
   scanner's photograph of the slide label, or of the whole slide with its label): hold
   whatever ``BurnedInAnnotation`` says. The label is not an "annotation" to every device, and
   it carries the accession number or the patient's name by design.
4. ``BurnedInAnnotation`` (0028,0301) is ``YES``, or holds anything other than ``YES``/``NO``:
   hold (a malformed flag is treated as unknown, not as ``NO``).
5. Text-prone instances -- modality ``US``, ``OT``, ``XA``, ``RF``, ``ES``, ``XC``, ``SC``,
   ``SM``, ``GM``, ``DMS``, or a secondary capture, ultrasound, X-ray angiography/fluoroscopy,
   visible-light (endoscopy, microscopy, whole slide microscopy, confocal microscopy,
   photography, dermoscopic photography, ophthalmic photography) SOP class (checked by SOP
   class too, because ``Modality`` is often wrong or absent on these): hold
   whether the flag is absent *or* ``NO``. These devices write patient names into the image
   far more often than they set the flag truthfully, so ``NO`` is not trusted here
   (``trust_negative_flag=True`` changes that).
6. Projection radiography -- ``CR``, ``DX``, ``MG``, ``IO``, ``PX``, or their SOP classes --
   and any image with overlay planes or graphic annotations in the header: hold when the flag
   is absent (for DX, MG and IO it is Type 1, so absence is itself non-conformant; CR plates
   routinely carry burned-in labels); release when the flag is an explicit ``NO``.
7. Everything else (CT, MR, PT, NM, ...): release unless the flag is ``YES`` (rule 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = [
    "DEFAULT_PIXEL_POLICY",
    "HOLD_UNCHECKABLE_CONTENT",
    "LABEL_IMAGE_TYPES",
    "PROJECTION_MODALITIES",
    "PROJECTION_SOP_CLASSES",
    "SECONDARY_CAPTURE_SOP_CLASSES",
    "TEXT_PRONE_MODALITIES",
    "TEXT_PRONE_SOP_CLASSES",
    "HoldPossibleBurnedInText",
    "HoldUncheckableContent",
    "PixelAssessment",
    "PixelPolicy",
    "text_prone_reason",
]

BURNED_IN_ANNOTATION = "BurnedInAnnotation"
SPECIMEN_LABEL_IN_IMAGE = "SpecimenLabelInImage"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

SECONDARY_CAPTURE_SOP_CLASSES: frozenset[str] = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC Image Storage
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC Image Storage
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC Image Storage
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC Image Storage
    }
)

TEXT_PRONE_SOP_CLASSES: frozenset[str] = SECONDARY_CAPTURE_SOP_CLASSES | frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (Retired)
        "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
        "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (Retired)
        "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume Storage
        "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image Storage
        "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA Image Storage
        "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic Image Storage
        "1.2.840.10008.5.1.4.1.1.12.2.1",  # Enhanced XRF Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.2",  # VL Microscopic Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.2.1",  # Video Microscopic Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.3",  # VL Slide-Coordinates Microscopic Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.5.1",  # Ophthalmic Photography 8 Bit Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.5.2",  # Ophthalmic Photography 16 Bit Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.5.5",  # Wide Field Ophthalmic Photography Stereographic
        "1.2.840.10008.5.1.4.1.1.77.1.5.6",  # Wide Field Ophthalmic Photography 3D Coordinates
        "1.2.840.10008.5.1.4.1.1.77.1.6",  # VL Whole Slide Microscopy Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.7",  # Dermoscopic Photography Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.8",  # Confocal Microscopy Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.9",  # Confocal Microscopy Tiled Pyramidal Image Storage
    }
)

# SM slide microscopy, GM general microscopy, DMS dermoscopy (PS3.3 C.7.3.1.1.1).
TEXT_PRONE_MODALITIES: frozenset[str] = frozenset(
    {"US", "OT", "XA", "RF", "ES", "XC", "SC", "SM", "GM", "DMS"}
)
# Image Type values of a slide scanner's pictures of the label (PS3.3 C.8.12.4.1.1).
LABEL_IMAGE_TYPES: frozenset[str] = frozenset({"LABEL", "OVERVIEW"})

PROJECTION_SOP_CLASSES: frozenset[str] = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
        "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
        "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray - For Processing
        "1.2.840.10008.5.1.4.1.1.1.3",  # Digital Intra-Oral X-Ray - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.3.1",  # Digital Intra-Oral X-Ray - For Processing
    }
)

PROJECTION_MODALITIES: frozenset[str] = frozenset({"CR", "DX", "MG", "IO", "PX"})


@dataclass(frozen=True, kw_only=True)
class PixelAssessment:
    """A pixel policy's verdict: hold the instance for review, and why (no PHI in reasons)."""

    hold: bool
    reasons: tuple[str, ...] = ()


RELEASABLE = PixelAssessment(hold=False)


@runtime_checkable
class PixelPolicy(Protocol):
    """Decides whether an instance's pixels may carry identifying text."""

    def assess(self, ds: Dataset) -> PixelAssessment:
        """Assess the original (not yet de-identified) data set."""


@dataclass(frozen=True, kw_only=True)
class HoldPossibleBurnedInText:
    """Hold every instance whose pixels may carry burned-in text; see the module docstring."""

    text_prone_modalities: frozenset[str] = TEXT_PRONE_MODALITIES
    text_prone_sop_classes: frozenset[str] = TEXT_PRONE_SOP_CLASSES
    projection_modalities: frozenset[str] = PROJECTION_MODALITIES
    projection_sop_classes: frozenset[str] = PROJECTION_SOP_CLASSES
    trust_negative_flag: bool = False

    def assess(self, ds: Dataset) -> PixelAssessment:
        """Apply the rules in order; the first that decides wins."""
        why = self._why_hold(ds)
        return RELEASABLE if why is None else _hold(why)

    def _why_hold(self, ds: Dataset) -> str | None:
        if "EncapsulatedDocument" in ds:
            return "the instance encapsulates a document the header cleaner cannot read"
        if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
            return None
        label = _label_in_image(ds)
        if label is not None:
            return label
        flag = _flag(ds)
        if flag == "YES":
            return "BurnedInAnnotation is YES"
        if flag is not None and flag != "NO":
            return "BurnedInAnnotation is neither YES nor NO"
        return self._why_hold_unflagged(ds, negative=flag == "NO")

    def _why_hold_unflagged(self, ds: Dataset, *, negative: bool) -> str | None:
        """Rules 5 to 7: the flag is absent, or says NO."""
        text_prone = self._text_prone(ds)
        if text_prone is not None:
            if not negative:
                return f"BurnedInAnnotation is absent on {text_prone}"
            if self.trust_negative_flag:
                return None
            return f"BurnedInAnnotation NO is not trusted on {text_prone}"
        unflagged_risk = self._needs_flag(ds)
        if unflagged_risk is not None and not negative:
            return f"BurnedInAnnotation is absent on {unflagged_risk}"
        return None

    def _text_prone(self, ds: Dataset) -> str | None:
        """Name what makes the instance text-prone, or None."""
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class in SECONDARY_CAPTURE_SOP_CLASSES:
            return "a secondary capture"
        modality = _modality(ds)
        if modality in self.text_prone_modalities:
            return f"modality {modality}"
        if sop_class in self.text_prone_sop_classes:
            return f"SOP class {sop_class}"
        return None

    def _needs_flag(self, ds: Dataset) -> str | None:
        """Name what makes an absent flag a reason to hold, or None."""
        modality = _modality(ds)
        if modality in self.projection_modalities:
            return f"modality {modality}"
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class in self.projection_sop_classes:
            return f"SOP class {sop_class}"
        if _has_overlay_or_graphics(ds):
            return "an image with overlays or graphic annotations"
        return None


DEFAULT_PIXEL_POLICY = HoldPossibleBurnedInText()


@dataclass(frozen=True, kw_only=True)
class HoldUncheckableContent:
    """Rules 2 and 3 alone: what the pixel stage cannot vouch for by reading the pixels.

    An encapsulated document has no pixels to read, and a slide scanner's label or overview
    image exists to identify the specimen (the label is the point, not an annotation). The
    pixel stage (:class:`radstream.deid.pixels.stage.PixelStage`) applies these holds first
    and reads everything else; rules 4 to 7 are what its text check replaces.
    """

    def assess(self, ds: Dataset) -> PixelAssessment:
        """Hold encapsulated documents and label images; release the rest to the pixel stage."""
        if "EncapsulatedDocument" in ds:
            return _hold("the instance encapsulates a document the header cleaner cannot read")
        if any(keyword in ds for keyword in _PIXEL_KEYWORDS):
            label = _label_in_image(ds)
            if label is not None:
                return _hold(label)
        return RELEASABLE


HOLD_UNCHECKABLE_CONTENT = HoldUncheckableContent()


def text_prone_reason(
    ds: Dataset, policy: HoldPossibleBurnedInText = DEFAULT_PIXEL_POLICY
) -> str | None:
    """Why the header suggests text in the pixels, or None (rules 3 to 6, the flag's value aside).

    The pixel stage reads such instances whole instead of screening them first: a flag that
    says YES (or anything but NO), a text-prone modality or SOP class, a projection radiograph,
    overlays or graphic annotations. A NO flag is not trusted to say otherwise.
    """
    label = _label_in_image(ds)
    if label is not None:
        return label
    flag = _flag(ds)
    if flag is not None and flag != "NO":
        return "BurnedInAnnotation is not NO"
    return policy._text_prone(ds) or policy._needs_flag(ds)


def _hold(why: str) -> PixelAssessment:
    return PixelAssessment(hold=True, reasons=(f"possible burned-in text: {why}",))


def _label_in_image(ds: Dataset) -> str | None:
    """Rule 3: name what says the pixels show a label, or None."""
    specimen_label = _flag(ds, SPECIMEN_LABEL_IN_IMAGE)
    if specimen_label == "YES":
        return "Specimen Label in Image is YES"
    if specimen_label is not None and specimen_label != "NO":
        return "Specimen Label in Image is not NO"
    for value in _image_type_values(ds):
        if value in LABEL_IMAGE_TYPES:
            return f"Image Type {value}"
    return None


def _image_type_values(ds: Dataset) -> list[str]:
    """The Image Type values, upper-cased and stripped (raw bytes read as text)."""
    raw = ds.get("ImageType")
    if raw is None:
        return []
    if isinstance(raw, bytes):  # read with a wrong VR (UN)
        raw = raw.decode("latin-1")
    if isinstance(raw, str):
        values: list[object] = list(raw.split("\\"))
    elif isinstance(raw, MultiValue | list | tuple):
        values = list(raw)
    else:
        values = [raw]
    return [str(value).strip("\0 ").upper() for value in values]


def _flag(ds: Dataset, keyword: str = BURNED_IN_ANNOTATION) -> str | None:
    """A YES/NO flag's value, upper-cased and stripped; None when absent or empty."""
    raw = ds.get(keyword)
    if raw is None:
        return None
    if isinstance(raw, bytes):  # read with a wrong VR (UN): the value is still ASCII text
        raw = raw.decode("latin-1")
    if isinstance(raw, str):
        text = raw.strip("\0 ").upper()
        return text or None
    return "MULTIPLE"  # a multi-valued flag is malformed (VM 1), hence unknown


def _modality(ds: Dataset) -> str:
    return str(ds.get("Modality", "") or "").strip().upper()


def _has_overlay_or_graphics(ds: Dataset) -> bool:
    """Overlay planes (60xx,3000) or graphic annotations: someone drew on this image."""
    if "GraphicAnnotationSequence" in ds:
        return True
    # The tags alone: iterating a Dataset yields its elements, fetching (converting) each one.
    tags = ds.keys()
    return any(0x6000 <= tag >> 16 <= 0x601E and tag & 0xFFFF == 0x3000 for tag in tags)
