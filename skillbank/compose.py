"""Composition: skills that call other skills.

A skill may call another through the same ``tools`` object it uses for host tools:
``tools.<skill_id>(...)``. Its metadata lists such skills under ``requires``, and whoever runs
it (a caller, the replay tests, recognition) grants each required skill as a callable that
runs that skill, nested, in the sandbox against the same host tools. The graph of ``requires``
must be acyclic; `requirement_cycle` finds a cycle when there is one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from skillbank.errors import SkillArgumentError, SkillCallFailed

if TYPE_CHECKING:
    from sandbox import Limits, Sandbox
    from skillbank.skill import Skill
    from skillbank.tracing import SkillTrace

__all__ = [
    "MAX_DEPTH",
    "SkillCallFailed",
    "closure",
    "grant",
    "requirement_cycle",
    "tools_needed",
]

JSON = Any

#: Deepest chain of skills calling skills that will run.
MAX_DEPTH = 8


def closure(skill_id: str, requires: Mapping[str, Sequence[str]]) -> set[str]:
    """Every skill ``skill_id`` needs, directly or through others."""
    seen: set[str] = set()
    todo = list(requires.get(skill_id, ()))
    while todo:
        sid = todo.pop()
        if sid not in seen:
            seen.add(sid)
            todo += requires.get(sid, ())
    return seen


def tools_needed(sid: str, library: Mapping[str, Skill]) -> set[str]:
    """The host tools a skill needs, its own and those of the skills it requires (cycle-safe)."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = [sid]
    while todo:
        current = todo.pop()
        skill = library.get(current)
        if current in seen or skill is None:
            continue
        seen.add(current)
        found |= set(skill.tools)
        todo += skill.requires
    return found


def requirement_cycle(requires: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle in the requires graph, as the list of ids around it, or None."""
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []

    def visit(sid: str) -> list[str] | None:
        state[sid] = 1
        path.append(sid)
        for dep in requires.get(sid, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[sid] = 2
        return None

    for sid in sorted(requires):
        if sid not in state:
            found = visit(sid)
            if found:
                return found
    return None


def grant(
    tools: Sequence[str],
    requires: Sequence[str],
    host_tools: Mapping[str, Callable[..., JSON]],
    library: Mapping[str, Skill],
    sandbox: Sandbox,
    limits: Limits | None = None,
    depth: int = 0,
    trace: SkillTrace | None = None,
    *,
    inline_tools: bool = False,
) -> dict[str, Callable[..., JSON]]:
    """What a skill may call: its declared host tools, and a runner per required skill.

    A runner runs the required skill nested in the sandbox, granting it in turn its own
    tools from ``host_tools`` and its own required skills. With ``trace`` (the run's spans,
    `skillbank.tracing.SkillTrace`), each host tool call is a child span of it, and each
    required skill's run a child span with the calls that run makes beneath it; with
    ``inline_tools`` its host tools are called on the thread that runs it (see
    `sandbox.Sandbox.run`).

    Raises:
        SkillArgumentError: a declared tool is missing from ``host_tools``, a required skill
            is not in the library, or skills call each other too deep.
    """
    missing = [t for t in tools if t not in host_tools]
    if missing:
        raise SkillArgumentError(f"no host function was given for {', '.join(missing)}")
    granted = {t: host_tools[t] for t in tools}
    if trace is not None:
        granted = trace.wrap(granted)
    for sid in requires:
        sub = library.get(sid)
        if sub is None:
            raise SkillArgumentError(
                f"a skill requires {sid!r}, which is not in the library; learn or restore it"
            )
        if depth >= MAX_DEPTH:
            raise SkillArgumentError(f"skills call each other more than {MAX_DEPTH} deep")
        granted[sid] = _runner(
            sub, host_tools, library, sandbox, limits, depth + 1, trace, inline_tools
        )
    return granted


def _runner(
    sub: Skill,
    host_tools: Mapping[str, Callable[..., JSON]],
    library: Mapping[str, Skill],
    sandbox: Sandbox,
    limits: Limits | None,
    depth: int,
    trace: SkillTrace | None,
    inline_tools: bool,
) -> Callable[..., JSON]:
    def run(**arguments: JSON) -> JSON:
        nested = trace.nested(sub, arguments) if trace is not None else None
        try:
            granted = grant(
                sub.tools, sub.requires, host_tools, library, sandbox, limits, depth, nested,
                inline_tools=inline_tools,
            )  # fmt: skip
            result = sandbox.run(
                sub.source, sub.id, arguments, granted, limits, skill_id=sub.id,
                inline_tools=inline_tools,
            )  # fmt: skip
        except BaseException as exc:  # misuse, or the sandbox itself failed: end the span
            if nested is not None:
                nested.abandon(exc)
            raise
        if nested is not None:
            nested.end(result)
        if not result.ok:
            raise SkillCallFailed(f"skill {sub.id!r} failed: {result.error}")
        return result.value

    return run
