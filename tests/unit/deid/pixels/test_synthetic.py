"""The synthetic generator: deterministic, labelled truthfully, and varied like real data."""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from radstream.deid.pixels.synthetic import (
    INSTANCES_DIR,
    LABELS_FILE,
    SPLIT_SEEDS,
    SyntheticInstance,
    generate_instance,
    load_split,
    write_split,
)

SEEDS = range(SPLIT_SEEDS["test"], SPLIT_SEEDS["test"] + 60)


@pytest.fixture(scope="module")
def instances() -> list[SyntheticInstance]:
    return [generate_instance(seed) for seed in SEEDS]


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() -> None:
    first, again = generate_instance(1234), generate_instance(1234)
    assert first.to_bytes() == again.to_bytes()
    assert first.labels == again.labels
    assert generate_instance(1235).to_bytes() != first.to_bytes()


def test_a_split_written_twice_is_identical(tmp_path: Path) -> None:
    a = write_split(tmp_path / "a", "test", 5)
    b = write_split(tmp_path / "b", "test", 5)
    assert a == b
    names = sorted(p.name for p in (tmp_path / "a" / INSTANCES_DIR).iterdir())
    assert names == [f"test-{i:04d}.dcm" for i in range(5)]
    for name in names:
        first, second = (tmp_path / side / INSTANCES_DIR / name for side in "ab")
        assert first.read_bytes() == second.read_bytes()
    assert load_split(tmp_path / "a") == a
    assert (tmp_path / "a" / LABELS_FILE).stat().st_mode & 0o777 == 0o600


def test_splits_draw_from_disjoint_seed_ranges() -> None:
    starts = sorted(SPLIT_SEEDS.values())
    assert all(later - earlier >= 1_000_000 for earlier, later in itertools.pairwise(starts))


def test_every_drawn_pixel_lies_in_a_labelled_box_and_every_box_holds_ink(
    instances: list[SyntheticInstance],
) -> None:
    for instance in instances:
        changed = np.any(
            (instance.pixels != instance.background).reshape(*instance.pixels.shape[:3], -1),
            axis=-1,
        )
        for frame in range(instance.labels.frames):
            inside = np.zeros(changed.shape[1:], dtype=bool)
            boxes = [box for box in instance.labels.boxes if box.frame == frame]
            for box in boxes:
                region = changed[frame, box.y : box.y + box.height, box.x : box.x + box.width]
                assert region.any(), (instance.labels.seed, box)
                # tight: the ink touches all four sides of its box (one pixel of slack)
                rows, columns = np.nonzero(region)
                assert rows.min() <= 1 and rows.max() >= box.height - 2
                assert columns.min() <= 1 and columns.max() >= box.width - 2
                inside[box.y : box.y + box.height, box.x : box.x + box.width] = True
            assert not (changed[frame] & ~inside).any(), instance.labels.seed
        if not instance.labels.boxes:
            assert np.array_equal(instance.pixels, instance.background)


def test_drawn_strings_never_overlap(instances: list[SyntheticInstance]) -> None:
    for instance in instances:
        boxes = [box for box in instance.labels.boxes if box.frame == 0]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                apart = (
                    a.x + a.width <= b.x
                    or b.x + b.width <= a.x
                    or a.y + a.height <= b.y
                    or b.y + b.height <= a.y
                )
                assert apart, instance.labels.seed


def test_the_file_holds_the_pixels_and_header_the_labels_describe(
    instances: list[SyntheticInstance],
) -> None:
    for instance in instances[:20]:
        ds = dcmread(io.BytesIO(instance.to_bytes()))
        pixels = ds.pixel_array
        if instance.labels.frames == 1:
            pixels = pixels[None]
        assert np.array_equal(pixels, instance.pixels)
        assert ds.PhotometricInterpretation == instance.labels.photometric
        assert int(ds.get("NumberOfFrames", 1)) == instance.labels.frames


def _squash(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def test_header_phi_drawn_in_the_pixels_is_the_headers_value(  # noqa: C901 -- one case per kind
    instances: list[SyntheticInstance],
) -> None:
    checked: Counter[str] = Counter()
    for instance in instances:
        ds = instance.dataset
        for box in instance.labels.boxes:
            if not box.is_phi:
                continue
            drawn = _squash(box.text)
            if box.kind == "PatientName":
                family, given = str(ds.PatientName.family_name), str(ds.PatientName.given_name)
                assert _squash(family) in drawn and _squash(given) in drawn
            elif box.kind == "PatientID":
                assert drawn == _squash(ds.PatientID)
            elif box.kind == "AccessionNumber":
                assert drawn == _squash(ds.AccessionNumber)
            elif box.kind == "InstitutionName":
                assert drawn == _squash(ds.InstitutionName)
            elif box.kind in {"PatientBirthDate", "StudyDate"}:
                header = dt.datetime.strptime(str(ds.get(box.kind)), "%Y%m%d").date()
                assert _date_in(box.text, header)
            elif box.kind == "ReferringPhysician":
                assert not box.in_header
                assert str(ds.ReferringPhysicianName) == ""
            elif box.kind == "PriorDate":
                assert not box.in_header
                assert _squash(box.text) != _squash(str(ds.StudyDate))
            checked[box.kind] += 1
    assert set(checked) >= {"PatientName", "PatientID", "StudyDate", "InstitutionName"}


def _date_in(text: str, date: dt.date) -> bool:
    formats = ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%d-%b-%Y", "%b %d %Y", "%Y%m%d", "%d/%m/%Y")
    return any(_squash(date.strftime(f)) == _squash(text) for f in (*formats, "%Y/%m/%d"))


def test_a_split_mixes_layouts_colours_frames_and_text_as_real_data_does(
    instances: list[SyntheticInstance],
) -> None:
    labels = [instance.labels for instance in instances]
    assert {item.layout for item in labels} == {"us", "us_cine", "cr", "sc", "ct"}
    assert {item.photometric for item in labels} >= {"RGB", "MONOCHROME2", "MONOCHROME1"}
    assert any(item.frames > 1 for item in labels)
    assert any(not item.has_text for item in labels)
    assert any(item.has_text and not item.phi_bearing for item in labels)
    assert any(not box.in_header for item in labels for box in item.boxes if box.is_phi)
    phi_share = sum(item.phi_bearing for item in labels) / len(labels)
    assert 0.5 < phi_share < 0.9
    heights = {box.height for item in labels for box in item.boxes}
    assert min(heights) <= 10 and max(heights) >= 18
    ct = next(i for i in instances if i.labels.layout == "ct")
    assert ct.dataset.BitsAllocated == 16
    assert ct.pixels.dtype == np.uint16


def test_labels_keep_the_text_out_of_their_repr(instances: list[SyntheticInstance]) -> None:
    box = next(b for i in instances for b in i.labels.boxes if b.is_phi)
    assert box.text not in repr(box)


def test_identifying_words_have_their_own_ink_columns(instances: list[SyntheticInstance]) -> None:
    initials = 0
    for instance in instances:
        for box in instance.labels.boxes:
            if not box.is_phi:
                assert box.spans == ()
                continue
            assert box.spans
            for left, right in box.spans:
                assert box.x <= left < right <= box.x + box.width
            words = box.text.split(" ")
            if box.kind == "PatientName" and any(len(w.strip(".,")) == 1 for w in words):
                initials += 1
                assert len(box.spans) == len(words) - 1  # the initial is not among them
                assert box.key_text == " ".join(w for w in words if len(w.strip(".,")) > 1)
            if box.kind == "InstitutionName":
                assert len(box.spans) == 1  # the town: "Medical Center" identifies no one
    assert initials > 0
