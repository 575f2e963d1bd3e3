"""Fuzz target: STOW-RS (``POST /dicomweb/studies[/{study}]``): multipart framing and its parts.

Multipart bodies of mutated real instances (and parts that are not DICOM), with hostile
boundaries, part headers and media types, and byte mutations aimed at the delimiters, go
through the real ASGI app (multipart reader, instance receiver with the strict reader, blob
store, study assembly, audit) in process. Promise: every request is answered with the Store
Instances Response (200, 202, 409: one item per part, every failure with a Failure Reason) or
a 4xx with a JSON error; never 5xx, never an exception; no planted PHI is in a response, an
audit record or a log line (a response names the SOP Class and Instance UIDs it read, by
standard, so those two values are not searched).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import phi
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.campaign import Campaign, Emitted, Finding
from tests.fuzz.dicom_corpus import dicom_cases
from tests.fuzz.ingest_stack import IngestStack, ingest_stack
from tests.fuzz.mutations import mutated_bytes, sometimes

CAMPAIGN = Campaign("stow")
_FAILED, _REFERENCED, _REASON = "00081198", "00081199", "00081197"
_ECHOED_UIDS: Final = ("00081150", "00081155")  # Referenced SOP Class / Instance UID
_BOUNDARIES: Final = (
    "radstream-fuzz-boundary",
    "x",
    "a" * 70,
    "a" * 71,
    "with space",
    "ends with space ",
    'quote"inside',
    "\u00e9t\u00e9",
    "--",
    "",
)


# Boundaries no instance's bytes will contain by chance, so each part is one instance.
_DISTINCT_BOUNDARIES: Final = ("radstream-fuzz-boundary", "a" * 70)


@dataclass(frozen=True)
class StowCase:
    path: str
    boundary: str
    content_type: str
    body: bytes
    parts: int
    operations: tuple[str, ...]

    def __repr__(self) -> str:
        return (
            f"StowCase({self.path}, {self.content_type!r}, parts={self.parts}, {self.operations})"
        )


@st.composite
def stow_cases(draw: st.DrawFn) -> StowCase:
    boundary = _BOUNDARIES[0] if sometimes(draw, 0.625) else draw(st.sampled_from(_BOUNDARIES))
    operations: list[str] = []
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["dicom", "dicom", "dicom", "other type", "no headers", "text"])
        )
        data = draw(dicom_cases()).data if kind != "text" else phi.FREE_TEXT.encode()
        if kind in ("dicom", "text"):
            headers = b"Content-Type: application/dicom\r\n"
        elif kind == "other type":
            headers = (
                b"Content-Type: "
                + draw(
                    st.sampled_from(
                        [b"application/pdf", b"text/plain", b"application/dicom+json", b"garbage"]
                    )
                )
                + b"\r\n"
            )
        else:
            headers = b""
        if draw(st.integers(0, 7)) == 0:
            operations.append("header junk")
            headers += draw(
                st.sampled_from(
                    [
                        b"Content-Location: " + phi.PATIENT_NAME.encode() + b"\r\n",
                        b"X: y\r\n z\r\n",
                        b"broken header\r\n",
                        b": empty\r\n",
                    ]
                )
            )
        parts.append(headers + b"\r\n" + data)
        operations.append(kind)
    delimiter = b"--" + boundary.encode("utf-8")
    body = (
        b"".join(b"\r\n" + delimiter + b"\r\n" + part for part in parts)
        + b"\r\n"
        + delimiter
        + b"--\r\n"
    )
    body = draw(st.sampled_from([body, body[2:], b"preamble " + body]))
    if draw(st.integers(0, 2)) == 0:
        anchors = []
        start = body.find(delimiter)
        while start >= 0 and len(anchors) < 64:
            anchors.append(start)
            start = body.find(delimiter, start + 1)
        body = draw(mutated_bytes(body, anchors=anchors, max_operations=3))
        operations.append("bytes")
    media = draw(
        st.just(f'multipart/related; type="application/dicom"; boundary="{boundary}"')
        | st.sampled_from(
            [
                f'multipart/related; type="application/dicom"; boundary="{boundary}"',
                f"multipart/related; type=application/dicom; boundary={boundary}",
                "multipart/related; boundary=" + boundary,
                'multipart/related; type="application/dicom+xml"; boundary=' + boundary,
                'multipart/related; type="application/dicom"',
                "multipart/form-data; boundary=" + boundary,
                "application/dicom",
                "",
            ]
        )
    )
    path = draw(
        st.sampled_from(
            [
                "/dicomweb/studies",
                "/dicomweb/studies/1.2.840.113619.2.1",
                "/dicomweb/studies/" + phi.PATIENT_ID,
            ]
        )
    )
    return StowCase(path, boundary, media, body, len(parts), tuple(operations))


@dataclass
class Endpoint:
    runner: asyncio.Runner
    stack: IngestStack
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    with tempfile.TemporaryDirectory() as root, asyncio.Runner() as runner:
        context = ingest_stack(Path(root))
        stack = runner.run(context.__aenter__())
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=stack.app), base_url="http://ingest.fuzz"
        )
        try:
            yield Endpoint(runner, stack, client)
        finally:
            runner.run(client.aclose())
            runner.run(context.__aexit__(None, None, None))


def without_echoed_uids(body: Any) -> Any:
    """The Store Instances Response without the UIDs it echoes by standard."""
    if isinstance(body, dict):
        return {
            key: without_echoed_uids(value)
            for key, value in body.items()
            if key not in _ECHOED_UIDS
        }
    if isinstance(body, list):
        return [without_echoed_uids(item) for item in body]
    return body


def check_stow_answer(response: httpx.Response) -> None:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        raise Finding("bad-answer", "STOW-RS", f"HTTP {status} without a JSON body") from None
    if status in (200, 202, 409):
        referenced = body.get(_REFERENCED, {}).get("Value", [])
        failed = body.get(_FAILED, {}).get("Value", [])
        expected = {200: (True, False), 202: (True, True), 409: (False, True)}[status]
        if (bool(referenced), bool(failed)) != expected:
            raise Finding("bad-answer", "STOW-RS", f"HTTP {status} with the wrong sequences")
        if any(_REASON not in item for item in failed):
            raise Finding("bad-answer", "STOW-RS", "a failed instance without a Failure Reason")
        return
    if 400 <= status < 500:
        if not isinstance(body, dict) or not body.get("error"):
            raise Finding("bad-answer", "STOW-RS", f"HTTP {status} without a JSON error")
        return
    raise Finding("bad-answer", "STOW-RS", f"HTTP {status}")


def store(endpoint: Endpoint, case: StowCase, emitted: Emitted) -> None:
    # As bytes: a sender may put any octets in a header (httpx would refuse non-ASCII text).
    headers = {"Content-Type": case.content_type.encode()} if case.content_type else {}
    response = endpoint.runner.run(
        endpoint.client.post(case.path, content=case.body, headers=headers)
    )
    try:
        shown = json.dumps(without_echoed_uids(response.json()))
    except ValueError:
        shown = response.text
    emitted("response body", shown)
    emitted("response headers", json.dumps(dict(response.headers)))
    for line in endpoint.stack.take_audit():
        emitted("audit record", line)
    emitted.answered(f"HTTP {response.status_code}")
    check_stow_answer(response)
    whole = (
        not {"bytes", "header junk"} & set(case.operations)
        and case.boundary in _DISTINCT_BOUNDARIES
    )
    if whole and response.status_code in (200, 202, 409):
        body = response.json()
        items = sum(len(body.get(seq, {}).get("Value", [])) for seq in (_REFERENCED, _FAILED))
        if items != case.parts:
            raise Finding("no-answer", "STOW-RS", f"{items} response items for {case.parts} parts")


@fuzz_settings(weight=0.5)
@given(case=stow_cases())
def _fuzz(endpoint: Endpoint, case: StowCase) -> None:
    CAMPAIGN.attempt(case.body, lambda emitted: store(endpoint, case, emitted))


def test_every_mutated_stow_request_gets_a_store_response_or_a_json_error(
    endpoint: Endpoint,
) -> None:
    with CAMPAIGN.running():
        _fuzz(endpoint)
    CAMPAIGN.assert_clean()


# -- status lookups and completion: query parameters and paths from outside ------------------

QUERIES = Campaign("dicomweb.queries")
_VALUES = st.sampled_from(
    [
        "",
        "1.2.840.113619.2.1",
        phi.PATIENT_ID,
        phi.ACCESSION,
        phi.PATIENT_NAME,
        "-1",
        "0",
        "1001",
        "5",
        "abc",
        "1e9",
        "1.2.3,1.2.4,,",
        "%00",
        "\u00e9\U0001f600",
    ]
) | st.text(max_size=20)


@st.composite
def lookups(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]]]:
    study = quote(draw(_VALUES), safe="") or "1.2.3"  # as a client puts it in a URL
    method, path = draw(
        st.sampled_from(
            [
                ("GET", "/dicomweb/studies"),
                ("GET", f"/dicomweb/studies/{study}/series"),
                ("GET", f"/dicomweb/studies/{study}/instances"),
                ("POST", f"/ingest/studies/{study}/complete"),
            ]
        )
    )
    names = st.sampled_from(["StudyInstanceUID", "AccessionNumber", "limit", "offset", "other"])
    return method, path, draw(st.lists(st.tuples(names, _VALUES), max_size=5))


def look_up(
    endpoint: Endpoint, method: str, path: str, params: list[tuple[str, str]], emitted: Emitted
) -> None:
    response = endpoint.runner.run(endpoint.client.request(method, path, params=params))
    emitted.answered(f"HTTP {response.status_code}")
    emitted("response body", response.content)
    emitted("response headers", json.dumps(dict(response.headers)))
    if response.status_code >= 500:
        raise Finding("bad-answer", path.split("/")[1], f"HTTP {response.status_code}")
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            raise Finding("bad-answer", "lookup", "a 4xx without a JSON body") from None
        # {"error": ...} from radstream; {"detail": "Not Found"} from the router (no route).
        if not isinstance(body, dict) or not ({"error", "detail"} & body.keys()):
            raise Finding("bad-answer", "lookup", f"HTTP {response.status_code} without an error")


@fuzz_settings()
@given(lookup=lookups())
def _fuzz_lookups(endpoint: Endpoint, lookup: tuple[str, str, list[tuple[str, str]]]) -> None:
    method, path, params = lookup
    data = f"{method} {path} {params!r}".encode()
    QUERIES.attempt(data, lambda emitted: look_up(endpoint, method, path, params, emitted))


def test_every_lookup_and_completion_is_answered_without_quoting_its_parameters(
    endpoint: Endpoint,
) -> None:
    with QUERIES.running():
        _fuzz_lookups(endpoint)
    QUERIES.assert_clean()
