"""`SkillBank`: the learn → check → keep → run loop over one skill library.

``learn`` compiles each successful trajectory (`skillbank.compiler`), validates it with the
libcst policy (`skillbank.validate`), replays it in the sandbox (`skillbank.proving`) and stores
what passed in ``skills/`` as one git commit (`skillbank.library`). A trajectory whose code has
the same shape as a known skill becomes a new recorded case of that skill, never a duplicate.
``run`` executes a stored skill in the sandbox against host tools.

Every write is a git commit under the bank's lock. ``learn`` commits on a branch (see
`SkillBank.learn` and the ``learn_branch`` setting) with a message that names each trajectory
and its sha256 and says what changed; each skill's version moves as
`skillbank.versioning.required_bump` decides. ``history``, ``diff``, ``rollback`` and
``deprecate`` read and change a skill's versions; a deprecated skill keeps running, with a
warning, until it is removed. ``tool_specs`` offers the skills to a model as tools, and
``call_tool`` runs the one it called and answers with a ``role: "tool"`` message.
"""

from __future__ import annotations

import ast
import difflib
import fcntl
import functools
import hashlib
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sandbox import Limits, Sandbox, ToolCall
from skillbank.compiler import (
    compile_group,
    is_subpattern,
    pattern_key,
    pattern_of,
    pattern_tokens,
    skill_id_for,
)
from skillbank.compose import closure, grant, requirement_cycle, tools_needed
from skillbank.config import Config, load_config
from skillbank.errors import (
    CompileError,
    LibraryError,
    SkillArgumentError,
    SkillbankError,
    SkillNotFound,
)
from skillbank.ledger import LEDGER_FILE, Ledger
from skillbank.library import CONFTEST, SkillLibrary, git
from skillbank.maturity import SkillStats, StageChange, decide_stage, lower_bound, p95
from skillbank.maturity import posterior_mean as _posterior_mean
from skillbank.proving import Failed, prove
from skillbank.recognize import Plan, PlanResult, match_steps
from skillbank.signature import read_signature
from skillbank.skill import Case, Skill, SkillDraft, TestedSkill, ToolCallRecord
from skillbank.toolspec import (
    ToolFormat,
    canonical_schema,
    decode_arguments,
    render_tools,
    tool_error,
    tool_result,
)
from skillbank.trajectory import Outcome, Step, ToolSpec, Trajectory
from skillbank.validate import Rejected, code_shape, validate
from skillbank.versioning import (
    HistoryEntry,
    Version,
    bump,
    parse_version,
    required_bump,
    signature_diff,
)

if TYPE_CHECKING:
    from skillbank.compiler.llm import LLMCompiler
    from skillbank.search import Hit

__all__ = ["LearnEntry", "LearnReport", "ProcedureReport", "RunResult", "SkillBank"]

JSON = Any

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


@dataclass(frozen=True)
class LearnEntry:
    """What happened to one trajectory during `SkillBank.learn`."""

    #: The trajectory's id.
    trajectory_id: str
    #: "added" (a new skill), "updated" (a new case of a known skill), "unchanged" (already
    #: learned), "skipped" (the trajectory failed), or "rejected" (a check failed).
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

    def to_json(self) -> dict[str, JSON]:
        """The report as JSON data."""
        return {
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
    def skipped(self) -> list[LearnEntry]:
        """Trajectories that were not successes, so were not learned from."""
        return [e for e in self.entries if e.action == "skipped"]

    def to_json(self) -> dict[str, JSON]:
        """The report as JSON data (the CLI's ``--json`` output)."""
        return {
            "commit": self.commit,
            "branch": self.branch,
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


@dataclass(frozen=True)
class RunResult:
    """What running a skill did."""

    #: The skill that ran.
    skill_id: str
    #: True when it returned normally.
    ok: bool
    #: Its return value (JSON data; None on error).
    value: JSON
    #: The error message when it failed (policy, limit, tool or skill error).
    error: str | None
    #: The error's kind (the sandbox error class name), None when ok.
    error_type: str | None
    #: Every tool call it made, in order.
    tool_calls: tuple[ToolCall, ...]
    #: Wall-clock seconds.
    duration_s: float
    #: What the skill printed.
    output: str = ""
    #: A note for whoever called it, e.g. ``"deprecated: use other_skill ..."``.
    warning: str | None = None

    def to_json(self) -> dict[str, JSON]:
        """The result as JSON data (the CLI's ``--json`` output)."""
        return {
            "skill_id": self.skill_id,
            "ok": self.ok,
            "value": self.value,
            "error": self.error,
            "error_type": self.error_type,
            "tool_calls": [
                {
                    "tool": c.tool,
                    "arguments": c.arguments,
                    "result": c.result,
                    "error": c.error,
                    "duration_s": round(c.duration_s, 6),
                }
                for c in self.tool_calls
            ],
            "duration_s": round(self.duration_s, 6),
            "output": self.output,
            "warning": self.warning,
        }


class SkillBank:
    """A skill library rooted at a folder: ``skills/`` in git, local state in ``.skillbank/``.

    Example:
        >>> bank = SkillBank.init("my-bank")                     # doctest: +SKIP
        >>> report = bank.learn(load_trajectories("runs.jsonl"))  # doctest: +SKIP
        >>> bank.run(report.added[0], {"email": "a@b.c"}, tools)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, config: Config | None = None) -> None:
        """Open an existing bank.

        Raises:
            LibraryError: when the folder is not a bank (run `SkillBank.init` first).
        """
        self.root = Path(path).resolve()
        self.config = config or load_config(self.root)
        if not (self.root / self.config.skills_dir).is_dir():
            raise LibraryError(
                f"{self.root} is not a skill bank (no {self.config.skills_dir}/ folder); "
                f"create one with `skillbank init {path}`"
            )
        self.library = SkillLibrary(self.root, self.config.skills_dir)
        self._sandbox: Sandbox | None = None
        self._llm: LLMCompiler | None = None
        self._llm_loaded = False

    @classmethod
    def init(cls, path: str | Path, *, config: Config | None = None) -> SkillBank:
        """Create a bank: the folder, ``skills/``, and a git repository if there is none.

        Idempotent: an existing bank is opened as it is.
        """
        root = Path(path).resolve()
        cfg = config or load_config(root)
        try:
            (root / cfg.skills_dir).mkdir(parents=True, exist_ok=True)
            state = root / cfg.state_dir
            state.mkdir(exist_ok=True)
            ignore = state / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# local state of skillbank: never committed\n*\n")
            conftest = root / cfg.skills_dir / "conftest.py"
            if not conftest.exists():
                conftest.write_text(CONFTEST, encoding="utf-8")
        except OSError as exc:
            raise LibraryError(f"cannot create the bank at {root}: {exc}") from None
        inside = git(root, "rev-parse", "--is-inside-work-tree", check=False)
        ignored = git(root, "check-ignore", "-q", str(root / cfg.skills_dir), check=False)
        if inside.returncode != 0 or inside.stdout.strip() != "true" or ignored.returncode == 0:
            # Not in a repository, or in a folder the enclosing repository ignores (like the
            # demo inside a clone of skillbank): the bank gets a repository of its own.
            git(root, "init", "-q")
        return cls(root, config=cfg)

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def sandbox(self) -> Sandbox:
        """The bank's sandbox (warm worker processes, started on first use)."""
        if self._sandbox is None:
            self._sandbox = Sandbox(self.limits)
        return self._sandbox

    @property
    def limits(self) -> Limits:
        """Sandbox limits from the configuration."""
        return Limits(timeout_s=self.config.timeout_s, memory_mb=self.config.memory_mb)

    def close(self) -> None:
        """Stop the sandbox's worker processes."""
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        if self._llm is not None:
            self._llm.close()
        self._llm, self._llm_loaded = None, False

    def __enter__(self) -> SkillBank:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # One writer at a time per bank; other processes wait instead of interleaving commits.
        state = self.root / self.config.state_dir
        state.mkdir(exist_ok=True)
        fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # --- reading ------------------------------------------------------------------------

    def skills(self) -> list[Skill]:
        """Every stored skill, sorted by id."""
        return self.library.load_all()

    def get(self, skill_id: str) -> Skill:
        """One stored skill (raises SkillNotFound with the known ids)."""
        return self.library.load(skill_id)

    # --- learning -----------------------------------------------------------------------

    def outcome_counts(
        self, versions: Mapping[str, str] | None = None
    ) -> dict[str, tuple[int, int]]:
        """The ledger's (successes, failures) per skill (with ``versions``: of those versions
        only); empty when there is no ledger yet or it cannot be read. The ledger is local
        statistics: learning and search must work without it, and reading never creates it."""
        if not (self.root / self.config.state_dir / LEDGER_FILE).is_file():
            return {}
        try:
            return self.ledger.counts(versions)
        except (LibraryError, sqlite3.Error):
            return {}

    def _stage(self, sid: str, version: str, cases: int, previous: str | None) -> str:
        # The same rule as `update_stages`, so learning never undoes what outcomes decided;
        # a new version starts with a clean record (the failures were of the old code).
        from skillbank.maturity import decide_stage

        successes, failures = self.outcome_counts({sid: version}).get(sid, (0, 0))
        return decide_stage(previous or "cognitive", successes, failures, cases, self.config)

    def learn(
        self, trajectories: Iterable[Trajectory], *, branch: str | None = None
    ) -> LearnReport:
        """Group trajectories into procedures, generalise each into a skill, check, store.

        Trajectories are grouped by their call pattern (repeats folded; see
        `skillbank.compiler.generalize`). A group is anti-unified together with the recorded
        cases of the skill that already holds its pattern, so a new run of a known procedure
        becomes a new case of that skill (and a new version only if the code must change),
        never a near-duplicate. Each resulting skill is validated and replays every case in
        the sandbox before all changes land in one commit. When the deterministic compiler
        cannot produce a skill that passes and an LLM is configured, the LLM proposes one
        (checked the same way). Failed trajectories are skipped; trajectories whose group
        cannot be compiled are rejected with the reason; neither stops the others. The
        result does not depend on the order of the input.

        A changed skill's version moves as `skillbank.versioning.required_bump` says (a new
        skill starts at 1.0.0; new cases alone move nothing). The commit message names every
        new trajectory with its sha256 and says what changed in each skill.

        Args:
            trajectories: The runs to learn from.
            branch: Where the commit goes (default: the ``learn_branch`` setting, "auto").
                "current": the checked-out branch. "auto": the current branch when the bank
                has no commit yet or the branch name starts with ``skillbank/``; otherwise a
                new branch ``skillbank/learn-<UTC yyyymmdd-HHMMSS>-<8 hex>`` made from HEAD
                (the hex: sha256 over the sorted hashes of the new trajectories). Any other
                name: that branch, created from HEAD if missing; an existing one must point
                to HEAD. Branches are switched only when there is something to commit, and
                switching never changes a file in the working tree.

        Raises:
            LibraryError: when the library cannot be read or written, or the branch cannot
                be used (nothing is changed).
        """
        given = list(trajectories)
        wanted = branch or self.config.learn_branch
        if wanted not in ("auto", "current"):
            _check_branch_name(self.root, wanted)
        with self._lock():
            existing = {s.id: s for s in self.library.load_all()}
            by_key: dict[str, str] = {}
            for skill in existing.values():
                if skill.cases:
                    steps = [Step(c.tool, c.arguments, c.result) for c in skill.cases[0].calls]
                    by_key.setdefault(pattern_key(steps), skill.id)
            entries: dict[int, LearnEntry] = {}
            groups: dict[str, list[int]] = {}
            for i, t in enumerate(given):
                steps = [s for s in t.steps if s.error is None]
                if not t.outcome.success:
                    detail = f": {t.outcome.detail}" if t.outcome.detail else ""
                    entries[i] = LearnEntry(
                        t.id, "skipped", None, f"the trajectory did not succeed{detail}; "
                        "only successful trajectories become skills",
                    )  # fmt: skip
                elif not steps:
                    entries[i] = LearnEntry(
                        t.id, "rejected", None, "it made no successful tool call, so there is "
                        "nothing to learn",
                    )  # fmt: skip
                else:
                    groups.setdefault(pattern_key(steps), []).append(i)

            taken = set(existing)
            procedures: list[ProcedureReport] = []
            changes: list[tuple[TestedSkill, str, str, str, str | None]] = []
            versions: dict[str, str] = {}

            def learn_group(members: list[int], old: Skill | None, final: bool) -> bool:
                # One procedure: generalise, check, record; False (recording nothing) when
                # it fails and the caller will retry its parts separately (final=False).
                members = sorted(members, key=lambda i: (given[i].id, given[i].sha256))
                known = {c.trajectory_sha256 for c in old.cases} if old else set()
                new: list[int] = []
                unchanged: list[int] = []
                for i in members:
                    if given[i].sha256 in known:
                        unchanged.append(i)
                    else:
                        known.add(given[i].sha256)
                        new.append(i)
                for i in unchanged:
                    entries[i] = LearnEntry(given[i].id, "unchanged", old.id if old else None)
                if not new:
                    if old is not None:
                        procedures.append(_procedure(old.id, "unchanged", [], old, None))
                    return True
                if old is not None:
                    sid = old.id
                else:
                    longest = max(
                        new, key=lambda i: (len(given[i].steps), given[i].id, given[i].sha256)
                    )
                    tools = [s.tool for s in given[longest].steps if s.error is None]
                    sid = _unique_id(skill_id_for([t for b in pattern_of(tools) for t in b]), taken)
                runs = [_from_case(c, old.tool_specs) for c in old.cases] if old else []
                runs += [given[i] for i in new]
                tested, problem, transcript = self._generalise(sid, runs, old, existing)
                ids = [given[i].id for i in new]
                if tested is None:
                    if not final:
                        return False
                    reason = problem or "unknown"
                    for i in new:
                        entries[i] = LearnEntry(given[i].id, "rejected", old.id if old else None,
                                                reason)  # fmt: skip
                    procedures.append(
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
                        )  # fmt: skip
                    )
                    return True
                taken.add(sid)
                action = "updated" if old is not None else "added"
                for i in new:
                    entries[i] = LearnEntry(given[i].id, action, sid)
                draft = tested.draft
                if old is None:
                    version = str(Version(1, 0, 0))
                else:
                    kind = required_bump(old.source, old.description, draft.source,
                                         draft.description)  # fmt: skip
                    previous = parse_version(old.version)
                    version = str(bump(previous, kind) if kind else previous)
                stage = self._stage(sid, version, len(draft.cases), old.stage if old else None)
                versions[sid] = version
                # Learning more runs of a deprecated skill keeps it deprecated.
                changes.append((tested, version, stage, action, old.deprecated_by if old else None))
                procedures.append(
                    _procedure(
                        sid,
                        "created" if old is None else "updated",
                        ids,
                        tested,
                        version,
                        transcript,
                    )  # fmt: skip
                )
                return True

            for members, old, parts in _procedures(given, groups, existing, by_key):
                if not learn_group(members, old, final=len(parts) == 1):
                    # A merged procedure (runs that left out some blocks) did not compile or
                    # check: learn the runs of each call pattern on their own instead.
                    for part in parts:
                        learn_group(part, old if old and set(part) & set(parts[0]) else None,
                                    final=True)  # fmt: skip
            ordered_entries = [entries[i] for i in range(len(given))]
            graph = {sid: skill.requires for sid, skill in existing.items()}
            graph.update({t.draft.id: t.draft.requires for t, *_ in changes})
            cycle = requirement_cycle(graph)
            if cycle:
                raise LibraryError(
                    f"skills would require each other in a cycle ({' -> '.join(cycle)}); "
                    "fix the 'requires' of those skills before learning more"
                )
            commit, on = None, None
            if changes:
                new_hashes = [given[i].sha256 for i, e in entries.items()
                              if e.action in ("added", "updated")]  # fmt: skip
                on, undo = self._enter_branch(wanted, new_hashes)
                try:
                    commit = self.library.store(
                        changes, _commit_message(changes, ordered_entries, existing)
                    )
                except BaseException:
                    undo()
                    raise
                if commit is None:
                    undo()  # byte-identical after all: stay where we were
        return LearnReport(
            tuple(ordered_entries),
            commit,
            versions,
            tuple(procedures),
            on if commit else None,
        )

    def _enter_branch(
        self, wanted: str, new_hashes: Sequence[str]
    ) -> tuple[str | None, Callable[[], None]]:
        """Put HEAD on the branch a learn commit goes to; return its name and an undo.

        Only ever switches to a branch that points to HEAD's commit (or makes one from it),
        so the working tree, dirty files included, is never touched.
        """
        root = self.root
        current = git(root, "symbolic-ref", "--short", "-q", "HEAD", check=False).stdout.strip()
        head = git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).stdout.strip()
        if wanted == "current":
            return current or None, _nothing
        if wanted == "auto":
            if not head or current.startswith("skillbank/"):
                return current or None, _nothing
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            digest = hashlib.sha256("\n".join(sorted(set(new_hashes))).encode()).hexdigest()
            target = base = f"skillbank/learn-{stamp}-{digest[:8]}"
            n = 2
            while _branch_commit(root, target) is not None:
                target, n = f"{base}-{n}", n + 1
        else:
            target = wanted
            if target == current:
                return current, _nothing
        points_to = _branch_commit(root, target)
        if points_to is not None and (not head or points_to != head):
            raise LibraryError(
                f"branch {target!r} exists but points to {points_to[:12]}, not to HEAD "
                f"({head[:12] or 'no commit yet'}), so switching to it would change files in "
                f"the working tree; check it out yourself (`git switch {target}`) and learn "
                "again, or pass --branch current or a new branch name"
            )
        git(root, "switch", "-q", *(() if points_to else ("-c",)), target)

        def undo() -> None:
            if current and head:
                git(root, "switch", "-q", current, check=False)
            elif current:  # an unborn branch: only the symbolic ref moved
                git(root, "symbolic-ref", "HEAD", f"refs/heads/{current}", check=False)
            else:
                git(root, "switch", "-q", "--detach", head, check=False)
            if points_to is None and head:
                git(root, "branch", "-q", "-D", target, check=False)

        return target, undo

    def _check(
        self, draft: SkillDraft, library: Mapping[str, Skill] | None = None
    ) -> TestedSkill | Failed | Rejected:
        validated = validate(draft)
        if isinstance(validated, Rejected):
            return validated
        return prove(validated, self.sandbox, self.limits, library)

    def _generalise(
        self,
        sid: str,
        runs: list[Trajectory],
        old: Skill | None,
        library: Mapping[str, Skill],
    ) -> tuple[TestedSkill | None, str | None, tuple[str, ...]]:
        """Compile one procedure's runs and check the skill; fall back to the LLM if set up.

        Returns the tested skill (or None), the reason it failed, and the LLM's transcript.
        ``library`` is the library as it was before this learn: composition uses only skills
        from it, so a batch gives the same skills whatever its order.
        """
        problem: str | None = None
        try:
            draft = compile_group(runs, name=sid)
        except (CompileError, RecursionError, ValueError) as exc:
            draft, problem = None, str(exc)
        composed = self._compose(sid, runs, library) if old is None or old.requires else None
        if composed is not None and (
            draft is None
            or len(read_signature(composed.source).params)
            <= len(read_signature(draft.source).params)
        ):
            checked = self._check(composed, library)
            if isinstance(checked, TestedSkill):
                return checked, None, ()
        if draft is not None and old is not None and not old.requires:
            ours = compile_group(runs[: len(old.cases)], name=sid) if old.cases else None
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
                checked = self._check(draft, library)
                if isinstance(checked, TestedSkill):
                    return checked, None, ()
                return None, _problem_text(checked), ()
        if draft is not None:
            checked = self._check(draft, library)
            if isinstance(checked, TestedSkill):
                return self._better_docs(checked, runs, library), None, ()
            problem = _problem_text(checked)
        llm = self.llm
        if llm is None:
            return None, problem, ()
        result = llm.compile(sid, runs, lambda d: _problem_text(self._check(d)))
        if result.draft is None:
            return (
                None,
                f"{problem}; the LLM compiler did not fix it: {result.error}",
                (result.transcript),
            )
        checked = self._check(result.draft)
        if isinstance(checked, TestedSkill):
            return checked, None, result.transcript
        return None, _problem_text(checked), result.transcript

    def _better_docs(
        self, tested: TestedSkill, runs: list[Trajectory], library: Mapping[str, Skill]
    ) -> TestedSkill:
        """With ``llm_docs`` on, let the LLM rename parameters and rewrite the docstring.

        The code must stay the same (the compiler checks that); the cases' arguments are
        renamed by position; the result is validated and replayed again and kept only if it
        passes. Any failure keeps the deterministic skill.
        """
        llm = self.llm if self.config.llm_docs else None
        if llm is None:
            return tested
        draft = tested.draft
        better = llm.improve_docs(draft.source, runs)
        if better is None:
            return tested
        before = [p.name for p in tested.validated.signature.params]
        after = [p.name for p in read_signature(better).params]
        if len(before) != len(after):
            return tested
        rename = dict(zip(before, after, strict=True))
        cases = tuple(
            replace(c, args={rename.get(k, k): v for k, v in c.args.items()}) for c in draft.cases
        )
        summary = read_signature(better).docstring.split("\n", 1)[0].strip()
        candidate = replace(draft, source=better, cases=cases,
                            description=summary or draft.description)  # fmt: skip
        checked = self._check(candidate, library)
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
        plans = [match_steps(run, others, self.sandbox, self.limits) for run in runs]
        shapes = {tuple((p.kind, p.name if p.kind == "skill" else "") for p in plan.steps)
                  for plan in plans}  # fmt: skip
        if len(shapes) != 1:
            return None
        (shape,) = shapes
        used = sorted({name for kind, name in shape if kind == "skill"})
        if not used or len(shape) == 1:
            return None
        composed_runs = []
        raw_calls: dict[tuple[str, str], tuple[ToolCallRecord, ...]] = {}
        for run, plan in zip(runs, plans, strict=True):
            steps = [s for s in run.steps if s.error is None]
            new_steps = [
                Step(p.name, dict(p.arguments), p.result)
                if p.kind == "skill"
                else steps[p.covers[0]]
                for p in plan.steps
            ]
            composed_runs.append(replace(run, steps=tuple(new_steps), recorded_sha256=run.sha256))
            raw_calls[(run.id, run.sha256)] = tuple(
                ToolCallRecord(s.tool, dict(s.arguments), s.result) for s in steps
            )
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

    @property
    def llm(self) -> LLMCompiler | None:
        """The optional LLM compiler: None unless ``llm_model`` is configured."""
        if not self._llm_loaded:
            self._llm_loaded = True
            if self.config.llm_model:
                from skillbank.compiler.llm import LLMCompiler  # imports openai only when used

                self._llm = LLMCompiler.from_config(self.config)
        return self._llm

    # --- recognition --------------------------------------------------------------------

    def match(self, trajectory: Trajectory) -> Plan:
        """The shortest plan of skill calls and raw tool calls that reproduces a trajectory.

        Each skill step was checked by running the skill in the sandbox against the
        trajectory's own results; see `skillbank.recognize`.
        """
        return match_steps(trajectory, self.skills(), self.sandbox, self.limits, self.check_args)

    def execute(self, plan: Plan, tools: Mapping[str, Callable[..., JSON]]) -> PlanResult:
        """Run a plan against host tools: skills in the sandbox, raw steps directly.

        Stops at the first step that fails; the result says which and why.
        """
        values: list[JSON] = []
        calls: list[ToolCall] = []
        for n, step in enumerate(plan.steps, start=1):
            if step.kind == "skill":
                result = self.run(step.name, step.arguments, tools)
                calls += result.tool_calls
                if not result.ok:
                    return PlanResult(
                        False,
                        tuple(values),
                        tuple(calls),
                        f"step {n} ({step.name}): {result.error}",
                    )
                values.append(result.value)
                continue
            function = tools.get(step.name)
            if function is None:
                raise SkillArgumentError(
                    f"plan step {n} calls tool {step.name!r}, which was not given"
                )
            started = time.monotonic()
            try:
                value = function(**dict(step.arguments))
            except Exception as exc:  # noqa: BLE001 - a failing tool ends the plan, as a value
                calls.append(
                    ToolCall(
                        step.name, dict(step.arguments), None, str(exc), time.monotonic() - started
                    )
                )
                why = f"step {n} ({step.name}): {type(exc).__name__}: {exc}"
                return PlanResult(False, tuple(values), tuple(calls), why)
            calls.append(
                ToolCall(step.name, dict(step.arguments), value, None, time.monotonic() - started)
            )
            values.append(value)
        return PlanResult(True, tuple(values), tuple(calls))

    # --- versions -----------------------------------------------------------------------

    def history(self, skill_id: str) -> list[HistoryEntry]:
        """The commits that changed a skill on the current branch, newest first.

        Raises:
            SkillNotFound: the skill is neither in the library nor in its history.
        """
        entries = self.library.history(skill_id)
        if not entries and skill_id not in self.library.ids():
            raise SkillNotFound(skill_id, self.library.ids())
        return entries

    def _at(self, skill_id: str, spec: str) -> tuple[Skill, dict[str, str], str]:
        """A skill at a version (``"1.2.0"``, ``"1"``, ``"v1.2.0"``) or a git revision.

        A version means the newest commit on the current branch holding it. Returns the
        skill, the texts of its files, and a label for readers.
        """
        entries = self.library.history(skill_id)
        try:
            wanted: str | None = str(parse_version(spec))
        except ValueError:
            wanted = None
        found = next((e for e in entries if e.version == wanted), None)
        if found is not None:
            rev, label = found.commit, f"{wanted} ({found.commit[:12]})"
        else:
            known = ", ".join(dict.fromkeys(e.version for e in entries)) or "none committed"
            try:
                rev = self.library.commit_of(spec)
            except LibraryError:
                if skill_id not in self.library.ids() and not entries:
                    raise SkillNotFound(skill_id, self.library.ids()) from None
                what = f"no version {wanted}" if wanted else f"no version {spec!r}"
                raise LibraryError(
                    f"{skill_id!r} has {what} on this branch (its versions: {known}), and "
                    f"{spec!r} is not a git revision either; see `skillbank history {skill_id}`"
                ) from None
            label = f"{spec} ({rev[:12]})"
        texts = self.library.files_at(skill_id, rev)
        skill = self.library.load_at(skill_id, rev)
        if texts is None or skill is None:
            if skill_id not in self.library.ids() and not entries:
                raise SkillNotFound(skill_id, self.library.ids())
            raise LibraryError(f"{skill_id!r} did not exist at {spec!r} ({rev[:12]})")
        return skill, texts, label

    def diff(self, skill_id: str, a: str | None = None, b: str | None = None) -> str:
        """A unified diff of a skill's files between two versions, with what the change means.

        ``a`` and ``b`` are versions (``"1.2.0"``, ``"1"``, ``"v1.2.0"``) or git revisions.
        By default ``b`` is the working tree and ``a`` the version before ``b``'s (nothing,
        for a first version). The header says the version bump the change needs and lists
        the signature changes, breaking or not; ``skill.py`` comes first.

        Raises:
            SkillNotFound: no such skill.
            LibraryError: a version or revision that does not hold the skill.
        """
        if b is None:
            new, new_texts, new_label = (
                self.get(skill_id),
                self.library.files(skill_id),
                "working tree",
            )
        else:
            new, new_texts, new_label = self._at(skill_id, b)
        old: Skill | None
        old_texts: dict[str, str]
        if a is None:
            old, old_texts, old_label = None, {}, "nothing (first version)"
            mine = parse_version(new.version)
            for entry in self.library.history(skill_id):
                try:
                    earlier = parse_version(entry.version) < mine
                except ValueError:
                    continue
                if earlier:
                    old, old_texts, old_label = self._at(skill_id, entry.commit)
                    old_label = f"{entry.version} ({entry.commit[:12]})"
                    break
        else:
            old, old_texts, old_label = self._at(skill_id, a)
        rel = f"{self.library.rel}/{skill_id}"
        head = [f"skillbank diff {skill_id}: {old_label} -> {new_label}"]
        if old is None:
            head.append(f"new skill: v{new.version}, signature {new.signature.render()}")
        else:
            change = signature_diff(old.signature, new.signature)
            kind = required_bump(old.source, old.description, new.source, new.description)
            head.append(
                f"version {old.version} -> {new.version}; the change needs "
                + (f"a {kind} bump" if kind else "no bump (cases or metadata only)")
                + ("; the signature change is BREAKING" if change.breaking else "")
            )
            head += [f"  - {line}" for line in change.changes]
        body: list[str] = []
        for name in ("skill.py", "SKILL.md", "cases.jsonl", "tools.json"):
            body += difflib.unified_diff(
                _lines(old_texts.get(name, "")),
                _lines(new_texts.get(name, "")),
                fromfile=f"a/{rel}/{name}" if old_texts else "/dev/null",
                tofile=f"b/{rel}/{name}",
                lineterm="",
            )
        if not body:
            body = ["(no differences)"]
        return "\n".join([*head, "", *body]) + "\n"

    def rollback(self, skill_id: str, version: str) -> str:
        """Write the files of an earlier version back as a new, higher version; commit.

        ``version`` is a version (``"1.2.0"``) or a git revision. The restored code, cases,
        description and deprecation are those of that version; its version number is the
        current one bumped as the change needs (at least a patch: versions never go back).
        The restored skill is validated and replayed against today's library first. The
        commit goes on the current branch.

        Returns:
            The commit's sha.

        Raises:
            SkillNotFound: no such skill.
            LibraryError: no such version, nothing to roll back, or the old version no longer
                passes its checks (nothing is changed).
        """
        with self._lock():
            current = self.get(skill_id)
            old, _, label = self._at(skill_id, version)
            if replace(old, version=current.version, stage=current.stage) == current:
                raise LibraryError(
                    f"{skill_id!r} v{current.version} already holds what {label} held; "
                    "nothing to roll back"
                )
            library = {s.id: s for s in self.skills()}
            library[skill_id] = old
            cycle = requirement_cycle({sid: s.requires for sid, s in library.items()})
            if cycle:
                raise LibraryError(
                    f"restoring {skill_id!r} {label} would make skills require each other in "
                    f"a cycle ({' -> '.join(cycle)}); nothing was changed"
                )
            draft = SkillDraft(old.id, old.source, old.description, old.tools, old.cases,
                               old.tool_specs, old.requires, old.notes)  # fmt: skip
            problem = _problem_text(self._check(draft, library))
            if problem:
                raise LibraryError(
                    f"{skill_id!r} {label} no longer passes its checks, so it was not "
                    f"restored: {problem}"
                )
            kind = required_bump(current.source, current.description, old.source, old.description)
            new_version = str(bump(parse_version(current.version), kind or "patch"))
            stage = self._stage(old.id, new_version, len(old.cases), current.stage)
            restored = old.version
            lines = [
                f"skillbank rollback {skill_id} to {new_version} (restores code of {restored})",
                "",
                f"{skill_id} v{current.version} -> v{new_version}: the files of {label} are "
                f"written back ({kind or 'patch'} bump; versions never go backwards).",
            ]
            lines += [f"  - {c}" for c in signature_diff(current.signature, old.signature).changes]
            commit = self.library.store(
                [(old, new_version, stage, "rolled back", old.deprecated_by)],
                "\n".join(lines) + "\n",
            )
        if commit is None:  # cannot happen: the version always moves
            raise LibraryError(f"rolling back {skill_id!r} changed nothing")
        return commit

    def deprecate(self, old_id: str, *, by: str) -> str:
        """Mark a skill as replaced by another; commit (a patch bump of the old skill).

        The deprecated skill keeps running, and so do the skills that require it, until it
        is removed; `run` returns a warning naming its replacement, and new skills are never
        composed from it. The commit goes on the current branch.

        Returns:
            The commit's sha (the existing one, when it is already deprecated by ``by``).

        Raises:
            SkillNotFound: either skill does not exist.
            LibraryError: a skill replacing itself, or a chain of replacements in a circle.
        """
        with self._lock():
            old = self.get(old_id)
            new = self.get(by)
            chain, step = [old_id, by], new
            while step.deprecated_by and step.deprecated_by not in chain:
                chain.append(step.deprecated_by)
                step = self.get(step.deprecated_by)
            if old_id == by or step.deprecated_by == old_id:
                loop = " -> ".join([*chain, old_id] if old_id != by else [old_id, by])
                raise LibraryError(
                    f"{old_id!r} cannot be deprecated by {by!r}: the replacements would go "
                    f"round in a circle ({loop}); pick a skill that is not deprecated"
                )
            if old.deprecated_by == by:
                entries = self.library.history(old_id)
                if entries and entries[0].deprecated_by == by:
                    return entries[0].commit
            version = str(bump(parse_version(old.version), "patch"))
            callers = sorted(s.id for s in self.skills() if old_id in s.requires)
            lines = [
                f"skillbank deprecate {old_id}: use {by} instead",
                "",
                f"{old_id} v{old.version} -> v{version} is deprecated in favour of {by} "
                f"v{new.version}. It keeps running, and so do the skills that require it, "
                "until it is removed; running it warns.",
            ]
            if callers:
                lines.append(f"Required by: {', '.join(callers)}")
            commit = self.library.store(
                [(old, version, old.stage, "deprecated", by)], "\n".join(lines) + "\n"
            )
        if commit is None:  # cannot happen: the version always moves
            raise LibraryError(f"deprecating {old_id!r} changed nothing")
        return commit

    # --- running ------------------------------------------------------------------------

    def check_args(self, skill: Skill, args: Mapping[str, JSON]) -> dict[str, JSON]:
        """Check arguments against the skill's signature; return them as a plain dict.

        Raises:
            SkillArgumentError: naming the unknown, missing or mistyped argument.
        """
        if not isinstance(args, Mapping):
            raise SkillArgumentError(
                f"arguments for {skill.id!r} must be a JSON object, got {type(args).__name__}"
            )
        params = {p.name: p for p in skill.signature.params}
        usage = skill.signature.render()
        unknown = sorted(set(args) - set(params))
        if unknown:
            raise SkillArgumentError(
                f"{skill.id!r} has no parameter {unknown[0]!r}; its signature is {usage}"
            )
        missing = [p for p in params.values() if not p.has_default and p.name not in args]
        if missing:
            raise SkillArgumentError(
                f"{skill.id!r} needs argument {missing[0].name!r} ({missing[0].annotation}); "
                f"its signature is {usage}"
            )
        checked = dict(args)
        for name, value in args.items():
            allowed = _TYPES.get(params[name].annotation)
            bad_bool = isinstance(value, bool) and params[name].annotation in ("int", "float")
            if (
                params[name].annotation == "int"
                and isinstance(value, float)
                and value.is_integer()
                and abs(value) < 2**53
            ):
                checked[name] = int(value)  # JSON Schema's integer: models may send 2.0
                continue
            if allowed and (not isinstance(value, allowed) or bad_bool):
                raise SkillArgumentError(
                    f"argument {name!r} of {skill.id!r} must be {params[name].annotation}, "
                    f"got {value!r} ({type(value).__name__})"
                )
        return checked

    def run(
        self,
        skill_id: str,
        args: Mapping[str, JSON],
        tools: Mapping[str, Callable[..., JSON]],
        *,
        limits: Limits | None = None,
        caller: str | None = None,
    ) -> RunResult:
        """Run a stored skill in the sandbox with ``args``, reaching only its declared tools.

        A failure inside the skill (its own error, a tool that raised, a limit) comes back in
        the result; misuse (unknown skill, bad arguments, a declared tool not provided) raises.

        Every run that reaches the sandbox is one row of the ledger (`skillbank.ledger`):
        version, ok, latency, error type and message, and ``caller`` (who called: ``"agent"``,
        an MCP client, ...). Misuse is not recorded: it says nothing about the skill. A ledger
        that cannot be written never fails the call (it is reported once on stderr).

        Raises:
            SkillNotFound: no such skill.
            SkillArgumentError: the arguments do not fit the signature, or ``tools`` lacks a
                tool the skill declares.
        """
        skill = self.get(skill_id)
        checked = self.check_args(skill, args)
        limits = limits or self.limits
        library = {s.id: s for s in self.skills()} if skill.requires else {}
        try:
            granted = grant(skill.tools, skill.requires, tools, library, self.sandbox, limits)
        except SkillArgumentError as exc:
            raise SkillArgumentError(
                f"{skill_id!r} calls tools {', '.join(skill.tools)}: {exc}"
            ) from None
        result = self.sandbox.run(skill.source, skill.id, checked, granted, limits,
                                  skill_id=skill.id)  # fmt: skip
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        self._record(skill, result.ok, result.duration_s, error, caller)
        return RunResult(
            skill_id=skill.id,
            ok=result.ok,
            value=result.value,
            error=None if result.error is None else str(result.error),
            error_type=None if result.error is None else type(result.error).__name__,
            tool_calls=result.tool_calls,
            duration_s=result.duration_s,
            output=result.output,
            warning=(
                f"deprecated: use {skill.deprecated_by} ({skill.id} keeps working until it "
                "is removed)"
                if skill.deprecated_by
                else None
            ),
        )

    def reflex(
        self,
        task_text: str,
        args: Mapping[str, JSON],
        tools: Mapping[str, Callable[..., JSON]],
    ) -> RunResult | None:
        """Run an autonomous skill straight away when ``task_text`` clearly asks for it.

        No model plans the steps, so it errs on the side of not running: a task with a
        negation ("do not ...", "without ...") or fewer than three words besides the argument
        values never runs. The best `skillbank.search` hit must be an autonomous,
        non-deprecated skill that *covers* the task: at least ``reflex_min_relevance`` of
        the task's words (`skillbank.search.tokenize`, leaving out the words of the argument
        values) occur in the skill's document (`skillbank.search.skill_doc`), leading the
        second hit's coverage by ``reflex_min_margin``. (A hit's own ``relevance`` is relative
        to the query's best match, so it cannot say that no skill fits.) ``args`` must fit
        the signature and ``tools`` hold the tools the skill needs. The run is recorded with
        ``caller="reflex"``.

        Returns:
            The run's result (which may be a failure of the skill), or None when no skill
            qualifies or the arguments or tools do not fit it (then nothing ran).
        """
        from skillbank.search import search, skill_doc, tokenize  # numpy, bm25s: when needed

        hits = search(self, task_text, k=2)
        if not hits:
            return None
        values: set[str] = set()
        for value in args.values() if isinstance(args, Mapping) else ():
            if isinstance(value, str | int | float):
                values.update(tokenize(str(value)))
        if _NEGATION & set(re.findall(r"[a-z]+(?:'[a-z]+)?", task_text.lower())):
            return None  # "do not cancel ...": a model must read that, not a reflex
        words = [w for w in dict.fromkeys(tokenize(task_text)) if w not in values]
        if len(words) < _REFLEX_MIN_WORDS:
            return None  # too little said to be sure what is asked

        def coverage(skill: Skill) -> float:
            document = set(tokenize(skill_doc(skill).text))
            return sum(w in document for w in words) / len(words)

        try:
            skill = self.get(hits[0].skill_id)  # its stage from SKILL.md, never a cached one
            if skill.stage != "autonomous" or skill.deprecated_by:
                return None
            best = coverage(skill)
            if best < self.config.reflex_min_relevance:
                return None
            if len(hits) > 1 and best - coverage(self.get(hits[1].skill_id)) < (
                self.config.reflex_min_margin
            ):
                return None  # two skills fit the task about as well: let the model choose
            self.check_args(skill, args)
            return self.run(skill.id, args, tools, caller="reflex")
        except (SkillArgumentError, SkillNotFound):
            return None

    # --- the ledger and stages ----------------------------------------------------------

    def search(
        self, text: str, k: int = 5, *, thompson: bool = False, seed: int | None = None
    ) -> list[Hit]:
        """The ``k`` skills most relevant to ``text``, ranked by relevance times expected
        success (see `skillbank.search`)."""
        from skillbank.search import search

        return search(self, text, k, thompson=thompson, seed=seed)

    @functools.cached_property
    def ledger(self) -> Ledger:
        """The bank's ledger of skill calls (``<state_dir>/ledger.sqlite``)."""
        return Ledger.in_state_dir(self.root / self.config.state_dir)

    def _record(
        self, skill: Skill, ok: bool, latency_s: float, error: str | None, caller: str | None
    ) -> None:
        try:
            self.ledger.record(
                skill.id,
                ok=ok,
                version=skill.version,
                latency_s=latency_s,
                error=error,
                caller=caller,
            )
        except Exception as exc:  # noqa: BLE001 - statistics must never fail a skill call
            where = self.root / self.config.state_dir
            if where not in _LEDGER_WARNED:
                _LEDGER_WARNED.add(where)
                print(
                    f"skillbank: cannot record calls in the ledger under {where} "
                    f"({type(exc).__name__}: {exc}); skill calls go on, unrecorded",
                    file=sys.stderr,
                )

    def stats(self, skill_id: str | None = None) -> list[SkillStats]:
        """How each skill (or just ``skill_id``) has done, from the ledger, sorted by id.

        Skills with no calls are listed too (all zero); ledger rows of a skill no longer in
        the bank are listed with ``stage=None``.

        Raises:
            SkillNotFound: ``skill_id`` is neither in the bank nor in the ledger.
        """
        skills = {s.id: s for s in self.skills()}
        if skill_id is not None:
            ids = [skill_id]
            if skill_id not in skills and not self.ledger.outcomes(skill_id):
                self.get(skill_id)  # raises SkillNotFound, naming the known ids
        else:
            ids = sorted(set(skills) | set(self.ledger.counts()))
        out = []
        for sid in ids:
            rows = self.ledger.outcomes(sid)
            s = sum(r.ok for r in rows)
            f = len(rows) - s
            latencies = [r.latency_s for r in rows if r.latency_s is not None]
            errors = [r.error for r in rows if r.error]
            skill = skills.get(sid)
            out.append(
                SkillStats(
                    skill_id=sid,
                    stage=skill.stage if skill else None,
                    earned=(
                        decide_stage(skill.stage, s, f, len(skill.cases), self.config)
                        if skill
                        else None
                    ),
                    calls=len(rows),
                    successes=s,
                    failures=f,
                    mean=_posterior_mean(s, f),
                    lower_bound=lower_bound(s, f),
                    mean_latency_s=sum(latencies) / len(latencies) if latencies else None,
                    p95_latency_s=p95(latencies),
                    last_error=errors[-1] if errors else None,
                )
            )
        return out

    def update_stages(self, skill_ids: Iterable[str] | None = None) -> list[StageChange]:
        """Promote or demote skills by their ledger counts; one commit per change.

        The rule is `skillbank.maturity.decide_stage`. A change rewrites the skill at its
        same version with the new stage (``skillbank stage: ID old -> new (s/f, lower bound
        x)``), on the current branch. Not done after each call (a commit per call would be
        far too heavy): ``skillbank stages``, ``skillbank stats --update`` and the end of
        `skillbank.agent.run` call it.

        Args:
            skill_ids: The skills to check (default: all).

        Returns:
            The changes made, in id order.

        Raises:
            SkillNotFound: an id that is not in the bank.
            LibraryError: a skill to change has uncommitted edits (changes made before it
                stay committed).
        """
        changes: list[StageChange] = []
        with self._lock():
            if skill_ids is None:
                skills = self.skills()
            else:
                skills = [self.get(sid) for sid in sorted(set(skill_ids))]
            # Calls of each skill's current version: a repaired skill is judged afresh.
            counts = self.ledger.counts({s.id: s.version for s in skills})
            for skill in skills:
                s, f = counts.get(skill.id, (0, 0))
                new = decide_stage(skill.stage, s, f, len(skill.cases), self.config)
                if new == skill.stage:
                    continue
                bound = lower_bound(s, f)
                message = (
                    f"skillbank stage: {skill.id} {skill.stage} -> {new} "
                    f"({s}/{f}, lower bound {bound:.2f})\n\n"
                    f"{skill.id} v{skill.version}: {s} successful and {f} failed calls in the "
                    f"ledger; posterior mean {_posterior_mean(s, f):.2f}, 5% quantile "
                    f"{bound:.2f}. The code is unchanged.\n"
                )
                commit = self.library.store(
                    [(skill, skill.version, new, "stage", skill.deprecated_by)], message
                )
                if commit is not None:
                    changes.append(
                        StageChange(skill.id, skill.version, skill.stage, new, s, f, bound, commit)
                    )
        return changes

    # --- as tools for a model -----------------------------------------------------------

    def tool_specs(
        self,
        fmt: ToolFormat = "chat",
        *,
        stages: Sequence[str] = ("associative", "autonomous"),
    ) -> list[dict[str, Any]]:
        """The skills a model may call, as tool definitions (see `skillbank.toolspec`).

        Deprecated skills are left out (their replacements are offered instead).

        Args:
            fmt: "chat" (Chat Completions), "responses" (the Responses API) or "mcp".
            stages: The stages to offer; by default not "cognitive" (learned from too
                little evidence to be called as a tool).
        """
        wanted = set(stages)
        offered = [s for s in self.skills() if s.stage in wanted and not s.deprecated_by]
        return render_tools(offered, fmt)

    def call_tool(
        self,
        name: str,
        arguments_json: str,
        tools: Mapping[str, Callable[..., JSON]],
        *,
        caller: str | None = None,
    ) -> str:
        """Run a skill a model called as a tool; return the ``role: "tool"`` message's text.

        Never raises: every failure comes back as a result the model can read and act on.
        The text is compact, key-sorted JSON: ``{"ok": true, "value": ...}`` (plus
        ``"warning"`` for a deprecated skill), or ``{"ok": false, "error": {"type",
        "message", "hint"}}`` where type is one of `skillbank.toolspec.ToolErrorType`: an
        unknown skill (the hint names close ones), arguments that are not JSON, not an
        object or do not fit the signature (the hint is the signature), a host tool
        missing from ``tools``, or a skill that failed in the sandbox (with its
        ``error_type`` and the number of ``tool_calls`` it made before it stopped).

        Args:
            name: The tool name the model used (the skill id).
            arguments_json: The arguments as the model sent them: a JSON object, where a
                ``null`` for an optional parameter (strict mode) means "use the default".
            tools: The host tools, by name.
            caller: Who is calling (an agent or session name), recorded in the ledger.
        """
        try:
            return self._call_tool(name, arguments_json, tools, caller)
        except Exception as exc:  # noqa: BLE001 - an agent's loop must never see one
            return tool_error(
                "internal_error",
                f"{type(exc).__name__}: {exc}",
                "this is a bug in skillbank, not in the call; do the task with the tools directly",
            )

    def _call_tool(
        self,
        name: str,
        arguments_json: str,
        tools: Mapping[str, Callable[..., JSON]],
        caller: str | None,
    ) -> str:
        try:
            skill = self.get(name)
        except SkillNotFound:
            known = self.library.ids()
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            if close:
                hint = f"did you mean {' or '.join(close)}?"
            elif known:
                hint = f"call one of the skills offered as tools: {', '.join(known[:20])}"
            else:
                hint = "the bank has no skills yet; use the tools directly"
            return tool_error("unknown_skill", f"there is no skill named {name!r}", hint)
        if skill.stage == "cognitive":  # described to the model, never run automatically
            return tool_error(
                "unavailable",
                f"skill {name!r} is at the cognitive stage: it is a described procedure, not a "
                "tool",
                "do its steps with the base tools, as its description says",
            )
        usage = skill.signature.render()
        try:
            args = json.loads(arguments_json.strip() or "{}", parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            return tool_error(
                "invalid_json",
                f"the arguments are not valid JSON ({exc})",
                f"send one JSON object with the arguments of {usage}",
            )
        if not isinstance(args, dict):
            return tool_error(
                "invalid_arguments",
                f"the arguments must be a JSON object, got a JSON {_json_kind(args)}",
                f"send one JSON object with the arguments of {usage}",
            )
        args = decode_arguments(skill, args)
        try:
            args = self.check_args(skill, args)
        except SkillArgumentError as exc:
            return tool_error("invalid_arguments", str(exc), usage)
        problem = _schema_problem(args, canonical_schema(skill))
        if problem is not None:
            return tool_error("invalid_arguments", f"{skill.id!r}: {problem}", usage)
        library = {s.id: s for s in self.skills()} if skill.requires else {skill.id: skill}
        missing = sorted(tools_needed(skill.id, library) - set(tools))
        if missing:
            return tool_error(
                "missing_tool",
                f"{skill.id!r} needs the host tool(s) {', '.join(missing)}, which this host "
                "does not provide",
                "other arguments will not help; do the task with the tools you have",
            )
        try:
            result = self.run(skill.id, args, tools, caller=caller)
        except SkillbankError as exc:
            return tool_error(
                "unavailable",
                str(exc),
                "the skill cannot run here; do the task with the tools you have",
            )
        if result.ok:
            return tool_result(result.value, warning=result.warning)
        return tool_error(
            "skill_failed",
            result.error or "the skill failed",
            _failure_hint(result),
            error_type=result.error_type,
            tool_calls=len(result.tool_calls),
        )


#: State folders whose ledger could not be written, already reported on stderr.
_LEDGER_WARNED: set[Path] = set()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_kind(value: JSON) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return kinds.get(type(value), "null")


def _schema_problem(args: Mapping[str, JSON], schema: Mapping[str, JSON]) -> str | None:
    """What is wrong with the arguments deep inside (check_args looks at the top level)."""
    # Imported here, like in skillbank.proving: it is slow to import for every command.
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped, unused-ignore]

    error = best_match(Draft202012Validator(schema).iter_errors(dict(args)))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"argument {where.lstrip('.') or '(all)'}: {error.message}"


def _failure_hint(result: RunResult) -> str:
    if not result.tool_calls:
        return (
            "it stopped before calling any tool; check the arguments, or do the steps with "
            "the tools directly"
        )
    last = result.tool_calls[-1]
    failed = " (which failed)" if last.error else ""
    return (
        f"it stopped after {len(result.tool_calls)} tool call(s), the last one to "
        f"{last.tool}{failed}; the calls that ran may have changed something, so check "
        "before calling it again, or finish the task with the tools directly"
    )


#: Words that turn a request around; a task holding one never runs as a reflex.
_NEGATION = frozenset(
    {"not", "no", "never", "don't", "dont", "doesn't", "without", "except", "nor", "neither",
     "cannot", "can't", "won't", "shouldn't", "instead", "unless", "stop", "undo"}
)  # fmt: skip

#: Task words (argument values aside) a reflex needs before trusting a match.
_REFLEX_MIN_WORDS = 3


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{3,}", text.lower())}


def _alike(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two procedures' task texts read alike (word overlap of their first tasks)."""
    if not a or not b:
        return False
    wa, wb = _words(a[0]), _words(b[0])
    return bool(wa | wb) and len(wa & wb) / len(wa | wb) >= 0.5


def _procedures(
    given: Sequence[Trajectory],
    groups: Mapping[str, list[int]],
    existing: Mapping[str, Skill],
    by_key: Mapping[str, str],
) -> list[tuple[list[int], Skill | None, list[list[int]]]]:
    """The procedures to learn: (runs, the skill already holding it, the runs per pattern).

    Runs of one call pattern form a procedure. A pattern whose blocks all appear, in order,
    in another one's (some runs left blocks out) joins that procedure when the task texts
    read alike, so the left-out blocks become conditional; the parts are kept so that a
    failed merge can be learned pattern by pattern.
    """
    units: list[dict[str, Any]] = []
    for key in sorted(groups):
        # Canonical order, so which task represents a procedure never depends on input order.
        members = sorted(groups[key], key=lambda i: (given[i].id, given[i].sha256))
        steps = [s for s in given[members[0]].steps if s.error is None]
        old = existing.get(by_key[key]) if key in by_key else None
        units.append({
            "members": list(members), "old": old, "parts": [list(members)],
            "tokens": pattern_tokens(steps), "tasks": [given[i].task for i in members],
        })  # fmt: skip
    for skill in sorted(existing.values(), key=lambda s: s.id):
        if any(u["old"] is skill for u in units) or not skill.cases:
            continue
        longest = max(skill.cases, key=lambda c: len(c.calls))
        steps = [Step(c.tool, c.arguments, c.result) for c in longest.calls]
        units.append({"members": [], "old": skill, "parts": [], "tokens": pattern_tokens(steps),
                      "tasks": [c.task for c in skill.cases]})  # fmt: skip
    merged = True
    while merged:
        merged = False
        for small in units:
            if small["old"] is not None or not small["members"]:
                continue
            for big in units:
                if big is small or not (big["members"] or big["old"]):
                    continue
                lesser, greater = sorted((small["tokens"], big["tokens"]), key=len)
                if (
                    lesser != greater
                    and len(greater) - len(lesser) <= 2
                    and is_subpattern(lesser, greater)
                    and _alike(small["tasks"], big["tasks"])
                ):
                    big["members"] += small["members"]
                    big["parts"] = (big["parts"] or [[]]) + small["parts"]
                    big["tasks"] += small["tasks"]
                    big["tokens"] = greater
                    small["members"], small["parts"] = [], []
                    merged = True
                    break
            if merged:
                break
    return [(u["members"], u["old"], u["parts"] or [u["members"]]) for u in units if u["members"]]


def _unique_id(base: str, taken: set[str]) -> str:
    sid, n = base, 2
    while sid in taken:
        suffix = f"_{n}"
        sid, n = base[: 64 - len(suffix)].rstrip("_") + suffix, n + 1
    return sid


def _from_case(case: Case, specs: Mapping[str, Mapping[str, JSON]]) -> Trajectory:
    """Rebuild the trajectory a stored case was learned from (its hash is kept as recorded)."""
    tools = []
    for name, spec in sorted(specs.items()):
        fn = spec.get("function", {}) if isinstance(spec, Mapping) else {}
        fn = fn if isinstance(fn, Mapping) else {}
        tools.append(ToolSpec(name, str(fn.get("description", "")), fn.get("parameters") or {}))
    return Trajectory(
        id=case.trajectory_id,
        task=case.task,
        tools=tuple(tools),
        steps=tuple(Step(c.tool, c.arguments, c.result) for c in case.calls),
        outcome=Outcome(True),
        recorded_sha256=case.trajectory_sha256,
    )


def _problem_text(outcome: TestedSkill | Failed | Rejected) -> str | None:
    if isinstance(outcome, TestedSkill):
        return None
    if isinstance(outcome, Rejected):
        findings = "\n".join(f.render(outcome.draft.source) for f in outcome.findings)
        return f"validation failed:\n{findings}"
    return f"replay failed: {outcome.failure}"


def _procedure(
    sid: str,
    action: str,
    ids: Sequence[str],
    skill: Skill | TestedSkill,
    version: str | None,
    transcript: tuple[str, ...] = (),
) -> ProcedureReport:
    if isinstance(skill, TestedSkill):
        source, cases, signature = skill.draft.source, skill.draft.cases, skill.validated.signature
        notes = skill.draft.notes
    else:
        source, cases, signature, notes = skill.source, skill.cases, skill.signature, skill.notes
        version = skill.version
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
        None, transcript,
    )  # fmt: skip


def _lines(text: str) -> list[str]:
    # Lines split on "\n" only (cases.jsonl keeps U+2028 and friends raw inside strings).
    if not text:
        return []
    return (text[:-1] if text.endswith("\n") else text).split("\n")


def _nothing() -> None:
    pass


def _branch_commit(root: Path, name: str) -> str | None:
    """The commit a local branch points to, or None when there is no such branch."""
    proc = git(root, "rev-parse", "--verify", "-q", f"refs/heads/{name}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _check_branch_name(root: Path, name: str) -> None:
    proc = git(root, "check-ref-format", "--branch", name, check=False)
    if name.startswith("-") or proc.returncode != 0:
        raise LibraryError(
            f"{name!r} is not a valid git branch name; pass --branch auto, current, or a name "
            "like skillbank/new-skills"
        )


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
    changes: Sequence[tuple[TestedSkill, str, str, str, str | None]],
    entries: Sequence[LearnEntry],
    before: Mapping[str, Skill],
) -> str:
    known = {(e.trajectory_id, e.skill_id) for e in entries if e.action in ("added", "updated")}
    new_cases = sorted(
        {
            (c.trajectory_id, c.trajectory_sha256): c
            for t, *_ in changes
            for c in t.draft.cases
            if (c.trajectory_id, t.draft.id) in known
        }.values(),
        key=lambda c: (c.trajectory_id, c.trajectory_sha256),
    )
    added = [t.draft.id for t, _, _, a, _ in changes if a == "added"]
    updated = [t.draft.id for t, _, _, a, _ in changes if a == "updated"]
    parts = []
    if added:
        parts.append(f"add {len(added)} skill(s)")
    if updated:
        parts.append(f"update {len(updated)} skill(s)")
    lines = [f"skillbank learn: {', '.join(parts) or 'no change'}", ""]
    for tested, version, stage, action, _ in changes:
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
        lines += [f"- {c.trajectory_id} sha256:{c.trajectory_sha256}" for c in new_cases]
    return "\n".join(lines) + "\n"
