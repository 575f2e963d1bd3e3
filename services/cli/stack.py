"""A local radstream stack: the embedded broker (unless one is configured) plus every service.

Used by ``radstream up`` and ``radstream demo``. Services run as child processes
(``radstream run NAME``), each with its own health port, as they would as Deployments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from radstream.common.embedded_broker import EmbeddedBroker, die_with_parent, free_loopback_port
from radstream.common.service import SERVICES, ServiceSpec
from radstream.common.settings import EMBEDDED_BROKER_TUNING

STATE_DIR = Path(".radstream")


@dataclass(kw_only=True)
class RunningService:
    """A service child process and the port of its probes."""

    spec: ServiceSpec
    health_port: int
    process: subprocess.Popen[bytes]
    ports: dict[str, int] = field(default_factory=dict)  # label -> port
    shown: dict[str, str] = field(default_factory=dict)  # label -> value (ServiceSpec.shown)

    def describe(self) -> list[str]:
        """What an operator needs to reach this service: probes, ports, what senders match."""
        lines = [
            f"{self.spec.name}: pid {self.process.pid}, probes on "
            f"http://127.0.0.1:{self.health_port}/readyz"
        ]
        lines += [f"  {label}: 127.0.0.1:{port}" for label, port in self.ports.items()]
        lines += [f"  {label}: {value}" for label, value in self.shown.items()]
        return lines


@dataclass(kw_only=True)
class LocalStack:
    """Start the broker and services; stop all of them, in reverse order, on exit."""

    bootstrap: str | None = None
    services: tuple[ServiceSpec, ...] = SERVICES
    state_dir: Path = STATE_DIR
    running: list[RunningService] = field(default_factory=list)
    _exit: ExitStack = field(default_factory=ExitStack)

    embedded: bool = False

    @property
    def env(self) -> dict[str, str]:
        """Connection settings other processes need to join this stack."""
        assert self.bootstrap is not None
        tuning = EMBEDDED_BROKER_TUNING if self.embedded else {}
        return {"RADSTREAM_KAFKA_BOOTSTRAP": self.bootstrap, **tuning}

    def __enter__(self) -> LocalStack:
        try:
            if self.bootstrap is None:
                broker = EmbeddedBroker(log_path=self.state_dir / "logs" / "tansu.log")
                self._exit.enter_context(broker)
                self.bootstrap = broker.bootstrap
                self.embedded = True
            for spec in self.services:
                self.running.append(self._spawn(spec))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _spawn(self, spec: ServiceSpec) -> RunningService:
        port = free_loopback_port()
        ports = {label: free_loopback_port() for label in spec.ports}
        env = {
            **os.environ,
            **self.env,
            **spec.local_settings,
            **{spec.ports[label]: str(value) for label, value in ports.items()},
            "RADSTREAM_OBS_HEALTH_PORT": str(port),
        }
        log = (self.state_dir / "logs" / f"{spec.name}.log").open("ab")
        self._exit.callback(log.close)
        process = subprocess.Popen(  # noqa: S603 -- our own CLI, fixed argv
            [sys.executable, "-m", "radstream.cli.main", "run", spec.name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_of_the_stack,  # noqa: PLW1509 -- signal resets and prctl only
        )
        self._exit.callback(_stop_process, process)
        return RunningService(
            spec=spec,
            health_port=port,
            process=process,
            ports=ports,
            shown=spec.shown_values(env),
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit.close()


def _child_of_the_stack() -> None:
    """In a service's process before it runs: stop signals as by default, die with the stack.

    Dispositions a parent ignored survive exec, so a stack started from a shell or test runner
    that ignores SIGINT or SIGTERM would start services deaf to both; they are reset here. On
    Linux the kernel also sends SIGTERM to the service when the stack's process dies, however
    it dies, so a killed ``radstream up`` leaves no orphaned services behind (the signal is
    tied to the thread that started them: a stack is started from the main thread).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()


STOP_TIMEOUT_S = 15
"""How long a service has to stop after SIGTERM before it is killed (each, in reverse order)."""


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
