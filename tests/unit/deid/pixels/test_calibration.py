"""Conformal risk control: the threshold bounds the expected leak rate, and no more than it must."""

from __future__ import annotations

import numpy as np
import pytest

from radstream.deid.pixels.calibration import (
    CONFORMAL_RISK_CONTROL,
    CalibrationRecord,
    CalibrationSet,
    clopper_pearson,
    conformal_threshold,
    load_calibration,
)
from radstream.deid.pixels.risk import (
    DEFAULT_LEAK_RATE,
    FAIL_CLOSED,
    threshold_for,
)


def _records(rng: np.random.Generator, n: int) -> tuple[CalibrationRecord, ...]:
    """PHI-bearing instances whose leak probability rises with risk: P(leak | r) = r**2."""
    risk = rng.random(n)
    leak = rng.random(n) < risk**2
    return tuple(
        CalibrationRecord(risk=float(r), leak=bool(k), phi_bearing=True, text_found=True)
        for r, k in zip(risk, leak, strict=True)
    )


@pytest.mark.parametrize(("alpha", "n"), [(0.05, 300), (0.02, 500)])
def test_mean_held_out_leak_rate_over_random_splits_is_at_most_alpha_and_close_to_it(
    alpha: float, n: int
) -> None:
    rng = np.random.default_rng(20240613)
    trials, test_size = 300, 2000
    rates = []
    for _ in range(trials):
        threshold = conformal_threshold(CalibrationSet(engine="t", records=_records(rng, n)), alpha)
        test_risk = rng.random(test_size)
        test_leak = rng.random(test_size) < test_risk**2
        released = np.array([not threshold.holds(float(r)) for r in test_risk])
        rates.append(float(np.mean(test_leak & released)))
    mean = float(np.mean(rates))
    standard_error = float(np.std(rates)) / np.sqrt(trials)
    # Theorem 1: E <= alpha. Theorem 2 (continuous scores): E >= alpha - 2/(n+1) -- so a
    # needlessly cautious threshold (one that holds far more than it must) fails too.
    assert mean <= alpha + 3 * standard_error
    assert mean >= alpha - 2 / (n + 1) - 3 * standard_error


def test_the_largest_threshold_whose_bound_holds_is_chosen() -> None:
    # n = 199 PHI-bearing: the bound is (losses + 1) / 200 <= 0.02 -> at most 3 leaks released.
    leaks_at = {0.2, 0.4, 0.5, 0.7}
    risks = [i / 199 for i in range(199)]
    records = tuple(
        CalibrationRecord(
            risk=r,
            leak=any(abs(r - at) < 0.5 / 199 for at in leaks_at),
            phi_bearing=True,
            text_found=True,
        )
        for r in risks
    )
    leak_risks = sorted(r.risk for r in records if r.leak)
    assert len(leak_risks) == 4
    threshold = conformal_threshold(CalibrationSet(engine="t", records=records), 0.02)
    assert threshold.method == CONFORMAL_RISK_CONTROL
    assert threshold.n_calibration == 199
    # Three leaks may be released: the threshold is the last risk below the fourth leak.
    assert leak_risks[2] <= threshold.value < leak_risks[3]
    assert threshold.value == max(r for r in risks if r < leak_risks[3])
    assert threshold.holds(leak_risks[3])


def test_instances_without_phi_do_not_count_towards_n() -> None:
    rng = np.random.default_rng(1)
    phi = _records(rng, 150)
    clean = tuple(
        CalibrationRecord(risk=0.0, leak=False, phi_bearing=False, text_found=False)
        for _ in range(1000)
    )
    threshold = conformal_threshold(CalibrationSet(engine="t", records=phi + clean), 0.05)
    assert threshold.n_calibration == 150


def test_too_few_instances_for_the_rate_fail_closed() -> None:
    # 1/(n+1) > alpha: not even a perfect calibration set can guarantee 1% with 98 instances.
    quiet = tuple(
        CalibrationRecord(risk=0.1, leak=False, phi_bearing=True, text_found=True)
        for _ in range(98)
    )
    threshold = conformal_threshold(CalibrationSet(engine="t", records=quiet), 0.01)
    assert threshold.method == FAIL_CLOSED
    assert threshold.holds(0.1)
    assert not threshold.holds(0.0)  # nothing found, nothing for a person to look at
    more = (*quiet, quiet[0])  # 99: (0 + 1) / 100 <= 0.01
    assert conformal_threshold(CalibrationSet(engine="t", records=more), 0.01).value == 0.1


def test_leaks_the_text_check_missed_count_at_every_threshold() -> None:
    missed = CalibrationRecord(risk=0.0, leak=True, phi_bearing=True, text_found=False)
    quiet = CalibrationRecord(risk=0.3, leak=False, phi_bearing=True, text_found=True)
    records = (missed,) * 5 + (quiet,) * 195
    assert conformal_threshold(CalibrationSet(engine="t", records=records), 0.02).fail_closed
    assert conformal_threshold(CalibrationSet(engine="t", records=records), 0.05).value == 0.3


def test_review_and_leak_rates_on_the_calibration_set() -> None:
    records = (
        CalibrationRecord(risk=0.0, leak=False, phi_bearing=False, text_found=False),
        CalibrationRecord(risk=0.1, leak=False, phi_bearing=True, text_found=True),
        CalibrationRecord(risk=0.5, leak=True, phi_bearing=True, text_found=True),
        CalibrationRecord(risk=0.9, leak=True, phi_bearing=True, text_found=True),
    )
    calibration = CalibrationSet(engine="t", records=records)
    threshold = conformal_threshold(calibration, 0.99)
    assert threshold.value == 0.9
    assert calibration.review_rate(threshold) == 0.0
    assert calibration.leak_rate(threshold) == pytest.approx(2 / 3)
    closed = conformal_threshold(calibration, 0.01)
    assert calibration.review_rate(closed) == 1.0
    assert calibration.leak_rate(closed) == 0.0


def test_calibration_data_round_trips_through_json_shape() -> None:
    rng = np.random.default_rng(7)
    calibration = CalibrationSet(engine="rapidocr", records=_records(rng, 20), source={"n": 20})
    again = CalibrationSet.from_dict(calibration.to_dict())
    assert again.engine == "rapidocr"
    assert [r.leak for r in again.records] == [r.leak for r in calibration.records]
    assert [r.risk for r in again.records] == pytest.approx([r.risk for r in calibration.records])
    with pytest.raises(ValueError, match="format"):
        CalibrationSet.from_dict({**calibration.to_dict(), "format": 99})


def test_clopper_pearson_matches_its_closed_forms_at_the_edges() -> None:
    low, high = clopper_pearson(0, 200)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.025 ** (1 / 200), abs=1e-9)
    low, high = clopper_pearson(50, 50)
    assert low == pytest.approx(0.025 ** (1 / 50), abs=1e-9)
    assert high == 1.0


def test_clopper_pearson_covers_the_true_rate_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    p, n = 0.03, 150
    hits = 0
    for successes in rng.binomial(n, p, size=400):
        low, high = clopper_pearson(int(successes), n)
        hits += low <= p <= high
    assert hits / 400 >= 0.95


def test_the_shipped_calibration_guarantees_the_default_rate_on_its_own_split() -> None:
    calibration = load_calibration("rapidocr")
    assert calibration is not None
    assert calibration.source["split"] == "calibration"  # never the held-out seeds
    threshold = threshold_for(DEFAULT_LEAK_RATE, "rapidocr")
    assert (threshold.engine, threshold.leak_rate) == ("rapidocr", DEFAULT_LEAK_RATE)
    assert not threshold.fail_closed
    n = threshold.n_calibration
    assert n == len(calibration.phi_bearing) >= 99
    released_leaks = calibration.leak_rate(threshold) * n
    assert (released_leaks + 1) / (n + 1) <= DEFAULT_LEAK_RATE


def test_a_looser_leak_rate_never_gets_a_stricter_threshold() -> None:
    rates = [0.005, 0.01, 0.02, 0.05, 0.1, 0.3]
    values = [threshold_for(rate, "rapidocr").value for rate in rates]
    assert values == sorted(values)
