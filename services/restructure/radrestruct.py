"""Rad-ReStruct's chest radiograph template, read into and written back from a :class:`Template`.

Rad-ReStruct (Pellegrini et al., MICCAI 2023; MIT licence, ``third_party/radrestruct/``) publishes
its structured-report hierarchy as JSON: a list of areas, each holding groups (``objects``,
``signs``, ``body_regions``, ``diseases``) of findings, or ``sub_areas`` (lung, pleura, trachea)
holding such groups; a finding's ``infos`` are its attributes (``body_region``,
``localization``, ``attributes``, ``degree``) with an answer type and options, and an area may
have ``infos`` of its own. Its labels name a finding by the JSON keys from the top
(``["respiratory system", "sub_areas", "lung", "signs", "opacity"]``), so the template keeps
every key as a node: a finding's path here is the label's path there.

``chest-xray-radrestruct.yaml`` was written by :func:`from_radrestruct` from that JSON
(``python -m radstream.restructure.radrestruct FILE > ...``); :func:`to_radrestruct` gives the
JSON back, and a test holds the round trip to the published file when it is at hand.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from radstream.restructure.template import (
    AnswerType,
    Attribute,
    Node,
    NodeKind,
    Template,
    parse_template,
)

__all__ = ["from_radrestruct", "to_radrestruct"]

TEMPLATE_ID = "chest-xray-radrestruct"
# How chest radiograph reports state Rad-ReStruct's attribute values in other words: a base is
# its lower lobe, an apex its upper lobe, "bibasilar" both lower lobes, the lingula counts as the
# middle lobe in Rad-ReStruct's labels; low volumes are hypoinflation, hyperinflated lungs
# hyperdistention. Radiology usage, not taken from the labels.
VALUE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "left lower lobe": (
        "left base", "left basilar", "left lung base", "left basal", "bibasilar", "bibasal",
        "both bases", "bilateral bases", "bilateral lower lobes", "left lower lung",
        "left retrocardiac", "retrocardiac",
    ),
    "right lower lobe": (
        "right base", "right basilar", "right lung base", "right basal", "bibasilar",
        "bibasal", "both bases", "bilateral bases", "bilateral lower lobes", "right lower lung",
    ),
    "middle lobe": ("right middle lobe", "lingula", "lingular", "right middle"),
    "left upper lobe": (
        "left apex", "left apical", "left lung apex", "left upper lung", "biapical",
        "bilateral apices", "both apices", "bilateral upper lobes",
    ),
    "right upper lobe": (
        "right apex", "right apical", "right lung apex", "right upper lung", "biapical",
        "bilateral apices", "both apices", "bilateral upper lobes",
    ),
    "hypoinflation": ("low lung volumes", "low volumes", "hypoinflated", "hypoventilatory"),
    "hyperdistention": (
        "hyperinflated", "hyperinflation", "hyperexpanded", "hyperexpansion",
        "hyperaerated", "hyperlucent",
    ),
    "thoracic vertebrae": ("thoracic spine", "thoracolumbar", "midthoracic", "lower thoracic"),
    "lumbar vertebrae": ("lumbar spine",),
    "cervical vertebrae": ("cervical spine",),
    "right pleural space": ("right pleural", "right-sided pleural", "right effusion"),
    "left pleural space": ("left pleural", "left-sided pleural", "left effusion"),
}  # fmt: skip
_SUB_AREAS = "sub_areas"
_INFOS = "infos"


def from_radrestruct(areas: Sequence[Mapping[str, Any]]) -> Template:
    """The template the Rad-ReStruct JSON describes (with the value synonyms its values have)."""
    options = {
        option
        for infos in _all_infos(areas)
        for spec in infos.values()
        for option in spec.get("options", ())
    }
    return parse_template(
        {
            "id": TEMPLATE_ID,
            "title": "Chest radiograph (Rad-ReStruct)",
            "version": "1.0",
            "modality": "CR",
            "body_part": "CHEST",
            "description": (
                "The structured chest radiograph report of Rad-ReStruct: areas, sub-areas, "
                "signs, body regions and diseases, each finding with body region, "
                "localization, attributes and degree."
            ),
            "source": (
                "Rad-ReStruct (Pellegrini et al., MICCAI 2023), MIT licence: "
                "third_party/radrestruct/LICENSE.txt"
            ),
            "sections": ["indication", "comparison", "findings", "impression"],
            "value_synonyms": {k: v for k, v in VALUE_SYNONYMS.items() if k in options},
            "areas": [_area(area) for area in areas],
        },
        origin="the Rad-ReStruct template",
    )


def _all_infos(content: Any) -> Iterator[Mapping[str, Any]]:
    """Every ``infos`` mapping anywhere in Rad-ReStruct's JSON."""
    if isinstance(content, Mapping):
        for key, value in content.items():
            if key == _INFOS and isinstance(value, Mapping):
                yield value
            else:
                yield from _all_infos(value)
    elif isinstance(content, list | tuple):
        for item in content:
            yield from _all_infos(item)


def _area(area: Mapping[str, Any]) -> dict[str, Any]:
    node = _container(str(area["area"]), NodeKind.AREA, area, skip="area")
    return node


def _container(
    name: str, kind: NodeKind, content: Mapping[str, Any], skip: str = ""
) -> dict[str, Any]:
    children: list[dict[str, Any]] = []
    attributes: list[dict[str, Any]] = []
    for key, value in content.items():
        if key == skip:
            continue
        if key == _INFOS:
            attributes = _attributes(value)
        elif key == _SUB_AREAS:
            children.append(
                {
                    "name": key,
                    "kind": NodeKind.GROUP,
                    "children": [
                        _container(sub, NodeKind.AREA, groups) for sub, groups in value.items()
                    ],
                }
            )
        else:
            children.append(
                {
                    "name": key,
                    "kind": NodeKind.GROUP,
                    "children": [_finding(finding, spec) for finding, spec in value.items()],
                }
            )
    node: dict[str, Any] = {"name": name, "kind": kind, "children": children}
    if attributes:
        node["attributes"] = attributes
    return node


# Findings that are critical results on a chest radiograph (communicated when found).
CRITICAL_FINDINGS = frozenset({"pneumothorax"})


def _finding(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"name": name, "kind": NodeKind.FINDING}
    if name in CRITICAL_FINDINGS:
        node["critical"] = True
    attributes = _attributes(spec.get(_INFOS, {}))
    if attributes:
        node["attributes"] = attributes
    return node


def _attributes(infos: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": name, "answer_type": AnswerType(spec["answer_type"]), "options": spec["options"]}
        for name, spec in infos.items()
    ]


def to_radrestruct(template: Template) -> list[dict[str, Any]]:
    """The Rad-ReStruct JSON of ``template`` (the inverse of :func:`from_radrestruct`)."""
    return [{"area": area.name, **_content(area)} for area in template.areas]


def _content(node: Node) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for group in node.children:
        if group.name == _SUB_AREAS:
            content[group.name] = {sub.name: _content(sub) for sub in group.children}
        else:
            content[group.name] = {
                finding.name: {_INFOS: _infos(finding.attributes)} for finding in group.children
            }
    if node.attributes:
        content[_INFOS] = _infos(node.attributes)
    return content


def _infos(attributes: Sequence[Attribute]) -> dict[str, Any]:
    return {
        attribute.name: {
            "answer_type": attribute.answer_type.value,
            "options": list(attribute.options),
        }
        for attribute in attributes
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m radstream.restructure.radrestruct TEMPLATE.json``: the template as YAML."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m radstream.restructure.radrestruct radrestruct_template.json")
        return 2
    template = from_radrestruct(json.loads(Path(args[0]).read_text(encoding="utf-8")))
    document = template.model_dump(mode="json", exclude_defaults=True)
    sys.stdout.write(
        yaml.safe_dump(
            document, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
