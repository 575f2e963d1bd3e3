"""How much each target is fuzzed, and the Hypothesis settings that say so.

``make test`` (no ``FUZZ_BUDGET``): :data:`CI_BUDGET` inputs per target, derandomized (the same
inputs every run, no example database), so the suite stays fast and deterministic.
``make fuzz`` sets ``FUZZ_BUDGET`` (inputs per target): random generation from the seed that
``--hypothesis-seed`` names, with Hypothesis' example database under ``.build/fuzz/``.
"""

from __future__ import annotations

import os
from typing import Final

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.fuzz.campaign import FUZZ_DIR

CI_BUDGET: Final = 200


def full_run() -> bool:
    """Whether this is ``make fuzz`` (a budget was given), not the short run in ``make test``."""
    return bool(os.environ.get("FUZZ_BUDGET"))


def budget(weight: float = 1.0) -> int:
    """Inputs for one target: the run's budget times the target's ``weight`` (at least 1)."""
    total = int(os.environ.get("FUZZ_BUDGET") or CI_BUDGET)
    return max(1, round(total * weight))


def fuzz_settings(weight: float = 1.0) -> settings:
    """Hypothesis settings for a fuzz target (see the module doc)."""
    full = full_run()
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("FUZZ_SHRINK"):
        phases.append(Phase.shrink)
    return settings(
        max_examples=budget(weight),
        derandomize=not full,
        database=DirectoryBasedExampleDatabase(str(FUZZ_DIR / "hypothesis")) if full else None,
        deadline=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
