"""De-identification of DICOM instances: PS3.15 Annex E metadata profile, fail-closed release.

Public names are imported lazily, on first use: ``import radstream.deid`` loads neither pydicom
nor spaCy, so the service registry and the CLI stay light, and a missing extra surfaces as
"pip install 'radstream[deid]'" only where de-identification is actually used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radstream.common.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from radstream.deid.audit import AuditRecord, ReidentificationRecord
    from radstream.deid.batch import BatchSummary, deidentify_directory
    from radstream.deid.burned_in import (
        DEFAULT_PIXEL_POLICY,
        HoldPossibleBurnedInText,
        PixelAssessment,
        PixelPolicy,
    )
    from radstream.deid.clean import PresidioTextCleaner, build_text_cleaner
    from radstream.deid.config import DeidSettings
    from radstream.deid.errors import DeidError
    from radstream.deid.phi import PhiValue, PhiValues, collect_phi_values
    from radstream.deid.pipeline import InstanceOutcome, InstanceStatus, deidentify_instance
    from radstream.deid.profile import (
        AppliedAction,
        DeidKeys,
        DeidProfile,
        ProfileOption,
        ProfileResult,
        apply_profile,
    )
    from radstream.deid.verify import ResidualPhi, find_residual_phi

__all__ = [
    "DEFAULT_PIXEL_POLICY",
    "AppliedAction",
    "AuditRecord",
    "BatchSummary",
    "DeidError",
    "DeidKeys",
    "DeidProfile",
    "DeidSettings",
    "HoldPossibleBurnedInText",
    "InstanceOutcome",
    "InstanceStatus",
    "PhiValue",
    "PhiValues",
    "PixelAssessment",
    "PixelPolicy",
    "PresidioTextCleaner",
    "ProfileOption",
    "ProfileResult",
    "ReidentificationRecord",
    "ResidualPhi",
    "apply_profile",
    "build_text_cleaner",
    "collect_phi_values",
    "deidentify_directory",
    "deidentify_instance",
    "find_residual_phi",
]

_MODULE_OF = {
    "AuditRecord": "audit",
    "ReidentificationRecord": "audit",
    "BatchSummary": "batch",
    "deidentify_directory": "batch",
    "DEFAULT_PIXEL_POLICY": "burned_in",
    "HoldPossibleBurnedInText": "burned_in",
    "PixelAssessment": "burned_in",
    "PixelPolicy": "burned_in",
    "PresidioTextCleaner": "clean",
    "build_text_cleaner": "clean",
    "DeidSettings": "config",
    "DeidError": "errors",
    "PhiValue": "phi",
    "PhiValues": "phi",
    "collect_phi_values": "phi",
    "InstanceOutcome": "pipeline",
    "InstanceStatus": "pipeline",
    "deidentify_instance": "pipeline",
    "AppliedAction": "profile",
    "DeidKeys": "profile",
    "DeidProfile": "profile",
    "ProfileOption": "profile",
    "ProfileResult": "profile",
    "apply_profile": "profile",
    "ResidualPhi": "verify",
    "find_residual_phi": "verify",
}

# Third-party packages of the ``deid`` extra; an ImportError naming one means the extra is missing.
_EXTRA_PACKAGES = frozenset({"pydicom", "numpy", "presidio_analyzer", "spacy"})


__getattr__ = lazy_exports(
    __name__, globals(), _MODULE_OF, extra="deid", extra_packages=_EXTRA_PACKAGES
)


def __dir__() -> list[str]:
    return sorted(__all__)
