"""FHIR R4 DiagnosticReport and Observation resources mapped to radstream events."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from radstream.contracts.v1 import clinical_pb2, reports_pb2
from radstream.ingest.fhir_mapping import (
    FhirProblem,
    logical_id,
    observations_from_fhir,
    parse_json,
    report_from_fhir,
    validate_resource,
)

PATIENT_ID = "SYNTH-MRN-70311"
REPORT_TEXT = "Hypodense lesion in the pancreatic head. Größe 2 cm."
ACSN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}


def diagnostic_report(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": "dr-1",
        "identifier": [
            {"system": "urn:oid:1.2.3.4.5", "value": "RPT-0042"},
            {"type": ACSN, "value": "SYNTH-ACC-55120"},
        ],
        "status": "final",
        "category": [
            {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "issued": "2024-01-05T11:30:00+01:00",
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "data": base64.b64encode(REPORT_TEXT.encode()).decode(),
            }
        ],
    }
    resource.update(changes)
    return {key: value for key, value in resource.items() if value is not None}


def observation(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {
            "coding": [
                {"system": "urn:local", "code": "WT"},
                {"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"},
            ]
        },
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": "2024-01-02T08:00:00Z",
        "valueQuantity": {
            "value": 61.5,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }
    resource.update(changes)
    return {key: value for key, value in resource.items() if value is not None}


def report_of(resource: dict[str, Any]):
    return report_from_fhir(validate_resource(resource, allowed=frozenset({"DiagnosticReport"})))


def observations_of(resource: dict[str, Any]) -> list[clinical_pb2.ClinicalObservation]:
    return observations_from_fhir(validate_resource(resource, allowed=frozenset({"Observation"})))


def problem_of(call, *args: Any, **kwargs: Any) -> FhirProblem:
    with pytest.raises(FhirProblem) as caught:
        call(*args, **kwargs)
    return caught.value


class TestDiagnosticReport:
    def test_report_maps_identifiers_text_modality_and_time(self) -> None:
        mapped = report_of(diagnostic_report())
        event = mapped.event
        assert event.report_id == "fhir/urn:oid:1.2.3.4.5|RPT-0042"
        assert event.accession_number == "SYNTH-ACC-55120"
        assert event.patient_id == PATIENT_ID
        assert event.modality == "CT"
        assert event.source == reports_pb2.ReportReceived.SOURCE_FHIR
        assert event.observed_at.ToDatetime(tzinfo=UTC) == datetime(2024, 1, 5, 10, 30, tzinfo=UTC)
        assert mapped.text == REPORT_TEXT

    def test_without_presented_form_the_conclusion_is_the_text(self) -> None:
        mapped = report_of(diagnostic_report(presentedForm=None, conclusion="No lesion."))
        assert mapped.text == "No lesion."

    def test_non_text_attachments_are_not_report_text(self) -> None:
        pdf = {"contentType": "application/pdf", "data": base64.b64encode(b"%PDF").decode()}
        mapped = report_of(diagnostic_report(presentedForm=[pdf], conclusion="Short."))
        assert mapped.text == "Short."

    def test_attachment_charset_is_honoured(self) -> None:
        form = {
            "contentType": "text/plain; charset=iso-8859-1",
            "data": base64.b64encode("Läsion".encode("latin-1")).decode(),
        }
        assert report_of(diagnostic_report(presentedForm=[form])).text == "Läsion"

    def test_accession_from_based_on_when_not_an_identifier(self) -> None:
        resource = diagnostic_report(
            identifier=[{"system": "urn:ris", "value": "R-9"}],
            basedOn=[{"reference": "ServiceRequest/sr", "identifier": {"value": "ACC-77"}}],
        )
        assert report_of(resource).event.accession_number == "ACC-77"

    def test_without_business_identifier_the_logical_id_names_the_report(self) -> None:
        resource = diagnostic_report(identifier=None)
        assert report_of(resource).event.report_id == "fhir/DiagnosticReport/dr-1"

    def test_v2_0074_sections_name_modalities(self) -> None:
        category = [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "NMR"}]}
        ]
        assert report_of(diagnostic_report(category=category)).event.modality == "MR"

    def test_a_report_without_text_is_unprocessable(self) -> None:
        problem = problem_of(report_of, diagnostic_report(presentedForm=None))
        assert (problem.status, problem.code, problem.reason) == (422, "required", "missing_text")

    def test_entered_in_error_reports_are_not_published(self) -> None:
        problem = problem_of(report_of, diagnostic_report(status="entered-in-error"))
        assert (problem.status, problem.code) == (422, "business-rule")

    def test_an_unknown_status_code_is_invalid(self) -> None:
        assert problem_of(report_of, diagnostic_report(status="bogus")).status == 400

    def test_a_report_without_any_id_is_unprocessable(self) -> None:
        problem = problem_of(report_of, diagnostic_report(identifier=None, id=None))
        assert (problem.status, problem.reason) == (422, "missing_identifier")


class TestObservation:
    def test_a_weight_maps_to_a_loinc_quantity(self) -> None:
        (event,) = observations_of(observation())
        assert event.patient_id == PATIENT_ID
        assert event.observation_id == "fhir/Observation/obs-1"
        assert (event.code.system, event.code.code, event.code.display) == (
            "http://loinc.org",
            "29463-7",
            "Body weight",
        )
        assert (event.quantity.value, event.quantity.unit) == (61.5, "kg")
        assert event.effective_time.ToDatetime(tzinfo=UTC) == datetime(2024, 1, 2, 8, tzinfo=UTC)
        assert event.source == clinical_pb2.ClinicalObservation.SOURCE_FHIR

    def test_strings_and_coded_values_are_kept(self) -> None:
        (text,) = observations_of(observation(valueQuantity=None, valueString="smoker"))
        assert text.text == "smoker"
        coded = {"coding": [{"system": "http://snomed.info/sct", "code": "77176002"}]}
        (concept,) = observations_of(observation(valueQuantity=None, valueCodeableConcept=coded))
        assert (concept.coded.system, concept.coded.code) == ("http://snomed.info/sct", "77176002")

    def test_components_become_observations_of_their_own(self) -> None:
        def component(code: str, value: float) -> dict[str, Any]:
            return {
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "valueQuantity": {"value": value, "code": "mm[Hg]"},
            }

        events = observations_of(
            observation(
                valueQuantity=None,
                code={"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                component=[component("8480-6", 120), component("8462-4", 80)],
            )
        )
        assert [(e.observation_id, e.code.code, e.quantity.value) for e in events] == [
            ("fhir/Observation/obs-1#component0", "8480-6", 120.0),
            ("fhir/Observation/obs-1#component1", "8462-4", 80.0),
        ]

    def test_a_date_only_effective_time_is_midnight_utc(self) -> None:
        (event,) = observations_of(observation(effectiveDateTime="2024-01-02"))
        assert event.effective_time.ToDatetime(tzinfo=UTC) == datetime(2024, 1, 2, tzinfo=UTC)

    def test_an_observation_without_patient_is_unprocessable(self) -> None:
        problem = problem_of(observations_of, observation(subject=None))
        assert (problem.status, problem.reason) == (422, "missing_subject")

    def test_an_unsupported_value_type_is_unprocessable(self) -> None:
        resource = observation(valueQuantity=None, valueBoolean=True)
        assert problem_of(observations_of, resource).reason == "unsupported_value"


class TestInvalidInput:
    def test_invalid_json_is_a_400_structure_problem(self) -> None:
        problem = problem_of(parse_json, b'{"resourceType": "Observation",')
        assert (problem.status, problem.code, problem.reason) == (400, "structure", "invalid_json")

    def test_a_json_array_is_not_a_resource(self) -> None:
        assert problem_of(parse_json, b"[]").status == 400

    def test_the_wrong_resource_type_is_refused(self) -> None:
        problem = problem_of(
            validate_resource, observation(), allowed=frozenset({"DiagnosticReport"})
        )
        assert (problem.status, problem.expression) == (400, ("resourceType",))

    def test_validation_problems_name_paths_but_never_values(self) -> None:
        resource = diagnostic_report(
            subject={"reference": 12345},
            issued="not a time " + PATIENT_ID,
            **{"patientName": "DOE^JANE"},
        )
        problem = problem_of(validate_resource, resource, allowed=frozenset({"DiagnosticReport"}))
        assert problem.status == 400
        assert "DiagnosticReport.subject.reference" in problem.expression
        assert "DiagnosticReport.issued" in problem.expression
        rendered = json.dumps([problem.diagnostics, *problem.expression])
        for value in (PATIENT_ID, "12345", "DOE^JANE", "patientName"):
            assert value not in rendered


def test_logical_ids_are_stable_and_free_of_the_business_identifier() -> None:
    first = logical_id("fhir/urn:ris|SYNTH-ACC-55120")
    assert first == logical_id("fhir/urn:ris|SYNTH-ACC-55120")
    assert "SYNTH" not in first
