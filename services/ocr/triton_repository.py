"""The model repository that serves PP-OCR to the remote engine, built from the rapidocr wheel.

``python -m radstream.ocr.triton_repository OUT_DIR`` writes Triton's layout::

    OUT_DIR/ppocr_det/config.pbtxt      OUT_DIR/ppocr_det/1/model.onnx   (PP-OCRv6_det_small)
    OUT_DIR/ppocr_rec/config.pbtxt      OUT_DIR/ppocr_rec/1/model.onnx   (PP-OCRv6_rec_small)

The ONNX files are copied from the installed rapidocr wheel (:func:`ppocr.model_files`), the
very files the local RapidOCR engine runs, so the local and the remote engine read alike. The
configurations are rendered here, not read from the source tree, so that the command works from
an installed wheel; ``deploy/triton/models/*/config.pbtxt`` are this module's output, checked in
for operators to read, and a test keeps them equal.

Why the configurations say what they say:

* ``max_batch_size`` > 0 with the batch axis left out of ``dims``: the detector's input is
  ``[N, 3, H, W]`` with H and W free (multiples of 32), the recognizer's ``[N, 3, 48, W]``.
* dynamic batching: Triton joins requests with the same shape into one run. The recognizer sends
  strips in batches of ``PpOcrParameters.rec_batch_num`` whose widths follow the text, so
  concurrent images' batches join when their widths agree; the detector's requests join when
  images have the same size, as the slices of a CT series do. A 2 ms queue delay bounds what a
  lone request waits.
* ``instance_group`` ``KIND_AUTO``: on a GPU where the server has one, on the CPU otherwise; the
  same files serve both.

The direction classifier is not served: :class:`ppocr.PpOcrParameters` turns it off (burned-in
annotations are upright).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from radstream.ocr.engines.ppocr import ModelFiles, model_files

__all__ = ["DETECTOR", "MODELS", "RECOGNIZER", "ServedModel", "Tensor", "build", "main"]

MODEL_FILE = "model.onnx"
VERSION = "1"


@dataclass(frozen=True, slots=True)
class Tensor:
    """A model input or output as Triton declares it: ``dims`` without the batch axis."""

    name: str
    dims: tuple[int, ...]
    data_type: str = "TYPE_FP32"

    def pbtxt(self) -> str:
        """The tensor as an entry of ``input [...]`` or ``output [...]``."""
        dims = ", ".join(str(d) for d in self.dims)
        return (
            "  {\n"
            f'    name: "{self.name}"\n'
            f"    data_type: {self.data_type}\n"
            f"    dims: [ {dims} ]\n"
            "  }"
        )


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One model of the repository: its name on the server and where its file comes from."""

    name: str
    source: str  # the wheel's file, for people: "PP-OCRv6_det_small"
    role: str  # "detector" or "recognizer": the ModelFiles field to copy
    purpose: str
    input: Tensor
    output: Tensor
    max_batch_size: int
    queue_delay_us: int = 2000
    instances: int = 1

    def config(self) -> str:
        """The model's ``config.pbtxt``."""
        return (
            "# Written by `python -m radstream.ocr.triton_repository`; edit that module.\n"
            f"# {self.source} from the rapidocr wheel: {self.purpose}\n"
            f'name: "{self.name}"\n'
            'backend: "onnxruntime"\n'
            f"max_batch_size: {self.max_batch_size}\n"
            f"input [\n{self.input.pbtxt()}\n]\n"
            f"output [\n{self.output.pbtxt()}\n]\n"
            "dynamic_batching {\n"
            f"  max_queue_delay_microseconds: {self.queue_delay_us}\n"
            "}\n"
            "instance_group [\n"
            "  {\n"
            f"    count: {self.instances}\n"
            "    kind: KIND_AUTO\n"
            "  }\n"
            "]\n"
            "version_policy: { latest: { num_versions: 1 } }\n"
        )

    def source_file(self, files: ModelFiles) -> Path:
        """The model's ONNX file among the wheel's."""
        path: Path = getattr(files, self.role)
        return path


DETECTOR = ServedModel(
    name="ppocr_det",
    source="PP-OCRv6_det_small",
    role="detector",
    purpose="text detector (DB); in: normalised BGR image, out: per-pixel text probability.",
    input=Tensor("x", (3, -1, -1)),
    output=Tensor("fetch_name_0", (1, -1, -1)),
    max_batch_size=8,
)
RECOGNIZER = ServedModel(
    name="ppocr_rec",
    source="PP-OCRv6_rec_small",
    role="recognizer",
    purpose="text recognizer (CTC); in: strips 48 high, out: class probabilities per step.",
    input=Tensor("x", (3, 48, -1)),
    output=Tensor("fetch_name_0", (-1, 18710)),
    max_batch_size=32,
)
MODELS = (DETECTOR, RECOGNIZER)


def build(out_dir: Path, *, files: ModelFiles | None = None) -> list[Path]:
    """Write the repository under ``out_dir`` (created if missing); returns the files written.

    Existing files of these models are replaced; anything else in ``out_dir`` is left alone.
    """
    files = files if files is not None else model_files()
    written: list[Path] = []
    for model in MODELS:
        folder = out_dir / model.name
        (folder / VERSION).mkdir(parents=True, exist_ok=True)
        config = folder / "config.pbtxt"
        config.write_text(model.config(), encoding="utf-8")
        onnx = folder / VERSION / MODEL_FILE
        shutil.copyfile(model.source_file(files), onnx)
        written += [config, onnx]
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m radstream.ocr.triton_repository OUT_DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m radstream.ocr.triton_repository",
        description="Write the Triton model repository of the remote OCR engine (PP-OCR ONNX "
        "files from the rapidocr wheel, with their config.pbtxt) under OUT_DIR.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    args = parser.parse_args(argv)
    for path in build(args.out_dir):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
