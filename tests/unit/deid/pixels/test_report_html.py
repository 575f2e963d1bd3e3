"""report.html: a section per redacted or held instance, thumbnails with boxes, and no way for
a string from a file or from OCR to become markup."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from radstream.deid.pixels.calibration import RiskThreshold
from radstream.deid.pixels.findings import PixelDecision, PixelFinding, PixelReport
from radstream.deid.pixels.synthetic import generate_instance
from radstream.deid.report_html import HtmlReport, reported
from radstream.ocr.engine import Box

MALICIOUS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "a", "section", "div",
    "figure", "figcaption", "img", "b", "ul", "li", "table", "tr", "th", "td",
}  # fmt: skip


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _finding(text: str, box: Box, *, phi: bool) -> PixelFinding:
    return PixelFinding(
        frame=0, box=box, text=text, confidence=0.9, detection_score=0.8, phi=phi,
        phi_kinds=("PatientName",) if phi else (), phi_score=0.95 if phi else 0.0,
        reason=MALICIOUS if phi else "allowlisted marker",
    )  # fmt: skip


@pytest.fixture
def page(tmp_path: Path) -> tuple[Path, Box]:
    instance = generate_instance(3_000_003)  # a secondary capture with a name drawn in it
    name = next(b for b in instance.labels.boxes if b.kind == "PatientName")
    box = Box(name.x, name.y, name.width, name.height)
    after = dcmread(io.BytesIO(instance.to_bytes()))
    filled = instance.pixels[0].copy()
    filled[box.y : box.bottom, box.x : box.right] = 0
    after.PixelData = filled.tobytes()
    report = PixelReport(
        decision=PixelDecision.HELD,
        findings=(
            _finding(MALICIOUS, box, phi=True), _finding("PORTABLE", Box(5, 5, 40, 12), phi=False),
        ),
        reasons=("risk_over_threshold", MALICIOUS),
        risk=0.42,
        frames_total=1,
        frames_checked=1,
    )  # fmt: skip
    threshold = RiskThreshold(
        value=0.3, leak_rate=0.01, engine="rapidocr", n_calibration=400, method="crc"
    )
    path = tmp_path / "report.html"
    with HtmlReport(path, threshold=threshold) as html:
        html.add(
            input_name=f"{MALICIOUS}/DOE_JANE.dcm",
            status="held",
            reasons=(MALICIOUS,),
            pixels=report,
            before=instance.dataset,
            after=after,
        )
        html.close({"released": 3, "held": 1})
    return path, box


def test_every_string_from_a_file_or_ocr_is_text_never_markup(page: tuple[Path, Box]) -> None:
    path, _ = page
    content = path.read_text(encoding="utf-8")
    assert "<script" not in content.lower()
    assert MALICIOUS not in content
    parser = _Tags()
    parser.feed(content)
    assert {tag for tag, _ in parser.tags} <= ALLOWED_TAGS
    for tag, attributes in parser.tags:
        for name, value in attributes:
            assert not name.startswith("on"), (tag, name)
            if tag == "img" and name == "src":
                assert value is not None and value.startswith("data:image/png;base64,")
    text = "".join(parser.text)
    assert text.count(MALICIOUS) >= 4  # heading, reasons, OCR text, why: shown, as text


def test_the_page_forbids_scripts_and_fetches(page: tuple[Path, Box]) -> None:
    content = page[0].read_text(encoding="utf-8")
    assert "Content-Security-Policy" in content
    assert "default-src &#x27;none&#x27;" in content


def test_the_report_is_for_its_owner_only(page: tuple[Path, Box]) -> None:
    assert page[0].stat().st_mode & 0o777 == 0o600


def test_before_and_after_thumbnails_show_the_phi_box_in_red(page: tuple[Path, Box]) -> None:
    path, box = page
    parser = _Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    sources = [dict(attrs)["src"] for tag, attrs in parser.tags if tag == "img"]
    assert len(sources) == 2
    images = [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(str(src).split(",", 1)[1]))))
        for src in sources
    ]
    scale = images[0].shape[1] / 560  # the capture is 560 wide
    assert max(images[0].shape[:2]) <= 320
    for image in images:
        top = int(box.y * scale)
        row = image[top, int(box.x * scale) : int(box.right * scale)]
        red = (row[:, 0] > 200) & (row[:, 1] < 60) & (row[:, 2] < 60)
        assert red.mean() > 0.5


def test_pixels_that_cannot_be_shown_are_said_so_not_raised(tmp_path: Path) -> None:
    instance = generate_instance(3_000_003)
    broken = dcmread(io.BytesIO(instance.to_bytes()))
    broken.PixelData = b"\x00" * 10
    with HtmlReport(tmp_path / "r.html") as html:
        html.add(
            input_name="a.dcm", status="held", reasons=(), pixels=None, before=broken, after=None
        )
    content = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "could not be shown" in content
    assert "proposal: none" in content


def test_only_redacted_or_held_instances_get_a_section() -> None:
    assert reported(None, held=True)
    assert reported(PixelReport(decision=PixelDecision.REDACTED), held=False)
    assert not reported(PixelReport(decision=PixelDecision.TEXT_KEPT), held=False)
    assert not reported(PixelReport(decision=PixelDecision.NO_TEXT), held=False)
    assert not reported(None, held=False)
