"""A finding classifier trained on labelled reports: where the template's words are not enough.

The rules backend finds what a report names in the template's own words; reports also say
"the heart is enlarged" for cardiomegaly and "XXXX" where the source's de-identification ate a
word. Where labelled reports exist (Rad-ReStruct's train split for the chest radiograph
template), one logistic regression per finding reads the report's words, each marked with the
assertion status of the scope it lies in (``NEG_effusion``, ``UNC_pneumonia``), and the rules
backend's own reading (``R17_present``), and says whether the finding is present.

Training (:func:`train`, ``python -m radstream.restructure.classifier``) needs scikit-learn and
the labelled data; the result is a small JSON file of vocabulary, IDF weights and the largest
coefficients per finding, read by :class:`FindingClassifier` with the standard library alone,
so a hospital's install carries no training stack and no training data. The decision
threshold is chosen by cross-validation on the training split only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any

from radstream.restructure.assertions import Assertion, scopes
from radstream.restructure.rules import RulesBackend
from radstream.restructure.structured import StructuredReport
from radstream.restructure.template import Template
from radstream.restructure.text import find_sections, normalize, split_sentences

__all__ = ["FindingClassifier", "features", "load_classifier", "train"]

FORMAT = 1
_MARK = {Assertion.NEGATED: "NEG_", Assertion.UNCERTAIN: "UNC_", Assertion.HISTORICAL: "HIS_"}
_RANK = {Assertion.NEGATED: 3, Assertion.UNCERTAIN: 2, Assertion.HISTORICAL: 1}
_WORD = re.compile(r"[a-z]+")
_KEEP_PER_FINDING = 400  # the largest coefficients kept per finding (the rest are ~0)


def features(report: str, rules: StructuredReport, paths: Sequence[tuple[str, ...]]) -> list[str]:
    """The tokens a report is classified by: marked words, then the rules backend's reading."""
    text = normalize(report)
    tokens: list[str] = []
    for section in find_sections(text):
        for sentence in split_sentences(text, section):
            sentence_text = sentence.span.of(text)
            found = scopes(sentence_text)
            for word in _WORD.finditer(sentence_text.lower()):
                mark = ""
                best = 0
                for scope in found:
                    inside = scope.start <= word.start() and word.end() <= scope.end
                    if inside and _RANK[scope.assertion] > best:
                        mark, best = _MARK[scope.assertion], _RANK[scope.assertion]
                tokens.append(mark + word.group())
            tokens.append("EOS")
    index = {path: number for number, path in enumerate(paths)}
    tokens.extend(f"R{index[f.path]}_{f.status.value}" for f in rules.findings if f.path in index)
    return tokens


def _ngrams(tokens: Sequence[str]) -> Counter[str]:
    grams = Counter(tokens)
    grams.update(f"{a} {b}" for a, b in pairwise(tokens))
    return grams


@dataclass(frozen=True)
class _Head:
    weights: dict[int, float]
    bias: float


class FindingClassifier:
    """Per-finding logistic regressions over TF-IDF n-grams (see the module docstring)."""

    def __init__(self, document: dict[str, Any]) -> None:
        if document.get("format") != FORMAT:
            raise ValueError("not a finding classifier of this version")
        self.template_id: str = document["template"]
        self.trained_on: dict[str, Any] = document["trained_on"]
        self.vocabulary: dict[str, int] = document["vocabulary"]
        self.idf: list[float] = document["idf"]
        self.threshold: float = document["threshold"]
        self.paths = [tuple(path) for path in document["paths"]]
        self._grams = {column: gram for gram, column in self.vocabulary.items()}
        self.heads = {
            tuple(head["path"]): _Head(
                {int(k): float(v) for k, v in head["weights"].items()}, float(head["bias"])
            )
            for head in document["heads"]
        }

    def vector(self, tokens: Sequence[str]) -> dict[int, float]:
        """The report's TF-IDF vector (sublinear term frequency, unit length), sparse."""
        weights = {
            self.vocabulary[gram]: (1 + math.log(count)) * self.idf[self.vocabulary[gram]]
            for gram, count in _ngrams(tokens).items()
            if gram in self.vocabulary
        }
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {column: w / norm for column, w in weights.items()}

    def probabilities(self, tokens: Sequence[str]) -> dict[tuple[str, ...], float]:
        """P(present) per finding the classifier has a head for."""
        vector = self.vector(tokens)
        return {
            path: _sigmoid(head.bias + sum(vector.get(c, 0.0) * w for c, w in head.weights.items()))
            for path, head in self.heads.items()
        }

    def contributions(self, tokens: Sequence[str], path: tuple[str, ...]) -> dict[str, float]:
        """How much each n-gram of the report pushed ``path`` towards present (for grounding)."""
        head = self.heads[path]
        vector = self.vector(tokens)
        return {
            self._grams[column]: value * head.weights[column]
            for column, value in vector.items()
            if column in head.weights
        }


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


_MODELS = "radstream.restructure.models"


def load_classifier(template_id: str) -> FindingClassifier | None:
    """The classifier shipped for a template, or None (templates without labelled data)."""
    name = f"{template_id}.classifier.json.gz"
    resource = resources.files(_MODELS).joinpath(name)
    if not resource.is_file():
        return None
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        return FindingClassifier(json.load(text))


def train(
    reports: Sequence[str],
    labels: Sequence[set[tuple[str, ...]]],
    template: Template,
    *,
    c_grid: Sequence[float] = (10.0, 20.0, 40.0),
    folds: int = 5,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one head per finding with two or more positive reports; returns the JSON document.

    The regularization (from ``c_grid``) and the decision threshold are the pair that maximizes
    micro F1 over out-of-fold predictions on ``reports`` (the training split: nothing of the
    evaluation split is seen).
    """
    import numpy as np  # noqa: PLC0415 -- the training stack is not needed to classify
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.model_selection import KFold  # noqa: PLC0415

    paths = template.finding_paths()
    backend = RulesBackend(template)
    docs = [features(r, backend.structure(r), paths) for r in reports]
    vectorizer = TfidfVectorizer(
        analyzer=lambda tokens: list(_ngrams(tokens).elements()), min_df=2, sublinear_tf=True
    )
    matrix = vectorizer.fit_transform(docs)
    targets = {p: np.array([p in label for label in labels]) for p in paths}
    trained = [p for p in paths if targets[p].sum() >= 2]
    truth = np.stack([targets[p] for p in trained], axis=1)
    best: tuple[float, float, float] = (-1.0, 0.0, 0.0)  # (cv micro F1, C, threshold)
    for c in c_grid:
        out_of_fold = np.zeros((len(reports), len(trained)))
        for fit, held in KFold(folds, shuffle=True, random_state=0).split(matrix):
            for column, path in enumerate(trained):
                y = targets[path][fit]
                if y.any() and not y.all():
                    model = LogisticRegression(C=c, max_iter=3000).fit(matrix[fit], y)
                    out_of_fold[held, column] = model.predict_proba(matrix[held])[:, 1]
        for t in np.arange(0.05, 0.61, 0.01):
            score = _micro_f1(out_of_fold >= t, truth)
            if score > best[0]:
                best = (score, c, float(t))
    cv_f1, c, threshold = best
    heads = []
    for path in trained:
        model = LogisticRegression(C=c, max_iter=3000).fit(matrix, targets[path])
        coefficients = model.coef_[0]
        keep = np.argsort(-np.abs(coefficients))[:_KEEP_PER_FINDING]
        heads.append(
            {
                "path": list(path),
                "bias": float(model.intercept_[0]),
                "weights": {str(int(k)): round(float(coefficients[k]), 5) for k in keep},
            }
        )
    vocabulary = {str(gram): int(column) for gram, column in vectorizer.vocabulary_.items()}
    return {
        "format": FORMAT,
        "template": template.id,
        "template_version": template.version,
        "trained_on": {
            **(source or {}),
            "reports": len(reports),
            "c": c,
            "c_grid": list(c_grid),
            "folds": folds,
        },
        "threshold": round(threshold, 2),
        "cv_micro_f1": round(cv_f1, 4),
        "paths": [list(p) for p in paths],
        "vocabulary": vocabulary,
        "idf": [round(float(v), 5) for v in vectorizer.idf_],
        "heads": heads,
    }


def _micro_f1(predicted: Any, truth: Any) -> float:
    tp = float((predicted & truth).sum())
    fp = float((predicted & ~truth).sum())
    fn = float((~predicted & truth).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m radstream.restructure.classifier DATA.jsonl``: train the chest classifier."""
    import argparse  # noqa: PLC0415

    from radstream.restructure.batch import report_text  # noqa: PLC0415
    from radstream.restructure.template import load_template  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m radstream.restructure.classifier")
    parser.add_argument("data", type=Path, help="Rad-ReStruct's radrestruct_dev.jsonl")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    raw = args.data.read_bytes()
    records = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    train_split = [r for r in records if r["split"] == "train"]
    template = load_template("chest-xray-radrestruct")
    document = train(
        [report_text(r) for r in train_split],
        [{tuple(e["path"]) for e in r["structured"]} for r in train_split],
        template,
        source={
            "data": args.data.name,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "split": "train",
        },
    )
    out = args.out or Path(__file__).parent / "models" / f"{template.id}.classifier.json.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", encoding="utf-8") as stream:
        json.dump(document, stream, separators=(",", ":"))
    print(
        f"{len(document['heads'])} finding heads, C {document['trained_on']['c']}, threshold "
        f"{document['threshold']} (cross-validated micro F1 {document['cv_micro_f1']}), {out} "
        f"{out.stat().st_size} bytes"
    )
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
