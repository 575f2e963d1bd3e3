"""One number per instance: how likely PHI is still readable in what the pixel stage proposes.

:func:`risk_score` folds the :class:`~radstream.deid.pixels.findings.RiskFeatures` into a
score in [0, 1]; :class:`RiskThreshold` says which scores go to a person. The score is a
*ranking*, not a probability: the guarantee comes from the threshold, which is chosen by
conformal risk control on a labelled calibration split
(:mod:`radstream.deid.pixels.calibration`), so that the expected rate of PHI-bearing
instances released with PHI readable is at most the configured leak rate. Bad weights cannot
break that bound; they only cost review (a score that ranks leaks low forces a low threshold,
and more instances are held). That is why the weights below are plain, stated priors and not
fitted numbers.

How the signals combine: a noisy-OR, ``1 - prod(1 - w_i * s_i)``, each ``s_i`` a signal
scaled to [0, 1] where 1 is "most worrying" and each ``w_i`` in [0, 1]. Every ``w_i * s_i``
is the chance, on its own, that this signal marks a miss; the noisy-OR says any one of them
suffices. The score is therefore non-decreasing in every signal (more worry never lowers it),
stays in [0, 1], and a failed verification is 1.0 whatever else was seen: re-OCR read PHI in
the output, so nothing about the instance may be released without a person.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from radstream.deid.pixels.calibration import (
    FAIL_CLOSED,
    RiskThreshold,
    conformal_threshold,
    load_calibration,
)
from radstream.deid.pixels.findings import RiskFeatures

__all__ = [
    "DEFAULT_LEAK_RATE",
    "FAIL_CLOSED",
    "NEAR_THRESHOLD_MARGIN",
    "WEIGHTS",
    "RiskThreshold",
    "risk_score",
    "threshold_for",
]

DEFAULT_LEAK_RATE = 0.01
"""``--leak-rate``'s default: at most 1% of PHI-bearing instances released with PHI readable."""

NEAR_THRESHOLD_MARGIN = 0.25
"""A PHI score within this distance of the classifier's threshold counts as "near" it."""


@dataclass(frozen=True)
class _Weights:
    """The prior weight of each signal (see the module docstring for why priors suffice)."""

    # A box read with low confidence is the usual way PHI slips through: a misread name no
    # longer matches the header, and Presidio does not see a name in "J0HN SM1TH". Largest
    # weight among the read signals.
    low_confidence: float = 0.6
    # A PHI score close to the classifier's threshold is a coin toss between kept and filled;
    # the box may be PHI kept as an annotation.
    near_phi_threshold: float = 0.5
    # Text detected but not read (or read as junk) cannot be classified at all; whatever it is
    # is kept unless it happens to sit in a filled box. As strong as a misread.
    unread_regions: float = 0.6
    # Text kept where this modality does not put annotations (over anatomy, mid-image) is what
    # the header-matching rules, the field splitting and the border-first triage were not
    # shaped for: a name read in part ("g Clinic"), a misread number. Interior text the stage
    # filled is gone and verified gone; it no longer counts (on the synthetic calibration split
    # the interior text of clean proposals was almost all filled PHI).
    unusual_layout: float = 0.6
    # The feature is the *share* of read boxes kept inside the image; one such box among eight
    # is already the whole worry (a name over the anatomy is not diluted by seven settings).
    unusual_layout_saturation: float = 8.0
    # Frames not checked are frames not read; a cine loop whose overlay changes mid-loop leaks
    # in the frames skipped. Scaled by the fraction skipped.
    unsampled_frames: float = 0.5
    # Any text at all: instances with text are riskier than instances without, so they rank
    # above them even when every other signal is quiet. Small: it is a tie-breaker.
    text_present: float = 0.05
    # Each unread region halves what is left of "all of them harmless": 1 - 0.5**n.
    unread_halving: float = 0.5


WEIGHTS = _Weights()


def risk_score(features: RiskFeatures) -> float:
    """The instance's risk in [0, 1]; 1.0 when verification found PHI readable in the output.

    Non-decreasing in every worry signal: lower ``min_recognition_confidence``, smaller
    ``nearest_phi_margin``, more ``unread_regions``, larger ``unusual_layout``, smaller
    ``frames_sampled_fraction``, ``text_found`` and ``verification_failed``.
    """
    if features.verification_failed:
        return 1.0
    signals = [
        (WEIGHTS.unsampled_frames, 1.0 - _unit(features.frames_sampled_fraction)),
    ]
    if features.text_found:
        near = 1.0 - min(1.0, _unit(features.nearest_phi_margin) / NEAR_THRESHOLD_MARGIN)
        unread = 1.0 - WEIGHTS.unread_halving ** max(0, features.unread_regions)
        layout = min(1.0, _unit(features.unusual_layout) * WEIGHTS.unusual_layout_saturation)
        signals += [
            (WEIGHTS.text_present, 1.0),
            (WEIGHTS.low_confidence, 1.0 - _unit(features.min_recognition_confidence)),
            (WEIGHTS.near_phi_threshold, near),
            (WEIGHTS.unread_regions, unread),
            (WEIGHTS.unusual_layout, layout),
        ]
    keep = 1.0
    for weight, signal in signals:
        keep *= 1.0 - weight * signal
    return min(1.0, max(0.0, 1.0 - keep))


def _unit(value: float) -> float:
    """``value`` clipped to [0, 1]; NaN counts as the worst case for a confidence (0)."""
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


def threshold_for(leak_rate: float = DEFAULT_LEAK_RATE, engine: str = "rapidocr") -> RiskThreshold:
    """The threshold that bounds the leak rate at ``leak_rate`` for ``engine``.

    Picked at run time from the calibration scores and losses shipped as package data
    (``radstream/deid/pixels/calibration/<engine>.json``), so any ``--leak-rate`` gets its own
    threshold. An engine without calibration data, or a rate the data cannot guarantee, gives
    a fail-closed threshold: everything with text is held.
    """
    if not 0.0 < leak_rate < 1.0:
        raise ValueError(f"leak rate must lie strictly between 0 and 1, got {leak_rate}")
    calibration = load_calibration(engine)
    if calibration is None:
        return RiskThreshold(
            value=0.0, leak_rate=leak_rate, engine=engine, n_calibration=0, method=FAIL_CLOSED
        )
    return conformal_threshold(calibration, leak_rate)
