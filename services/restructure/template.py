"""Report templates as data: a tree of areas, groups and findings, each finding with attributes.

A template is a YAML file (``radstream/restructure/templates/<id>.yaml``) validated by the
pydantic models below; :func:`template_file_schema` is the same validation as a JSON Schema, for
people who write templates in an editor. The tree is the report's structure, organ by organ: an
*area* (an organ or system, "liver", "respiratory system") holds *groups* ("signs", "diseases")
and *findings*; a finding is what a report says is present or absent, and its *attributes* say
where, how much and of what kind, each from a closed list of values or as a measurement.

A finding is named by its *path*, the names from the root down (``("cardiovascular system",
"diseases", "cardiomegaly")``): the key every stage, the extraction schema, the evaluation and
the outputs share. The tree may carry codes (RadLex, LOINC, SNOMED CT) on any node and value.

Why a general tree and not one class per template: the organ-based CT templates and
Rad-ReStruct's chest radiograph hierarchy (areas -> sub-areas -> signs/diseases -> findings ->
body region, localization, degree) differ only in depth and vocabulary; one model keeps every
stage template-agnostic, and a new template is a file, not code.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "AnswerType",
    "Attribute",
    "Code",
    "Node",
    "NodeKind",
    "Template",
    "TemplateError",
    "available_templates",
    "load_template",
    "parse_template",
    "read_yaml",
    "template_file_schema",
]

Path = tuple[str, ...]
_Name = Annotated[str, Field(min_length=1, max_length=120)]


class TemplateError(ValueError):
    """A template file that does not hold a valid template; the message says where."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Code(_Frozen):
    """A concept code: ``RADLEX RID58`` (liver), ``LOINC 18782-3`` (study observation)."""

    scheme: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_-]*$")]  # RADLEX, LOINC, SNOMED-CT
    value: Annotated[str, Field(min_length=1, max_length=64)]
    meaning: str = ""


class AnswerType(StrEnum):
    """How many of an attribute's values a finding instance takes."""

    SINGLE = "single_choice"  # one of the options
    MULTI = "multi_choice"  # any of the options
    FIXED = "fixed_choice"  # the only option (the template allows nothing else)
    MEASUREMENT = "measurement"  # numbers with a unit from ``units``
    TEXT = "text"  # free text, kept verbatim from the source


class Attribute(_Frozen):
    """One property of a finding: body region, localization, degree, size ..."""

    name: _Name
    answer_type: AnswerType
    options: tuple[_Name, ...] = ()
    units: tuple[str, ...] = ()  # for measurements: the units a value may carry ("mm", "cm")
    codes: dict[str, Code] = Field(default_factory=dict)  # option -> its code

    @model_validator(mode="after")
    def _options_fit_the_answer_type(self) -> Attribute:
        choice = self.answer_type in (AnswerType.SINGLE, AnswerType.MULTI, AnswerType.FIXED)
        if choice and not self.options:
            raise ValueError(f"attribute {self.name!r} is a choice without options")
        if self.answer_type is AnswerType.FIXED and len(self.options) != 1:
            raise ValueError(f"attribute {self.name!r} is a fixed choice of not one option")
        if not choice and self.options:
            raise ValueError(f"attribute {self.name!r} ({self.answer_type}) cannot have options")
        if self.answer_type is AnswerType.MEASUREMENT and not self.units:
            raise ValueError(f"measurement {self.name!r} names no unit")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"attribute {self.name!r} repeats an option")
        unknown = set(self.codes) - set(self.options)
        if unknown:
            raise ValueError(f"attribute {self.name!r} codes options it does not have")
        return self


class NodeKind(StrEnum):
    """What a node of the tree is."""

    AREA = "area"  # an organ, system or region: a heading of the report
    GROUP = "group"  # a grouping inside an area ("signs", "diseases", "sub_areas")
    FINDING = "finding"  # present or absent, with attributes


class Node(_Frozen):
    """A node of the template tree (see the module docstring)."""

    name: _Name
    kind: NodeKind
    children: tuple[Node, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    codes: tuple[Code, ...] = ()
    synonyms: tuple[str, ...] = ()  # how reports name it besides its name ("gall bladder")
    description: str = ""
    critical: bool = False  # a critical result: the report must say it was communicated

    @model_validator(mode="after")
    def _shape_fits_the_kind(self) -> Node:
        if self.kind is NodeKind.FINDING and self.children:
            raise ValueError(f"finding {self.name!r} has children")
        if self.critical and self.kind is not NodeKind.FINDING:
            raise ValueError(f"{self.kind} {self.name!r} is marked critical; only findings are")
        if self.kind is not NodeKind.FINDING and not self.children:
            raise ValueError(f"{self.kind} {self.name!r} has no children")
        names = [child.name for child in self.children]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.kind} {self.name!r} has two children of the same name")
        attributes = [attribute.name for attribute in self.attributes]
        if len(set(attributes)) != len(attributes):
            raise ValueError(f"{self.kind} {self.name!r} has two attributes of the same name")
        return self


class Template(_Frozen):
    """A report template: identity, the report's sections, and the tree of findings."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    title: _Name
    version: Annotated[str, Field(pattern=r"^\d+\.\d+(\.\d+)?$")]
    modality: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]  # DICOM modality: CT, CR, DX, MR
    body_part: str
    language: str = "en"
    description: str = ""
    source: str = ""  # where the structure comes from, and its licence
    codes: tuple[Code, ...] = ()  # the template's own codes (procedure, LOINC document type)
    sections: tuple[_Name, ...] = ("history", "technique", "comparison", "findings", "impression")
    # How reports state an attribute value besides its own words, for every attribute that has
    # the value: "left lower lobe" -> "left base", "bibasilar".
    value_synonyms: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    areas: tuple[Node, ...]

    @model_validator(mode="after")
    def _areas_are_areas(self) -> Template:
        for area in self.areas:
            if area.kind is not NodeKind.AREA:
                raise ValueError(f"top-level node {area.name!r} is a {area.kind}, not an area")
        names = [area.name for area in self.areas]
        if len(set(names)) != len(names):
            raise ValueError("two areas have the same name")
        options = {
            option for _, node in self.findings() for a in node.attributes for option in a.options
        }
        options |= {o for area in self.areas for a in _all_attributes(area) for o in a.options}
        unknown = sorted(set(self.value_synonyms) - options)
        if unknown:
            raise ValueError(f"value_synonyms name values no attribute has: {', '.join(unknown)}")
        return self

    def findings(self) -> Iterator[tuple[Path, Node]]:
        """Every finding with its path, in template order."""
        for area in self.areas:
            yield from _findings(area, (area.name,))

    def finding_paths(self) -> tuple[Path, ...]:
        """The paths of every finding, in template order."""
        return tuple(path for path, _ in self.findings())

    def node(self, path: Path) -> Node:
        """The node at ``path``; KeyError if the template has none there."""
        nodes = self.areas
        found: Node | None = None
        for name in path:
            found = next((node for node in nodes if node.name == name), None)
            if found is None:
                raise KeyError(path)
            nodes = found.children
        if found is None:
            raise KeyError(path)
        return found

    def attributes_of(self, path: Path) -> tuple[Attribute, ...]:
        """The attributes a finding takes: its own and those its area gives every finding."""
        inherited: list[Attribute] = []
        nodes = self.areas
        for name in path:
            node = next(node for node in nodes if node.name == name)
            inherited.extend(
                a for a in node.attributes if a.name not in {i.name for i in inherited}
            )
            nodes = node.children
        own = {attribute.name for attribute in self.node(path).attributes}
        return tuple(a for a in inherited if a.name not in own) + self.node(path).attributes


def _all_attributes(node: Node) -> Iterator[Attribute]:
    yield from node.attributes
    for child in node.children:
        yield from _all_attributes(child)


def _findings(node: Node, path: Path) -> Iterator[tuple[Path, Node]]:
    if node.kind is NodeKind.FINDING:
        yield path, node
        return
    for child in node.children:
        yield from _findings(child, (*path, child.name))


def parse_template(data: Any, *, origin: str = "the template") -> Template:
    """Validate ``data`` (a parsed YAML or JSON document) as a template.

    Raises
    ------
    TemplateError
        Naming where in ``origin`` the document is wrong.
    """
    try:
        return Template.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise TemplateError(f"{origin} is not a valid template: {exc}") from None


_PACKAGE = "radstream.restructure.templates"


@cache
def available_templates() -> tuple[str, ...]:
    """The ids of the templates radstream ships."""
    folder = resources.files(_PACKAGE)
    return tuple(
        sorted(
            entry.name.removesuffix(".yaml")
            for entry in folder.iterdir()
            if entry.name.endswith(".yaml")
        )
    )


@cache
def load_template(template_id: str) -> Template:
    """A shipped template by id (``ct-abdomen``, ``ct-chest``, ``chest-xray-radrestruct``).

    Raises
    ------
    TemplateError
        No such template, or its file is not valid.
    """
    if template_id not in available_templates():
        raise TemplateError(
            f"no template {template_id!r}; radstream ships {', '.join(available_templates())}"
        )
    text = resources.files(_PACKAGE).joinpath(f"{template_id}.yaml").read_text(encoding="utf-8")
    template = parse_template(
        read_yaml(text, origin=f"{template_id}.yaml"), origin=f"{template_id}.yaml"
    )
    if template.id != template_id:
        raise TemplateError(f"{template_id}.yaml holds template {template.id!r}")
    return template


def read_yaml(text: str, *, origin: str) -> Any:
    """A YAML document; TemplateError (with the line) when it does not parse."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise TemplateError(f"{origin} is not valid YAML{line}") from None


def template_file_schema() -> dict[str, Any]:
    """The JSON Schema of a template file (what :func:`parse_template` accepts)."""
    schema = Template.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "radstream report template"
    return schema
