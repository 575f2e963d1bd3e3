"""Templates are data: every shipped template validates, and a broken one is refused saying where.

The chest radiograph template is Rad-ReStruct's hierarchy: its finding paths are the label paths
of the Rad-ReStruct dataset, and it converts back to Rad-ReStruct's JSON unchanged. The CT
templates are organ-based, in the order a CT abdomen/pelvis or chest report reads.
"""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser

import pytest
import yaml
from jsonschema import Draft202012Validator

from radstream.restructure.mrrt import to_mrrt_html
from radstream.restructure.radrestruct import from_radrestruct, to_radrestruct
from radstream.restructure.template import (
    AnswerType,
    NodeKind,
    TemplateError,
    available_templates,
    load_template,
    parse_template,
    template_file_schema,
)

CT_ABDOMEN_AREAS = [
    "liver",
    "biliary system and gallbladder",
    "pancreas",
    "spleen",
    "adrenal glands",
    "kidneys and ureters",
    "bowel",
    "peritoneum and mesentery",
    "lymph nodes",
    "vessels",
    "bones",
    "lung bases",
    "pelvis",
]

# A slice of Rad-ReStruct's JSON in its own shape: an area of groups, an area of sub-areas, and
# an area with attributes of its own.
RADRESTRUCT_SAMPLE = [
    {
        "area": "cardiovascular system",
        "diseases": {
            "cardiomegaly": {
                "infos": {
                    "degree": {"answer_type": "single_choice", "options": ["borderline", "mild"]}
                }
            },
            "aortic aneurysm": {"infos": {}},
        },
    },
    {
        "area": "respiratory system",
        "sub_areas": {
            "lung": {
                "signs": {
                    "opacity": {
                        "infos": {
                            "body_region": {
                                "answer_type": "multi_choice",
                                "options": ["apex", "right upper lobe"],
                            }
                        }
                    }
                }
            }
        },
    },
    {
        "area": "abdomen",
        "signs": {"deformity": {"infos": {}}},
        "infos": {"degree": {"answer_type": "fixed_choice", "options": ["enlarged"]}},
    },
]


@pytest.mark.parametrize("template_id", ["ct-abdomen", "ct-chest", "chest-xray-radrestruct"])
def test_every_shipped_template_loads_and_has_findings_with_unique_paths(template_id: str) -> None:
    assert template_id in available_templates()
    template = load_template(template_id)
    paths = template.finding_paths()
    assert len(paths) >= 20
    assert len(set(paths)) == len(paths)
    for path in paths:
        assert template.node(path).kind is NodeKind.FINDING


def test_the_ct_abdomen_template_is_organ_based_in_report_order() -> None:
    template = load_template("ct-abdomen")
    assert [area.name for area in template.areas] == CT_ABDOMEN_AREAS
    assert template.node(("liver",)).codes[0].value == "RID58"
    size = next(
        a for a in template.attributes_of(("liver", "findings", "lesion")) if a.name == "size"
    )
    assert size.answer_type is AnswerType.MEASUREMENT and "mm" in size.units


def test_the_chest_ct_template_covers_lungs_pleura_heart_mediastinum_and_bones() -> None:
    names = [area.name for area in load_template("ct-chest").areas]
    for area in ("lungs", "pleura", "heart and vessels", "mediastinum and lymph nodes"):
        assert area in names


def test_rad_restruct_json_converts_to_a_template_and_back_unchanged() -> None:
    template = from_radrestruct(RADRESTRUCT_SAMPLE)
    assert template.finding_paths() == (
        ("cardiovascular system", "diseases", "cardiomegaly"),
        ("cardiovascular system", "diseases", "aortic aneurysm"),
        ("respiratory system", "sub_areas", "lung", "signs", "opacity"),
        ("abdomen", "signs", "deformity"),
    )
    assert to_radrestruct(template) == RADRESTRUCT_SAMPLE
    # An area's own attributes apply to each of its findings.
    [degree] = template.attributes_of(("abdomen", "signs", "deformity"))
    assert degree.answer_type is AnswerType.FIXED and degree.options == ("enlarged",)


def test_the_shipped_chest_radiograph_template_round_trips_through_rad_restruct_json() -> None:
    template = load_template("chest-xray-radrestruct")
    assert from_radrestruct(to_radrestruct(template)) == template
    assert (
        "respiratory system",
        "sub_areas",
        "lung",
        "signs",
        "opacity",
    ) in template.finding_paths()
    assert len(template.finding_paths()) == 163  # Rad-ReStruct's findings, every one


def _ct_abdomen_document() -> dict:
    return load_template("ct-abdomen").model_dump(mode="json", exclude_defaults=True)


@pytest.mark.parametrize(
    ("break_it", "said"),
    [
        (
            lambda d: d["areas"][0]["children"][0]["children"][0].update(
                children=[{"name": "x", "kind": "finding"}]
            ),
            "finding 'lesion' has children",
        ),
        (lambda d: d["areas"][0].update(kind="finding"), "has children"),
        (lambda d: d.update(version="one"), "version"),
        (lambda d: d["areas"].append(copy.deepcopy(d["areas"][0])), "same name"),
        (
            lambda d: d["areas"][0]["children"][0]["children"][1]["attributes"][0].update(
                options=[]
            ),
            "without options",
        ),
        (lambda d: d.update(unknown_key=1), "unknown_key"),
        (lambda d: d.update(value_synonyms={"left base lobe": ["x"]}), "left base lobe"),
    ],
)
def test_a_broken_template_is_refused_saying_what_is_wrong(break_it: object, said: str) -> None:
    document = _ct_abdomen_document()
    assert callable(break_it)
    break_it(document)
    with pytest.raises(TemplateError, match=said):
        parse_template(document, origin="broken.yaml")


def test_an_unknown_template_is_refused_naming_those_that_exist() -> None:
    with pytest.raises(TemplateError, match="ct-abdomen"):
        load_template("mr-knee")


def test_the_template_file_schema_accepts_the_shipped_files_and_refuses_a_broken_one() -> None:
    validator = Draft202012Validator(template_file_schema())
    for template_id in available_templates():
        validator.validate(load_template(template_id).model_dump(mode="json"))
    document = _ct_abdomen_document()
    document["areas"][0]["kind"] = "organ"
    assert list(validator.iter_errors(document))


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script += data


def test_a_template_exports_as_mrrt_html_with_sections_fields_and_coded_content() -> None:
    template = load_template("ct-abdomen")
    html = to_mrrt_html(template)
    parsed = _Collector()
    parsed.feed(html)
    assert html.startswith("<!DOCTYPE html>")
    metas = {attrs.get("name"): attrs.get("content") for tag, attrs in parsed.tags if tag == "meta"}
    assert metas["dcterms.type"] == "IMAGE_REPORT_TEMPLATE"
    assert metas["dcterms.title"] == "CT abdomen and pelvis"
    sections = [attrs["data-section-name"] for tag, attrs in parsed.tags if tag == "section"]
    assert sections[:2] == ["History", "Technique"]
    assert "liver" in sections and "pancreas" in sections
    ids = [attrs["id"] for _, attrs in parsed.tags if "id" in attrs]
    assert len(ids) == len(set(ids))  # every field addressable
    selects = [attrs for tag, attrs in parsed.tags if tag == "select"]
    assert len(selects) >= len(template.finding_paths())
    assert any("multiple" in attrs for attrs in selects)
    numbers = [a for t, a in parsed.tags if t == "input" and a.get("data-field-type") == "NUMBER"]
    assert numbers
    # The liver section is coded with RadLex, linked by its id.
    assert '<entry ORIGTXT="liver">' in parsed.script and 'value="RID58"' in parsed.script
    assert 'designator="2.16.840.1.113883.6.256"' in parsed.script


def test_mrrt_export_escapes_what_a_template_says() -> None:
    document = _ct_abdomen_document()
    document["title"] = '<script>alert("x")</script>'
    document["areas"][0]["children"][0]["children"][0]["name"] = 'lesion" onmouseover="x'
    html = to_mrrt_html(parse_template(document))
    assert "<script>alert" not in html
    assert 'onmouseover="x' not in html


def test_the_shipped_yaml_is_plain_yaml_a_person_can_edit() -> None:
    template = load_template("ct-chest")
    text = yaml.safe_dump(template.model_dump(mode="json", exclude_defaults=True))
    assert parse_template(yaml.safe_load(text)) == template
    assert json.loads(json.dumps(template.model_dump(mode="json")))["id"] == "ct-chest"
