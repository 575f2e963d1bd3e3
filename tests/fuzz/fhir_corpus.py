"""FHIR R4 resources with fake PHI, and mutations of them, for the FHIR fuzz target.

Seeds are the resources EHRs and reporting systems post: a DiagnosticReport with its text as an
attachment and as a conclusion, Observations (a quantity, a string, a coded value, blood
pressure as components), and Bundles of type transaction and batch. PHI is planted in the
subject reference, identifiers, text, conclusion and free-text values.

A case is a seed, then JSON-level mutations (a node replaced by hostile JSON, a key deleted or
added, deep nesting), then an encoding and Content-Type, then, sometimes, byte mutations.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import strategies as st

from tests.fuzz import phi
from tests.fuzz.mutations import mutated_bytes, sometimes

_REPORT: Final[dict[str, Any]] = {
    "resourceType": "DiagnosticReport",
    "id": "rpt-7731",
    "identifier": [
        {"system": "urn:synthetic:ris", "value": "RPT-7731"},
        {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
                ]
            },
            "system": "urn:synthetic:acsn",
            "value": phi.ACCESSION,
        },
    ],
    "basedOn": [{"identifier": {"system": "urn:synthetic:order", "value": phi.ACCESSION}}],
    "status": "final",
    "category": [
        {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]}
    ],
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "18748-4"}],
        "text": phi.FREE_TEXT[:40],
    },
    "subject": {"reference": f"Patient/{phi.PATIENT_ID}", "display": phi.PATIENT_NAME_PLAIN},
    "issued": "2024-01-05T11:30:00+01:00",
    "effectiveDateTime": "2024-01-05T10:15:00Z",
    "conclusion": phi.FREE_TEXT,
    "presentedForm": [
        {
            "contentType": "text/plain; charset=utf-8",
            "data": base64.b64encode(phi.FREE_TEXT.encode()).decode(),
            "title": phi.PATIENT_NAME_PLAIN,
        }
    ],
}
_WEIGHT: Final[dict[str, Any]] = {
    "resourceType": "Observation",
    "id": "wt-7731",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
    "subject": {"reference": f"Patient/{phi.PATIENT_ID}"},
    "effectiveDateTime": "2024-01-02T08:00:00Z",
    "valueQuantity": {"value": 61.5, "unit": "kg", "code": "kg"},
    "note": [{"text": phi.FREE_TEXT}],
}
_NOTE: Final[dict[str, Any]] = {
    "resourceType": "Observation",
    "identifier": [{"system": "urn:synthetic:obs", "value": f"OBS-{phi.PATIENT_ID}"}],
    "status": "preliminary",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8251-1"}]},
    "subject": {"reference": f"Patient/{phi.PATIENT_ID}"},
    "valueString": phi.FREE_TEXT,
}
_SMOKER: Final[dict[str, Any]] = {
    "resourceType": "Observation",
    "id": "smk-1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
    "subject": {"reference": f"Patient/{phi.PATIENT_ID}"},
    "valueCodeableConcept": {
        "coding": [{"system": "http://snomed.info/sct", "code": "8517006"}],
        "text": phi.PATIENT_NAME_PLAIN,
    },
}
_PRESSURE: Final[dict[str, Any]] = {
    "resourceType": "Observation",
    "id": "bp-1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": f"Patient/{phi.PATIENT_ID}"},
    "effectivePeriod": {"start": "2024-01-02T08:00:00Z"},
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueInteger": 80,
        },
    ],
}


def _bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
            for resource in resources
        ],
    }


# (path, resource)
SEEDS: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("/fhir/DiagnosticReport", _REPORT),
    ("/fhir/Observation", _WEIGHT),
    ("/fhir/Observation", _NOTE),
    ("/fhir/Observation", _SMOKER),
    ("/fhir/Observation", _PRESSURE),
    ("/fhir", _bundle("transaction", _REPORT, _WEIGHT)),
    ("/fhir", _bundle("batch", _NOTE, _PRESSURE, _REPORT)),
)
PATHS: Final = ("/fhir/DiagnosticReport", "/fhir/Observation", "/fhir")

_HOSTILE_JSON: Final = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(
            [
                phi.PATIENT_NAME,
                phi.FREE_TEXT,
                f"Patient/{phi.PATIENT_ID}",
                "Patient/",
                "urn:uuid:" + phi.PATIENT_ID,
                "",
                "final",
                "entered-in-error",
                "2024-13-45T99:99:99Z",
                "2024-01-05T11:30:00+25:00",
                "0000-01-01",
                "text/plain",
                "text/plain; charset=bogus-" + phi.PATIENT_NAME_PLAIN,
                base64.b64encode(b"\xff\xfe" + phi.FREE_TEXT.encode("utf-16-le")).decode(),
                "!!!not base64!!!",
                "DiagnosticReport",
                "Observation",
                "Bundle",
                "transaction",
                "batch",
                "X" * 3000,
            ]
        ),
        st.text(max_size=30),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_CONTENT_TYPES: Final = (
    "application/fhir+json",
    "application/fhir+json; charset=utf-8",
    "application/json",
    "application/json; charset=latin-1",
    "application/fhir+json; charset=utf-16",
    "application/fhir+json; charset=bogus",
    f"application/fhir+json; charset={phi.PATIENT_NAME_PLAIN.replace(' ', '')}",
    "application/fhir+json; charset=",
    'application/fhir+json; charset="utf-8"; fhirVersion=4.0',
    "text/plain",
    "application/xml",
    "",
)


@dataclass(frozen=True)
class FhirCase:
    """A request to the FHIR endpoint: path, headers and body, and what made it."""

    path: str
    content_type: str
    prefer_minimal: bool
    body: bytes
    operations: tuple[str, ...]

    def __repr__(self) -> str:
        return (
            f"FhirCase({self.path}, {self.content_type!r}, operations={self.operations}, "
            f"body={self.body[:160]!r})"
        )


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node of ``node`` (dict keys and list indexes)."""
    found = [prefix]
    if len(prefix) > 40:  # a nested mutation's depths are not worth walking (or recursing)
        return found
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _at(root: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        root = root[step]
    return root


def _mutate_json(draw: st.DrawFn, resource: dict[str, Any]) -> tuple[Any, str]:
    """One JSON-level mutation; returns the (possibly new) root and what was done."""
    kind = draw(st.sampled_from(["replace", "replace", "delete", "add", "nest", "type", "repeat"]))
    paths = _paths(resource)
    path = draw(st.sampled_from(paths[1:] or paths))
    if kind == "nest":
        depth = draw(st.sampled_from([10, 100, 900, 1100, 5000]) | st.integers(1, 3000))
        value: Any = phi.PATIENT_NAME
        for _ in range(depth):
            value = [value] if draw(st.booleans()) else {"a": value}
        kind = f"nest {depth}"
    elif kind == "type":
        resource["resourceType"] = draw(
            st.sampled_from(
                ["Observation", "DiagnosticReport", "Bundle", "Patient", "", phi.PATIENT_NAME_PLAIN]
            )
        )
        return resource, "resourceType"
    elif kind == "repeat":
        value = copy.deepcopy(_at(resource, path))
        value = [value] * draw(st.integers(2, 50))
    else:
        value = draw(_HOSTILE_JSON)
    if not path:
        return value, kind
    parent = _at(resource, path[:-1])
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=12)) or "extra"] = value
    else:
        parent[path[-1]] = value
    return resource, f"{kind} {'.'.join(map(str, path))[:60]}"


@st.composite
def fhir_cases(draw: st.DrawFn) -> FhirCase:
    """A mutated FHIR request (see the module doc)."""
    path, seed = draw(st.sampled_from(SEEDS))
    operations: list[str] = []
    resource: Any = copy.deepcopy(seed)
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            if not isinstance(resource, dict):
                break
            try:
                resource, done = _mutate_json(draw, resource)
            except RecursionError:  # copying a deeply nested mutation: keep what there is
                done = "too deep to mutate again"
            operations.append(done)
    if draw(st.integers(0, 9)) == 0:
        path = draw(st.sampled_from(PATHS))
        operations.append("other path")
    try:
        text = json.dumps(resource)
    except (RecursionError, ValueError):
        text = "[" * 5000 + "]" * 5000
        operations.append("unserializable: deep brackets")
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1", "utf-8-sig"]))
    body = text.encode(encoding, "replace")
    content_type = (
        _CONTENT_TYPES[0] if sometimes(draw, 0.5) else draw(st.sampled_from(_CONTENT_TYPES))
    )
    if draw(st.integers(0, 3)) == 0:
        body = draw(
            mutated_bytes(body, anchors=[i for i, b in enumerate(body) if b in b'{}[]":,'][:512])
        )
        operations.append("bytes")
    return FhirCase(path, content_type, draw(st.booleans()), body, tuple(operations))
