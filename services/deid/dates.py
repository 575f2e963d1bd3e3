"""Per-patient date shifting for the Retain Longitudinal Temporal Information options.

Every date of one patient moves by the same whole number of days, derived from an HMAC of the
patient's identity: intervals between studies survive (longitudinal follow-up works) while the
calendar dates do not. The offset lies in ``[-MAX_OFFSET_DAYS, -MIN_OFFSET_DAYS]`` -- always into
the past, so shifted dates never land in the future, and never less than a year, so the shifted
date is never the real one. Times of day stay as they are: a whole-day shift keeps the fine
timing (contrast timing, PET decay correction) and midnight-spanning studies intact (PS3.15 E.3.6
notes 3 and 4). DT values keep their precision and their UTC offset suffix.

A value that does not parse is reported as ``None`` so the caller can remove it (fail closed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

__all__ = [
    "MAX_OFFSET_DAYS",
    "MIN_OFFSET_DAYS",
    "date_offset_days",
    "is_valid_tm",
    "shift_da",
    "shift_dt",
]

MIN_OFFSET_DAYS = 365
MAX_OFFSET_DAYS = 3652

_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")  # YYYYMMDD, or ACR-NEMA YYYY.MM.DD
_DT = re.compile(
    r"(?P<date>\d{4}(?:\d{2}(?:\d{2})?)?)"
    r"(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?"
    r"(?P<zone>[+-]\d{4})?"
)
_TM = re.compile(r"\d{2}(?::?\d{2}(?::?\d{2}(?:\.\d{1,6})?)?)?")


def date_offset_days(identity: str, key: bytes) -> int:
    """The patient's date offset in days (negative), the same for every study of the patient."""
    digest = hmac.new(key, identity.encode("utf-8"), hashlib.sha256).digest()
    span = MAX_OFFSET_DAYS - MIN_OFFSET_DAYS + 1
    return -(MIN_OFFSET_DAYS + int.from_bytes(digest[:8], "big") % span)


def _shift_date(year: int, month: int, day: int, days: int) -> dt.date:
    return dt.date(year, month, day) + dt.timedelta(days=days)


def _da_text(date: dt.date) -> str:
    # Not strftime: it does not zero-pad years before 1000 on every platform.
    return f"{date.year:04d}{date.month:02d}{date.day:02d}"


def shift_da(value: str, days: int) -> str | None:
    """Shift a DA value (``YYYYMMDD``); None when it is not a valid date."""
    match = _DA.fullmatch(value.strip())
    if match is None:
        return None
    try:
        shifted = _shift_date(int(match[1]), int(match[2]), int(match[3]), days)
    except (ValueError, OverflowError):
        return None
    return _da_text(shifted)


def shift_dt(value: str, days: int) -> str | None:
    """Shift the date part of a DT value, keeping its precision, time and UTC offset."""
    match = _DT.fullmatch(value.strip())
    if match is None:
        return None
    date_part = match["date"]
    if len(date_part) < 8 and match["time"]:
        return None  # a time needs a full date before it (PS3.5 Table 6.2-1)
    # A partial date (YYYY or YYYYMM) shifts from its middle so it moves by about `days`,
    # then keeps only the precision it had.
    year = int(date_part[:4])
    month = int(date_part[4:6]) if len(date_part) >= 6 else 7
    day = int(date_part[6:8]) if len(date_part) == 8 else (1 if len(date_part) == 4 else 15)
    try:
        shifted = _shift_date(year, month, day, days)
    except (ValueError, OverflowError):
        return None
    return f"{_da_text(shifted)[: len(date_part)]}{match['time'] or ''}{match['zone'] or ''}"


def is_valid_tm(value: str) -> bool:
    """Whether a TM value is well formed (``HH[MM[SS[.F{1,6}]]]``, colons tolerated)."""
    match = _TM.fullmatch(value.strip())
    if match is None:
        return False
    digits = value.strip().replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) >= 4 else 0
    seconds = int(digits[4:6]) if len(digits) >= 6 else 0
    # 60 allows a leap second, as PS3.5 does.
    return hours < 24 and minutes < 60 and seconds <= 60
