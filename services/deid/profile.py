"""De-identify one DICOM instance with the PS3.15 Annex E Basic Profile and its options.

:func:`apply_profile` is the core of the deid service: it applies every row of Table E.1-1
(:mod:`radstream.deid._annex_e`) to every element, sequences included, with the selected
options; replaces UIDs, the patient's identity and (optionally) dates consistently under the
project's keys; replaces the file meta header; and marks the result as de-identified. It returns
a new dataset -- the input is not modified -- and the list of what it did to which element.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from radstream.deid._iod_types import attribute_types
from radstream.deid.actions import (
    AppliedAction,
    Mode,
    ProfileWalk,
    TextCleaner,
    WalkSettings,
)
from radstream.deid.dates import date_offset_days
from radstream.deid.markers import add_deid_markers, replace_file_meta
from radstream.deid.options import BASIC_PROFILE_CODE, BASIC_PROFILE_MEANING, ProfileOption
from radstream.deid.phi import PhiValues
from radstream.deid.private import DEFAULT_SAFE_PRIVATE, SafePrivateDictionary
from radstream.deid.pseudonyms import patient_identity, patient_pseudonym
from radstream.deid.rules import annex_e_coverage, compile_rules
from radstream.deid.uids import UidRemapper

__all__ = [
    "BASIC_PROFILE_CODE",
    "BASIC_PROFILE_MEANING",
    "MIN_KEY_BYTES",
    "AppliedAction",
    "DeidKeys",
    "DeidProfile",
    "ProfileOption",
    "ProfileResult",
    "TextCleaner",
    "annex_e_coverage",
    "apply_profile",
]

MIN_KEY_BYTES = 16
_PATIENT_ID = 0x00100020
_ISSUER_OF_PATIENT_ID = 0x00100021
_STUDY_INSTANCE_UID = 0x0020000D
_SOP_CLASS_UID = 0x00080016


@dataclass(frozen=True, kw_only=True)
class DeidProfile:
    """The Basic Profile with a set of options; ``name`` is how configuration refers to it."""

    name: str = "basic"
    options: frozenset[ProfileOption] = frozenset()
    safe_private: SafePrivateDictionary = DEFAULT_SAFE_PRIVATE

    def __post_init__(self) -> None:
        # Accept option names ("retain-uids") as configuration gives them.
        options = frozenset(ProfileOption(option) for option in self.options)
        object.__setattr__(self, "options", options)
        dates = {
            ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES,
            ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
        }
        if dates <= options:
            raise ValueError(
                "choose one of retain-longitudinal-full-dates and "
                "retain-longitudinal-modified-dates: dates are either kept or shifted"
            )


@dataclass(frozen=True, kw_only=True)
class DeidKeys:
    """The project's pseudonymisation keys (PHI-zone secrets; never logged, never in a repr)."""

    uid_key: bytes = field(repr=False)
    patient_key: bytes = field(repr=False)
    date_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("uid_key", "patient_key", "date_key"):
            if len(getattr(self, name)) < MIN_KEY_BYTES:
                raise ValueError(f"{name} must have at least {MIN_KEY_BYTES} bytes")

    @classmethod
    def from_secret(cls, secret: bytes) -> DeidKeys:
        """Derive independent UID, patient and date keys from one secret (HMAC-SHA256)."""
        if len(secret) < MIN_KEY_BYTES:
            raise ValueError(f"the secret must have at least {MIN_KEY_BYTES} bytes")

        def derive(label: str) -> bytes:
            return hmac.new(secret, f"radstream/deid/{label}/v1".encode(), hashlib.sha256).digest()

        return cls(uid_key=derive("uid"), patient_key=derive("patient"), date_key=derive("date"))


@dataclass(frozen=True, kw_only=True)
class ProfileResult:
    """A de-identified instance and what it took; ``uid_map`` and the offset stay in the PHI zone.

    ``date_offset_days`` is the shift applied to dates (0 unless the Modified Dates option is
    selected); ``uid_map`` maps each replaced original UID to its replacement.
    """

    dataset: Dataset
    actions: tuple[AppliedAction, ...]
    patient_pseudonym: str
    date_offset_days: int
    uid_map: Mapping[str, str]


def _top_text(ds: Dataset, tag: int) -> str:
    """A top-level string value, or "" when absent or unreadable (the walk handles those)."""
    try:
        elem = ds.get(tag)
    except Exception:
        return ""
    if elem is None or elem.value is None or isinstance(elem.value, bytes | bytearray):
        return ""
    return str(elem.value).strip("\x00 ")


def apply_profile(
    ds: Dataset,
    profile: DeidProfile,
    keys: DeidKeys,
    *,
    clean_text: TextCleaner,
    phi: PhiValues,
) -> ProfileResult:
    """De-identify ``ds`` with ``profile``; returns a new dataset and the applied actions.

    ``clean_text`` performs the C (clean) action on free text, given the instance's own PHI
    values ``phi``. Elements that cannot be processed are removed and recorded, never kept.
    """
    options = profile.options
    book = compile_rules(frozenset(option.value for option in options))
    identity = patient_identity(
        _top_text(ds, _PATIENT_ID),
        _top_text(ds, _ISSUER_OF_PATIENT_ID),
        fallback=_top_text(ds, _STUDY_INSTANCE_UID),
    )
    pseudonym = patient_pseudonym(identity, keys.patient_key)
    shift = ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in options
    offset = date_offset_days(identity, keys.date_key) if shift else None
    remap = UidRemapper(keys.uid_key)

    def pseudonym_of(patient_id: str, issuer: str) -> str:
        return patient_pseudonym(
            patient_identity(patient_id, issuer, fallback=""), keys.patient_key
        )

    walk = ProfileWalk(
        WalkSettings(
            book=book,
            top_types=attribute_types(_top_text(ds, _SOP_CLASS_UID)),
            remap=remap,
            retain_uids=ProfileOption.RETAIN_UIDS in options,
            patient_pseudonym=pseudonym,
            pseudonym_of=pseudonym_of,
            date_offset_days=offset,
            safe_private=profile.safe_private
            if ProfileOption.RETAIN_SAFE_PRIVATE in options
            else None,
            clean_text=clean_text,
            phi=phi,
        )
    )
    out = walk.dataset(ds, None, "", Mode.PLAIN)

    def record_meta(tag: int, action: str, rule: str) -> None:
        walk.record("", tag, action, rule)

    out.file_meta = replace_file_meta(ds, out, remap, record_meta)
    add_deid_markers(out, options)
    return ProfileResult(
        dataset=out,
        actions=tuple(walk.actions),
        patient_pseudonym=pseudonym,
        date_offset_days=offset or 0,
        uid_map=dict(remap.changed),
    )
