"""Grouping: which runs are one procedure, before any of them is generalised.

Runs with the same call pattern (`pattern_key`: the tools called, repeats folded) are one
procedure. A pattern whose blocks all appear, in order, in another one's (some runs left
blocks out) joins that procedure when the task texts read alike or both change the same
things from the same sources (the same skeleton), so the left-out blocks
become conditional steps. Procedures whose skeletons are equal but for *which query* a
command argument was read from (the customer found by email in some runs, by name and zip
in others: `skillbank.compiler.slicing.skeleton_key` with ``any_query``) are one procedure
with alternative reads; only the source query may differ, never a command, and the rest of
the skeleton must be equal. The per-pattern parts are kept, so that a merge that does not
compile or check can be learned pattern by pattern instead. A procedure whose pattern a
stored skill already holds is that skill's: its new runs become new cases, never a
near-duplicate skill.

Pure: no sandbox, no git, no I/O. The same runs and skills give the same groups whatever
the order of the input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from skillbank.compiler.generalize import is_subpattern, pattern_key, pattern_tokens
from skillbank.skill import Skill
from skillbank.trajectory import Step, Trajectory

__all__ = ["PatternToken", "ProcedureGroup", "alike", "group_procedures", "successful_steps"]

#: One folded block of a call pattern, with the argument names of its calls.
PatternToken = tuple[tuple[str, ...], tuple[str, ...]]

#: Word overlap (Jaccard, words of three letters or more) above which two task texts read
#: alike, so a run that left blocks out may join the procedure that has them.
ALIKE_OVERLAP = 0.5
#: Most blocks a run may leave out and still join a longer procedure.
MAX_LEFT_OUT = 2


@dataclass
class ProcedureGroup:
    """The runs of one procedure, and the stored skill that already holds it (if any)."""

    #: Indexes into the runs given to `group_procedures`, in canonical order.
    members: list[int]
    #: The stored skill holding this procedure's pattern, None for a new procedure.
    old: Skill | None
    #: The members per call pattern (one part unless patterns were merged).
    parts: list[list[int]]
    #: The longest pattern's tokens (`pattern_tokens`: blocks with their argument names).
    tokens: list[PatternToken] = field(default_factory=list)
    #: The task texts of the members (and of the old skill's cases).
    tasks: list[str] = field(default_factory=list)
    #: What the procedure changes and where the arguments come from
    #: (`skillbank.compiler.slicing.skeleton_key`), when known.
    skeleton: str | None = None
    #: The skeleton with any query as a source (``skeleton_key(..., any_query=True)``).
    shape: str | None = None

    @property
    def merged(self) -> bool:
        """True when runs of several call patterns were put together."""
        return len(self.parts) > 1


def successful_steps(trajectory: Trajectory) -> list[Step]:
    """The calls that worked: failed calls the agent recovered from are not the procedure."""
    return [s for s in trajectory.steps if s.error is None]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]{3,}", text.lower()))


def alike(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two procedures' task texts read alike (word overlap of their first tasks)."""
    if not a or not b:
        return False
    wa, wb = _words(a[0]), _words(b[0])
    return bool(wa | wb) and len(wa & wb) / len(wa | wb) >= ALIKE_OVERLAP


def group_procedures(
    runs: Sequence[Trajectory],
    indexes: Sequence[int],
    existing: Mapping[str, Skill],
    skeletons: Mapping[int, str] | None = None,
    shapes: Mapping[int, str] | None = None,
    skill_shapes: Mapping[str, str] | None = None,
) -> list[ProcedureGroup]:
    """The procedures among ``runs[i]`` for ``i`` in ``indexes`` (runs with calls that worked).

    ``existing`` is the library before learning: a procedure whose pattern a skill holds is
    that skill's (``old``), and a stored skill's pattern takes part in merging too.
    ``skeletons`` (run index -> `skeleton_key`) lets a pattern join another that contains it
    when both change the same things from the same sources, however their tasks are worded.
    ``shapes`` (run index -> the skeleton modulo source queries) joins procedures that read
    a command's argument by different queries (alternatives); ``skill_shapes`` (skill id ->
    the same key of its first case) lets new runs join a stored skill that way.
    """
    by_key: dict[str, str] = {}
    for skill in sorted(existing.values(), key=lambda s: s.id):
        # Every pattern a skill's cases show is the skill's: a skill that reads its entity
        # by alternative queries holds one pattern per alternative.
        for case in skill.cases:
            by_key.setdefault(pattern_key(case.calls), skill.id)
    patterns: dict[str, list[int]] = {}
    for i in indexes:
        patterns.setdefault(pattern_key(successful_steps(runs[i])), []).append(i)
    groups: list[ProcedureGroup] = []
    for key in sorted(patterns):
        # Canonical order, so which task represents a procedure never depends on input order.
        members = sorted(patterns[key], key=lambda i: (runs[i].id, runs[i].sha256))
        old = existing.get(by_key[key]) if key in by_key else None
        groups.append(
            ProcedureGroup(
                members=list(members),
                old=old,
                parts=[list(members)],
                tokens=pattern_tokens(successful_steps(runs[members[0]])),
                tasks=[runs[i].task for i in members],
                skeleton=(skeletons or {}).get(members[0]),
                shape=(shapes or {}).get(members[0]),
            )
        )
    for skill in sorted(existing.values(), key=lambda s: s.id):
        if any(g.old is skill for g in groups) or not skill.cases:
            continue
        longest = max(skill.cases, key=lambda c: len(c.calls))
        groups.append(
            ProcedureGroup(
                members=[],
                old=skill,
                parts=[],
                tokens=pattern_tokens(longest.calls),
                tasks=[c.task for c in skill.cases],
                shape=(skill_shapes or {}).get(skill.id),
            )
        )
    while _merge_one(groups) or _merge_alternatives(groups):
        pass
    for g in groups:
        g.parts = g.parts or [g.members]
    return [g for g in groups if g.members]


def _merge_alternatives(groups: list[ProcedureGroup]) -> bool:
    """Fold one new procedure into another (or a stored skill's) that does the same with a
    value read another way (same shape, different skeleton; the reads may take up to
    `MAX_LEFT_OUT` more or fewer blocks: the customer looked up by name and zip, then read);
    False if none."""
    for small in groups:
        if small.old is not None or not small.members or small.shape is None:
            continue
        for big in groups:
            if (
                big is not small
                and (big.members or big.old)
                and big.shape == small.shape
                and big.skeleton != small.skeleton
                and abs(len(big.tokens) - len(small.tokens)) <= MAX_LEFT_OUT
            ):
                big.members += small.members
                big.parts = (big.parts or [[]]) + small.parts
                big.tasks += small.tasks
                big.tokens = max(big.tokens, small.tokens, key=len)
                small.members, small.parts = [], []
                return True
    return False


def _merge_one(groups: list[ProcedureGroup]) -> bool:
    """Fold one new procedure into another whose pattern contains its own; False if none."""
    for small in groups:
        if small.old is not None or not small.members:
            continue
        for big in groups:
            if big is small or not (big.members or big.old):
                continue
            lesser, greater = sorted((small.tokens, big.tokens), key=len)
            if (
                lesser != greater
                and len(greater) - len(lesser) <= MAX_LEFT_OUT
                and is_subpattern(lesser, greater)
                and (
                    alike(small.tasks, big.tasks)
                    or (small.skeleton is not None and small.skeleton == big.skeleton)
                )
            ):
                big.members += small.members
                big.parts = (big.parts or [[]]) + small.parts
                big.tasks += small.tasks
                big.tokens = greater
                small.members, small.parts = [], []
                return True
    return False
