"""Lifecycle: how skills mature, and the changes a maintainer makes to stored skills.

Outcomes in the ledger move a skill through Fitts & Posner's stages (`skillbank.maturity`
holds the rule): `Lifecycle.update_stages` commits each change, `Lifecycle.stats` shows the
evidence. `Lifecycle.rollback` writes an earlier version back as a new, higher one (after it
passes `skillbank.proving.check` against today's library); `Lifecycle.deprecate` points a
skill at its replacement. Refinement, deduplication, drift and pruning (`skillbank.upkeep`)
build on the same parts.

Every change is a commit under the library's lock; a stage change rewrites metadata only
(`skillbank.library.SkillLibrary.restamp`), a rollback stores tested code.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from sandbox import Limits, Sandbox
from skillbank.compose import requirement_cycle
from skillbank.config import Config
from skillbank.errors import ConfigError, LibraryError, SkillbankError
from skillbank.history import History
from skillbank.ledger import CallLedger, Outcomes
from skillbank.library import Branch, Commit, Restamp, SkillLibrary, StoredChange
from skillbank.maturity import SkillStats, StageChange, decide_stage, lower_bound, p95
from skillbank.maturity import posterior_mean as _posterior_mean
from skillbank.proving import Check, Failed, explain
from skillbank.signature import rename_function
from skillbank.skill import STAGES, Case, Skill, Stage, TestedSkill
from skillbank.versioning import Version, bump, required_bump, signature_diff

if TYPE_CHECKING:
    from skillbank.compiler.llm import LLMCompiler

__all__ = ["Lifecycle"]


class Lifecycle:
    """Stages, statistics, rollback and deprecation over one library and its ledger.

    Args:
        library: The skills.
        config: The stage thresholds.
        ledger: Gives the ledger (opened on first use).
        check: Checks a draft against a library.
        history: Reads the skills' versions.
        sandbox: Gives the sandbox replays run in (started on first use).
        limits: The limits of each sandbox run.
        llm: Gives the optional LLM compiler (refinement may ask it).
    """

    def __init__(
        self,
        library: SkillLibrary,
        config: Config,
        *,
        ledger: Callable[[], CallLedger],
        check: Check,
        history: History,
        sandbox: Callable[[], Sandbox],
        limits: Limits,
        llm: Callable[[], LLMCompiler | None],
    ) -> None:
        self.library = library
        self.config = config
        self.ledger = ledger
        self.check = check
        self.history = history
        self.sandbox = sandbox
        self.limits = limits
        self.llm = llm

    def stage_for(self, sid: str, version: Version, cases: int, previous: Stage | None) -> Stage:
        """The stage a version starts at: the rule of `update_stages` on that version's
        calls (none, for a new version: the failures were of the old code), or the stage a
        reviewer pinned (`promote`)."""
        try:
            pinned = self.library.load(sid)
        except SkillbankError:
            pinned = None
        if pinned is not None and pinned.pinned and previous is not None:
            return previous
        successes, failures = self.outcome_counts({sid: str(version)}).get(sid, Outcomes(0, 0))
        return decide_stage(previous or "cognitive", successes, failures, cases, self.config)

    def outcome_counts(self, versions: Mapping[str, str] | None = None) -> dict[str, Outcomes]:
        """The ledger's `Outcomes` per skill (with ``versions``: of those versions only);
        empty when there is no ledger yet or it cannot be read. The ledger is local
        statistics: learning and search must work without it, and reading never creates it."""
        try:
            ledger = self.ledger()
            if not ledger.exists():
                return {}
            return ledger.counts(versions)
        except (LibraryError, sqlite3.Error):
            return {}

    def target(self, branch: str | Branch | None, verb: str, salt: Sequence[str] = ()) -> Branch:
        """Where a change by ``verb`` commits: ``branch`` ("auto", "current", a name; None:
        the ``branch`` setting) resolved by `SkillLibrary.branch_for`, or a `Branch` as
        given (a command that makes several commits passes the same branch along)."""
        if isinstance(branch, Branch):
            return branch
        return self.library.branch_for(branch or self.config.branch, verb, salt)

    def rollback(
        self, skill_id: str, version: str, *, branch: str | Branch | None = None
    ) -> Commit:
        """Write the files of an earlier version back as a new, higher version; commit.

        ``version`` is a version (``"1.2.0"``) or a git revision. The restored code,
        description and deprecation are those of that version; its cases are that version's
        plus every case learned since that the restored code also reproduces (the commit
        message names those kept and those left out). Its version number is the current one
        bumped as the change needs (at least a patch: versions never go back).
        The restored skill is validated and replayed against today's library first.

        Args:
            skill_id: The skill.
            version: The version (or git revision) whose files come back.
            branch: Where the commit goes (see `target`).

        Returns:
            The commit (its sha, and the branch it is on).

        Raises:
            SkillNotFound: no such skill.
            LibraryError: no such version, nothing to roll back, or the old version no longer
                passes its checks (nothing is changed).
        """
        with self.library.lock():
            current = self.library.load(skill_id)
            old, _, label = self.history.at(skill_id, version)
            if replace(old, version=current.version, stage=current.stage) == current:
                raise LibraryError(
                    f"{skill_id!r} v{current.version} already holds what {label} held; "
                    "nothing to roll back"
                )
            library = {s.id: s for s in self.library.load_all()}
            library[skill_id] = old
            cycle = requirement_cycle({sid: s.requires for sid, s in library.items()})
            if cycle:
                raise LibraryError(
                    f"restoring {skill_id!r} {label} would make skills require each other in "
                    f"a cycle ({' -> '.join(cycle)}); nothing was changed"
                )
            draft = old.as_draft()
            checked = self.check(draft, library)
            problem = explain(checked)
            if not isinstance(checked, TestedSkill):
                raise LibraryError(
                    f"{skill_id!r} {label} no longer passes its checks, so it was not "
                    f"restored: {problem}"
                )
            checked, kept, dropped = self._keep_later_cases(checked, current.cases, library)
            kind = required_bump(current.source, current.description, old.source, old.description)
            new_version = bump(current.version, kind or "patch")
            cases = len(checked.validated.draft.cases)
            stage = self.stage_for(old.id, new_version, cases, current.stage)
            restored = old.version
            lines = [
                f"skillbank rollback {skill_id} to {new_version} (restores code of {restored})",
                "",
                f"{skill_id} v{current.version} -> v{new_version}: the files of {label} are "
                f"written back ({kind or 'patch'} bump; versions never go backwards).",
            ]
            if kept:
                lines.append(
                    f"Kept {len(kept)} case(s) learned after {label}, which the restored code "
                    f"also reproduces: {', '.join(kept)}."
                )
            if dropped:
                lines.append(
                    f"Left out {len(dropped)} case(s) learned after {label} that the restored "
                    f"code does not reproduce (they stay in git history): {', '.join(dropped)}."
                )
            lines += [f"  - {c}" for c in signature_diff(current.signature, old.signature).changes]
            commit = self.library.store(
                [StoredChange(checked, new_version, stage, "rolled back", old.deprecated_by)],
                "\n".join(lines) + "\n",
                branch=self.target(branch, "rollback", [skill_id, str(new_version)]),
            )
        if commit is None:  # cannot happen: the version always moves
            raise LibraryError(f"rolling back {skill_id!r} changed nothing")
        return commit

    def _keep_later_cases(
        self, checked: TestedSkill, later: Sequence[Case], library: Mapping[str, Skill]
    ) -> tuple[TestedSkill, list[str], list[str]]:
        """``checked`` (the restored skill) with the current cases its code also reproduces.

        A rollback restores code, not knowledge: the runs learned since the target version
        are still true of the world. Each one the restored code replays is kept; the others
        are named. Returns the skill to store and the trajectory ids kept and left out.
        """
        draft = checked.validated.draft
        have = {c.trajectory_sha256 for c in draft.cases}
        extra = [c for c in later if c.trajectory_sha256 not in have]
        if not extra:
            return checked, [], []
        attempt = self.check(replace(draft, cases=(*draft.cases, *extra)), library)
        if isinstance(attempt, TestedSkill):
            return attempt, [c.trajectory_id for c in extra], []
        passing = (
            {r.trajectory_id for r in attempt.cases if r.ok}
            if isinstance(attempt, Failed)
            else set[str]()
        )
        keep = [c for c in extra if c.trajectory_id in passing]
        dropped = [c.trajectory_id for c in extra if c.trajectory_id not in passing]
        if keep:
            retry = self.check(replace(draft, cases=(*draft.cases, *keep)), library)
            if isinstance(retry, TestedSkill):
                return retry, [c.trajectory_id for c in keep], dropped
        return checked, [], [c.trajectory_id for c in extra]

    def deprecate(self, old_id: str, *, by: str, branch: str | Branch | None = None) -> Commit:
        """Mark a skill as replaced by another; commit (a patch bump of the old skill).

        The deprecated skill keeps running, and so do the skills that require it, until it
        is removed; `run` returns a warning naming its replacement, and new skills are never
        composed from it. ``branch`` says where the commit goes (see `target`).

        Returns:
            The commit (the existing one, when it is already deprecated by ``by``).

        Raises:
            SkillNotFound: either skill does not exist.
            LibraryError: a skill replacing itself, or a chain of replacements in a circle.
        """
        with self.library.lock():
            old = self.library.load(old_id)
            new = self.library.load(by)
            chain, step = [old_id, by], new
            while step.deprecated_by and step.deprecated_by not in chain:
                chain.append(step.deprecated_by)
                step = self.library.load(step.deprecated_by)
            if old_id == by or step.deprecated_by == old_id:
                loop = " -> ".join([*chain, old_id] if old_id != by else [old_id, by])
                raise LibraryError(
                    f"{old_id!r} cannot be deprecated by {by!r}: the replacements would go "
                    f"round in a circle ({loop}); pick a skill that is not deprecated"
                )
            if old.deprecated_by == by:
                entries = self.library.history(old_id)
                if entries and entries[0].deprecated_by == by:
                    return Commit(entries[0].commit, self.library.branch_for("current", ""))
            version = bump(old.version, "patch")
            callers = sorted(s.id for s in self.library.load_all() if old_id in s.requires)
            lines = [
                f"skillbank deprecate {old_id}: use {by} instead",
                "",
                f"{old_id} v{old.version} -> v{version} is deprecated in favour of {by} "
                f"v{new.version}. It keeps running, and so do the skills that require it, "
                "until it is removed; running it warns.",
            ]
            if callers:
                lines.append(f"Required by: {', '.join(callers)}")
            commit = self.library.restamp(
                [Restamp(old, version, old.stage, by)],
                "\n".join(lines) + "\n",
                branch=self.target(branch, "deprecate", [old_id, by]),
            )
        if commit is None:  # cannot happen: the version always moves
            raise LibraryError(f"deprecating {old_id!r} changed nothing")
        return commit

    def stats(self, skill_id: str | None = None) -> list[SkillStats]:
        """How each skill (or just ``skill_id``) has done, from the ledger, sorted by id.

        Skills with no calls are listed too (all zero); ledger rows of a skill no longer in
        the bank are listed with ``stage=None``.

        Raises:
            SkillNotFound: ``skill_id`` is neither in the bank nor in the ledger.
        """
        skills = {s.id: s for s in self.library.load_all()}
        if skill_id is not None:
            ids = [skill_id]
            if skill_id not in skills and not self.ledger().outcomes(skill_id):
                self.library.load(skill_id)  # raises SkillNotFound, naming the known ids
        else:
            ids = sorted(set(skills) | set(self.ledger().counts()))
        out = []
        for sid in ids:
            rows = self.ledger().outcomes(sid)
            s = sum(r.ok for r in rows)
            f = sum(r.failed_skill for r in rows)  # a caller's bad input is not the skill's
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

    def rename(self, old_id: str, new_id: str, *, branch: str | Branch | None = None) -> Commit:
        """Give a skill a new id, as one commit; the old id stays an alias of the new one.

        The code is the same but for the function's name, checked again (validation and
        replay) under the new id; the stage, pin and deprecation carry over and the version
        takes a minor step (callers of the old id keep working). The old folder becomes
        ``skills/<old_id>/alias.json``: the old id is still callable everywhere a skill id
        is taken (`skillbank run`, tools, MCP, the skills that require it) and hidden from
        listings and search.

        Raises:
            SkillNotFound: no skill ``old_id``.
            LibraryError: ``new_id`` is not a valid id or is taken (by a skill or an alias),
                ``old_id`` is itself an alias, or the renamed skill fails its checks.
        """
        if not new_id or not new_id.isidentifier() or new_id != new_id.lower() or new_id[0] == "_":
            raise LibraryError(
                f"{new_id!r} is not a skill id: use lower-case letters, digits and underscores, "
                "starting with a letter (e.g. cancel_order_by_email)"
            )
        with self.library.lock():
            target = self.library.resolve(old_id)
            if target != old_id:
                raise LibraryError(
                    f"{old_id!r} is already an alias of {target!r}; rename {target!r} instead"
                )
            old = self.library.load(old_id)
            if new_id == old_id:
                raise LibraryError(f"{old_id!r} already has that id")
            if new_id in self.library.ids() or self.library.alias_target(new_id) is not None:
                raise LibraryError(
                    f"{new_id!r} is taken (by a skill or an alias); pick another id, or "
                    f"`skillbank deprecate {old_id} --by {new_id}` to retire this one in its favour"
                )
            try:
                source = rename_function(old.source, old_id, new_id)
            except ValueError as exc:
                raise LibraryError(f"cannot rename {old_id!r}: {exc}") from None
            library = {s.id: s for s in self.library.load_all() if s.id != old_id}
            checked = self.check(old.as_draft(id=new_id, source=source), library)
            if not isinstance(checked, TestedSkill):
                raise LibraryError(
                    f"{old_id!r} renamed {new_id!r} fails its checks, so nothing was renamed: "
                    f"{explain(checked)}"
                )
            version = bump(old.version, "minor")
            callers = sorted(s.id for s in library.values() if old_id in s.requires)
            lines = [
                f"skillbank rename {old_id} -> {new_id}",
                "",
                f"{old_id} v{old.version} is now {new_id} v{version}, the same code under a new "
                f"name. {old_id} stays callable as an alias of it (skills/{old_id}/alias.json).",
            ]
            if callers:
                lines.append(f"Required as {old_id} by: {', '.join(callers)}")
            change = StoredChange(
                checked, version, old.stage, "renamed", old.deprecated_by, old.pinned or ""
            )
            commit = self.library.rename(
                change,
                old_id,
                "\n".join(lines) + "\n",
                branch=self.target(branch, "rename", [old_id, new_id]),
            )
        if commit is None:  # cannot happen: a new folder is written
            raise LibraryError(f"renaming {old_id!r} changed nothing")
        return commit

    def promote(
        self,
        skill_id: str,
        stage: Stage | None,
        *,
        reason: str = "",
        unpin: bool = False,
        branch: str | Branch | None = None,
    ) -> Commit | None:
        """A reviewer's decision on a skill's stage, as one commit: set and pin ``stage``, or
        lift the pin (``unpin``) so the ledger decides again (`update_stages`).

        A pinned stage is left alone by automatic changes, except that failures still demote
        a pinned autonomous skill. The version stays: the code does not change.

        Args:
            skill_id: The skill.
            stage: The stage to grant or withdraw to (None with ``unpin``: keep the stage).
            reason: Why, for the commit message and ``SKILL.md`` (``pinned``).
            unpin: Lift the pin instead (with a ``stage``: set it, unpinned).
            branch: Where the commit goes (see `target`).

        Returns:
            The commit, or None when the skill already was so.

        Raises:
            SkillNotFound: no such skill.
            ValueError: ``stage`` is not one of `skillbank.skill.STAGES`, or neither a stage
                nor ``unpin`` is given.
            LibraryError: the skill's folder has uncommitted edits.
        """
        if stage is not None and stage not in STAGES:
            raise ValueError(f"stage={stage!r} must be one of {', '.join(STAGES)}")
        if stage is None and not unpin:
            raise ValueError("say the stage to pin (--to STAGE), or lift the pin (--unpin)")
        why = " ".join(reason.split())
        with self.library.lock():
            skill = self.library.load(skill_id)
            new = stage or skill.stage
            pin = "" if unpin else (why or "set by review")
            if new == skill.stage and (pin or None) == skill.pinned:
                return None
            verb = "unpin" if unpin else "promote"
            title = (
                f"skillbank {verb}: {skill_id} {skill.stage} -> {new}"
                if new != skill.stage
                else f"skillbank {verb}: {skill_id} stays {new}"
            )
            body = (
                "The pin is lifted: the ledger decides the stage again."
                if unpin
                else "Pinned by review: automatic stage changes leave it alone until "
                "`skillbank promote --unpin`, except that failures still demote an "
                "autonomous skill."
            )
            message = f"{title}\n\n{why + chr(10) + chr(10) if why else ''}{body}\n"
            on = self.target(branch, verb, [f"{skill_id}:{new}:{pin}"])
            change = Restamp(skill, skill.version, new, skill.deprecated_by, pinned=pin)
            return self.library.restamp([change], message, branch=on)

    def update_stages(
        self, skill_ids: Iterable[str] | None = None, *, branch: str | Branch | None = None
    ) -> list[StageChange]:
        """Promote or demote skills by their ledger counts; one commit per change.

        The rule is `skillbank.maturity.decide_stage`. A change rewrites the skill at its
        same version with the new stage (``skillbank stage: ID old -> new (s/f, lower bound
        x)``). Not done after each call (a commit per call would be far too heavy):
        ``skillbank stages``, ``skillbank stats --update`` and the end of
        `skillbank.agent.run` call it.

        Args:
            skill_ids: The skills to check (default: all).
            branch: Where the commits go (see `target`); all of them on one branch.

        Returns:
            The changes made, in id order.

        Raises:
            SkillNotFound: an id that is not in the bank.
            LibraryError: a skill to change has uncommitted edits (changes made before it
                stay committed).
        """
        if not self.config.applies_stages:
            raise ConfigError(
                f"this replica is {self.config.replica!r}, and stage changes are applied by "
                f"{self.config.stages_updater!r} only (stages_updater), so that replicas "
                "sharing one ledger do not all commit the same promotion",
                hint=f"run it on {self.config.stages_updater}, or as a job without "
                "SKILLBANK_REPLICA",
            )
        changes: list[StageChange] = []
        with self.library.lock():
            if skill_ids is None:
                skills = self.library.load_all()
            else:
                skills = [self.library.load(sid) for sid in sorted(set(skill_ids))]
            # Calls of each skill's current version: a repaired skill is judged afresh.
            counts = self.ledger().counts({s.id: str(s.version) for s in skills})
            on: Branch | None = None
            for skill in skills:
                s, f = counts.get(skill.id, Outcomes(0, 0))
                new = decide_stage(skill.stage, s, f, len(skill.cases), self.config)
                if new == skill.stage:
                    continue
                # A reviewer's stage stands, except that failures demote a trusted skill.
                unpin = skill.pinned is not None
                if unpin and not (skill.stage == "autonomous" and new != "autonomous"):
                    continue
                bound = lower_bound(s, f)
                message = (
                    f"skillbank stage: {skill.id} {skill.stage} -> {new} "
                    f"({s}/{f}, lower bound {bound:.2f})\n\n"
                    f"{skill.id} v{skill.version}: {s} successful and {f} failed calls in the "
                    f"ledger; posterior mean {_posterior_mean(s, f):.2f}, 5% quantile "
                    f"{bound:.2f}. The code is unchanged.\n"
                )
                if unpin:
                    message += (
                        f"\nThe stage was pinned by review ({skill.pinned}); failures demote "
                        "even a pinned autonomous skill, so the pin is lifted.\n"
                    )
                if on is None:  # resolved at the first change: no change, no branch
                    on = self.target(branch, "stages", [f"{skill.id}:{new}"])
                change = Restamp(skill, skill.version, new, skill.deprecated_by,
                                 pinned="" if unpin else None)  # fmt: skip
                commit = self.library.restamp([change], message, branch=on)
                on = on.after(commit)
                if commit is not None:
                    changes.append(
                        StageChange(
                            skill.id, str(skill.version), skill.stage, new, s, f, bound, commit
                        )
                    )
        return changes
