"""Nested sequences, wildcard groups, private attributes and multi-valued elements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from radstream.deid.dummies import DUMMY_TEXT
from radstream.deid.private import (
    DEFAULT_SAFE_PRIVATE,
    SafePrivateDictionary,
    SafePrivateEntry,
)
from radstream.deid.profile import DeidProfile, ProfileOption
from radstream.deid.uids import remap_uid
from tests.unit.deid.profile_builders import (
    KEYS,
    PATIENT_NAME,
    actions_for,
    deidentify,
    instance,
    item,
    uid,
)


class TestNestedSequences:
    def test_referenced_sop_instance_uid_follows_the_referenced_instances_remap(self) -> None:
        referenced = deidentify(instance(sop_uid=uid("1.1.2")))
        ref = item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=uid("1.1.2"))
        series = item(SeriesInstanceUID=uid("1.1"), ReferencedImageSequence=[ref])
        referring = deidentify(instance(ReferencedSeriesSequence=[series]))
        nested = referring.dataset.ReferencedSeriesSequence[0]
        assert nested.ReferencedImageSequence[0].ReferencedSOPInstanceUID == (
            referenced.dataset.SOPInstanceUID
        )
        assert nested.SeriesInstanceUID == referenced.dataset.SeriesInstanceUID
        paths = {a.path for a in referring.actions}
        assert "(0008,1115)[0]/(0008,1140)[0]/(0008,1155)" in paths

    def test_patient_name_inside_other_patient_ids_sequence_is_removed(self) -> None:
        other = item(PatientID="OLD-77", PatientName=PATIENT_NAME, IssuerOfPatientID="OLDHOSP")
        result = deidentify(instance(OtherPatientIDsSequence=[other]))
        assert "OtherPatientIDsSequence" not in result.dataset
        assert actions_for(result, "(0010,1002)") == ["X"]

    def test_table_rows_apply_inside_sequences_the_table_does_not_name(self) -> None:
        nested = item(
            CodeValue="P1",
            CodingSchemeDesignator="L",
            CodeMeaning="Procedure",
            PatientName=PATIENT_NAME,
            InstitutionName="Elsewhere Clinic",
            AccessionNumber="ACC-NESTED",
        )
        result = deidentify(instance(ProcedureCodeSequence=[nested]))
        out = result.dataset.ProcedureCodeSequence[0]
        assert out.CodeValue == "P1"  # outside the table: kept
        assert out.PatientName == ""  # Z (nested: Type 3 -> stays Z)
        assert "InstitutionName" not in out  # X/Z/D, Type 3 nested -> X
        assert out.AccessionNumber == ""
        assert actions_for(result, "(0008,1032)[0]/(0010,0010)") == ["Z"]

    def test_nested_patient_ids_become_pseudonyms_of_their_own_value(self) -> None:
        group = item(PatientID="MRN0042", IssuerOfPatientID="HOSP")
        deeper = item(SourcePatientGroupIdentificationSequence=[group])
        result = deidentify(instance(ProcedureCodeSequence=[deeper]))
        inner = result.dataset.ProcedureCodeSequence[0].SourcePatientGroupIdentificationSequence[0]
        assert inner.PatientID == result.patient_pseudonym
        assert "IssuerOfPatientID" not in inner

    def test_actions_apply_three_levels_deep(self) -> None:
        level3 = item(ReferencedSOPInstanceUID=uid("3"), PersonName="DEEP^DAN")
        level2 = item(ReferencedSOPSequence=[level3])
        level1 = item(ValueType="CONTAINER", ContentSequence=[level2])
        result = deidentify(instance(ProcedureCodeSequence=[level1]))
        deep = result.dataset.ProcedureCodeSequence[0].ContentSequence[0]
        assert deep.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == remap_uid(
            uid("3"), KEYS.uid_key
        )
        assert deep.ReferencedSOPSequence[0].PersonName == DUMMY_TEXT

    def test_a_removed_sequence_takes_its_contents_with_it(self) -> None:
        request = item(AccessionNumber="ACC-REQ", RequestedProcedureID="RP1")
        result = deidentify(instance(RequestAttributesSequence=[request]))
        assert "RequestAttributesSequence" not in result.dataset
        assert not [a for a in result.actions if a.path.startswith("(0040,0275)[")]


class TestWildcardGroups:
    def test_overlay_data_and_its_group_are_removed(self) -> None:
        ds = instance()
        for group in (0x6000, 0x6002):
            ds.add_new(group << 16 | 0x0010, "US", 2)
            ds.add_new(group << 16 | 0x0011, "US", 2)
            ds.add_new(group << 16 | 0x3000, "OW", b"\x0f\x00")
            ds.add_new(group << 16 | 0x4000, "LT", "annotation")
        result = deidentify(ds)
        assert not [elem for elem in result.dataset if 0x6000 <= elem.tag.group <= 0x60FF]
        assert actions_for(result, "(6000,3000)") == ["X"]
        assert actions_for(result, "(6002,4000)") == ["X"]

    def test_curves_are_removed(self) -> None:
        ds = instance()
        ds.add_new(0x50000005, "US", 2)
        ds.add_new(0x50000010, "US", 2)
        ds.add_new(0x50002500, "LO", f"curve of {PATIENT_NAME}")
        ds.add_new(0x50003000, "OW", b"\x01\x00")
        ds.add_new(0x50020010, "US", 1)
        result = deidentify(ds)
        assert not [elem for elem in result.dataset if 0x5000 <= elem.tag.group <= 0x50FF]
        assert actions_for(result, "(5000,2500)") == ["X"]


def _with_private(ds: Dataset) -> Dataset:
    ds.add_new(0x00430010, "LO", "GEMS_PARM_01")
    ds.add_new(0x00431027, "SH", "1.375:1")  # scan pitch ratio: safe
    ds.add_new(0x00431028, "OB", b"PATIENT-NOTES")  # not in the dictionary
    ds.add_new(0x00090010, "LO", "GEMS_IDEN_01")
    ds.add_new(0x00091002, "SH", "SUITE-7")
    ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
    ds.add_new(0x00191023, "SH", "oops")  # dictionary says DS: wrong VR, not kept
    return ds


class TestPrivateAttributes:
    def test_private_attributes_are_removed(self) -> None:
        result = deidentify(_with_private(instance()))
        assert not [elem for elem in result.dataset if elem.tag.is_private]
        assert actions_for(result, "(0043,1027)") == ["X"]
        assert actions_for(result, "(0043,0010)") == ["X"]

    def test_retain_safe_private_keeps_only_dictionary_entries_and_their_creator(self) -> None:
        result = deidentify(_with_private(instance()), ProfileOption.RETAIN_SAFE_PRIVATE)
        private = {int(elem.tag) for elem in result.dataset if elem.tag.is_private}
        assert private == {0x00430010, 0x00431027}
        assert result.dataset[0x00431027].value == "1.375:1"
        assert actions_for(result, "(0043,1027)") == ["K"]
        assert actions_for(result, "(0019,1023)") == ["X"]  # VR differs from the dictionary

    def test_private_attributes_inside_sequences_are_removed(self) -> None:
        nested = _with_private(item(CodeValue="P1", CodingSchemeDesignator="L"))
        result = deidentify(instance(ProcedureCodeSequence=[nested]))
        assert not [e for e in result.dataset.ProcedureCodeSequence[0] if e.tag.is_private]

    def test_the_safe_dictionary_extends_from_a_json_file(self, tmp_path: Path) -> None:
        path = tmp_path / "safe.json"
        entry = {"group": "0009", "creator": "GEMS_IDEN_01", "element": "xx02", "vr": "SH"}
        path.write_text(json.dumps([entry]), encoding="utf-8")
        extended = DEFAULT_SAFE_PRIVATE.extended_from_file(path)
        assert len(extended) == len(DEFAULT_SAFE_PRIVATE) + 1
        profile = DeidProfile(
            options=frozenset({ProfileOption.RETAIN_SAFE_PRIVATE}), safe_private=extended
        )
        result = deidentify(_with_private(instance()), profile=profile)
        assert result.dataset[0x00091002].value == "SUITE-7"

    @pytest.mark.parametrize(
        "bad",
        [
            {"group": "0008", "creator": "X", "element": "10", "vr": "SH"},  # even group
            {"group": "0009", "creator": "X", "element": "1FF", "vr": "SH"},  # offset > 0xFF
            {"group": "0009", "creator": "X", "element": "10", "vr": "SQ"},  # sequences never
            {"group": "0009", "creator": "", "element": "10", "vr": "SH"},
            {"group": "0009", "element": "10", "vr": "SH"},
        ],
    )
    def test_invalid_safe_entries_are_refused(self, tmp_path: Path, bad: dict[str, str]) -> None:
        path = tmp_path / "safe.json"
        path.write_text(json.dumps([bad]), encoding="utf-8")
        with pytest.raises(ValueError, match="entry 0"):
            SafePrivateDictionary().extended_from_file(path)

    def test_entries_are_keyed_by_group_creator_and_offset(self) -> None:
        entry = SafePrivateEntry(
            group=0x0043, creator="GEMS_PARM_01", offset=0x27, vr="SH", description=""
        )
        safe = SafePrivateDictionary((entry,))
        assert safe.lookup(0x0043, "GEMS_PARM_01 ", 0x27) == entry
        assert safe.lookup(0x0045, "GEMS_PARM_01", 0x27) is None


class TestMultiValuedElements:
    def test_each_uid_of_a_multi_valued_uid_element_is_remapped(self) -> None:
        ds = instance(FailedSOPInstanceUIDList=[uid("7"), uid("8")])
        out = deidentify(ds).dataset
        assert list(out.FailedSOPInstanceUIDList) == [
            remap_uid(uid("7"), KEYS.uid_key),
            remap_uid(uid("8"), KEYS.uid_key),
        ]

    def test_a_dummy_replaces_each_value(self) -> None:
        out = deidentify(instance(SelectorLOValue=["a", "b", "c"])).dataset
        assert list(out.SelectorLOValue) == [DUMMY_TEXT] * 3

    def test_multi_valued_names_are_emptied_whole(self) -> None:
        out = deidentify(instance(ConsultingPhysicianName=["A^B", "C^D"])).dataset
        assert out.ConsultingPhysicianName == ""
