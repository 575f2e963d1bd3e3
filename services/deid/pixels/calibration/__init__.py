"""Choosing the risk threshold so that the leak rate is bounded: conformal risk control.

The event to bound is a *leak*: a PHI-bearing instance released without review while a
ground-truth PHI box is still readable in what was released (less than 95% of its ink hidden,
or read again by OCR). With a threshold ``tau`` an instance is released when its risk is at
most ``tau``, so the loss of calibration instance ``i`` is ``L_i(tau) = leak_i * 1[risk_i <=
tau]`` -- non-decreasing in ``tau``, bounded by 1. Conformal risk control (Angelopoulos,
Bates, Fisch, Lei, Schuster, "Conformal Risk Control", ICLR 2024, Theorem 1) says that for
``n`` exchangeable calibration instances and a new one,

    tau_hat = sup { tau : n/(n+1) * Rhat_n(tau) + 1/(n+1) <= alpha }

gives ``E[L_{n+1}(tau_hat)] <= alpha``, where ``Rhat_n`` is the mean calibration loss. The
population is the PHI-bearing instances (an instance without PHI cannot leak): the bound is
on P(released with PHI readable | the instance carries PHI in its pixels), the rate the issue
asks for. When no ``tau`` qualifies -- ``n`` too small (``1/(n+1) > alpha``), or too many
leaks at low risk -- the threshold fails closed: everything with text is held.

The calibration scores and losses are stored (``<engine>.json`` next to this module), not
only the threshold, so ``--leak-rate`` picks its own threshold at run time.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "CALIBRATED_AS",
    "CONFORMAL_RISK_CONTROL",
    "FAIL_CLOSED",
    "CalibrationRecord",
    "CalibrationSet",
    "RiskThreshold",
    "clopper_pearson",
    "conformal_threshold",
    "load_calibration",
    "pipeline_fingerprint",
]

CONFORMAL_RISK_CONTROL = "conformal_risk_control"
FORMAT_VERSION = 1

FAIL_CLOSED = "fail_closed"
"""The ``method`` of a threshold that cannot guarantee its leak rate: everything with text is held.

Its ``value`` is 0.0: an instance without text whose frames were all checked has risk 0 and
is released (there is nothing a reviewer could look at); any text at all scores above 0.
"""


@dataclass(frozen=True, kw_only=True)
class RiskThreshold:
    """The risk above which an instance with text goes to review instead of being released.

    ``value`` was chosen on ``n_calibration`` labelled instances read by ``engine`` so that the
    expected leak rate is at most ``leak_rate`` (``method`` names how, e.g.
    ``"conformal_risk_control"``). A threshold whose ``method`` is :data:`FAIL_CLOSED` could not
    guarantee ``leak_rate`` with the calibration data at hand: its value is 0.0, so everything
    with text (risk > 0) is held.

    The pipeline asks :meth:`holds` about every instance with pixel data, text or not: the
    calibration counted a PHI-bearing instance whose text the triage missed (risk 0) as a leak
    at every threshold, so the bound covers those too.
    """

    value: float
    leak_rate: float
    engine: str
    n_calibration: int
    method: str

    @property
    def fail_closed(self) -> bool:
        """True when the leak rate was not attainable: everything with text is held."""
        return self.method == FAIL_CLOSED

    def holds(self, risk: float) -> bool:
        """True when an instance with this risk must be held for review (not released).

        Risk 1.0 (verification failed) and NaN are always held, whatever the threshold.
        """
        if math.isnan(risk) or risk >= 1.0:
            return True
        return risk > (0.0 if self.fail_closed else self.value)

    def to_dict(self) -> dict[str, Any]:
        """The threshold as JSON-ready values (for audits and eval reports; no PHI in it)."""
        return {
            "value": self.value,
            "leak_rate": self.leak_rate,
            "engine": self.engine,
            "n_calibration": self.n_calibration,
            "method": self.method,
        }


@dataclass(frozen=True, kw_only=True)
class CalibrationRecord:
    """One labelled calibration instance: its risk and what releasing it would have done.

    ``leak`` is True when the instance carries PHI in its pixels and the pixel stage's
    proposal (its redacted candidate) still shows some of it. No PHI here: numbers only.
    """

    risk: float
    leak: bool
    phi_bearing: bool
    text_found: bool


@dataclass(frozen=True, kw_only=True)
class CalibrationSet:
    """The calibration split's records, read by one engine."""

    engine: str
    records: tuple[CalibrationRecord, ...]
    source: dict[str, Any] = field(default_factory=dict)  # how it was made: seeds, counts

    @property
    def phi_bearing(self) -> tuple[CalibrationRecord, ...]:
        """The population the bound is about."""
        return tuple(record for record in self.records if record.phi_bearing)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: parallel lists, compact enough to ship as package data."""
        return {
            "format": FORMAT_VERSION,
            "engine": self.engine,
            "source": self.source,
            "risk": [record.risk for record in self.records],  # exact: the threshold is one
            "leak": [int(record.leak) for record in self.records],
            "phi_bearing": [int(record.phi_bearing) for record in self.records],
            "text_found": [int(record.text_found) for record in self.records],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationSet:
        """The inverse of :meth:`to_dict`."""
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"calibration data format {data.get('format')!r} is not supported")
        columns = [data["risk"], data["leak"], data["phi_bearing"], data["text_found"]]
        if len({len(column) for column in columns}) != 1:
            raise ValueError("calibration data columns differ in length")
        records = tuple(
            CalibrationRecord(
                risk=float(risk),
                leak=bool(leak),
                phi_bearing=bool(phi),
                text_found=bool(text),
            )
            for risk, leak, phi, text in zip(*columns, strict=True)
        )
        return cls(engine=str(data["engine"]), records=records, source=dict(data.get("source", {})))

    def review_rate(self, threshold: RiskThreshold) -> float:
        """Fraction of text-bearing calibration instances the threshold sends to review."""
        with_text = [record for record in self.records if record.text_found]
        if not with_text:
            return 0.0
        return sum(threshold.holds(record.risk) for record in with_text) / len(with_text)

    def leak_rate(self, threshold: RiskThreshold) -> float:
        """Fraction of PHI-bearing calibration instances released with PHI readable."""
        population = self.phi_bearing
        if not population:
            return 0.0
        released_leaks = sum(r.leak and not threshold.holds(r.risk) for r in population)
        return released_leaks / len(population)


def pipeline_fingerprint() -> str:
    """A SHA-256 over the source of everything between pixels and the release decision.

    The pixel stage (``deid/pixels``, the risk weights included), the OCR engines' code and the
    instance pipeline. A calibration is valid for the pipeline it measured: when this differs
    from the fingerprint stored with it, the bound is no longer guaranteed and the calibration
    must be rerun (``make calibrate-deid``). The generator and this module are left out: they
    do not change what the pipeline decides.
    """
    services = Path(__file__).resolve().parents[3]
    pixels = services / "deid" / "pixels"
    files = sorted(
        path
        for path in pixels.rglob("*.py")
        if path.name != "synthetic.py" and "calibration" not in path.relative_to(pixels).parts
    )
    files += sorted((services / "ocr" / "engines").glob("*.py"))
    files += [services / "ocr" / "engine.py", services / "deid" / "pipeline.py"]
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(services).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


# Engines that read with another engine's calibrated pipeline, and whose calibration they use.
# kserve runs RapidOCR's own ONNX files (radstream.ocr.triton_repository copies them from the
# rapidocr wheel into Triton's repository) with the same PpOcrParameters and the same pre- and
# post-processing in process; only the tensors travel. tests/integration/ocr/
# test_kserve_engine.py checks that it reads box for box, text for text what rapidocr reads, so
# rapidocr's risks and leaks are kserve's (for a server that serves that repository).
CALIBRATED_AS: dict[str, str] = {"kserve": "rapidocr"}


def load_calibration(engine: str) -> CalibrationSet | None:
    """The calibration shipped for ``engine`` (``<engine>.json`` beside this module), or None.

    An engine in :data:`CALIBRATED_AS` gets the calibration of the engine it reads as.
    """
    name = CALIBRATED_AS.get(engine, engine)
    try:
        text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return None
    return CalibrationSet.from_dict(json.loads(text))


def conformal_threshold(calibration: CalibrationSet, alpha: float) -> RiskThreshold:
    """The largest threshold whose conformal bound on the expected leak rate is at most ``alpha``.

    Candidates are the calibration risks below 1 (and 0): between two of them the empirical
    loss is flat, and taking the observed value itself releases exactly what was calibrated.
    Fails closed (:data:`~radstream.deid.pixels.risk.FAIL_CLOSED`, value 0) when none
    qualifies.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"leak rate must lie strictly between 0 and 1, got {alpha}")
    population = calibration.phi_bearing
    n = len(population)
    closed = RiskThreshold(
        value=0.0,
        leak_rate=alpha,
        engine=calibration.engine,
        n_calibration=n,
        method=FAIL_CLOSED,
    )
    if n == 0:
        return closed
    candidates = sorted(
        {0.0} | {r.risk for r in calibration.records if 0.0 <= r.risk < 1.0}, reverse=True
    )
    leak_risks = sorted(r.risk for r in population if r.leak)
    for tau in candidates:  # largest first: the first that qualifies is the supremum
        losses = _count_at_most(leak_risks, tau)
        if (n / (n + 1)) * (losses / n) + 1 / (n + 1) <= alpha:
            return RiskThreshold(
                value=tau,
                leak_rate=alpha,
                engine=calibration.engine,
                n_calibration=n,
                method=CONFORMAL_RISK_CONTROL,
            )
    return closed


def _count_at_most(sorted_values: list[float], limit: float) -> int:
    """How many of ``sorted_values`` are <= ``limit`` (a released leak at threshold ``limit``)."""
    low, high = 0, len(sorted_values)
    while low < high:
        middle = (low + high) // 2
        if sorted_values[middle] <= limit:
            low = middle + 1
        else:
            high = middle
    return low


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided confidence interval for a binomial proportion.

    Solved by bisection on the binomial tail, so no SciPy is needed; exact to 1e-9.
    """
    if trials <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= trials:
        raise ValueError("successes must lie between 0 and trials")
    tail = (1.0 - confidence) / 2.0
    lower = (
        0.0
        if successes == 0
        else _bisect(lambda p: _upper_tail(successes, trials, p) - tail, increasing=True)
    )
    upper = (
        1.0
        if successes == trials
        else _bisect(lambda p: tail - _lower_tail(successes, trials, p), increasing=True)
    )
    return (lower, upper)


def _lower_tail(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return math.fsum(_pmf(i, n, p) for i in range(k + 1))


def _upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return math.fsum(_pmf(i, n, p) for i in range(k, n + 1))


def _pmf(i: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0 if i == 0 else 0.0
    if p >= 1.0:
        return 1.0 if i == n else 0.0
    log = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
    return math.exp(log + i * math.log(p) + (n - i) * math.log1p(-p))


def _bisect(function: Any, *, increasing: bool) -> float:
    """The root in [0, 1] of a monotone ``function`` (sign change assumed)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        value = function(middle)
        if (value < 0) == increasing:
            low = middle
        else:
            high = middle
    return (low + high) / 2
