"""The peers of the de-identification benchmark, and the Table E.1-1 probe that scores coverage.

Peers, each used the way its documentation shows, with per-run state built outside the timing:

* **dicognito** 0.19: one ``dicognito.anonymizer.Anonymizer`` per round (its docs: reuse one
  anonymizer for the instances of a study); per file ``dcmread`` -> ``anonymize`` ->
  ``save_as``, as its command line does. It has no switch for private attributes.
* **deid** (pydicom/deid) 0.4: ``deid.dicom.replace_identifiers`` over the file list with the
  default recipe (``deid/data/deid.dicom``, parsed once per round instead of once per call),
  ``save=True`` into the output folder, and ``remove_private=True`` (its switch for the Annex E
  private-attributes row). ``get_identifiers`` is not called: its result is only needed to feed
  variables to a custom recipe, and it would parse every file a second time. deid's message bot
  is set to errors only, so its debug lines cost no terminal I/O.

Coverage is measured, not read from documentation: :func:`build_probe` writes one instance that
holds every exact-tag row of Table E.1-1 that a stored instance can carry (615 of 617;
distinct marker value valid for its VR, plus a curve, both overlay rows and a private block.
Each tool de-identifies that file; :func:`score_probe` reads the output back and calls a row
handled when what happened to it is an outcome the row's Basic Profile code allows.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

from pydicom import dcmread, dcmwrite
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from radstream.deid import _generate_annex_e

# The innolitics table vendored with its licence (third_party/), read straight from its JSON.
ANNEX_E_JSON = _generate_annex_e.default_source()
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_MARKER_UID_ROOT = "2.25.4242000000000000"
_CODE_MEANING = 0x00080104  # not a Table E.1-1 row: it carries the marker inside sequences
_REFERENCED_SOP_INSTANCE_UID = 0x00081155

# What a Basic Profile code allows to happen to a value (PS3.15 E.1.1 and Table E.1-1):
# Z may also be "a non-zero length value that may be a dummy"; D may not be empty.
REMOVED, EMPTIED, REPLACED, KEPT = "removed", "emptied", "replaced", "kept"
ALLOWED: dict[str, frozenset[str]] = {
    "X": frozenset({REMOVED}),
    "Z": frozenset({EMPTIED, REPLACED}),
    "D": frozenset({REPLACED}),
    "U": frozenset({REPLACED}),
    "K": frozenset({KEPT}),
    "C": frozenset({REMOVED, EMPTIED, REPLACED}),
    "X/Z": frozenset({REMOVED, EMPTIED, REPLACED}),
    "X/D": frozenset({REMOVED, REPLACED}),
    "Z/D": frozenset({EMPTIED, REPLACED}),
    "X/Z/D": frozenset({REMOVED, EMPTIED, REPLACED}),
    "X/Z/U*": frozenset({REMOVED, EMPTIED, REPLACED}),
}


class DeidTool(Protocol):
    """One de-identifier as the benchmark drives it: files in, files out."""

    name: str
    description: str

    def prepare(self) -> None:
        """Build per-round state (not timed)."""

    def run(self, inputs: Sequence[Path], out_dir: Path) -> None:
        """De-identify every input into ``out_dir`` under the same file name (timed)."""


@dataclass(kw_only=True)
class DicognitoTool:
    """dicognito's ``Anonymizer``, one per round, on files read and written with pydicom."""

    name: str = "dicognito"
    description: str = "Anonymizer().anonymize(ds) per file, dcmread + save_as"
    _anonymize: Callable[[Dataset], None] | None = None

    def prepare(self) -> None:
        from dicognito.anonymizer import Anonymizer

        self._anonymize = Anonymizer().anonymize

    def run(self, inputs: Sequence[Path], out_dir: Path) -> None:
        anonymize = self._anonymize
        assert anonymize is not None, "prepare() first"
        for path in inputs:
            with dcmread(path) as dataset:
                anonymize(dataset)
                dataset.save_as(out_dir / path.name)


@dataclass(kw_only=True)
class PydicomDeidTool:
    """pydicom/deid's header de-identification with its default recipe."""

    name: str = "deid"
    description: str = "replace_identifiers(files, default recipe, remove_private=True, save=True)"
    _recipe: Any = None

    def prepare(self) -> None:
        from deid.config import DeidRecipe  # type: ignore[import-untyped]
        from deid.logger import bot  # type: ignore[import-untyped]
        from deid.logger.message import ERROR  # type: ignore[import-untyped]

        bot.level = ERROR
        bot.history.clear()
        self._recipe = DeidRecipe()  # the default recipe, as replace_identifiers(deid=None) loads

    def run(self, inputs: Sequence[Path], out_dir: Path) -> None:
        from deid.dicom import replace_identifiers  # type: ignore[import-untyped]

        assert self._recipe is not None, "prepare() first"
        replace_identifiers(
            [str(path) for path in inputs],
            deid=self._recipe,
            save=True,
            output_folder=str(out_dir),
            overwrite=True,
            remove_private=True,
        )


# -- Table E.1-1 --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TableRow:
    """One row of Table E.1-1: its tag as printed, its Basic Profile code and its name."""

    tag: str
    basic: str
    name: str


def annex_e_rows() -> tuple[tuple[TableRow, ...], str]:
    """The 621 rows, from the vendored innolitics JSON if present, else radstream's data module."""
    if ANNEX_E_JSON.is_file():
        rows = json.loads(ANNEX_E_JSON.read_text())
        table = tuple(TableRow(tag=r["tag"], basic=r["basicProfile"], name=r["name"]) for r in rows)
        return table, str(ANNEX_E_JSON)
    from radstream.deid._annex_e import ROWS

    return tuple(TableRow(tag=r.tag, basic=r.basic, name=r.name) for r in ROWS), "_annex_e.py"


def _exact_tag(row: TableRow) -> int | None:
    text = row.tag
    if len(text) != 11 or "X" in text or not text.startswith("("):
        return None
    return int(text[1:5] + text[6:10], 16)


# -- the probe ---------------------------------------------------------------------------------

_CURVE_TAGS = (0x50000005, 0x50000022, 0x50003000)  # dimensions, description, data
_OVERLAY_DATA, _OVERLAY_COMMENTS = 0x60003000, 0x60004000
_PRIVATE_CREATOR, _PRIVATE_TAGS = 0x00090010, (0x00091001, 0x00091002)
# Group 0000 (command set: no Part 10 file may carry it) and 0002 (the file meta header).
_NOT_IN_DATASET_GROUPS = frozenset({0x0000, 0x0002})


def _marker_value(index: int, vr: str) -> Any:
    """A value valid for ``vr``, distinct per row, recognisable in any output."""
    text = f"RSMK{index:04d}"
    day = date(1950, 1, 1) + timedelta(days=37 * index)
    clock = f"{index % 24:02d}{index % 60:02d}{(7 * index) % 60:02d}"
    values: dict[str, Any] = {
        "AE": text,
        "AS": f"{index % 100:03d}Y",
        "CS": text,
        "DA": day.strftime("%Y%m%d"),
        "DS": f"{index}.5",
        "DT": day.strftime("%Y%m%d") + clock,
        "IS": str(100000 + index),
        "LO": f"{text} probe",
        "LT": f"{text} probe text",
        "PN": f"{text}^PROBE",
        "SH": text,
        "ST": f"{text} probe text",
        "TM": clock,
        "UC": f"{text} probe",
        "UI": f"{_MARKER_UID_ROOT}{index:04d}",
        "UR": f"https://{text.lower()}.example.org/",
        "UT": f"{text} probe text",
        "US": 1000 + index,
        "SS": index,
        "UL": 100000 + index,
        "SL": index,
        "FL": index + 0.5,
        "FD": index + 0.5,
    }
    if vr in values:
        return values[vr]
    if vr in {"OB", "OW", "UN", "OF", "OD", "OL", "OV"}:
        return (text + "PROBE").encode()  # 13 + 3 = 16 bytes: even, and a multiple of 8
    raise ValueError(f"no marker for VR {vr}")


def _marker_item(index: int, row: TableRow) -> Dataset:
    item = Dataset()
    if row.basic == "X/Z/U*":  # image references: the UIDs inside are what U replaces
        item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        item.add_new(_REFERENCED_SOP_INSTANCE_UID, "UI", _marker_value(index, "UI"))
    else:
        item.add_new(_CODE_MEANING, "LO", _marker_value(index, "LO"))
    return item


def build_probe(rows: Sequence[TableRow]) -> Dataset:
    """One CT instance holding every row of Table E.1-1 that a header can carry."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    for index, row in enumerate(rows):
        tag = _exact_tag(row)
        if tag is None or tag >> 16 in _NOT_IN_DATASET_GROUPS:
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        if vr == "SQ":
            ds.add(DataElement(tag, "SQ", DicomSequence([_marker_item(index, row)])))
        else:
            ds.add_new(tag, vr, _marker_value(index, vr))
    ds.add_new(_CURVE_TAGS[0], "US", 1)
    ds.add_new(_CURVE_TAGS[1], "LO", "RSMK curve description")
    ds.add_new(_CURVE_TAGS[2], "OB", b"RSMK curve data!")
    ds.add_new(_OVERLAY_DATA, "OW", b"RSMK overlaydata")
    ds.add_new(_OVERLAY_COMMENTS, "LT", "RSMK overlay comments")
    ds.add_new(_PRIVATE_CREATOR, "LO", "RSMK PROBE CREATOR")
    ds.add_new(_PRIVATE_TAGS[0], "LO", "RSMK private text")
    ds.add_new(_PRIVATE_TAGS[1], "OB", b"RSMK private blob")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID  # a row itself: U
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def write_probe(rows: Sequence[TableRow], path: Path) -> Dataset:
    """Write the probe to ``path``; returns it as read back (what every tool reads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcmwrite(path, build_probe(rows), enforce_file_format=True)
        return dcmread(path)


# -- scoring -----------------------------------------------------------------------------------


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == b"" or (isinstance(value, list) and not value)


def _outcome(before: DataElement, after: DataElement | None) -> str:
    if after is None:
        return REMOVED
    if before.VR == "SQ":
        if not after.value:
            return EMPTIED
        marker_tag = (
            _REFERENCED_SOP_INSTANCE_UID
            if _REFERENCED_SOP_INSTANCE_UID in (before.value[0])
            else _CODE_MEANING
        )
        marker = before.value[0][marker_tag].value
        kept = any(marker_tag in item and item[marker_tag].value == marker for item in after.value)
        return KEPT if kept else REPLACED
    if _is_empty(after.value):
        return EMPTIED
    return KEPT if str(after.value) == str(before.value) else REPLACED


def _group_outcome(original: Dataset, output: Dataset, tags: Sequence[int]) -> str:
    """A wildcard row: handled (REMOVED) only when none of its probed elements survive."""
    survivors = [tag for tag in tags if tag in output]
    if not survivors:
        return REMOVED
    return KEPT if any(output[t].value == original[t].value for t in survivors) else REPLACED


def _row_outcome(row: TableRow, original: Dataset, output: Dataset) -> str | None:
    if row.tag == "(50XX,XXXX)":
        return _group_outcome(original, output, _CURVE_TAGS)
    if row.tag == "(60XX,3000)":
        return _group_outcome(original, output, (_OVERLAY_DATA,))
    if row.tag == "(60XX,4000)":
        return _group_outcome(original, output, (_OVERLAY_COMMENTS,))
    if row.tag.startswith("(GGGG,EEEE)"):
        return _group_outcome(original, output, (_PRIVATE_CREATOR, *_PRIVATE_TAGS))
    tag = _exact_tag(row)
    if tag is None or tag >> 16 == 0x0000:
        return None  # not probed: a stored instance cannot carry a command element
    if tag >> 16 == 0x0002:
        before = original.file_meta.get(tag)
        meta = getattr(output, "file_meta", None)
        after = meta.get(tag) if meta is not None else None
    else:
        before, after = original.get(tag), output.get(tag)
    return None if before is None else _outcome(before, after)


@dataclass(kw_only=True)
class Coverage:
    """How a tool treated the probe, row by row."""

    tool: str
    rows: int
    probed: int = 0
    handled: int = 0  # the outcome is one the row's Basic Profile code allows
    value_gone: int = 0  # removed, emptied or replaced: the marker value did not survive
    outcomes: Counter[str] = field(default_factory=Counter)
    by_code: dict[str, list[int]] = field(default_factory=dict)  # code -> [handled, rows]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "rows": self.rows,
            "probed": self.probed,
            "handled": self.handled,
            "value_gone": self.value_gone,
            "outcomes": dict(self.outcomes),
            "by_code": self.by_code,
            "error": self.error,
        }


def score_probe(
    tool: str, rows: Sequence[TableRow], original: Dataset, output: Dataset | None
) -> Coverage:
    """Score ``output`` (``None``: the tool wrote nothing) against every row of the table."""
    coverage = Coverage(tool=tool, rows=len(rows))
    for row in rows:
        counts = coverage.by_code.setdefault(row.basic, [0, 0])
        counts[1] += 1
        outcome = None if output is None else _row_outcome(row, original, output)
        if outcome is None:
            continue
        coverage.probed += 1
        coverage.outcomes[outcome] += 1
        coverage.value_gone += outcome != KEPT
        if outcome in ALLOWED[row.basic]:
            coverage.handled += 1
            counts[0] += 1
    return coverage


def probe_tool(
    tool: DeidTool, rows: Sequence[TableRow], probe: Path, original: Dataset, out_dir: Path
) -> Coverage:
    """Run ``tool`` on the probe file and score what it wrote."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tool.prepare()
            tool.run([probe], out_dir)
            output = dcmread(out_dir / probe.name, force=True)
    except Exception as exc:  # a tool that fails on the probe handles none of it
        coverage = score_probe(tool.name, rows, original, None)
        coverage.error = f"{type(exc).__name__}: {exc}"[:200]
        return coverage
    return score_probe(tool.name, rows, original, output)
