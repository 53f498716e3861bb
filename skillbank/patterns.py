"""Task patterns: how a skill's arguments appear in the task texts it was learned from.

A reflex (`skillbank.reflex`) runs a trusted skill straight from a task's words, so it must
know where each argument sits in a request. This module learns that from the skill's recorded
cases, each a task text and the argument values the skill ran with:

- each argument's *kind*, the most specific one all its values share: ``email``, ``number``,
  ``date`` (ISO), ``path``, ``id`` (one token with a digit or joined parts, ``O-5003``),
  ``word`` or ``text`` (several words);
- each *phrasing*: a case's task with every argument value replaced by ``{name}``, so
  ``Show the order history for {email}``. The text around the slots is the request's fixed
  words, and the words right before a slot tell same-kind arguments apart. Cases that share a
  phrasing are counted once with their number; every distinct phrasing is kept;
- *constants*: an argument that had the same value in every case (two or more) is not read
  from the text; the reflex passes that value;
- where each argument *flows*: the tool parameters that received exactly its value in every
  case, so an extracted value can be checked against that tool's schema too.

`learn_patterns` is pure and its output, `render_patterns`, is deterministic (sorted keys, a
trailing newline): `skillbank.library.skill_files` writes it as ``patterns.json`` beside
``cases.jsonl`` in the one function every write of a skill goes through (learning, rollback,
refinement, merging, stage changes), so the patterns are rebuilt whenever the cases change and
are reviewed in the same diff. The file is data for people and for the reflex: a reviewer's
edit (a phrasing removed) holds until the skill is next written, and a running process reads
it when the skill next changes. ``learned_from`` (`cases_digest`) names the cases it was
learned from, so a file left behind by a hand edit of ``cases.jsonl`` is known to be stale
and learned again from the cases.

The module reads text with plain regular expressions and no tokenizer of its own: the
reflex compares words with the one tokenizer of task texts (`skillbank.search.tokenize`), and
this module is imported by the library, which must stay light to import.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from skillbank.skill import Case, Signature
from skillbank.trajectory import ToolSpec

__all__ = [
    "FORMAT",
    "KINDS",
    "PATTERNS_FILE",
    "Kind",
    "Phrasing",
    "TaskPatterns",
    "kind_of",
    "cases_digest",
    "learn_patterns",
    "parse_patterns",
    "render_patterns",
    "value_regex",
]

JSON = Any

#: The file a skill's patterns are written to, in its folder.
PATTERNS_FILE = "patterns.json"
#: Bumped when the file's shape changes; a file of another format is re-derived from the cases.
FORMAT = 1
#: The most phrasings kept per skill (the most frequent first): enough for every way a
#: team phrases one request, few enough for a reviewer to read.
MAX_PHRASINGS = 64

#: What an argument's values look like in a task text, most specific first.
Kind = Literal["email", "number", "date", "path", "id", "word", "text"]
KINDS: tuple[Kind, ...] = ("email", "number", "date", "path", "id", "word", "text")

_EMAIL = r"[^\W_][\w.%+-]*@[^\W_][\w-]*(?:\.[^\W_][\w-]*)+"
_NUMBER = r"-?\d+(?:\.\d+)?"
_DATE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?"
_PATH = r"(?:~|\.{1,2})?/?[\w.-]+(?:/[\w.-]+)+/?"
_ID = r"[^\W_]+(?:[-_][^\W_]+)+|[^\W\d_]*\d[^\W_]*"
_WORD = r"[^\W\d_][\w'-]*"
#: Each kind's value, as a regular expression (``text`` is any run of characters; a reflex
#: bounds it by the phrasing's fixed words around it).
_REGEX: dict[Kind, str] = {
    "email": _EMAIL,
    "number": _NUMBER,
    "date": _DATE,
    "path": _PATH,
    "id": _ID,
    "word": _WORD,
    "text": r".+?",
}
_FULL = {kind: re.compile(rf"(?:{rx})", re.IGNORECASE) for kind, rx in _REGEX.items()}


def value_regex(kind: Kind) -> str:
    """The regular expression a value of ``kind`` matches in a task text (no groups)."""
    return _REGEX[kind]


def kind_of(value: JSON) -> Kind | None:
    """The kind of one argument value, or None for a value no task text can hold
    (a bool, null, a list or an object)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return "number"
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        return None
    for kind in KINDS[:-1]:
        if kind != "number" and _FULL[kind].fullmatch(value):
            return kind
    return "text"


def _common_kind(values: Sequence[JSON]) -> Kind | None:
    """The most specific kind every value has (``word`` values with ``text`` ones give text)."""
    kinds = {kind_of(v) for v in values}
    if None in kinds or not kinds:
        return None
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds <= {"word", "text", "id", "email", "date", "path"}:
        return "text"  # mixed strings: only "some words" describes them all
    return None


@dataclass(frozen=True)
class Phrasing:
    """One way the skill's request was worded: fixed text with ``{arg}`` slots."""

    #: The task text with each argument value replaced by ``{name}`` (literal braces are
    #: doubled, as in `str.format`); whitespace collapsed.
    template: str
    #: How many recorded cases were worded this way.
    cases: int
    #: Arguments this phrasing does not say (their value was not in the text): a task in
    #: this phrasing cannot give them.
    unsaid: tuple[str, ...] = ()

    def parts(self) -> list[str | tuple[str]]:
        """The template as fixed text (str) and slots (a 1-tuple holding the argument name)."""
        out: list[str | tuple[str]] = []
        for literal, name, _, _ in _FORMATTER.parse(self.template):
            if literal:
                out.append(literal)
            if name is not None:
                out.append((name,))
        return out


@dataclass(frozen=True)
class TaskPatterns:
    """What a skill's recorded tasks say about its arguments (see the module docstring)."""

    #: The skill.
    skill_id: str
    #: Each argument read from task texts: its kind.
    kinds: Mapping[str, Kind]
    #: Arguments that had the same value in every case: name -> that value.
    constants: Mapping[str, JSON]
    #: The phrasings, most frequent first (then by template).
    phrasings: tuple[Phrasing, ...]
    #: For each argument, the tool parameters (``"tool.param"``) that received its value.
    flows: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Phrasings left out beyond `MAX_PHRASINGS`.
    more: int = 0
    #: `cases_digest` of the cases they were learned from: a file whose cases changed since
    #: (a hand edit of ``cases.jsonl``) is stale and learned again.
    cases: str = ""

    def to_json(self) -> dict[str, JSON]:
        """The patterns as the JSON data of ``patterns.json``."""
        arguments: dict[str, JSON] = {}
        for name in sorted(set(self.kinds) | set(self.constants)):
            entry: dict[str, JSON] = {}
            if name in self.constants:
                entry["constant"] = self.constants[name]
            else:
                entry["kind"] = self.kinds[name]
            if self.flows.get(name):
                entry["flows_to"] = list(self.flows[name])
            arguments[name] = entry
        phrasings = []
        for p in self.phrasings:
            item: dict[str, JSON] = {"template": p.template, "cases": p.cases}
            if p.unsaid:
                item["unsaid"] = list(p.unsaid)
            phrasings.append(item)
        data: dict[str, JSON] = {
            "format": FORMAT,
            "skill": self.skill_id,
            "learned_from": self.cases,
            "arguments": arguments,
            "phrasings": phrasings,
        }
        if self.more:
            data["more_phrasings"] = self.more
        return data


_FORMATTER = string.Formatter()


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _spans(text: str, value: JSON) -> list[tuple[int, int]]:
    """Where ``value`` stands in ``text`` as a whole token (case-insensitive for strings)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        forms = {repr(value) if isinstance(value, float) else str(value)}
        if isinstance(value, float) and value.is_integer():
            forms.add(str(int(value)))
        rx = rf"(?<![\w.-])(?:{'|'.join(map(re.escape, sorted(forms)))})(?![\w]|\.\d)"
        return [m.span() for m in re.finditer(rx, text)]
    if not isinstance(value, str) or not value.strip():
        return []
    rx = rf"(?<![\w@.-]){re.escape(value)}(?![\w@]|[.-]\w)"
    return [m.span() for m in re.finditer(rx, text, re.IGNORECASE)]


def _flows(name: str, cases: Sequence[Case]) -> tuple[str, ...]:
    """The ``tool.param`` pairs that received argument ``name``'s exact value in every case."""
    common: set[str] | None = None
    for case in cases:
        value = case.args.get(name)
        if kind_of(value) is None:
            return ()
        here = {
            f"{step.tool}.{param}"
            for step in case.calls
            for param, given in step.arguments.items()
            if given == value and type(given) is type(value)
        }
        common = here if common is None else common & here
    return tuple(sorted(common or ()))


def cases_digest(cases: Sequence[Case]) -> str:
    """A short hash of which cases (trajectory ids and hashes) patterns were learned from."""
    rows = sorted(f"{c.trajectory_id}\t{c.trajectory_sha256}\n" for c in cases)
    return "sha256:" + hashlib.sha256("".join(rows).encode("utf-8")).hexdigest()[:16]


def learn_patterns(
    skill_id: str,
    signature: Signature,
    cases: Sequence[Case],
    tool_specs: Mapping[str, ToolSpec] | None = None,
) -> TaskPatterns:
    """Learn how the skill's arguments appear in its cases' task texts (pure, deterministic).

    Args:
        skill_id: The skill.
        signature: Its signature (the arguments to look for).
        cases: Its recorded cases (order does not matter).
        tool_specs: Its tools' definitions; a flow is kept only to a tool defined here.

    Returns:
        The patterns; an argument whose values have no kind (a list, a bool) gets none, so a
        reflex never fills it from text.
    """
    ordered = sorted(cases, key=lambda c: (c.trajectory_id, c.trajectory_sha256))
    names = [p.name for p in signature.params]
    constants: dict[str, JSON] = {}
    kinds: dict[str, Kind] = {}
    for name in names:
        values = [c.args[name] for c in ordered if name in c.args]
        if len(ordered) >= 2 and len(values) == len(ordered):
            canon = {json.dumps(v, sort_keys=True) for v in values}
            if len(canon) == 1:
                constants[name] = values[0]
                continue
        if values and len(values) == len(ordered):
            kind = _common_kind(values)
            if kind is not None:
                kinds[name] = kind
    counted: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for case in ordered:
        phrasing = _phrasing(case, kinds)
        if phrasing is not None:
            counted[phrasing] += 1
    ranked = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
    phrasings = tuple(
        Phrasing(template, n, unsaid) for (template, unsaid), n in ranked[:MAX_PHRASINGS]
    )
    specs = tool_specs or {}
    flows = {}
    for name in kinds:
        kept = tuple(f for f in _flows(name, ordered) if f.partition(".")[0] in specs)
        if kept:
            flows[name] = kept
    return TaskPatterns(
        skill_id=skill_id,
        kinds=kinds,
        constants=constants,
        phrasings=phrasings,
        flows=flows,
        more=max(0, len(ranked) - MAX_PHRASINGS),
        cases=cases_digest(ordered),
    )


def _phrasing(case: Case, kinds: Mapping[str, Kind]) -> tuple[str, tuple[str, ...]] | None:
    """The case's task as a template, and the arguments it does not say; None when a value
    stands in the text more than once or two values overlap (no one template is right)."""
    text = " ".join(case.task.split())
    if not text:
        return None
    placed: list[tuple[int, int, str]] = []
    unsaid: list[str] = []
    for name in sorted(kinds):
        spans = _spans(text, case.args.get(name))
        if not spans:
            unsaid.append(name)
        elif len(spans) > 1:
            return None
        else:
            placed.append((spans[0][0], spans[0][1], name))
    placed.sort()
    for (_, end, _), (start, _, _) in zip(placed, placed[1:], strict=False):
        if start < end:
            return None
    out, last = [], 0
    for start, end, name in placed:
        out.append(_escape(text[last:start]) + "{" + name + "}")
        last = end
    out.append(_escape(text[last:]))
    return "".join(out), tuple(unsaid)


def render_patterns(patterns: TaskPatterns) -> str:
    """The text of ``patterns.json``: sorted keys, two-space indent, a trailing newline."""
    return json.dumps(patterns.to_json(), sort_keys=True, ensure_ascii=False, indent=2) + "\n"


def parse_patterns(text: str, skill_id: str) -> TaskPatterns | None:
    """Read ``patterns.json`` back; None when it is not this format or not this skill's
    (the reflex then learns the patterns from the cases again). Whether it is stale is the
    caller's to judge (`TaskPatterns.cases` against `cases_digest` of the skill's cases)."""
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT or data.get("skill") != skill_id:
            return None
        kinds: dict[str, Kind] = {}
        constants: dict[str, JSON] = {}
        flows: dict[str, tuple[str, ...]] = {}
        for name, entry in dict(data["arguments"]).items():
            if "constant" in entry:
                constants[str(name)] = entry["constant"]
                continue
            kind = entry["kind"]
            if kind not in KINDS:
                return None
            kinds[str(name)] = kind
            flows[str(name)] = tuple(str(f) for f in entry.get("flows_to", ()))
        phrasings = []
        for item in data["phrasings"]:
            phrasing = Phrasing(
                str(item["template"]),
                int(item["cases"]),
                tuple(str(u) for u in item.get("unsaid", ())),
            )
            slots = {p[0] for p in phrasing.parts() if isinstance(p, tuple)}
            if not slots <= set(kinds):
                return None
            phrasings.append(phrasing)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None
    return TaskPatterns(
        skill_id=skill_id,
        kinds=kinds,
        constants=constants,
        phrasings=tuple(phrasings),
        flows={k: v for k, v in flows.items() if v},
        more=int(data.get("more_phrasings", 0)) if isinstance(data, dict) else 0,
        cases=str(data.get("learned_from", "")),
    )
