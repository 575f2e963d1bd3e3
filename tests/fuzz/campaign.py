"""One fuzz target's run: inputs tried, what broke, where, and the inputs that broke it.

A :class:`Campaign` runs each generated input through the target's *oracle* (a function that
drives the real parser or handler and checks its answer) with the project's own PHI-filtered
logging configured onto a buffer. An input fails the campaign when

* the target raises anything but its documented errors (``unhandled``),
* the oracle finds a broken promise: no answer for the sender, an answer of the wrong shape
  (:class:`Finding`),
* a planted PHI token appears in anything the target emitted: its answer, a log line, a
  warning that escaped to standard error, an audit record, a dead letter's error text (``phi``).

Fuzzing goes on after a failure: each distinct failure (kind, place) is counted and its first
input saved under ``.build/fuzz/failures/<target>/`` for replay. With ``FUZZ_SHRINK=1`` the
first failure raises instead, so Hypothesis shrinks it and keeps it in its database.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from radstream.common.logs import configure_logging
from radstream.common.settings import ObservabilitySettings
from tests.fuzz.known import KNOWN_OPEN
from tests.fuzz.phi import context_of, planted_in

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
FUZZ_DIR: Final = REPO_ROOT / ".build" / "fuzz"
SERVICES: Final = str(REPO_ROOT / "services")

_HARNESS_LOGGERS: Final = ("httpx", "httpcore")

CAMPAIGNS: list[Campaign] = []
"""Every campaign of this test session, for the summary printed at the end."""


class Finding(Exception):  # noqa: N818 -- an oracle's verdict, not an error of the harness
    """A broken promise the oracle found: ``kind`` names it, ``where`` the output or place."""

    def __init__(self, kind: str, where: str, detail: str) -> None:
        super().__init__(f"{kind} at {where}: {detail}")
        self.kind = kind
        self.where = where
        self.detail = detail


@dataclass
class Failure:
    """One distinct failure of a campaign and how often it happened."""

    kind: str
    where: str
    detail: str
    count: int = 1
    example: Path | None = None


class Emitted:
    """What a target emitted for one input (besides logs), for the PHI search."""

    def __init__(self) -> None:
        self.outputs: list[tuple[str, str | bytes | None]] = []
        self.answer = ""

    def answered(self, answer: str) -> None:
        """Name the answer the target gave (``HTTP 201``, ``AR``, ``held``), for the summary."""
        self.answer = answer

    def __call__(self, where: str, output: str | bytes | None) -> None:
        """Record ``output``, the target's ``where`` (an ACK, a response body, an audit line)."""
        self.outputs.append((where, output))


@dataclass
class Campaign:
    """The run of one target (see the module doc)."""

    target: str
    tried: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: dict[tuple[str, str], Failure] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    known: Counter[tuple[str, str]] = field(default_factory=Counter)
    _log: io.StringIO = field(default_factory=io.StringIO)
    _warning_hook: Callable[..., None] | None = None

    def __post_init__(self) -> None:
        CAMPAIGNS.append(self)

    @contextlib.contextmanager
    def running(self) -> Iterator[Campaign]:
        """Configure the project's logging onto this campaign's buffer; restore it after."""
        root = logging.getLogger()
        saved = (list(root.handlers), root.level, sys.excepthook, threading.excepthook)
        # The harness's own HTTP client logs each request line (URL included): not the target's.
        client_logs = [logging.getLogger(name) for name in _HARNESS_LOGGERS]
        client_levels = [logger.level for logger in client_logs]
        for logger in client_logs:
            logger.setLevel(logging.WARNING)
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                before = warnings.showwarning
                configure_logging(
                    ObservabilitySettings(
                        log_level="DEBUG", log_json=True, service_name=f"fuzz-{self.target}"
                    ),
                    stream=self._log,
                )
                # Where the service's logging set warnings to go (if it did): they go there here
                # too; otherwise a warning that escapes the code is written raw to stderr.
                hook = warnings.showwarning
                self._warning_hook = hook if hook is not before else None
                yield self
        finally:
            self.seconds += time.perf_counter() - started
            handlers, level, excepthook, thread_excepthook = saved
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in handlers:
                root.addHandler(handler)
            root.setLevel(level)
            for logger, client_level in zip(client_logs, client_levels, strict=True):
                logger.setLevel(client_level)
            sys.excepthook, threading.excepthook = excepthook, thread_excepthook

    def attempt(self, data: bytes, oracle: Callable[[Emitted], None]) -> None:
        """Run one input through ``oracle``; record whatever it or the PHI search finds."""
        self.tried += 1
        emitted = Emitted()
        self._take_log()  # lines from between inputs (setup) are no input's
        verdicts: list[tuple[str, str, str]] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                oracle(emitted)
            except Finding as finding:
                verdicts.append((finding.kind, finding.where, finding.detail))
            except Exception as exc:  # the point of fuzzing: anything undocumented
                verdicts.append(("unhandled", origin(exc), _describe(exc)))
        self.answers[emitted.answer or "-"] += 1
        stderr = self._route_warnings(caught)
        outputs = [
            *emitted.outputs,
            ("log", self._take_log()),
            ("stderr", stderr),
        ]
        for where, output in outputs:
            tokens = planted_in(output)
            if tokens and output is not None:
                around = context_of(output, tokens[0])
                verdicts.append(("phi", where, f"planted PHI {tokens[0]!r} in {where}: {around}"))
        unknown = [verdict for verdict in verdicts if verdict[:2] not in KNOWN_OPEN]
        if unknown:
            self.failed += 1
        for kind, where, _ in verdicts:
            if (kind, where) in KNOWN_OPEN:
                if not self.known[kind, where]:
                    self._save(data, f"known-{kind}", where)  # an example for the owner
                self.known[kind, where] += 1
        for kind, where, detail in unknown:
            self._record(data, kind, where, detail)

    def _take_log(self) -> str:
        """The log lines written since the last call (the buffer is emptied)."""
        text = self._log.getvalue()
        self._log.seek(0)
        self._log.truncate()
        return text

    def _route_warnings(self, caught: list[warnings.WarningMessage]) -> str:
        """Send escaped warnings where the service would; return what would reach stderr raw."""
        raw: list[str] = []
        for warning in caught:
            if self._warning_hook is not None:
                self._warning_hook(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
            else:
                raw.append(
                    warnings.formatwarning(
                        warning.message, warning.category, warning.filename, warning.lineno
                    )
                )
        return "".join(raw)

    def _record(self, data: bytes, kind: str, where: str, detail: str) -> None:
        key = (kind, where)
        known = self.failures.get(key)
        if known is not None:
            known.count += 1
        else:
            self.failures[key] = Failure(kind, where, detail, example=self._save(data, kind, where))
        if os.environ.get("FUZZ_SHRINK"):
            raise AssertionError(f"{self.target}: {kind} at {where}: {detail}")

    def _save(self, data: bytes, kind: str, where: str) -> Path:
        folder = FUZZ_DIR / "failures" / self.target
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(f"{kind}|{where}".encode()).hexdigest()[:12]
        path = folder / f"{kind}-{name}.bin"
        path.write_bytes(data)
        return path

    def answer_mix(self, top: int = 6) -> str:
        """The most frequent answers, e.g. ``rejected 61%, held 30%, released 9%``."""
        total = sum(self.answers.values()) or 1
        return ", ".join(
            f"{answer} {count * 100 // total}%" for answer, count in self.answers.most_common(top)
        )

    def report(self) -> str:
        """The campaign's failures, one paragraph each, for an assertion message."""
        lines = [f"{self.target}: {self.failed} of {self.tried} inputs failed"]
        for (kind, where), count in self.known.items():
            lines.append(f"  known open [{kind}] x{count} at {where}: {KNOWN_OPEN[kind, where]}")
        for failure in self.failures.values():
            example = failure.example.relative_to(REPO_ROOT) if failure.example else "-"
            lines.append(
                f"  [{failure.kind}] x{failure.count} at {failure.where}\n"
                f"      {failure.detail[:300]}\n      input: {example}"
            )
        return "\n".join(lines)

    def assert_clean(self) -> None:
        """Fail the test when any input failed; the message lists every distinct failure."""
        assert not self.failures, self.report()


def origin(exc: BaseException) -> str:
    """Where ``exc`` was raised: the innermost frame in radstream's code, else the innermost."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [frame for frame in frames if frame.filename.startswith(SERVICES)]
    frame = ours[-1] if ours else (frames[-1] if frames else None)
    if frame is None:
        return type(exc).__name__
    path = Path(frame.filename)
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path.name
    return f"{type(exc).__name__} {shown}:{frame.lineno} ({frame.name})"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__qualname__}: {str(exc)[:200]}"
