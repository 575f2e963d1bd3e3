"""The benchmark's sender side: one C-STORE association or one STOW-RS client per process.

Runs in worker processes (``spawn``), so sending never competes with a receiver for the GIL;
imports only pynetdicom and httpx. Each call reports its own wall-clock start and end, and the
benchmark takes the span from the first start to the last end.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True, kw_only=True)
class SendResult:
    """What one sender did."""

    started: float  # time.time(): comparable across processes on one machine
    finished: float
    stored: int
    failed: int
    error: str | None = None  # the first failure, e.g. "HTTP 400 {...}" or "0xA700"


def warm() -> None:
    """Nothing: calling it makes the pool start a process and import this module."""
    time.sleep(0.2)


def send_c_store(
    host: str,
    port: int,
    called_ae: str,
    paths: list[str],
    *,
    calling_ae: str = "BENCHSCU",
    timeout_s: float = 30.0,
) -> SendResult:
    """Send ``paths`` over one association; count success statuses."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    started = time.time()
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        return SendResult(
            started=started,
            finished=time.time(),
            stored=0,
            failed=len(paths),
            error="association not established",
        )
    # Without this every request's last segment waits for the peer's delayed ACK (~40 ms on
    # loopback), and the benchmark would measure TCP timers instead of receivers.
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stored = failed = 0
    error = None
    for path in paths:
        if not assoc.is_established:  # the receiver aborted: the rest is not stored
            failed += 1
            error = error or "association aborted by the receiver"
            continue
        status = assoc.send_c_store(Path(path))
        code = int(status.Status) if "Status" in status else None
        if code in {0x0000, 0xB000, 0xB006, 0xB007}:
            stored += 1
        else:
            failed += 1
            error = error or ("no response" if code is None else f"0x{code:04X}")
    if assoc.is_established:
        assoc.release()
    return SendResult(
        started=started, finished=time.time(), stored=stored, failed=failed, error=error
    )


def send_stow_rs(url: str, paths: list[str], batch: int, token: str | None = None) -> SendResult:
    """POST ``paths`` to ``url`` in multipart requests of ``batch`` instances each."""
    headers = {"Accept": "application/dicom+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payloads = [Path(path).read_bytes() for path in paths]
    stored = failed = 0
    error = None
    with httpx.Client(timeout=120) as client:
        started = time.time()
        for start in range(0, len(payloads), batch):
            parts = payloads[start : start + batch]
            boundary = f"bench-{secrets.token_hex(8)}"
            body = (
                b"".join(
                    f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + part
                    + b"\r\n"
                    for part in parts
                )
                + f"--{boundary}--\r\n".encode()
            )
            response = client.post(
                url,
                content=body,
                headers={
                    **headers,
                    "Content-Type": (
                        f'multipart/related; type="application/dicom"; boundary={boundary}'
                    ),
                },
            )
            if response.status_code == 200:
                stored += len(parts)
            else:
                failed += len(parts)
                error = error or f"HTTP {response.status_code} {response.text[:120]}"
        finished = time.time()
    return SendResult(started=started, finished=finished, stored=stored, failed=failed, error=error)
