"""The ingest service as the registry knows it: ports, local-stack settings, the AE title.

Light on purpose: the registry and the CLI import it without ingest's extra.
"""

from __future__ import annotations

from radstream.common.service_spec import ServiceSpec, ShownSetting

SERVICE = ServiceSpec(
    name="ingest",
    app_factory="radstream.ingest.app:create_app",
    description=(
        "Receives studies and reports from hospital systems (DICOM C-STORE, STOW-RS, "
        "HL7 v2 MLLP, FHIR): stores instances in the PHI zone, publishes instance.stored, "
        "study.received once a study is quiet, report.received and clinical.observation."
    ),
    ports={
        "DICOM": "RADSTREAM_INGEST_DICOM_PORT",
        "HTTP (STOW-RS, FHIR)": "RADSTREAM_INGEST_HTTP_PORT",
        "HL7 MLLP": "RADSTREAM_INGEST_MLLP_PORT",
    },
    local_settings={
        "RADSTREAM_INGEST_DICOM_ALLOW_ANY_CALLING_AE": "true",
        "RADSTREAM_INGEST_HTTP_AUTH": "open",
        "RADSTREAM_INGEST_MLLP_ALLOW_ANY_PEER": "true",
        "RADSTREAM_INGEST_ASSEMBLY_QUIET_PERIOD_S": "5",
    },
    # The SCP refuses associations addressed to another AE title ("Called AE Title Not
    # Recognized"), so a sender needs it before its first C-STORE (storescu -aec).
    shown=(
        ShownSetting(
            label="DICOM called AE title (storescu -aec)",
            variable="RADSTREAM_INGEST_DICOM_AE_TITLE",
            default="RADSTREAM",
        ),
    ),
)
