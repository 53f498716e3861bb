"""Proving: a skill must reproduce every recorded case, run in the sandbox.

Replay (v1 of proving): the skill runs on a case's arguments against tool doubles that answer
with the recorded responses. It must make exactly the recorded calls (same tools, same
arguments, same order) and return the recorded result. A mismatch is reported with the call
number and both sides, so a reviewer sees what diverged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox import Limits, Sandbox
from skillbank.compose import grant, tools_needed
from skillbank.errors import SkillArgumentError, SkillTestFailed
from skillbank.skill import Case, Skill, TestedSkill, ValidatedSkill
from skillbank.trajectory import canonical_json

__all__ = ["CaseResult", "Failed", "prove", "replay_case"]

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
    """Tool doubles answering a case's recorded calls in order, noting the first divergence."""

    def __init__(self, case: Case, declared: Sequence[str]) -> None:
        self.expected = list(case.calls)
        self.position = 0
        self.mismatch: str | None = None
        self.tools: dict[str, Callable[..., JSON]] = {name: self._double(name) for name in declared}

    def _double(self, name: str) -> Callable[..., JSON]:
        def call(**arguments: JSON) -> JSON:
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
    validated: ValidatedSkill,
    case: Case,
    limits: Limits | None = None,
    library: Mapping[str, Skill] | None = None,
) -> CaseResult:
    """Run the skill on one case against its recorded tool responses and compare.

    Skills it requires run nested (from ``library``) against the same recorded responses,
    so the case's raw calls are what the whole composition must make.
    """
    draft = validated.draft
    tid = case.trajectory_id
    needed = {
        t
        for sid in draft.requires
        if library and sid in library
        for t in tools_needed(sid, library)
    }
    replay = _Replay(case, sorted(set(draft.tools) | needed))
    try:
        granted = grant(draft.tools, draft.requires, replay.tools, library or {}, sandbox, limits)
    except SkillArgumentError as exc:
        return CaseResult(tid, False, str(exc))
    result = sandbox.run(draft.source, draft.id, dict(case.args), granted, limits)
    if replay.mismatch:
        return CaseResult(tid, False, replay.mismatch)
    if not result.ok:
        return CaseResult(tid, False, f"the skill failed: {result.error}")
    if replay.position != len(replay.expected):
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
