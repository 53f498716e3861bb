"""`SkillBank`: the learn → check → keep → run loop over one skill library.

``learn`` compiles each successful trajectory (`skillbank.compiler`), validates it with the
libcst policy (`skillbank.validate`), replays it in the sandbox (`skillbank.proving`) and stores
what passed in ``skills/`` as one git commit (`skillbank.library`). A trajectory whose code has
the same shape as a known skill becomes a new recorded case of that skill, never a duplicate.
``run`` executes a stored skill in the sandbox against host tools.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from sandbox import Limits, Sandbox, ToolCall
from skillbank.compiler import compile_trajectory
from skillbank.config import Config, load_config
from skillbank.errors import CompileError, LibraryError, SkillArgumentError, SkillbankError
from skillbank.library import SkillLibrary, git
from skillbank.proving import Failed, prove, replay_case
from skillbank.skill import Skill, SkillDraft, TestedSkill, ValidatedSkill
from skillbank.trajectory import Outcome, Step, ToolSpec, Trajectory
from skillbank.validate import Rejected, code_shape, validate

__all__ = ["LearnEntry", "LearnReport", "RunResult", "SkillBank"]

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
class LearnReport:
    """The outcome of one `SkillBank.learn` call."""

    #: One entry per trajectory, in input order.
    entries: tuple[LearnEntry, ...]
    #: The commit holding the changes, or None when nothing changed.
    commit: str | None = None
    #: Version written per changed skill id.
    versions: Mapping[str, int] = field(default_factory=dict)

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

    def _stage(self, cases: int, previous: str | None) -> str:
        if previous == "autonomous":
            return previous  # learning more never lowers trust; failures do (ledger)
        return "associative" if cases >= self.config.min_cases_associative else "cognitive"

    def learn(self, trajectories: Iterable[Trajectory]) -> LearnReport:
        """Compile, validate, test and store skills from trajectories, in one commit.

        Failed trajectories and ones that do not compile, validate or replay are reported as
        rejected with the reason; they never stop the others. Learning the same trajectory
        again changes nothing and makes no commit.

        Raises:
            LibraryError: when the library cannot be read or written (nothing is changed).
        """
        with self._lock():
            existing = {s.id: s for s in self.library.load_all()}
            shapes = {code_shape(s.source): s.id for s in existing.values()}
            drafts: dict[str, SkillDraft] = {
                s.id: SkillDraft(
                    s.id,
                    s.source,
                    s.description,
                    s.tools,
                    s.cases,
                    s.tool_specs,
                    s.requires,
                    s.notes,
                )  # fmt: skip
                for s in existing.values()
            }
            touched: dict[str, str] = {}  # id -> "added" | "updated"
            # Learn in a canonical order so the same set of trajectories gives the same
            # skills whatever order they arrive in; report in the caller's order.
            given = list(trajectories)
            order = sorted(range(len(given)), key=lambda i: (given[i].id, given[i].sha256))
            results: dict[int, LearnEntry] = {}
            for i in order:
                results[i] = self._learn_guarded(given[i], drafts, shapes, touched, existing)
            entries = [results[i] for i in range(len(given))]

            changes: list[tuple[TestedSkill, int, str, str]] = []
            versions: dict[str, int] = {}
            for sid, action in sorted(touched.items()):
                drafts[sid] = _with_representative_docs(drafts[sid])
                checked = self._check(drafts[sid])
                if not isinstance(checked, TestedSkill):
                    # Cannot happen for cases that each replayed; keep the library safe anyway.
                    reason = checked.failure if isinstance(checked, Failed) else "invalid"
                    entries = [
                        replace(e, action="rejected", reason=reason) if e.skill_id == sid else e
                        for e in entries
                    ]
                    continue
                old = existing.get(sid)
                changed_code = old is None or code_shape(old.source) != code_shape(
                    drafts[sid].source
                )
                version = 1 if old is None else old.version + int(changed_code)
                stage = self._stage(len(drafts[sid].cases), old.stage if old else None)
                versions[sid] = version
                changes.append((checked, version, stage, action))
            commit = self.library.store(changes, _commit_message(changes, entries))
        return LearnReport(tuple(entries), commit, versions)

    def _check(self, draft: SkillDraft) -> TestedSkill | Failed | Rejected:
        validated = validate(draft)
        if isinstance(validated, Rejected):
            return validated
        return prove(validated, self.sandbox, self.limits)

    def _learn_guarded(
        self,
        t: Trajectory,
        drafts: dict[str, SkillDraft],
        shapes: dict[str, str],
        touched: dict[str, str],
        existing: Mapping[str, Skill],
    ) -> LearnEntry:
        # One trajectory's problem is reported against it and never stops the batch.
        try:
            return self._learn_one(t, drafts, shapes, touched, existing)
        except (SkillbankError, RecursionError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, SkillbankError) else f"{type(exc).__name__}: {exc}"
            return LearnEntry(t.id, "rejected", None, reason)

    def _learn_one(
        self,
        t: Trajectory,
        drafts: dict[str, SkillDraft],
        shapes: dict[str, str],
        touched: dict[str, str],
        existing: Mapping[str, Skill],
    ) -> LearnEntry:
        if not t.outcome.success:
            detail = f": {t.outcome.detail}" if t.outcome.detail else ""
            return LearnEntry(
                t.id, "skipped", None, f"the trajectory did not succeed{detail}; "
                "only successful trajectories become skills",
            )  # fmt: skip
        try:
            draft = compile_trajectory(t)
        except CompileError as exc:
            return LearnEntry(t.id, "rejected", None, str(exc))
        shape = code_shape(draft.source)
        sid = shapes.get(shape)
        if sid is not None:
            known = drafts[sid]
            if any(c.trajectory_sha256 == t.sha256 for c in known.cases):
                return LearnEntry(t.id, "unchanged", sid)
            case = draft.cases[0]
            validated = validate(known)
            if isinstance(validated, Rejected):
                reason = "; ".join(f.render() for f in validated.findings)
                return LearnEntry(t.id, "rejected", sid, f"stored skill is invalid: {reason}")
            single = ValidatedSkill(replace(known, cases=(case,)), validated.signature)
            replay = replay_case(self.sandbox, single, case, self.limits)
            if not replay.ok:
                return LearnEntry(t.id, "rejected", sid, f"replay failed: {replay.failure}")
            drafts[sid] = replace(known, cases=(*known.cases, case))
            touched.setdefault(sid, "updated")
            return LearnEntry(t.id, "updated" if sid in existing else "added", sid)
        sid, n = draft.id, 2
        while sid in drafts:
            suffix = f"_{n}"
            sid, n = draft.id[: 64 - len(suffix)].rstrip("_") + suffix, n + 1
        if sid != draft.id:
            draft = compile_trajectory(t, name=sid)
        checked = self._check(draft)
        if isinstance(checked, Rejected):
            reason = "; ".join(f.render() for f in checked.findings)
            return LearnEntry(t.id, "rejected", None, f"validation failed: {reason}")
        if isinstance(checked, Failed):
            return LearnEntry(t.id, "rejected", None, f"replay failed: {checked.failure}")
        drafts[sid] = draft
        shapes[shape] = sid
        touched[sid] = "added"
        return LearnEntry(t.id, "added", sid)

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
        for name, value in args.items():
            allowed = _TYPES.get(params[name].annotation)
            bad_bool = isinstance(value, bool) and params[name].annotation in ("int", "float")
            if allowed and (not isinstance(value, allowed) or bad_bool):
                raise SkillArgumentError(
                    f"argument {name!r} of {skill.id!r} must be {params[name].annotation}, "
                    f"got {value!r} ({type(value).__name__})"
                )
        return dict(args)

    def run(
        self,
        skill_id: str,
        args: Mapping[str, JSON],
        tools: Mapping[str, Callable[..., JSON]],
        *,
        limits: Limits | None = None,
    ) -> RunResult:
        """Run a stored skill in the sandbox with ``args``, reaching only its declared tools.

        A failure inside the skill (its own error, a tool that raised, a limit) comes back in
        the result; misuse (unknown skill, bad arguments, a declared tool not provided) raises.

        Raises:
            SkillNotFound: no such skill.
            SkillArgumentError: the arguments do not fit the signature, or ``tools`` lacks a
                tool the skill declares.
        """
        skill = self.get(skill_id)
        checked = self.check_args(skill, args)
        missing = [t for t in skill.tools if t not in tools]
        if missing:
            raise SkillArgumentError(
                f"{skill_id!r} calls tools {', '.join(skill.tools)}, but no host function was "
                f"given for {', '.join(missing)}"
            )
        granted = {name: tools[name] for name in skill.tools}
        result = self.sandbox.run(skill.source, skill.id, checked, granted, limits or self.limits)
        return RunResult(
            skill_id=skill.id,
            ok=result.ok,
            value=result.value,
            error=None if result.error is None else str(result.error),
            error_type=None if result.error is None else type(result.error).__name__,
            tool_calls=result.tool_calls,
            duration_s=result.duration_s,
            output=result.output,
        )


def _with_representative_docs(draft: SkillDraft) -> SkillDraft:
    """Re-render the docstring from the canonical case (smallest trajectory id, then hash).

    Which run of a procedure names the parameters' examples and the summary must not depend
    on learning order. Only the docs may change here: if the canonical case compiles to
    different code (a hand-edited or generalised skill), the draft is kept as it is.
    """
    case = min(draft.cases, key=lambda c: (c.trajectory_id, c.trajectory_sha256))
    specs = []
    for name, spec in sorted(draft.tool_specs.items()):
        fn = spec.get("function", {}) if isinstance(spec, Mapping) else {}
        fn = fn if isinstance(fn, Mapping) else {}
        specs.append(ToolSpec(name, str(fn.get("description", "")), fn.get("parameters") or {}))
    rebuilt = Trajectory(
        id=case.trajectory_id,
        task=case.task,
        tools=tuple(specs),
        steps=tuple(Step(c.tool, c.arguments, c.result) for c in case.calls),
        outcome=Outcome(True),
    )
    try:
        fresh = compile_trajectory(rebuilt, name=draft.id)
    except CompileError:
        return draft
    if code_shape(fresh.source) != code_shape(draft.source) or fresh.tools != draft.tools:
        return draft
    return replace(draft, source=fresh.source, description=fresh.description, notes=fresh.notes)


def _commit_message(
    changes: list[tuple[TestedSkill, int, str, str]], entries: list[LearnEntry]
) -> str:
    known = {(e.trajectory_id, e.skill_id) for e in entries if e.action in ("added", "updated")}
    new_cases = sorted(
        {
            (c.trajectory_id, c.trajectory_sha256): c
            for t, _, _, _ in changes
            for c in t.draft.cases
            if (c.trajectory_id, t.draft.id) in known
        }.values(),
        key=lambda c: (c.trajectory_id, c.trajectory_sha256),
    )
    added = [t.draft.id for t, _, _, a in changes if a == "added"]
    updated = [t.draft.id for t, _, _, a in changes if a == "updated"]
    parts = []
    if added:
        parts.append(f"add {len(added)} skill(s)")
    if updated:
        parts.append(f"update {len(updated)} skill(s)")
    lines = [f"skillbank learn: {', '.join(parts) or 'no change'}", ""]
    for tested, version, stage, action in changes:
        sid = tested.draft.id
        new = [
            e.trajectory_id
            for e in entries
            if e.skill_id == sid and e.action in ("added", "updated")
        ]
        lines.append(
            f"{action} {sid} v{version} ({stage}, {tested.cases_passed} case(s) replayed) "
            f"from {', '.join(new)}"
        )
    if new_cases:
        lines += ["", "Trajectories:"]
        lines += [f"- {c.trajectory_id} sha256:{c.trajectory_sha256}" for c in new_cases]
    return "\n".join(lines) + "\n"
