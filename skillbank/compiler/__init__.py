"""The deterministic compiler: trajectories become skills, with no LLM involved.

`compile_trajectory` turns one successful trajectory into a straight-line skill; each tool call
becomes ``tools.<name>(...)``, an argument copied from an earlier result becomes an expression
reading that result (`skillbank.compiler.dataflow`), every other literal becomes a typed
parameter named after the tool parameter it feeds, and the function returns the last result.
`compile_group` anti-unifies several runs of one procedure into one skill with defaults and
loops (`skillbank.compiler.generalize`); a single run is the straight-line case. Failed calls
the agent recovered from are left out: they are not part of the procedure.

Same trajectories in, same bytes out, whatever their order.
"""

from __future__ import annotations

from skillbank.compiler.generalize import (
    compile_group,
    is_subpattern,
    pattern_key,
    pattern_of,
    pattern_tokens,
    skill_id_for,
)
from skillbank.skill import SkillDraft
from skillbank.trajectory import Trajectory

__all__ = [
    "compile_group",
    "compile_trajectory",
    "is_subpattern",
    "pattern_key",
    "pattern_of",
    "pattern_tokens",
    "skill_id_for",
]


def compile_trajectory(trajectory: Trajectory, *, name: str | None = None) -> SkillDraft:
    """Compile one successful trajectory into a skill (straight-line unless it repeats).

    Args:
        trajectory: A trajectory whose outcome is a success.
        name: The skill id to use instead of the default from `skill_id_for`.

    Raises:
        CompileError: when the trajectory failed, made no successful tool call, calls two
            tools that would be written as the same ``tools.<identifier>``
            (`sandbox.names`), or holds a value Python source cannot express.
    """
    return compile_group([trajectory], name=name)
