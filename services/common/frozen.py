"""Frozen dataclasses built on the hot path without their generated ``__init__``.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which costs
about 0.2 µs a field: 1.5 µs for an eight-field :class:`~radstream.common.envelope.EventMeta`.
The consume path builds three such objects per record (the raw record, the event, its
metadata), so it fills each instance's ``__dict__`` directly instead, three times as fast. The
result is the same frozen instance: equal to one built by the constructor, and immutable.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")

_new = object.__new__


def build_frozen(cls: type[T], fields: dict[str, Any]) -> T:
    """An instance of the frozen dataclass ``cls`` with ``fields``, which must name every field.

    No defaults are filled in and no ``__post_init__`` runs: for classes that have none to run,
    built where every field is at hand.
    """
    instance = _new(cls)
    instance.__dict__.update(fields)
    return instance
