"""Patient pseudonyms: a keyed HMAC of the patient's identity (Patient ID + Issuer of Patient ID).

The same patient under the same project key always gets the same pseudonym, across studies and
runs, and nobody without the key can compute it from a guessed Patient ID (a plain hash could be
reversed by trying every MRN). The pseudonym replaces Patient ID and, by choice, Patient's Name
too: downstream viewers group by name, and a name equal to the ID says "de-identified" more
plainly than a dummy shared by every patient.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["PSEUDONYM_PREFIX", "patient_identity", "patient_pseudonym"]

PSEUDONYM_PREFIX = "ANON"


def patient_identity(patient_id: str, issuer: str, *, fallback: str) -> str:
    """The string a patient's pseudonym and date offset derive from.

    Without a Patient ID there is nothing that links studies of one patient, so the identity
    falls back to ``fallback`` (the Study Instance UID): consistent within the study, and never
    merging unrelated patients who merely share an empty ID.
    """
    patient_id = patient_id.strip()
    if not patient_id:
        return f"study\x1f{fallback.strip()}"
    return f"patient\x1f{issuer.strip()}\x1f{patient_id}"


def patient_pseudonym(identity: str, key: bytes) -> str:
    """``ANON`` + 16 base32 characters (80 bits): valid as LO (Patient ID) and as PN."""
    digest = hmac.new(key, identity.encode("utf-8"), hashlib.sha256).digest()
    return PSEUDONYM_PREFIX + base64.b32encode(digest[:10]).decode("ascii")
