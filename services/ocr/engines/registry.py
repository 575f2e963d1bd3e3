"""Engines by name: ``load_engine("rapidocr")``, and one shared instance per process.

The registry maps each name to ``"module:factory"`` and imports the module only when that engine
is asked for, so importing this package costs nothing, and an engine whose extra is not installed
fails when it is chosen -- with :class:`~radstream.common.errors.MissingExtraError`, naming the
extra -- not when another one is. A new engine is one more line in ``_FACTORIES``.

Loading takes seconds (ONNX sessions, torch models), and every engine here is safe to share
(those that are not thread-safe say so with ``concurrent`` and callers serialise them), so
:func:`shared_engine` keeps one per name and options for the life of the process.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Hashable
from typing import Final, cast

from radstream.common.errors import MisconfiguredError
from radstream.ocr.engine import OcrEngine

__all__ = ["DEFAULT_ENGINE", "ENGINE_NAMES", "load_engine", "shared_engine"]

# RapidOCR: in process, no torch, read every PHI word of the real ultrasound files, and the
# fastest of the three on CPU (to be confirmed by the benchmark, docs/benchmarks.md).
DEFAULT_ENGINE: Final = "rapidocr"

_FACTORIES: Final[dict[str, str]] = {
    "rapidocr": "radstream.ocr.engines.rapid:RapidOcrEngine",
    "tesseract": "radstream.ocr.engines.tesseract:TesseractEngine",
    "easyocr": "radstream.ocr.engines.easy:EasyOcrEngine",
    "kserve": "radstream.ocr.engines.kserve:KServeEngine",
}

ENGINE_NAMES: Final[tuple[str, ...]] = tuple(_FACTORIES)

_shared: dict[tuple[str, frozenset[tuple[str, Hashable]]], OcrEngine] = {}
_shared_lock = threading.Lock()


def _factory(name: str) -> Callable[..., object]:
    target = _FACTORIES.get(name)
    if target is None:
        raise MisconfiguredError(
            f"unknown OCR engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}"
        )
    module_name, _, attribute = target.partition(":")
    return cast("Callable[..., object]", getattr(importlib.import_module(module_name), attribute))


def load_engine(name: str, **options: object) -> OcrEngine:
    """A new engine ``name`` built with ``options`` (its constructor's keyword arguments).

    Raises :class:`MisconfiguredError` for an unknown name or options the engine does not take,
    and :class:`~radstream.common.errors.MissingExtraError` when its extra is not installed.
    """
    factory = _factory(name)
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as error:
        raise MisconfiguredError(
            f"OCR engine {name!r} does not take the options {sorted(options)}: {error}"
        ) from error
    engine = factory(**options)
    if not isinstance(engine, OcrEngine):  # pragma: no cover -- a registry entry gone wrong
        raise MisconfiguredError(f"{_FACTORIES[name]} did not build an OcrEngine")
    return engine


def shared_engine(name: str, **options: Hashable) -> OcrEngine:
    """The process's one engine ``name`` with ``options``, built on first use.

    Options must be hashable (they key the cache): numbers, strings, frozen dataclasses such as
    :class:`~radstream.ocr.engines.ppocr.PpOcrParameters`. Concurrent first calls build it once.
    """
    key = (name, frozenset(options.items()))
    with _shared_lock:
        engine = _shared.get(key)
        if engine is None:
            engine = _shared[key] = load_engine(name, **options)
        return engine
