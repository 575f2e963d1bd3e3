"""A finding a sentence names is affirmed, negated, uncertain or historical, as one reads it."""

from __future__ import annotations

import pytest

from radstream.restructure.assertions import Assertion, assertion_of

A, N, U, H = Assertion.AFFIRMED, Assertion.NEGATED, Assertion.UNCERTAIN, Assertion.HISTORICAL


def _status(sentence: str, mention: str) -> Assertion:
    start = sentence.lower().index(mention.lower())
    return assertion_of(sentence, start, start + len(mention))[0]


@pytest.mark.parametrize(
    ("sentence", "mention", "expected"),
    [
        ("There is a small left pleural effusion.", "pleural effusion", A),
        ("No pneumothorax.", "pneumothorax", N),
        ("No pleural effusion or pneumothorax.", "pneumothorax", N),
        ("There is no focal consolidation, pleural effusion or pneumothorax.", "pneumothorax", N),
        ("Negative for acute fracture.", "fracture", N),
        ("Pneumothorax is not seen.", "pneumothorax", N),
        ("The previously seen effusion has resolved.", "effusion", N),
        ("Pneumothorax: No.", "pneumothorax", N),
        ("Lungs are clear.", "lungs", N),
        ("No effusion, but there is a right lower lobe consolidation.", "consolidation", A),
        ("No effusion; mild cardiomegaly.", "cardiomegaly", A),
        ("No effusion and the heart is enlarged.", "heart", A),
        ("Mild cardiomegaly without pulmonary edema.", "cardiomegaly", A),
        ("Mild cardiomegaly without pulmonary edema.", "pulmonary edema", N),
        ("Possible early pneumonia in the left base.", "pneumonia", U),
        ("Atelectasis versus pneumonia.", "pneumonia", U),
        ("Early pneumonia cannot be excluded.", "pneumonia", U),
        ("Findings suspicious for metastatic disease.", "metastatic disease", U),
        ("Status post cholecystectomy.", "cholecystectomy", H),
        ("History of right rib fractures.", "rib fractures", H),
        ("No change in the 4 mm nodule.", "nodule", A),
        ("No significant change in cardiomegaly.", "cardiomegaly", A),
        ("Heart size is normal.", "heart size", N),
        ("No definite pneumothorax, possible small effusion.", "effusion", U),
    ],
)
def test_a_mention_takes_the_status_of_the_scope_it_lies_in(
    sentence: str, mention: str, expected: Assertion
) -> None:
    assert _status(sentence, mention) is expected


def test_negation_wins_over_uncertainty_where_scopes_overlap() -> None:
    sentence = "No evidence of possible pneumothorax."
    assert _status(sentence, "pneumothorax") is N


def test_the_deciding_trigger_is_named() -> None:
    sentence = "Negative for acute fracture."
    start = sentence.index("fracture")
    assert assertion_of(sentence, start, start + 8) == (N, "Negative for")
