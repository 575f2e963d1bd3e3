"""deid with the kserve engine, as its settings build it, against a real KServe v2 server.

MLServer serves the wheel's ONNX files (as Triton would); the pixel stage comes from
``DeidSettings(ocr_engine="kserve", ocr_kserve_url=...)`` with RapidOCR's calibration. On a CT
slice with a name burned in it must decide exactly what the in-process RapidOCR stage decides:
same boxes, same PHI, same risk -- which is why kserve may use RapidOCR's calibration.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from radstream.deid.config import DeidSettings
from radstream.deid.pipeline import InstanceOutcome
from radstream.deid.pixels.calibration import FAIL_CLOSED
from radstream.deid.pixels.stage import PixelStage
from tests.integration.ocr.mlserver import MLServer, running_mlserver
from tests.unit.deid.pixels.builders import burn, ct_instance, ct_slice, deidentify
from tests.unit.deid.study_builder import PATIENT_ID, PATIENT_NAME, shared_text_cleaner

pytestmark = pytest.mark.integration

KEY = "0123456789abcdef0123456789abcdef-kserve-deid"


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    with running_mlserver(tmp_path_factory.mktemp("mlserver")) as server:
        yield server


def settings_stage(**overrides: object) -> PixelStage:
    return DeidSettings(key=KEY, **overrides).pixel_stage(shared_text_cleaner())  # type: ignore[arg-type]


def decided(outcome: InstanceOutcome) -> tuple[object, ...]:
    report = outcome.pixel_report
    assert report is not None, outcome.reasons
    return (
        outcome.status,
        report.decision,
        [(finding.frame, finding.box, finding.phi) for finding in report.findings],
    )


def test_the_kserve_stage_decides_as_the_rapidocr_stage_with_its_calibration(
    mlserver: MLServer,
) -> None:
    remote = settings_stage(ocr_engine="kserve", ocr_kserve_url=mlserver.grpc_url)
    local = settings_stage(ocr_engine="rapidocr")
    pixels = ct_slice(5)
    burn(pixels, f"{PATIENT_NAME} {PATIENT_ID}", (6, 4), 14, 4095)
    ds = ct_instance(pixels)

    through_server = deidentify(ds, remote)
    in_process = deidentify(ds, local)

    assert remote.threshold.method != FAIL_CLOSED
    assert remote.threshold == local.threshold
    assert decided(through_server) == decided(in_process)
    report, reference = through_server.pixel_report, in_process.pixel_report
    assert report is not None and reference is not None
    assert report.risk == pytest.approx(reference.risk, abs=1e-3)
    assert any(finding.phi for finding in report.findings)
