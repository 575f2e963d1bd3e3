"""Server-side TLS for ingest's listeners (DICOM and MLLP): one policy, checked at startup.

TLS 1.2 or newer; with a client CA, a sender must present a certificate that CA signed, and the
handshake refuses any other. Files that cannot be loaded stop the service at startup with the
settings to check, never at the first connection.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from radstream.ingest.errors import IngestConfigurationError


def listener_tls_context(
    certfile: Path | None,
    keyfile: Path | None,
    client_cafile: Path | None,
    *,
    settings: str,
) -> ssl.SSLContext | None:
    """The listener's TLS context, or None without a certificate (plain TCP).

    ``settings`` names the variables to check when the files are unusable.
    """
    if certfile is None or keyfile is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
        if client_cafile is not None:
            context.load_verify_locations(cafile=client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise IngestConfigurationError(
            f"cannot load the TLS files ({type(exc).__name__}); check {settings}"
        ) from exc
    return context
