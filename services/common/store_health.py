"""Whether a store's writes are failing: what a read-only readiness probe cannot see.

A readiness probe that reads (or writes a probe object of its own) passes while every real
write fails, for instance an S3 role that may put the probe but answers 403 on the HEAD before
each blob, or a database file that reads but can no longer be written. Each store counts its
writes' outcomes here, and its readiness check fails once its last writes all failed.
"""

from __future__ import annotations

from collections.abc import Callable

# Consecutive failed writes after which a store reports itself not ready: one failure may be a
# blip that a retry gets past, several in a row with no success between are not.
FAILING_AFTER = 3


class WriteFailures:
    """Consecutive failed writes of one store, and the type of the last failure."""

    def __init__(self, failing_after: int = FAILING_AFTER) -> None:
        self._failing_after = failing_after
        self.consecutive = 0
        self.last_error_type: str | None = None

    def succeeded(self) -> None:
        """A write went through: the store writes again."""
        self.consecutive = 0

    def failed(self, error: BaseException) -> None:
        """A write failed."""
        self.consecutive += 1
        self.last_error_type = type(error).__name__

    def raise_if_failing(self, error: Callable[[str], Exception]) -> None:
        """Raise ``error(message)`` when the last writes all failed; the message names no value."""
        if self.consecutive >= self._failing_after:
            raise error(
                f"the last {self.consecutive} writes failed ({self.last_error_type}); "
                "check the store's permissions, space and health"
            )
