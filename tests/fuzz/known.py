"""Defects the harness finds that are open in code another change owns: counted, not failed.

Each entry is one distinct failure (kind, where) exactly as the campaign reports it, with what
it is and who fixes it. The harness counts such inputs apart ("known" in the summary) so that
``make test`` stays green while the owner fixes it; any other failure still fails the run.
Delete the entry with the fix: the regression test that comes with the fix takes over.
"""

from __future__ import annotations

from typing import Final

KNOWN_OPEN: Final[dict[tuple[str, str], str]] = {}
