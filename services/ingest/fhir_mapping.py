"""FHIR R4 resources to events: DiagnosticReport -> ReportReceived, Observation -> observations.

Resources are validated with the ``fhir.resources`` models of FHIR R4B (4.3), the package's
release closest to R4: DiagnosticReport and Observation are the same in both. Each problem is
a :class:`FhirProblem` that becomes an OperationOutcome: 400 when the body is not valid JSON or
not a valid resource, 422 when it is valid FHIR but lacks what radstream needs (report text, a
patient for an observation, a supported value). Its diagnostics and expressions name element
paths and fixed reasons, never a value from the resource.

DiagnosticReport: report id from ``identifier`` (system|value; the ``ACSN``-typed one is the
accession number) or the logical id; accession number also from ``basedOn.identifier``; patient
from ``subject``; text from ``presentedForm`` (``text/plain`` attachments with inline data),
else ``conclusion``; modality from a DICOM (DCM) or HL7 table 0074 coding in ``category`` or
``code``; observed_at from ``issued``, else the effective time.

Observation: one ClinicalObservation for its value, plus one per ``component`` with a value
(blood pressure arrives that way). Values: valueQuantity, valueInteger, valueString,
valueCodeableConcept.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, Literal

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError

from radstream.contracts.v1 import clinical_pb2, reports_pb2
from radstream.ingest.multipart import parse_media_type
from radstream.ingest.oru import modality_of_section

__all__ = [
    "FhirProblem",
    "MappedReport",
    "ResourceType",
    "logical_id",
    "observations_from_fhir",
    "parse_json",
    "report_from_fhir",
    "validate_resource",
]

ResourceType = Literal["DiagnosticReport", "Observation", "Bundle"]
_MODELS: Final[dict[str, Any]] = {
    "DiagnosticReport": DiagnosticReport,
    "Observation": Observation,
    "Bundle": Bundle,
}
_LOINC: Final = "http://loinc.org"
_DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
_V2_0074: Final = "http://terminology.hl7.org/CodeSystem/v2-0074"
_V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
_NOT_PUBLISHED: Final = frozenset({"entered-in-error", "cancelled"})
_REPORT_STATUS: Final = (
    frozenset({"registered", "partial", "preliminary", "final", "amended", "corrected", "appended"})
    | _NOT_PUBLISHED
    | {"unknown"}
)
_OBSERVATION_STATUS: Final = (
    frozenset({"registered", "preliminary", "final", "amended", "corrected"})
    | _NOT_PUBLISHED
    | {"unknown"}
)
_ELEMENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ID_NAMESPACE: Final = uuid.UUID("5e0f4f33-52a2-4c55-a4a1-1d3a0e3f0b7c")


class FhirProblem(Exception):  # noqa: N818 -- a finding about a resource, answered with 4xx
    """Why a resource is refused: HTTP status, OperationOutcome issue code, what and where.

    ``code`` is a FHIR issue type (structure, invalid, required, business-rule, ...);
    ``diagnostics`` a fixed text, never a value from the resource; ``reason`` a word for
    metrics and the audit trail.
    """

    def __init__(
        self,
        *,
        status: int,
        code: str,
        diagnostics: str,
        expression: tuple[str, ...] = (),
        reason: str = "invalid_resource",
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class MappedReport:
    """A ReportReceived (without its text) and the text to attach."""

    event: reports_pb2.ReportReceived
    text: str


def logical_id(radstream_id: str) -> str:
    """The logical id ingest answers for a resource (in Location): stable, and no PHI."""
    return str(uuid.uuid5(_ID_NAMESPACE, radstream_id))


def parse_json(data: bytes) -> dict[str, Any]:
    """Parse a FHIR JSON body into a dict (400 problems for anything else)."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise FhirProblem(
            status=400,
            code="structure",
            diagnostics="the body is not valid JSON",
            reason="invalid_json",
        ) from None
    except RecursionError:
        raise FhirProblem(
            status=400,
            code="structure",
            diagnostics="the JSON is nested deeper than the receiver reads",
            reason="json_too_deep",
        ) from None
    if not isinstance(parsed, dict):
        raise FhirProblem(
            status=400,
            code="structure",
            diagnostics="the body is not a JSON object",
            reason="invalid_json",
        )
    return parsed


def validate_resource(resource: dict[str, Any], *, allowed: frozenset[str]) -> Any:
    """Validate a resource dict against its fhir.resources model."""
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or kind not in allowed:
        raise FhirProblem(
            status=400,
            code="not-supported",
            diagnostics=f"resourceType must be one of {', '.join(sorted(allowed))}",
            expression=("resourceType",),
            reason="unsupported_resource_type",
        )
    try:
        return _MODELS[kind].model_validate(resource)
    except ValidationError as exc:
        raise FhirProblem(
            status=400,
            code="structure",
            diagnostics=f"the {kind} is not valid FHIR R4: "
            + "; ".join(sorted({_error_kind(error) for error in exc.errors()})),
            expression=tuple(_expression(kind, error) for error in exc.errors()[:20]),
        ) from None


def report_from_fhir(report: DiagnosticReport) -> MappedReport:
    """Map a validated DiagnosticReport to a ReportReceived plus its text."""
    _check_status("DiagnosticReport", report.status, _REPORT_STATUS)
    accession = _accession(report)
    report_id = _business_id("DiagnosticReport", report.identifier, report.id)
    text = _report_text(report)
    event = reports_pb2.ReportReceived(
        report_id=report_id,
        accession_number=accession,
        patient_id=_patient(report.subject),
        modality=_report_modality(report),
        source=reports_pb2.ReportReceived.SOURCE_FHIR,
    )
    observed = (
        report.issued
        or report.effectiveDateTime
        or (
            report.effectivePeriod.end or report.effectivePeriod.start
            if report.effectivePeriod is not None
            else None
        )
    )
    stamp = _timestamp(observed, "DiagnosticReport.issued")
    if stamp is not None:
        event.observed_at.CopyFrom(stamp)
    return MappedReport(event=event, text=text)


def observations_from_fhir(observation: Observation) -> list[clinical_pb2.ClinicalObservation]:
    """Map a validated Observation to ClinicalObservations (its value, then its components)."""
    _check_status("Observation", observation.status, _OBSERVATION_STATUS)
    patient_id = _patient(observation.subject)
    if not patient_id:
        raise FhirProblem(
            status=422,
            code="required",
            diagnostics="an Observation needs its subject (patient)",
            expression=("Observation.subject",),
            reason="missing_subject",
        )
    observation_id = _business_id("Observation", observation.identifier, observation.id)
    effective = (
        observation.effectiveDateTime
        or observation.effectiveInstant
        or (observation.effectivePeriod.start if observation.effectivePeriod else None)
        or observation.issued
    )
    stamp = _timestamp(effective, "Observation.effective[x]")
    parts: list[tuple[str, Any, Any, str]] = [
        (observation_id, observation.code, observation, "Observation")
    ]
    for index, component in enumerate(observation.component or []):
        parts.append(
            (
                f"{observation_id}#component{index}",
                component.code,
                component,
                f"Observation.component[{index}]",
            )
        )
    mapped = []
    for part_id, code, holder, path in parts:
        value = _value(holder, path)
        if value is None:
            continue
        message = clinical_pb2.ClinicalObservation(
            patient_id=patient_id,
            observation_id=part_id,
            code=_code(code, f"{path}.code"),
            source=clinical_pb2.ClinicalObservation.SOURCE_FHIR,
        )
        kind, payload = value
        if kind == "text":
            message.text = payload
        else:
            getattr(message, kind).CopyFrom(payload)
        if stamp is not None:
            message.effective_time.CopyFrom(stamp)
        mapped.append(message)
    if not mapped:
        raise FhirProblem(
            status=422,
            code="not-supported",
            diagnostics="no supported value: valueQuantity, valueInteger, valueString or "
            "valueCodeableConcept, on the Observation or a component",
            expression=("Observation.value[x]",),
            reason="unsupported_value",
        )
    return mapped


def _check_status(kind: str, status: str | None, known: frozenset[str]) -> None:
    if status not in known:
        raise FhirProblem(
            status=400,
            code="code-invalid",
            diagnostics=f"{kind}.status is not a known code",
            expression=(f"{kind}.status",),
            reason="invalid_status",
        )
    if status in _NOT_PUBLISHED:
        raise FhirProblem(
            status=422,
            code="business-rule",
            diagnostics=f"a {kind} with status {status} is not published",
            expression=(f"{kind}.status",),
            reason="status_not_published",
        )


def _business_id(kind: str, identifiers: list[Any] | None, resource_id: str | None) -> str:
    for identifier in identifiers or []:
        if identifier.value and identifier.system and not _is_accession(identifier):
            return f"fhir/{identifier.system}|{identifier.value}"
    if resource_id:
        return f"fhir/{kind}/{resource_id}"
    raise FhirProblem(
        status=422,
        code="required",
        diagnostics=f"a {kind} needs an identifier (system and value) or an id",
        expression=(f"{kind}.identifier",),
        reason="missing_identifier",
    )


def _is_accession(identifier: Any) -> bool:
    codings = identifier.type.coding if identifier.type is not None else None
    return any(c.code == "ACSN" and c.system in (None, _V2_0203) for c in codings or [])


def _accession(report: DiagnosticReport) -> str:
    for identifier in report.identifier or []:
        if _is_accession(identifier) and identifier.value:
            return str(identifier.value)
    based_on = [ref.identifier for ref in report.basedOn or [] if ref.identifier is not None]
    for identifier in sorted(based_on, key=lambda ident: not _is_accession(ident)):
        if identifier.value:
            return str(identifier.value)
    return ""


def _patient(subject: Any) -> str:
    if subject is None:
        return ""
    reference = subject.reference or ""
    if "Patient/" in reference:
        return reference.split("Patient/", 1)[1].split("/", 1)[0]
    if subject.identifier is not None and subject.identifier.value:
        return str(subject.identifier.value)
    return ""


def _report_text(report: DiagnosticReport) -> str:
    texts: list[str] = []
    for index, form in enumerate(report.presentedForm or []):
        media = parse_media_type(form.contentType)
        if media.essence != "text/plain" or not form.data:
            continue
        try:
            text = bytes(form.data).decode(media.parameter("charset") or "utf-8")
            text.encode("utf-8")  # escape codecs can decode to unpaired surrogates
            texts.append(text)
        except (LookupError, UnicodeError, ValueError):  # unknown, no text encoding, or invalid
            raise FhirProblem(
                status=422,
                code="invalid",
                diagnostics="a text/plain attachment is not valid in its charset",
                expression=(f"DiagnosticReport.presentedForm[{index}].data",),
                reason="invalid_attachment",
            ) from None
    text = "\n\n".join(texts) or (report.conclusion or "")
    if not text.strip():
        raise FhirProblem(
            status=422,
            code="required",
            diagnostics="no report text: a presentedForm with contentType text/plain and "
            "inline data, or a conclusion",
            expression=("DiagnosticReport.presentedForm", "DiagnosticReport.conclusion"),
            reason="missing_text",
        )
    return text


def _report_modality(report: DiagnosticReport) -> str:
    concepts = [*(report.category or []), report.code]
    for concept in concepts:
        for coding in (concept.coding if concept is not None else None) or []:
            if coding.system in (_DCM, _V2_0074) and coding.code:
                modality = modality_of_section(str(coding.code))
                if modality:
                    return modality
    return ""


def _code(concept: Any, path: str) -> clinical_pb2.Code:
    codings = [c for c in (concept.coding or []) if c.code] if concept is not None else []
    if not codings:
        raise FhirProblem(
            status=422,
            code="required",
            diagnostics="the code needs a coding with a code",
            expression=(path,),
            reason="missing_code",
        )
    chosen = next((c for c in codings if c.system == _LOINC), codings[0])
    return clinical_pb2.Code(
        system=chosen.system or "", code=str(chosen.code), display=chosen.display or ""
    )


def _value(holder: Any, path: str) -> tuple[str, Any] | None:
    if holder.valueQuantity is not None and holder.valueQuantity.value is not None:
        quantity = holder.valueQuantity
        return "quantity", clinical_pb2.Quantity(
            value=float(quantity.value), unit=quantity.code or quantity.unit or ""
        )
    if holder.valueInteger is not None:
        return "quantity", clinical_pb2.Quantity(value=float(holder.valueInteger), unit="1")
    if holder.valueString is not None:
        return "text", str(holder.valueString)
    if holder.valueCodeableConcept is not None:
        return "coded", _code(holder.valueCodeableConcept, f"{path}.valueCodeableConcept")
    return None


def _timestamp(value: Any, path: str) -> Timestamp | None:
    """A FHIR date/dateTime/instant as a protobuf Timestamp (dates at 00:00 UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        when = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str) and re.fullmatch(r"\d{4}(-\d{2})?", value):
        year, _, month = value.partition("-")
        when = datetime(int(year), int(month or 1), 1, tzinfo=UTC)
    else:
        raise FhirProblem(
            status=400,
            code="invalid",
            diagnostics="a date/time is not valid",
            expression=(path,),
            reason="invalid_date",
        )
    stamp = Timestamp()
    stamp.FromDatetime(when.astimezone(UTC))
    return stamp


def _error_kind(error: Any) -> str:
    return str(error.get("type", "invalid")).replace("model_field_validation.", "")


def _expression(kind: str, error: Any) -> str:
    """A FHIRPath-like location of a validation error; unknown element names are left out."""
    path = kind
    loc = list(error.get("loc", ()))
    if error.get("type") == "extra_forbidden" and loc:
        loc = loc[:-1]  # the unknown name came from the sender; name only its parent
    for step in loc:
        if isinstance(step, int):
            path += f"[{step}]"
        elif isinstance(step, str) and _ELEMENT.match(step):
            path += f".{step}"
        else:
            break
    return path
