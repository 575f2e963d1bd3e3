"""``OUT_DIR/report.html``: what the pixel stage did to each instance it touched, to look at.

One section per instance whose pixels were redacted or that was held: the original and the
proposal (released file or held candidate) side by side as small PNGs inlined as data URIs,
with every box found drawn on both -- PHI in red, kept text in green -- and below them the
decision, risk against the threshold, reasons and a table of the boxes with their OCR text
and scores. A person scrolls it instead of opening a hundred DICOM files.

The report shows original pixels and OCR text: it is PHI, written 0600 next to ``held/``
in the PHI zone, never copied out with ``released/``. Every string from a file or from OCR
(input paths carry names too) goes through :func:`html.escape`, and the page forbids
scripts, frames and any fetch (a Content-Security-Policy allowing only inline styles and
``data:`` images), so a name like ``<script>`` in a header or burned into a frame is text on
the page and nothing else.

The page is written as the batch goes (a section per instance, the summary last), so a long
run never holds its thumbnails in memory.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TextIO

from pydicom.dataset import Dataset

from radstream.deid.pixels.calibration import RiskThreshold
from radstream.deid.pixels.findings import PixelDecision, PixelFinding, PixelReport
from radstream.deid.review_preview import render_preview

__all__ = ["REPORT_FILE", "HtmlReport", "reported"]

REPORT_FILE = "report.html"
_MAX_SIDE = 320
_MAX_TILES = 9
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"  # noqa: E501
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
section{border-top:1px solid #ccc;padding:.8em 0}
.pair{display:flex;gap:1em;flex-wrap:wrap}
figure{margin:0}figcaption{font-size:12px;color:#555}
img{border:1px solid #999;image-rendering:pixelated}
table{border-collapse:collapse;font-size:12px;margin-top:.5em}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.phi{color:#b00}.kept{color:#070}.held{color:#a60}.missing{color:#888}
"""


def reported(report: PixelReport | None, *, held: bool) -> bool:
    """Whether an instance gets a section: its pixels were redacted, or it was held."""
    if held:
        return True
    return report is not None and report.decision in {PixelDecision.REDACTED, PixelDecision.HELD}


def _e(value: object) -> str:
    """Escape for HTML text and attribute values alike."""
    return html.escape(str(value), quote=True)


class HtmlReport:
    """Writes ``report.html`` section by section; :meth:`close` adds the summary and ends it."""

    def __init__(
        self,
        path: Path,
        *,
        title: str = "radstream deid: pixel report",
        threshold: RiskThreshold | None = None,
        max_side: int = _MAX_SIDE,
    ) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # whatever the umask, and an existing file's mode
        self._stream: TextIO = os.fdopen(fd, "w", encoding="utf-8")
        self._threshold = threshold
        self._max_side = max_side
        self.sections = 0
        self._stream.write(
            "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="Content-Security-Policy" content="{_e(_POLICY)}">'
            '<meta name="referrer" content="no-referrer">'
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{_e(title)}</h1>"
            "<p>PHI: original pixels and text read from them. Keep this file in the PHI zone."
            ' Red boxes: PHI (filled in the proposal); green: text kept. <a href="#summary">'
            "Summary</a></p>\n"
        )

    def add(
        self,
        *,
        input_name: str,
        status: str,
        reasons: Sequence[str],
        pixels: PixelReport | None,
        before: Dataset | None,
        after: Dataset | None,
    ) -> None:
        """One instance's section: thumbnails (when the pixels decode), decision and boxes."""
        self.sections += 1
        findings = pixels.findings if pixels is not None else ()
        parts = [f'<section id="i{self.sections}"><h2>{_e(input_name)}</h2>']
        figures = [
            self._figure("original", before, findings),
            self._figure("released" if status == "released" else "proposal", after, findings),
        ]
        parts.append(f'<div class="pair">{"".join(figures)}</div>')
        status_class = "held" if status == "held" else "kept"
        facts = [f'status <b class="{status_class}">{_e(status)}</b>']
        if pixels is not None:
            facts.append(f"pixel decision <b>{_e(pixels.decision.value)}</b>")
            facts.append(f"risk <b>{pixels.risk:.3f}</b>")
            if self._threshold is not None:
                holds = "over" if self._threshold.holds(pixels.risk) else "within"
                facts.append(f"{holds} threshold {self._threshold.value:.3f}")
            facts.append(f"frames checked {pixels.frames_checked}/{pixels.frames_total}")
        parts.append("<p>" + " &middot; ".join(facts) + "</p>")
        every_reason = list(reasons) + (list(pixels.reasons) if pixels is not None else [])
        if every_reason:
            items = "".join(f"<li>{_e(reason)}</li>" for reason in dict.fromkeys(every_reason))
            parts.append(f"<ul>{items}</ul>")
        if findings:
            parts.append(
                "<table><tr><th>frame</th><th>box (x, y, w, h)</th><th>text</th><th>PHI</th>"
                "<th>kinds</th><th>PHI score</th><th>confidence</th><th>detection</th>"
                "<th>why</th></tr>"
            )
            for finding in findings:
                box = finding.box
                css = "phi" if finding.phi else "kept"
                parts.append(
                    f'<tr class="{css}"><td>{finding.frame}</td>'
                    f"<td>{box.x}, {box.y}, {box.width}, {box.height}</td>"
                    f"<td>{_e(finding.text)}</td><td>{'yes' if finding.phi else 'no'}</td>"
                    f"<td>{_e(', '.join(finding.phi_kinds))}</td>"
                    f"<td>{finding.phi_score:.2f}</td><td>{finding.confidence:.2f}</td>"
                    f"<td>{finding.detection_score:.2f}</td><td>{_e(finding.reason)}</td></tr>"
                )
            parts.append("</table>")
        parts.append("</section>\n")
        self._stream.write("".join(parts))

    def _figure(
        self, caption: str, dataset: Dataset | None, findings: Sequence[PixelFinding]
    ) -> str:
        if dataset is None:
            return f'<figure class="missing"><figcaption>{_e(caption)}: none</figcaption></figure>'
        try:
            png = render_preview(
                dataset,
                findings,
                max_side=self._max_side,
                max_tiles=_MAX_TILES,
            )
        except Exception as error:
            why = type(error).__name__  # the class only: messages may quote values
            return (
                f'<figure class="missing"><figcaption>{_e(caption)}: pixels could not be '
                f"shown ({_e(why)})</figcaption></figure>"
            )
        data = base64.b64encode(png).decode("ascii")
        return (
            f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )

    def close(self, counts: Mapping[str, int] | None = None) -> None:
        """Write the summary (outcome counts, the threshold) and finish the page."""
        if self._stream.closed:
            return
        rows = "".join(
            f"<tr><td>{_e(name)}</td><td>{int(count)}</td></tr>"
            for name, count in (counts or {}).items()
        )
        rows += f"<tr><td>instances shown above</td><td>{self.sections}</td></tr>"
        if self._threshold is not None:
            t = self._threshold
            rows += (
                f"<tr><td>leak-rate bound</td><td>{t.leak_rate:g}</td></tr>"
                f"<tr><td>risk threshold</td><td>{t.value:.4f} ({_e(t.method)}, "
                f"{t.n_calibration} calibration instances, engine {_e(t.engine)})</td></tr>"
            )
            if t.fail_closed:
                rows += (
                    "<tr><td colspan=2><b>The leak rate cannot be guaranteed with the "
                    "calibration data: every instance with text was held.</b></td></tr>"
                )
        self._stream.write(f'<h2 id="summary">Summary</h2><table>{rows}</table></body></html>\n')
        self._stream.close()

    def __enter__(self) -> HtmlReport:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
