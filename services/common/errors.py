"""The radstream error hierarchy.

Three kinds, because each asks something different of the delivery layer and the operator:

* :class:`TransientError` -- a dependency is away (broker, database, model server); retry with
  backoff, the event is not at fault.
* :class:`PoisonEventError` -- the event itself can never be processed (undecodable, invalid);
  retrying is pointless, it goes to the dead-letter topic with the reason.
* :class:`MisconfiguredError` -- settings or environment are wrong; fail at startup, loudly.

Messages never contain PHI: they name fields, sizes and types, never values.
"""

from __future__ import annotations


class RadstreamError(Exception):
    """Root of every error radstream raises on purpose."""


class TransientError(RadstreamError):
    """A dependency is temporarily unavailable; the operation may succeed if retried."""


class PoisonEventError(RadstreamError):
    """An event can never be processed as it is; send it to the dead-letter topic."""


class MisconfiguredError(RadstreamError):
    """Settings or environment are wrong; fix the configuration and restart."""


class MissingExtraError(MisconfiguredError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'radstream[{extra}]'"
        )
        self.package = package
        self.extra = extra
