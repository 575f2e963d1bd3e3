"""The deid service's account of the pixel stage, per instance: metrics and the result it publishes.

Each instance goes through the service's own instance handler (filesystem stores, the real
RapidOCR engine, the real Presidio analyzer); instances are synthetic (the fake patient DOE^JANE).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydicom.dataset import Dataset

from radstream.common.blobstore import BlobStores, FilesystemBlobStore
from radstream.contracts.v1 import common_pb2, deid_pb2
from radstream.deid.app import (
    DeidWorker,
    _option_codes,
    _process_instance,
    _StudyResult,
    _text_model,
)
from radstream.deid.burned_in import DEFAULT_PIXEL_POLICY, PixelPolicy
from radstream.deid.metrics import deid_metrics
from radstream.deid.pipeline import InstanceOutcome, InstanceStatus
from radstream.deid.pixels.findings import PixelDecision
from radstream.deid.pixels.risk import RiskThreshold
from radstream.deid.pixels.stage import PixelStage
from radstream.deid.profile import DeidKeys, DeidProfile
from tests.unit.deid.pixels.builders import burn, ct_instance, ct_slice, stage
from tests.unit.deid.study_builder import (
    PATIENT_ID,
    PATIENT_NAME,
    TEST_KEYS_SECRET,
    shared_text_cleaner,
    synthetic_instance,
    to_bytes,
)

STEPS = ("decode", "triage", "ocr", "redact", "verify")
DECISIONS = {decision.value for decision in PixelDecision}


@pytest.fixture(scope="module")
def pixel_stage() -> PixelStage:
    return stage()


class Service:
    """The instance handler of one deid worker, with its metrics in a registry of its own."""

    def __init__(self, root: Path, pixel_stage: PixelPolicy) -> None:
        phi = FilesystemBlobStore(root / "phi", "phi")
        release = FilesystemBlobStore(root / "release", "release", refused_roots=[phi.root_uri])
        self.registry = CollectorRegistry()
        self.worker = DeidWorker(
            profile=DeidProfile(),
            keys=DeidKeys.from_secret(TEST_KEYS_SECRET),
            clean_text=shared_text_cleaner(),
            stores=BlobStores(phi=phi, release=release),
            metrics=deid_metrics(self.registry),
            pixel_policy=pixel_stage,
        )

    async def process(
        self, ds: Dataset
    ) -> tuple[InstanceOutcome, deid_pb2.DeidCompleted.InstanceResult]:
        stored = await self.worker.stores.phi.put(to_bytes(ds), media_type="application/dicom")
        ref = common_pb2.InstanceRef(
            study_instance_uid=str(ds.StudyInstanceUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
            transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
            modality=str(ds.Modality),
            blob=stored.to_proto(),
        )
        gathered = _StudyResult()
        outcome = await _process_instance(self.worker, 0, ref, gathered)
        [result] = gathered.results
        return outcome, result

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def step_counts(self) -> dict[str, float]:
        return {
            step: self.value("radstream_deid_pixel_stage_seconds_count", step=step)
            for step in STEPS
        }

    def pixel_samples(self) -> list[tuple[str, dict[str, str], float]]:
        return [
            (sample.name, sample.labels, sample.value)
            for metric in self.registry.collect()
            if metric.name.startswith("radstream_deid_pixel")
            for sample in metric.samples
        ]


def ct_with_name() -> Dataset:
    pixels = ct_slice(1)
    burn(pixels, f"{PATIENT_NAME} {PATIENT_ID}", (6, 4), 14, 4095)
    return ct_instance(pixels)


async def test_a_redacted_instance_moves_every_pixel_metric(
    tmp_path: Path, pixel_stage: PixelStage
) -> None:
    service = Service(tmp_path, pixel_stage)
    outcome, _ = await service.process(ct_with_name())

    assert outcome.status is InstanceStatus.RELEASED, outcome.reasons
    report = outcome.pixel_report
    assert report is not None
    assert report.decision is PixelDecision.REDACTED
    assert service.value("radstream_deid_pixel_decisions_total", decision="redacted") == 1
    assert service.step_counts() == dict.fromkeys(STEPS, 1.0)
    seconds = service.value("radstream_deid_pixel_stage_seconds_sum", step="ocr")
    assert seconds == pytest.approx(report.costs.ocr_ms / 1000)
    assert seconds > 0
    phi_boxes = service.value("radstream_deid_pixel_boxes_total", kind="phi")
    assert phi_boxes >= 1
    assert phi_boxes + service.value("radstream_deid_pixel_boxes_total", kind="kept") == len(
        report.findings
    )
    assert service.value("radstream_deid_pixel_risk_count") == 1
    assert service.value("radstream_deid_pixel_risk_sum") == pytest.approx(report.risk)
    read = service.value("radstream_deid_pixel_confidence_count")
    assert read >= 1
    # Each confidence lies in (0, 1]: their sum is positive and at most their count.
    assert 0 < service.value("radstream_deid_pixel_confidence_sum") <= read


async def test_the_published_result_says_what_the_pixel_stage_did(
    tmp_path: Path, pixel_stage: PixelStage
) -> None:
    service = Service(tmp_path, pixel_stage)
    outcome, result = await service.process(ct_with_name())

    report = outcome.pixel_report
    assert report is not None
    assert result.pixel_decision == "redacted"
    assert result.phi_boxes_filled >= 1
    assert result.phi_boxes_filled == sum(1 for finding in report.findings if finding.phi)
    assert result.phi_boxes_filled + result.text_boxes_kept == len(report.findings)
    assert result.pixel_check_ms == pytest.approx(report.costs.total_ms, abs=0.001)
    assert result.pixel_risk == pytest.approx(report.risk)
    assert 0 <= result.pixel_risk < pixel_stage.threshold.value  # released: under it


async def test_without_a_pixel_stage_the_result_has_no_pixel_decision(tmp_path: Path) -> None:
    service = Service(tmp_path, DEFAULT_PIXEL_POLICY)
    _, result = await service.process(ct_instance(ct_slice(2)))

    assert result.pixel_decision == ""
    assert service.value("radstream_deid_pixel_decisions_total", decision="no_text") == 0


async def test_an_instance_without_text_moves_no_box_risk_or_confidence(
    tmp_path: Path, pixel_stage: PixelStage
) -> None:
    service = Service(tmp_path, pixel_stage)
    outcome, result = await service.process(ct_instance(ct_slice(2)))

    assert outcome.status is InstanceStatus.RELEASED, outcome.reasons
    assert service.value("radstream_deid_pixel_decisions_total", decision="no_text") == 1
    # Every step runs, briefly: overlays are read, the flag is set, the pixels are compared.
    assert service.step_counts() == dict.fromkeys(STEPS, 1.0)
    assert service.value("radstream_deid_pixel_risk_count") == 0  # not text-bearing
    assert service.value("radstream_deid_pixel_confidence_count") == 0
    assert service.value("radstream_deid_pixel_boxes_total", kind="phi") == 0
    assert (result.pixel_decision, result.phi_boxes_filled, result.pixel_risk) == ("no_text", 0, 0)
    assert result.pixel_check_ms > 0


async def test_an_instance_without_pixel_data_is_counted_as_such(
    tmp_path: Path, pixel_stage: PixelStage
) -> None:
    service = Service(tmp_path, pixel_stage)
    outcome, result = await service.process(synthetic_instance(with_pixels=False))

    assert outcome.status is InstanceStatus.RELEASED, outcome.reasons
    assert service.value("radstream_deid_pixel_decisions_total", decision="no_pixels") == 1
    assert service.step_counts() == dict.fromkeys(STEPS, 0.0)
    assert (result.pixel_decision, result.pixel_check_ms) == ("no_pixels", 0)


async def test_no_pixel_metric_carries_anything_read_from_the_instance(
    tmp_path: Path, pixel_stage: PixelStage
) -> None:
    service = Service(tmp_path, pixel_stage)
    await service.process(ct_with_name())

    vocabulary = DECISIONS | set(STEPS) | {"phi", "kept"}
    for name, labels, _ in service.pixel_samples():
        for key, value in labels.items():
            assert key == "le" or value in vocabulary, (name, key)


async def test_the_result_carries_the_lowest_confidence_read(
    tmp_path: Path, pixel_stage: PixelStage
) -> None:
    service = Service(tmp_path, pixel_stage)
    outcome, result = await service.process(ct_with_name())

    report = outcome.pixel_report
    assert report is not None and report.risk_features.text_found
    assert result.min_confidence == pytest.approx(report.risk_features.min_recognition_confidence)
    assert 0 < result.min_confidence < 1
    _, clean = await service.process(ct_instance(ct_slice(2)))
    assert clean.min_confidence == 1.0  # nothing needed reading


def test_the_study_names_the_text_model_and_the_clean_pixel_data_option(
    tmp_path: Path, pixel_stage: PixelStage
) -> None:
    with_stage = Service(tmp_path / "a", pixel_stage).worker
    header_only = Service(tmp_path / "b", DEFAULT_PIXEL_POLICY).worker

    assert "113101" in _option_codes(with_stage)
    assert "113101" not in _option_codes(header_only)
    model = _text_model(with_stage)
    assert model is not None
    assert model.name.startswith(pixel_stage.engine.info.name)
    assert model.version == pixel_stage.engine.info.version
    assert model.backend == "onnxruntime"
    assert _text_model(header_only) is None


async def test_an_instance_the_pixel_stage_holds_is_low_confidence(
    tmp_path: Path, pixel_stage: PixelStage
) -> None:
    # A threshold of 0: every instance with text is held.
    holding = RiskThreshold(
        value=0.0, leak_rate=0.01, engine="rapidocr", n_calibration=0, method="test"
    )
    service = Service(tmp_path, stage(ocr=pixel_stage.engine, threshold=holding))
    outcome, result = await service.process(ct_with_name())

    assert outcome.status is InstanceStatus.HELD, outcome.reasons
    assert result.error_code == common_pb2.ERROR_CODE_DEID_LOW_CONFIDENCE
