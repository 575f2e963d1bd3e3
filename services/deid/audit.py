"""What de-identification did to an instance, kept as records apart from the released data.

Two records per instance, both stored in the PHI zone only:

* :class:`AuditRecord` -- hashes and sizes of input and output, the outcome and its reasons,
  every action applied (path, tag, keyword, action code, deciding rule), the profile with its
  options and DCM codes, the pixel policy and the software versions. It holds no value read
  from the instance, so it can be shown to auditors and reviewers.
* :class:`ReidentificationRecord` -- the original patient ID and the pseudonym it became, the
  date offset, and the map from original to replacement UIDs. It *is* PHI: with it the released
  instance can be traced back to the patient. It is kept for the re-identification process the
  project's governance allows, and never released.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydicom

import radstream
from radstream.deid.profile import BASIC_PROFILE_CODE, AppliedAction, DeidProfile

__all__ = [
    "AUDIT_SCHEMA",
    "REIDENTIFICATION_SCHEMA",
    "AuditRecord",
    "Digest",
    "ReidentificationRecord",
    "SoftwareVersions",
]

AUDIT_SCHEMA = "radstream.deid.audit/1"
REIDENTIFICATION_SCHEMA = "radstream.deid.reidentification/1"


@dataclass(frozen=True, kw_only=True)
class Digest:
    """SHA-256 and size of a byte string."""

    sha256: str
    size: int

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """Hash ``data``."""
        return cls(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


@dataclass(frozen=True, kw_only=True)
class SoftwareVersions:
    """Versions of the software that produced an output."""

    radstream: str = radstream.__version__
    pydicom: str = pydicom.__version__


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """The audit trail of one instance; holds no value read from the instance."""

    input: Digest
    output: Digest | None
    outcome: str
    reasons: tuple[str, ...]
    error_type: str | None
    error_message: str | None
    failed_step: str | None
    actions: tuple[AppliedAction, ...]
    profile: DeidProfile
    pixel_policy: str
    started_at: datetime
    finished_at: datetime
    sop_class_uid: str | None = None
    modality: str | None = None
    # The pixel stage's decision, reasons, counts and costs (PixelReport.to_audit; no text).
    pixels: Mapping[str, Any] | None = None
    software: SoftwareVersions = field(default_factory=SoftwareVersions)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {
            "schema": AUDIT_SCHEMA,
            "input": _digest(self.input),
            "output": _digest(self.output) if self.output is not None else None,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "error": (
                {
                    "type": self.error_type,
                    "message": self.error_message,
                    "step": self.failed_step,
                }
                if self.error_type is not None
                else None
            ),
            "sop_class_uid": self.sop_class_uid,
            "modality": self.modality,
            "profile": profile_description(self.profile),
            "pixel_policy": self.pixel_policy,
            "pixels": dict(self.pixels) if self.pixels is not None else None,
            "actions": [_action(action) for action in self.actions],
            "software": {"radstream": self.software.radstream, "pydicom": self.software.pydicom},
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
        }

    def to_json(self) -> str:
        """The record as one line of JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, kw_only=True)
class ReidentificationRecord:
    """How to get from the released instance back to the patient: PHI-zone data only."""

    input_sha256: str
    original_patient_id: str
    patient_pseudonym: str
    date_offset_days: int
    uid_map: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {
            "schema": REIDENTIFICATION_SCHEMA,
            "input_sha256": self.input_sha256,
            "original_patient_id": self.original_patient_id,
            "patient_pseudonym": self.patient_pseudonym,
            "date_offset_days": self.date_offset_days,
            "uid_map": dict(sorted(self.uid_map.items())),
        }

    def to_json(self) -> str:
        """The record as one line of JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def profile_description(profile: DeidProfile) -> dict[str, Any]:
    """The profile as recorded: name, the basic profile's DCM code, and each option's code."""
    options: Sequence[Any] = sorted(profile.options, key=lambda option: str(option.value))
    return {
        "name": profile.name,
        "code": BASIC_PROFILE_CODE,
        "options": [
            {"name": str(option.value), "code": option.code, "meaning": option.meaning}
            for option in options
        ],
    }


def _digest(digest: Digest) -> dict[str, Any]:
    return {"sha256": digest.sha256, "size": digest.size}


def _action(action: AppliedAction) -> dict[str, str]:
    return {
        "path": action.path,
        "tag": action.tag,
        "keyword": action.keyword,
        "action": action.action,
        "rule": action.rule,
    }
