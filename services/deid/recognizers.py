"""What the free-text cleaner recognizes, besides the NER: clinical vocabulary and patterns.

* **clinical vocabulary** (:data:`CLINICAL_TERMS`): words of radiology descriptors, report
  boilerplate and equipment, never a name on their own. The cleaner trims name-like findings of
  them (:func:`trim_clinical_edges`) and skips the NER for texts made only of them
  (:func:`is_clinical_phrase`); the verifier excuses IDs and institutions made of them
  (:func:`is_clinical_vocabulary`);
* **the instance's own PHI values** (:class:`InstancePhiRecognizer`), in every rendering
  :mod:`radstream.deid.variants` knows, reported as ``PHI_<CATEGORY>``;
* **our pattern recognizers** (:func:`clinical_recognizers`): MRN, accession number,
  DICOM-style ``LAST^FIRST`` names, titled names like "Dr. Smith", an offline e-mail recognizer
  and ``YYYYMMDD`` dates.

:mod:`radstream.deid.clean` puts these together with Presidio's analyzer.
"""

from __future__ import annotations

import re
from functools import lru_cache

from radstream.common.errors import MissingExtraError
from radstream.deid.phi import PhiCategory, PhiValue, PhiValues
from radstream.deid.variants import fold, normalise, value_pattern

try:
    from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts
except ImportError as error:  # pragma: no cover -- the deid extra is installed where this runs
    raise MissingExtraError("presidio-analyzer", "deid") from error

__all__ = [
    "CLINICAL_TERMS",
    "PHI_ENTITY",
    "InstancePhiRecognizer",
    "clinical_recognizers",
    "instance_recognizer",
    "is_clinical_phrase",
    "is_clinical_vocabulary",
    "is_clinical_word",
    "trim_clinical_edges",
]

# The entity under which the instance's own values of each category are reported.
PHI_ENTITY = {
    category: f"PHI_{category.name}"
    for category in (
        PhiCategory.NAME,
        PhiCategory.DATE,
        PhiCategory.IDENTIFIER,
        PhiCategory.PHONE,
        PhiCategory.ORGANIZATION,
        PhiCategory.PLACE,
    )
}

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


def trim_clinical_edges(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without its leading and trailing clinical words; None if nothing else is left."""
    words = [
        match.span()
        for match in _WORD.finditer(text, start, end)
        if not is_clinical_word(match.group())
    ]
    if not words:
        return None
    return words[0][0], words[-1][1]


class InstancePhiRecognizer(EntityRecognizer):
    """Finds the instance's own PHI values, in all their variants, as ``PHI_<CATEGORY>``."""

    def __init__(self, phi: PhiValues) -> None:
        # The verifier's own patterns (long values match inside longer words too), so what the
        # cleaner leaves behind is not what the verifier then holds the instance for.
        self._patterns = [
            (PHI_ENTITY[value.category], pattern)
            for value in phi.values
            if _worth_matching(value)
            and (pattern := value_pattern(value, letter_boundaries=False)) is not None
        ]
        super().__init__(supported_entities=sorted(PHI_ENTITY.values()), name="InstancePhi")

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
def instance_recognizer(phi: PhiValues) -> InstancePhiRecognizer:
    """The recognizer of ``phi``, cached: a study repeats the same values in every instance."""
    return InstancePhiRecognizer(phi)


def clinical_recognizers() -> list[PatternRecognizer]:
    """Our pattern recognizers: MRN, accession, DICOM-style and titled names, e-mail, DA dates."""
    label_gap = r"\s*(?:[:#=\-]|no\.?|number|num)?\s*[:#]?\s*"  # "MRN: 12", "MRN-QX7731-B"
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
