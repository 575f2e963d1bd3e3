"""The `radstream` command as an operator runs it: a subprocess with the operator's environment."""

from __future__ import annotations

import os
import subprocess
import sys

RADSTREAM = [sys.executable, "-m", "radstream.cli.main"]


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``radstream ARGS`` with ``env`` over this process's environment."""
    return subprocess.run(
        [*RADSTREAM, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
