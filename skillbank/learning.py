"""Learning: trajectories in, tested skills committed, a `LearnReport` out.

`Learner.learn` is the pipeline of the mission's first three steps for one batch:

1. **Group** (`skillbank.compiler.grouping`): runs of one procedure go together; a
   procedure a stored skill already holds is that skill's.
2. **Generalise** (`skillbank.compiler.compile_group`): each procedure's runs (with the
   stored skill's recorded cases) are anti-unified into one skill; where existing skills
   cover a run's steps the skill calls them instead (composition); where a reviewer or the
   LLM rewrote a skill, their code is kept if it reproduces the new cases.
3. **Check** (`skillbank.proving.check`): the libcst policy, then a replay of every case in
   the sandbox. When the deterministic compiler cannot produce a skill that passes and an LLM
   is configured, the LLM proposes one, checked the same way.
4. **Keep**: every change lands in one commit (`skillbank.library.SkillLibrary.store`), with
   a message naming each trajectory and its sha256, each skill's version moved as
   `skillbank.versioning.required_bump` decides.

Failed trajectories are skipped; trajectories whose procedure cannot be compiled are rejected
with the reason; neither stops the others. The result does not depend on the input's order.

The learner is built from explicit collaborators (the library, the configuration, the
sandbox, an optional LLM, and the ledger's counts for the stage a new version starts at); it
never sees the `skillbank.bank.SkillBank` that wires it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sandbox import Limits, Sandbox
from skillbank.compiler import compile_group, pattern_of, skill_id_for
from skillbank.compiler.effects import ToolEffect, classify_tools
from skillbank.compiler.grouping import ProcedureGroup, group_procedures, successful_steps
from skillbank.compiler.slicing import skeleton_key, slice_run
from skillbank.compose import closure, requirement_cycle
from skillbank.config import Config
from skillbank.errors import CompileError, LibraryError
from skillbank.library import SkillLibrary, StoredChange
from skillbank.progress import track
from skillbank.proving import Check, explain
from skillbank.recognize import match_steps
from skillbank.signature import read_signature
from skillbank.skill import Skill, SkillDraft, Stage, TestedSkill
from skillbank.trajectory import Step, ToolSpec, Trajectory
from skillbank.validate import code_shape
from skillbank.versioning import Version, bump, required_bump, signature_diff

if TYPE_CHECKING:
    from skillbank.compiler.llm import LLMCompiler

__all__ = ["MESSAGE_TRAJECTORIES", "LearnEntry", "LearnReport", "Learner", "ProcedureReport"]

#: Trajectories a learn commit's message names one by one; the rest are counted (every one is
#: in the cases.jsonl of the skill it joined, with its sha256, in the same commit).
MESSAGE_TRAJECTORIES = 200

JSON = Any


@dataclass(frozen=True)
class LearnEntry:
    """What happened to one trajectory during `SkillBank.learn`."""

    #: The trajectory's id.
    trajectory_id: str
    #: "added" (a new skill), "updated" (a new case of a known skill), "unchanged" (already
    #: learned), "duplicate" (the same run as one earlier in the input), "skipped" (the
    #: trajectory failed), or "rejected" (a check failed).
    action: str
    #: The skill it became or joined (None when rejected before a skill existed).
    skill_id: str | None = None
    #: Why it was rejected, for a reader.
    reason: str | None = None


@dataclass(frozen=True)
class ProcedureReport:
    """What `SkillBank.learn` did with one procedure (one group of same-pattern runs)."""

    #: The skill holding the procedure (None when a new procedure was rejected).
    skill_id: str | None
    #: "created", "updated", "unchanged" or "rejected".
    action: str
    #: The trajectories of this call that were new for the procedure.
    trajectories: tuple[str, ...]
    #: Recorded cases the skill holds now.
    cases: int
    #: The skill's signature ("" when rejected).
    signature: str
    #: What was generalised: data flow, loops, constants kept as defaults.
    generalised: tuple[str, ...]
    #: The version written, canonical ``"1.2.0"`` (None when nothing was written).
    version: str | None
    #: Why it was rejected.
    reason: str | None = None
    #: The LLM compiler's attempts, one line each, when it was asked.
    llm: tuple[str, ...] = ()
    #: Each tool the procedure calls: a query or a command, and why
    #: (`skillbank.compiler.effects`).
    effects: tuple[ToolEffect, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        """The report as JSON data."""
        return {
            "effects": [e.to_json() for e in self.effects],
            "skill_id": self.skill_id,
            "action": self.action,
            "trajectories": list(self.trajectories),
            "cases": self.cases,
            "signature": self.signature,
            "generalised": list(self.generalised),
            "version": self.version,
            "reason": self.reason,
            "llm": list(self.llm),
        }


@dataclass(frozen=True)
class LearnReport:
    """The outcome of one `SkillBank.learn` call."""

    #: One entry per trajectory, in input order.
    entries: tuple[LearnEntry, ...]
    #: The commit holding the changes, or None when nothing changed.
    commit: str | None = None
    #: Version written per changed skill id (canonical ``"1.2.0"``).
    versions: Mapping[str, str] = field(default_factory=dict)
    #: One report per procedure the trajectories fell into.
    procedures: tuple[ProcedureReport, ...] = ()
    #: The branch that got the commit (None when nothing was committed, or HEAD was
    #: detached).
    branch: str | None = None
    #: True when that branch is the checked-out one (its working tree shows the change);
    #: False for a review branch written without checking it out.
    checked_out: bool = True
    #: The branch a review branch was made from: what its review compares against.
    base_branch: str | None = None

    def _ids(self, action: str) -> list[str]:
        return sorted({e.skill_id for e in self.entries if e.action == action and e.skill_id})

    @property
    def added(self) -> list[str]:
        """Ids of skills created by this call."""
        return self._ids("added")

    @property
    def updated(self) -> list[str]:
        """Ids of existing skills that gained cases (and were not also added now)."""
        return [i for i in self._ids("updated") if i not in self.added]

    @property
    def unchanged(self) -> list[str]:
        """Ids of skills that already held every trajectory given."""
        changed = set(self.added) | set(self.updated)
        return [i for i in self._ids("unchanged") if i not in changed]

    @property
    def rejected(self) -> list[LearnEntry]:
        """Trajectories that failed to compile, validate or replay, with reasons."""
        return [e for e in self.entries if e.action == "rejected"]

    @property
    def duplicates(self) -> list[LearnEntry]:
        """Runs given twice in one input (by content): learned once."""
        return [e for e in self.entries if e.action == "duplicate"]

    @property
    def skipped(self) -> list[LearnEntry]:
        """Trajectories that were not successes, so were not learned from."""
        return [e for e in self.entries if e.action == "skipped"]

    def to_json(self) -> dict[str, JSON]:
        """The report as JSON data (the CLI's ``--json`` output)."""
        return {
            "commit": self.commit,
            "branch": self.branch,
            "checked_out": self.checked_out,
            "base_branch": self.base_branch,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": [
                {"trajectory_id": e.trajectory_id, "skill_id": e.skill_id, "reason": e.reason}
                for e in self.rejected
            ],
            "skipped": [
                {"trajectory_id": e.trajectory_id, "reason": e.reason} for e in self.skipped
            ],
            "entries": [
                {
                    "trajectory_id": e.trajectory_id,
                    "action": e.action,
                    "skill_id": e.skill_id,
                    "reason": e.reason,
                }
                for e in self.entries
            ],
            "versions": dict(sorted(self.versions.items())),
            "procedures": [p.to_json() for p in self.procedures],
        }


@dataclass
class _Batch:
    """What one `Learner.learn` call has decided so far (filled procedure by procedure)."""

    given: list[Trajectory]
    existing: Mapping[str, Skill]
    entries: dict[int, LearnEntry] = field(default_factory=dict)
    procedures: list[ProcedureReport] = field(default_factory=list)
    changes: list[StoredChange] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)

    def canonical(self, members: Iterable[int]) -> list[int]:
        return sorted(members, key=lambda i: (self.given[i].id, self.given[i].sha256))


class Learner:
    """Turns trajectories into tested skills in one library.

    Args:
        library: Where skills are read and committed.
        config: The bank's settings (stage thresholds, ``branch``, ``llm_docs``).
        sandbox: Gives the sandbox every check runs in (started on first use).
        limits: The limits of each sandbox run.
        llm: Gives the optional LLM compiler (None: deterministic only).
        stage_for: The stage a skill's new version starts at (`Lifecycle.stage_for`).
        check: Checks a draft against a library (the bank's one check path).
    """

    def __init__(
        self,
        library: SkillLibrary,
        config: Config,
        *,
        sandbox: Callable[[], Sandbox],
        limits: Limits,
        llm: Callable[[], LLMCompiler | None],
        stage_for: Callable[[str, Version, int, Stage | None], Stage],
        check: Check,
    ) -> None:
        self.library = library
        #: Checks a draft against a library (`skillbank.proving.check` in the bank's sandbox).
        self.check = check
        self.config = config
        self._sandbox = sandbox
        self.limits = limits
        self._llm = llm
        self.stage_for = stage_for

    def learn(
        self, trajectories: Iterable[Trajectory], *, branch: str | None = None
    ) -> LearnReport:
        """Group trajectories into procedures, generalise each into a skill, check, store.

        A group is anti-unified together with the recorded cases of the skill that already
        holds its pattern, so a new run of a known procedure becomes a new case of that skill
        (and a new version only if the code must change), never a near-duplicate. Each
        resulting skill is validated and replays every case in the sandbox before all changes
        land in one commit. The result does not depend on the order of the input.

        Args:
            trajectories: The runs to learn from.
            branch: Where the commit goes (default: the ``branch`` setting, "auto"):
                "auto", "current" or a branch name, as
                `skillbank.library.SkillLibrary.branch_for` says. A branch other than the
                checked-out one is written without checking it out: the working tree does
                not change, and agents are offered the new skills once it is merged.

        Raises:
            LibraryError: when the library cannot be read or written, or the branch cannot
                be used (nothing is changed).
        """
        # Each run cut down to its procedure (`skillbank.compiler.slicing`): reads nothing
        # used are dropped before grouping, so runs that read more or less join one skill.
        # A sliced run keeps its recorded hash: learning it again finds it known.
        cuts = [self._cut(t) for t in trajectories]
        given = [run for run, _, _ in cuts]
        wanted = branch or self.config.branch
        if wanted not in ("auto", "current"):
            self.library.check_branch_name(wanted)  # before any work, not after it
        with self.library.lock():
            stored, broken = self.library.scan()
            existing = {s.id: s for s in stored}
            # A broken folder keeps its id, and so does an alias: no new skill is written
            # over either.
            taken = set(existing) | {b.id for b in broken} | set(self.library.aliases())
            batch = _Batch(given, existing, taken=taken)
            learnable = []
            first_of: dict[str, int] = {}  # sha256 -> the first run with it in this input
            duplicates: dict[int, int] = {}
            for i, t in enumerate(given):
                if t.sha256 in first_of:
                    duplicates[i] = first_of[t.sha256]
                    continue
                first_of[t.sha256] = i
                if not t.outcome.success:
                    detail = f": {t.outcome.detail}" if t.outcome.detail else ""
                    batch.entries[i] = LearnEntry(
                        t.id, "skipped", None, f"the trajectory did not succeed{detail}; "
                        "only successful trajectories become skills",
                    )  # fmt: skip
                elif not successful_steps(t):
                    batch.entries[i] = LearnEntry(
                        t.id, "rejected", None, "it made no successful tool call, so there is "
                        "nothing to learn",
                    )  # fmt: skip
                else:
                    learnable.append(i)
            sliced = {sid: self._sliced_skill(skill) for sid, skill in existing.items()}
            skeletons = {i: cuts[i][1] for i in learnable}
            shapes = {i: cuts[i][2] for i in learnable}
            skill_shapes = {
                sid: self._cut(skill.cases[0].to_trajectory(skill.tool_specs))[2]
                for sid, skill in existing.items()
                if skill.cases
            }
            groups = group_procedures(given, learnable, sliced, skeletons, shapes, skill_shapes)
            for group in track(groups, "learning"):
                self._learn_procedure(batch, group)
            for i, first in duplicates.items():
                batch.entries[i] = LearnEntry(
                    given[i].id, "duplicate", batch.entries[first].skill_id,
                    f"the same run as {given[first].id!r} earlier in this input",
                )  # fmt: skip
            entries = [batch.entries[i] for i in range(len(given))]
            graph = {sid: skill.requires for sid, skill in existing.items()}
            graph.update({c.skill.draft.id: c.skill.draft.requires for c in batch.changes})
            cycle = requirement_cycle(graph)
            if cycle:
                raise LibraryError(
                    f"skills would require each other in a cycle ({' -> '.join(cycle)}); "
                    "fix the 'requires' of those skills before learning more"
                )
            commit, target = None, None
            if batch.changes:
                new_hashes = [given[i].sha256 for i, e in batch.entries.items()
                              if e.action in ("added", "updated")]  # fmt: skip
                target = self.library.branch_for(wanted, "learn", new_hashes)
                commit = self.library.store(
                    batch.changes,
                    _commit_message(batch.changes, entries, existing),
                    branch=target,
                )
        return LearnReport(
            tuple(entries),
            commit,
            {c.skill.draft.id: str(c.version) for c in batch.changes},
            tuple(batch.procedures),
            target.name if commit and target else None,
            target.checked_out if commit and target else True,
            target.source if commit and target else None,
        )

    def _learn_procedure(self, batch: _Batch, group: ProcedureGroup) -> None:
        if self._learn_group(batch, group.members, group.old, final=not group.merged):
            return
        # A merged procedure (runs that left out some blocks) did not compile or check:
        # learn the runs of each call pattern on their own instead.
        first = set(group.parts[0])
        for part in group.parts:
            old = group.old if group.old and set(part) & first else None
            self._learn_group(batch, part, old, final=True)

    def _learn_group(
        self, batch: _Batch, members: list[int], old: Skill | None, *, final: bool
    ) -> bool:
        """Learn one procedure: generalise, check, record in ``batch``.

        Returns False (recording nothing) when it fails and ``final`` is False: the caller
        then learns its parts separately.
        """
        given = batch.given
        members = batch.canonical(members)
        known = {c.trajectory_sha256 for c in old.cases} if old else set()
        new: list[int] = []
        for i in members:
            if given[i].sha256 in known:
                batch.entries[i] = LearnEntry(given[i].id, "unchanged", old.id if old else None)
            else:
                known.add(given[i].sha256)
                new.append(i)
        if not new:
            if old is not None:
                batch.procedures.append(
                    _procedure(old.id, "unchanged", [], old, None, effects=self._effects(old))
                )
            return True
        named: SkillDraft | None = None
        if old is not None:
            sid = old.id
        else:
            # The compiler names a procedure from what its runs did (`skill_id_for`); the
            # draft it names is the skill's, unless that name is taken.
            fresh = [given[i] for i in new]
            try:
                named = compile_group(fresh, queries=self._group_queries(fresh))
                base = named.id
            except (CompileError, RecursionError, ValueError):
                longest = max(fresh, key=lambda t: (len(t.steps), t.id, t.sha256))
                tools = [s.tool for s in successful_steps(longest)]
                base = skill_id_for([t for block in pattern_of(tools) for t in block])
            sid = _unique_id(base, batch.taken)
        runs = [c.to_trajectory(old.tool_specs) for c in old.cases] if old else []
        runs += [given[i] for i in new]
        stored = batch.existing.get(old.id) if old else None
        compiled = named if named is not None and named.id == sid else None
        tested, problem, transcript = self._generalise(
            sid, runs, old, batch.existing, stored, compiled
        )
        ids = [given[i].id for i in new]
        if tested is None:
            if not final:
                return False
            reason = problem or "unknown"
            for i in new:
                batch.entries[i] = LearnEntry(
                    given[i].id, "rejected", old.id if old else None, reason
                )
            batch.procedures.append(
                ProcedureReport(
                    sid if old else None,
                    "rejected",
                    tuple(ids),
                    len(old.cases) if old else 0,
                    "",
                    (),
                    None,
                    reason,
                    transcript,
                    self._effects(*runs),
                )  # fmt: skip
            )
            return True
        batch.taken.add(sid)
        action = "updated" if old is not None else "added"
        for i in new:
            batch.entries[i] = LearnEntry(given[i].id, action, sid)
        draft = tested.draft
        if old is None:
            version = Version(1, 0, 0)
        else:
            kind = required_bump(old.source, old.description, draft.source, draft.description)
            version = bump(old.version, kind) if kind else old.version
        stage = self.stage_for(sid, version, len(draft.cases), old.stage if old else None)
        # Learning more runs of a deprecated skill keeps it deprecated.
        batch.changes.append(
            StoredChange(tested, version, stage, action, old.deprecated_by if old else None)
        )
        batch.procedures.append(
            _procedure(
                sid,
                "created" if old is None else "updated",
                ids,
                tested,
                str(version),
                transcript,
                effects=self._effects(tested),
            )  # fmt: skip
        )
        return True

    def _group_queries(self, runs: Sequence[Trajectory]) -> frozenset[str]:
        """The query tools of several runs together."""
        return frozenset().union(*(self._queries(r) for r in runs))

    def _queries(self, run: Trajectory) -> frozenset[str]:
        """The tools of a run that only read (the bank's configuration, hints, names)."""
        return frozenset(e.tool for e in self._effects(run) if e.effect == "query")

    def _effects(self, *sources: Skill | TestedSkill | Trajectory) -> tuple[ToolEffect, ...]:
        """How each tool of a skill (or of some runs) is classified, by name."""
        names: set[str] = set()
        specs: dict[str, ToolSpec] = {}
        for source in sources:
            if isinstance(source, Trajectory):
                names |= {s.tool for s in successful_steps(source)}
                specs |= {t.name: t for t in source.tools}
            else:
                held = source.draft if isinstance(source, TestedSkill) else source
                names |= set(held.tools)
                specs |= dict(held.tool_specs)
        return tuple(
            classify_tools(
                names, specs, query_tools=self.config.query_tools,
                command_tools=self.config.command_tools,
            ).values()
        )  # fmt: skip

    def _cut(self, trajectory: Trajectory) -> tuple[Trajectory, str, str]:
        """The run cut down to its procedure (it keeps its id and recorded hash), the
        procedure's skeleton (`skeleton_key`) and its skeleton with any query as a source
        (alternative reads join), from one slice."""
        effects = {e.tool: e for e in self._effects(trajectory)}
        cut = slice_run(trajectory, effects)
        key = skeleton_key(cut, effects)
        shape = skeleton_key(cut, effects, any_query=True)
        if len(cut.steps) == len(successful_steps(trajectory)):
            return trajectory, key, shape
        sliced = replace(trajectory, steps=cut.steps, recorded_sha256=trajectory.sha256)
        return sliced, key, shape

    def _sliced(self, trajectory: Trajectory) -> Trajectory:
        """The run cut down to its procedure; it keeps its id and recorded hash."""
        return self._cut(trajectory)[0]

    def _sliced_skill(self, skill: Skill) -> Skill:
        """A stored skill as grouping sees it: each case's calls sliced like a new run's."""
        cases = []
        for case in skill.cases:
            run = self._sliced(case.to_trajectory(skill.tool_specs))
            cases.append(replace(case, calls=tuple(s.as_case_call() for s in run.steps)))
        return replace(skill, cases=tuple(cases))

    def _generalise(
        self,
        sid: str,
        runs: list[Trajectory],
        old: Skill | None,
        library: Mapping[str, Skill],
        stored: Skill | None = None,
        compiled: SkillDraft | None = None,
    ) -> tuple[TestedSkill | None, str | None, tuple[str, ...]]:
        """Compile one procedure's runs and check the skill; fall back to the LLM if set up.

        Returns the tested skill (or None), the reason it failed, and the LLM's transcript.
        ``library`` is the library as it was before this learn: composition uses only skills
        from it, so a batch gives the same skills whatever its order. ``compiled`` is these
        runs' draft when it was already made (named ``sid``).
        """
        problem: str | None = None
        try:
            draft = compiled or compile_group(runs, name=sid, queries=self._group_queries(runs))
        except (CompileError, RecursionError, ValueError) as exc:
            draft, problem = None, str(exc)
        composed = self._compose(sid, runs, library) if old is None or old.requires else None
        if composed is not None and (
            draft is None
            or len(read_signature(composed.source).params)
            <= len(read_signature(draft.source).params)
        ):
            checked = self.check(composed, library)
            if isinstance(checked, TestedSkill):
                return checked, None, ()
        if draft is not None and old is not None and not old.requires:
            # Was the stored code written by the compiler from its cases as stored (before
            # slicing them), or by someone else?
            raw = [c.to_trajectory(old.tool_specs) for c in (stored or old).cases]
            ours = compile_group(raw, name=sid, queries=self._group_queries(raw)) if raw else None
            if ours is not None and code_shape(ours.source) != code_shape(old.source):
                # Someone (a reviewer, the LLM) rewrote this skill: keep their code and only
                # add the new cases, if the code reproduces them; parameters they renamed
                # are matched by position.
                ours_names = [p.name for p in read_signature(draft.source).params]
                their_names = [p.name for p in old.signature.params]
                rename = (
                    dict(zip(ours_names, their_names, strict=True))
                    if len(ours_names) == len(their_names)
                    else {}
                )
                cases = tuple(
                    replace(c, args={rename.get(k, k): v for k, v in c.args.items()})
                    for c in draft.cases
                )
                draft = replace(draft, source=old.source, description=old.description,
                                notes=old.notes, cases=cases, tools=old.tools,
                                requires=old.requires, tool_specs=old.tool_specs)  # fmt: skip
                checked = self.check(draft, library)
                if isinstance(checked, TestedSkill):
                    return checked, None, ()
                return None, explain(checked), ()
        kept_docs = False
        if (
            draft is not None
            and old is not None
            and code_shape(draft.source) == code_shape(old.source)
        ):
            # The same code: keep the docstring and description the skill has. The compiler
            # quotes the task of whichever run sorts first, and a new run sorting first
            # must not reword a skill (and bump its version) that did not change.
            draft = replace(draft, source=old.source, description=old.description)
            kept_docs = True
        if draft is not None:
            checked = self.check(draft, library)
            if isinstance(checked, TestedSkill):
                better = checked if kept_docs else self._better_docs(checked, runs, library)
                return better, None, ()
            problem = explain(checked)
        llm = self._llm()
        if llm is None:
            return None, problem, ()
        result = llm.compile(sid, runs, lambda d: explain(self.check(d, None)))
        if result.draft is None:
            return (
                None,
                f"{problem}; the LLM compiler did not fix it: {result.error}",
                (result.transcript),
            )
        checked = self.check(result.draft, None)
        if isinstance(checked, TestedSkill):
            return checked, None, result.transcript
        return None, explain(checked), result.transcript

    def _better_docs(
        self, tested: TestedSkill, runs: list[Trajectory], library: Mapping[str, Skill]
    ) -> TestedSkill:
        """With ``llm_docs`` on, let the LLM rename parameters and rewrite the docstring.

        The code must stay the same (the compiler checks that); the cases' arguments are
        renamed by position; the result is validated and replayed again and kept only if it
        passes. Any failure keeps the deterministic skill.
        """
        llm = self._llm() if self.config.llm_docs else None
        if llm is None:
            return tested
        draft = tested.draft
        better = llm.improve_docs(draft.source, runs)
        if better is None:
            return tested
        improved = read_signature(better)
        before = [p.name for p in tested.validated.signature.params]
        after = [p.name for p in improved.params]
        if len(before) != len(after):
            return tested
        rename = dict(zip(before, after, strict=True))
        cases = tuple(
            replace(c, args={rename.get(k, k): v for k, v in c.args.items()}) for c in draft.cases
        )
        summary = improved.docstring.split("\n", 1)[0].strip()
        candidate = replace(draft, source=better, cases=cases,
                            description=summary or draft.description)  # fmt: skip
        checked = self.check(candidate, library)
        return checked if isinstance(checked, TestedSkill) else tested

    def _compose(
        self, sid: str, runs: list[Trajectory], library: Mapping[str, Skill]
    ) -> SkillDraft | None:
        """The group as calls of existing skills where they cover its runs, or None.

        Every run must be covered the same way (the same skills and raw calls in the same
        order), and at least one step must be a skill but not the whole run (a skill that
        only wraps another adds nothing). Skills that (transitively) require ``sid`` are not
        used, so no cycle can arise.
        """
        requires_map = {s.id: s.requires for s in library.values()}
        others = [
            s
            for s in library.values()
            if s.id != sid and sid not in closure(s.id, requires_map) and not s.deprecated_by
        ]  # a deprecated skill keeps its callers but gains no new ones
        if not others:
            return None
        plans = [
            match_steps(run, others, self._sandbox(), self.limits, queries=self._queries(run))
            for run in runs
        ]
        shapes = {tuple((p.kind, p.name if p.kind == "skill" else "") for p in plan.steps)
                  for plan in plans}  # fmt: skip
        if len(shapes) != 1:
            return None
        (shape,) = shapes
        used = sorted({name for kind, name in shape if kind == "skill"})
        if not used or len(shape) == 1:
            return None
        composed_runs = []
        raw_calls: dict[tuple[str, str], tuple[Step, ...]] = {}
        for run, plan in zip(runs, plans, strict=True):
            steps = [s for s in run.steps if s.error is None]
            new_steps = [
                Step(p.name, dict(p.arguments), p.result)
                if p.kind == "skill"
                else steps[p.covers[0]]
                for p in plan.steps
            ]
            composed_runs.append(replace(run, steps=tuple(new_steps), recorded_sha256=run.sha256))
            raw_calls[(run.id, run.sha256)] = tuple(s.as_case_call() for s in steps)
        try:
            draft = compile_group(composed_runs, name=sid)
        except (CompileError, RecursionError, ValueError):
            return None
        cases = tuple(
            replace(c, calls=raw_calls[(c.trajectory_id, c.trajectory_sha256)]) for c in draft.cases
        )
        return replace(
            draft,
            tools=tuple(t for t in draft.tools if t not in used),
            requires=tuple(used),
            cases=cases,
            tool_specs={k: v for k, v in draft.tool_specs.items() if k not in used},
        )


def _unique_id(base: str, taken: set[str]) -> str:
    sid, n = base, 2
    while sid in taken:
        suffix = f"_{n}"
        sid, n = base[: 64 - len(suffix)].rstrip("_") + suffix, n + 1
    return sid


def _procedure(
    sid: str,
    action: str,
    ids: Sequence[str],
    skill: Skill | TestedSkill,
    version: str | None,
    transcript: tuple[str, ...] = (),
    *,
    effects: tuple[ToolEffect, ...] = (),
) -> ProcedureReport:
    if isinstance(skill, TestedSkill):
        source, cases, signature = skill.draft.source, skill.draft.cases, skill.validated.signature
        notes = skill.draft.notes
    else:
        source, cases, signature, notes = skill.source, skill.cases, skill.signature, skill.notes
        version = str(skill.version)
    generalised = [f"{len(notes)} argument(s) read from earlier results"] if notes else []
    try:  # parsing only, never running: the loops as a reviewer would read them
        loops = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.For)]
    except (SyntaxError, ValueError, RecursionError):
        loops = []
    generalised += [f"loop: for {ast.unparse(n.target)} in {ast.unparse(n.iter)}" for n in loops]
    generalised += [
        f"constant kept as a default: {p.name}={p.default}"
        for p in signature.params
        if p.has_default
    ]
    return ProcedureReport(
        sid, action, tuple(ids), len(cases), signature.render(), tuple(generalised), version,
        None, transcript, effects,
    )  # fmt: skip


def _what_changed(old: Skill, source: str, description: str) -> str:
    """One line for a commit message: the bump an update needed, and why."""
    kind = required_bump(old.source, old.description, source, description)
    if kind is None:
        return "new cases only"
    try:
        said = signature_diff(old.signature, read_signature(source)).changes
    except Exception:  # noqa: BLE001 - unreadable code reads as a breaking change
        said = ()
    if kind == "minor" and not said:
        said = ("code changed, signature unchanged",)
    if kind == "patch" and old.description != description:
        said = (*said, "description changed")
    return f"{kind}: {'; '.join(said) or 'code changed'}"


def _commit_message(
    changes: Sequence[StoredChange],
    entries: Sequence[LearnEntry],
    before: Mapping[str, Skill],
) -> str:
    known = {(e.trajectory_id, e.skill_id) for e in entries if e.action in ("added", "updated")}
    new_cases = sorted(
        {
            (c.trajectory_id, c.trajectory_sha256): c
            for change in changes
            for c in change.skill.draft.cases
            if (c.trajectory_id, change.skill.draft.id) in known
        }.values(),
        key=lambda c: (c.trajectory_id, c.trajectory_sha256),
    )
    added = [c.skill.draft.id for c in changes if c.action == "added"]
    updated = [c.skill.draft.id for c in changes if c.action == "updated"]
    parts = []
    if added:
        parts.append(f"add {len(added)} skill(s)")
    if updated:
        parts.append(f"update {len(updated)} skill(s)")
    lines = [f"skillbank learn: {', '.join(parts) or 'no change'}", ""]
    for change in changes:
        tested, stage, action = change.skill, change.stage, change.action
        version = change.version
        sid = tested.draft.id
        new = [
            e.trajectory_id
            for e in entries
            if e.skill_id == sid and e.action in ("added", "updated")
        ]
        old = before.get(sid) if action == "updated" else None
        moved = f"v{old.version} -> v{version}" if old and old.version != version else f"v{version}"
        lines.append(
            f"{action} {sid} {moved} ({stage}, {tested.cases_passed} case(s) replayed) "
            f"from {', '.join(new)}"
        )
        if old is not None:
            draft = tested.draft
            lines.append(f"  {_what_changed(old, draft.source, draft.description)}")
    if new_cases:
        lines += ["", "Trajectories:"]
        lines += [
            f"- {c.trajectory_id} sha256:{c.trajectory_sha256}"
            for c in new_cases[:MESSAGE_TRAJECTORIES]
        ]
        if len(new_cases) > MESSAGE_TRAJECTORIES:
            lines.append(
                f"- and {len(new_cases) - MESSAGE_TRAJECTORIES} more: each skill's cases.jsonl "
                "in this commit records every trajectory it was learned from, with its sha256"
            )
    return "\n".join(lines) + "\n"
