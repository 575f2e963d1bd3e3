"""The fake PHI the fuzz seeds carry, and the search for it in everything a target emits.

Every seed (DICOM headers, HL7 segments, FHIR resources, event bodies) carries these values in
the places real PHI lives. None of them may come out of a target anywhere a value must never
go: a response, an acknowledgment, a log line, a warning, an audit record, a dead letter's
error text, a de-identified instance. The search looks for the distinctive *tokens* inside the
values, case-insensitively, so a value that was upper-cased, split into name components or cut
short still counts.
"""

from __future__ import annotations

import re
from typing import Final

# The values planted in seeds. Names with and without '^', identifiers with letters and short
# digit runs: the shapes the log filter's patterns may miss, so only code that never handles a
# value keeps them out.
PATIENT_NAME: Final = "QUIXBERG^ZANTHEA^MARGOLD"
PATIENT_NAME_PLAIN: Final = "Zanthea Quixberg"
PATIENT_ID: Final = "QX7731MRN"
OTHER_PATIENT_ID: Final = "MRN-QX7731-B"
ACCESSION: Final = "ACQX5520"
BIRTH_DATE: Final = "19470311"
ADDRESS: Final = "17 Quixberg Lane, Margoldton"
PHONE: Final = "555-0142 Quixberg"
EMAIL: Final = "zanthea.quixberg@example.org"
INSTITUTION: Final = "Saint Quixberg Infirmary"
PHYSICIAN: Final = "VELLAMORE^QUIXBY"
FREE_TEXT: Final = (
    "Patient Zanthea Quixberg (MRN QX7731MRN) seen at Saint Quixberg Infirmary, "
    "call Dr Quixby Vellamore"
)

# What the search looks for: tokens no code, dummy, pseudonym or placeholder contains.
TOKENS: Final[tuple[str, ...]] = ("quixberg", "zanthea", "margold", "qx7731", "acqx552", "quixby")
_SEARCH: Final = re.compile("|".join(TOKENS), re.IGNORECASE)
_SEARCH_BYTES: Final = re.compile("|".join(TOKENS).encode(), re.IGNORECASE)


def planted_in(output: str | bytes | None) -> list[str]:
    """The planted tokens found in ``output`` (lowercase, in order of appearance)."""
    if not output:
        return []
    if isinstance(output, bytes):
        return [match.group().decode().lower() for match in _SEARCH_BYTES.finditer(output)]
    return [match.group().lower() for match in _SEARCH.finditer(output)]


def context_of(output: str | bytes, token: str, width: int = 70) -> str:
    """The text around the first ``token`` in ``output``, for a failure report."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    at = text.lower().find(token)
    return text[max(0, at - width) : at + len(token) + width].replace("\n", " ")
