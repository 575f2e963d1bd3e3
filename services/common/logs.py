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
import json
import logging
import re
import sys
import threading
from collections.abc import Collection
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, TextIO

from opentelemetry import trace

from radstream.common.errors import MisconfiguredError
from radstream.common.settings import ObservabilitySettings

__all__ = [
    "REDACTED",
    "SAFE_EXTRA_KEYS",
    "HumanFormatter",
    "JsonFormatter",
    "PhiFilter",
    "configure_logging",
    "scrub_phi",
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
_STANDARD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    _SCRUBBED_ATTR,
    _EXC_TYPE_ATTR,
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


def scrub_phi(text: str) -> str:
    """Replace PHI-looking values in ``text`` with typed placeholders such as ``[name]``."""
    has_digits = _ANY_DIGIT.search(text) is not None
    for pattern, placeholder, required in _PHI_PATTERNS:
        # Skipping patterns that cannot match keeps the common, PHI-free line cheap.
        if (required and required in text) or (not required and has_digits):
            text = pattern.sub(placeholder, text)
    if has_digits:
        text = _PHONE.sub(_phone_placeholder, text)
        text = _DIGIT_RUN.sub("[id]", text)
    return text


def _phone_placeholder(match: re.Match[str]) -> str:
    digits = sum(character.isdigit() for character in match.group())
    return "[phone]" if digits >= _PHONE_MIN_DIGITS else match.group()


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
        record.msg = scrub_phi(record.getMessage())
        record.args = None
        if record.exc_info:
            exc_type = record.exc_info[0]
            if exc_type is not None:
                setattr(record, _EXC_TYPE_ATTR, _qualified_name(exc_type))
            # Render the traceback now and drop exc_info, so no formatter can re-render it raw.
            traceback_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub_phi(traceback_text)
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
