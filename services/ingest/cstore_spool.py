"""Received C-STORE data sets go to the spool directory as they arrive, not into memory.

By default pynetdicom collects a C-STORE request's data set in a ``BytesIO`` and the handler
gets it joined once more with its File Meta Information: two copies of a large instance held
outside the memory budget, before the receiver could reserve anything (a 1 GiB enhanced
multi-frame CT took three copies in all). pynetdicom can instead write the data set, File Meta
Information first, to a file it opens with ``tempfile.NamedTemporaryFile`` as the fragments
arrive (``_config.STORE_RECV_CHUNKED_DATASET``) -- but in the default temporary directory,
which is memory-backed in the chart, and under a name that stays on disk if the process dies.

:func:`spool_received_datasets` turns that mode on with :class:`ReceivingDataset` in place of
the temporary file: a data set up to 1 MiB stays in memory (one small copy, as before), a larger
one goes to an unnamed :class:`~radstream.common.spool.SpoolFile` in
``RADSTREAM_MEMORY_SPOOL_DIR`` (0600, gone when closed or when the process dies), and content
past the instance limit is counted and hashed but not kept, so an oversized instance is refused
unread without filling the disk. The EVT_C_STORE handler takes what arrived with
:func:`take_received` (bytes or the spool file) and the receiver reads a spool file into memory
once its reservation in the memory budget is granted.

**Process-wide, and why that is safe.** pynetdicom reads the switch from a module global and
looks ``NamedTemporaryFile`` up in its ``dimse_messages`` module, so both are set for the whole
process, once when the SCP starts (and put back when the last SCP stops). Only C-STORE
*requests received* by pynetdicom are affected, and in ingest the SCP is the only receiver
(export sends as an SCU; PACS pull is HTTP). :mod:`tempfile` itself is untouched: only the name
pynetdicom's module uses is rebound, so every other user of temporary files gets the default
directory as before. :func:`take_received` reads the data set pynetdicom's own way when the
mode is off, so a handler works either way.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pynetdicom import _config, dimse_messages

from radstream.common.spool import SpoolFile
from radstream.ingest.errors import IngestConfigurationError

if TYPE_CHECKING:
    from pynetdicom.events import Event

__all__ = [
    "SPOOL_ABOVE",
    "ReceivingDataset",
    "spool_received_datasets",
    "stop_spooling_received_datasets",
    "take_received",
]

# A data set larger than this goes to disk; a smaller one is one small copy in memory (most
# CT and MR slices), which saves a file per instance.
SPOOL_ABOVE: Final = 1024 * 1024
# The name pynetdicom's dimse_messages module opens a received data set's file with.
_FACTORY: Final = "NamedTemporaryFile"


@dataclass(frozen=True)
class _Target:
    directory: Path
    max_bytes: int


class ReceivingDataset:
    """What pynetdicom writes one received data set into, in place of a named temporary file.

    pynetdicom uses ``name`` (as the event's ``dataset_path``), ``write``, ``file.flush()`` and
    ``close()`` after the handler returned. ``name`` is a key to find this object again, never
    a file on disk. Once the handler took the content (:func:`take_received`), closing is its
    business; content nobody took (the association aborted mid-transfer) is removed on close
    or when the object is collected.
    """

    def __init__(self, target: _Target) -> None:
        self.name = str(target.directory / f"c-store-{uuid.uuid4().hex}.dcm")
        self._target = target
        self._chunks: list[bytes] = []
        self._size = 0
        self._spool: SpoolFile | None = None
        self._unclaimed: weakref.finalize[Any, Any] | None = None

    @property
    def file(self) -> ReceivingDataset:
        """Itself: pynetdicom flushes ``file`` after each fragment; writes go straight through."""
        return self

    @property
    def size(self) -> int:
        """Bytes received so far, File Meta Information included."""
        return self._size

    def flush(self) -> None:
        """Nothing to flush: each write reaches memory or the spool file's buffer."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take the next piece (the preamble, the File Meta Information, then fragments)."""
        length = len(data)
        self._size += length
        spool = self._spool
        if spool is None and self._size <= SPOOL_ABOVE:
            self._chunks.append(bytes(data))
            return length
        if spool is None:
            spool = self._spool = SpoolFile(self._target.directory)
            self._unclaimed = weakref.finalize(self, spool.close)
            for chunk in self._chunks:
                spool.write(chunk)
            self._chunks = []
        if self._size > self._target.max_bytes and not spool.dropped:
            spool.drop_content()  # refused unread anyway: count and hash the rest, keep none
        spool.write(data)
        return length

    def take(self) -> bytes | SpoolFile:
        """The data set as received (Part 10): bytes, or a spool file the caller closes."""
        if self._spool is None:
            data, self._chunks = b"".join(self._chunks), []
            return data
        if self._unclaimed is not None:
            self._unclaimed.detach()
        spool, self._spool = self._spool, None
        return spool

    def close(self) -> None:
        """Drop what nobody took (idempotent)."""
        self._chunks = []
        if self._unclaimed is not None:
            self._unclaimed()  # closes the spool file unless taken (detached)


_lock = threading.Lock()
_receiving: weakref.WeakValueDictionary[str, ReceivingDataset] = weakref.WeakValueDictionary()
_installed: list[_Target] = []  # one entry per running SCP; the last one's target applies
_original: dict[str, Any] = {}


def _open_receiving(**_pynetdicom_options: object) -> ReceivingDataset:
    """Stands in for ``NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm")``."""
    with _lock:
        target = _installed[-1]
        receiving = ReceivingDataset(target)
        _receiving[receiving.name] = receiving
    return receiving


def spool_received_datasets(directory: Path, *, max_bytes: int) -> None:
    """Make pynetdicom hand received C-STORE data sets over through :class:`ReceivingDataset`.

    Process-wide (see the module doc); call once per SCP start and
    :func:`stop_spooling_received_datasets` once per stop. ``max_bytes`` is the instance limit:
    content beyond it is not kept.

    Raises
    ------
    IngestConfigurationError
        The installed pynetdicom does not receive data sets through a temporary file (a
        version this module was not written for).
    """
    if not (hasattr(_config, "STORE_RECV_CHUNKED_DATASET") and hasattr(dimse_messages, _FACTORY)):
        raise IngestConfigurationError(
            "this pynetdicom cannot write received data sets to a file "
            "(STORE_RECV_CHUNKED_DATASET); install the pinned pynetdicom version"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _lock:
        if not _installed:
            _original["chunked"] = _config.STORE_RECV_CHUNKED_DATASET
            _original["file"] = getattr(dimse_messages, _FACTORY)
            _config.STORE_RECV_CHUNKED_DATASET = True
            setattr(dimse_messages, _FACTORY, _open_receiving)
        _installed.append(_Target(directory, max_bytes))


def stop_spooling_received_datasets() -> None:
    """Undo one :func:`spool_received_datasets`; the last one puts pynetdicom's defaults back."""
    with _lock:
        if not _installed:
            return
        _installed.pop()
        if not _installed:
            _config.STORE_RECV_CHUNKED_DATASET = _original.pop("chunked")
            setattr(dimse_messages, _FACTORY, _original.pop("file"))


def take_received(event: Event) -> bytes | SpoolFile:
    """The C-STORE request's data set as a Part 10 file: bytes, or a spool file to close.

    Raises
    ------
    LookupError
        pynetdicom wrote the data set somewhere this module did not open (a bug).
    """
    path = event.dataset_path
    if path is None:  # pynetdicom's default (the mode is off): the data set in memory
        return event.encoded_dataset(include_meta=True)
    with _lock:
        receiving = _receiving.pop(str(path), None)
    if receiving is None:
        raise LookupError("the received data set was not written through ReceivingDataset")
    return receiving.take()
