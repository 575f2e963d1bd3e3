"""Where a sentence names a template's finding: the template's own words, compiled once.

Each finding is found by its name and synonyms, in the forms reports write them: any case,
singular or plural, hyphen or space ("ground-glass", "ground glass"), and a MeSH-style inverted
name read both ways ("fractures, bone" -> "bone fractures", "fractures"). Nothing is learned
here: it is what the template says, so it works for a template no report was ever labelled with.

A name can belong to several findings ("opacity" is a sign of the lung, the heart, the bones and
the thorax in Rad-ReStruct). Such a mention goes to the finding whose area the sentence names
(its area, sub-area and group names, its attribute values and its synonyms are the cues),
else to the first in template order; :attr:`Mention.candidates` keeps how many there were.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from radstream.restructure.template import Node, Template

__all__ = ["Lexicon", "Mention", "lexicon_for", "term_variants"]

Path = tuple[str, ...]
_GENERIC_GROUPS = frozenset(
    {"findings", "signs", "diseases", "body_regions", "objects", "sub_areas"}
)
_STOP = frozenset({"no", "selection", "unspecified", "and", "of", "the", "with", "or"})


@dataclass(frozen=True, slots=True)
class Mention:
    """A finding named at ``start``..``end`` of a sentence."""

    path: Path
    start: int
    end: int
    term: str
    candidates: int  # findings this term could name


def term_variants(name: str) -> set[str]:
    """The forms a report may write ``name`` in (lower case)."""
    name = name.lower().strip()
    forms = {name}
    if ", " in name:  # MeSH inversion: "fractures, bone", "catheters, indwelling"
        head, modifier = name.split(", ", 1)
        forms.add(f"{modifier} {head}")
        if " " not in modifier:
            # The head alone names it when one word qualifies it ("fractures"); a longer
            # qualifier makes it another thing ("pulmonary disease" is not COPD).
            forms.add(head)
    for form in list(forms):
        forms.add(form.replace("-", " "))
        forms |= _number_variants(form)
    return {form for form in forms if len(form) >= 3}


def _number_variants(form: str) -> set[str]:
    words = form.split(" ")
    last = words[-1]
    if last.endswith("ies"):
        other = last[:-3] + "y"
    elif last.endswith(("ses", "xes", "shes", "ches")):
        other = last[:-2]
    elif last.endswith("s") and not last.endswith("ss") and len(last) > 3:
        other = last[:-1]
    elif last.endswith("y") and len(last) > 3:
        other = last[:-1] + "ies"
    elif last.endswith(("s", "x", "sh", "ch")):
        other = last + "es"
    else:
        other = last + "s"
    return {" ".join([*words[:-1], other])}


@dataclass(frozen=True)
class _Entry:
    path: Path
    cues: frozenset[str]


class Lexicon:
    """The finding names of one template, as one regular expression."""

    def __init__(self, template: Template) -> None:
        self.template = template
        entries: dict[str, list[_Entry]] = {}
        for path, node in template.findings():
            entry = _Entry(path, _cues(template, path))
            for name in (node.name, *node.synonyms):
                for form in term_variants(name):
                    entries.setdefault(form, []).append(entry)
        self._entries = entries
        alternation = "|".join(
            re.escape(form).replace(r"\ ", r"[\s-]+")
            for form in sorted(entries, key=len, reverse=True)
        )
        self._pattern = re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE)

    def mentions(self, sentence: str) -> Iterator[Mention]:
        """Every finding ``sentence`` names, longest names first where they overlap."""
        words = set(re.findall(r"[a-z]+", sentence.lower()))
        for match in self._pattern.finditer(sentence):
            key = re.sub(r"[\s-]+", " ", match.group().lower())
            entries = self._entries.get(key) or self._entries.get(key.replace(" ", "-"), [])
            if not entries:
                continue
            best = (
                max(entries, key=lambda e: len(e.cues & words)) if len(entries) > 1 else entries[0]
            )
            yield Mention(best.path, match.start(), match.end(), match.group(), len(entries))


def _cues(template: Template, path: Path) -> frozenset[str]:
    """Words that place a sentence in the area of ``path``: names on the way, values, synonyms."""
    words: set[str] = set()
    nodes = template.areas
    for name in path[:-1]:
        node: Node = next(n for n in nodes if n.name == name)
        if name not in _GENERIC_GROUPS:
            words |= _words(name)
            for synonym in node.synonyms:
                words |= _words(synonym)
        nodes = node.children
    for attribute in template.attributes_of(path):
        if attribute.name in ("body_region", "location"):
            for option in attribute.options:
                words |= _words(option)
    return frozenset(words - _STOP)


def _words(text: str) -> set[str]:
    found = set(re.findall(r"[a-z]+", text.lower()))
    return found | {word[:-1] for word in found if word.endswith("s") and len(word) > 3}


_COMPILED: dict[tuple[str, str], Lexicon] = {}


def lexicon_for(template: Template) -> Lexicon:
    """The lexicon of ``template``, compiled once per template id and version."""
    key = (template.id, template.version)
    lexicon = _COMPILED.get(key)
    if lexicon is None or lexicon.template != template:
        lexicon = _COMPILED[key] = Lexicon(template)
    return lexicon
