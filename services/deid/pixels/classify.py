"""Is a line of text read from the pixels PHI? The instance's own header first, then Presidio.

Three kinds of evidence, the strongest decides the box's ``phi_score``:

* **the instance's own header values** (:mod:`radstream.deid.phi`), in every rendering
  :mod:`radstream.deid.variants` knows -- names in any order and case, with or without carets
  or commas; dates as YYYYMMDD, DD/MM/YYYY, MM/DD/YYYY, DD-Mon-YYYY, YYYY-MM-DD and more; IDs
  with or without separators and leading zeros; the institution. OCR misreads, so beyond the
  exact patterns (score 1.0) a run of words matches a value within ``ceil(length / 6)`` edits
  (0.9), digits read as letters (O/0, I/1, S/5, B/8 ...) still match a numeric value (0.9),
  and a word cut short by the device ("PATIENTFI...", "CLEVELAN...") matches the value's word
  it begins (0.8, five letters at least). The patient's own name parts of two letters match
  as whole words; other people's two-letter values do not: an operator's initials identify
  staff, not the patient, and "AC" is also the abdominal circumference;
* **patterns** that need no header: our recognizers (MRN, accession, ``LAST^FIRST``, "Dr.
  Name", YYYYMMDD) and Presidio's (dates, phone numbers, e-mail, SSN; contacts at least 0.6),
  a bare run of six or more digits, which on a burned-in banner is a record or accession
  number, a calendar date (three numbers with one separator, or a month's name beside a
  day, "0CT" for "OCT" included), a clock time, which dates the image to the second, and
  whatever follows a label
  that only PHI follows ("ID:", "MRN", "Pt:", "DOB", "Acc:" ...), so a misread ID or name
  beside its label is still PHI (0.6 each);
* **Presidio's NER** (spaCy) on the line: PERSON, ORGANIZATION, LOCATION, DATE_TIME. The small
  model reads device annotations badly ("Adv Breast" is a PERSON, "THI" an ORGANIZATION), so
  a name-like finding is trimmed of clinical words and of :data:`ANNOTATION_TERMS` (probe
  names, gain, depth and power settings, units, positions) and counts only if a word of four
  letters or more is left for a person (0.6), five for a place or organization (0.55); a DATE_TIME
  counts only if it looks like a calendar date or a clock time.

A line is PHI when its score reaches ``threshold`` (0.5). Everything else is kept as an
annotation -- laterality markers, PORTABLE, ERECT, probe names, gain and depth, kV and mAs,
scale numbers -- unless the policy says to remove all text. The verdict's ``reason`` names the
evidence (the attribute keyword or entity), never the text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from radstream.deid.phi import PhiCategory, PhiValue, PhiValues
from radstream.deid.pixels.settings import DEFAULT_PHI_THRESHOLD
from radstream.deid.recognizers import (
    clinical_recognizers,
    is_clinical_vocabulary,
    is_clinical_word,
)
from radstream.deid.variants import fold, normalise, tokens, value_pattern, variants

__all__ = [
    "ANNOTATION_TERMS",
    "DEFAULT_PHI_THRESHOLD",
    "PhiClassifier",
    "PhiVerdict",
]

CHARACTERS_PER_EDIT = 6  # OCR misreads more than people mistype: one edit per six characters
MIN_FUZZY_LENGTH = 4
MIN_PREFIX_LENGTH = 5

# Words of device annotations that the NER takes for names: ultrasound and radiography settings,
# probe and mode names, units, positions. Lower case; matched as whole words.
_ANNOTATION_TERMS_TEXT = """
    adv advanced res resolution pen penetration gen general med medium low high hi lo dyn
    range gain depth freq frequency power pwr prf wf filter persist persistence map mapping
    cf pw cw pd cpa dpi tib tic tis mi thi hd hdr sri crf xres sono ct speckle compound
    frame rate fps hz khz mhz db cm mm mms cms sec bpm vol temp zoom focus foc fr lin linear
    convex curved phased sector endocavity transvaginal tv ta tvs tas probe transducer sag
    sagittal trans transverse long longitudinal rt lt mid upper lower lat med prox dist
    distal proximal ant post sup inf anterior posterior superior inferior bmode mmode cine
    dtce dtci asc st mape harmonic thi tissue colour color elast elastography contrast
    kv kvp ma mas mgy ugy dap esd ei di sid fid grid ap pa lat obl decub portable erect supine
    prone upright semi sitting standing wb flex ext insp exp scout topo tech technologist
    view img image series slice se im acq ser wl ww window level l r lt rt left right both
    bilat marker ruler scale measure dist area circ angle sd ps ed ri pi vmax vmin tamax tamean
    hr fr gest ga edd efw bpd hc ac fl crl mvp afi
    ctdi ctdivol dlp ssde gy mgy mgycm cgy dose kerma pitch rot collimation coll kernel
"""
ANNOTATION_TERMS = frozenset(_ANNOTATION_TERMS_TEXT.split())

_OCR_DIGITS = str.maketrans("oOiIlLsSbBzZgGqD|", "00111155882266901")
_DIGIT_RUN = re.compile(r"(?<![\d.,])\d{6,20}(?![\d]|[.,]\d)")
_CALENDAR = re.compile(
    r"\d{1,4}\s*[/.\-]\s*\d{1,2}\s*[/.\-]\s*\d{2,4}"  # 08/29/1951, 1951-08-29, 29.08.51
    r"|\b(?:19|20)\d{2}\b"  # a year
    r"|\d{1,2}:\d{2}"  # a clock time
    r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b",
    re.IGNORECASE,
)
# A clock time: burned in beside the date, it dates the image to the second (the header
# cleaner removes clock times too).
_CLOCK = re.compile(r"(?<![\d.])\d{1,2}:[0-5]\d(?::[0-5]\d)?(?:\s*[AaPp]\.?[Mm]\.?)?(?![\d.])")
# A calendar date on its own, whatever Presidio makes of it ("Prior Nov 01 2016", "Prior02/23/
# 2011" and "13-0CT-2022" were no DATE_TIME to it): three numbers with one separator repeated,
# or a month's name beside a day. OCR reads an O as a zero ("0CT", "N0V"). A day and a month
# identify as well as the whole date (HIPAA keeps only the year).
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|[o0]ct(?:[o0]ber)?|n[o0]v(?:ember)?|dec(?:ember)?)"
)
_DATE = re.compile(
    r"(?<![\d.])\d{1,4}\s?([/.\-])\s?\d{1,2}\s?\1\s?\d{2,4}(?![\d.])"  # 02/23/2011, 1987-08-13
    rf"|(?<![^\W\d_]){_MONTH}\.?[\s\-/]?\d{{1,2}}(?!\d)"  # Nov 01, SEP-26
    rf"|(?<![\d.])\d{{1,2}}[\s\-/.]?{_MONTH}(?![^\W\d_])",  # 13-OCT, 04 Jul
    re.IGNORECASE,
)
# A value after a field label that only PHI follows ("ID: MR8_39", "Pt: 0C0NNELL"): a misread
# that no longer matches the header is still the patient's ID or name. The label alone ("DOB",
# a context box beside a value read separately) is not evidence; the value needs two letters
# or digits.
_PHI_LABEL = re.compile(
    r"(?:^|(?<=\s))(?:pt|patient|name|id|mrn|pid|dob|born|birth|acc|accession|ref|referring)"
    r"(?![a-z])\s*[:#.]?\s*(?=[^\W_]).*?[^\W_].*?[^\W_]",
    re.IGNORECASE,
)
_NAME_LIKE = frozenset({"PERSON", "ORGANIZATION", "LOCATION"})
_PATTERN_ENTITIES = frozenset(
    {
        "MRN",
        "ACCESSION",
        "DICOM_NAME",
        "TITLED_NAME",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "US_SSN",
    }
)
_CONTACT_ENTITIES = frozenset({"PHONE_NUMBER", "EMAIL_ADDRESS", "US_SSN"})
_ANALYZED_ENTITIES = sorted(_NAME_LIKE | _PATTERN_ENTITIES | {"DATE_TIME"})
_WORD = re.compile(r"[^\W_]+(?:['\u2019.\-][^\W_]+)*")


@dataclass(frozen=True, slots=True)
class PhiVerdict:
    """Whether a line is PHI, the evidence's kinds and score, and why (no text in it)."""

    phi: bool
    score: float
    kinds: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Evidence:
    kind: str
    score: float
    how: str


class PhiClassifier:
    """Classifies OCR lines against an instance's PHI values and Presidio's recognizers.

    ``analyzer`` is the Presidio ``AnalyzerEngine`` the header cleaner built
    (:attr:`radstream.deid.clean.PresidioTextCleaner.analyzer`); without one only the header
    values and the patterns decide (no NER). Verdicts are memoized per (text, PHI values).
    """

    def __init__(
        self,
        analyzer: Any | None = None,
        *,
        threshold: float = DEFAULT_PHI_THRESHOLD,
        cache_size: int = 4096,
    ) -> None:
        self._analyzer = analyzer
        self.threshold = threshold
        self._patterns = clinical_recognizers()
        self._memo = lru_cache(maxsize=cache_size)(self._classify)

    def classify(self, text: str, phi: PhiValues) -> PhiVerdict:
        """The verdict on one line of text read from the pixels."""
        if not any(char.isalnum() for char in text):
            return PhiVerdict(phi=False, score=0.0, reason="nothing legible")
        return self._memo(text, phi)

    def _classify(self, text: str, phi: PhiValues) -> PhiVerdict:
        evidence = [*_header_matcher(phi).matches(text), *self._recognized(text)]
        if not evidence:
            return PhiVerdict(phi=False, score=0.0, reason="no PHI evidence")
        best = max(evidence, key=lambda item: item.score)
        kinds = tuple(dict.fromkeys(item.kind for item in sorted(evidence, key=_strongest)))
        is_phi = best.score >= self.threshold
        reason = f"{best.how} {best.kind}" if is_phi else f"weak evidence ({best.how} {best.kind})"
        return PhiVerdict(phi=is_phi, score=best.score, kinds=kinds, reason=reason)

    def _recognized(self, text: str) -> list[_Evidence]:
        found = [_Evidence("ID_NUMBER", 0.6, "pattern") for _ in _DIGIT_RUN.finditer(text)][:1]
        if _CLOCK.search(text) or _DATE.search(text):
            found.append(_Evidence("DATE_TIME", 0.6, "pattern"))
        if _PHI_LABEL.search(text):
            found.append(_Evidence("LABELLED_VALUE", 0.6, "pattern"))
        if self._analyzer is not None:
            results = self._analyzer.analyze(
                text=text, language="en", entities=_ANALYZED_ENTITIES, score_threshold=0.15
            )
        else:
            results = [
                result
                for recognizer in self._patterns
                for result in recognizer.analyze(text, recognizer.supported_entities, None)
            ]
        for result in results:
            evidence = _judge(text, result.entity_type, result.start, result.end, result.score)
            if evidence is not None:
                found.append(evidence)
        return found


def _strongest(item: _Evidence) -> float:
    return -item.score


def _judge(text: str, entity: str, start: int, end: int, score: float) -> _Evidence | None:
    """One recognizer result as evidence, or None when it is an annotation misread as PHI."""
    span = text[start:end]
    if entity == "DATE_TIME":
        return _date_or_number(span, score)
    if entity in _NAME_LIKE:
        words = [word for word in _WORD.findall(span) if not _annotation_word(word)]
        # A person's name part has four letters or more ("John"); an organization or place
        # five ("HGen", "MapE" are device settings the NER takes for companies).
        letters = 4 if entity == "PERSON" else 5
        if not any(sum(char.isalpha() for char in word) >= letters for word in words):
            return None
        return _Evidence(entity, 0.6 if entity == "PERSON" else 0.55, "entity")
    if entity in _CONTACT_ENTITIES:
        # Presidio scores a bare phone number 0.4 (it might be any number in prose); burned
        # into an image beside a name it is a contact, and HIPAA lists it as an identifier.
        return _Evidence(entity, max(score, 0.6), "pattern")
    return _Evidence(entity, score, "pattern")


def _annotation_word(word: str) -> bool:
    """True for a clinical word, an annotation term, or a compound of them ("mGy-cm", "L/R")."""
    if is_clinical_word(word) or word.casefold() in ANNOTATION_TERMS:
        return True
    parts = [part for part in re.split(r"[-/.\u00b7]+", word) if part]
    return len(parts) > 1 and all(
        is_clinical_word(part) or part.casefold() in ANNOTATION_TERMS for part in parts
    )


def _date_or_number(span: str, score: float) -> _Evidence | None:
    """A DATE_TIME that is a calendar date or clock time; a long number is an ID instead."""
    if _CALENDAR.search(span):
        return _Evidence("DATE_TIME", max(score, 0.6), "entity")
    if _DIGIT_RUN.search(span):
        return _Evidence("ID_NUMBER", 0.6, "pattern")
    return None


# -- the instance's own values ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    kind: str
    text: str  # normalised (casefolded alphanumerics)
    edits: int


class _HeaderMatcher:
    """Finds an instance's header values in OCR text, exactly and with OCR's errors."""

    def __init__(self, phi: PhiValues) -> None:
        self.exact: list[tuple[str, re.Pattern[str]]] = []
        self.words: list[_Target] = []  # single words a device may cut short
        self.numbers: list[tuple[str, str]] = []
        targets: dict[tuple[str, str], _Target] = {}
        for value in phi.values:
            if not _worth_matching(value):
                continue
            pattern = value_pattern(value, letter_boundaries=True)
            if pattern is not None:
                self.exact.append((value.kind, pattern))
            normalised = normalise(value.text)
            if normalised.isdigit():
                self.numbers.append((value.kind, normalised.lstrip("0")))
                continue
            for variant in variants(value):
                text = normalise(variant)
                if len(text) >= MIN_FUZZY_LENGTH and any(char.isalpha() for char in text):
                    edits = math.ceil(len(text) / CHARACTERS_PER_EDIT)
                    targets.setdefault((value.kind, text), _Target(value.kind, text, edits))
            if value.category in (PhiCategory.NAME, PhiCategory.ORGANIZATION, PhiCategory.PLACE):
                for word in tokens(value.text):
                    folded = word.casefold()
                    if len(folded) >= MIN_PREFIX_LENGTH and not is_clinical_word(
                        folded, numbers=False
                    ):
                        self.words.append(_Target(value.kind, folded, 0))
        self.targets = list(targets.values())
        self.sizes = sorted({len(target.text) for target in self.targets})

    def matches(self, text: str) -> Iterable[_Evidence]:
        """Every header value found in ``text``, the best way each kind was found."""
        folded = fold(text)
        words = [word.casefold() for word in tokens(folded)]
        windows = _windows(words, max_words=4)
        found: dict[str, _Evidence] = {}
        for evidence in (
            *self._exact(folded),
            *self._resembling(windows),
            *self._numbers(windows),
            *self._cut_short(words),
        ):
            if evidence.kind not in found or found[evidence.kind].score < evidence.score:
                found[evidence.kind] = evidence
        return found.values()

    def _exact(self, folded: str) -> Iterator[_Evidence]:
        for kind, pattern in self.exact:
            if pattern.search(folded):
                yield _Evidence(kind, 1.0, "matches")

    def _resembling(self, windows: Sequence[str]) -> Iterator[_Evidence]:
        """Values within ``ceil(length / 6)`` edits of a run of words."""
        for target in self.targets:
            if any(
                abs(len(window) - len(target.text)) <= target.edits
                and _within(window, target.text, target.edits)
                for window in windows
            ):
                yield _Evidence(target.kind, 0.9, "resembles")

    def _numbers(self, windows: Sequence[str]) -> Iterator[_Evidence]:
        """Numeric values read with letters for digits, or one digit off when long."""
        for kind, digits in self.numbers:
            for window in windows:
                as_digits = window.translate(_OCR_DIGITS)
                if not as_digits.isdigit():
                    continue
                if as_digits.lstrip("0") == digits:
                    yield _Evidence(kind, 0.9 if as_digits != window else 1.0, "resembles")
                elif len(digits) >= 8 and _within(as_digits.lstrip("0"), digits, 1):
                    yield _Evidence(kind, 0.8, "resembles")

    def _cut_short(self, words: Sequence[str]) -> Iterator[_Evidence]:
        """Words of names and institutions a device truncated ("PATIENTFI...", "CLEVELAN...")."""
        for target in self.words:
            if any(
                MIN_PREFIX_LENGTH <= len(word) < len(target.text)
                and (target.text.startswith(word) or _within(word, target.text[: len(word)], 1))
                for word in words
            ):
                yield _Evidence(target.kind, 0.8, "begins like")


@lru_cache(maxsize=256)
def _header_matcher(phi: PhiValues) -> _HeaderMatcher:
    return _HeaderMatcher(phi)


_PATIENT_NAME_KINDS = frozenset({"PatientName", "OtherPatientNames", "PatientBirthName"})


def _worth_matching(value: PhiValue) -> bool:
    """Skip values that would only match noise: one character, short numbers, clinical words."""
    normalised = normalise(value.text)
    if value.category is PhiCategory.NAME:
        shortest = 2 if value.kind in _PATIENT_NAME_KINDS else 3
        return len(normalised) >= shortest and not normalised.isdigit()
    if len(normalised) < 3 or (normalised.isdigit() and len(normalised.lstrip("0")) < 4):
        return False
    return not is_clinical_vocabulary(value.text)


def _windows(words: Sequence[str], *, max_words: int) -> list[str]:
    """Every run of up to ``max_words`` consecutive words, joined without separators."""
    return [
        "".join(words[start : start + size])
        for size in range(1, max_words + 1)
        for start in range(max(len(words) - size + 1, 0))
    ]


def _within(a: str, b: str, limit: int) -> bool:
    """Whether the optimal string alignment distance of ``a`` and ``b`` is at most ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            cost = char_a != char_b
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit
