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
from collections.abc import Mapping, Sequence
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
_SUB_AREAS = "sub_areas"
_INFOS = "infos"


def from_radrestruct(areas: Sequence[Mapping[str, Any]]) -> Template:
    """The template the Rad-ReStruct JSON describes."""
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
            "areas": [_area(area) for area in areas],
        },
        origin="the Rad-ReStruct template",
    )


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


def _finding(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"name": name, "kind": NodeKind.FINDING}
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
