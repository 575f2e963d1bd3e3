"""Comma-separated name lists in settings (AE titles, SOP classes, peers, CNs, processing ids).

Every ``RADSTREAM_INGEST_*`` list is read by :func:`parse_names`, so each accepts the same
forms: ``CT01,MR02`` from the environment, or a list from code and tests. It lives apart from
:mod:`radstream.ingest.config`, which composes the settings classes that use it.
"""

from __future__ import annotations

from radstream.ingest.errors import IngestConfigurationError

__all__ = ["parse_names"]


def parse_names(value: object) -> frozenset[str]:
    """The set of names in a comma-separated string or a sequence; blanks are dropped.

    Raises
    ------
    IngestConfigurationError
        For anything else (a number, a mapping).
    """
    if isinstance(value, str):
        names = value.split(",")
    elif isinstance(value, list | tuple | set | frozenset):
        names = [str(name) for name in value]
    else:
        raise IngestConfigurationError("expected a comma-separated list of names")
    return frozenset(name.strip() for name in names if name.strip())
