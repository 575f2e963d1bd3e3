"""Fuzz target: the DICOM C-STORE SCP, over real DIMSE associations on a loopback socket.

Mutated real instances are sent by a pynetdicom SCU as their file's bytes (chunked, not decoded
and re-encoded by the SCU), so the SCP receives the data set as the mutation left it; the SCP
hands it to the instance receiver (strict reader, blob store, study assembly, audit). Promise:
every C-STORE request the SCU could send gets a response with a status (success, or a refusal
or failure status), no association dies unanswered, no planted PHI is in a response, an audit
record or a log line. Associations cost more than the other inputs: a tenth of the budget.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from pydicom import dcmread
from pynetdicom import AE, _config

from radstream.ingest.config import DicomSettings
from radstream.ingest.scp import DicomScp
from tests.fuzz.budget import fuzz_settings
from tests.fuzz.campaign import Campaign, Emitted, Finding
from tests.fuzz.dicom_corpus import DicomCase, dicom_cases
from tests.fuzz.ingest_stack import IngestStack, ingest_stack

CAMPAIGN = Campaign("cstore")
CALLING_AE = "FUZZ_SCU"


@dataclass
class Scp:
    runner: asyncio.Runner
    stack: IngestStack
    scp: DicomScp
    folder: Path


@pytest.fixture(scope="module")
def scp() -> Iterator[Scp]:
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are
    with tempfile.TemporaryDirectory() as root, asyncio.Runner() as runner:
        context = ingest_stack(Path(root))
        stack = runner.run(context.__aenter__())
        settings = DicomSettings(port=0, allowed_calling_aes=CALLING_AE, dimse_timeout_s=10)
        server = DicomScp(settings, stack.receiver, metrics=stack.metrics)
        runner.run(server.start())
        try:
            yield Scp(runner, stack, server, Path(root))
        finally:
            runner.run(server.stop())
            runner.run(context.__aexit__(None, None, None))
            _config.STORE_SEND_CHUNKED_DATASET = chunked


def send(port: int, path: Path) -> tuple[str, object]:
    """C-STORE ``path`` from a fresh association: ('sent', status) or why it was not sent."""
    try:
        meta = dcmread(path, stop_before_pixels=True, specific_tags=[]).file_meta
        sop_class = str(meta.MediaStorageSOPClassUID)
        syntax = str(meta.TransferSyntaxUID)
    except Exception:  # the SCU cannot even name what it sends: nothing goes on the wire
        return "unsendable", None
    ae = AE(ae_title=CALLING_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    try:
        ae.add_requested_context(sop_class, syntax)
    except Exception:  # not a UID pynetdicom will put in a presentation context
        return "unsendable", None
    assoc = ae.associate("127.0.0.1", port, ae_title="RADSTREAM")
    if not assoc.is_established:
        return "association refused", None
    try:
        status = assoc.send_c_store(path)
    except Exception:  # the SCU's own refusal to send this file (no context accepted, ...)
        return "unsendable", None
    finally:
        assoc.release()
    return "sent", status


def store(scp: Scp, case: DicomCase, emitted: Emitted) -> None:
    path = scp.folder / "case.dcm"
    path.write_bytes(case.data)
    outcome, status = scp.runner.run(asyncio.to_thread(send, scp.scp.port, path))
    for line in scp.stack.take_audit():
        emitted("audit record", line)
    if outcome != "sent":
        emitted.answered(outcome)
        return
    if status is None or "Status" not in status:
        raise Finding("no-answer", "C-STORE", "no response status (association aborted)")
    code = int(status.Status)
    emitted.answered(f"0x{code:04X}")
    emitted("response", str(status.get("ErrorComment", "")))


@fuzz_settings(weight=0.1)
@given(case=dicom_cases())
def _fuzz(scp: Scp, case: DicomCase) -> None:
    CAMPAIGN.attempt(case.data, lambda emitted: store(scp, case, emitted))


def test_every_instance_sent_over_c_store_gets_a_status(scp: Scp) -> None:
    with CAMPAIGN.running():
        _fuzz(scp)
    CAMPAIGN.assert_clean()
