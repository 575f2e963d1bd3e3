"""An OCR engine that does not answer loses no instance: nothing is released, and it is tried again.

The engines are real clients of servers that are not there: the kserve engine (tritonclient)
and the ocr service's client (gRPC), each pointed at a loopback port nobody listens on. The
instance is a synthetic CT slice with a name burned in, so the pixel stage must call the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydicom.dataset import Dataset

from radstream.common.blobstore import BlobStores, FilesystemBlobStore
from radstream.common.embedded_broker import free_loopback_port
from radstream.common.errors import TransientError
from radstream.contracts.v1 import common_pb2
from radstream.deid.app import DeidWorker, _process_instance, _StudyResult
from radstream.deid.batch import REJECTED_FILE, deidentify_directory
from radstream.deid.errors import OcrEngineUnavailableError
from radstream.deid.metrics import deid_metrics
from radstream.deid.pipeline import InstanceStatus
from radstream.deid.pixels.stage import PixelStage
from radstream.deid.profile import DeidProfile
from radstream.ocr.client import GrpcOcrEngine, OcrClient, OcrUnavailableError
from radstream.ocr.engine import OcrEngine
from radstream.ocr.engines.kserve import KServeEngine, KServeUnavailableError
from tests.unit.deid.pixels.builders import KEYS, burn, ct_instance, ct_slice, deidentify, stage
from tests.unit.deid.study_builder import (
    PATIENT_ID,
    PATIENT_NAME,
    shared_text_cleaner,
    to_bytes,
)


def kserve_away() -> OcrEngine:
    return KServeEngine(f"grpc://127.0.0.1:{free_loopback_port()}", timeout_s=5)


def ocr_service_away() -> OcrEngine:
    client = OcrClient(f"127.0.0.1:{free_loopback_port()}", timeout_s=2, backoff_s=0.01)
    return GrpcOcrEngine(client)


ENGINES_AWAY = {
    "kserve": (kserve_away, KServeUnavailableError),
    "grpc": (ocr_service_away, OcrUnavailableError),
}


def ct_with_name(seed: int = 2) -> Dataset:
    pixels = ct_slice(seed, size=256)
    burn(pixels, f"{PATIENT_NAME} {PATIENT_ID}", (6, 4), 14, 4095)
    return ct_instance(pixels)


def stage_away(name: str) -> PixelStage:
    build, _ = ENGINES_AWAY[name]
    # The threshold is given: a remote engine's info (its name) is asked of the server.
    return stage(ocr=build())


@pytest.mark.parametrize("name", sorted(ENGINES_AWAY))
def test_the_pipeline_raises_the_outage_instead_of_rejecting_the_instance(name: str) -> None:
    _, cause = ENGINES_AWAY[name]
    with pytest.raises(OcrEngineUnavailableError) as raised:
        deidentify(ct_with_name(), stage_away(name))

    error = raised.value
    assert isinstance(error, TransientError), "the delivery layer retries transient errors"
    assert isinstance(error.__cause__, cause)
    assert error.step == "inspect_pixels"
    assert error.cause == cause.__name__
    assert str(error).startswith("ERROR_CODE_DEID_OCR_UNAVAILABLE:")
    assert PATIENT_NAME not in str(error) and PATIENT_ID not in str(error)


async def test_the_service_handler_lets_the_outage_through_and_stores_nothing(
    tmp_path: Path,
) -> None:
    phi = FilesystemBlobStore(tmp_path / "phi", "phi")
    release = FilesystemBlobStore(tmp_path / "release", "release", refused_roots=[phi.root_uri])
    worker = DeidWorker(
        profile=DeidProfile(),
        keys=KEYS,
        clean_text=shared_text_cleaner(),
        stores=BlobStores(phi=phi, release=release),
        metrics=deid_metrics(CollectorRegistry()),
        pixel_policy=stage_away("kserve"),
    )
    ds = ct_with_name()
    stored = await phi.put(to_bytes(ds), media_type="application/dicom")
    ref = common_pb2.InstanceRef(
        study_instance_uid=str(ds.StudyInstanceUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        modality="CT",
        blob=stored.to_proto(),
    )
    gathered = _StudyResult()

    # Raised out of the handler: the bus's delivery policy retries the study event.
    with pytest.raises(OcrEngineUnavailableError):
        await _process_instance(worker, 0, ref, gathered)

    assert gathered.results == [] and gathered.audits == []
    assert [path for path in (tmp_path / "release").rglob("*") if path.is_file()] == []


def test_the_batch_lists_the_file_as_not_processed_and_goes_on(tmp_path: Path) -> None:
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "a_ct.dcm").write_bytes(to_bytes(ct_with_name()))
    (in_dir / "b_not_dicom.txt").write_bytes(b"no DICOM here")
    (in_dir / "c_ct.dcm").write_bytes(to_bytes(ct_with_name(seed=3)))

    summary = deidentify_directory(
        in_dir,
        out_dir,
        DeidProfile(),
        KEYS,
        shared_text_cleaner(),
        stage_away("kserve"),
    )

    assert [entry.input for entry in summary.entries] == ["a_ct.dcm", "b_not_dicom.txt", "c_ct.dcm"]
    assert all(entry.status is InstanceStatus.REJECTED for entry in summary.entries)
    assert [entry.error_reason for entry in summary.entries] == [
        "ocr_unavailable",
        "not_dicom",
        "ocr_unavailable",
    ]
    rejected = {row["input"]: row for row in json.loads((out_dir / REJECTED_FILE).read_text())}
    left = rejected["a_ct.dcm"]
    assert left["reason"] == "ocr_unavailable"
    assert left["step"] == "inspect_pixels"
    assert left["error"] == (
        "OCR engine unavailable (KServeUnavailableError in step inspect_pixels); the file was "
        "left as it is; run again"
    )
    assert not any((out_dir / "released").iterdir()) and not any((out_dir / "held").iterdir())
    assert (in_dir / "a_ct.dcm").read_bytes() == to_bytes(ct_with_name())
