"""The environment variables a pydantic settings class reads, nested settings classes walked.

A settings class may hold another (``DeliverySettings`` inside a service's settings) that
reads its own prefix; the chart and the CLI tests must see the variables of both alike.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings


def _is_settings(kind: object) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseSettings)


def variable_name(model: type[BaseSettings], name: str) -> str:
    """The environment variable that sets field ``name`` of ``model``."""
    return (str(model.model_config.get("env_prefix", "")) + name).upper()


def settings_classes(model: type[BaseSettings]) -> Iterator[type[BaseSettings]]:
    """``model`` and each settings class nested in it, depth first."""
    yield model
    for field in model.model_fields.values():
        if _is_settings(field.annotation):
            yield from settings_classes(field.annotation)  # type: ignore[arg-type]


def variables(model: type[BaseSettings]) -> Iterator[tuple[str, FieldInfo]]:
    """Each variable ``model`` reads, in field order with nested classes in place, and its field."""
    for name, field in model.model_fields.items():
        if _is_settings(field.annotation):
            yield from variables(field.annotation)  # type: ignore[arg-type]
        else:
            yield variable_name(model, name), field
