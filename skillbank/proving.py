"""Proving: a skill must reproduce its recorded cases and keep its contract on new data.

Every check runs the skill in the sandbox against tool doubles, never against real tools:

- **Replay** (`replay_case`, `prove`): the skill runs on a case's arguments against doubles
  that answer with the recorded responses. It must make exactly the recorded calls (same tools,
  same arguments, same order) and return the recorded result. A mismatch is reported with the
  call number and both sides, so a reviewer sees what diverged.
- **Properties** (`check_properties`): hypothesis draws arguments from the skill's signature
  as JSON Schema (``signature.schema``, read when the skill was validated or loaded) and
  answers each tool call with a value drawn from `infer_schema` of that tool's recorded
  results. Every call's arguments must match the tool's parameter schema; the skill must
  return a value of its declared type or raise an error its docstring declares under
  ``Raises:``. A policy violation, an exceeded limit, a
  timeout or a crashed worker always fails.
- **Determinism** (`check_determinism`): the same drawn example, run twice with the doubles
  giving the second run the first run's answers, must make the same calls and end the same way.

A failed property reports the example hypothesis shrank to: the arguments and every call
with the double's answer, as JSON. `prove_skill` runs all three; the gate and the pytest
plugin (`skillbank.testing`) share it.

**One check path.** `check` (validate, then replay) is how every part of skillbank decides
whether a draft may be stored: learning, rollback, refine, dedup, the LLM's repair loop.
Its outcome is a value (`TestedSkill`, `Failed` or `Rejected`); `explain` turns the two
failures into the one text that reports, commit messages and repair prompts show.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from sandbox import Limits, Result, Sandbox, SandboxError, SkillError, ToolError
from skillbank.compiler.effects import classify_tools
from skillbank.compose import closure, grant, tools_needed
from skillbank.errors import SkillArgumentError, SkillRejected, SkillTestFailed
from skillbank.json_types import JSON_TYPES, json_type
from skillbank.signature import schema_of
from skillbank.skill import (
    Case,
    SignatureSchema,
    Skill,
    SkillDraft,
    TestedSkill,
    ValidatedSkill,
)
from skillbank.trajectory import Step, ToolSpec, canonical_json
from skillbank.validate import Rejected, validate

if TYPE_CHECKING:
    from hypothesis import strategies as st


# hypothesis, hypothesis_jsonschema and jsonschema are imported where they are used: they
# take a quarter of a second to import, which every ``skillbank`` command would otherwise pay,
# and hypothesis warns when its data tables are read while pytest loads plugins.

__all__ = [
    "FAILURES_SHOWN",
    "CaseResult",
    "Check",
    "Failed",
    "ProofReport",
    "PropertyResult",
    "ToolDoubles",
    "check",
    "check_determinism",
    "check_properties",
    "explain",
    "infer_schema",
    "prove",
    "prove_skill",
    "replay_case",
    "strategy_for",
]

JSON = Any


@dataclass(frozen=True)
class CaseResult:
    """How one recorded case replayed."""

    #: The trajectory the case came from.
    trajectory_id: str
    #: True when calls and result matched.
    ok: bool
    #: What went wrong, for a reader (None when ok).
    failure: str | None = None


@dataclass(frozen=True)
class Failed:
    """A validated skill that did not reproduce its cases."""

    #: The skill that failed.
    validated: ValidatedSkill
    #: Every case's result (failing ones carry the reason).
    cases: tuple[CaseResult, ...]

    @property
    def failure(self) -> str:
        """The first failure, as text."""
        bad = next(c for c in self.cases if not c.ok)
        return f"case {bad.trajectory_id!r}: {bad.failure}"

    def error(self) -> SkillTestFailed:
        """The exception to raise when the caller needed the skill to pass."""
        return SkillTestFailed(self.validated.draft.id, self.failure)


def _short(value: JSON, limit: int = 200) -> str:
    text = canonical_json(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Replay:
    """Tool doubles answering a case's recorded calls in order, noting the first divergence.

    A recorded query the skill does not make is skipped: the run read it, but nothing the
    procedure does depends on it (`skillbank.compiler.generalize` drops such reads). A query
    is a call to a tool the skill cannot call at all, or to one of ``queries``. Commands are
    never skipped: the skill must make every recorded command, in order.
    """

    def __init__(self, case: Case, declared: Sequence[str], queries: Collection[str]) -> None:
        self.expected = list(case.calls)
        self.position = 0
        self.mismatch: str | None = None
        self.skippable = {c.tool for c in case.calls if c.tool not in declared} | set(queries)
        self.tools: dict[str, Callable[..., JSON]] = {name: self._double(name) for name in declared}

    def _matches(self, n: int, name: str, arguments: Mapping[str, JSON]) -> bool:
        want = self.expected[n]
        return want.tool == name and canonical_json(want.arguments) == canonical_json(arguments)

    def skip_reads(
        self, name: str | None = None, arguments: Mapping[str, JSON] | None = None
    ) -> None:
        """Move past recorded queries up to the one matching this call (or to the end)."""
        given = arguments or {}
        n = self.position
        while n < len(self.expected) and self.expected[n].tool in self.skippable:
            if name is not None and self._matches(n, name, given):
                break
            n += 1
        if name is None or (n < len(self.expected) and self._matches(n, name, given)):
            self.position = n

    def unmade(self) -> int:
        """Recorded calls left that the skill should have made (skippable reads excluded)."""
        self.skip_reads()
        return len(self.expected) - self.position

    def _double(self, name: str) -> Callable[..., JSON]:
        def call(**arguments: JSON) -> JSON:
            self.skip_reads(name, arguments)
            n = self.position
            self.position += 1
            if n >= len(self.expected):
                self.mismatch = self.mismatch or (
                    f"call {n + 1}: unexpected extra call {name}({_short(arguments)}); "
                    f"the case recorded only {len(self.expected)} call(s)"
                )
                raise RuntimeError("replay: unexpected call")
            want = self.expected[n]
            if want.tool != name or canonical_json(want.arguments) != canonical_json(arguments):
                self.mismatch = self.mismatch or (
                    f"call {n + 1}: expected {want.tool}({_short(want.arguments)}), "
                    f"got {name}({_short(arguments)})"
                )
                raise RuntimeError("replay: call differs from the recorded one")
            return want.result

        return call


def replay_case(
    sandbox: Sandbox,
    validated: ValidatedSkill | TestedSkill | Skill,
    case: Case,
    limits: Limits | None = None,
    library: Mapping[str, Skill] | None = None,
    queries: Collection[str] | None = None,
) -> CaseResult:
    """Run the skill on one case against its recorded tool responses and compare.

    ``queries`` are the tools whose recorded calls the skill may leave out (default: those
    `skillbank.compiler.effects` classifies as queries from the skill's tool definitions).

    Skills it requires run nested (from ``library``) against the same recorded responses,
    so the case's raw calls are what the whole composition must make. A stored `Skill` is
    accepted too (the pytest plugin replays stored skills).
    """
    draft = _subject(validated).validated.draft
    tid = case.trajectory_id
    needed = {
        t
        for sid in draft.requires
        if library and sid in library
        for t in tools_needed(sid, library)
    }
    declared = sorted(set(draft.tools) | needed)
    if queries is None:
        specs = dict(draft.tool_specs)
        queries = {e.tool for e in classify_tools(declared, specs).values() if e.effect == "query"}
    replay = _Replay(case, declared, queries)
    try:
        granted = grant(draft.tools, draft.requires, replay.tools, library or {}, sandbox, limits)
    except SkillArgumentError as exc:
        return CaseResult(tid, False, str(exc))
    result = sandbox.run(draft.source, draft.id, dict(case.args), granted, limits)
    if replay.mismatch:
        return CaseResult(tid, False, replay.mismatch)
    if not result.ok:
        return CaseResult(tid, False, f"the skill failed: {result.error}")
    if replay.unmade():
        return CaseResult(
            tid,
            False,
            f"made {replay.position} call(s) but the case recorded {len(replay.expected)}",
        )
    if canonical_json(result.value) != canonical_json(case.result):
        return CaseResult(
            tid,
            False,
            f"returned {_short(result.value)}, expected {_short(case.result)}",
        )
    return CaseResult(tid, True)


def prove(
    validated: ValidatedSkill,
    sandbox: Sandbox,
    limits: Limits | None = None,
    library: Mapping[str, Skill] | None = None,
) -> TestedSkill | Failed:
    """Replay every recorded case of a validated skill; all must pass.

    ``library`` supplies the skills it requires (they run nested during the replay).
    """
    results = tuple(
        replay_case(sandbox, validated, c, limits, library) for c in validated.draft.cases
    )
    if all(r.ok for r in results):
        return TestedSkill(validated, len(results))
    return Failed(validated, results)


#: Failing runs `explain` lists one by one (the rest are counted).
FAILURES_SHOWN = 3

#: `check` bound to a sandbox and limits: a draft and the library it may require, in; the
#: outcome, out. What the parts of a bank take, so they all check the one way.
Check = Callable[[SkillDraft, Mapping[str, Skill] | None], TestedSkill | Failed | Rejected]


def check(
    draft: SkillDraft,
    sandbox: Sandbox,
    limits: Limits | None = None,
    library: Mapping[str, Skill] | None = None,
) -> TestedSkill | Failed | Rejected:
    """Validate a draft with the libcst policy, then replay every recorded case.

    The one path by which a draft becomes a `TestedSkill`, the only value the library
    stores. ``library`` supplies the skills the draft requires. Never raises for a bad draft:
    a policy finding is a `Rejected`, a case that does not replay is a `Failed`.
    """
    validated = validate(draft)
    if isinstance(validated, Rejected):
        return validated
    return prove(validated, sandbox, limits, library)


def explain(outcome: TestedSkill | Failed | Rejected) -> str | None:
    """What `check` found, as text for a reader or a repair prompt (None when it passed).

    Findings read ``<skill>:line:col: RULE message`` with the line and a caret; a failed
    replay names each falsifying run (up to `FAILURES_SHOWN`), its arguments and the first
    diverging call.
    """
    if isinstance(outcome, TestedSkill):
        return None
    if isinstance(outcome, Rejected):
        lines = [f"validation failed with {len(outcome.findings)} finding(s):"]
        lines += [f.render(outcome.draft.source) for f in outcome.findings]
        return "\n".join(lines)
    draft = outcome.validated.draft
    args = {c.trajectory_id: c.args for c in draft.cases}
    bad = [c for c in outcome.cases if not c.ok]
    lines = [f"replay failed for {len(bad)} of {len(outcome.cases)} recorded run(s):"]
    for c in bad[:FAILURES_SHOWN]:
        shown = _short(dict(args.get(c.trajectory_id, {})), 300)
        lines.append(f"- run {json.dumps(c.trajectory_id)} with arguments {shown}: {c.failure}")
    if len(bad) > FAILURES_SHOWN:
        lines.append(f"- and {len(bad) - FAILURES_SHOWN} more run(s)")
    return "\n".join(lines)


# --- tool doubles from recorded results ----------------------------------------------------

#: Fewest observations of a string field before its values may be read as a closed set.
ENUM_MIN_OBSERVED = 4
#: Most distinct values such a closed set may have.
ENUM_MAX_VALUES = 8


def _kind(value: JSON) -> str:
    kind = json_type(value)
    if kind is None:
        raise TypeError(f"infer_schema takes JSON values only, got {value!r:.80}")
    return kind


def infer_schema(values: Sequence[JSON]) -> dict[str, JSON]:
    """A JSON Schema describing every value in ``values`` (the recorded results of one tool).

    Deterministic: the same values, in any order, give the same schema. The rules:

    - an object lists every key seen; keys present in every observation are ``required``;
      other keys are refused (``additionalProperties: false``), so doubles stay small;
    - an array gets ``minItems``, the shortest length observed, so code that read ``x[0]``
      on every recorded run may still do so; its ``items`` schema comes from all elements of
      all observations (an array never seen non-empty gets ``maxItems: 0``);
    - integers stay ``integer`` and other numbers ``number``, both keeping the sign seen:
      all positive gives ``minimum: 1`` (``exclusiveMinimum: 0`` for numbers), all
      non-negative ``minimum: 0``; counts and prices stay valid tool arguments;
    - a string is any string, unless the field looks like a closed set (a status, a tier):
      seen at least `ENUM_MIN_OBSERVED` times, with at most `ENUM_MAX_VALUES` distinct values
      and each value seen at least twice. It is then an ``enum`` of those values, so a skill
      that selects on the field can meet a value it selects;
    - several JSON types give ``anyOf`` (integers and numbers together give ``number``);
    - no values at all give ``{}``, which any JSON value matches.
    """
    by_kind: dict[str, list[JSON]] = {}
    for value in values:
        by_kind.setdefault(_kind(value), []).append(value)
    if "integer" in by_kind and "number" in by_kind:
        by_kind["number"] += by_kind.pop("integer")
    schemas = [_schema_of(kind, by_kind[kind]) for kind in JSON_TYPES if kind in by_kind]
    if not schemas:
        return {}
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def _schema_of(kind: str, values: list[JSON]) -> dict[str, JSON]:
    if kind in ("integer", "number"):
        schema: dict[str, JSON] = {"type": kind}
        low = min(values)
        if low > 0:
            schema.update({"minimum": 1} if kind == "integer" else {"exclusiveMinimum": 0})
        elif low >= 0:
            schema["minimum"] = 0
        return schema
    if kind == "string":
        counts: dict[str, int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        closed = (
            len(values) >= ENUM_MIN_OBSERVED
            and len(counts) <= ENUM_MAX_VALUES
            and min(counts.values()) >= 2
        )
        return {"type": "string", "enum": sorted(counts)} if closed else {"type": "string"}
    if kind == "array":
        elements = [e for v in values for e in v]
        schema = {"type": "array", "minItems": min(len(v) for v in values)}
        if elements:
            schema["items"] = infer_schema(elements)
        else:
            schema["maxItems"] = 0
        return schema
    if kind == "object":
        keys = sorted({k for v in values for k in v})
        return {
            "type": "object",
            "properties": {k: infer_schema([v[k] for v in values if k in v]) for k in keys},
            "required": [k for k in keys if all(k in v for v in values)],
            "additionalProperties": False,
        }
    return {"type": kind}


#: Keywords `strategy_for` builds objects and arrays from itself; others are checked by filter.
_DESCRIPTIVE = frozenset({"description", "title", "default", "examples", "$comment"})
_OBJECT_KEYS = frozenset({"type", "properties", "required", "additionalProperties"})
_ARRAY_KEYS = frozenset({"type", "items", "minItems", "maxItems"})


def _any_json() -> st.SearchStrategy[JSON]:
    from hypothesis import strategies as st

    # Built on use: a strategy made at import time would read hypothesis's unicode tables
    # while pytest starts, which hypothesis warns about.
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    )


def strategy_for(schema: Mapping[str, JSON]) -> st.SearchStrategy[JSON]:
    """Values valid against ``schema``.

    Objects and arrays are built here, recursively, and everything else is handed to
    ``hypothesis_jsonschema.from_schema``, whose own object generation relies on a private
    hypothesis helper that current hypothesis releases changed (it fails with
    ``'many' object has no attribute 'more'``). Keywords not built here are enforced by
    filtering with a validator.
    """
    from hypothesis import strategies as st
    from hypothesis_jsonschema import from_schema
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

    keys = set(schema) - _DESCRIPTIVE
    if not keys:
        return _any_json()
    if keys == {"anyOf"}:
        return st.one_of([strategy_for(branch) for branch in schema["anyOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        rest = {k: v for k, v in schema.items() if k != "type"}
        return st.one_of([strategy_for({**rest, "type": t}) for t in kind])
    if "allOf" in keys and any(
        isinstance(part, Mapping) and part.get("type") in ("object", "array")
        for part in schema["allOf"]
    ):
        validator = Draft202012Validator(dict(schema))
        return strategy_for(schema["allOf"][0]).filter(validator.is_valid)
    if kind == "object" and "enum" not in keys and "const" not in keys:
        props: Mapping[str, JSON] = schema.get("properties", {})
        required = [k for k in schema.get("required", []) if isinstance(k, str)]
        extra = schema.get("additionalProperties", {})
        fixed = {k: strategy_for(props.get(k, {})) for k in required}
        optional = {k: strategy_for(v) for k, v in props.items() if k not in fixed}
        built: st.SearchStrategy[JSON] = st.fixed_dictionaries(fixed, optional=optional)
        if extra is not False:
            more = st.dictionaries(
                st.text(max_size=10).filter(lambda k: k not in props),
                strategy_for(extra if isinstance(extra, Mapping) else {}),
                max_size=3,
            )
            built = st.tuples(built, more).map(lambda pair: {**pair[1], **pair[0]})
        return _checked(built, schema, keys - _OBJECT_KEYS)
    if kind == "array" and "enum" not in keys and "const" not in keys:
        items = schema.get("items", {})
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        built = st.lists(
            strategy_for(items if isinstance(items, Mapping) else {}),
            min_size=low,
            max_size=int(high) if high is not None else low + 4,
        )
        return _checked(built, schema, keys - _ARRAY_KEYS)
    return from_schema(dict(schema))


def _checked(
    built: st.SearchStrategy[JSON], schema: Mapping[str, JSON], unhandled: set[str]
) -> st.SearchStrategy[JSON]:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

    if not unhandled:
        return built
    return built.filter(Draft202012Validator(dict(schema)).is_valid)


class ToolDoubles:
    """The tools of one run: each call is checked against the tool's schema, answered, noted.

    ``answer(tool, n)`` gives the value for the n-th call (0-based) of the run.
    """

    def __init__(
        self,
        names: Iterable[str],
        answer: Callable[[str, int], JSON],
        validators: Mapping[str, Any] | None = None,
    ) -> None:
        self.answer = answer
        self.validators = validators or {}
        #: Every call, in order, with the double's answer; a call refused for its arguments
        #: has the refusal as its error.
        self.calls: list[Step] = []
        #: The first call whose arguments broke the tool's schema, as text.
        self.problem: str | None = None
        self.tools: dict[str, Callable[..., JSON]] = {name: self._double(name) for name in names}

    def _double(self, name: str) -> Callable[..., JSON]:
        def call(**arguments: JSON) -> JSON:
            n = len(self.calls)
            bad = self._check(name, arguments)
            if bad is not None:
                self.calls.append(Step(name, arguments, error=bad))
                self.problem = self.problem or f"call {n + 1}: {name}({_short(arguments)}): {bad}"
                raise ValueError(f"the arguments do not match the schema of {name!r}: {bad}")
            value = self.answer(name, n)
            self.calls.append(Step(name, arguments, value))
            return value

        return call

    def _check(self, name: str, arguments: Mapping[str, JSON]) -> str | None:
        from jsonschema.exceptions import best_match  # type: ignore[import-untyped, unused-ignore]

        validator = self.validators.get(name)
        if validator is None:
            return None
        error = best_match(validator.iter_errors(dict(arguments)))
        if error is None:
            return None
        if error.path:
            return f"argument {error.path[0]!r}: {error.message}"
        if error.validator == "required":
            missing = [k for k in error.validator_value if k not in arguments]
            return f"argument {missing[0]!r} is required but was not passed"
        if error.validator == "additionalProperties":
            known = validator.schema.get("properties", {})
            extra = [k for k in arguments if k not in known]
            return f"argument {extra[0]!r} is not a parameter of the tool"
        return str(error.message)

    def transcript(self, args: Mapping[str, JSON]) -> str:
        """The example as JSON: the skill's arguments, then each call and the double's answer."""
        lines = [f"  arguments: {canonical_json(dict(args))}"]
        for n, call in enumerate(self.calls, start=1):
            shown = "(refused)" if call.error is not None else canonical_json(call.result)
            lines.append(f"  call {n}: {call.tool} {canonical_json(call.arguments)} -> {shown}")
        return "\n".join(lines)


class _Draws:
    """Tool answers drawn with hypothesis while the skill runs.

    Hypothesis ends an example it no longer wants (while shrinking, say) by raising a
    BaseException out of a draw. Out of a host tool, that would make the sandbox kill and
    replace its worker, which costs far more than the run, so the double ends the skill with
    an ordinary error instead and `resume` raises the stop once the run is over.
    """

    def __init__(self, data: st.DataObject, answers: Mapping[str, st.SearchStrategy[JSON]]):
        self.data = data
        self.answers = answers
        self.stopped: BaseException | None = None

    def __call__(self, tool: str, n: int) -> JSON:
        if self.stopped is not None:
            raise RuntimeError("hypothesis ended this example")
        try:
            return self.data.draw(self.answers[tool], label=f"call {n + 1}: {tool}")
        except Exception:
            raise
        except BaseException as exc:
            self.stopped = exc
            raise RuntimeError("hypothesis ended this example") from None

    def resume(self) -> None:
        """Raise hypothesis's stop, if it stopped the example during the run."""
        if self.stopped is not None:
            raise self.stopped


# --- the skill under proof ----------------------------------------------------------------


@dataclass(frozen=True)
class _Subject:
    """What proving needs of a skill, whichever stage it is at."""

    id: str
    source: str
    tools: tuple[str, ...]
    requires: tuple[str, ...]
    cases: tuple[Case, ...]
    tool_specs: Mapping[str, ToolSpec]
    validated: ValidatedSkill


def _subject(skill: Skill | ValidatedSkill | TestedSkill) -> _Subject:
    if isinstance(skill, Skill):
        validated = ValidatedSkill(skill.as_draft(), skill.signature)
    else:
        validated = skill.validated if isinstance(skill, TestedSkill) else skill
    draft = validated.draft
    return _Subject(
        draft.id, draft.source, draft.tools, draft.requires, draft.cases, draft.tool_specs,
        validated,
    )  # fmt: skip


class _RecordingSandbox:
    """Passes runs on to the sandbox and keeps the last failure of each nested skill.

    `skillbank.compose.grant` runs required skills through it, so when a required skill
    fails the property check can tell whether that skill declares the error it raised.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.failed: dict[str, SandboxError] = {}

    def run(
        self,
        source: str,
        entry: str,
        args: Mapping[str, JSON],
        tools: Mapping[str, Callable[..., JSON]],
        limits: Limits | None = None,
        *,
        skill_id: str | None = None,
        inline_tools: bool = True,
    ) -> Result:
        # Inline whatever the caller asks: the doubles draw from hypothesis, whose data lives
        # on this thread.
        result = self.sandbox.run(
            source, entry, args, tools, limits, skill_id=skill_id, inline_tools=True
        )
        if result.error is not None and skill_id is not None:
            self.failed[skill_id] = result.error
        return result


@dataclass
class _Setup:
    """Everything the checks of one skill share: schemas, strategies, validators."""

    subject: _Subject
    sandbox: Sandbox
    limits: Limits | None
    library: Mapping[str, Skill]
    #: Every host tool the run needs (its own and those of the skills it requires).
    tools: tuple[str, ...]
    #: The declared exceptions of the skill and of each skill it requires, by id.
    raises: dict[str, tuple[str, ...]]
    #: The return value's schema.
    returns: Mapping[str, JSON]
    #: Arguments for the skill.
    inputs: st.SearchStrategy[dict[str, JSON]]
    #: Answers for each tool.
    answers: dict[str, st.SearchStrategy[JSON]]
    #: Argument validators for each tool that has a parameters schema.
    validators: dict[str, Any] = field(default_factory=dict)

    def run(
        self, args: Mapping[str, JSON], doubles: ToolDoubles
    ) -> tuple[Result, dict[str, SandboxError]]:
        """One run of the skill; also the failures of the skills it required, by id."""
        recorder = _RecordingSandbox(self.sandbox)
        try:
            granted = grant(
                self.subject.tools,
                self.subject.requires,
                doubles.tools,
                self.library,
                cast("Sandbox", recorder),
                self.limits,
            )
        except SkillArgumentError as exc:  # e.g. skills requiring each other too deep
            raise _Falsified(f"property 'runs cleanly' failed: {exc}") from None
        result = self.sandbox.run(
            self.subject.source, self.subject.id, dict(args), granted, self.limits,
            skill_id=self.subject.id, inline_tools=True,  # hypothesis draws on this thread
        )  # fmt: skip
        return result, recorder.failed


def _setup(
    skill: Skill | ValidatedSkill | TestedSkill,
    sandbox: Sandbox,
    limits: Limits | None,
    library: Mapping[str, Skill] | None,
) -> _Setup | str:
    """The shared setup, or why the skill cannot be property-tested (as text)."""
    from jsonschema import Draft202012Validator, SchemaError  # type: ignore[import-untyped, unused-ignore]

    subject = _subject(skill)
    library = library or {}
    graph = {sid: s.requires for sid, s in library.items()}
    graph[subject.id] = subject.requires
    needed = closure(subject.id, graph)
    missing = sorted(sid for sid in needed if sid not in library)
    if missing:
        return f"it requires {', '.join(map(repr, missing))}, which the library does not hold"
    tools = set(subject.tools)
    for sid in subject.requires:
        tools |= tools_needed(sid, library)
    specs: dict[str, ToolSpec] = {}
    observed: dict[str, list[JSON]] = {}
    for other in [library[sid] for sid in sorted(needed)]:
        specs.update(other.tool_specs)
        for case in other.cases:
            for call in case.calls:
                observed.setdefault(call.tool, []).append(call.result)
    specs.update(subject.tool_specs)
    own: dict[str, list[JSON]] = {}
    for case in subject.cases:
        for call in case.calls:
            own.setdefault(call.tool, []).append(call.result)
    observed.update(own)  # the skill's own recordings describe its tools best
    try:
        schema = schema_of(subject.validated)
        raises = {subject.id: tuple(schema.raises)}
        for sid in needed:
            raises[sid] = tuple(schema_of(library[sid]).raises)
    except SkillRejected as exc:
        return f"its signature cannot be read as JSON Schema: {exc}"
    validators: dict[str, Any] = {}
    for tool in sorted(tools):
        spec = specs.get(tool)
        if spec is None or not spec.parameters:
            continue
        params = spec.parameters
        try:
            Draft202012Validator.check_schema(params)
        except SchemaError as exc:
            return (
                f"the parameters schema of tool {tool!r} is not a valid JSON Schema: {exc.message}"
            )
        validators[tool] = Draft202012Validator(params)
    cache: dict[str, st.SearchStrategy[JSON]] = {}

    def strategy(s: Mapping[str, JSON]) -> st.SearchStrategy[JSON]:
        key = canonical_json(s)
        if key not in cache:
            cache[key] = strategy_for(s)
        return cache[key]

    answers = {t: strategy(infer_schema(observed.get(t, []))) for t in sorted(tools)}
    inputs = _inputs(schema, subject, specs, strategy)
    return _Setup(
        subject, sandbox, limits, library, tuple(sorted(tools)), raises, schema.returns,
        inputs, answers, validators,
    )  # fmt: skip


def _inputs(
    schema: SignatureSchema,
    subject: _Subject,
    specs: Mapping[str, ToolSpec],
    strategy: Callable[[Mapping[str, JSON]], st.SearchStrategy[JSON]],
) -> st.SearchStrategy[dict[str, JSON]]:
    """Arguments: required parameters drawn from their schema, defaulted ones from the cases.

    A required parameter that every recorded case passed straight to a tool argument is
    drawn from both schemas (``allOf``): a caller must give a value that tool accepts, so
    ``quantity: int`` feeding a tool's ``{"type": "integer", "minimum": 1}`` is drawn >= 1.
    A ``dict`` or ``list`` parameter is also drawn in the shape of the recorded values
    (`infer_schema`), as a bare ``list[dict]`` says nothing of the keys each entry needs.
    A defaulted parameter is either left out or given one of the values the cases used.
    """
    from hypothesis import strategies as st

    props: Mapping[str, JSON] = schema.parameters.get("properties", {})
    required = list(schema.parameters.get("required", []))
    fixed: dict[str, st.SearchStrategy[JSON]] = {}
    for name in required:
        own = props.get(name, {})
        parts = [own, *_fed(name, subject.cases, specs)]
        seen = [case.args[name] for case in subject.cases if name in case.args]
        if own.get("type") in ("object", "array") and seen:
            parts.insert(0, infer_schema(seen))  # first: objects are drawn from it, then checked
        fixed[name] = strategy(parts[0] if len(parts) == 1 else {"allOf": parts})
    optional: dict[str, st.SearchStrategy[JSON]] = {}
    for name in props:
        if name in required:
            continue
        seen = sorted({canonical_json(c.args[name]) for c in subject.cases if name in c.args})
        if seen:
            optional[name] = st.sampled_from([json.loads(v) for v in seen])
    return st.fixed_dictionaries(fixed, optional=optional)


def _fed(
    param: str, cases: Sequence[Case], specs: Mapping[str, ToolSpec]
) -> list[Mapping[str, JSON]]:
    """The schemas of the tool arguments that received ``param`` unchanged in every case."""
    out: list[Mapping[str, JSON]] = []
    for tool in sorted(specs):
        for key, arg_schema in sorted(specs[tool].parameters.get("properties", {}).items()):
            passed = [
                (case, call.arguments[key])
                for case in cases
                for call in case.calls
                if call.tool == tool and key in call.arguments
            ]
            if passed and all(
                param in case.args and canonical_json(case.args[param]) == canonical_json(value)
                for case, value in passed
            ):
                out.append(arg_schema)
    return out


# --- properties ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PropertyResult:
    """How a skill fared on generated examples (`check_properties`, `check_determinism`)."""

    #: The check: ``"properties"`` or ``"determinism"``.
    check: str
    #: True when every example held.
    ok: bool
    #: How many examples held (plus the falsifying one, on failure).
    examples: int
    #: Why it failed: the property, then the shrunk falsifying example as JSON ("" when ok).
    message: str = ""
    #: The line of ``skill.py`` the failure points at, when the sandbox knows it.
    line: int | None = None


class _Falsified(Exception):
    """One example broke a property (the message says which, and shows the example)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _declares(raised: str, declared: Sequence[str]) -> bool:
    """Whether a docstring declaring ``declared`` covers ``raised`` (a subclass counts)."""
    if raised in declared:
        return True
    cls = getattr(builtins, raised, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return False
    bases = [getattr(builtins, name, None) for name in declared]
    return any(isinstance(b, type) and issubclass(cls, b) for b in bases)


def _broken_contract(
    setup: _Setup, result: Result, nested: Mapping[str, SandboxError]
) -> tuple[str, int | None] | None:
    """Why a run broke the contract (and the line), or None when it kept it."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped, unused-ignore]

    sid = setup.subject.id
    if result.ok:
        validator = Draft202012Validator(dict(setup.returns))
        error = best_match(validator.iter_errors(result.value))
        if error is None:
            return None
        return (
            f"'return type' failed: it returned {_short(result.value)}, which does not match "
            f"the declared return type {canonical_json(setup.returns)}: {error.message}",
            None,
        )
    err = result.error
    # A required skill that failed reaches the caller as a ToolError naming it; follow the
    # chain down to the skill that raised, and accept what that skill declares.
    owner, seen = sid, set()
    while isinstance(err, ToolError) and err.tool in nested and err.tool not in seen:
        seen.add(err.tool)
        owner, err = err.tool, nested[err.tool]
    line = getattr(err, "line", None) if owner == sid else None
    if isinstance(err, SkillError):
        declared = setup.raises.get(owner, ())
        if _declares(err.exc_type, declared):
            return None
        who = "it" if owner == sid else f"the skill it requires, {owner!r},"
        listed = ", ".join(declared) if declared else "nothing"
        return (
            f"'declared errors' failed: {who} raised {err.exc_type}"
            + (f" (line {err.line})" if err.line else "")
            + f": {err.message}; its docstring declares {listed} under Raises:. Guard the "
            "code, or declare the error in a Raises: section",
            line,
        )
    kind = type(err).__name__ if err is not None else "an unknown error"
    where = "" if owner == sid else f" in the skill it requires, {owner!r}"
    return f"'runs cleanly' failed: the run failed with {kind}{where}: {err}", line


def _hypothesis_run(
    check: str,
    setup: _Setup,
    body: Callable[[dict[str, JSON], st.DataObject], None],
    max_examples: int,
    seed: int,
) -> PropertyResult:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st
    from hypothesis.errors import HypothesisException

    count = 0

    @hypothesis_seed(seed)
    @settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )
    @given(args=setup.inputs, data=st.data())
    def test(args: dict[str, JSON], data: st.DataObject) -> None:
        nonlocal count
        body(args, data)
        count += 1

    try:
        test()
    except _Falsified as exc:
        return PropertyResult(check, False, count + 1, str(exc), exc.line)
    except HypothesisException as exc:
        inner = [str(e) for e in getattr(exc, "exceptions", ())]
        detail = "; ".join(inner) or str(exc)
        return PropertyResult(
            check, False, count, f"{check}: hypothesis could not check it: {detail}"
        )
    return PropertyResult(check, True, count)


def check_properties(
    skill: Skill | ValidatedSkill | TestedSkill,
    sandbox: Sandbox,
    *,
    limits: Limits | None = None,
    library: Mapping[str, Skill] | None = None,
    max_examples: int = 25,
    seed: int = 0,
) -> PropertyResult:
    """Run the skill on generated inputs against schema-valid tool doubles.

    Arguments come from the signature; each tool call is answered with a value drawn from
    `infer_schema` of that tool's recorded results, after its arguments are checked against
    the tool's parameter schema. Each example must keep the contract: every call matches its
    tool's schema, and the skill returns a value of its declared type or raises an error its
    docstring declares under ``Raises:`` (a declared error of a skill it requires counts).
    Anything else (another exception, a policy violation, an exceeded limit, a timeout, a
    crashed worker, an undeclared tool) fails. Generation is seeded, so the same skill and
    ``seed`` always try the same examples.

    ``library`` supplies the skills it requires; they run nested against the same doubles.
    """
    setup = _setup(skill, sandbox, limits, library)
    if isinstance(setup, str):
        return PropertyResult("properties", False, 0, f"properties: not checked: {setup}")

    def body(args: dict[str, JSON], data: st.DataObject) -> None:
        draws = _Draws(data, setup.answers)
        doubles = ToolDoubles(setup.tools, draws, setup.validators)
        result, nested = setup.run(args, doubles)
        draws.resume()
        if doubles.problem:
            broken: tuple[str, int | None] | None = (
                f"'tool arguments' failed: {doubles.problem}",
                None,
            )
        else:
            broken = _broken_contract(setup, result, nested)
        if broken is not None:
            raise _Falsified(
                f"property {broken[0]}\nFalsifying example (shrunk):\n" + doubles.transcript(args),
                broken[1],
            )

    return _hypothesis_run("properties", setup, body, max_examples, seed)


def _outcome(result: Result) -> str:
    if result.ok:
        return f"returned {_short(result.value)}"
    return f"failed with {type(result.error).__name__}: {result.error}"


def check_determinism(
    skill: Skill | ValidatedSkill | TestedSkill,
    sandbox: Sandbox,
    *,
    limits: Limits | None = None,
    library: Mapping[str, Skill] | None = None,
    max_examples: int = 25,
    seed: int = 0,
) -> PropertyResult:
    """Run each generated example twice; both runs must make the same calls and end alike.

    The first run's doubles draw their answers; the second run's give back the same answers
    in the same order, so any difference comes from the skill itself (the clock, say).
    """
    setup = _setup(skill, sandbox, limits, library)
    if isinstance(setup, str):
        return PropertyResult("determinism", False, 0, f"determinism: not checked: {setup}")

    def body(args: dict[str, JSON], data: st.DataObject) -> None:
        draws = _Draws(data, setup.answers)
        first = ToolDoubles(setup.tools, draws)
        one, _ = setup.run(args, first)
        draws.resume()
        diverged: list[str] = []

        def again(tool: str, n: int) -> JSON:
            if n >= len(first.calls) or first.calls[n].tool != tool:
                before = first.calls[n].tool if n < len(first.calls) else "nothing"
                diverged.append(f"call {n + 1}: the second run called {tool} where the first "
                                f"called {before}")  # fmt: skip
                raise RuntimeError("determinism: the second run diverged")
            return first.calls[n].result

        second = ToolDoubles(setup.tools, again)
        two, _ = setup.run(args, second)
        problem = diverged[0] if diverged else None
        if problem is None:
            for n, (a, b) in enumerate(zip(first.calls, second.calls, strict=False), start=1):
                if canonical_json(a.arguments) != canonical_json(b.arguments):
                    problem = (
                        f"call {n}: {a.tool} got {_short(a.arguments)} in the first run and "
                        f"{_short(b.arguments)} in the second"
                    )
                    break
        if problem is None and len(first.calls) != len(second.calls):
            problem = (
                f"the first run made {len(first.calls)} call(s), the second {len(second.calls)}"
            )
        if problem is None and _outcome(one) != _outcome(two):
            problem = f"the first run {_outcome(one)}; the second {_outcome(two)}"
        if problem is not None:
            raise _Falsified(
                f"property 'determinism' failed: two runs of one example differ: {problem}\n"
                "Falsifying example (shrunk; the second run got the same answers):\n"
                + first.transcript(args)
            )

    return _hypothesis_run("determinism", setup, body, max_examples, seed)


# --- everything at once ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProofReport:
    """Every check of one skill: replay of each case, properties and determinism."""

    #: The skill id.
    skill_id: str
    #: How each recorded case replayed.
    cases: tuple[CaseResult, ...]
    #: The contract on generated examples.
    properties: PropertyResult
    #: The same example twice gives the same calls and result.
    determinism: PropertyResult

    @property
    def ok(self) -> bool:
        """True when every case replayed and both properties held."""
        return all(c.ok for c in self.cases) and self.properties.ok and self.determinism.ok

    def failures(self) -> list[tuple[str, str]]:
        """(check name, message) of each failed check, e.g. ``("replay[t-01]", "call 2: ...")``."""
        out = [(f"replay[{c.trajectory_id}]", c.failure or "") for c in self.cases if not c.ok]
        out += [(p.check, p.message) for p in (self.properties, self.determinism) if not p.ok]
        return out


def prove_skill(
    skill: Skill | ValidatedSkill | TestedSkill,
    sandbox: Sandbox,
    *,
    limits: Limits | None = None,
    library: Mapping[str, Skill] | None = None,
    max_examples: int = 25,
    seed: int = 0,
) -> ProofReport:
    """Replay every recorded case, then check properties and determinism on new examples.

    The one entry point of the gate and of the pytest plugin (`skillbank.testing`).
    """
    subject = _subject(skill)
    cases = tuple(replay_case(sandbox, skill, c, limits, library) for c in subject.cases)
    return ProofReport(
        subject.id,
        cases,
        check_properties(
            skill, sandbox, limits=limits, library=library, max_examples=max_examples, seed=seed
        ),
        check_determinism(
            skill, sandbox, limits=limits, library=library, max_examples=max_examples, seed=seed
        ),
    )
