"""Public elements the data dictionary does not know are removed, like private elements.

Nothing says what an unknown element may hold, so nothing can say it is safe to keep: the walk
removes it wherever it sits (top level, inside a known sequence, in a repeating group), whatever
its VR, and records why. Elements the dictionary knows -- repeating-group masks such as
(60xx,0010) included -- are handled as before.
"""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radstream.deid.profile import ProfileResult
from tests.unit.deid.profile_builders import (
    actions_for,
    all_strings,
    deidentify,
    instance,
    item,
    written,
)

FREE_TEXT_NAME = "SMITH^JOHN MRN 12345678"
FREE_TEXT_NOTE = "Patient John Smith seen at St Mary hospital"
UNKNOWN_RULE = "not in the data dictionary"


def rule_for(result: ProfileResult, path: str) -> str:
    [rule] = [action.rule for action in result.actions if action.path == path]
    return rule


def assert_no_trace_of_the_planted_text(result: ProfileResult) -> None:
    text = " ".join(all_strings(written(result.dataset)))
    for fragment in ("SMITH", "Smith", "12345678", "St Mary"):
        assert fragment not in text


class TestRemoved:
    @pytest.mark.parametrize(
        ("tag", "vr", "value"),
        [
            (0x44440010, "LO", FREE_TEXT_NAME),
            (0x00089999, "UT", FREE_TEXT_NOTE),
            (0x44441000, "SH", "SMITH JOHN"),
            (0x44441001, "PN", "SMITH^JOHN"),
        ],
    )
    def test_an_unknown_text_element_is_removed(self, tag: int, vr: str, value: str) -> None:
        ds = instance()
        ds.add_new(tag, vr, value)
        result = deidentify(ds)
        assert tag not in result.dataset
        path = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        assert actions_for(result, path) == ["X"]
        assert UNKNOWN_RULE in rule_for(result, path)
        assert_no_trace_of_the_planted_text(result)

    def test_an_unknown_element_inside_a_known_sequence_is_removed(self) -> None:
        ds = instance()
        region = item(CodeValue="T-D4000", CodingSchemeDesignator="SRT", CodeMeaning="Abdomen")
        region.add_new(0x00089999, "UT", FREE_TEXT_NOTE)
        ds.AnatomicRegionSequence = Sequence([region])  # outside Table E.1-1: walked, kept
        result = deidentify(ds)
        out_item = result.dataset.AnatomicRegionSequence[0]
        assert 0x00089999 not in out_item
        assert out_item.CodeMeaning == "Abdomen"
        assert actions_for(result, "(0008,2218)[0]/(0008,9999)") == ["X"]
        assert_no_trace_of_the_planted_text(result)

    def test_an_unknown_sequence_is_removed_with_everything_in_it(self) -> None:
        ds = instance()
        inner = Dataset()
        inner.add_new(0x44440010, "LO", FREE_TEXT_NAME)
        inner.CodeValue = "T-15710"  # known elements inside do not make it known
        ds.add_new(0x44440020, "SQ", Sequence([inner]))
        result = deidentify(ds)
        assert 0x44440020 not in result.dataset
        assert actions_for(result, "(4444,0020)") == ["X"]
        assert_no_trace_of_the_planted_text(result)

    @pytest.mark.parametrize(
        ("tag", "vr", "value"),
        [
            (0x44440030, "US", 1234),
            (0x44440031, "UL", 12345678),
            (0x44440032, "DS", "12345678"),
            (0x44440033, "DA", "19610317"),
            (0x44440034, "OB", b"SMITH^JOHN"),
        ],
    )
    def test_an_unknown_element_of_any_vr_is_removed(
        self, tag: int, vr: str, value: object
    ) -> None:
        # A number can be a record number, a date or an ID as well as a measurement.
        ds = instance()
        ds.add_new(tag, vr, value)
        result = deidentify(ds)
        assert tag not in result.dataset
        assert actions_for(result, f"({tag >> 16:04X},{tag & 0xFFFF:04X})") == ["X"]

    def test_an_unknown_uid_element_is_removed_not_remapped(self) -> None:
        ds = instance()
        ds.add_new(0x44440040, "UI", "1.2.826.0.1.3680043.10.1234.77")
        result = deidentify(ds)
        assert 0x44440040 not in result.dataset
        assert actions_for(result, "(4444,0040)") == ["X"]

    def test_an_unknown_element_in_an_overlay_group_is_removed(self) -> None:
        # (60xx,eeee) elements are matched by the dictionary's masks; one that no mask covers
        # is as unknown as any other.
        ds = instance()
        ds.add_new(0x60009999, "LO", FREE_TEXT_NAME)
        result = deidentify(ds)
        assert 0x60009999 not in result.dataset
        assert UNKNOWN_RULE in rule_for(result, "(6000,9999)")


class TestKnownElementsStay:
    def test_an_attribute_of_a_repeating_group_the_dictionary_masks_is_kept(self) -> None:
        ds = instance()
        ds.add_new(0x60020010, "US", 512)  # Overlay Rows of the second overlay plane
        ds.add_new(0x60020011, "US", 512)  # Overlay Columns
        result = deidentify(ds)
        assert result.dataset[0x60020010].value == 512
        assert result.dataset[0x60020011].value == 512

    def test_a_known_attribute_outside_the_table_is_kept(self) -> None:
        ds = instance(SliceThickness="5.0", BodyPartExamined="CHEST")
        out = deidentify(ds).dataset
        assert out.SliceThickness == 5.0
        assert out.BodyPartExamined == "CHEST"
