"""A template as an IHE MRRT report template: HTML5 a reporting system can import.

IHE's Management of Radiology Report Templates profile (MRRT) defines a template as an HTML5
file: Dublin Core ``<meta>`` elements for its identity, a ``<script type="text/xml">`` holding
``template_attributes`` (the coding schemes, and ``coded_content``: each field's codes, linked to
the field by its id in ``ORIGTXT``), and a body of ``<section>`` elements with
``data-section-name``, each field a labelled ``<input>`` with ``data-field-type`` (TEXT, NUMBER)
or a ``<select>`` (a selection list; ``multiple`` when several values may be chosen).

Here every area is a section inside Findings, every finding a selection list (present, absent,
not assessed), and each of its attributes a field beside it: a selection list of the template's
options, or a NUMBER with its unit. Every text and attribute value is escaped, so a template
cannot inject markup into the systems that import it.
"""

from __future__ import annotations

import re
from datetime import date
from html import escape

from radstream.restructure.template import AnswerType, Attribute, Code, Node, NodeKind, Template

__all__ = ["CODING_SCHEMES", "to_mrrt_html"]

# Designators (OIDs) of the coding schemes templates may use, as HL7 registers them.
CODING_SCHEMES = {
    "RADLEX": "2.16.840.1.113883.6.256",
    "LOINC": "2.16.840.1.113883.6.1",
    "SNOMED-CT": "2.16.840.1.113883.6.96",
}
PRESENCE = ("present", "absent", "not assessed")


def to_mrrt_html(template: Template, *, published: date | None = None) -> str:
    """The MRRT HTML5 document of ``template``."""
    writer = _Writer(template)
    return writer.document(published or date.today())


class _Writer:
    def __init__(self, template: Template) -> None:
        self.template = template
        self.coded: list[tuple[str, Code]] = []  # (field id, code)
        self.ids: set[str] = set()

    def document(self, published: date) -> str:
        t = self.template
        body = self._body()  # first: it collects the coded content
        meta = {
            "dcterms.title": t.title,
            "dcterms.identifier": f"radstream:{t.id}:{t.version}",
            "dcterms.type": "IMAGE_REPORT_TEMPLATE",
            "dcterms.language": t.language,
            "dcterms.description": t.description,
            "dcterms.publisher": "radstream",
            "dcterms.source": t.source,
            "dcterms.date": published.isoformat(),
        }
        lines = [
            "<!DOCTYPE html>",
            f'<html lang="{escape(t.language)}">',
            "<head>",
            '<meta charset="UTF-8">',
            f"<title>{escape(t.title)}</title>",
            *(
                f'<meta name="{name}" content="{escape(value)}">'
                for name, value in meta.items()
                if value
            ),
            '<script type="text/xml">',
            self._attributes(),
            "</script>",
            "</head>",
            "<body>",
            body,
            "</body>",
            "</html>",
            "",
        ]
        return "\n".join(lines)

    def _attributes(self) -> str:
        schemes = sorted(
            {code.scheme for _, code in self.coded} | {c.scheme for c in self.template.codes}
        )
        lines = ["<template_attributes>", "<coding_schemes>"]
        lines += [
            f'<coding_scheme name="{escape(scheme)}" designator="{designator}"/>'
            for scheme in schemes
            for designator in [CODING_SCHEMES.get(scheme, "")]
        ]
        lines += ["</coding_schemes>", "<term>"]
        lines += [_code(code) for code in self.template.codes]
        lines += ["</term>", "<coded_content>"]
        for field_id, code in self.coded:
            lines += [
                f'<entry ORIGTXT="{escape(field_id)}">',
                "<term>",
                _code(code),
                "</term>",
                "</entry>",
            ]
        lines += ["</coded_content>", "</template_attributes>"]
        return "\n".join(lines)

    def _body(self) -> str:
        sections = []
        for name in self.template.sections:
            section_id = self._id(name)
            if name == "findings":
                content = "\n".join(self._area(area, level=2) for area in self.template.areas)
            else:
                content = (
                    f'<p><textarea id="{section_id}-text" data-field-type="TEXT" '
                    f'aria-label="{escape(name)}"></textarea></p>'
                )
            sections.append(
                f"{_open(section_id, 1, name.title())}\n"
                f'<header class="level1">{escape(name.title())}</header>\n{content}\n</section>'
            )
        return "\n".join(sections)

    def _area(self, node: Node, *, level: int) -> str:
        section_id = self._id(node.name)
        for code in node.codes:
            self.coded.append((section_id, code))
        parts = [
            _open(section_id, level, node.name),
            f'<header class="level{level}">{escape(node.name.capitalize())}</header>',
        ]
        for attribute in node.attributes:
            parts.append(f"<p>{self._attribute(section_id, attribute)}</p>")
        for child in node.children:
            parts.append(self._child(child, level=level + 1))
        parts.append("</section>")
        return "\n".join(parts)

    def _child(self, node: Node, *, level: int) -> str:
        if node.kind is NodeKind.FINDING:
            return self._finding(node)
        if node.kind is NodeKind.AREA:
            return self._area(node, level=level)
        group_id = self._id(node.name)
        items = "\n".join(self._child(child, level=level + 1) for child in node.children)
        return f"{_open(group_id, level, node.name)}\n{items}\n</section>"

    def _finding(self, node: Node) -> str:
        finding_id = self._id(node.name)
        for code in node.codes:
            self.coded.append((finding_id, code))
        options = "".join(f'<option value="{v}">{v}</option>' for v in PRESENCE)
        fields = [
            f'<label for="{finding_id}">{escape(node.name.capitalize())}</label> '
            f'<select id="{finding_id}" data-field-type="SELECTION">{options}</select>'
        ]
        fields += [self._attribute(finding_id, attribute) for attribute in node.attributes]
        return f'<p class="finding">{" ".join(fields)}</p>'

    def _attribute(self, owner: str, attribute: Attribute) -> str:
        field_id = self._id(f"{owner}-{attribute.name}")
        label = f'<label for="{field_id}">{escape(attribute.name.replace("_", " "))}</label>'
        for option, code in attribute.codes.items():
            self.coded.append((f"{field_id}:{option}", code))
        if attribute.answer_type is AnswerType.MEASUREMENT:
            unit = escape(attribute.units[0])
            return (
                f'{label} <input type="number" id="{field_id}" data-field-type="NUMBER" '
                f'step="any"> <span class="unit">{unit}</span>'
            )
        if attribute.answer_type is AnswerType.TEXT:
            return f'{label} <input type="text" id="{field_id}" data-field-type="TEXT">'
        multiple = " multiple" if attribute.answer_type is AnswerType.MULTI else ""
        options = "".join(
            f'<option value="{escape(option)}">{escape(option)}</option>'
            for option in attribute.options
        )
        select = f'<select id="{field_id}" data-field-type="SELECTION"{multiple}>'
        return f"{label} {select}{options}</select>"

    def _id(self, text: str) -> str:
        """A unique HTML id from ``text`` (letters, digits and hyphens)."""
        base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "field"
        candidate, number = base, 2
        while candidate in self.ids:
            candidate, number = f"{base}-{number}", number + 1
        self.ids.add(candidate)
        return candidate


def _open(section_id: str, level: int, name: str) -> str:
    return f'<section id="{section_id}" class="level{level}" data-section-name="{escape(name)}">'


def _code(code: Code) -> str:
    return (
        f'<code meaning="{escape(code.meaning)}" value="{escape(code.value)}" '
        f'scheme="{escape(code.scheme)}"/>'
    )
