"""Where a benchmark's results go: a JSON file beside the printed tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_report(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` as JSON to ``path`` and say where it went and how long the run took."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {path}  (wall {report['wall_s']:.0f}s)")
