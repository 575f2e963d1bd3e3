"""The calibration's loss and the eval's yardstick: when a proposal still shows PHI.

A PHI box is hidden when at least 95% of its ink is gone (changed, or the box filled flat)
and OCR does not read its text there again; a non-PHI annotation is kept when at most 5% of
its ink changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from pydicom.dataset import Dataset

from radstream.deid.eval_pixels import InstanceVerdict, score_proposal
from radstream.deid.pixels.synthetic import LabelBox, SyntheticInstance, generate_instance

SEEDS = range(3_000_000, 3_000_040)


@pytest.fixture(scope="module")
def phi_instances() -> list[SyntheticInstance]:
    found = [generate_instance(seed) for seed in SEEDS]
    return [instance for instance in found if instance.labels.phi_bearing]


def _proposal(instance: SyntheticInstance, pixels: npt.NDArray[np.generic]) -> Dataset:
    ds = copy.deepcopy(instance.dataset)
    frames = pixels if instance.labels.frames > 1 else pixels[0]
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return ds


def _edit(
    instance: SyntheticInstance,
    boxes: list[LabelBox],
    change: Callable[[npt.NDArray[np.generic]], None],
) -> Dataset:
    pixels = instance.pixels.copy()
    for box in boxes:
        change(
            pixels[box.frame, box.y - 2 : box.y + box.height + 2, box.x - 2 : box.x + box.width + 2]
        )
    return _proposal(instance, pixels)


def _verdict(
    instance: SyntheticInstance, proposal: Dataset, engine: object = None
) -> InstanceVerdict:
    boxes = score_proposal(instance.labels, instance.pixels, instance.background, proposal, engine)  # type: ignore[arg-type]
    return InstanceVerdict(
        file="x", layout=instance.labels.layout, phi_bearing=instance.labels.phi_bearing,
        has_text=True, status="released", risk=0.0, pixel_decision="redacted", boxes=boxes,
    )  # fmt: skip


def _phi(instance: SyntheticInstance) -> list[LabelBox]:
    return [box for box in instance.labels.boxes if box.is_phi]


def test_filling_every_phi_box_hides_it_and_keeps_the_annotations(
    phi_instances: list[SyntheticInstance],
) -> None:
    for instance in phi_instances:
        verdict = _verdict(instance, _edit(instance, _phi(instance), lambda a: a.fill(0)))
        assert not verdict.proposal_leaks
        assert all(box.hidden for box in verdict.boxes if box.is_phi)
        assert all(box.kept for box in verdict.boxes if not box.is_phi and box.kind != "context")


def test_an_untouched_proposal_leaks_and_counts_when_released(
    phi_instances: list[SyntheticInstance],
) -> None:
    for instance in phi_instances:
        verdict = _verdict(instance, _proposal(instance, instance.pixels))
        assert verdict.proposal_leaks
        assert verdict.released_leak
        assert all(box.covered == 0.0 for box in verdict.boxes)


def test_a_flat_fill_in_the_inks_own_value_still_hides_it(
    phi_instances: list[SyntheticInstance],
) -> None:
    instance = phi_instances[0]
    ink = instance.pixels.max()
    verdict = _verdict(instance, _edit(instance, _phi(instance), lambda a: a.fill(ink)))
    assert not verdict.proposal_leaks


def test_half_a_box_filled_is_a_leak(phi_instances: list[SyntheticInstance]) -> None:
    for instance in phi_instances[:10]:

        def left_half(area: npt.NDArray[np.generic]) -> None:
            area[:, : area.shape[1] // 2] = 0

        verdict = _verdict(instance, _edit(instance, _phi(instance), left_half))
        assert verdict.proposal_leaks


def test_filling_annotations_too_loses_them(phi_instances: list[SyntheticInstance]) -> None:
    instance = next(i for i in phi_instances if any(not b.is_phi for b in i.labels.boxes))
    verdict = _verdict(instance, _edit(instance, list(instance.labels.boxes), lambda a: a.fill(0)))
    assert not verdict.proposal_leaks
    assert not any(box.kept for box in verdict.boxes if not box.is_phi and box.kind != "context")


def test_held_instances_never_count_as_released_leaks(
    phi_instances: list[SyntheticInstance],
) -> None:
    instance = phi_instances[0]
    verdict = _verdict(instance, _proposal(instance, instance.pixels))
    held = InstanceVerdict(**{**verdict.__dict__, "status": "held"})
    assert held.proposal_leaks
    assert not held.released_leak


@pytest.mark.slow
def test_ink_changed_but_still_legible_is_read_again_by_ocr_and_not_hidden() -> None:
    from radstream.ocr.engines import load_engine

    # seed 3000003: a grey secondary capture whose name is drawn large and plain
    instance = generate_instance(3_000_003)
    name = next(box for box in instance.labels.boxes if box.kind == "PatientName")
    maximum = instance.pixels.max()

    def invert(area: npt.NDArray[np.generic]) -> None:
        area[...] = maximum - area  # every pixel changes; the text stays readable

    engine = load_engine("rapidocr")
    verdict = _verdict(instance, _edit(instance, [name], invert), engine)
    judged = next(b for b in verdict.boxes if b.kind == "PatientName")
    assert judged.covered == 1.0
    assert judged.read_again
    assert not judged.hidden
    filled = _verdict(instance, _edit(instance, [name], lambda a: a.fill(0)), engine)
    assert next(b for b in filled.boxes if b.kind == "PatientName").hidden


def test_a_middle_initial_left_readable_is_no_leak_but_a_name_word_is(
    phi_instances: list[SyntheticInstance],
) -> None:
    instance, name = next(
        (i, b)
        for i in phi_instances
        for b in i.labels.boxes
        if b.kind == "PatientName" and b.frame == 0 and len(b.spans) < len(b.text.split(" "))
    )
    pixels = instance.pixels.copy()
    for left, right in name.spans:  # fill every identifying word, leave the initial
        pixels[0, name.y - 1 : name.y + name.height + 1, left - 1 : right + 1] = 0
    judged = next(
        b for b in _verdict(instance, _proposal(instance, pixels)).boxes if b.kind == "PatientName"
    )
    assert judged.hidden
    left, right = name.spans[-1]  # now leave the last name word readable as well
    pixels[0, name.y : name.y + name.height, left:right] = instance.pixels[
        0, name.y : name.y + name.height, left:right
    ]
    judged = next(
        b for b in _verdict(instance, _proposal(instance, pixels)).boxes if b.kind == "PatientName"
    )
    assert not judged.hidden
