"""Defects the fuzz harness found, each pinned by the smallest input that showed it.

Each test names the promise that was broken; the harness keeps looking for the next ones.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset

from radstream.common.envelope import EnvelopeError, decode, encode
from radstream.dicom import read_instance
from radstream.dicom.errors import UnsupportedTransferSyntaxError
from radstream.ingest.mllp import MllpServer, MllpSettings
from radstream.ingest.multipart import MultipartError, MultipartReader
from radstream.ingest.receipt import Sender
from tests.fuzz import phi
from tests.fuzz.ingest_stack import ingest_stack

BOUNDARY = "radstream-fuzz-boundary"
# Only a close delimiter is a delimiter here: the opening one follows a bare LF, not CRLF, so
# by RFC 2046 the part before it is preamble. The body carries no part at all.
NO_PART_BODY = (
    b"\x0c\n--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\nDICM..."
    b"\r\n--" + BOUNDARY.encode() + b"--\r\n"
)


def test_a_multipart_body_whose_only_delimiter_is_the_close_delimiter_has_no_parts() -> None:
    reader = MultipartReader(BOUNDARY, max_part_bytes=1 << 20)
    assert reader.feed(NO_PART_BODY) == []
    with pytest.raises(MultipartError) as raised:
        reader.close()
    assert raised.value.reason == "no_parts"


def test_a_stow_request_that_carries_no_instance_is_400_not_stored(tmp_path: Path) -> None:
    async def post() -> httpx.Response:
        async with ingest_stack(tmp_path) as stack:
            transport = httpx.ASGITransport(app=stack.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
                return await client.post(
                    "/dicomweb/studies",
                    content=NO_PART_BODY,
                    headers={
                        "Content-Type": f'multipart/related; type="application/dicom"; '
                        f"boundary={BOUNDARY}"
                    },
                )

    response = asyncio.run(post())
    # 200 would tell the sender its instance was stored: it was never read.
    assert response.status_code == 400
    assert response.json() == {"error": "no_parts"}
    assert phi.PATIENT_ID not in response.text


def test_an_hl7_message_type_that_is_free_text_is_refused_and_audited_without_it(
    tmp_path: Path,
) -> None:
    # A message cut inside MSH moves PID-5 into MSH-9: "QUIXBERG^ZANTHEA" as type^trigger.
    message = (
        "MSH|^~\\&|SYNTH_RIS|SYNTH_HOSP|RADSTREAM|SYNTH_HOSP|20240105||"
        f"{phi.PATIENT_NAME}|MSG1|P|2.5.1\r"
        f"PID|1||{phi.PATIENT_ID}^^^HOSP^MR\r"
    ).encode()

    async def handle() -> tuple[list[bytes], list[bytes]]:
        async with ingest_stack(tmp_path) as stack:
            server = MllpServer(
                MllpSettings(port=0, allowed_peers="127.0.0.1"),
                sink=stack.sink,
                rejections=stack.rejections,
            )
            sender = Sender(channel="mllp", identity="ris", address="127.0.0.1")
            acks = await server.handle(message, sender=sender)
            return acks, stack.take_audit()

    acks, audit = asyncio.run(handle())
    assert [ack.split(b"\rMSA|")[1][:2] for ack in acks] == [b"AR"]
    (record,) = audit
    assert phi.planted_in(record) == []


@pytest.mark.parametrize("header", ["ce_specversion", "content-type", "ce_type"])
def test_an_undecodable_event_is_refused_without_quoting_its_header(header: str) -> None:
    # A producer that put a body's text into a header: the dead letter keeps the original
    # headers for whoever may read them; the error message (x-radstream-error-message) names
    # the header only.
    value, headers = encode(StringValue(value="x"), source="radstream/test", inject_trace=False)
    headers[header] = phi.FREE_TEXT.encode()
    with pytest.raises(EnvelopeError) as raised:
        decode(value, headers, StringValue)
    assert header in str(raised.value)
    assert phi.planted_in(str(raised.value)) == []


def _with_transfer_syntax(value: bytes) -> bytes:
    """A Part 10 file whose Transfer Syntax UID element holds ``value`` (length fixed up)."""
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = "1.2.826.0.1.3680043.10.1234.1"
    dataset.PatientName = phi.PATIENT_NAME
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    original = b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\x00"
    padded = value + b"\x00" * (len(value) % 2)
    replaced = b"\x02\x00\x10\x00UI" + len(padded).to_bytes(2, "little") + padded
    data = buffer.getvalue()
    assert original in data
    # The group length no longer matches; the reader walks the meta elements regardless.
    return data.replace(original, replaced)


def test_a_transfer_syntax_that_is_no_uid_is_refused_without_quoting_it() -> None:
    # A length field cut wrong made the Transfer Syntax UID swallow the header behind it.
    data = _with_transfer_syntax(f"1.2.3 {phi.PATIENT_NAME} {phi.FREE_TEXT}".encode())
    with pytest.raises(UnsupportedTransferSyntaxError) as raised:
        read_instance(data)
    assert phi.planted_in(str(raised.value)) == []


def test_an_unknown_transfer_syntax_uid_is_still_named() -> None:
    with pytest.raises(UnsupportedTransferSyntaxError, match=r"1\.2\.3\.4\.5"):
        read_instance(_with_transfer_syntax(b"1.2.3.4.5"))


# A whole part, then a part whose header line is broken, in one chunk of the body.
BROKEN_SECOND_PART = (
    b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\nnot dicom either"
    b"\r\n--" + BOUNDARY.encode() + b"\r\nbroken header\r\n\r\nrest"
    b"\r\n--" + BOUNDARY.encode() + b"--\r\n"
)


def test_a_part_completed_before_a_framing_fault_in_the_same_chunk_is_handed_out() -> None:
    reader = MultipartReader(BOUNDARY, max_part_bytes=1 << 20)
    (part,) = reader.feed(BROKEN_SECOND_PART)
    assert part.data == b"not dicom either"
    with pytest.raises(MultipartError) as raised:
        reader.close()
    assert raised.value.reason == "malformed_headers"


def test_stow_answers_each_part_before_a_framing_fault_and_the_broken_rest(
    tmp_path: Path,
) -> None:
    async def post() -> httpx.Response:
        async with ingest_stack(tmp_path) as stack:
            transport = httpx.ASGITransport(app=stack.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
                return await client.post(
                    "/dicomweb/studies",
                    content=BROKEN_SECOND_PART,
                    headers={"Content-Type": f"multipart/related; boundary={BOUNDARY}"},
                )

    response = asyncio.run(post())
    assert response.status_code == 409
    # The unreadable first part (0xC000: not DICOM), then the broken rest (0xC000).
    failed = response.json()["00081198"]["Value"]
    assert len(failed) == 2
