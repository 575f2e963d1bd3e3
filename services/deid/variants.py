"""Textual variants of a PHI value, and the patterns that find them in free text.

A value rarely appears in a comment the way its attribute stores it: ``DOE^JANE`` is written
"Jane Doe", "DOE, JANE" or "J. Doe"; ``19610312`` is "03/12/1961" or "March 12, 1961"; an ID
loses its leading zeros or gains a dash. :func:`variants` lists the renderings of a value, and
:func:`value_pattern` compiles them into one regular expression that is

* case-insensitive, and accent-insensitive on text passed through :func:`fold`;
* punctuation- and whitespace-insensitive: between the alphanumeric tokens of a variant it
  accepts any run of non-alphanumerics, or none ("Doe-Smith", "DOE SMITH", "DOESMITH");
* leading-zero-insensitive for every numeric token ("03/12/1961" also finds "3/12/1961");
* bounded: a numeric edge never touches another digit (a patient ID inside a UID does not
  count), and an alphabetic edge never touches another letter unless the caller asks for
  substring matching.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from functools import lru_cache

from radstream.deid.phi import PhiCategory, PhiValue

__all__ = [
    "date_variants",
    "fold",
    "identifier_variants",
    "name_variants",
    "normalise",
    "organization_variants",
    "phone_variants",
    "tokens",
    "value_pattern",
    "variant_pattern",
    "variants",
]

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
SUBSTRING_MIN_LENGTH = 5
OPEN_EDGE_MIN_LENGTH = 4

_TOKEN = re.compile(r"[^\W_]+")
_SEPARATOR = r"[\W_]*"
# Letters NFKD does not decompose, folded to the letter a reader would type instead.
_UNDECOMPOSED = {"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "\u0131": "i"}


def fold(text: str) -> str:
    """Strip accents one character for one character, so offsets into ``text`` stay valid."""
    if text.isascii():
        return text
    return "".join(_fold_char(char) for char in text)


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    if char in _UNDECOMPOSED:
        return _UNDECOMPOSED[char]
    decomposed = unicodedata.normalize("NFKD", char)
    base = decomposed[0] if decomposed else char
    return char if unicodedata.combining(base) else base


def tokens(text: str) -> list[str]:
    """The alphanumeric runs of ``text`` after :func:`fold`, case kept."""
    return _TOKEN.findall(fold(text))


def normalise(text: str) -> str:
    """Casefolded, accent-free, with everything but letters and digits removed."""
    return "".join(tokens(text)).casefold()


def name_variants(text: str) -> frozenset[str]:
    """Renderings of a DICOM person name (``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX``).

    For each component group (alphabetic, ideographic, phonetic): "GIVEN FAMILY",
    "FAMILY, GIVEN", "FAMILY GIVEN", with and without the middle name or its initial, and
    "G. FAMILY" / "FAMILY G". A value without carets is taken as free text and also matched
    with its words reversed.
    """
    found = {text}
    for raw_group in text.split("="):
        group = raw_group.strip()
        if "^" not in group:
            words = group.split()
            found.update({group, " ".join(reversed(words))} if words else set())
            continue
        family, given, middle = (part.strip() for part in [*group.split("^"), "", ""][:3])
        found.update(_person_renderings(family, given, middle))
    return frozenset(variant for variant in found if tokens(variant))


def _person_renderings(family: str, given: str, middle: str) -> set[str]:
    if not (family and given):
        return {" ".join(part for part in (given, middle, family) if part)}
    initial = given[0]
    renderings = {
        f"{given} {family}",
        f"{family}, {given}",
        f"{family} {given}",
        f"{initial}. {family}",
        f"{family} {initial}",
    }
    if middle:
        middle_initial = middle[0]
        renderings |= {
            f"{given} {middle} {family}",
            f"{given} {middle_initial}. {family}",
            f"{family}, {given} {middle}",
            f"{family}, {given} {middle_initial}",
            f"{initial}. {middle_initial}. {family}",
        }
    return renderings


def date_variants(text: str) -> frozenset[str]:
    """Renderings of a DICOM date ``YYYYMMDD``; just ``text`` when it is not a valid date."""
    digits = re.sub(r"\D", "", text)
    try:
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return frozenset({text})
    if len(digits) != 8:  # a DT, or junk that happens to start like a date
        return frozenset({text})
    y, m, d = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
    yy = y[2:]
    month, mon = _MONTHS[day.month - 1], _MONTHS[day.month - 1][:3]
    return frozenset(
        {
            f"{y}{m}{d}",
            f"{y}-{m}-{d}",
            f"{y}/{m}/{d}",
            f"{d}/{m}/{y}",
            f"{m}/{d}/{y}",
            f"{d}.{m}.{y}",
            f"{d}-{m}-{y}",
            f"{m}-{d}-{y}",
            f"{d}/{m}/{yy}",
            f"{m}/{d}/{yy}",
            f"{d} {mon} {y}",
            f"{d}-{mon}-{y}",
            f"{d} {month} {y}",
            f"{month} {d}, {y}",
            f"{mon} {d}, {y}",
        }
    )


def identifier_variants(text: str) -> frozenset[str]:
    """An ID as stored, without separators, and without leading zeros."""
    compact = "".join(tokens(text))
    return frozenset(v for v in {text, compact, compact.lstrip("0")} if v)


def phone_variants(text: str) -> frozenset[str]:
    """A telephone number as stored, and its digits one by one with and without a country code.

    Spelled digit by digit, the pattern accepts any grouping ("555-123-4567", "(555) 1234567").
    """
    digits = re.sub(r"\D", "", text)
    spaced = {" ".join(digits), " ".join(digits[-10:])} if len(digits) >= 7 else set()
    return frozenset(v for v in {text, *spaced} if v)


def organization_variants(text: str) -> frozenset[str]:
    """An institution or address, with "St"/"Saint" and "&"/"and" spelled either way."""
    found = {text}
    for short, long in (("St", "Saint"), ("&", "and")):
        pattern = rf"(?<![^\W\d_]){re.escape(short)}(?![^\W\d_])" if short.isalpha() else short
        for variant in list(found):
            found.add(re.sub(pattern, long, variant, flags=re.IGNORECASE))
            found.add(re.sub(rf"\b{long}\b", short, variant, flags=re.IGNORECASE))
    return frozenset(found)


def variants(value: PhiValue) -> frozenset[str]:
    """The renderings of ``value`` worth searching for, chosen by its category."""
    match value.category:
        case PhiCategory.NAME:
            found = name_variants(value.text)
        case PhiCategory.DATE:
            found = date_variants(value.text)
        case PhiCategory.PHONE:
            found = phone_variants(value.text)
        case PhiCategory.ORGANIZATION | PhiCategory.PLACE:
            found = organization_variants(value.text)
        case _:
            found = identifier_variants(value.text)
    # German umlauts are also typed as two letters ("Müller", "Mueller"); fold() covers "Muller".
    transliterated = {variant.translate(_TRANSLITERATION) for variant in found}
    return found | transliterated


_TRANSLITERATION = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "AE", "Ö": "OE", "Ü": "UE", "ß": "ss"}
)


def variant_pattern(
    variant: str, *, letter_boundaries: bool = True, open_digit_end: bool = False
) -> str | None:
    """A regular expression for one variant (compile with IGNORECASE); None if it has no tokens.

    Parameters
    ----------
    variant
        The rendering to find.
    letter_boundaries
        Refuse matches whose alphabetic edge touches another letter ("Doe" not in "Does").
        When False, an edge is left open only where the variant is at least
        :data:`SUBSTRING_MIN_LENGTH` characters and the edge word at least
        :data:`OPEN_EDGE_MIN_LENGTH`: an initial or a short word inside a longer word
        ("J. Doe" in "adj doe", "Test S" in "latest study") is chance, not a finding.
    open_digit_end
        Let a numeric end run into more digits: a date is the start of a DT value.
    """
    parts = tokens(variant)
    if not parts:
        return None
    body = _SEPARATOR.join(_token_pattern(part) for part in parts)
    long_enough = len("".join(parts)) >= SUBSTRING_MIN_LENGTH

    def edge(char: str, word: str, digit: str, letter: str, digits_open: bool) -> str:
        if char.isdigit():
            return "" if digits_open else digit
        opened = not letter_boundaries and long_enough and len(word) >= OPEN_EDGE_MIN_LENGTH
        return "" if opened else letter

    first, last = parts[0], parts[-1]
    start = edge(first[0], first, r"(?<!\d)", r"(?<![^\W\d_])", False)
    end = edge(last[-1], last, r"(?!\d)", r"(?![^\W\d_])", open_digit_end)
    return f"{start}{body}{end}"


def _token_pattern(token: str) -> str:
    if token.isdigit() and len(token) > 1:
        significant = token.lstrip("0")
        return f"0*{significant}" if significant else "0+"
    return re.escape(token)


@lru_cache(maxsize=1024)
def value_pattern(value: PhiValue, *, letter_boundaries: bool = True) -> re.Pattern[str] | None:
    """One compiled pattern for all variants of ``value``; match it against ``fold(text)``."""
    # Only the DICOM form itself (YYYYMMDD) may run on into more digits, as it does at the
    # start of a DT value; a reordered, unseparated rendering ("300164") left open would match
    # inside any long number, such as a UID.
    dicom_date = value.text.strip() if value.category is PhiCategory.DATE else None
    patterns = {
        pattern
        for variant in variants(value)
        if (
            pattern := variant_pattern(
                variant,
                letter_boundaries=letter_boundaries,
                open_digit_end=variant == dicom_date,
            )
        )
    }
    if not patterns:
        return None
    # Longest first, so the alternation prefers the fullest rendering of the value.
    ordered = sorted(patterns, key=lambda pattern: (-len(pattern), pattern))
    return re.compile("|".join(f"(?:{pattern})" for pattern in ordered), re.IGNORECASE)
