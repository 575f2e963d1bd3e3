"""Defects the harness finds that are open in code another change owns: counted, not failed.

Each entry is one distinct failure (kind, where) exactly as the campaign reports it, with what
it is and who fixes it. The harness counts such inputs apart ("known" in the summary) so that
``make test`` stays green while the owner fixes it; any other failure still fails the run.
Delete the entry with the fix: the regression test that comes with the fix takes over.
"""

from __future__ import annotations

from typing import Final

KNOWN_OPEN: Final[dict[tuple[str, str], str]] = {
    (
        "internal-error",
        "unexpected TypeError in step write at tag.py:33; nothing was released",
    ): (
        "deid: an IS/DS value with characters outside latin-1 (e.g. Count Rate (0018,1243) "
        "in full-width digits in an ISO_IR 192 instance) is read, kept by the profile, and "
        "cannot be written (pydicom's number-string writer); the instance is rejected with "
        "reason 'internal' instead of a documented reason (deid's pipeline or the reader)"
    ),
    (
        "internal-error",
        "unexpected ValueError in step write at tag.py:33; nothing was released",
    ): (
        "deid: an element whose dictionary VR is ambiguous and that the profile keeps (e.g. "
        "retired Variable Pixel Data (7FDE,0010), 'OB or OW') cannot be written in an "
        "explicit-VR output; rejected with reason 'internal' (deid's pipeline)"
    ),
    ("phi", "released instance (bytes of a binary or numeric element)"): (
        "deid: a PHI value carried as the bytes of a kept numeric element (e.g. Rows (0028,0010) "
        "of an implicit-VR instance holding 24 bytes of a patient name: read as 12 US values) "
        "is released; the verifier searches text values only, not the written bytes "
        "(deid's verifier)"
    ),
}
