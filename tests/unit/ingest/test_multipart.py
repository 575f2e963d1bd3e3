"""The incremental multipart/related reader behind STOW-RS."""

from __future__ import annotations

import pytest

from radstream.ingest.multipart import (
    BodyTooLargeError,
    MultipartError,
    MultipartReader,
    Part,
    parse_media_type,
    read_parts,
)

BOUNDARY = "radstream-boundary-7f3a"


def body(*contents: bytes, boundary: str = BOUNDARY, preamble: bytes = b"") -> bytes:
    out = preamble
    for content in contents:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def read_all(data: bytes, *, chunk: int, max_part_bytes: int = 1 << 20) -> list[Part]:
    reader = MultipartReader(BOUNDARY, max_part_bytes=max_part_bytes)
    parts: list[Part] = []
    for start in range(0, len(data), chunk):
        parts.extend(reader.feed(data[start : start + chunk]))
    reader.close()
    return parts


async def stream(data: bytes, chunk: int):
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


class TestMediaType:
    def test_stow_content_type_is_parsed_with_quoted_parameters(self) -> None:
        media = parse_media_type('Multipart/Related; type="application/dicom"; boundary="a;b=c"')
        assert media.essence == "multipart/related"
        assert media.parameter("TYPE") == "application/dicom"
        assert media.parameter("boundary") == "a;b=c"

    def test_missing_header_is_an_empty_media_type(self) -> None:
        assert parse_media_type(None).essence == ""


class TestParts:
    @pytest.mark.parametrize("chunk", [1, 2, 5, 17, 64, 10_000])
    def test_parts_come_out_whole_however_the_body_is_chunked(self, chunk: int) -> None:
        contents = [b"\x00DICM" * 50, b"second\r\n--not-the-boundary\r\n", b""]
        parts = read_all(body(*contents, preamble=b"ignored preamble\r\n"), chunk=chunk)
        assert [part.data for part in parts] == contents
        assert [part.index for part in parts] == [0, 1, 2]
        assert all(part.media_type.essence == "application/dicom" for part in parts)

    def test_each_part_is_handed_out_as_soon_as_its_delimiter_arrived(self) -> None:
        data = body(b"first", b"second")
        reader = MultipartReader(BOUNDARY, max_part_bytes=100)
        cut = data.index(b"second")
        assert [part.data for part in reader.feed(data[:cut])] == [b"first"]
        assert [part.data for part in reader.feed(data[cut:])] == [b"second"]
        assert reader.finished

    def test_header_names_are_case_insensitive_and_folded_lines_joined(self) -> None:
        data = (
            f"--{BOUNDARY}\r\nCONTENT-TYPE: application/dicom;\r\n transfer-syntax=1.2.840"
            f"\r\nContent-Location: x\r\n\r\nabc\r\n--{BOUNDARY}--"
        ).encode()
        (part,) = read_all(data, chunk=7)
        assert part.headers["content-type"] == "application/dicom; transfer-syntax=1.2.840"
        assert part.media_type.parameter("transfer-syntax") == "1.2.840"

    def test_a_part_without_headers_has_no_media_type(self) -> None:
        data = f"--{BOUNDARY}\r\n\r\nraw\r\n--{BOUNDARY}--".encode()
        (part,) = read_all(data, chunk=3)
        assert part.data == b"raw"
        assert part.media_type.essence == ""

    def test_transport_padding_after_a_delimiter_is_allowed(self) -> None:
        data = f"--{BOUNDARY}  \r\n\r\nx\r\n--{BOUNDARY}-- \r\nepilogue".encode()
        assert [part.data for part in read_all(data, chunk=4)] == [b"x"]

    def test_an_oversized_part_is_counted_not_buffered_and_the_next_part_survives(self) -> None:
        parts = read_all(body(b"A" * 1000, b"small"), chunk=100, max_part_bytes=100)
        assert parts[0].oversized and parts[0].data == b"" and parts[0].size == 1000
        assert not parts[1].oversized and parts[1].data == b"small"


class TestMalformedBodies:
    def test_a_body_without_any_delimiter_has_no_parts(self) -> None:
        with pytest.raises(MultipartError) as caught:
            read_all(b"just some bytes", chunk=5)
        assert caught.value.reason == "no_parts"

    def test_a_body_cut_before_its_close_delimiter_is_unterminated(self) -> None:
        data = body(b"first")[: -len(f"--{BOUNDARY}--\r\n") - 4]
        with pytest.raises(MultipartError) as caught:
            read_all(data, chunk=8)
        assert caught.value.reason == "unterminated"

    def test_text_after_a_delimiter_is_malformed(self) -> None:
        data = f"--{BOUNDARY}garbage\r\n\r\nx\r\n--{BOUNDARY}--".encode()
        with pytest.raises(MultipartError) as caught:
            read_all(data, chunk=64)
        assert caught.value.reason == "malformed_delimiter"

    def test_a_header_line_without_a_colon_is_malformed(self) -> None:
        data = f"--{BOUNDARY}\r\nnot a header\r\n\r\nx\r\n--{BOUNDARY}--".encode()
        with pytest.raises(MultipartError) as caught:
            read_all(data, chunk=64)
        assert caught.value.reason == "malformed_headers"

    def test_endless_headers_are_refused(self) -> None:
        data = f"--{BOUNDARY}\r\nX: {'a' * 40_000}".encode()
        reader = MultipartReader(BOUNDARY, max_part_bytes=100)
        with pytest.raises(MultipartError) as caught:
            reader.feed(data)
        assert caught.value.reason == "headers_too_large"

    @pytest.mark.parametrize("boundary", ["", "x" * 71, "bad\u00e9"])
    def test_a_missing_or_invalid_boundary_is_refused_up_front(self, boundary: str) -> None:
        with pytest.raises(MultipartError) as caught:
            MultipartReader(boundary, max_part_bytes=10)
        assert caught.value.reason == "bad_boundary"

    def test_errors_never_quote_the_body(self) -> None:
        secret = "DOE^JANE"
        data = f"--{BOUNDARY}\r\n{secret}\r\n\r\nx\r\n--{BOUNDARY}--".encode()
        with pytest.raises(MultipartError) as caught:
            read_all(data, chunk=64)
        assert secret not in str(caught.value)


class TestStreaming:
    async def test_parts_stream_out_of_an_async_body(self) -> None:
        reader = MultipartReader(BOUNDARY, max_part_bytes=1000)
        parts = [
            part
            async for part in read_parts(stream(body(b"a", b"b"), 3), reader, max_body_bytes=10_000)
        ]
        assert [part.data for part in parts] == [b"a", b"b"]

    async def test_a_body_over_the_limit_stops_the_stream(self) -> None:
        reader = MultipartReader(BOUNDARY, max_part_bytes=10_000)
        with pytest.raises(BodyTooLargeError):
            async for _ in read_parts(stream(body(b"x" * 5000), 1000), reader, max_body_bytes=2000):
                pass
