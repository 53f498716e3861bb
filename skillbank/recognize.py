"""Recognition: which known skills a trajectory's calls amount to, and running such a plan.

`match` finds the shortest sequence of skill calls and raw tool calls that reproduces a
trajectory. For each position it tries every skill whose first call fits: the skill's
arguments are read off the trajectory at the places its recorded cases show each parameter
lands (a *locator*), and the guess is then checked the only way that counts: the skill runs in
the sandbox against doubles that answer with the trajectory's own results. Recognition is
*modulo queries* (`skillbank.compiler.effects`): the skill's commands must be exactly the
trajectory's next commands, while its reads are answered from any recorded read of the same
call, so reads may be skipped, repeated or reordered inside its span, which may hold no
command the skill did not make. Dynamic programming over the positions then picks the plan
with the fewest steps (ties: the fewest raw calls); a read no skill covers stays a raw step.

`execute` runs a plan: skill steps in the sandbox, raw steps as direct tool calls. Run
against the same starting state, a plan reaches the same state as the trajectory it came
from (the same commands, in order).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from skillbank.compiler.dataflow import MISSING, Path, iter_paths, value_at
from skillbank.compiler.effects import classify_tools
from skillbank.compose import grant, tools_needed
from skillbank.errors import SkillArgumentError, SkillRejected
from skillbank.skill import Skill
from skillbank.trajectory import Step, Trajectory, canonical_json

if TYPE_CHECKING:
    from sandbox import Limits, Sandbox, ToolCall

__all__ = [
    "MAX_GUESSES",
    "Locator",
    "Plan",
    "PlanResult",
    "PlanStep",
    "located_guesses",
    "locators",
    "match_steps",
    "read_located",
]

#: Most argument guesses tried per skill and position (a run that read several records of a
#: tool the skill reads offers one guess per record).
MAX_GUESSES = 16

JSON = Any


@dataclass(frozen=True)
class PlanStep:
    """One step of a plan: a skill call or a raw tool call."""

    #: "skill" or "tool".
    kind: str
    #: The skill id or the tool name.
    name: str
    #: The arguments.
    arguments: Mapping[str, JSON]
    #: The trajectory steps it covers, as a half-open range [start, end).
    covers: tuple[int, int]
    #: What the step returned when it was checked against the trajectory (skills only).
    result: JSON = None

    def to_json(self) -> dict[str, JSON]:
        """The step as JSON data."""
        return {
            "kind": self.kind,
            "name": self.name,
            "arguments": dict(self.arguments),
            "covers": list(self.covers),
        }


@dataclass(frozen=True)
class Plan:
    """The shortest known way to reproduce a trajectory."""

    #: The trajectory matched.
    trajectory_id: str
    #: The steps in order.
    steps: tuple[PlanStep, ...]
    #: How many successful tool calls the trajectory made.
    raw_calls: int

    @property
    def call_ratio(self) -> float:
        """Plan steps per raw tool call (lower is better; 1.0 means nothing was recognised)."""
        return len(self.steps) / self.raw_calls if self.raw_calls else 1.0

    @property
    def skills(self) -> tuple[str, ...]:
        """The skills the plan calls."""
        return tuple(s.name for s in self.steps if s.kind == "skill")

    def to_json(self) -> dict[str, JSON]:
        """The plan as JSON data (``skillbank match --json``)."""
        return {
            "trajectory_id": self.trajectory_id,
            "steps": [s.to_json() for s in self.steps],
            "raw_calls": self.raw_calls,
            "call_ratio": round(self.call_ratio, 4),
        }


@dataclass(frozen=True)
class PlanResult:
    """What executing a plan did."""

    #: True when every step succeeded.
    ok: bool
    #: Each step's return value, in order (up to the failure).
    values: tuple[JSON, ...]
    #: Every tool call made, skills' calls included, in order.
    tool_calls: tuple[ToolCall, ...]
    #: What failed, for a reader (None when ok).
    error: str | None = None


@dataclass(frozen=True)
class Locator:
    """Where a parameter's value sits among a skill's tool calls."""

    #: The parameter.
    param: str
    #: "at" (one call's argument), "each" (that argument of every call of the tool, as a
    #: list), "rows" (several arguments of every call, as a list of dicts), "count" (how
    #: many times the tool was called) or "result" (a field of what one of the tool's calls
    #: returned: a value the user asked for that the skill tests, never passes on).
    kind: str
    #: The tool whose calls hold the value.
    tool: str
    #: For "at": which call of that tool (0 = the first).
    occurrence: int = 0
    #: For "at"/"each": the path inside the call's arguments; for "result": inside the
    #: call's result.
    path: Path = ()
    #: For "rows": dict key -> path inside the arguments.
    columns: tuple[tuple[str, Path], ...] = ()
    #: True for a parameter that defaults to None (an alternative's input): a run where
    #: nothing is at the locator did not give it.
    optional: bool = False
    #: For "result" when ``path`` leads to a list: the field inside each of its elements.
    inner: Path | None = None


def _same(a: JSON, b: JSON) -> bool:
    return canonical_json(a) == canonical_json(b) and type(a) is type(b)


def _candidates(param: str, value: JSON, calls: Sequence[Step]) -> list[Locator]:
    found: list[Locator] = []
    seen: dict[str, int] = {}
    for call in calls:
        occurrence = seen.get(call.tool, 0)
        seen[call.tool] = occurrence + 1
        for path, sub in iter_paths(dict(call.arguments)):
            if path and _same(sub, value):
                found.append(Locator(param, "at", call.tool, occurrence, path))
    if isinstance(value, list) and value:
        for tool in dict.fromkeys(c.tool for c in calls):
            mine = [c for c in calls if c.tool == tool]
            if len(mine) != len(value):
                continue
            for path, _ in iter_paths(dict(mine[0].arguments)):
                if path and all(
                    _same(value_at(c.arguments, path), v) for c, v in zip(mine, value, strict=True)
                ):
                    found.append(Locator(param, "each", tool, 0, path))
            if all(isinstance(v, dict) for v in value):
                columns = []
                for key in value[0]:
                    paths = [
                        p
                        for p, _ in iter_paths(dict(mine[0].arguments))
                        if p
                        and all(
                            _same(value_at(c.arguments, p), v.get(key))
                            for c, v in zip(mine, value, strict=True)
                        )
                    ]
                    if not paths:
                        break
                    columns.append((str(key), paths[0]))
                else:
                    found.append(Locator(param, "rows", tool, 0, (), tuple(columns)))
    if isinstance(value, int) and not isinstance(value, bool):
        for tool in dict.fromkeys(c.tool for c in calls):
            if sum(1 for c in calls if c.tool == tool) == value:
                found.append(Locator(param, "count", tool))
    return found


def _result_candidates(param: str, value: JSON, calls: Sequence[Step]) -> list[Locator]:
    """Where ``value`` sits in what the calls returned (the status a search stops at): which
    of the tool's calls holds it, and which element of a list, differ from run to run."""
    found: list[Locator] = []
    if not isinstance(value, str | int) or isinstance(value, bool):
        return found
    for call in calls:
        for path, sub in iter_paths(call.result):
            if not path or not _same(sub, value):
                continue
            cut = [n for n, part in enumerate(path) if type(part) is int]
            if not cut:
                found.append(Locator(param, "result", call.tool, 0, path))
            elif len(cut) == 1:
                outer, inner = path[: cut[0]], path[cut[0] + 1 :]
                found.append(Locator(param, "result", call.tool, 0, outer, inner=inner))
    return list(dict.fromkeys(found))


def _common(
    skill: Skill,
    name: str,
    optional: bool,
    candidates: Callable[[str, JSON, Sequence[Step]], list[Locator]],
) -> list[Locator]:
    """The places ``candidates`` finds parameter ``name`` at in every case that gave it."""
    common: list[Locator] | None = None
    for case in skill.cases:
        if optional and case.args.get(name) is None:
            continue
        if name not in case.args:
            return []
        # A case keeps the reads its run made that the skill does not (`proving` passes
        # over them): a parameter is found only where the skill's own calls are.
        calls = (
            [c for c in case.calls if c.tool in skill.tools] if not skill.requires else case.calls
        )
        found = candidates(name, case.args[name], calls)
        common = found if common is None else [c for c in common if c in set(found)]
        if not common:
            return []
    return common or []


def locators(skill: Skill) -> dict[str, Locator] | None:
    """Where each parameter lands among the skill's calls, agreed by all its cases.

    Parameters with a default need no locator. A parameter that defaults to None (the input
    of one alternative, `skillbank.compiler.emit.Alt`) is located by the cases that gave it,
    and is optional: a run with nothing at its place did not give it. Returns None when a
    required parameter cannot be placed (the skill cannot be recognised from raw calls then).
    """
    result: dict[str, Locator] = {}
    for param in skill.signature.params:
        optional = param.has_default and param.default == "None"
        # In the calls' arguments first; only where no argument holds it in every case, in
        # what the calls returned (a value a search tests and never passes on).
        common = _common(skill, param.name, optional, _candidates)
        if not common:
            common = _common(skill, param.name, optional, _result_candidates)
        if common:
            result[param.name] = replace(common[0], optional=optional)
        elif not param.has_default:
            return None
    return result


def _span(steps: Sequence[Step], tools: frozenset[str], queries: frozenset[str]) -> list[Step]:
    """The calls a skill starting at ``steps[0]`` may make: up to the first command it does
    not declare; reads of other tools on the way are passed over."""
    span: list[Step] = []
    for step in steps:
        if step.tool not in tools:
            if step.tool in queries:
                continue
            break
        span.append(step)
    return span


def read_located(
    locator: Locator,
    steps: Sequence[Step],
    tools: frozenset[str],
    queries: frozenset[str] = frozenset(),
) -> JSON:
    """The value ``locator`` points at in ``steps`` (a run that starts where a skill would).

    The skill's span is unknown before it runs: the calls up to the first command the skill
    does not declare; reads of other tools (``queries``) on the way are passed over.
    """
    span = _span(steps, tools, queries)
    mine = [s for s in span if s.tool == locator.tool]
    if locator.kind == "at":
        if locator.occurrence >= len(mine):
            return MISSING
        return value_at(dict(mine[locator.occurrence].arguments), locator.path)
    if locator.kind == "each":
        values = [value_at(dict(s.arguments), locator.path) for s in mine]
        return values if values and all(v is not MISSING for v in values) else MISSING
    if locator.kind == "rows":
        rows = [{k: value_at(dict(s.arguments), p) for k, p in locator.columns} for s in mine]
        complete = rows and all(v is not MISSING for row in rows for v in row.values())
        return rows if complete else MISSING
    if locator.kind == "result":
        return MISSING  # one of several values: `located_guesses` offers them all
    return len(mine) or MISSING


def located_guesses(
    locator: Locator,
    steps: Sequence[Step],
    tools: frozenset[str],
    queries: frozenset[str] = frozenset(),
) -> list[JSON]:
    """The values a parameter may have had in ``steps``: `read_located`'s first, then, for
    one call's argument of a tool the run called more often than the skill's cases (an agent
    reading several records before the right one), the same argument of the other calls."""
    guesses = []
    first = read_located(locator, steps, tools, queries)
    if first is not MISSING:
        guesses.append(first)
    if locator.kind == "result":
        # Every value at that field, from the last call back (a search stops last).
        for step in reversed(_span(steps, tools, queries)):
            if step.tool != locator.tool:
                continue
            at = value_at(step.result, locator.path)
            if locator.inner is None:
                fields = [at]
            else:
                fields = [value_at(e, locator.inner) for e in at] if isinstance(at, list) else []
            for value in fields:
                if value is not MISSING and all(not _same(value, g) for g in guesses):
                    guesses.append(value)
    if locator.kind == "at":
        for step in _span(steps, tools, queries):
            if step.tool == locator.tool:
                value = value_at(dict(step.arguments), locator.path)
                if value is not MISSING and all(not _same(value, g) for g in guesses):
                    guesses.append(value)
    return guesses


def _try_skill(
    sandbox: Sandbox,
    skill: Skill,
    library: Mapping[str, Skill],
    args: Mapping[str, JSON],
    steps: Sequence[Step],
    start: int,
    queries: frozenset[str],
    limits: Limits | None,
) -> tuple[int, JSON, int]:
    """Where a skill run on ``args`` from ``steps[start]`` on stops reproducing the run
    (``start`` = it does not fit), what it returned, and how many commands it made.

    A command must be the run's next command, with the same arguments; a query is answered
    with the recorded result of the same call anywhere in the run (nearest at or after
    ``start`` first), so the skill may skip, repeat or reorder reads. The span ends after the
    last call it matched, and holds no command the skill did not make.
    """
    commands = [i for i in range(start, len(steps)) if steps[i].tool not in queries]
    made = 0  # commands made so far
    last = start - 1
    broken = False

    def recorded(name: str, arguments: Mapping[str, JSON]) -> int | None:
        key = canonical_json(dict(arguments))
        order = [*range(start, len(steps)), *range(start - 1, -1, -1)]
        return next(
            (
                i
                for i in order
                if steps[i].tool == name and canonical_json(steps[i].arguments) == key
            ),
            None,
        )

    def double(name: str) -> Callable[..., JSON]:
        def call(**arguments: JSON) -> JSON:
            nonlocal made, last, broken
            if name in queries:
                at = recorded(name, arguments)
                if at is None:
                    broken = True
                    raise RuntimeError("a read the trajectory did not make")
                last = max(last, at)
                return steps[at].result
            if made >= len(commands):
                broken = True
                raise RuntimeError("more commands than the trajectory made")
            want = steps[commands[made]]
            if want.tool != name or canonical_json(want.arguments) != canonical_json(arguments):
                broken = True
                raise RuntimeError("a different command than the trajectory made")
            last = max(last, commands[made])
            made += 1
            return want.result

        return call

    needed = set(skill.tools) | {t for sid in skill.requires for t in tools_needed(sid, library)}
    try:
        granted = grant(
            skill.tools,
            skill.requires,
            {t: double(t) for t in sorted(needed)},
            library,
            sandbox,
            limits,
        )
    except SkillArgumentError:
        return start, None, 0
    result = sandbox.run(skill.source, skill.id, dict(args), granted, limits, skill_id=skill.id)
    if broken or not result.ok or last < start:
        return start, None, 0
    if any(c <= last for c in commands[made:]):
        return start, None, 0  # a command inside the span that the skill did not make
    return last + 1, result.value, made


def match_steps(
    trajectory: Trajectory,
    skills: Sequence[Skill],
    sandbox: Sandbox,
    limits: Limits | None = None,
    check_args: Callable[[Skill, Mapping[str, JSON]], Mapping[str, JSON]] | None = None,
    queries: Collection[str] | None = None,
) -> Plan:
    """The shortest plan of skill calls and raw tool calls reproducing ``trajectory``.

    Commands must be reproduced exactly, in order; within a skill's span, queries
    (``queries``: the tools that only read, by default as `skillbank.compiler.effects`
    classifies them from their names) may be skipped, repeated or reordered, since reads
    change nothing; a skill's step also takes in the reads just before its first call and,
    for a skill that changes something, just after its last. Elsewhere a read stays a raw
    step: it may be what the run was for (an answer shown to the user). A run's failed calls
    are not part of it: a plan never repeats one. ``check_args`` (the bank's argument check,
    `skillbank.signature.check_arguments`) refuses arguments read off the trajectory that
    the skill's signature would refuse, so every plan can be executed; the skill is tried
    with the arguments as it returns them.
    """
    steps = [s for s in trajectory.steps if s.error is None]
    if queries is None:
        effects = classify_tools({s.tool for s in steps}, {t.name: t for t in trajectory.tools})
        queries = {name for name, e in effects.items() if e.effect == "query"}
    reads = frozenset(queries)
    library = {s.id: s for s in skills}
    usable: list[tuple[Skill, dict[str, Locator]]] = []
    for skill in skills:
        found = locators(skill) if skill.cases and skill.tools else None
        if found is not None:
            usable.append((skill, found))
    # The tools a skill's calls may start with: one per alternative first read.
    first_tools = {
        s.id: {
            made[0].tool
            for case in s.cases
            if (made := [c for c in case.calls if s.requires or c.tool in s.tools])
        }
        for s, _ in usable
    }
    n = len(steps)
    inf = (n + 1, n + 1)
    best: list[tuple[tuple[int, int], list[PlanStep]]] = [(inf, []) for _ in range(n + 1)]
    best[0] = ((0, 0), [])
    attempts: dict[tuple[str, int], tuple[dict[str, JSON], JSON, int, list[int]] | None] = {}

    def _attempt(
        skill: Skill, locs: Mapping[str, Locator], k: int
    ) -> tuple[dict[str, JSON], JSON, int, list[int]] | None:
        """The skill tried from ``steps[k]``: its arguments, value, commands made and the
        ends its step may have; None when it does not fit."""
        tools = frozenset(skill.tools).union(
            *(tools_needed(sid, library) for sid in skill.requires)
        )
        guesses = {
            name: located_guesses(loc, steps[k:], tools, reads) for name, loc in locs.items()
        }
        # An optional input found nowhere was not given (the run took another alternative).
        guesses = {
            name: g or ([MISSING] if locs[name].optional else []) for name, g in guesses.items()
        }
        if any(not g for g in guesses.values()):
            return None
        for combo in itertools.islice(itertools.product(*guesses.values()), MAX_GUESSES):
            args = {n: v for n, v in zip(guesses, combo, strict=True) if v is not MISSING}
            if check_args is not None:
                try:
                    args = dict(check_args(skill, args))
                except (SkillArgumentError, SkillRejected):
                    continue  # SkillRejected: a signature that cannot be checked
            j, value, made = _try_skill(sandbox, skill, library, args, steps, k, reads, limits)
            if j <= k:
                continue
            # The reads right after a command skill's last call (an agent checking what it
            # did) are its too, unless a later skill starts with them: both ends are
            # offered. A read-only skill's answer is its last read: what follows is another
            # question.
            ends = [j]
            while made and ends[-1] < n and steps[ends[-1]].tool in reads:
                ends.append(ends[-1] + 1)
            return args, value, made, sorted({ends[0], ends[-1]})
        return None

    for i in range(n):
        (cost, raws), plan = best[i]
        if cost > n:
            continue
        raw = PlanStep("tool", steps[i].tool, dict(steps[i].arguments), (i, i + 1))
        if (cost + 1, raws + 1) < best[i + 1][0]:
            best[i + 1] = ((cost + 1, raws + 1), [*plan, raw])
        for skill, locs in usable:
            # Where the skill would start: here, or after reads it does not make (an agent
            # looking around first), which its step then covers too.
            k = i
            firsts = first_tools.get(skill.id, set())
            while k < n and steps[k].tool not in firsts and steps[k].tool in reads:
                k += 1
            if k >= n or steps[k].tool not in firsts:
                continue
            key = (skill.id, k)
            if key not in attempts:
                attempts[key] = _attempt(skill, locs, k)
            tried = attempts[key]
            if tried is None:
                continue
            args, value, _, ends = tried
            for end in ends:
                step = PlanStep("skill", skill.id, args, (i, end), value)
                if (cost + 1, raws) < best[end][0]:
                    best[end] = ((cost + 1, raws), [*plan, step])
    return Plan(trajectory.id, tuple(best[n][1]), n)
