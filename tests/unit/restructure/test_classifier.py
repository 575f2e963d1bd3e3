"""The trained finding classifier: marked features, inference equal to training's, grounded output.

Training runs here on a few hand-written labelled reports (the shipped model is trained on
Rad-ReStruct's train split by ``make train-restructure``); what is checked is that the shipped
file reads back into a classifier whose probabilities are scikit-learn's, that a word inside a
negation is a different feature from the same word affirmed, and that the hybrid backend never
states a finding it cannot ground in a sentence.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from radstream.restructure.classifier import FindingClassifier, features, load_classifier, train
from radstream.restructure.hybrid import HybridBackend
from radstream.restructure.rules import RulesBackend
from radstream.restructure.structured import FindingStatus
from radstream.restructure.template import load_template

TEMPLATE = load_template("chest-xray-radrestruct")
CARDIOMEGALY = ("cardiovascular system", "diseases", "cardiomegaly")
EFFUSION = ("respiratory system", "sub_areas", "pleura", "diseases", "pleural effusion")

REPORTS = [
    ("FINDINGS: The heart is enlarged. Lungs are clear.", {CARDIOMEGALY}),
    ("FINDINGS: Heart size is enlarged. No effusion.", {CARDIOMEGALY}),
    ("FINDINGS: The heart is enlarged with small bilateral effusions.", {CARDIOMEGALY, EFFUSION}),
    ("FINDINGS: Enlarged heart. Right pleural effusion.", {CARDIOMEGALY, EFFUSION}),
    ("FINDINGS: Normal heart size. Left pleural effusion.", {EFFUSION}),
    ("FINDINGS: Normal heart size. Lungs are clear.", set()),
    ("FINDINGS: Heart is normal. No pleural effusion.", set()),
    ("FINDINGS: The heart is not enlarged. No pneumothorax.", set()),
    ("FINDINGS: Moderate pleural effusion on the right.", {EFFUSION}),
    ("FINDINGS: No acute disease. Normal mediastinum.", set()),
]


@pytest.fixture(scope="module")
def classifier() -> FindingClassifier:
    document = train(
        [report for report, _ in REPORTS],
        [labels for _, labels in REPORTS],
        TEMPLATE,
        folds=2,
        c_grid=(20.0,),
    )
    return FindingClassifier(json.loads(json.dumps(document)))  # as written to and read from disk


def test_a_negated_word_is_another_feature_than_the_same_word_affirmed() -> None:
    report = "FINDINGS: No pleural effusion. Heart is enlarged."
    tokens = features(report, RulesBackend(TEMPLATE).structure(report), TEMPLATE.finding_paths())
    assert "NEG_effusion" in tokens and "effusion" not in tokens
    assert "enlarged" in tokens
    index = TEMPLATE.finding_paths().index(EFFUSION)
    assert f"R{index}_absent" in tokens  # the rules backend's reading is a feature too


def test_the_classifier_reads_its_training_reports_back(classifier: FindingClassifier) -> None:
    rules = RulesBackend(TEMPLATE)
    for report, labels in REPORTS:
        tokens = features(report, rules.structure(report), TEMPLATE.finding_paths())
        probabilities = classifier.probabilities(tokens)
        assert (probabilities[CARDIOMEGALY] > 0.5) == (CARDIOMEGALY in labels), report


def test_probabilities_equal_scikit_learns_on_the_same_features() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    texts = pytest.importorskip("sklearn.feature_extraction.text")
    from radstream.restructure.classifier import _ngrams

    rules = RulesBackend(TEMPLATE)
    docs = [features(r, rules.structure(r), TEMPLATE.finding_paths()) for r, _ in REPORTS]
    vectorizer = texts.TfidfVectorizer(
        analyzer=lambda tokens: list(_ngrams(tokens).elements()), min_df=2, sublinear_tf=True
    )
    matrix = vectorizer.fit_transform(docs)
    y = [CARDIOMEGALY in labels for _, labels in REPORTS]
    model = sklearn.LogisticRegression(C=20.0, max_iter=3000).fit(matrix, y)
    document = train(
        [r for r, _ in REPORTS],
        [labels for _, labels in REPORTS],
        TEMPLATE,
        folds=2,
        c_grid=(20.0,),
    )
    ours = FindingClassifier(document)
    for doc, expected in zip(docs, model.predict_proba(matrix)[:, 1], strict=True):
        assert ours.probabilities(doc)[CARDIOMEGALY] == pytest.approx(expected, abs=0.02)


def test_the_hybrid_backend_states_only_what_a_sentence_grounds(
    classifier: FindingClassifier,
) -> None:
    backend = HybridBackend(TEMPLATE, classifier)
    report = "FINDINGS: The heart is enlarged. Lungs are clear."
    structured = backend.structure(report)
    found = {finding.path: finding for finding in structured.findings}
    assert found[CARDIOMEGALY].status is FindingStatus.PRESENT
    [evidence] = found[CARDIOMEGALY].evidence
    assert evidence.of(report) == "The heart is enlarged."  # not the lungs' sentence
    assert structured.provenance.backend == "hybrid"
    assert all(finding.evidence for finding in structured.findings)


def test_a_classifier_for_another_template_is_refused(classifier: FindingClassifier) -> None:
    with pytest.raises(ValueError, match="chest-xray-radrestruct"):
        HybridBackend(load_template("ct-abdomen"), classifier)


def test_the_shipped_classifier_is_trained_on_the_train_split_only() -> None:
    shipped = load_classifier("chest-xray-radrestruct")
    assert shipped is not None
    assert shipped.trained_on["split"] == "train" and shipped.trained_on["reports"] > 2000
    assert 0.0 < shipped.threshold < 1.0
    assert len(shipped.heads) >= 100
    assert load_classifier("ct-abdomen") is None  # no labelled CT reports exist


def test_the_shipped_file_is_compact(tmp_path: Path) -> None:
    name = "chest-xray-radrestruct.classifier.json.gz"
    path = Path(__file__).parents[3] / "services" / "restructure" / "models" / name
    assert path.stat().st_size < 1_000_000
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        assert json.load(stream)["format"] == 1
