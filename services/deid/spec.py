"""The deid service as the registry knows it. Light: no pydicom, no spaCy."""

from __future__ import annotations

from radstream.common.service_spec import ServiceSpec

SERVICE = ServiceSpec(
    name="deid",
    app_factory="radstream.deid.app:create_app",
    description=(
        "De-identifies received studies (PS3.15 Annex E profile, verified, fail closed): "
        "releases clean instances, holds the doubtful ones for review."
    ),
)
