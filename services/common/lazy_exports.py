"""Lazy public names for a service package, FastStream-style install hints on a missing extra.

``import radstream.deid`` must not load pydicom or spaCy (the service registry and the CLI import
every service package), so each package's ``__init__`` maps its public names to the modules
that define them and imports a module on first use. A missing third-party package of the
service's extra becomes "pip install 'radstream[<extra>]'".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from radstream.common.errors import MissingExtraError


def lazy_exports(
    package: str,
    namespace: dict[str, Any],
    module_of: Mapping[str, str],
    *,
    extra: str,
    extra_packages: frozenset[str],
) -> Callable[[str], Any]:
    """Return the ``__getattr__`` of ``package`` that imports public names on first use."""

    def getattr_(name: str) -> Any:
        module_name = module_of.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(f"{package}.{module_name}")
        except ImportError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing in extra_packages:
                raise MissingExtraError(missing, extra) from exc
            raise
        value = getattr(module, name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    return getattr_
