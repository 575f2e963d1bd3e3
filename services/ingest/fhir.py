"""The FHIR R4 endpoint: DiagnosticReport and Observation in, report and clinical events out.

* ``POST /fhir/DiagnosticReport`` -> one ``report.received``;
* ``POST /fhir/Observation`` -> one ``clinical.observation`` per value (components included);
* ``POST /fhir`` with a Bundle of type ``transaction`` (all or nothing) or ``batch`` (each
  entry on its own) of those resources.

Bodies are ``application/fhir+json`` (plain ``application/json`` is taken too). A created
resource is answered 201 with a ``Location`` (a stable logical id derived from the resource's
business identifier, no PHI in it) and, unless ``Prefer: return=minimal``, an informational
OperationOutcome. Refusals are OperationOutcomes: 400 invalid JSON or resource, 415 another
media type, 413 too large, 422 valid FHIR that radstream cannot use, 503 when the bus or the
audit trail is away (send again; event ids are stable, so nothing is published twice). Their
diagnostics never quote the resource (see :mod:`radstream.ingest.fhir_mapping`).
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime, and
# they name a dependency alias local to the router factory.
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from radstream.common.topics import CLINICAL_OBSERVATION_V1, REPORT_RECEIVED_V1
from radstream.contracts.v1 import clinical_pb2, reports_pb2
from radstream.ingest.fhir_mapping import (
    FhirProblem,
    logical_id,
    observations_from_fhir,
    parse_json,
    report_from_fhir,
    validate_resource,
)
from radstream.ingest.http_auth import HttpAuthenticator, Principal
from radstream.ingest.multipart import parse_media_type
from radstream.ingest.receipt import Sender
from radstream.ingest.rejections import Rejections
from radstream.ingest.reports import ReceivedBytes, ReportSink, report_event_id

__all__ = ["FHIR_JSON", "FhirEndpoints", "fhir_router", "operation_outcome"]

log = logging.getLogger(__name__)

FHIR_JSON: Final = "application/fhir+json"
_JSON_TYPES: Final = frozenset({FHIR_JSON, "application/json"})
_SINGLE: Final = frozenset({"DiagnosticReport", "Observation"})


@dataclass(frozen=True, kw_only=True)
class FhirEndpoints:
    """What the FHIR routes need; ``public_base_url`` prefixes Location (else the request's)."""

    sink: ReportSink
    rejections: Rejections
    max_body_bytes: int
    public_base_url: str = ""


@dataclass(frozen=True, kw_only=True)
class _Accepted:
    """A mapped resource ready to publish: its events, where it lives, its receipt."""

    kind: str
    location: str
    received: ReceivedBytes
    reports: tuple[tuple[reports_pb2.ReportReceived, str, str], ...] = ()  # event, text, id
    observations: tuple[tuple[clinical_pb2.ClinicalObservation, str], ...] = ()  # event, id


class _Unavailable(Exception):  # noqa: N818 -- internal signal: answer 503
    """The bus, blob store or audit trail failed; the sender should send again."""


def operation_outcome(
    code: str, diagnostics: str, *, severity: str = "error", expression: tuple[str, ...] = ()
) -> dict[str, Any]:
    """An OperationOutcome with one issue."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_router(endpoints: FhirEndpoints, authenticate: HttpAuthenticator) -> APIRouter:
    """The FHIR routes, every one behind ``authenticate`` and the ``fhir`` scope."""
    router = APIRouter()
    caller = Annotated[Principal, Depends(authenticate.requiring("fhir"))]

    @router.post("/fhir/DiagnosticReport")
    async def create_report(request: Request, principal: caller) -> Response:
        return await _create(endpoints, request, principal, "DiagnosticReport")

    @router.post("/fhir/Observation")
    async def create_observation(request: Request, principal: caller) -> Response:
        return await _create(endpoints, request, principal, "Observation")

    @router.post("/fhir")
    async def process_bundle(request: Request, principal: caller) -> Response:
        return await _create(endpoints, request, principal, "Bundle")

    return router


async def _create(
    endpoints: FhirEndpoints, request: Request, principal: Principal, kind: str
) -> Response:
    sender = Sender(channel="fhir", identity=principal.subject, address=principal.address)
    body = await _read_body(endpoints, request)
    if isinstance(body, Response):
        return body
    received = ReceivedBytes.of(body)
    base = (endpoints.public_base_url or str(request.base_url)).rstrip("/")
    try:
        resource = validate_resource(parse_json(body), allowed=frozenset({kind}))
        if kind == "Bundle":
            return await _process_bundle(endpoints, resource, sender, base, received)
        accepted = _accept(resource, kind, base, received)
    except FhirProblem as problem:
        await _audit(endpoints, received, sender, problem.reason, kind)
        return _problem_response(problem)
    except Exception as exc:  # a case the parser did not foresee: still the resource's fault
        unreadable = _unreadable(exc)
        await _audit(endpoints, received, sender, unreadable.reason, kind)
        return _problem_response(unreadable)
    try:
        await _commit(endpoints, [accepted], sender)
    except _Unavailable:
        return _unavailable()
    minimal = "return=minimal" in request.headers.get("prefer", "")
    content = (
        None
        if minimal
        else operation_outcome("informational", f"{kind} accepted", severity="information")
    )
    return _fhir_json(201, content, headers={"Location": accepted.location})


async def _read_body(endpoints: FhirEndpoints, request: Request) -> bytes | Response:
    media = parse_media_type(request.headers.get("content-type"))
    if media.essence not in _JSON_TYPES:
        endpoints.rejections.count("fhir", "unsupported_media_type", status=415)
        return _fhir_json(415, operation_outcome("not-supported", "send application/fhir+json"))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > endpoints.max_body_bytes:
            endpoints.rejections.count("fhir", "body_too_large", status=413)
            return _fhir_json(
                413, operation_outcome("too-costly", "the resource is larger than accepted")
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _accept(resource: Any, kind: str, base: str, received: ReceivedBytes) -> _Accepted:
    """Map one validated resource; raise FhirProblem when radstream cannot use it.

    Whatever mapping raises is the resource's fault (a 4xx, never a 500 or a 503 that the
    sender would retry forever); what is left after this can fail only on the receiver's side.
    """
    try:
        return _mapped(resource, kind, base, received)
    except FhirProblem:
        raise
    except Exception as exc:
        raise _unreadable(exc) from None


def _mapped(resource: Any, kind: str, base: str, received: ReceivedBytes) -> _Accepted:
    """Map one validated resource (see :func:`_accept`).

    Event ids derive from the resource's canonical JSON, so the same resource sent alone or
    in a Bundle, re-sent with other whitespace, gets the same ids.
    """
    basis = _canonical_sha256(resource)
    if kind == "DiagnosticReport":
        mapped = report_from_fhir(resource)
        mapped.text.encode("utf-8")  # JSON may escape unpaired surrogates; the bus takes UTF-8
        event_id = report_event_id(basis, REPORT_RECEIVED_V1.name, 0)
        return _Accepted(
            kind=kind,
            location=_location(base, kind, mapped.event.report_id),
            received=received,
            reports=((mapped.event, mapped.text, event_id),),
        )
    observations = observations_from_fhir(resource)
    return _Accepted(
        kind=kind,
        location=_location(base, kind, observations[0].observation_id),
        received=received,
        observations=tuple(
            (observation, report_event_id(basis, CLINICAL_OBSERVATION_V1.name, index))
            for index, observation in enumerate(observations)
        ),
    )


def _unreadable(exc: Exception) -> FhirProblem:
    """The 400 for a failure the mapping did not name itself; logs only the exception type."""
    log.warning(
        "FHIR resource could not be read",
        extra={"component": "fhir", "error_type": type(exc).__name__},
    )
    if isinstance(exc, UnicodeEncodeError):
        return FhirProblem(
            status=400,
            code="invalid",
            diagnostics="a string holds an unpaired surrogate escape (\\uD800-\\uDFFF), "
            "which is not text",
            reason="invalid_text",
        )
    return FhirProblem(
        status=400,
        code="processing",
        diagnostics="the resource cannot be read by this receiver; sending it again will not help",
        reason="unreadable_resource",
    )


def _location(base: str, kind: str, radstream_id: str) -> str:
    return f"{base}/fhir/{kind}/{logical_id(radstream_id)}/_history/1"


async def _commit(endpoints: FhirEndpoints, accepted: list[_Accepted], sender: Sender) -> None:
    """Publish every event, then audit every receipt; raise _Unavailable if either fails."""
    sink = endpoints.sink
    try:
        for item in accepted:
            for report, text, event_id in item.reports:
                await sink.publish_report(report, text, event_id=event_id)
            for observation, event_id in item.observations:
                await sink.publish_observation(observation, event_id=event_id)
    except Exception as exc:  # bus or blob store away: the sender sends again
        log.warning("FHIR resource not published", extra={"error_type": type(exc).__name__})
        for item in accepted:
            await _audit(endpoints, item.received, sender, "publish_failed", item.kind)
        raise _Unavailable from exc
    try:
        for item in accepted:
            await sink.audit(item.received, sender=sender, outcome="published", kind=item.kind)
    except Exception as exc:  # an unaudited receipt is not acknowledged
        log.warning("FHIR receipt not audited", extra={"error_type": type(exc).__name__})
        raise _Unavailable from exc


async def _process_bundle(
    endpoints: FhirEndpoints, bundle: Any, sender: Sender, base: str, received: ReceivedBytes
) -> Response:
    if bundle.type not in ("transaction", "batch"):
        raise FhirProblem(
            status=400,
            code="not-supported",
            diagnostics="only Bundles of type transaction or batch are accepted",
            expression=("Bundle.type",),
            reason="unsupported_bundle_type",
        )
    atomic = bundle.type == "transaction"
    responses: list[dict[str, Any]] = []
    accepted: list[_Accepted] = []
    for index, entry in enumerate(bundle.entry or []):
        try:
            item = _bundle_entry(entry, index, base, received)
        except FhirProblem as problem:
            if atomic:
                raise
            await _audit(endpoints, received, sender, problem.reason, "Bundle")
            responses.append(_entry_failure(problem))
            continue
        accepted.append(item)
        responses.append({"response": {"status": "201 Created", "location": item.location}})
    try:
        await _commit(endpoints, accepted, sender)
    except _Unavailable:
        return _unavailable()
    return _fhir_json(
        200,
        {
            "resourceType": "Bundle",
            "type": "transaction-response" if atomic else "batch-response",
            "entry": responses,
        },
    )


def _bundle_entry(entry: Any, index: int, base: str, received: ReceivedBytes) -> _Accepted:
    resource = entry.resource
    kind = resource.get_resource_type() if resource is not None else ""
    method = entry.request.method if entry.request is not None else "POST"
    if kind not in _SINGLE or method != "POST":
        raise FhirProblem(
            status=400,
            code="not-supported",
            diagnostics="Bundle entries must POST a DiagnosticReport or an Observation",
            expression=(f"Bundle.entry[{index}]",),
            reason="unsupported_bundle_entry",
        )
    return _accept(resource, kind, base, received)


def _canonical_sha256(resource: Any) -> str:
    canonical = json.dumps(
        resource.model_dump(mode="json", by_alias=True, exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return hashlib.sha256(canonical).hexdigest()


def _entry_failure(problem: FhirProblem) -> dict[str, Any]:
    outcome = operation_outcome(problem.code, problem.diagnostics, expression=problem.expression)
    return {"response": {"status": str(problem.status), "outcome": outcome}}


async def _audit(
    endpoints: FhirEndpoints, received: ReceivedBytes, sender: Sender, outcome: str, kind: str
) -> None:
    """Log and audit a refused (or unpublished) resource."""
    log.warning(
        "FHIR resource refused",
        extra={
            "component": "fhir",
            "error_type": outcome,
            "size": received.size,
            "sha256": received.sha256,
        },
    )
    try:
        await endpoints.sink.audit(received, sender=sender, outcome=outcome, kind=kind)
    except Exception as exc:  # the refusal stands either way
        log.warning("refused FHIR resource not audited", extra={"error_type": type(exc).__name__})


def _problem_response(problem: FhirProblem) -> Response:
    outcome = operation_outcome(problem.code, problem.diagnostics, expression=problem.expression)
    return _fhir_json(problem.status, outcome)


def _unavailable() -> Response:
    return _fhir_json(
        503,
        operation_outcome("transient", "the receiver cannot take resources now; send again"),
        headers={"Retry-After": "5"},
    )


def _fhir_json(
    status: int, content: dict[str, Any] | None, *, headers: dict[str, str] | None = None
) -> Response:
    if content is None:
        return Response(status_code=status, headers=headers)
    return JSONResponse(content, status_code=status, media_type=FHIR_JSON, headers=headers)
