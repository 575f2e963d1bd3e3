"""An ASGI app served by uvicorn as a task on the running event loop, beside a FastStream app.

Probes (``/healthz``) and ingest's HTTP endpoints run in the service's own process and loop, so
they start and stop with it. Two things differ from running uvicorn on its own: signals stay
with the host process (uvicorn would otherwise take over SIGINT/SIGTERM and the service could
not shut down in order), and the socket is bound here first, so a taken port is a clear
configuration error instead of uvicorn's ``sys.exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Final

import uvicorn

from radstream.common.errors import MisconfiguredError

_STARTUP_TIMEOUT_S: Final = 10.0
_STOP_TIMEOUT_S: Final = 5.0


class _HostSignals(uvicorn.Server):
    """A uvicorn server that leaves SIGINT/SIGTERM to the host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Do nothing: uvicorn would otherwise take over the service's shutdown signals."""
        yield


class EmbeddedAsgiServer:
    """Serve one ``uvicorn.Config`` on ``host:port`` (port 0: a free one) until stopped.

    Parameters
    ----------
    what
        How errors name this server ("the health endpoint").
    settings_hint
        Which settings the operator changes when the address is taken.
    """

    def __init__(
        self, config: uvicorn.Config, *, host: str, port: int, what: str, settings_hint: str
    ) -> None:
        self._config = config
        self._host = host
        self.port = port
        self._what = what
        self._hint = settings_hint
        self._server: _HostSignals | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Bind the port and serve; :attr:`port` is the bound one afterwards."""
        if self._task is not None:
            raise RuntimeError(f"{self._what} was started twice; stop it first")
        sock = self._bind()
        self.port = int(sock.getsockname()[1])
        server = _HostSignals(self._config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=self._what)
        try:
            async with asyncio.timeout(_STARTUP_TIMEOUT_S):
                while not server.started:
                    if task.done():
                        task.result()  # re-raises what stopped it
                        raise MisconfiguredError(f"{self._what} stopped before it started")
                    await asyncio.sleep(0.01)
        except BaseException:
            task.cancel()
            sock.close()
            raise
        self._server, self._task = server, task

    async def stop(self) -> None:
        """Stop serving and release the port; stopping a stopped server does nothing."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        self._server, self._task = None, None
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=_STOP_TIMEOUT_S)
        except TimeoutError:
            server.force_exit = True
            await task

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            return socket.create_server((self._host, self.port), family=family)
        except OSError as exc:
            raise MisconfiguredError(
                f"{self._what} cannot listen on {self._host}:{self.port} "
                f"({exc.strerror or exc}); {self._hint}"
            ) from exc
