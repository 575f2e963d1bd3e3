"""Assertion status of a mention: affirmed, negated, uncertain or historical (ConText's idea).

A report says "no pneumothorax", "cannot exclude early pneumonia", "status post
cholecystectomy": the finding named is absent, possible, or in the past. Following the ConText
algorithm (Harkema et al. 2009; NegEx before it), a *trigger* phrase opens a *scope* that runs
forward (``no``, ``negative for``, ``possible``) or backward (``... is not seen``, ``... has
resolved``) to the end of the clause: a *terminator* (``but``, ``however``, ``which``), a
semicolon, or the sentence end. A mention inside a scope takes its status; negation wins over
uncertainty, which wins over history, as a reader would want the more cautious reading. A few
*pseudo-triggers* ("no change", "not only", "no increase") look like triggers and are not.

The lexicon is ours and small on purpose: it is the part a clinician may want to read and
extend, and every entry has a test. Why not medspaCy's ConText: it needs its own spaCy
pipeline per report, costs ~10x the time of these regular expressions on a chest radiograph
report, and its default rules are the same phrases; the point of the stage is the scope rules,
which are simple.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Assertion", "Scope", "assertion_of", "scopes"]


class Assertion(StrEnum):
    """What a sentence says about a finding it names."""

    AFFIRMED = "affirmed"
    NEGATED = "negated"
    UNCERTAIN = "uncertain"
    HISTORICAL = "historical"


# Precedence when scopes overlap: the more cautious reading wins.
_RANK = {Assertion.NEGATED: 3, Assertion.UNCERTAIN: 2, Assertion.HISTORICAL: 1}

_FORWARD: dict[Assertion, tuple[str, ...]] = {
    Assertion.NEGATED: (
        "no",
        "not",
        "without",
        "negative for",
        "free of",
        "no evidence of",
        "no signs of",
        "no sign of",
        "no definite",
        "no focal",
        "no acute",
        "no significant",
        "absence of",
        "absent",
        "rules out",
        "ruled out",
        "there is no",
        "there are no",
        "nor",
        "clear of",
        "resolution of",
        "resolved",
    ),
    Assertion.UNCERTAIN: (
        "possible",
        "possibly",
        "probable",
        "probably",
        "likely",
        "may represent",
        "may be",
        "could represent",
        "could be",
        "cannot exclude",
        "can not exclude",
        "cannot be excluded",
        "not excluded",
        "suspicious for",
        "suspected",
        "suggestive of",
        "suggests",
        "questionable",
        "question of",
        "equivocal",
        "concern for",
        "concerning for",
        "versus",
        "vs",
        "differential includes",
        "borderline",
        "cannot rule out",
        "consider",
        "compatible with",
        "consistent with",
    ),
    Assertion.HISTORICAL: (
        "history of",
        "prior",
        "previous",
        "previously",
        "status post",
        "s/p",
        "post",
        "remote",
        "old",
        "healed",
        "known",
    ),
}
_BACKWARD: dict[Assertion, tuple[str, ...]] = {
    Assertion.NEGATED: (
        "is not seen",
        "are not seen",
        "not seen",
        "is not identified",
        "are not identified",
        "not identified",
        "is absent",
        "are absent",
        "has resolved",
        "have resolved",
        "resolved",
        "is excluded",
        "was excluded",
        "ruled out",
        ": no",
        ": none",
        ": negative",
        "not present",
        "unremarkable",
        "normal",
        "within normal limits",
        "are clear",
        "is clear",
    ),
    Assertion.UNCERTAIN: (
        "cannot be excluded",
        "can not be excluded",
        "is not excluded",
        "not excluded",
        "is suspected",
        "are suspected",
        "is possible",
        "is questioned",
        "?",
    ),
    Assertion.HISTORICAL: ("in the past", "previously", "on prior", "again noted", "is healed"),
}
# Phrases that contain a trigger but do not negate or hedge anything.
_PSEUDO = (
    "no change",
    "no significant change",
    "no interval change",
    "no increase",
    "no decrease",
    "not only",
    "not necessarily",
    "no further",
    "without change",
    "without significant change",
    "not changed",
    "unchanged",
    "no new",
    "gram negative",
    "not certain whether",
    "no longer",
)
_TERMINATORS = (
    "but",
    "however",
    "although",
    "though",
    "which",
    "except",
    "apart from",
    "aside from",
    "otherwise",
    "yet",
    "with",
    "and there is",
    "there is",
    "there are",
    "and",
)
# "and" ends a forward negation only where a new clause starts ("no effusion and the heart is
# large"); "no effusion or pneumothorax" and "no consolidation and no effusion" keep it: the
# scope runs on over "or"/"nor" lists, and a second "no" restarts one anyway.
_CLAUSE_AFTER_AND = re.compile(r"\s*and\s+(?:the|there|a|an|is|are|has|have|mild|moderate)\b")


def _pattern(phrases: tuple[str, ...]) -> str:
    ordered = sorted(phrases, key=len, reverse=True)
    return "|".join(
        (r"(?<!\w)" if p[0].isalnum() else "")
        + re.escape(p)
        + (r"(?!\w)" if p[-1].isalnum() else "")
        for p in ordered
    )


_PSEUDO_RE = re.compile(_pattern(_PSEUDO), re.IGNORECASE)
_FORWARD_RE = {kind: re.compile(_pattern(words), re.IGNORECASE) for kind, words in _FORWARD.items()}
_BACKWARD_RE = {kind: re.compile(_pattern(w), re.IGNORECASE) for kind, w in _BACKWARD.items()}
_TERMINATOR_RE = re.compile(_pattern(tuple(t for t in _TERMINATORS if t != "and")), re.IGNORECASE)
# Commas do not end a scope: "no consolidation, effusion or pneumothorax" is one list.
_CLAUSE_END = re.compile(r"[;:](?=\s)|[.!]\s|$")


@dataclass(frozen=True, slots=True)
class Scope:
    """Characters ``start``..``end`` of a sentence that ``trigger`` gives ``assertion``."""

    assertion: Assertion
    start: int
    end: int
    trigger: str


def scopes(sentence: str) -> list[Scope]:
    """Every trigger's scope in ``sentence`` (offsets into it)."""
    masked = _PSEUDO_RE.sub(lambda m: "_" * len(m.group()), sentence)
    forward = sorted(
        (match.start(), match.end(), kind, match.group())
        for kind, pattern in _FORWARD_RE.items()
        for match in pattern.finditer(masked)
    )
    found: list[Scope] = []
    for index, (_, after, kind, trigger) in enumerate(forward):
        end = _forward_end(masked, after)
        # A trigger of another kind after a comma starts a new statement and ends this scope
        # ("no definite pneumothorax, possible small effusion": the effusion is possible, not
        # absent); without one it is inside the scope ("no evidence of possible pneumothorax").
        later = [start for start, _, other, _ in forward[index + 1 :] if other is not kind]
        if later and "," in masked[after : later[0]]:
            end = min(end, later[0])
        found.append(Scope(kind, after, end, trigger))
    for kind, pattern in _BACKWARD_RE.items():
        for match in pattern.finditer(masked):
            begin = _backward_start(masked, match.start())
            found.append(Scope(kind, begin, match.start(), match.group()))
    return found


def _forward_end(text: str, start: int) -> int:
    """Where a forward scope from ``start`` ends: a terminator, clause punctuation, the end."""
    end = len(text)
    terminator = _TERMINATOR_RE.search(text, start)
    if terminator is not None:
        end = terminator.start()
    punctuation = _CLAUSE_END.search(text, start)
    if punctuation is not None and punctuation.start() >= start:
        end = min(end, punctuation.start())
    for match in re.finditer(r"\band\b", text[start:end]):
        if _CLAUSE_AFTER_AND.match(text, start + match.start()):
            return start + match.start()
    return end


def _backward_start(text: str, end: int) -> int:
    """Where a backward scope ending at ``end`` starts: after the last clause break before it."""
    start = 0
    for match in re.finditer(r"[;,:](?=\s)|[.!]\s", text[:end]):
        start = match.end()
    terminators = list(_TERMINATOR_RE.finditer(text, start, end))
    return terminators[-1].end() if terminators else start


def assertion_of(sentence: str, mention_start: int, mention_end: int) -> tuple[Assertion, str]:
    """The status of the mention at ``mention_start``..``mention_end`` of ``sentence``.

    Returns the assertion and the trigger that decided it ("" when affirmed).
    """
    best: Scope | None = None
    for scope in scopes(sentence):
        inside = scope.start <= mention_start and mention_end <= scope.end
        if inside and (best is None or _RANK[scope.assertion] > _RANK[best.assertion]):
            best = scope
    if best is None:
        return Assertion.AFFIRMED, ""
    return best.assertion, best.trigger
