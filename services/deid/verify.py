"""The verification pass: re-read a de-identified header and hunt for the original PHI values.

Fail closed: a hit means the instance is not released. So the search is built to miss nothing
a reader could recognise, and accepts false positives as the price:

* **where**: every element of every sequence item at any depth, the file meta, private
  elements, each value of a multi-valued element, person names, and binary values (UN, OB, raw
  bytes), which are decoded as text when they look textual and otherwise searched as their
  printable runs (the way ``strings`` reads them). Skipped: pixel and other sample data; the
  de-identification markers (PatientIdentityRemoved, DeidentificationMethod and its code
  sequence, LongitudinalTemporalInformationModified); and text that comes from the standard
  rather than the patient -- coding scheme designators, and the code value and meaning of codes
  from published schemes (:data:`STANDARD_SCHEMES`).
* **exact**: every rendering of each value (:mod:`radstream.deid.variants`), ignoring case,
  accents, punctuation, spacing and leading zeros. Renderings of five or more characters match
  even inside a longer word, except at an edge that is an initial or a word under four
  letters; shorter ones only as whole words. Numbers never match inside a longer number, so an
  ID is not found inside a UID by chance.
* **fuzzy**: values of four or more characters that contain a letter also match a run of words
  of the text within ``ceil(length / 8)`` edits (insertions, deletions, substitutions and
  swaps of neighbours): one typo up to eight characters, two up to sixteen. Digit-only values
  (IDs, dates) are not matched by edit distance -- a shifted date or the next ID number is one
  edit away -- but by reading letters a scanner or a typist confuses with digits (O/0, I/l/1,
  S/5, B/8, Z/2, G/6) as those digits. Binary runs and CS elements of standard attributes
  (defined terms: "PNAME" is one edit from "NAME") get the exact search only.
* **codes**: a value of a standard CS attribute that is one of that attribute's defined terms
  (:mod:`radstream.deid.defined_terms`) is a code, not patient data: a PHI value equal to the
  whole of it (a test patient called "KNEE" with Body Part Examined ``KNEE``) is not a hit.
  Only there: the same value anywhere else, a defined term of another attribute, or a PHI
  value that is only part of the code (a patient "PELVIS" in ``ABDOMENPELVIS``) still is.

Too short or too generic to mean anything, and so skipped: values under three characters,
numbers under four digits, and IDs or institution names made only of clinical words (as the
cleaner keeps them) or of the equipment maker's words ("TOSHIBA", "TERASON_US").
Results name the element path and the kind of value, never the value.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import count
from typing import Literal, TypeVar

from pydicom.dataset import Dataset

from radstream.deid.clean import REPLACEMENT_TOKENS
from radstream.deid.defined_terms import is_defined_term
from radstream.deid.header import (
    HeaderValue,
    dictionary_vr_or_un,
    header_values,
    raw_header_values,
)
from radstream.deid.phi import PhiCategory, PhiValue, PhiValues
from radstream.deid.recognizers import is_clinical_vocabulary, is_clinical_word
from radstream.deid.variants import fold, normalise, tokens, value_pattern, variants
from radstream.dicom.raw_header import RawInstance

__all__ = ["ResidualPhi", "find_residual_phi"]

MatchKind = Literal["exact", "fuzzy"]

MIN_VALUE_LENGTH = 3
MIN_NUMBER_DIGITS = 4
FUZZY_MIN_LENGTH = 4
CHARACTERS_PER_EDIT = 8

_MARKER_KEYWORDS = frozenset(
    {
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
    }
)
# Coding schemes whose code values and meanings are published terminology, not patient data.
STANDARD_SCHEMES = frozenset(
    {
        "DCM",
        "SCT",
        "SRT",
        "SNM3",
        "LN",
        "UCUM",
        "FMA",
        "RADLEX",
        "NCIt",
        "UMLS",
        "ACR",
        "MSH",
        "I10",
        "I9C",
        "ICD10",
        "HL7",
        "RXNORM",
        "NDC",
        "UBERON",
        "ITIS_TSN",
        "PUBCHEM_CID",
        "IBSI",
        "ISO3166_1",
        "ISO639_1",
        "ISO639_2",
        "NEU",
        "CPT4",
        "C4",
        "C5",
        "NCDR",
    }
)
_CODE_TAGS = frozenset({0x00080100, 0x00080104, 0x00080119, 0x00080120})  # value, meaning
_SCHEME_TAGS = frozenset({0x00080102, 0x00080103})  # designator, version
_REPLACEMENT = re.compile("|".join(re.escape(token) for token in sorted(REPLACEMENT_TOKENS)))
_OCR_DIGITS = str.maketrans("oOiIlLsSbBzZgG", "00111155882266")


@dataclass(frozen=True, kw_only=True)
class ResidualPhi:
    """A PHI value of the original header found again in the output."""

    path: str  # "(0008,1115)[0]/(0008,1155)", the element holding it
    kind: str  # the keyword of the attribute the value came from
    match: MatchKind


@dataclass(frozen=True)
class _FuzzyTarget:
    kind: str
    text: str  # normalised rendering
    words: int  # how many words the rendering has
    letters: frozenset[str]
    edits: int


@dataclass(frozen=True)
class _Exact:
    kind: str
    pattern: re.Pattern[str]
    whole: str  # the value, normalised: what a code must equal to excuse a hit


@dataclass(frozen=True)
class _Search:
    exact: tuple[_Exact, ...]
    # A literal every match of an exact pattern contains (see _anchors): most texts hold none,
    # and this alternation of plain words is ten times cheaper to search than the patterns.
    gate: re.Pattern[str] | None
    any_exact: re.Pattern[str] | None  # all exact patterns at once, for texts past the gate
    fuzzy: tuple[_FuzzyTarget, ...]
    numbers: tuple[tuple[str, str], ...]  # (kind, digits without leading zeros)
    window_sizes: frozenset[int]
    # window length -> (index, target) of the fuzzy targets a window of that length can reach
    targets_by_size: dict[int, tuple[tuple[int, _FuzzyTarget], ...]]
    serial: int  # names this search in the memo (see below)


def find_residual_phi(
    output: Dataset | RawInstance,
    phi: PhiValues,
    *,
    allowed: Iterable[str] = (),
    retained_uids: bool = False,
) -> list[ResidualPhi]:
    """Every place in ``output`` where a value of ``phi`` (or a variant of it) is found again.

    Parameters
    ----------
    output
        The de-identified dataset (file meta included when it has one), parsed by pydicom or,
        as the pipeline reads what it wrote, by radstream's own codec
        (:func:`~radstream.dicom.raw_header.read_raw_instance`): both give the same values.
    phi
        The values collected from the original header.
    allowed
        Whole element values the de-identifier wrote on purpose (the patient pseudonym), never
        reported even if a value happens to look like them.
    retained_uids
        The profile kept the original UIDs (Retain UIDs option): UI elements are not searched.
        Many vendors build UIDs from the date and the device serial number, so an original UID
        "contains" both; that is the option's known cost, not a failure of de-identification.
    """
    if isinstance(output, RawInstance):
        every = list(raw_header_values(output, include_meta=True, numbers=True))
    else:
        every = list(header_values(output, include_meta=True, numbers=True))
    search = _search_for(_without_equipment_names(phi, every))
    allowed_texts = {text.strip() for text in allowed}
    found: dict[tuple[str, str], MatchKind] = {}
    windows: dict[str, set[str]] = defaultdict(set)  # normalised window -> paths
    searched = _searched_values(every, retained_uids=retained_uids)
    instance_codes = _instance_codes(searched)
    for item in searched:
        coded = _standard_coded_string(item)
        # Binary runs are noise, and defined terms ("PNAME", "TEXT") sit one edit away from
        # too many names: both get the exact search only.
        fuzzy = not (item.binary or coded)
        coil = item.keyword in _COIL_NAME_KEYWORDS
        for text in item.texts:
            if text.strip() in allowed_texts:
                continue
            if coil:  # depends on the instance's codes: not memoized
                kinds, text_windows = _text_answer(
                    text, search, item.keyword, coded=coded, fuzzy=fuzzy, codes=instance_codes
                )
            else:
                kinds, text_windows = _memo_text_answer(
                    text, search, item.keyword if coded else "", coded=coded, fuzzy=fuzzy
                )
            for kind in kinds:
                found[(item.path, kind)] = "exact"
            for window in text_windows:
                windows[window].add(item.path)
    for (path, kind), match in _fuzzy_hits(windows, search).items():
        found.setdefault((path, kind), match)
    return [
        ResidualPhi(path=path, kind=kind, match=match)
        for (path, kind), match in sorted(found.items())
    ]


def _without_equipment_names(phi: PhiValues, output: Sequence[HeaderValue]) -> PhiValues:
    """``phi`` less the IDs and institutions spelled with the equipment maker's words.

    A station called "TERASON_US" or an institution called "TOSHIBA" names the equipment, which
    the profile keeps in Manufacturer and ManufacturerModelName; it identifies no one.
    """
    maker_words = frozenset(
        word.casefold()
        for item in output
        if item.tag in _MAKER_TAGS and not item.parents
        for text in item.texts
        for word in tokens(text)
    )
    if not maker_words:
        return phi
    return _without_maker_words(phi, maker_words)


@lru_cache(maxsize=256)
def _without_maker_words(phi: PhiValues, maker_words: frozenset[str]) -> PhiValues:
    """See :func:`_without_equipment_names`; cached, as every instance of a series asks alike."""

    def names_equipment(value: PhiValue) -> bool:
        words = [word.casefold() for word in tokens(value.text)]
        return value.category is not PhiCategory.NAME and all(
            word in maker_words or is_clinical_word(word, numbers=False) for word in words
        )

    kept = tuple(value for value in phi.values if not names_equipment(value))
    return phi if len(kept) == len(phi.values) else PhiValues(values=kept)


# Coil names are the maker's names for a piece of hardware ("SENSE-Knee-8", "HeadNeck_20"): they
# spell the anatomy the coil is built for, which the instance also codes in its CS attributes.
_COIL_NAME_KEYWORDS = frozenset({"ReceiveCoilName", "TransmitCoilName"})


def _instance_codes(searched: Iterable[HeaderValue]) -> frozenset[str]:
    """The words of this instance's coded values: whole CS values that are defined terms."""
    return frozenset(
        word.casefold()
        for item in searched
        if _standard_coded_string(item)
        for text in item.texts
        if is_defined_term(item.keyword, text)
        for word in tokens(text)
    )


def _without_words(text: str, words: frozenset[str]) -> str:
    """``text`` with every word in ``words`` blanked out (the rest is searched as before).

    A patient called "KNEE" in a knee study leaves "KNEE" in Body Part Examined (a code, excused
    above) and in the knee coil's name. Only the words the instance itself codes are blanked, and
    only in coil names: the same word in any other attribute still holds the instance, and any
    other PHI value in a coil name is still found.
    """
    if not words:
        return text
    return _WORD_RUN.sub(
        lambda match: " " if match.group().casefold() in words else match.group(), text
    )


_WORD_RUN = re.compile(r"[^\W_]+")


_MAKER_TAGS = frozenset({0x00080070, 0x00081090})  # Manufacturer, ManufacturerModelName


def _searched_values(every: Sequence[HeaderValue], *, retained_uids: bool) -> list[HeaderValue]:
    """The values of the output that could carry PHI (see the module docstring for the rest)."""
    standard_codes = {
        _item_path(item.path)
        for item in every
        if item.tag == 0x00080102 and item.texts[0].strip() in STANDARD_SCHEMES
    }
    return [
        item
        for item in every
        if not (item.keyword in _MARKER_KEYWORDS or _MARKER_KEYWORDS.intersection(item.parents))
        and not (retained_uids and item.vr == "UI")
        and item.tag not in _SCHEME_TAGS
        and not (item.tag in _CODE_TAGS and _item_path(item.path) in standard_codes)
    ]


def _standard_coded_string(item: HeaderValue) -> bool:
    """A CS element of a standard attribute that the dictionary says is CS (not a wrong VR)."""
    return item.vr == "CS" and bool(item.keyword) and dictionary_vr_or_un(item.tag) == "CS"


def _item_path(path: str) -> str:
    return path.rpartition("/")[0]


def _exact_kinds(text: str, search: _Search, *, code: str | None = None) -> set[str]:
    """The kinds of PHI found in ``text``; ``code`` is the normalised text when it is a code.

    A code excuses only the PHI values equal to the whole of it.
    """
    if search.gate is None or not search.gate.search(text):
        return set()
    if search.any_exact is None or not search.any_exact.search(text):
        return set()
    return {
        exact.kind for exact in search.exact if exact.whole != code and exact.pattern.search(text)
    }


def _windows(text: str, sizes: frozenset[int]) -> set[str]:
    words = [word.casefold() for word in tokens(text)]
    return {
        "".join(words[start : start + size])
        for size in sizes
        for start in range(max(len(words) - size + 1, 0))
    }


def _fuzzy_hits(windows: dict[str, set[str]], search: _Search) -> dict[tuple[str, str], MatchKind]:
    hits: dict[tuple[str, str], MatchKind] = {}
    for window, kind, match in (*_typo_hits(windows, search), *_ocr_hits(windows, search)):
        for path in windows[window]:
            hits.setdefault((path, kind), match)
    return hits


def _typo_hits(windows: Iterable[str], search: _Search) -> Iterator[tuple[str, str, MatchKind]]:
    """The windows within edit distance of a fuzzy target, by target, window length, window.

    That order (the one a walk target by target yields) decides which match a path reports
    when several windows of it hit one kind; each window's hits come from the memo.
    """
    found: list[tuple[int, int, int, str, str, MatchKind]] = []
    for position, window in enumerate(windows):
        for target, kind, match in _memo_typo_hits(window, search):
            found.append((target, len(window), position, window, kind, match))
    found.sort(key=lambda hit: hit[:3])
    for _, _, _, window, kind, match in found:
        yield window, kind, match


def _window_typo_hits(window: str, search: _Search) -> tuple[tuple[int, str, MatchKind], ...]:
    """(target index, kind, match) for every fuzzy target ``window`` is close enough to."""
    hits = []
    letters = frozenset(window)
    for index, target in search.targets_by_size.get(len(window), ()):
        # Each edit changes the set of characters by at most two: a cheap first test.
        if len(letters ^ target.letters) > 2 * target.edits:
            continue
        distance = _edit_distance(window, target.text, target.edits)
        if distance <= target.edits:
            hits.append((index, target.kind, _exact_or_fuzzy(distance)))
    return tuple(hits)


def _exact_or_fuzzy(distance: int) -> MatchKind:
    return "exact" if distance == 0 else "fuzzy"


# -- memo --------------------------------------------------------------------------------------
# The instances of a series repeat most of their texts (descriptions, codes, dates, equipment),
# and each answer below is a function of the text and the search alone (the search is one per
# set of PHI values, so one per patient and study). Memoized per search by its serial number,
# never by id() (an id can be reused once a search is dropped). Bounded: emptied when full.

_MEMO_LIMIT = 1 << 13  # entries per memo: a few MB in practice, tens at worst
_MEMO_TEXT_CHARS = 128  # longer texts are searched every time (their windows are many)
_K = TypeVar("_K")
_V = TypeVar("_V")
_text_memo: dict[tuple[int, str, str, bool, bool], tuple[frozenset[str], frozenset[str]]] = {}
_typo_memo: dict[tuple[int, str], tuple[tuple[int, str, MatchKind], ...]] = {}


def _text_answer(
    text: str,
    search: _Search,
    keyword: str,
    *,
    coded: bool,
    fuzzy: bool,
    codes: frozenset[str] | None = None,
) -> tuple[frozenset[str], frozenset[str]]:
    """The PHI kinds ``text`` holds exactly, and its word windows for the fuzzy search.

    ``coded``: the text is the value of a standard CS attribute ``keyword`` (a defined term of
    it excuses a PHI value equal to the whole of it). ``fuzzy``: windows are wanted.
    ``codes``: the instance's coded words, blanked out first (coil names only).
    """
    searchable = fold(_REPLACEMENT.sub(" ", text))
    if codes is not None:
        searchable = _without_words(searchable, codes)
    code = normalise(text) if coded and is_defined_term(keyword, text) else None
    kinds = frozenset(_exact_kinds(searchable, search, code=code))
    found = frozenset(_windows(searchable, search.window_sizes)) if fuzzy else frozenset()
    return kinds, found


def _memo_text_answer(
    text: str, search: _Search, keyword: str, *, coded: bool, fuzzy: bool
) -> tuple[frozenset[str], frozenset[str]]:
    if len(text) > _MEMO_TEXT_CHARS:  # long free text: its windows would fill the memory
        return _text_answer(text, search, keyword, coded=coded, fuzzy=fuzzy)
    key = (search.serial, text, keyword, coded, fuzzy)
    answer = _text_memo.get(key)
    if answer is None:
        answer = _text_answer(text, search, keyword, coded=coded, fuzzy=fuzzy)
        _remember(_text_memo, key, answer)
    return answer


def _memo_typo_hits(window: str, search: _Search) -> tuple[tuple[int, str, MatchKind], ...]:
    key = (search.serial, window)
    hits = _typo_memo.get(key)
    if hits is None:
        hits = _window_typo_hits(window, search)
        _remember(_typo_memo, key, hits)
    return hits


def _remember(memo: dict[_K, _V], key: _K, value: _V) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value


def forget_searches() -> None:
    """Drop the compiled searches and every memoized answer (tests and benchmarks start cold)."""
    _search_for.cache_clear()
    _without_maker_words.cache_clear()
    for memo in (_text_memo, _typo_memo):
        memo.clear()


def _ocr_hits(windows: Iterable[str], search: _Search) -> Iterator[tuple[str, str, MatchKind]]:
    for window in windows:
        as_digits = window.translate(_OCR_DIGITS)
        if as_digits == window or not as_digits.isdigit():
            continue  # plain numbers are the exact search's; words are not numbers
        for kind, digits in search.numbers:
            if as_digits.lstrip("0") == digits:
                yield window, kind, "fuzzy"


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance, giving up (returning ``limit + 1``) past ``limit``."""
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
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


@lru_cache(maxsize=256)
def _search_for(phi: PhiValues) -> _Search:
    exact: dict[tuple[str, str], _Exact] = {}
    fuzzy: dict[tuple[str, str], _FuzzyTarget] = {}
    numbers: set[tuple[str, str]] = set()
    anchors: set[str] = set()
    for value in phi.values:
        if not _searchable(value):
            continue
        normalised = normalise(value.text)
        pattern = value_pattern(value, letter_boundaries=False)
        if pattern is not None:
            exact.setdefault(
                (value.kind, pattern.pattern),
                _Exact(kind=value.kind, pattern=pattern, whole=normalised),
            )
            anchors |= _anchors(value)
        if normalised.isdigit():
            numbers.add((value.kind, normalised.lstrip("0")))
            continue
        for variant in variants(value):
            target = _fuzzy_target(value.kind, variant)
            if target is not None:
                fuzzy.setdefault((target.kind, target.text), target)
    exact_patterns = tuple(exact.values())
    any_exact = (
        re.compile(
            "|".join(f"(?:{each.pattern.pattern})" for each in exact_patterns), re.IGNORECASE
        )
        if exact_patterns
        else None
    )
    # Longest first only to keep the alternation's order stable; any anchor found opens the gate.
    ordered_anchors = sorted(anchors, key=lambda anchor: (-len(anchor), anchor))
    gate = (
        re.compile("|".join(re.escape(anchor) for anchor in ordered_anchors), re.IGNORECASE)
        if ordered_anchors
        else None
    )
    sizes = {size for t in fuzzy.values() for size in (t.words - 1, t.words, t.words + 1)}
    by_size: dict[int, list[tuple[int, _FuzzyTarget]]] = defaultdict(list)
    for index, target in enumerate(fuzzy.values()):
        length = len(target.text)
        for size in range(length - target.edits, length + target.edits + 1):
            by_size[size].append((index, target))
    return _Search(
        exact=exact_patterns,
        gate=gate,
        any_exact=any_exact,
        fuzzy=tuple(fuzzy.values()),
        numbers=tuple(sorted(numbers)),
        window_sizes=frozenset(size for size in sizes if size > 0) | {1},
        targets_by_size={size: tuple(targets) for size, targets in by_size.items()},
        serial=next(_SERIALS),
    )


_SERIALS = count()


def _anchors(value: PhiValue) -> set[str]:
    """One literal per rendering of ``value`` that every match of its exact pattern contains.

    :func:`~radstream.deid.variants.value_pattern` matches a rendering as its tokens in order,
    separated by any non-alphanumerics, each token literally (case-insensitively) except that a
    number of two or more digits may gain or lose leading zeros: so a match always holds the
    token's digits from the first significant one ("0" for a token of zeros). The longest such
    literal of each rendering is its anchor; a text in which no anchor occurs, compared with the
    same IGNORECASE rules, cannot match any pattern, and the costly search is skipped.
    """
    found = set()
    for variant in variants(value):
        literals = [
            part.lstrip("0") or "0" if part.isdigit() and len(part) > 1 else part
            for part in tokens(variant)
        ]
        if literals:
            found.add(max(literals, key=len))
    return found


def _searchable(value: PhiValue) -> bool:
    normalised = normalise(value.text)
    if len(normalised) < MIN_VALUE_LENGTH:
        return False
    if normalised.isdigit() and len(normalised.lstrip("0") or "0") < MIN_NUMBER_DIGITS:
        return False
    return value.category is PhiCategory.NAME or not is_clinical_vocabulary(value.text)


def _fuzzy_target(kind: str, variant: str) -> _FuzzyTarget | None:
    words = [word.casefold() for word in tokens(variant)]
    text = "".join(words)
    if len(text) < FUZZY_MIN_LENGTH or not any(char.isalpha() for char in text):
        return None
    return _FuzzyTarget(
        kind=kind,
        text=text,
        words=len(words),
        letters=frozenset(text),
        edits=math.ceil(len(text) / CHARACTERS_PER_EDIT),
    )
