"""The risk score: in [0, 1], non-decreasing in every worry signal, 1.0 on failed verification;
and the threshold: which risks it holds for review."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from radstream.deid.pixels.findings import RiskFeatures
from radstream.deid.pixels.risk import FAIL_CLOSED, RiskThreshold, risk_score, threshold_for

QUIET = RiskFeatures(text_found=True, min_recognition_confidence=0.99, nearest_phi_margin=0.9)

# Each signal, from calm to worrying.
WORSENING = {
    "min_recognition_confidence": [1.0, 0.9, 0.7, 0.4, 0.0],
    "nearest_phi_margin": [1.0, 0.3, 0.2, 0.05, 0.0],
    "unread_regions": [0, 1, 2, 5],
    "unusual_layout": [0.0, 0.3, 0.7, 1.0],
    "frames_sampled_fraction": [1.0, 0.5, 0.1, 0.0],
}


@pytest.mark.parametrize("signal", sorted(WORSENING))
def test_risk_rises_with_every_signal_from_any_starting_point(signal: str) -> None:
    others = {name: values for name, values in WORSENING.items() if name != signal}
    for combination in itertools.product(*(values[::2] for values in others.values())):
        base = replace(QUIET, **dict(zip(others, combination, strict=True)))
        scores = [risk_score(replace(base, **{signal: value})) for value in WORSENING[signal]]
        assert scores == sorted(scores), (signal, combination, scores)
        assert all(0.0 <= score <= 1.0 for score in scores)
        assert scores[-1] > scores[0]


def test_text_ranks_above_no_text_and_a_quiet_instance_without_text_is_zero() -> None:
    assert risk_score(RiskFeatures()) == 0.0
    assert risk_score(QUIET) > 0.0


def test_failed_verification_is_certain_risk_whatever_else_was_seen() -> None:
    assert risk_score(replace(QUIET, verification_failed=True)) == 1.0
    assert risk_score(RiskFeatures(verification_failed=True)) == 1.0


def test_nan_confidence_counts_as_the_worst() -> None:
    worst = risk_score(replace(QUIET, min_recognition_confidence=0.0))
    assert risk_score(replace(QUIET, min_recognition_confidence=math.nan)) == worst


def test_threshold_holds_risks_above_it_and_always_certain_or_unknown_risk() -> None:
    threshold = RiskThreshold(
        value=0.3, leak_rate=0.01, engine="rapidocr", n_calibration=500, method="crc"
    )
    assert not threshold.holds(0.0)
    assert not threshold.holds(0.3)
    assert threshold.holds(0.31)
    generous = replace(threshold, value=1.0)
    assert generous.holds(1.0)
    assert generous.holds(math.nan)


def test_fail_closed_threshold_holds_everything_with_text_and_nothing_without() -> None:
    closed = RiskThreshold(
        value=0.9, leak_rate=0.01, engine="x", n_calibration=10, method=FAIL_CLOSED
    )
    assert closed.fail_closed
    assert closed.holds(risk_score(QUIET))
    assert not closed.holds(risk_score(RiskFeatures()))


def test_engine_without_calibration_data_fails_closed() -> None:
    threshold = threshold_for(0.01, engine="no-such-engine")
    assert threshold.fail_closed
    assert threshold.n_calibration == 0


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1, 2.0])
def test_leak_rate_outside_the_open_unit_interval_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="leak rate"):
        threshold_for(rate)
