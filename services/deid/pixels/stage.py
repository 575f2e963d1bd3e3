"""The pixel stage: check every instance's pixels for text, fill the PHI, prove it is gone.

:class:`PixelStage` is a :class:`~radstream.deid.burned_in.PixelPolicy` -- pass it where the
header-only policy was passed and :func:`radstream.deid.pipeline.deidentify_instance` runs it:

1. :meth:`PixelStage.assess` -- the hard holds that reading cannot lift (an encapsulated
   document, a slide label image: :class:`~radstream.deid.burned_in.HoldUncheckableContent`);
2. :meth:`PixelStage.inspect` the original -- decode (:mod:`.frames`), the text check
   (:mod:`.triage`), full OCR where it found text, each line judged against the instance's own
   PHI values and Presidio (:mod:`.classify`), overlay planes read; the PHI boxes planned per
   frame (:mod:`.redact`). With ``reviewed_boxes`` a reviewer's boxes replace all of that;
3. :meth:`PixelStage.clean` the de-identified data set -- fill, re-encode (:mod:`.encode`),
   Burned In Annotation NO, Clean Pixel Data (DCM 113101) among the method codes, the icon
   image (a thumbnail of the unredacted pixels) removed;
4. :meth:`PixelStage.verify` the written bytes (:mod:`.verify`), then the risk
   (:func:`~radstream.deid.pixels.risk.risk_score`) against the calibrated threshold -- skipped
   for a reviewer's boxes, since a person approved them, but the verification is not.

The result is a :class:`~radstream.deid.pixels.findings.PixelReport`; its ``reasons`` say
how the check went ("text_check_negative_screen", ...) and why an instance is held:
``pixel_verification_failed`` (PHI still readable in the output), ``reviewed_boxes_leave_phi``
(the same, with a reviewer's boxes), ``pixel_risk_over_threshold``, ``pixel_data_not_decodable``,
``pixel_output_mismatch`` (the written pixels are not those checked).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import cv2
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from radstream.deid.burned_in import (
    HOLD_UNCHECKABLE_CONTENT,
    PixelAssessment,
    PixelPolicy,
    text_prone_reason,
)
from radstream.deid.errors import DeidError
from radstream.deid.phi import PhiValues
from radstream.deid.pixels.classify import PhiClassifier
from radstream.deid.pixels.encode import write_frames
from radstream.deid.pixels.fields import Field, ink_fields, read_fields
from radstream.deid.pixels.findings import (
    PixelDecision,
    PixelFinding,
    PixelReport,
    RiskFeatures,
    StageCosts,
)
from radstream.deid.pixels.frames import (
    DecodedFrames,
    PixelFormatError,
    decode_frames,
    overlay_images,
)
from radstream.deid.pixels.reading import read_lines
from radstream.deid.pixels.redact import FillPlan, fill_boxes, plan_fills
from radstream.deid.pixels.risk import RiskThreshold, risk_score, threshold_for
from radstream.deid.pixels.settings import PixelPolicyMode, PixelSettings
from radstream.deid.pixels.triage import (
    LOSSY_SYNTAXES,
    FrameChange,
    Triage,
    frame_change,
    triage,
)
from radstream.deid.pixels.verify import verify_pixels
from radstream.dicom.raw_header import RawInstance
from radstream.ocr.engine import Box, Image, OcrEngine, TextRegion

__all__ = [
    "CLEAN_PIXEL_DATA_CODE",
    "CLEAN_PIXEL_DATA_MEANING",
    "PixelInspection",
    "PixelStage",
    "ReviewedBoxesError",
]

CLEAN_PIXEL_DATA_CODE = "113101"
CLEAN_PIXEL_DATA_MEANING = "Clean Pixel Data Option"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_INTERIOR = 0.2  # a box whose centre is this far (of the size) from every edge is "inside"

# The stage's filters run on small images in many threads at once; OpenCV's own thread pool
# only adds hand-offs there (0.6 ms against 1.2 ms per CT slice screen on two cores).
cv2.setNumThreads(1)


class ReviewedBoxesError(DeidError):
    """A reviewer's box names a frame the instance does not have, or lies outside the image."""

    reason: ClassVar[str] = "reviewed_boxes_invalid"


@dataclass(kw_only=True)
class PixelInspection:
    """What :meth:`PixelStage.inspect` learned about the original, for the later steps."""

    phi: PhiValues
    decision: PixelDecision | None = None  # decided already (no pixels, undecodable)
    hold_reasons: tuple[str, ...] = ()
    decoded: DecodedFrames | None = None
    triage: Triage | None = None
    findings: tuple[PixelFinding, ...] = ()
    plan: FillPlan = field(default_factory=dict)
    unread_regions: int = 0
    reviewed: bool = False
    original_pixels: bytes | None = None
    expected: npt.NDArray[np.generic] | None = None
    frames_covered: int = 0
    decode_ms: float = 0.0
    triage_ms: float = 0.0
    ocr_ms: float = 0.0
    redact_ms: float = 0.0
    reasons: list[str] = field(default_factory=list)


class PixelStage:
    """Reads, cleans and verifies pixel data; a ``PixelPolicy`` for the pipeline.

    Parameters
    ----------
    engine
        The OCR engine (:func:`radstream.ocr.engines.load_engine`).
    classifier
        Judges each line; without one, header values and patterns only (no NER).
    threshold
        The calibrated risk threshold; None: the shipped calibration for ``engine``'s name at
        the default leak rate (fail closed -- everything with text held -- without one).
    settings
        Mode (:class:`PixelPolicyMode`), padding and the triage's thresholds.
    header_policy
        The holds applied before reading (default: encapsulated documents and label images).
    """

    def __init__(
        self,
        engine: OcrEngine,
        *,
        classifier: PhiClassifier | None = None,
        threshold: RiskThreshold | None = None,
        settings: PixelSettings | None = None,
        header_policy: PixelPolicy = HOLD_UNCHECKABLE_CONTENT,
    ) -> None:
        self.engine = engine
        self.settings = settings if settings is not None else PixelSettings()
        self.classifier = (
            classifier
            if classifier is not None
            else PhiClassifier(threshold=self.settings.phi_threshold)
        )
        self.threshold = (
            threshold if threshold is not None else threshold_for(engine=engine.info.name)
        )
        self.header_policy = header_policy

    @property
    def mode(self) -> PixelPolicyMode:
        """Which text is filled."""
        return self.settings.mode

    def assess(self, ds: Dataset) -> PixelAssessment:
        """The holds reading cannot lift (see :class:`HoldUncheckableContent`)."""
        return self.header_policy.assess(ds)

    # -- 2. inspect -------------------------------------------------------------------------

    def inspect(
        self,
        original: Dataset,
        phi: PhiValues,
        *,
        reviewed_boxes: Mapping[int, Sequence[Box]] | None = None,
    ) -> PixelInspection:
        """Decode, check, read and judge the original's pixels; plan the fills."""
        inspection = PixelInspection(phi=phi, reviewed=reviewed_boxes is not None)
        if not any(keyword in original for keyword in _PIXEL_KEYWORDS):
            inspection.decision = PixelDecision.NO_PIXELS
            return inspection
        started = time.perf_counter()
        try:
            decoded = decode_frames(original)
        except PixelFormatError:
            inspection.decision = PixelDecision.HELD
            inspection.hold_reasons = ("pixel_data_not_decodable",)
            return inspection
        finally:
            inspection.decode_ms = (time.perf_counter() - started) * 1000
        inspection.decoded = decoded
        inspection.original_pixels = _raw_pixels(original)
        if reviewed_boxes is not None:
            self._plan_reviewed(inspection, decoded, reviewed_boxes)
            return inspection
        text_prone = text_prone_reason(original) is not None
        checked = triage(decoded, self.engine, text_prone=text_prone, settings=self.settings.triage)
        inspection.triage = checked
        inspection.triage_ms = checked.milliseconds
        inspection.reasons.append(checked.decision)
        inspection.frames_covered = decoded.count  # checked, or equal to frame 0 where not
        started = time.perf_counter()
        findings, unread = self._read(decoded, checked, phi)
        findings.extend(self._read_overlays(original, phi))
        inspection.ocr_ms = (time.perf_counter() - started) * 1000
        inspection.findings = tuple(findings)
        inspection.unread_regions = unread
        found: dict[int, list[Box]] = {}
        for finding in findings:
            if finding.phi and finding.source == "pixels":
                found.setdefault(finding.frame, []).append(finding.box)
        inspection.plan = plan_fills(found, [plan.change for plan in checked.plans])
        return inspection

    def _plan_reviewed(
        self,
        inspection: PixelInspection,
        decoded: DecodedFrames,
        reviewed: Mapping[int, Sequence[Box]],
    ) -> None:
        """A reviewer's boxes replace the proposal, carried to the frames that still show them."""
        for frame, boxes in reviewed.items():
            if not 0 <= frame < decoded.count:
                raise ReviewedBoxesError(
                    f"a reviewed box names frame {frame}; the instance has {decoded.count}"
                )
            for box in boxes:
                if box.clipped(width=decoded.width, height=decoded.height) is None:
                    raise ReviewedBoxesError(
                        f"a reviewed box for frame {frame} lies outside the "
                        f"{decoded.width}x{decoded.height} image"
                    )
        started = time.perf_counter()
        tolerance = (
            self.settings.triage.lossy_tolerance if decoded.transfer_syntax in LOSSY_SYNTAXES else 0
        )
        first = decoded.display(0)
        changes: list[FrameChange | None] = [None]
        changes.extend(
            frame_change(first, decoded.display(index), tolerance=tolerance)
            for index in range(1, decoded.count)
        )
        inspection.triage_ms = (time.perf_counter() - started) * 1000
        inspection.plan = plan_fills({k: tuple(v) for k, v in reviewed.items()}, changes)
        inspection.findings = tuple(
            PixelFinding(
                frame=frame,
                box=box,
                text="",
                confidence=1.0,
                detection_score=1.0,
                phi=True,
                phi_kinds=("REVIEWED",),
                phi_score=1.0,
                source="review",
                reason="drawn or approved by a reviewer",
            )
            for frame, boxes in sorted(reviewed.items())
            for box in boxes
        )
        inspection.frames_covered = decoded.count
        inspection.reasons.append("reviewed_boxes")

    def _read(
        self, decoded: DecodedFrames, checked: Triage, phi: PhiValues
    ) -> tuple[list[PixelFinding], int]:
        """Full OCR where the check found text; every line judged. Returns findings, unread."""
        findings: list[PixelFinding] = []
        unread = 0
        sides = self.settings.recognize_sides
        for plan in checked.plans:
            if not plan.ocr_regions:
                continue
            image = decoded.display(plan.index)
            if plan.change is not None:
                image = plan.change.masked(image)  # the change alone (see triage)
            areas = (
                [Box(0, 0, decoded.width, decoded.height)] if plan.whole else list(plan.ocr_regions)
            )
            read: list[TextRegion] = []
            for area in areas:
                crop = np.ascontiguousarray(image[area.y : area.bottom, area.x : area.right])
                read.extend(_moved(region, area) for region in read_lines(self.engine, crop, sides))
            legible = [region for region in read if not _unread(region)]
            unread += len(read) - len(legible)
            unread += sum(
                1
                for detection in plan.detections
                if detection.box.covered_by([region.box for region in legible]) < 0.5
            )
            judged = [self._judge(plan.index, region, phi) for region in read]
            if self.mode is PixelPolicyMode.REMOVE_PHI:
                judged = self._by_field(plan.index, image, judged, phi)
            findings.extend(judged)
        return findings, unread

    def _by_field(
        self, frame: int, image: Image, lines: list[PixelFinding], phi: PhiValues
    ) -> list[PixelFinding]:
        """Each PHI line as the fields it shows, PHI or not (see :mod:`.fields`).

        The fields of all of a frame's PHI lines are read in one engine call.
        """
        split: dict[int, list[Field]] = {}
        for index, line in enumerate(lines):
            if line.phi:
                split[index] = ink_fields(image, line.box)
        every = [field for fields in split.values() for field in fields if len(fields) > 1]
        texts = iter(read_fields(self.engine, image, every, self.settings.recognize_sides))
        result: list[PixelFinding] = []
        for index, line in enumerate(lines):
            fields = split.get(index)
            if not fields:  # not PHI, or no measurable ink: as read
                result.append(line)
            elif len(fields) == 1:
                result.append(replace(line, box=fields[0].box))
            else:
                read = [next(texts) for _ in fields]
                result.extend(self._fields_of(line, fields, read, phi))
        return result

    def _fields_of(
        self, line: PixelFinding, fields: list[Field], texts: list[str], phi: PhiValues
    ) -> list[PixelFinding]:
        """The fields' findings, or the whole line around its ink when they cannot decide.

        They decide when some field is PHI, the rest read together is not, and every kind of
        evidence the whole line gave (a header value, a titled name, a date) is given by the
        PHI fields alone: a date drawn "SEP 26 2023" in a monospaced font falls into three
        fields of which only the year looks like a date, and "Ref: Dr. Sofia Lindqvist" into
        "Ref: Dr." (a label with a value) and a name Presidio does not know without its title;
        filling the year or the title alone would leave the rest readable.
        """
        whole = [replace(line, box=_union([field.box for field in fields]))]
        if not all(_legible(text) for text in texts):
            return whole
        verdicts = [self.classifier.classify(text, phi) for text in texts]
        rest = " ".join(t for t, verdict in zip(texts, verdicts, strict=True) if not verdict.phi)
        if not any(v.phi for v in verdicts) or (rest and self.classifier.classify(rest, phi).phi):
            return whole
        if not set(line.phi_kinds) <= {kind for v in verdicts if v.phi for kind in v.kinds}:
            return whole
        return [
            replace(
                line,
                box=field.box,
                text=text,
                phi=verdict.phi,
                phi_kinds=verdict.kinds,
                phi_score=verdict.score,
                reason=f"field of a PHI line: {verdict.reason}",
            )
            for field, text, verdict in zip(fields, texts, verdicts, strict=True)
        ]

    def _judge(
        self, frame: int, region: TextRegion, phi: PhiValues, source: str = "pixels"
    ) -> PixelFinding:
        if self.mode is PixelPolicyMode.REMOVE_ALL_TEXT:
            return _finding(
                frame,
                region,
                phi=True,
                kinds=("ALL_TEXT",),
                score=1.0,
                reason="the policy removes all text",
                source=source,
            )
        if not _legible(region.text):
            return _finding(
                frame,
                region,
                phi=False,
                kinds=(),
                score=0.0,
                reason="detected but not read",
                source=source,
            )
        verdict = self.classifier.classify(region.text, phi)
        return _finding(
            frame,
            region,
            phi=verdict.phi,
            kinds=verdict.kinds,
            score=verdict.score,
            reason=verdict.reason,
            source=source,
        )

    def _read_overlays(self, original: Dataset, phi: PhiValues) -> list[PixelFinding]:
        """Lines read in overlay planes (removed by the profile; reported for the reviewer)."""
        findings = []
        for overlay in overlay_images(original):
            source = f"overlay:{overlay.group:04X}"
            for region in read_lines(self.engine, overlay.image, self.settings.recognize_sides):
                moved = _moved(region, Box(overlay.origin[0], overlay.origin[1], 1, 1))
                findings.append(self._judge(overlay.frame, moved, phi, source))
        return findings

    # -- 3. clean ---------------------------------------------------------------------------

    def clean(self, inspection: PixelInspection, output: Dataset) -> None:
        """Fill the planned boxes in the de-identified ``output`` and mark what was done."""
        if inspection.decision is not None or inspection.decoded is None:
            return
        started = time.perf_counter()
        decoded = inspection.decoded
        if "IconImageSequence" in output:
            del output.IconImageSequence  # a thumbnail of the pixels before redaction
        for group in sorted(_overlay_groups_with_phi(inspection, output)):
            for tag in [tag for tag in output.keys() if tag.group == group]:  # noqa: SIM118
                del output[tag]
        if inspection.plan:
            padding = 0 if inspection.reviewed else self.settings.padding
            frames = fill_boxes(decoded, inspection.plan, padding=padding)
            write_frames(output, decoded, frames)
            inspection.expected = frames
            inspection.reasons.append("phi_boxes_filled")
        output.BurnedInAnnotation = "NO"
        _add_clean_pixel_data(output)
        inspection.redact_ms = (time.perf_counter() - started) * 1000

    # -- 4. verify --------------------------------------------------------------------------

    def verify(self, inspection: PixelInspection, written: Dataset | RawInstance) -> PixelReport:
        """Verify the re-read output, weigh the risk, decide; the report of the instance."""
        decoded = inspection.decoded
        frames_total = decoded.count if decoded is not None else 0
        base = {
            "engine": self.engine.info,
            "frames_total": frames_total,
            "frames_checked": inspection.triage.frames_checked if inspection.triage else 0,
            "reviewed": inspection.reviewed,
        }
        if inspection.decision is not None:
            return PixelReport(
                decision=inspection.decision,
                reasons=(*inspection.reasons, *inspection.hold_reasons),
                costs=StageCosts(decode_ms=inspection.decode_ms),
                **base,  # type: ignore[arg-type]
            )
        result = verify_pixels(
            written,
            original_pixels=inspection.original_pixels,
            expected=inspection.expected,
            filled=_padded_plan(inspection, self.settings.padding, decoded),
            engine=self.engine,
            classifier=self.classifier,
            phi=inspection.phi,
            recognize_sides=self.settings.recognize_sides,
            # A reviewer's boxes skipped the text check: no frame was read before them.
            read_every_frame=inspection.reviewed,
        )
        features = self._features(inspection, failed=not result.passed)
        risk = risk_score(features)
        reasons = list(inspection.reasons)
        held = False
        if not result.passed:
            held = True
            reasons.append(result.reason)
            reasons.append(
                "reviewed_boxes_leave_phi" if inspection.reviewed else "pixel_verification_failed"
            )
        elif not inspection.reviewed and self.threshold.holds(risk):
            held = True
            reasons.append("pixel_risk_over_threshold")
        else:
            reasons.append("verified")
        return PixelReport(
            decision=self._decision(inspection, held=held),
            findings=inspection.findings,
            reasons=tuple(reasons),
            risk=risk,
            risk_features=features,
            costs=StageCosts(
                decode_ms=inspection.decode_ms,
                triage_ms=inspection.triage_ms,
                ocr_ms=inspection.ocr_ms,
                redact_ms=inspection.redact_ms,
                verify_ms=result.milliseconds,
            ),
            residual=result.findings,
            **base,  # type: ignore[arg-type]
        )

    def _decision(self, inspection: PixelInspection, *, held: bool) -> PixelDecision:
        if held:
            return PixelDecision.HELD
        if inspection.plan:
            return PixelDecision.REDACTED
        if inspection.findings or _detected(inspection):
            return PixelDecision.TEXT_KEPT
        return PixelDecision.NO_TEXT

    def _features(self, inspection: PixelInspection, *, failed: bool) -> RiskFeatures:
        """The risk signals of :class:`RiskFeatures` from what the inspection saw."""
        read = [f for f in inspection.findings if f.source != "review" and _legible(f.text)]
        decoded = inspection.decoded
        remove_all = self.mode is PixelPolicyMode.REMOVE_ALL_TEXT
        detected = _detected(inspection)
        interior = 0.0
        if read and decoded is not None:
            # Text inside the image that is filled is gone (and verified gone); what worries is
            # the text there that is kept: a name read in part, a misread number left as it was.
            kept_inside = sum(
                1 for f in read if not f.phi and _inside(f.box, decoded.width, decoded.height)
            )
            interior = kept_inside / len(read)
        frames_total = decoded.count if decoded is not None else 1
        return RiskFeatures(
            text_found=bool(inspection.findings) or detected,
            min_recognition_confidence=min((f.confidence for f in read), default=1.0),
            nearest_phi_margin=(
                1.0
                if remove_all or inspection.reviewed
                else min((abs(f.phi_score - self.classifier.threshold) for f in read), default=1.0)
            ),
            unread_regions=0 if remove_all or inspection.reviewed else inspection.unread_regions,
            unusual_layout=interior,
            frames_sampled_fraction=inspection.frames_covered / max(1, frames_total),
            verification_failed=failed,
            boxes=len(inspection.findings),
            phi_boxes=sum(1 for f in inspection.findings if f.phi),
        )


def _detected(inspection: PixelInspection) -> bool:
    """Whether the text check's detector found text (text-prone frames skip it: False)."""
    checked = inspection.triage
    return checked is not None and any(plan.detections for plan in checked.plans)


def _raw_pixels(ds: Dataset) -> bytes | None:
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            value = ds[keyword].value
            return bytes(value) if isinstance(value, bytes | bytearray) else None
    return None


def _union(boxes: Sequence[Box]) -> Box:
    left, top = min(b.x for b in boxes), min(b.y for b in boxes)
    right, bottom = max(b.right for b in boxes), max(b.bottom for b in boxes)
    return Box(left, top, right - left, bottom - top)


def _legible(text: str) -> bool:
    """Text with a letter or digit in it: something the classifier can judge."""
    return any(char.isalnum() for char in text)


def _unread(region: TextRegion) -> bool:
    """Detected but not read: nothing, or symbols read without confidence ("junk")."""
    return not _legible(region.text) and (not region.text.strip() or region.confidence < 0.5)


def _moved(region: TextRegion, origin: Box) -> TextRegion:
    if origin.x == 0 and origin.y == 0:
        return region
    box = region.box
    return TextRegion(
        box=Box(box.x + origin.x, box.y + origin.y, box.width, box.height),
        text=region.text,
        confidence=region.confidence,
        detection_score=region.detection_score,
        polygon=tuple((x + origin.x, y + origin.y) for x, y in region.polygon),
    )


def _finding(
    frame: int,
    region: TextRegion,
    *,
    phi: bool,
    kinds: tuple[str, ...],
    score: float,
    reason: str,
    source: str,
) -> PixelFinding:
    return PixelFinding(
        frame=frame,
        box=region.box,
        text=region.text,
        confidence=region.confidence,
        detection_score=region.detection_score,
        phi=phi,
        phi_kinds=kinds,
        phi_score=score,
        source=source,
        reason=reason,
    )


def _inside(box: Box, width: int, height: int) -> bool:
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    return (
        _INTERIOR * width < cx < (1 - _INTERIOR) * width
        and _INTERIOR * height < cy < (1 - _INTERIOR) * height
    )


def _padded_plan(
    inspection: PixelInspection, padding: int, decoded: DecodedFrames | None
) -> dict[int, tuple[Box, ...]]:
    """The plan's boxes as filled (grown by the padding), for the verification's crops."""
    if decoded is None or inspection.reviewed or not padding:
        return dict(inspection.plan)
    return {
        frame: tuple(
            box.padded(padding, width=decoded.width, height=decoded.height) for box in boxes
        )
        for frame, boxes in inspection.plan.items()
    }


def _overlay_groups_with_phi(inspection: PixelInspection, output: Dataset) -> set[int]:
    """Overlay groups still in ``output`` whose plane held PHI (the profile removes them)."""
    groups = {
        int(finding.source.split(":")[1], 16)
        for finding in inspection.findings
        if finding.phi and finding.source.startswith("overlay:")
    }
    return {group for group in groups if (group << 16 | 0x3000) in output}


def _add_clean_pixel_data(output: Dataset) -> None:
    """Clean Pixel Data (DCM 113101) in the method codes and the method's text, once."""
    codes = output.get("DeidentificationMethodCodeSequence")
    if codes is None:
        return  # the profile always sets its markers; nothing to add to without them
    if any(str(item.get("CodeValue", "")) == CLEAN_PIXEL_DATA_CODE for item in codes):
        return
    item = Dataset()
    item.CodeValue = CLEAN_PIXEL_DATA_CODE
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = CLEAN_PIXEL_DATA_MEANING
    codes.append(item)
    method = output.get("DeidentificationMethod")
    if method is not None:
        values = [str(v) for v in method] if not isinstance(method, str) else [method]
        output.DeidentificationMethod = [*values, CLEAN_PIXEL_DATA_MEANING]
