"""The values a skill passes through on its way into the library.

``SkillDraft`` (compiled) → ``ValidatedSkill`` (policy passed, signature read from the syntax
tree) → ``TestedSkill`` (its recorded cases replay in the sandbox) → ``Skill`` (stored in
``skills/<id>/``). Each stage is a plain function from one type to the next, and
`skillbank.library.SkillLibrary.store` accepts a `TestedSkill`, or a `Skill` read back from the
library or its history (which was tested when first stored), so nothing untested is stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from skillbank.trajectory import Outcome, Step, ToolSpec, Trajectory

__all__ = [
    "STAGES",
    "Stage",
    "Case",
    "Param",
    "Signature",
    "SignatureSchema",
    "Skill",
    "SkillDraft",
    "TestedSkill",
    "ValidatedSkill",
    "Version",
    "content_hash",
    "docstring_args",
    "parse_version",
]

JSON = Any

#: A skill's maturity (Fitts & Posner): described to the model, called as a tool, trusted to
#: run on its own.
Stage = Literal["cognitive", "associative", "autonomous"]
#: Fitts & Posner's stages, in order of trust.
STAGES: tuple[Stage, ...] = ("cognitive", "associative", "autonomous")

_VERSION = re.compile(r"v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*))?")


class Version(NamedTuple):
    """A semantic version; ``str(v)`` is the canonical ``"1.2.0"`` form.

    It lives here, beside `Skill` whose version it is; `skillbank.versioning` decides which
    part a change bumps (and re-exports it, the name users know).
    """

    #: Bumped when the signature changes in a way that breaks callers.
    major: int
    #: Bumped when the code changes compatibly.
    minor: int
    #: Bumped when only the documentation changes.
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> Version:
    """Read ``"1.2.3"`` (or ``"v1.2.3"``), or a whole number ``"1"`` as ``1.0.0``.

    Raises:
        ValueError: anything else, with the accepted forms in the message.
    """
    match = _VERSION.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a skill version; write MAJOR.MINOR.PATCH like '1.2.0' "
            "(a whole number like '1' means 1.0.0)"
        )
    major, minor, patch = match.groups()
    return Version(int(major), int(minor or 0), int(patch or 0))


def content_hash(source: str) -> str:
    """The sha256 of a skill's source text, the identity of one exact version of its code."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


_ARGS_HEADER = re.compile(r"^(\s*)(?:Args|Arguments|Parameters):\s*$")
_ARG_ITEM = re.compile(r"^\*{0,2}([A-Za-z_]\w*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def docstring_args(docstring: str) -> dict[str, str]:
    """The Google-style ``Args:`` section of a docstring: name -> its text on one line.

    Used wherever a skill's arguments are described: ``SKILL.md``, tool definitions for
    models, and Agent Skills exports.
    """
    lines = docstring.splitlines()
    headers = [(i, m) for i, m in enumerate(map(_ARGS_HEADER.match, lines)) if m is not None]
    if not headers:
        return {}
    start, header = headers[0]
    base = len(header.group(1))
    found: dict[str, list[str]] = {}
    item_indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        text = line.strip()
        if not text:
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= base:
            break  # the next section
        item_indent = indent if item_indent is None else item_indent
        item = _ARG_ITEM.match(text) if indent == item_indent else None
        if item is not None:
            current = item.group(1)
            found[current] = [item.group(2)]
        elif current is not None and indent > item_indent:
            found[current].append(text)
        else:
            current = None
    return {name: " ".join(" ".join(parts).split()) for name, parts in found.items()}


@dataclass(frozen=True)
class Param:
    """One parameter of a skill's function, as read from its syntax tree."""

    #: The parameter name (also the argument name when the skill is called as a tool).
    name: str
    #: The annotation's source text, e.g. ``str`` or ``list[str]``.
    annotation: str
    #: True when the parameter has a default value.
    has_default: bool = False
    #: The default's source text, when there is one.
    default: str | None = None


@dataclass(frozen=True)
class SignatureSchema:
    """A signature as JSON Schema: what a caller may pass, and what comes back."""

    #: The public function's name.
    name: str
    #: The arguments: ``{"type": "object", "properties": ..., "required": [...],
    #: "additionalProperties": False}``; a parameter with a default has ``"default"`` in its
    #: property and is not required.
    parameters: dict[str, Any]
    #: The return annotation's schema.
    returns: dict[str, Any]
    #: The exception class names the docstring's Google-style ``Raises:`` section lists, sorted.
    raises: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Signature:
    """A skill's call signature, read once from its syntax tree (the code is never imported).

    It is one value with two views: the source text of each part, for people (`render`,
    diffs, ``SKILL.md``), and, in `schema`, the same signature as JSON Schema, for machines
    (tool definitions, argument checks, generated inputs). The text view is the outer one
    because every function has it, while the JSON Schema exists only when every annotation is
    in the type vocabulary (`skillbank.signature`): a draft being repaired, an old version
    from the history or a hand-edited file can still be shown and diffed. Keeping the two
    together means a skill is parsed once per version, when it is validated or loaded.
    """

    #: The function's name (equal to the skill id).
    name: str
    #: The parameters in order.
    params: tuple[Param, ...]
    #: The return annotation's source text (``""`` when absent).
    returns: str
    #: The function's docstring, dedented.
    docstring: str
    #: The signature as JSON Schema; None when it has none (an annotation outside the
    #: vocabulary, or missing): validation refuses such a skill (rules SB104-SB110).
    schema: SignatureSchema | None = field(default=None, hash=False)

    def render(self) -> str:
        """The signature as a reader would write it: ``name(a: str, b: int = 1) -> dict``."""
        parts = [
            f"{p.name}: {p.annotation}" + (f" = {p.default}" if p.has_default else "")
            for p in self.params
        ]
        arrow = f" -> {self.returns}" if self.returns else ""
        return f"{self.name}({', '.join(parts)}){arrow}"

    def to_json(self) -> dict[str, JSON]:
        """The signature as plain JSON data (`from_json` reads it back equal)."""
        schema = self.schema
        return {
            "name": self.name,
            "params": [[p.name, p.annotation, p.has_default, p.default] for p in self.params],
            "returns": self.returns,
            "docstring": self.docstring,
            "schema": None
            if schema is None
            else {
                "name": schema.name,
                "parameters": schema.parameters,
                "returns": schema.returns,
                "raises": list(schema.raises),
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> Signature:
        """Rebuild a signature from `to_json` output (raises KeyError/TypeError/ValueError on
        bad data)."""
        raw = data["schema"]
        schema = None
        if raw is not None:
            schema = SignatureSchema(
                name=str(raw["name"]),
                parameters=dict(raw["parameters"]),
                returns=dict(raw["returns"]),
                raises=tuple(str(r) for r in raw["raises"]),
            )
        params = tuple(
            Param(str(name), str(annotation), bool(has_default),
                  None if default is None else str(default))
            for name, annotation, has_default, default in data["params"]
        )  # fmt: skip
        return cls(
            name=str(data["name"]),
            params=params,
            returns=str(data["returns"]),
            docstring=str(data["docstring"]),
            schema=schema,
        )


@dataclass(frozen=True)
class Case:
    """A recorded example of a skill: arguments in, tool calls made, result out.

    Replay tests run the skill on ``args`` with tool doubles that answer ``calls`` in order and
    check the skill asks exactly those calls and returns ``result``.
    """

    #: The trajectory this case was learned from.
    trajectory_id: str
    #: That trajectory's content hash (`skillbank.trajectory.Trajectory.sha256`).
    trajectory_sha256: str
    #: The task text of that trajectory.
    task: str
    #: The skill's arguments.
    args: Mapping[str, JSON]
    #: The tool calls the skill must make, in order, each with the result to answer it (see
    #: `skillbank.trajectory.Step.as_case_call`: a case keeps tool, arguments and result).
    calls: tuple[Step, ...]
    #: The value the skill must return.
    result: JSON = None

    def to_json(self) -> dict[str, JSON]:
        """The case as plain JSON data, as stored in ``cases.jsonl``."""
        return {
            "trajectory_id": self.trajectory_id,
            "trajectory_sha256": self.trajectory_sha256,
            "task": self.task,
            "args": dict(self.args),
            "calls": [c.to_case_json() for c in self.calls],
            "result": self.result,
        }

    def to_trajectory(self, tool_specs: Mapping[str, ToolSpec]) -> Trajectory:
        """The trajectory this case was learned from (its hash is kept as recorded).

        ``tool_specs`` are the skill's tool definitions, so the rebuilt trajectory offers the
        same tools the original did.
        """
        return Trajectory(
            id=self.trajectory_id,
            task=self.task,
            tools=tuple(spec for _, spec in sorted(tool_specs.items())),
            steps=self.calls,
            outcome=Outcome(True),
            recorded_sha256=self.trajectory_sha256,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> Case:
        """Rebuild a case from `to_json` output (raises KeyError/TypeError on bad data)."""
        return cls(
            trajectory_id=str(data["trajectory_id"]),
            trajectory_sha256=str(data["trajectory_sha256"]),
            task=str(data["task"]),
            args=dict(data["args"]),
            calls=tuple(Step.from_case_json(c) for c in data["calls"]),
            result=data.get("result"),
        )


@dataclass(frozen=True)
class SkillDraft:
    """A compiled but unchecked skill: source text plus what it was compiled from."""

    #: The skill id and function name (``[a-z][a-z0-9_]{0,63}``).
    id: str
    #: The Python source of the skill's module.
    source: str
    #: One line: what the skill does.
    description: str
    #: The tools the skill declares (and may call), sorted.
    tools: tuple[str, ...]
    #: The recorded cases, one per trajectory it was learned from.
    cases: tuple[Case, ...]
    #: Definitions of the declared tools, by name (``tools.json`` holds them in the Chat
    #: Completions shape, see `skillbank.trajectory.ToolSpec.to_openai`).
    tool_specs: Mapping[str, ToolSpec] = field(default_factory=dict)
    #: Other skills this one calls (empty until the compiler composes skills).
    requires: tuple[str, ...] = ()
    #: Notes for reviewers: where each data-flow argument came from, what was ambiguous.
    notes: tuple[str, ...] = ()

    @property
    def content_hash(self) -> str:
        """The sha256 of `source`."""
        return content_hash(self.source)


@dataclass(frozen=True)
class ValidatedSkill:
    """A draft whose source passed the libcst policy, with its signature read from the tree."""

    #: The draft that passed.
    draft: SkillDraft
    #: The signature, read from the syntax tree.
    signature: Signature


@dataclass(frozen=True)
class TestedSkill:
    """A validated skill whose recorded cases all replay in the sandbox."""

    __test__ = False  # not a pytest test class, despite the name

    #: The validated skill.
    validated: ValidatedSkill
    #: How many cases replayed.
    cases_passed: int

    @property
    def draft(self) -> SkillDraft:
        """The underlying draft."""
        return self.validated.draft


@dataclass(frozen=True)
class Skill:
    """A skill as stored in the library (``skills/<id>/``)."""

    #: The id: folder name and function name.
    id: str
    #: One line: what it does (SKILL.md ``description``).
    description: str
    #: The semantic version (``str()`` gives the canonical ``"1.2.0"`` written in ``SKILL.md``;
    #: see `skillbank.versioning`): major for a breaking signature change, minor for other code
    #: changes, patch for documentation.
    version: Version
    #: Maturity stage, one of `STAGES`.
    stage: Stage
    #: The module source (``skill.py``).
    source: str
    #: The signature read from the source.
    signature: Signature
    #: Tools the skill declares.
    tools: tuple[str, ...]
    #: Skills it calls.
    requires: tuple[str, ...]
    #: Recorded cases (``cases.jsonl``).
    cases: tuple[Case, ...]
    #: Definitions of the declared tools, by name (``tools.json``).
    tool_specs: Mapping[str, ToolSpec] = field(default_factory=dict)
    #: Reviewer notes from the compiler.
    notes: tuple[str, ...] = ()
    #: The skill replacing this one, when it is deprecated (it keeps running until removed).
    deprecated_by: str | None = None
    #: Why a reviewer set the stage (``skillbank promote``), when one did: automatic stage
    #: changes leave a pinned stage alone, except that failures still demote an autonomous
    #: skill (which lifts the pin). None: the ledger decides the stage.
    pinned: str | None = None

    def as_draft(self, **changes: Any) -> SkillDraft:
        """This skill as a draft to check again, with ``changes`` to its draft fields
        (``source``, ``cases``, ``id``, ...): rollback, refinement and merges start here."""
        return replace(
            SkillDraft(
                self.id,
                self.source,
                self.description,
                self.tools,
                self.cases,
                self.tool_specs,
                self.requires,
                self.notes,
            ),  # fmt: skip
            **changes,
        )

    @property
    def content_hash(self) -> str:
        """The sha256 of `source`."""
        return content_hash(self.source)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task texts of the trajectories it was learned from."""
        return tuple(c.task for c in self.cases)
