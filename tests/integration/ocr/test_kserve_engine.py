"""The remote engine against a real KServe v2 server (MLServer with the wheel's ONNX files).

It must read what the local RapidOCR engine reads -- same models, same parameters, only the
tensors travel -- over gRPC and over HTTP; report detections with their scores; and fail in a way
the caller can act on when the server is away (retry) or a model is not served (fix the
deployment).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from radstream.common.embedded_broker import free_loopback_port
from radstream.common.errors import MisconfiguredError, TransientError
from radstream.ocr.engine import Box, TextRegion
from radstream.ocr.engines.kserve import (
    KServeEngine,
    KServeModel,
    KServeModelMissingError,
    KServeUnavailableError,
)
from radstream.ocr.engines.ppocr import PpOcrParameters
from radstream.ocr.engines.rapid import RapidOcrEngine
from tests.integration.ocr.mlserver import MLServer, running_mlserver

pytestmark = pytest.mark.integration

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOX_TOLERANCE = 3  # pixels, per edge


def _drawn(
    size: tuple[int, int], lines: list[tuple[int, int, str]], *, rgb: bool
) -> tuple[np.ndarray, list[str], list[Box]]:
    """A dark image with light text lines at (x, y), like an ultrasound's annotation band.

    Returns the pixels, the texts and the boxes their ink covers.
    """
    mode, background = ("RGB", (8, 12, 20)) if rgb else ("L", 10)
    image = Image.new(mode, size, background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 20)
    boxes = []
    for x, y, text in lines:
        draw.text((x, y), text, fill=(235, 230, 90) if rgb else 235, font=font)
        left, top, right, bottom = draw.textbbox((x, y), text, font=font)
        boxes.append(Box(left, top, right - left, bottom - top))
    return np.asarray(image, dtype=np.uint8), [text for _, _, text in lines], boxes


GRAY, GRAY_TEXT, GRAY_BOXES = _drawn(
    (576, 432),
    [(10, 8, "SMITH^ANNA MRN 7730021"), (10, 40, "DOB 1958-11-02"), (420, 400, "PORTABLE")],
    rgb=False,
)
RGB, RGB_TEXT, _ = _drawn(
    (512, 384), [(16, 12, "ST MARY HOSPITAL"), (300, 340, "GAIN 52 dB")], rgb=True
)


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    with running_mlserver(tmp_path_factory.mktemp("mlserver")) as server:
        yield server


@pytest.fixture(scope="module")
def local() -> RapidOcrEngine:
    return RapidOcrEngine()


@pytest.fixture(scope="module", params=["grpc", "http"])
def remote(request: pytest.FixtureRequest, mlserver: MLServer) -> KServeEngine:
    if request.param == "grpc":
        return KServeEngine(mlserver.grpc_url)
    return KServeEngine(mlserver.http_url, binary_tensors=False)  # MLServer takes JSON only


def _assert_same_regions(remote: list[TextRegion], local: list[TextRegion]) -> None:
    assert len(remote) == len(local), (remote, local)
    for mine, theirs in zip(remote, local, strict=True):
        for edge in ("x", "y", "right", "bottom"):
            assert abs(getattr(mine.box, edge) - getattr(theirs.box, edge)) <= BOX_TOLERANCE, (
                mine.box,
                theirs.box,
            )
        assert mine.text == theirs.text
        assert mine.confidence == pytest.approx(theirs.confidence, abs=1e-3)
        assert mine.detection_score == pytest.approx(theirs.detection_score, abs=1e-3)


@pytest.mark.parametrize(("image", "drawn"), [(GRAY, GRAY_TEXT), (RGB, RGB_TEXT)])
def test_reads_what_the_local_engine_reads(
    remote: KServeEngine, local: RapidOcrEngine, image: np.ndarray, drawn: list[str]
) -> None:
    mine = remote.recognize(image)
    _assert_same_regions(mine, local.recognize(image))
    # ... and what it reads is what was drawn, so agreement is not agreement on nothing.
    assert sorted(r.text.replace(" ", "") for r in mine) == sorted(
        t.replace(" ", "") for t in drawn
    )
    assert all(r.confidence > 0.8 for r in mine)


def test_reads_alike_when_downscaled(remote: KServeEngine, local: RapidOcrEngine) -> None:
    _assert_same_regions(remote.recognize(GRAY, max_side=400), local.recognize(GRAY, max_side=400))


def test_detect_gives_boxes_with_scores_and_no_text(
    remote: KServeEngine, local: RapidOcrEngine
) -> None:
    regions = remote.detect(GRAY, max_side=320)
    _assert_same_regions(regions, local.detect(GRAY, max_side=320))
    assert len(regions) == len(GRAY_TEXT)
    box_threshold = PpOcrParameters().det_box_thresh
    for region in regions:
        assert region.text == ""
        assert box_threshold <= region.detection_score <= 1.0
    # Each drawn line lies within a region, in the caller's full-size coordinates.
    found = [r.box for r in regions]
    for drawn in GRAY_BOXES:
        assert drawn.covered_by(found) > 0.95


def test_serves_threads_at_once(mlserver: MLServer) -> None:
    engine = KServeEngine(mlserver.grpc_url)
    expected = engine.detect(RGB, max_side=256)
    results: list[list[TextRegion]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(engine.detect(RGB, max_side=256))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert [[r.box for r in result] for result in results] == [[r.box for r in expected]] * 3


def test_the_backend_probe_passes_while_the_server_is_ready(remote: KServeEngine) -> None:
    remote.check_backend()  # the ocr service's readiness: returns, MLServer and its models ready


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_server_away_is_a_transient_error(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_loopback_port()}"  # nothing listens there
    engine = KServeEngine(url, timeout_s=5)  # constructing connects to nothing yet
    with pytest.raises(KServeUnavailableError, match="unavailable") as caught:
        engine.detect(GRAY)
    assert isinstance(caught.value, TransientError)
    assert url in str(caught.value)
    with pytest.raises(KServeUnavailableError, match="unavailable"):
        engine.check_backend()


@pytest.mark.parametrize(
    "model", [KServeModel("ppocr_detector_v9"), KServeModel("ppocr_det", version="7")]
)
def test_a_model_not_served_is_a_configuration_error(
    mlserver: MLServer, model: KServeModel
) -> None:
    for url in (mlserver.grpc_url, mlserver.http_url):
        engine = KServeEngine(url, detector=model, binary_tensors=False)
        with pytest.raises(KServeModelMissingError, match="is not served") as caught:
            engine.detect(GRAY)
        assert isinstance(caught.value, MisconfiguredError)
        assert str(model) in str(caught.value)


def test_a_missing_recognizer_is_found_on_recognize(mlserver: MLServer) -> None:
    engine = KServeEngine(mlserver.grpc_url, recognizer=KServeModel("ppocr_reader"))
    assert len(engine.detect(RGB, max_side=256)) == len(RGB_TEXT)  # the detector is there
    with pytest.raises(KServeModelMissingError, match="ppocr_reader"):
        engine.recognize(RGB, max_side=256)
