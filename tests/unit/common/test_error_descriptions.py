"""What radstream says about an exception in a log line, a dead-letter header or ``/readyz``.

Its own errors (RadstreamError) keep their scrubbed message: radstream builds it from codes, field
names, tags and sizes. A library's exception may quote its input -- pydantic's ValidationError
prints the input value, python-hl7 the field it could not read -- so it is reduced to its type,
where it was raised and the conditions it names from a fixed vocabulary; never its text.

All names and numbers here are synthetic.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

import hl7
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from pydantic import BaseModel, ValidationError

from radstream.common.delivery import DeadLetter, RawRecord, error_text
from radstream.common.errors import PoisonEventError, TransientError
from radstream.common.health import HealthApp
from radstream.common.logs import JsonFormatter, PhiFilter, describe_error

# A name without '^' and identifiers with letters or few digits: what the old patterns missed.
NAME = "Zelda Quuxington"
MRN = "MRN A12345"
SHORT_ID = "ID 4711"
VALUES = ("Zelda", "Quuxington", "A12345", "4711")


def assert_no_value(text: str) -> None:
    leaked = [value for value in VALUES if value in text]
    assert not leaked, f"{leaked} in the output"


class Referral(BaseModel):
    age: int


def pydantic_error() -> ValidationError:
    try:
        Referral.model_validate({"age": f"{NAME} {MRN}"})
    except ValidationError as exc:
        return exc
    raise AssertionError("the model accepted a name as an age")


def hl7_error() -> Exception:
    try:
        hl7.parse_datetime(f"{NAME.upper()} {SHORT_ID}")
    except ValueError as exc:  # python-hl7 quotes the field it could not read
        return exc
    raise AssertionError("python-hl7 accepted a name as a date/time")


def fhir_error() -> ValidationError:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "CT"},
        "issued": f"{NAME} {SHORT_ID}",
    }
    try:
        DiagnosticReport.model_validate(resource)
    except ValidationError as exc:
        return exc
    raise AssertionError("fhir.resources accepted a name as a date")


FOREIGN = [
    pytest.param(pydantic_error, id="pydantic"),
    pytest.param(hl7_error, id="python-hl7"),
    pytest.param(fhir_error, id="fhir.resources"),
]


def test_the_libraries_really_quote_the_value() -> None:
    """The premise: what these libraries say would leak if it were passed on."""
    assert NAME in str(pydantic_error())
    assert NAME.upper() in str(hl7_error())
    assert NAME in str(fhir_error())


class TestDescribeError:
    def test_a_radstream_error_keeps_its_message(self) -> None:
        error = PoisonEventError("field report_id is empty")

        assert describe_error(error) == "field report_id is empty"

    def test_a_radstream_error_is_still_scrubbed(self) -> None:
        error = TransientError(f"store for {NAME} ({MRN}, {SHORT_ID}) away")

        described = describe_error(error)

        assert_no_value(described)
        assert described == "store for [name] (MRN [id], ID [id]) away"

    @pytest.mark.parametrize("make", FOREIGN)
    def test_a_foreign_error_is_its_type_and_where_it_was_raised(self, make: Any) -> None:
        error = make()

        described = describe_error(error)

        assert_no_value(described)
        assert described.startswith(f"{type(error).__name__} raised in ")
        assert " line " in described

    def test_a_foreign_error_names_known_conditions_in_its_own_words(self) -> None:
        try:
            raise ConnectionRefusedError(111, f"Connection refused by {NAME}'s laptop")
        except ConnectionRefusedError as exc:
            described = describe_error(exc)

        assert_no_value(described)
        assert described.endswith("(ECONNREFUSED, connection refused)")

    def test_a_foreign_error_never_raised_is_its_type(self) -> None:
        assert describe_error(ValueError(f"bad {NAME}")) == "ValueError"


class TestDeadLetterHeader:
    @pytest.mark.parametrize("make", FOREIGN)
    def test_a_library_exception_from_a_handler_leaves_no_value_in_the_header(
        self, make: Any
    ) -> None:
        letter = DeadLetter(
            record=RawRecord(
                topic="radstream.study.received.v1",
                partition=0,
                offset=7,
                key=b"k",
                value=b"v",
                headers=(),
            ),
            group="deid",
            error=make(),
            attempts=3,
        )

        headers = dict(letter.headers())

        message = headers["x-radstream-error-message"].decode()
        assert_no_value(message)
        assert type(letter.error).__name__ in message

    def test_the_header_keeps_a_radstream_error_message(self) -> None:
        assert error_text(PoisonEventError("ce_type header missing")) == "ce_type header missing"


class TestReadiness:
    async def test_a_failing_check_quoting_a_name_and_id_leaves_neither_in_readyz(self) -> None:
        async def library_check() -> None:
            raise ValueError(f"no study for {NAME}, {SHORT_ID}")

        async def own_check() -> None:
            raise TransientError(f"blob store for {NAME} {MRN} is away")

        app = HealthApp({"library": library_check, "own": own_check})

        ready, checks = await app.readiness()

        assert not ready
        assert_no_value(json.dumps(checks))
        assert checks["library"] == {
            "error_type": "ValueError",
            "message": checks["library"]["message"],  # type: ignore[index]
        }
        assert checks["library"]["message"].startswith("ValueError raised in ")  # type: ignore[index]
        assert checks["own"]["message"] == "blob store for [name] MRN [id] is away"  # type: ignore[index]


class TestLogLines:
    @pytest.fixture
    def log(self) -> tuple[logging.Logger, io.StringIO]:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(PhiFilter())
        handler.setFormatter(JsonFormatter("ingest"))
        logger = logging.getLogger(f"test.errors.{uuid.uuid4().hex}")
        logger.handlers = [handler]
        logger.propagate = False
        return logger, stream

    @pytest.mark.parametrize("make", FOREIGN)
    def test_a_foreign_exception_logged_with_its_traceback_leaves_no_value(
        self, log: tuple[logging.Logger, io.StringIO], make: Any
    ) -> None:
        logger, stream = log
        error = make()

        logger.error("parse failed", exc_info=error)

        line = json.loads(stream.getvalue())
        assert_no_value(stream.getvalue())
        assert line["exc_type"].endswith(type(error).__name__)
        assert "Traceback (most recent call last)" in line["traceback"]
        assert "[message withheld]" in line["traceback"]

    def test_the_causes_of_an_exception_are_withheld_too(
        self, log: tuple[logging.Logger, io.StringIO]
    ) -> None:
        logger, stream = log
        try:
            try:
                hl7.parse_datetime(NAME)
            except ValueError as exc:
                raise PoisonEventError("OBR-7 is not a date/time") from exc
        except PoisonEventError:
            logger.exception("report refused")

        traceback_text = json.loads(stream.getvalue())["traceback"]
        assert_no_value(traceback_text)
        assert "direct cause" in traceback_text
        assert "PoisonEventError: OBR-7 is not a date/time" in traceback_text

    def test_an_exception_passed_as_an_argument_is_described(
        self, log: tuple[logging.Logger, io.StringIO]
    ) -> None:
        logger, stream = log

        logger.warning("FHIR resource refused: %s", fhir_error())

        line = json.loads(stream.getvalue())
        assert_no_value(stream.getvalue())
        assert line["msg"].startswith("FHIR resource refused: ValidationError raised in ")
