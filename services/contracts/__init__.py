"""Event contracts: Python code generated from proto/radstream/v1 (do not edit v1/ by hand).

The generated modules live in :mod:`radstream.contracts.v1` (``make proto`` rewrites them).
This package adds a registry from fully-qualified protobuf names, which are also the
CloudEvents ``ce_type`` of the events, to the generated classes. The registry imports the
generated modules on first use rather than at import, so ``python -m
radstream.contracts.generate`` still runs when the generated code is stale or missing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

__all__ = ["all_message_types", "message_type"]


def _nested(cls: type[Message], descriptor: Descriptor) -> Iterator[tuple[str, type[Message]]]:
    """Yield (full name, class) for *cls* and every message type nested in it."""
    yield descriptor.full_name, cls
    for nested in descriptor.nested_types:
        if nested.GetOptions().map_entry:
            continue  # map<k, v> entries are an encoding detail, not message types of ours
        yield from _nested(getattr(cls, nested.name), nested)


@functools.cache
def _registry() -> dict[str, type[Message]]:
    """Map every generated message type's full name to its class, sorted by name."""
    from radstream.contracts import v1  # noqa: PLC0415  (deferred: see the module docstring)

    found: dict[str, type[Message]] = {}
    for module in v1.MODULES:
        for name, descriptor in module.DESCRIPTOR.message_types_by_name.items():
            found.update(_nested(getattr(module, name), descriptor))
    return dict(sorted(found.items()))


def message_type(full_name: str) -> type[Message]:
    """Return the generated class for a fully-qualified message name.

    Parameters
    ----------
    full_name
        The protobuf full name, e.g. ``"radstream.v1.StudyReceived"``; for events this is
        the CloudEvents ``ce_type``.

    Returns
    -------
    type[Message]
        The generated message class.

    Raises
    ------
    KeyError
        If no generated message has that name.
    """
    try:
        return _registry()[full_name]
    except KeyError:
        raise KeyError(
            f"unknown message type {full_name!r}: not defined in proto/radstream/v1 "
            "(names are fully qualified, e.g. 'radstream.v1.StudyReceived'; "
            "after adding a message run `make proto`)"
        ) from None


def all_message_types() -> tuple[type[Message], ...]:
    """Return every generated message class, nested ones included, sorted by full name."""
    return tuple(_registry().values())
