"""Structured logging that keeps PHI out of the log stream.

:func:`configure_logging` gives the root logger one handler that carries a :class:`PhiFilter`
and either a JSON formatter (one object per line, for the log shipper) or a human one (for a
terminal). The filter replaces ``extra=`` fields not on :data:`SAFE_EXTRA_KEYS` and scrubs
PHI-looking values from the message and the exception text.

The filter is a backstop, not a licence: code logs event ids, counts and error types, never values
read from a study or a report. The patterns over-redact on purpose (a six-digit offset in a message
becomes ``[id]``); operational numbers belong in allowlisted ``extra=`` fields.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import PurePath
from types import TracebackType
from typing import Final, TextIO

from opentelemetry import trace

from radstream.common.errors import MisconfiguredError, RadstreamError
from radstream.common.settings import ObservabilitySettings

__all__ = [
    "REDACTED",
    "SAFE_EXTRA_KEYS",
    "HumanFormatter",
    "JsonFormatter",
    "PhiFilter",
    "configure_logging",
    "describe_error",
    "format_exception_safely",
    "route_warnings",
    "scrub_phi",
    "withhold_library_messages",
]

REDACTED: Final = "[redacted]"

# Operational keys whose values cannot carry PHI. Adding a key is a privacy review: its value will
# reach the log store unscrubbed, so it must never hold anything read from a study, report or note.
SAFE_EXTRA_KEYS: Final[frozenset[str]] = frozenset(
    {
        "attempt",
        "attempts",
        "backoff_s",
        "ce_source",
        "ce_type",
        "check",
        "component",
        "count",
        # deid's review decisions: the decision's label (approve, amend, reject, unspecified)
        # and what became of it (released, held_again, ...), enum values only.
        "decision",
        "duration_ms",
        "error_code",
        "error_type",
        "event_id",
        "group",
        "host",
        "lag",
        "max_attempts",
        "media_type",
        "model",
        "model_version",
        "offset",
        "partition",
        "port",
        "result",
        "service",
        "sha256",
        "size",
        "status",
        "topic",
        "zone",
    }
)

# uvicorn copies its message into this field with terminal colours; it only duplicates msg.
_DROPPED_KEYS: Final = frozenset({"color_message"})
# Attributes the filter sets itself; never treated as extra fields.
_SCRUBBED_ATTR: Final = "radstream_phi_scrubbed"
_EXC_TYPE_ATTR: Final = "radstream_exc_type"
_LIBRARY_WITHHELD_ATTR: Final = "radstream_library_withheld"
_STANDARD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    _SCRUBBED_ATTR,
    _EXC_TYPE_ATTR,
    _LIBRARY_WITHHELD_ATTR,
}

_NAME_CHAR = r"[\w'.\-]"
_CAPITALISED_WORD = r"[A-Z\u00c0-\u00de][\w'.\-]*"
_PHI_PATTERNS: Final[tuple[tuple[re.Pattern[str], str, str], ...]] = (
    # (pattern, placeholder, a character the text must contain for the pattern to apply)
    (re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"), "[email]", "@"),
    # DICOM person name (PN): components joined by '^'. Capitalised words directly before or
    # after it are taken too, for multi-word names such as VAN DER BERG^ANNA or DOE^MARY ANN.
    (
        re.compile(
            rf"(?:{_CAPITALISED_WORD} )*"
            rf"(?:{_NAME_CHAR}+\^|\^+{_NAME_CHAR})[\w'.\-^]*"
            rf"(?: {_CAPITALISED_WORD}[\w'.\-^]*)*"
        ),
        "[name]",
        "^",
    ),
    # DICOM UID: dotted numeric, first arc 0-2, at least 8 characters (spares versions like 0.30.1).
    (re.compile(r"(?<![\w.])(?=[\d.]{8})[012](?:\.\d+){2,}"), "[uid]", ""),
    (
        re.compile(
            r"(?<!\d)\d{4}-\d{2}-\d{2}"
            r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?!\d)"
        ),
        "[date]",
        "",
    ),
    (
        re.compile(r"(?<!\d)(?:\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}|\d{4}/\d{1,2}/\d{1,2})(?!\d)"),
        "[date]",
        "",
    ),
    # DICOM DA (YYYYMMDD) and DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX).
    (
        re.compile(
            r"(?<!\d)(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
            r"(?:\d{2,6}(?:\.\d{1,6})?)?(?:[+-]\d{4})?(?!\d)"
        ),
        "[date]",
        "",
    ),
)
_PHONE: Final = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ \-]?)?(?:\(\d{1,5}\)[ \-]?)?\d{2,5}(?:[ \-]\d{2,5}){1,4}(?!\w)"
    r"|(?<![\w.])\d{3}\.\d{3}\.\d{4}(?![\w.])"
)
_PHONE_MIN_DIGITS: Final = 7
_DIGIT_RUN: Final = re.compile(r"\d{6,}")  # MRNs, accession numbers, other record numbers
_ANY_DIGIT: Final = re.compile(r"\d")
# An HL7 message type (ORU^R01, ORU^R01^ORU_R01) has the shape of a person name but is not one.
_HL7_MESSAGE_TYPE: Final = re.compile(r"[A-Z]{3}\^[A-Z]\d{2}(?:\^[A-Z]{3}_[A-Z]\d{2})?")
# A value after a label that says it is an identifier: MRN A12345, ID 4711, patient=X-17.
_LABELLED_ID: Final = re.compile(
    r"(?i)(?<![\w\-])(mrn|pid|id|ssn|nhs|accession|acc|patient|chart|visit|encounter|member)"
    r"(\s*(?:no\.?|nr\.?|number|#)?\s*[:#=]?\s*)"
    r"(?![\[(])([\w\-/.]*\d[\w\-/]*)"
)
# Letters then digits, or digits then letters, as one token: A12345, AB-204711, 4711X.
_CODED_ID: Final = re.compile(r"(?<![\w\-.])(?:[A-Za-z]{1,3}-?\d{4,}|\d{4,}[A-Z])(?![\w\-]|\.\w)")
# Runs of capitalised words ("John Smith", "SMITH JOHN", "Smith, John"): a person's name unless
# a word is radstream's operational vocabulary (see _VOCABULARY). Initials may sit in between.
_NAME_WORD = r"(?:[A-Z\u00c0-\u00de][A-Za-z\u00c0-\u00ff'\-]*[A-Za-z\u00c0-\u00ff]|[A-Z]\.?)"
_NAME_RUN: Final = re.compile(rf"(?<![\w\-./^\[]){_NAME_WORD}(?:(?:, | ){_NAME_WORD})+(?![\w^])")
_NAME_TOKEN: Final = re.compile(rf"{_NAME_WORD}|, | ")
# Capitalised words that radstream's own messages use: DICOM attribute names, protocols and
# their segments, services, log levels and a little English. A word here is never a name.
_VOCABULARY_WORDS: Final = """
    A AN AND ANY ARE AS AT BE BUT BY CAN CANNOT DO DOES FOR FROM HAS HAVE IF IN IS IT ITS NO NOT
    NONE OF OK ON ONE ONLY OR PER SO THE THIS TO TWO USE WAS WITH WITHOUT YES TRUE FALSE NULL
    ALL EVERY EACH NEW OLD SEE SET GET PUT POST HEAD DELETE PATCH OPTIONS
    DEBUG INFO INFORMATION WARN WARNING ERROR ERRORS CRITICAL FATAL NOTICE TRACE
    DICOM DICOMWEB SCP SCU AE HL7 MLLP FHIR HTTP HTTPS TLS SSL TCP UDP IP DNS URL URI API REST
    JSON XML SQL GRPC STOW QIDO WADO RS PACS RIS EHR ACK NAK MSH MSA ERR EVN PID PV1 OBR OBX ORC
    NTE ORU ORM ADT MDM AA AR CA CE CR ID UID UIDS SOP VR IOD PHI MRN SSN NHS CSV S3 UTF ASCII
    ISO IR OOM CPU GPU DLQ RAM KAFKA TANSU ORTHANC POSTGRES POSTGRESQL SQLITE RADSTREAM
    PROMETHEUS GRAFANA OPENTELEMETRY FASTSTREAM UVICORN PRESIDIO SPACY DOCKER PYDICOM PYNETDICOM
    KUBERNETES HELM INGEST DEID CLI
    PATIENT PATIENTS STUDY STUDIES SERIES INSTANCE INSTANCES IMAGE IMAGES CLASS MEDIA STORAGE
    TRANSFER SYNTAX EXPLICIT IMPLICIT LITTLE BIG ENDIAN DEFLATED FILE FILES META GROUP LENGTH
    ELEMENT ELEMENTS PIXEL DATA ROWS COLUMNS BITS BIT ALLOCATED STORED HIGH SAMPLES NUMBER FRAME
    FRAMES PHOTOMETRIC INTERPRETATION BURNED ANNOTATION MODALITY BODY PART EXAMINED SPECIMEN
    LABEL TYPE DATE TIME DATETIME NAME SEX BIRTH AGE ACCESSION REFERRING PHYSICIAN INSTITUTION
    STATION MANUFACTURER MODEL DEVICE SERIAL OPERATOR PROTOCOL DESCRIPTION COMMENTS SEQUENCE
    PRIVATE CREATOR TAG VALUE VALUES CHARACTER SPECIFIC WHOLE SLIDE MICROSCOPY DERMOSCOPIC
    PHOTOGRAPHY OVERVIEW RETAIN CLEAN SAFE OPTION PROFILE BASIC APPLICATION LEVEL IDENTITY
    CONFIDENTIALITY REMOVED METHOD CODE CODING SCHEME DESIGNATOR MEANING CONTENT STRUCTURED
    REPORT REPORTS OBSERVATION DIAGNOSTIC BUNDLE RESOURCE SUBJECT REFERENCE IDENTIFIER STATUS
    ISSUED CONCLUSION PRESENTED FORM ATTACHMENT ORDER FILLER PLACER RESULT SEGMENT FIELD
    COMPONENT MESSAGE CONTROL PROCESSING VERSION EVENT TRIGGER SENDING RECEIVING FACILITY CALLED
    CALLING TITLE ASSOCIATION REQUEST RESPONSE STORE ECHO FIND MOVE ABORT REJECT REJECTED
    ACCEPTED REFUSED RECOGNIZED SUPPORTED UNSUPPORTED INVALID MISSING UNKNOWN TIMEOUT
    CONNECTION FAILED SUCCESS PENDING CANCEL COMMITMENT QUERY RETRIEVE WORKLIST PERFORMED
    PROCEDURE STEP SCHEDULED REQUESTED ENCAPSULATED DOCUMENT WAVEFORM OVERLAY ICON GRAPHIC
    GRAPHICS PRESENTATION KEY DISPLAY DERIVED ORIGINAL PRIMARY SECONDARY LONGITUDINAL TEMPORAL
    FULL DATES MODIFIED DESCRIPTORS CHARACTERISTICS READY ALIVE LIVENESS READINESS SERVICE
    CONSUMER PRODUCER BROKER TOPIC PARTITION OFFSET RECORD RECORDS HEADER HEADERS BODY
"""
_VOCABULARY: Final[frozenset[str]] = frozenset(_VOCABULARY_WORDS.split())


def scrub_phi(text: str) -> str:
    """Replace PHI-looking values in ``text`` with typed placeholders such as ``[name]``."""
    has_digits = _ANY_DIGIT.search(text) is not None
    for pattern, placeholder, required in _PHI_PATTERNS:
        # Skipping patterns that cannot match keeps the common, PHI-free line cheap.
        if required == "^" and required in text:
            text = pattern.sub(_caret_name_placeholder, text)
        elif (required and required in text) or (not required and has_digits):
            text = pattern.sub(placeholder, text)
    if has_digits:
        text = _PHONE.sub(_phone_placeholder, text)
        text = _DIGIT_RUN.sub("[id]", text)
        text = _LABELLED_ID.sub(r"\1\2[id]", text)
        text = _CODED_ID.sub("[id]", text)
    return _NAME_RUN.sub(_name_placeholder, text)


def _phone_placeholder(match: re.Match[str]) -> str:
    digits = sum(character.isdigit() for character in match.group())
    return "[phone]" if digits >= _PHONE_MIN_DIGITS else match.group()


def _caret_name_placeholder(match: re.Match[str]) -> str:
    found = match.group()
    if _HL7_MESSAGE_TYPE.fullmatch(found.rsplit(" ", 1)[-1]):
        return found  # a message type, and any capitalised words before it are judged below
    return "[name]"


def _name_placeholder(match: re.Match[str]) -> str:
    """Replace each stretch of two or more name-like words (one at least a whole word)."""
    tokens = _NAME_TOKEN.findall(match.group())
    words, separators = tokens[0::2], tokens[1::2]
    name_like = [_is_name_like(word) for word in words]
    pieces: list[str] = []
    start = 0
    while start < len(words):
        end = start
        while name_like[start] and end + 1 < len(words) and name_like[end + 1]:
            end += 1
        stretch = words[start : end + 1]
        if end > start and any(len(word.rstrip(".")) > 1 for word in stretch):
            pieces.append("[name]")
        else:
            pieces.append("".join(_interleave(stretch, separators[start:end])))
        if end < len(separators):
            pieces.append(separators[end])
        start = end + 1
    return "".join(pieces)


def _interleave(words: list[str], separators: list[str]) -> list[str]:
    joined = [words[0]]
    for separator, word in zip(separators, words[1:], strict=True):
        joined += [separator, word]
    return joined


def _is_name_like(word: str) -> bool:
    """A capitalised word that is not vocabulary and not a code identifier (``TimeoutError``)."""
    bare = word.rstrip(".")
    if bare.upper() in _VOCABULARY:
        return False
    if len(bare) == 1:
        return True  # an initial
    parts = re.split(r"['\-]", bare)
    return bare.isupper() or all(_is_capitalised_part(part) for part in parts if part)


def _is_capitalised_part(part: str) -> bool:
    for prefix in ("Mac", "Mc", "O"):  # MacLeod, McDonald
        if part.startswith(prefix) and part[len(prefix) :].istitle() and len(part) > len(prefix):
            return True
    return part.istitle() or part.islower()


# Conditions a library's error message may mention, each said in radstream's own words. Only
# these phrases leave a foreign exception; its text never does.
_KNOWN_CONDITIONS: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(pattern, re.IGNORECASE), phrase)
    for pattern, phrase in (
        (r"connection refused", "connection refused"),
        (r"connection reset", "connection reset"),
        (r"(?:server )?closed the connection|connection (?:is )?closed", "connection closed"),
        (r"timed? ?out|timeout", "timed out"),
        (
            r"name or service not known|nodename nor servname|name resolution|"
            r"could not translate host name|getaddrinfo failed",
            "name resolution failed",
        ),
        (r"no route to host|network is unreachable", "network unreachable"),
        (r"authentication failed|password authentication", "authentication failed"),
        (r"permission denied|access ?denied|forbidden", "access denied"),
        (r"certificate verify failed|certificate_verify_failed", "certificate verify failed"),
        (r"too many (?:connections|clients)", "too many connections"),
        (r"database is locked", "database is locked"),
        (r"read-?only", "read-only"),
        (r"no space left|disk (?:is )?full", "disk full"),
        (r"does not exist", "does not exist"),
        (r"NoSuchBucket", "NoSuchBucket"),
        (r"NoSuchKey", "NoSuchKey"),
        (r"SlowDown", "SlowDown"),
        (r"InvalidAccessKeyId", "InvalidAccessKeyId"),
        (r"SignatureDoesNotMatch", "SignatureDoesNotMatch"),
        (r"ExpiredToken", "ExpiredToken"),
    )
)
_MAX_CONDITIONS: Final = 3
_WITHHELD: Final = "[message withheld]"


def describe_error(error: BaseException) -> str:
    """What a log line, a dead-letter header or ``/readyz`` may say about ``error``: no value.

    radstream's own errors (:class:`~radstream.common.errors.RadstreamError`) build their
    messages from codes, field names, tags, offsets and sizes; their text is kept, scrubbed.
    Any other exception may quote its input (pydantic's ValidationError prints the input value,
    python-hl7 the segment it could not read, psycopg the key of a violated constraint), so it is
    reduced to its type, where it was raised and the conditions of :data:`_KNOWN_CONDITIONS` its
    message mentions (``OperationalError raised in psycopg.connection:connect line 119
    (connection refused)``).
    """
    if isinstance(error, RadstreamError):
        return scrub_phi(_text_of(error)) or type(error).__name__
    where = _raised_at(error.__traceback__)
    text = f"{type(error).__name__} raised in {where}" if where else type(error).__name__
    conditions = _conditions_of(error)
    return f"{text} ({', '.join(conditions)})" if conditions else text


def _raised_at(tb: TracebackType | None) -> str:
    """``module:function line N`` of the innermost frame of ``tb`` ('' without a traceback)."""
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    module = frame.f_globals.get("__name__")
    module = module if isinstance(module, str) else PurePath(frame.f_code.co_filename).stem
    return f"{module}:{frame.f_code.co_name} line {tb.tb_lineno}"


def _conditions_of(error: BaseException) -> list[str]:
    found: list[str] = []
    code = getattr(error, "errno", None) if isinstance(error, OSError) else None
    if isinstance(code, int) and code in errno.errorcode:
        found.append(errno.errorcode[code])
    text = _text_of(error)
    for pattern, phrase in _KNOWN_CONDITIONS:
        if phrase not in found and pattern.search(text):
            found.append(phrase)
    return found[:_MAX_CONDITIONS]


def _text_of(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a broken __str__ must not cost the description
        return ""


def _describe_argument(value: object) -> object:
    """A logging argument, an exception among them described instead of printed."""
    return describe_error(value) if isinstance(value, BaseException) else value


def format_exception_safely(
    exc_type: type[BaseException] | None,
    error: BaseException | None,
    tb: TracebackType | None,
) -> str:
    """A traceback whose exception lines follow :func:`describe_error`'s rule.

    Frames (file, line, function, source line) are kept: they are radstream's and its
    libraries' code. Each exception line of the chain (causes, contexts, members of a group)
    keeps a radstream error's scrubbed message and says of any other only its type and the
    conditions it mentions. Notes added to foreign exceptions are dropped with their message.
    """
    if error is None:
        return f"{exc_type.__name__}\n" if exc_type is not None else ""
    lines: list[str] = []
    _format_chain(error, tb, lines, seen=set())
    return "".join(lines)


def _format_chain(
    error: BaseException, tb: TracebackType | None, lines: list[str], *, seen: set[int]
) -> None:
    seen.add(id(error))
    cause, context = error.__cause__, error.__context__
    if cause is not None and id(cause) not in seen:
        _format_chain(cause, cause.__traceback__, lines, seen=seen)
        lines.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif context is not None and not error.__suppress_context__ and id(context) not in seen:
        _format_chain(context, context.__traceback__, lines, seen=seen)
        lines.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    if tb is not None:
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(tb))
    lines.append(f"{_qualified_name(type(error))}: {_exception_line(error)}\n")
    if isinstance(error, BaseExceptionGroup):
        for index, member in enumerate(error.exceptions, start=1):
            lines.append(
                f"  [{index}] {_qualified_name(type(member))}: {_exception_line(member)}\n"
            )


def _exception_line(error: BaseException) -> str:
    if isinstance(error, RadstreamError):
        return scrub_phi(_text_of(error))
    conditions = _conditions_of(error)
    return f"{_WITHHELD} ({', '.join(conditions)})" if conditions else _WITHHELD


# --- warnings and libraries that quote their input --------------------------------------------

_WARNINGS_LOGGER: Final = "radstream.warnings"
# Libraries whose own log messages quote what they read (pydicom logs each warning it issues,
# value included). Their lines keep level, logger and location; the message is withheld.
VALUE_QUOTING_LOGGERS: Final = ("pydicom",)


def route_warnings() -> None:
    """Send every warning shown from now on to the PHI-filtered log as its category and place.

    Process-wide and idempotent: it replaces :func:`warnings.showwarning` once, so no code needs
    ``warnings.catch_warnings`` (which swaps global state and is not thread-safe) around
    library calls that warn with values, such as pydicom reading a file.
    """
    warnings.showwarning = _log_warning
    with _warning_counts_lock:
        _warning_counts.clear()
    # Python remembers each warning it has shown in the warning module's registry, keyed by its
    # text: for pydicom that text quotes a value read from an instance, so a long-running service
    # would keep every such value in memory, without bound. "always" keeps no registry entry;
    # _log_warning thins the repeats out by place instead.
    warnings.filterwarnings("always", module=VALUE_QUOTING_WARNING_MODULES)


# Modules whose warnings quote the values they read (a regex on the warning's module name).
VALUE_QUOTING_WARNING_MODULES: Final = r"pydicom(\.|$)"
_warning_counts: dict[tuple[str, str], int] = {}
_warning_counts_lock = threading.Lock()


def _repeat_is_logged(place: tuple[str, str]) -> int | None:
    """How many times a warning at ``place`` has been shown, when this repeat is logged.

    The first, the tenth, the hundredth and so on: a study with a thousand bad values makes four
    lines, not a thousand. The places are lines of code, so the table stays small.
    """
    with _warning_counts_lock:
        count = _warning_counts.get(place, 0) + 1
        _warning_counts[place] = count
    return count if str(count).rstrip("0") == "1" else None


def _log_warning(  # noqa: PLR0917 -- the signature of warnings.showwarning
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Log a warning: category and location; the message only when radstream raised it."""
    where = f"{_short_path(filename)} line {lineno}"
    own = category.__module__.startswith("radstream.")
    if own:
        count: int | None = 1  # radstream's own warnings are rare and each one says something
    else:
        count = _repeat_is_logged((_qualified_name(category), where))
        if count is None:
            return
    logging.getLogger(_WARNINGS_LOGGER).warning(
        "%s at %s: %s",
        category.__qualname__ if category.__module__ == "builtins" else _qualified_name(category),
        where,
        str(message) if own else _WITHHELD,
        extra={"error_type": category.__qualname__, "count": count},
    )


def _short_path(filename: str) -> str:
    """``pydicom/valuerep.py`` for a file under site-packages; the last two parts otherwise."""
    path = PurePath(filename)
    parts = path.parts
    if "site-packages" in parts:
        return "/".join(parts[len(parts) - parts[::-1].index("site-packages") :])
    return "/".join(parts[-2:])


class _WithholdMessage(logging.Filter):
    """Replace a library's message by where it was logged (on the library's own logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, _SCRUBBED_ATTR, False):
            _withhold_library_message(record)
        return True


def withhold_library_messages() -> None:
    """Withhold the messages of :data:`VALUE_QUOTING_LOGGERS` at their loggers, once.

    The root handler's :class:`PhiFilter` withholds them too; a filter on the logger itself also
    covers handlers radstream did not install (a test runner's log capture, for one).
    """
    for name in VALUE_QUOTING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _WithholdMessage) for existing in logger.filters):
            logger.addFilter(_WithholdMessage())


def _quotes_values(logger_name: object) -> bool:
    if not isinstance(logger_name, str):
        return False
    return any(
        logger_name == name or logger_name.startswith(f"{name}.") for name in VALUE_QUOTING_LOGGERS
    )


def _withhold_library_message(record: logging.LogRecord) -> None:
    if _quotes_values(record.name) and not getattr(record, _LIBRARY_WITHHELD_ATTR, False):
        record.msg = f"{_WITHHELD} ({record.module}:{record.funcName} line {record.lineno})"
        record.args = None
        setattr(record, _LIBRARY_WITHHELD_ATTR, True)


class PhiFilter(logging.Filter):
    """Keep a log line but strip PHI from it: unknown extra fields and PHI-looking values.

    Attach it to a *handler*: a logger's own filters do not see records propagated from its
    children. It never raises, because a filter that raises loses the line.
    """

    def __init__(self, allowed_keys: Collection[str] = SAFE_EXTRA_KEYS) -> None:
        super().__init__()
        self._allowed_keys = frozenset(allowed_keys)

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place (once, however many handlers see it) and keep it."""
        if getattr(record, _SCRUBBED_ATTR, False):
            return True
        try:
            self._scrub(record)
        except Exception:  # never lose the line; lose its content instead
            _withhold(record)
        setattr(record, _SCRUBBED_ATTR, True)
        return True

    def _scrub(self, record: logging.LogRecord) -> None:
        for key in _extra_keys(record):
            if key in _DROPPED_KEYS:
                del record.__dict__[key]
            elif key not in self._allowed_keys:
                record.__dict__[key] = REDACTED
        _withhold_library_message(record)
        if isinstance(record.args, tuple):
            record.args = tuple(_describe_argument(value) for value in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _describe_argument(value) for key, value in record.args.items()}
        record.msg = scrub_phi(record.getMessage())
        record.args = None
        if record.exc_info:
            exc_type = record.exc_info[0]
            if exc_type is not None:
                setattr(record, _EXC_TYPE_ATTR, _qualified_name(exc_type))
            # Render the traceback now and drop exc_info, so no formatter can re-render it raw;
            # a foreign exception's message is left out of it (see describe_error).
            record.exc_text = scrub_phi(format_exception_safely(*record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub_phi(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub_phi(record.stack_info)


def _withhold(record: logging.LogRecord) -> None:
    record.msg = "[log message withheld: PHI scrubbing failed]"
    record.args = None
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    with contextlib.suppress(Exception):
        for key in _extra_keys(record):
            record.__dict__[key] = REDACTED


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, service, trace ids, extras, exception."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        entry: dict[str, object] = {
            "ts": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "service": self._service,
        }
        entry.update(_current_trace_ids())
        for key in _extra_keys(record):
            entry.setdefault(key, record.__dict__[key])
        exc_type = getattr(record, _EXC_TYPE_ATTR, None)
        if exc_type is None and record.exc_info and record.exc_info[0] is not None:
            exc_type = _qualified_name(record.exc_info[0])
        if exc_type is not None:
            entry["exc_type"] = exc_type
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=_json_fallback)


class HumanFormatter(logging.Formatter):
    """``2024-01-31T09:30:00.123Z INFO    radstream.deid: msg key=value`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """Return the record's time as ISO-8601 UTC."""
        return _utc_iso(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        """Return the line, with extra fields appended as ``key=value``."""
        fields = " ".join(f"{key}={record.__dict__[key]}" for key in _extra_keys(record))
        line = super().formatMessage(record)
        return f"{line} {fields}" if fields else line


def configure_logging(settings: ObservabilitySettings, *, stream: TextIO | None = None) -> None:
    """Route all logging through one PHI-filtered handler on the root logger.

    Existing root handlers are removed: any handler without the filter would write PHI.
    ``stream`` defaults to standard error, which keeps standard output for command results.
    """
    level = _level_of(settings.log_level)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(PhiFilter())
    handler.setFormatter(
        JsonFormatter(settings.service_name) if settings.log_json else HumanFormatter()
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    route_warnings()
    withhold_library_messages()
    # An uncaught exception would otherwise print its raw traceback (with any PHI in local
    # values' reprs or messages) straight to stderr, bypassing the filter.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("radstream.uncaught").critical(
        "uncaught exception", exc_info=(exc_type, exc, tb)
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def _level_of(name: str) -> int:
    level = logging.getLevelNamesMapping().get(name.strip().upper())
    if level is None:
        raise MisconfiguredError(
            f"RADSTREAM_OBS_LOG_LEVEL={name!r} is not a log level; "
            "use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    return level


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [key for key in record.__dict__ if key not in _STANDARD_ATTRS]


def _current_trace_ids() -> dict[str, str]:
    span = trace.get_current_span()
    if not span.is_recording():
        return {}
    context = span.get_span_context()
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


def _utc_iso(created: float) -> str:
    stamp = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _qualified_name(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    return exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"


def _json_fallback(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not cost the line
        return f"<unprintable {type(value).__name__}>"
