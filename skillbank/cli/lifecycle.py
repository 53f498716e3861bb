"""Commands on a skill's life after learning: stats and stages (maturity), and upkeep: prune,
refine, dedup, drift. Each change is one commit whose message says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from skillbank import SkillBank, SkillbankError, load_trajectories
from skillbank.cli.options import branch_option, json_option, root_option
from skillbank.cli.output import (
    EXIT_CHECK_FAILED,
    commit_json,
    committed,
    echo_block,
    print_json,
)
from skillbank.gate import load_tool_specs
from skillbank.maturity import SkillStats, StageChange
from skillbank.skill import STAGES, Stage
from skillbank.upkeep import check_drift, find_duplicates, merge_duplicates, prune, refine

__all__ = ["dedup", "drift", "promote", "prune_", "refine_", "stages", "stats"]


# --- maturity -------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _render_stats(stats: list[SkillStats]) -> None:
    if not stats:
        click.echo("no skills and no recorded calls")
        return
    for s in stats:
        stage = (s.stage or "not in the bank") + (
            f" (earns {s.earned})" if s.earned and s.earned != s.stage else ""
        )
        rate = "-" if s.success_rate is None else f"{s.success_rate:.0%}"
        echo_block(
            s.skill_id,
            f"{stage}; {s.calls} call(s): {s.successes} ok, {s.failures} failed ({rate}); "
            f"success posterior mean {s.mean:.2f}, lower bound {s.lower_bound:.2f}; latency "
            f"{_ms(s.mean_latency_s)} mean, {_ms(s.p95_latency_s)} p95",
        )
    for s in stats:
        if s.last_error:
            click.echo(f"{s.skill_id}: last error: {s.last_error}")


def _render_changes(changes: list[StageChange]) -> None:
    if not changes:
        click.echo("no stage changes")
    for c in changes:
        click.echo(
            f"{c.skill_id}: {c.old} -> {c.new} ({c.successes}/{c.failures}, lower bound "
            f"{c.lower_bound:.2f}): {committed(c.commit)}"
        )


@click.command(name="stats")
@click.argument("skill_id", required=False)
@click.option(
    "--update",
    is_flag=True,
    help="Then apply the stages the statistics earn (one commit per change).",
)
@branch_option
@root_option
@json_option
def stats(
    skill_id: str | None, update: bool, branch: str | None, root: Path, as_json: bool
) -> None:
    """Show how each skill (or SKILL_ID) has done: calls, successes, failures, success rate,
    the success posterior (mean and 90% lower bound), mean and p95 latency, last error, stage.

    The numbers come from the local ledger (.skillbank/ledger.sqlite); the lower bound is the
    5% quantile of Beta(1 + successes, 1 + failures).

    Example: skillbank stats list_orders_by_email --json
    """
    with SkillBank(root) as bank:
        changes = (
            bank.update_stages([skill_id] if skill_id else None, branch=branch) if update else []
        )
        rows = bank.stats(skill_id)
    if as_json:
        data: dict[str, Any] = {"skills": [s.to_json() for s in rows]}
        if update:
            data["changes"] = [c.to_json() for c in changes]
        print_json(data)
        return
    _render_stats(rows)
    if update:
        _render_changes(changes)


@click.command(name="stages")
@click.argument("skill_ids", nargs=-1)
@branch_option
@root_option
@json_option
def stages(skill_ids: tuple[str, ...], branch: str | None, root: Path, as_json: bool) -> None:
    """Promote and demote skills by their ledger statistics; one commit per change.

    With no SKILL_IDS, every skill is checked. See `skillbank.maturity` for the rule.

    Example: skillbank stages --json
    """
    with SkillBank(root) as bank:
        changes = bank.update_stages(list(skill_ids) or None, branch=branch)
    if as_json:
        print_json([c.to_json() for c in changes])
    else:
        _render_changes(changes)


# --- upkeep ---------------------------------------------------------------------------------


@click.command(name="promote")
@click.argument("skill_id")
@click.option("--to", "stage", type=click.Choice(STAGES), default=None,
              help="The stage to grant or withdraw to; pinned until --unpin.")  # fmt: skip
@click.option("--reason", default="", help="Why (kept in SKILL.md and the commit message).")
@click.option("--unpin", is_flag=True, help="Lift a reviewer's pin: the ledger decides again.")
@branch_option
@root_option
@json_option
def promote(
    skill_id: str,
    stage: Stage | None,
    reason: str,
    unpin: bool,
    branch: str | None,
    root: Path,
    as_json: bool,
) -> None:
    """Grant or withdraw a skill's stage by review, as a commit; the stage is pinned.

    Automatic stage changes (`skillbank stages`) leave a pinned skill alone until --unpin,
    except that failures still demote a pinned autonomous skill.

    Example: skillbank promote list_orders_by_email --to autonomous --reason "read-only"
    """
    if stage is None and not unpin:
        raise click.UsageError("say the stage with --to STAGE, or lift the pin with --unpin")
    with SkillBank(root) as bank:
        before = bank.get(skill_id).stage
        commit = bank.promote(skill_id, stage, reason=reason, unpin=unpin, branch=branch)
        after = bank.library.load_at(skill_id, commit) if commit else bank.get(skill_id)
    pinned = after.pinned if after is not None else None
    if as_json:
        data = {"skill_id": skill_id, "old": before, "new": after.stage if after else stage,
                "pinned": pinned}  # fmt: skip
        print_json({**data, **commit_json(commit)})
    elif commit is None:
        click.echo(f"{skill_id} already is {before}{' (pinned)' if pinned else ''}; no change")
    else:
        shown = after.stage if after else stage
        state = f"pinned: {pinned}" if pinned else "unpinned"
        click.echo(f"{skill_id}: {before} -> {shown} ({state}); {committed(commit)}")


@click.command(name="prune")
@click.option("--dry-run", is_flag=True, help="List what would be removed; change nothing.")
@click.option("--min-calls", type=click.IntRange(min=1), default=10, show_default=True,
              help="Fewest ledger rows before a failure rate counts.")  # fmt: skip
@click.option("--max-failure-rate", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Remove skills failing more often than this.")  # fmt: skip
@click.option("--unused-days", type=click.FloatRange(min=0), default=90, show_default=True,
              help="Remove skills not called for this many days.")  # fmt: skip
@branch_option
@json_option
@root_option
def prune_(dry_run: bool, min_calls: int, max_failure_rate: float, unused_days: float,
           branch: str | None, as_json: bool, root: Path) -> None:  # fmt: skip
    """Remove skills that keep failing or are never used (one commit).

    A skill another skill requires is kept. Exit code 0, 1 on a skillbank error.

    Example: skillbank prune --dry-run --unused-days 30
    """
    with SkillBank(root) as bank:
        report = prune(bank.lifecycle, min_calls=min_calls, max_failure_rate=max_failure_rate,
                       unused_days=unused_days, dry_run=dry_run, branch=branch)  # fmt: skip
    if as_json:
        print_json({**report.to_json(), **commit_json(report.commit)})
        return
    for e in report.entries:
        click.echo(f"{e.action} {e.skill_id}: {e.reason}")
    if not report.entries:
        click.echo("nothing to prune")
    if report.commit:
        click.echo(committed(report.commit))


@click.command(name="refine")
@click.argument("failures", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skill", "skill_id", default=None, help="Refine this skill (default: by pattern).")
@branch_option
@json_option
@root_option
def refine_(
    failures: Path, skill_id: str | None, branch: str | None, as_json: bool, root: Path
) -> None:
    """Guard skills against the failed runs in FAILURES.jsonl (one commit).

    Exit code 0 when every failure was guarded against, 1 otherwise.

    Example: skillbank refine failures.jsonl
    """
    with SkillBank(root) as bank:
        report = refine(
            bank.lifecycle, load_trajectories(failures), skill_id=skill_id, branch=branch
        )
    if as_json:
        print_json({**report.to_json(), **commit_json(report.commit)})
    else:
        for e in report.entries:
            what = f" ({e.guard}) v{e.version}" if e.action == "refined" else f": {e.reason}"
            click.echo(f"{e.action} {e.skill_id or '-'} [{', '.join(e.trajectories)}]{what}")
        if report.commit:
            click.echo(committed(report.commit))
    if any(e.action not in ("refined", "unchanged", "skipped") for e in report.entries):
        raise SystemExit(EXIT_CHECK_FAILED)


@click.command(name="dedup")
@click.option("--merge", is_flag=True, help="Merge each pair: keep one, deprecate the other.")
@branch_option
@json_option
@root_option
def dedup(merge: bool, branch: str | None, as_json: bool, root: Path) -> None:
    """Find near-duplicate skills; with --merge, keep one of each pair and deprecate the other.

    Exit code 1 when duplicates are found and not merged (a pair whose cases do not replay on
    the skill that would be kept is not merged).

    Example: skillbank dedup --merge
    """
    outcome: dict[tuple[str, str], str] = {}
    commits: list[str] = []
    with SkillBank(root) as bank:
        pairs = find_duplicates(bank.lifecycle)
        on = None  # every merge on one branch, resolved at the first
        for p in pairs if merge else []:
            try:  # one pair that is not a duplicate after all does not stop the others
                on = on or bank.lifecycle.target(branch, "dedup", [f"{p.keep}:{p.drop}"])
                commit = merge_duplicates(bank.lifecycle, p, branch=on)
                on = on.after(commit or None)
                commits.append(commit)
                outcome[(p.keep, p.drop)] = "merged"
            except SkillbankError as exc:
                outcome[(p.keep, p.drop)] = f"not merged: {exc}"
    if as_json:
        rows = [{**p.to_json(), "outcome": outcome.get((p.keep, p.drop))} for p in pairs]
        print_json(
            {"pairs": rows, "commits": commits, **commit_json(commits[-1] if commits else None)}
        )
    else:
        for p in pairs:
            done = f" ({outcome[(p.keep, p.drop)]})" if merge else ""
            click.echo(f"{p.drop} duplicates {p.keep} ({', '.join(p.reasons)}){done}")
        if not pairs:
            click.echo("no duplicates")
        if commits and commits[-1]:
            click.echo(committed(commits[-1]))
    if pairs and (not merge or any(o != "merged" for o in outcome.values())):
        raise SystemExit(EXIT_CHECK_FAILED)


@click.command(name="drift")
@click.option("--tool-specs", "specs_ref", required=True,
              help="The current tools: MODULE:ATTR or a .json file.")  # fmt: skip
@branch_option
@json_option
@root_option
def drift(specs_ref: str, branch: str | None, as_json: bool, root: Path) -> None:
    """Re-prove skills whose tools changed; demote those that fail (one commit).

    Exit code 1 when a skill was demoted.

    Example: skillbank drift --tool-specs skillbank.examples.shop:TOOL_SPECS
    """
    with SkillBank(root) as bank:
        report = check_drift(bank.lifecycle, load_tool_specs(specs_ref, bank.root), branch=branch)
    if as_json:
        print_json({**report.to_json(), **commit_json(report.commit)})
    else:
        for e in report.entries:
            click.echo(f"{e.action} {e.skill_id} ({e.stage}, v{e.version})"
                       + (f": {e.reason}" if e.reason else ""))  # fmt: skip
        if not report.entries:
            click.echo("no tool the skills use has changed")
        if report.commit:
            click.echo(committed(report.commit))
    if report.demoted:
        raise SystemExit(EXIT_CHECK_FAILED)
