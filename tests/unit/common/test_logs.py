"""Structured logs that never carry PHI.

All names, numbers and addresses here are synthetic.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from radstream.common.errors import MisconfiguredError, PoisonEventError
from radstream.common.logs import (
    REDACTED,
    SAFE_EXTRA_KEYS,
    JsonFormatter,
    PhiFilter,
    configure_logging,
    scrub_phi,
)
from radstream.common.settings import ObservabilitySettings

# Values kept out of the lines that raise them, so that a traceback's source line cannot hold them.
DICOM_NAME = "DOE^JOHN"
DIGIT_MRN = "12345678"
PLAIN_NAME = "Smith, John"
SHORT_ID = "4711"


@dataclass
class Captured:
    logger: logging.Logger
    stream: io.StringIO

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]

    def last(self) -> dict[str, Any]:
        return self.lines()[-1]


def capture(service: str = "deid") -> Captured:
    """A real logger writing JSON through the PHI filter into a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PhiFilter())
    handler.setFormatter(JsonFormatter(service))
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return Captured(logger, stream)


@pytest.fixture
def log() -> Captured:
    return capture()


@pytest.fixture
def restore_root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers = handlers
    root.setLevel(level)


class TestJsonLines:
    def test_a_line_carries_timestamp_level_logger_message_and_service(self, log: Captured) -> None:
        log.logger.warning("consumer lagging")

        line = log.last()
        assert line["level"] == "WARNING"
        assert line["logger"] == log.logger.name
        assert line["msg"] == "consumer lagging"
        assert line["service"] == "deid"
        assert set(line) >= {"ts", "level", "logger", "msg", "service"}

    def test_the_timestamp_is_iso_8601_utc(self, log: Captured) -> None:
        log.logger.info("tick")

        stamp = log.last()["ts"]
        assert stamp.endswith("Z")
        assert datetime.fromisoformat(stamp).utcoffset().total_seconds() == 0  # type: ignore[union-attr]

    def test_each_record_is_one_line(self, log: Captured) -> None:
        log.logger.info("first\nsecond")
        log.logger.info("third")

        assert [line["msg"] for line in log.lines()] == ["first\nsecond", "third"]

    def test_no_trace_ids_outside_a_span(self, log: Captured) -> None:
        log.logger.info("no span")

        assert "trace_id" not in log.last()
        assert "span_id" not in log.last()

    def test_trace_and_span_ids_come_from_the_recording_span(self, log: Captured) -> None:
        tracer = TracerProvider().get_tracer("test")

        with tracer.start_as_current_span("handle") as span:
            log.logger.info("inside a span")
            context = span.get_span_context()

        line = log.last()
        assert line["trace_id"] == f"{context.trace_id:032x}"
        assert line["span_id"] == f"{context.span_id:016x}"


class TestExtraFields:
    def test_allowlisted_operational_fields_are_kept(self, log: Captured) -> None:
        fields = {
            "event_id": "3f0c1b9e-5d1f-4a8e-9c55-8a2b6f1e4d21",
            "topic": "radstream.study.received.v1",
            "partition": 2,
            "offset": 1234567,
            "attempt": 2,
            "max_attempts": 3,
            "duration_ms": 12.5,
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        }

        log.logger.info("handled", extra=fields)

        line = log.last()
        assert {key: line[key] for key in fields} == fields

    def test_a_review_decisions_label_and_result_are_kept(self, log: Captured) -> None:
        fields = {"decision": "approve", "result": "held_again"}  # deid's enum values

        log.logger.info("review decision acted on", extra=fields)

        line = log.last()
        assert {key: line[key] for key in fields} == fields

    def test_other_fields_are_redacted(self, log: Captured) -> None:
        log.logger.info("handled", extra={"patient_name": "DOE^JOHN", "mrn": "MRN12345678"})

        line = log.last()
        assert line["patient_name"] == REDACTED
        assert line["mrn"] == REDACTED
        assert "DOE" not in log.text()
        assert "12345678" not in log.text()

    def test_a_custom_allowlist_replaces_the_default(self) -> None:
        record = logging.makeLogRecord({"msg": "x", "study_count": 3, "topic": "t"})

        PhiFilter(allowed_keys={"study_count"}).filter(record)

        assert record.__dict__["study_count"] == 3
        assert record.__dict__["topic"] == REDACTED

    def test_the_allowlist_holds_only_operational_keys(self) -> None:
        assert {
            "event_id",
            "topic",
            "partition",
            "offset",
            "error_type",
            "sha256",
        } <= SAFE_EXTRA_KEYS
        assert (
            not {"patient_name", "patient_id", "mrn", "accession", "key", "uri"} & SAFE_EXTRA_KEYS
        )


class TestMessageScrubbing:
    @pytest.mark.parametrize(
        ("phi", "placeholder"),
        [
            ("DOE^JOHN", "[name]"),
            ("Doe^John^^Dr", "[name]"),
            ("VAN DER BERG^ANNA", "[name]"),
            ("SMITH^MARY ANN^Q^MRS", "[name]"),
            ("MÜLLER^JÖRG", "[name]"),
            ("O'NEIL^SEAN", "[name]"),
            ("19850312", "[date]"),
            ("1985-03-12", "[date]"),
            ("1985-03-12T09:30:00Z", "[date]"),
            ("1985-03-12 09:30:00.123+01:00", "[date]"),
            ("12/03/1985", "[date]"),
            ("12.03.1985", "[date]"),
            ("20240131093015.123456", "[date]"),
            ("12345678", "[id]"),
            ("MRN00482913", "MRN[id]"),
            ("ACC2024000123", "ACC[id]"),
            ("john.doe1985@example.org", "[email]"),
            ("+41 44 123 45 67", "[phone]"),
            ("(555) 010-4477", "[phone]"),
            ("555-010-4477", "[phone]"),
            ("555.010.4477", "[phone]"),
            ("1.2.840.113619.2.55.3.604688119.969.1268071029.320", "[uid]"),
            ("2.25.329800735698586629295641978511506172918", "[uid]"),
            ("John Smith", "[name]"),
            ("SMITH JOHN", "[name]"),
            ("Smith, John", "[name]"),
            ("John Q. Smith", "[name]"),
            ("Jörg Müller-Lüdenscheidt", "[name]"),
            ("O'Neil Sean", "[name]"),
            ("MRN A12345", "MRN [id]"),
            ("ID 4711", "ID [id]"),
            ("patient id: 4711-B", "patient id: [id]"),
            ("A12345", "[id]"),
        ],
    )
    def test_phi_in_the_message_is_replaced_by_a_typed_placeholder(
        self, log: Captured, phi: str, placeholder: str
    ) -> None:
        log.logger.info(f"study for ({phi}) received")

        assert log.last()["msg"] == f"study for ({placeholder}) received"

    def test_formatting_arguments_are_scrubbed_too(self, log: Captured) -> None:
        log.logger.info("patient %s born %s", "DOE^JOHN", "19850312")

        assert log.last()["msg"] == "patient [name] born [date]"

    def test_a_realistic_line_keeps_its_operational_words(self, log: Captured) -> None:
        log.logger.warning(
            "Received study 1.2.840.113619.2.55.3.604688119.969 for DOE^JANE "
            "(MRN 00482913, DOB 1971-07-04, tel 555-010-4477) from 10.0.0.12:104"
        )

        assert log.last()["msg"] == (
            "Received study [uid] for [name] (MRN [id], DOB [date], tel [phone]) from 10.0.0.12:104"
        )

    @pytest.mark.parametrize(
        "operational",
        [
            "retrying attempt 2 of 3 in 150 ms",
            "listening on 127.0.0.1:8081",
            "partition 2 offset 4711 lag 12",
            "uvicorn 0.30.1 ready",
            "consumer group deid joined",
            "dead-lettered to radstream.study.received.v1.dlq",
            "TimeoutError: no answer within 2.0 s",
            "tag (0010,0010) removed; (0020,000D) replaced",
            "rejected: not_dicom",
            "only ORU^R01 is accepted",
            "HL7 message refused",
            "pydicom rejects the File Meta Information (InvalidDicomError)",
            "Pixel Data holds 12 bytes but Rows, Columns, Bits Allocated, Samples per Pixel "
            "and Number of Frames need 24",
            "the data set has no SOPClassUID or SOPInstanceUID",
            "Called AE Title Not Recognized",
            "use DEBUG, INFO, WARNING, ERROR or CRITICAL",
            "Explicit VR Little Endian, SOP Instance UID",
            "ValidationError raised in pydantic.main:model_validate line 596",
        ],
    )
    def test_operational_text_survives(self, log: Captured, operational: str) -> None:
        log.logger.info(operational)

        assert log.last()["msg"] == operational

    def test_scrubbing_twice_changes_nothing_more(self) -> None:
        once = scrub_phi("DOE^JOHN 19850312 MRN 12345678 j.doe@example.org John Smith ID 4711")

        assert scrub_phi(once) == once == "[name] [date] MRN [id] [email] [name] ID [id]"

    def test_vocabulary_words_end_a_name_but_do_not_hide_it(self) -> None:
        assert scrub_phi("Patient John Smith seen at St Mary hospital") == (
            "Patient [name] seen at [name] hospital"
        )


class TestExceptions:
    def test_a_foreign_exception_keeps_its_type_and_frames_but_not_its_message(
        self, log: Captured
    ) -> None:
        try:
            raise ValueError(f"cannot parse patient name {DICOM_NAME} for MRN {DIGIT_MRN}")
        except ValueError:
            log.logger.exception("decoding failed", extra={"event_id": "e-1"})

        line = log.last()
        assert line["exc_type"] == "ValueError"
        assert "Traceback (most recent call last)" in line["traceback"]
        assert "in test_a_foreign_exception_keeps_its_type_and_frames" in line["traceback"]
        assert line["traceback"].endswith("ValueError: [message withheld]\n")
        assert "DOE^JOHN" not in log.text()
        assert "12345678" not in log.text()

    def test_a_radstream_error_keeps_its_message_scrubbed(self, log: Captured) -> None:
        try:
            raise PoisonEventError(f"report of {PLAIN_NAME} (ID {SHORT_ID}) has no OBR")
        except PoisonEventError:
            log.logger.exception("refused")

        traceback_text = log.last()["traceback"]
        assert traceback_text.endswith(
            "radstream.common.errors.PoisonEventError: report of [name] (ID [id]) has no OBR\n"
        )
        assert PLAIN_NAME not in log.text()
        assert SHORT_ID not in log.text()

    def test_the_exception_type_is_qualified_by_its_module(self, log: Captured) -> None:
        try:
            raise MisconfiguredError("bad setting")
        except MisconfiguredError:
            log.logger.exception("startup failed")

        assert log.last()["exc_type"] == "radstream.common.errors.MisconfiguredError"

    def test_no_formatter_can_re_render_the_raw_exception(self) -> None:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
        try:
            raise KeyError("DOE^JOHN")
        except KeyError:
            record.exc_info = __import__("sys").exc_info()

        PhiFilter().filter(record)

        assert record.exc_info is None
        assert "DOE^JOHN" not in logging.Formatter().format(record)


class TestFilterRobustness:
    def test_a_message_that_cannot_be_rendered_still_yields_a_line(self, log: Captured) -> None:
        log.logger.info("count %d", "not a number")

        assert "withheld" in log.last()["msg"]

    def test_an_extra_value_with_a_broken_str_still_yields_a_line(self, log: Captured) -> None:
        class Unprintable:
            def __str__(self) -> str:
                raise RuntimeError("no")

        log.logger.info("handled", extra={"status": Unprintable()})

        assert log.last()["status"] == "<unprintable Unprintable>"

    def test_the_filter_runs_once_per_record_across_handlers(self, log: Captured) -> None:
        second = io.StringIO()
        handler = logging.StreamHandler(second)
        handler.addFilter(PhiFilter())
        handler.setFormatter(JsonFormatter("deid"))
        log.logger.addHandler(handler)

        try:
            raise RuntimeError("DOE^JOHN")
        except RuntimeError:
            log.logger.exception("boom")

        assert json.loads(second.getvalue())["exc_type"] == "RuntimeError"
        assert log.last()["exc_type"] == "RuntimeError"

    def test_the_filter_always_keeps_the_record(self) -> None:
        record = logging.makeLogRecord({"msg": "DOE^JOHN"})

        assert PhiFilter().filter(record) is True
        assert record.getMessage() == "[name]"


class TestConfigureLogging:
    def test_records_from_any_logger_reach_the_root_handler_scrubbed(
        self, restore_root_logger: logging.Logger
    ) -> None:
        stream = io.StringIO()
        configure_logging(ObservabilitySettings(service_name="ingest"), stream=stream)

        logging.getLogger("radstream.ingest.scp").info(
            "stored instance for DOE^JOHN", extra={"count": 1, "patient": "DOE^JOHN"}
        )

        line = json.loads(stream.getvalue())
        assert line["service"] == "ingest"
        assert line["msg"] == "stored instance for [name]"
        assert (line["count"], line["patient"]) == (1, REDACTED)

    def test_existing_root_handlers_are_replaced(self, restore_root_logger: logging.Logger) -> None:
        leaky = io.StringIO()
        restore_root_logger.addHandler(logging.StreamHandler(leaky))

        configure_logging(ObservabilitySettings(), stream=io.StringIO())
        logging.getLogger("radstream").warning("DOE^JOHN")

        assert leaky.getvalue() == ""
        assert len(restore_root_logger.handlers) == 1

    def test_the_level_comes_from_settings(self, restore_root_logger: logging.Logger) -> None:
        configure_logging(ObservabilitySettings(log_level="warning"), stream=io.StringIO())

        assert restore_root_logger.level == logging.WARNING

    def test_an_unknown_level_names_the_setting(self, restore_root_logger: logging.Logger) -> None:
        with pytest.raises(MisconfiguredError, match="RADSTREAM_OBS_LOG_LEVEL"):
            configure_logging(ObservabilitySettings(log_level="LOUD"), stream=io.StringIO())

    def test_human_format_is_one_readable_line_with_fields(
        self, restore_root_logger: logging.Logger
    ) -> None:
        stream = io.StringIO()
        configure_logging(ObservabilitySettings(log_json=False), stream=stream)

        logging.getLogger("radstream.deid").info(
            "released study of DOE^JOHN", extra={"topic": "radstream.deid.released.v1"}
        )

        text = stream.getvalue()
        assert "INFO    radstream.deid: released study of [name] " in text
        assert text.rstrip().endswith("topic=radstream.deid.released.v1")
        assert "DOE" not in text


# --- properties --------------------------------------------------------------------------------

name_parts = st.text(alphabet=st.characters(categories=["Lu", "Ll"]), min_size=1, max_size=20)
birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))


@settings(max_examples=300, deadline=None)
@given(last=name_parts, first=name_parts)
def test_no_dicom_person_name_survives(last: str, first: str) -> None:
    log = capture()
    name = f"{last}^{first}"

    log.logger.info("study for %s received", name)
    log.logger.info(f"patient {name}, referred")
    try:
        raise ValueError(f"bad PatientName {name}")
    except ValueError:
        log.logger.exception("decode failed")

    assert name not in log.text()
    assert all("[name]" in line["msg"] for line in log.lines()[:2])


@settings(max_examples=300, deadline=None)
@given(born=birth_dates)
def test_no_eight_digit_date_survives(born: date) -> None:
    log = capture()
    compact = born.strftime("%Y%m%d")

    log.logger.info("PatientBirthDate=%s;", compact)
    log.logger.info(f"born {compact}.")

    assert compact not in log.text()
    assert all("[date]" in line["msg"] for line in log.lines())


def test_uncaught_exception_is_logged_through_the_phi_filter() -> None:
    import sys
    import threading

    stream = io.StringIO()
    saved, saved_thread_hook = sys.excepthook, threading.excepthook
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging(ObservabilitySettings(log_json=True), stream=stream)
        try:
            raise ValueError("patient DOE^JANE MRN 12345678 not found")
        except ValueError:
            sys.excepthook(*sys.exc_info())
    finally:
        sys.excepthook, threading.excepthook = saved, saved_thread_hook
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
    output = stream.getvalue()
    assert "uncaught exception" in output
    assert "ValueError" in output
    assert "DOE^JANE" not in output
    assert "12345678" not in output


class RadstreamTestWarning(UserWarning):
    """Stands for a warning radstream raises itself (its category lives in a radstream module)."""


RadstreamTestWarning.__module__ = "radstream.tests"


class TestWarnings:
    @pytest.fixture
    def stream(self, restore_root_logger: logging.Logger) -> Iterator[io.StringIO]:
        import sys
        import threading
        import warnings

        saved = warnings.showwarning, sys.excepthook, threading.excepthook
        stream = io.StringIO()
        configure_logging(ObservabilitySettings(), stream=stream)
        yield stream
        warnings.showwarning, sys.excepthook, threading.excepthook = saved

    @pytest.mark.filterwarnings("always")
    def test_a_library_warning_is_logged_as_its_category_and_place_only(
        self, stream: io.StringIO
    ) -> None:
        import warnings

        warnings.warn(f"Invalid value for VR PN: '{PLAIN_NAME}'", UserWarning, stacklevel=1)

        line = json.loads(stream.getvalue())
        assert line["logger"] == "radstream.warnings"
        assert line["level"] == "WARNING"
        assert line["msg"].startswith("UserWarning at common/test_logs.py line ")
        assert line["msg"].endswith(": [message withheld]")
        assert "Smith" not in stream.getvalue()

    @pytest.mark.filterwarnings("always")
    def test_a_radstream_warning_keeps_its_message_scrubbed(self, stream: io.StringIO) -> None:
        import warnings

        warnings.warn(f"pseudonym key is short for {PLAIN_NAME}", RadstreamTestWarning, 1)

        assert json.loads(stream.getvalue())["msg"].endswith(": pseudonym key is short for [name]")

    def test_pydicom_log_lines_are_withheld_with_their_place(self, stream: io.StringIO) -> None:
        logging.getLogger("pydicom").warning("Invalid value for VR UI: '%s'", PLAIN_NAME)

        line = json.loads(stream.getvalue())
        assert line["logger"] == "pydicom"
        assert line["msg"].startswith("[message withheld] (test_logs:")
        assert "Smith" not in stream.getvalue()


class TestWarningRepeats:
    @pytest.fixture
    def stream(self, restore_root_logger: logging.Logger) -> Iterator[io.StringIO]:
        import sys
        import threading
        import warnings

        saved = warnings.showwarning, sys.excepthook, threading.excepthook
        saved_filters = list(warnings.filters)
        stream = io.StringIO()
        configure_logging(ObservabilitySettings(), stream=stream)
        yield stream
        warnings.showwarning, sys.excepthook, threading.excepthook = saved
        warnings.filters[:] = saved_filters

    @pytest.mark.filterwarnings("default")  # what a service runs with
    def test_pydicom_keeps_no_warned_value_in_its_warning_registry(
        self, stream: io.StringIO
    ) -> None:
        import pydicom.valuerep
        from pydicom.dataset import Dataset

        ds = Dataset()
        for number in range(5):
            ds.SOPInstanceUID = f"1.2.Smith{number}"  # "Invalid value for VR UI: '1.2.Smith0'"
        registry = getattr(pydicom.valuerep, "__warningregistry__", {})
        assert not any("Smith" in str(key) for key in registry)
        assert "Smith" not in stream.getvalue()

    def test_repeats_at_one_place_are_thinned_to_powers_of_ten(self, stream: io.StringIO) -> None:
        from radstream.common.logs import _log_warning

        for _ in range(150):
            _log_warning(UserWarning("value"), UserWarning, "/x/site-packages/lib/repeat.py", 7)

        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [line["count"] for line in lines] == [1, 10, 100]
        assert all(line["msg"].endswith("[message withheld]") for line in lines)
