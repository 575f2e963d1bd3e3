"""What a service says about itself to the registry: name, app factory, ports, local settings.

Each service package declares its :class:`ServiceSpec` as ``SERVICE`` in its own light module
``radstream.<svc>.spec``, which imports nothing but this module, so the registry
(:mod:`radstream.common.service`) and the CLI collect every service without loading pydicom,
spaCy or any other part of a service's extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


class RunnableApp(Protocol):
    """What an app factory returns: something ``radstream run`` awaits until it stops.

    A FastStream app is one (the consuming services); a service that consumes no topic (ocr,
    a gRPC server) gives an object of its own whose ``run()`` serves until SIGTERM.
    """

    async def run(self) -> None:
        """Serve until the process is told to stop, then stop gracefully."""


@dataclass(frozen=True, kw_only=True)
class ShownSetting:
    """A setting a sender must match, which ``radstream up`` prints beside the ports.

    ``default`` must equal the settings class's default (a test holds them together); the
    value printed is the one the local stack gives the service.
    """

    label: str
    variable: str
    default: str


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """A runnable service: its name and where its app factory lives."""

    name: str
    app_factory: str  # "module:function" returning a RunnableApp (a FastStream app, mostly)
    description: str
    # Listening ports a local stack gives a free loopback port each: label -> env variable.
    ports: Mapping[str, str] = field(default_factory=dict)
    # Settings a local stack (`radstream up`, `make demo`, loopback only) applies, and says so:
    # never defaults, because a hospital deployment must choose its own senders.
    local_settings: Mapping[str, str] = field(default_factory=dict)
    # Settings printed with the ports, so that the first sender gets them right.
    shown: tuple[ShownSetting, ...] = ()

    def load_factory(self) -> Callable[[], RunnableApp]:
        """Import and return the app factory."""
        module_name, _, function = self.app_factory.partition(":")
        factory: Callable[[], RunnableApp] = getattr(importlib.import_module(module_name), function)
        return factory

    def shown_values(self, environment: Mapping[str, str]) -> dict[str, str]:
        """Each shown setting's label and its value in ``environment`` (else its default)."""
        return {
            shown.label: environment.get(shown.variable) or shown.default for shown in self.shown
        }
