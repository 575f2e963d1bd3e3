"""An incremental reader of ``multipart/related`` bodies (RFC 2046, RFC 2387), for STOW-RS.

:class:`MultipartReader` is fed the request body chunk by chunk as it arrives and hands out
each part as soon as its closing delimiter has been read, so the STOW-RS endpoint stores one
instance while the next is still on the wire, and never holds more than one part in memory.

Given a spool directory, a part's content beyond ``spool_above`` bytes is written to a spool
file as it arrives (no list of chunks joined at the end, no part held in memory while it waits
for the memory budget); the receiver reads it back once, when its turn comes.

Limits are checked while reading: the whole body (``BodyTooLargeError``, HTTP 413), one
part's headers, and one part's content. A part over ``max_part_bytes`` is not buffered: its
remaining bytes are skipped and it is handed out as oversized, for the endpoint to refuse on
its own (out of resources) while the other parts go on.

Error messages name what is wrong with the framing, never any content.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from enum import Enum, auto
from pathlib import Path
from typing import Final

from python_multipart.multipart import parse_options_header

from radstream.common.spool import SpoolFile

__all__ = [
    "BodyTooLargeError",
    "MediaType",
    "MultipartError",
    "MultipartReader",
    "Part",
    "parse_media_type",
    "read_parts",
]

_CRLF: Final = b"\r\n"
_MAX_HEADER_BYTES: Final = 16 * 1024
_MAX_BOUNDARY: Final = 70  # RFC 2046 section 5.1.1
_SPOOL_ABOVE: Final = 1024 * 1024


class MultipartError(ValueError):
    """The body is not well-formed multipart; ``reason`` is a fixed word for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BodyTooLargeError(MultipartError):
    """The body is larger than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__("body_too_large", f"the request body exceeds {limit} bytes")
        self.limit = limit


@dataclass(frozen=True, kw_only=True)
class MediaType:
    """A parsed Content-Type: lowercase ``type/subtype`` and its parameters."""

    essence: str
    parameters: dict[str, str] = field(default_factory=dict)

    def parameter(self, name: str) -> str:
        """A parameter's value ('' when absent); names are case-insensitive."""
        return self.parameters.get(name.lower(), "")


def parse_media_type(value: str | None) -> MediaType:
    """Parse a Content-Type header value (quoted parameters allowed)."""
    essence, params = parse_options_header(value or "")
    return MediaType(
        essence=essence.decode("latin-1").strip().lower(),
        parameters={
            key.decode("latin-1").lower(): val.decode("latin-1") for key, val in params.items()
        },
    )


@dataclass(frozen=True, kw_only=True)
class Part:
    """One body part: its headers (lowercase names), content and size.

    ``oversized`` parts carry no content: they exceeded ``max_part_bytes``, and ``size`` is
    their full size. A ``spooled`` part's content is in its spool file, not in ``data``: read
    it with :meth:`content` and :meth:`close` the part when done.
    """

    index: int
    headers: dict[str, str]
    data: bytes
    size: int
    oversized: bool = False
    spooled: SpoolFile | None = None

    def content(self) -> bytes:
        """The part's content, read back from its spool file if it has one (blocking I/O)."""
        return self.spooled.read_all() if self.spooled is not None else self.data

    def close(self) -> None:
        """Remove the part's spool file, if any."""
        if self.spooled is not None:
            self.spooled.close()

    @property
    def media_type(self) -> MediaType:
        """The part's Content-Type (empty essence when it has none)."""
        return parse_media_type(self.headers.get("content-type"))


class _State(Enum):
    PREAMBLE = auto()
    AFTER_DELIMITER = auto()
    HEADERS = auto()
    CONTENT = auto()
    EPILOGUE = auto()


class MultipartReader:
    """Feed body chunks, get completed parts (see the module doc).

    Parameters
    ----------
    boundary
        The ``boundary`` parameter of the body's Content-Type.
    max_part_bytes
        Content larger than this makes an oversized :class:`Part`.
    max_header_bytes
        Headers of one part larger than this are malformed.
    spool_dir
        Where content beyond ``spool_above`` bytes goes while the part is read (None: memory).
    """

    def __init__(
        self,
        boundary: str,
        *,
        max_part_bytes: int,
        max_header_bytes: int = _MAX_HEADER_BYTES,
        spool_dir: Path | None = None,
        spool_above: int = _SPOOL_ABOVE,
    ) -> None:
        if not boundary or len(boundary) > _MAX_BOUNDARY or boundary.endswith(" "):
            raise MultipartError("bad_boundary", "the boundary parameter is missing or invalid")
        try:
            token = boundary.encode("ascii")
        except UnicodeEncodeError:
            raise MultipartError("bad_boundary", "the boundary is not ASCII") from None
        self._dash_boundary = b"--" + token
        self._delimiter = _CRLF + self._dash_boundary
        self._max_part = max_part_bytes
        self._max_header = max_header_bytes
        self._state = _State.PREAMBLE
        self._buffer = bytearray()
        self._headers: dict[str, str] = {}
        self._content: list[bytes] = []
        self._size = 0
        self._count = 0
        self._spool_dir = spool_dir
        self._spool_above = spool_above
        self._spool: SpoolFile | None = None
        # A framing fault found after parts completed in the same chunk: raised once they are out.
        self._fault: MultipartError | None = None

    @property
    def finished(self) -> bool:
        """Whether the close delimiter was read."""
        return self._state is _State.EPILOGUE

    @property
    def parts_read(self) -> int:
        """How many parts were handed out."""
        return self._count

    def feed(self, chunk: bytes) -> list[Part]:
        """Consume ``chunk``; return the parts it completed, in order."""
        if self._fault is not None:
            raise self._fault
        if self._state is _State.EPILOGUE:
            return []  # the epilogue is ignored (RFC 2046)
        self._buffer += chunk
        parts: list[Part] = []
        try:
            while self._step(parts):
                pass
        except MultipartError as fault:
            if not parts:
                raise
            # The parts before the fault are whole: hand them out, raise on the next call.
            self._fault = fault
        return parts

    def close(self) -> None:
        """Declare the body complete; raise :class:`MultipartError` if it was cut short."""
        self._drop_spool()  # a part cut short leaves nothing behind
        if self._fault is not None:
            raise self._fault
        if self._state is not _State.EPILOGUE:
            if self._count == 0 and self._state is _State.PREAMBLE:
                raise MultipartError("no_parts", "the body has no multipart delimiter")
            raise MultipartError("unterminated", "the body ends before its close delimiter")
        if self._count == 0:
            # A close delimiter alone (RFC 2046 asks for one or more parts): were it taken as
            # an empty body, STOW-RS would answer 200 for instances it never read.
            raise MultipartError("no_parts", "the body has a close delimiter but no part")

    def _step(self, parts: list[Part]) -> bool:
        """Advance the state machine once; False when more input is needed."""
        if self._state is _State.PREAMBLE:
            return self._skip_preamble()
        if self._state is _State.AFTER_DELIMITER:
            return self._after_delimiter()
        if self._state is _State.HEADERS:
            return self._read_headers()
        if self._state is _State.CONTENT:
            return self._read_content(parts)
        return False

    def _skip_preamble(self) -> bool:
        # The first delimiter may open the body directly (no leading CRLF).
        if self._buffer.startswith(self._dash_boundary):
            del self._buffer[: len(self._dash_boundary)]
            self._state = _State.AFTER_DELIMITER
            return True
        found = self._buffer.find(self._delimiter)
        if found < 0:
            # Keep a tail that could hold the start of the delimiter.
            keep = len(self._delimiter) - 1
            if len(self._buffer) > keep:
                del self._buffer[: len(self._buffer) - keep]
            return False
        del self._buffer[: found + len(self._delimiter)]
        self._state = _State.AFTER_DELIMITER
        return True

    def _after_delimiter(self) -> bool:
        if len(self._buffer) < 2:
            return False
        if self._buffer.startswith(b"--"):
            self._state = _State.EPILOGUE
            self._buffer.clear()
            return False
        line_end = self._buffer.find(_CRLF)
        if line_end < 0:
            if len(self._buffer) > 256:
                raise MultipartError("malformed_delimiter", "a delimiter line does not end")
            return False
        if self._buffer[:line_end].strip(b" \t"):  # only transport padding may follow
            raise MultipartError("malformed_delimiter", "text follows a boundary delimiter")
        del self._buffer[: line_end + 2]
        self._state = _State.HEADERS
        return True

    def _read_headers(self) -> bool:
        if self._buffer.startswith(_CRLF):  # a part without headers
            del self._buffer[:2]
            self._begin_content({})
            return True
        end = self._buffer.find(_CRLF + _CRLF)
        if end < 0:
            if len(self._buffer) > self._max_header:
                raise MultipartError("headers_too_large", "a part's headers are too large")
            return False
        if end > self._max_header:
            raise MultipartError("headers_too_large", "a part's headers are too large")
        block = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        self._begin_content(_parse_headers(block))
        return True

    def _begin_content(self, headers: dict[str, str]) -> None:
        self._headers = headers
        self._content = []
        self._size = 0
        self._spool = None
        self._state = _State.CONTENT

    def _read_content(self, parts: list[Part]) -> bool:
        found = self._buffer.find(self._delimiter)
        if found < 0:
            # Everything but a possible partial delimiter at the end is content.
            usable = len(self._buffer) - (len(self._delimiter) - 1)
            if usable > 0:
                self._take(usable)
            return False
        self._take(found)
        del self._buffer[: len(self._delimiter)]
        oversized = self._size > self._max_part
        spooled, self._spool = self._spool, None
        parts.append(
            Part(
                index=self._count,
                headers=self._headers,
                data=b"" if oversized or spooled else b"".join(self._content),
                size=self._size,
                oversized=oversized,
                spooled=spooled,
            )
        )
        self._count += 1
        self._content = []
        self._state = _State.AFTER_DELIMITER
        return True

    def _take(self, length: int) -> None:
        self._size += length
        if self._size > self._max_part:
            self._content = []  # over the limit: count the bytes, keep none
            self._drop_spool()
        elif self._spool is not None:
            with memoryview(self._buffer) as view:  # released before the buffer shrinks
                self._spool.write(view[:length])
        elif self._spool_dir is not None and self._size > self._spool_above:
            self._spool = SpoolFile(self._spool_dir)
            for piece in self._content:
                self._spool.write(piece)
            self._content = []
            with memoryview(self._buffer) as view:
                self._spool.write(view[:length])
        else:
            self._content.append(bytes(self._buffer[:length]))
        del self._buffer[:length]

    def _drop_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(_CRLF):
        if line[:1] in (b" ", b"\t") and headers:  # obsolete line folding (RFC 5322)
            last = next(reversed(headers))
            headers[last] += " " + line.strip().decode("latin-1")
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name.strip() or name != name.strip():
            raise MultipartError("malformed_headers", "a part header line is malformed")
        headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


async def read_parts(
    chunks: AsyncIterable[bytes],
    reader: MultipartReader,
    *,
    max_body_bytes: int,
) -> AsyncIterator[Part]:
    """Yield the parts of a streamed body as each completes; raise on bad framing or size."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > max_body_bytes:
            raise BodyTooLargeError(max_body_bytes)
        for part in reader.feed(chunk):
            yield part
    reader.close()
