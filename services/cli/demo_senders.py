"""What a hospital's systems do in the demo: a modality's C-STORE, the RIS's HL7, the EHR's FHIR.

Each sender speaks the real protocol to the ingest service's real listeners, and returns what
the listener answered, so the demo shows the round trip, not only the events.
"""

from __future__ import annotations

import asyncio
import io

import httpx

from radstream.cli.samples import fhir_observations, oru_r01, synthetic_study

_MLLP_START, _MLLP_END = b"\x0b", b"\x1c\r"


def store_study(host: str, port: int, *, called_ae: str = "RADSTREAM") -> list[int]:
    """Send the demo study over one DICOM association; return each C-STORE status."""
    # Imported here: pynetdicom comes with the ingest extra.
    from pydicom import dcmread  # noqa: PLC0415
    from pynetdicom import AE  # noqa: PLC0415

    datasets = [dcmread(io.BytesIO(data)) for data in synthetic_study()]
    ae = AE(ae_title="SYNTH_MODALITY")
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    association = ae.associate(host, port, ae_title=called_ae)
    if not association.is_established:
        raise ConnectionError(f"DICOM association to {host}:{port} was not accepted")
    try:
        statuses = []
        for ds in datasets:
            status = association.send_c_store(ds)
            statuses.append(int(status.Status) if status else -1)
        return statuses
    finally:
        association.release()


async def send_report(host: str, port: int) -> str:
    """Send the demo ORU^R01 over MLLP; return the acknowledgment code (MSA-1)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(_MLLP_START + oru_r01() + _MLLP_END)
        await writer.drain()
        reply = await asyncio.wait_for(reader.readuntil(_MLLP_END), timeout=30)
    finally:
        writer.close()
        await writer.wait_closed()
    for segment in reply.strip(_MLLP_START + _MLLP_END).split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode()
    return "no MSA"


async def post_observations(base_url: str) -> list[int]:
    """POST the demo Observations to the FHIR endpoint; return each HTTP status."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return [
            (
                await client.post(
                    "/fhir/Observation",
                    json=resource,
                    headers={"content-type": "application/fhir+json"},
                )
            ).status_code
            for resource in fhir_observations()
        ]


async def wait_until_ready(health_port: int, *, timeout_s: float) -> bool:
    """Poll a service's readiness probe until it answers 200 or the time is up."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while asyncio.get_running_loop().time() < deadline:
            try:
                if (await client.get(f"http://127.0.0.1:{health_port}/readyz")).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    return False
