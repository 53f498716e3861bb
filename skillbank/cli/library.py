"""Commands on the library itself: init, learn, list, show, history, diff, rollback, deprecate."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from skillbank import Skill, SkillBank, TrajectoryError, scan_trajectories
from skillbank.cli.options import branch_option, json_option, root_option
from skillbank.cli.output import (
    EXIT_CHECK_FAILED,
    commit_json,
    committed,
    echo_block,
    make_console,
    print_json,
    render_learn_report,
    render_skills,
)
from skillbank.formats import Format

__all__ = ["deprecate", "diff", "history", "init", "learn", "list_", "rollback", "show"]


@click.command(name="init")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path), default=".")
@json_option
def init(path: Path, as_json: bool) -> None:
    """Create a skill bank at PATH: skills/, local state, and a git repo if there is none.

    Example: skillbank init my-skills
    """
    bank = SkillBank.init(path)
    if as_json:
        print_json({"root": str(bank.root), "skills_dir": str(bank.library.dir)})
    else:
        click.echo(f"skill bank ready at {bank.root} (skills in {bank.library.dir})")


@click.command(name="learn")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--skip-invalid", is_flag=True, help="Learn from the good records of a file with bad ones."
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["auto", "openai", "anthropic", "otel"]),
    default="auto",
    show_default=True,
    help="The files' format: OpenAI chat or Responses messages, Anthropic Messages, or "
    "OpenTelemetry GenAI spans in OTLP JSON; auto tells each by its content.",
)
@click.option(
    "--recorded",
    is_flag=True,
    help="Also learn from what `skillbank serve --upstream` recorded and was not learned yet "
    "(.skillbank/recordings/; a cursor remembers what was learned).",
)
@branch_option
@root_option
@json_option
def learn(
    paths: tuple[Path, ...],
    skip_invalid: bool,
    format_: str,
    recorded: bool,
    branch: str | None,
    root: Path,
    as_json: bool,
) -> None:
    """Learn skills from trajectory files (.jsonl/.json, OpenAI messages with tool_calls).

    Each successful trajectory is compiled, validated, replayed in the sandbox, and stored;
    all changes land in one git commit on a branch (see --branch), ready for a pull request.
    Anthropic Messages transcripts and OTLP JSON traces (one trajectory per trace) are read
    too. Exits 1 when a trajectory was rejected.

    \b
    Examples:
      skillbank learn runs/*.jsonl --branch auto
      skillbank learn --recorded --branch current
    """
    formats: dict[str, Format] = {
        "auto": "auto", "openai": "openai", "anthropic": "anthropic", "otel": "otel",
    }  # fmt: skip
    if not paths and not recorded:
        raise click.UsageError("give trajectory files to learn from, or --recorded")
    if recorded:
        _learn_recorded(paths, skip_invalid, formats[format_], branch, root, as_json)
        return
    scan = scan_trajectories(list(paths), format=formats[format_])
    if scan.errors and not skip_invalid:
        more = f" (and {len(scan.errors) - 1} more bad record(s))" if len(scan.errors) > 1 else ""
        raise TrajectoryError(
            f"{scan.errors[0]}{more}; fix it, or pass --skip-invalid to learn from the good records"
        )
    for err in scan.errors:
        click.echo(f"skipped invalid record: {err}", err=True)
    with SkillBank(root) as bank:
        report = bank.learn(scan.trajectories, branch=branch)
        if as_json:
            data = report.to_json()
            data["invalid_records"] = [str(e) for e in scan.errors]
            print_json(data)
        else:
            render_learn_report(report, make_console())
    if report.rejected:
        sys.exit(EXIT_CHECK_FAILED)


def _learn_recorded(
    paths: tuple[Path, ...],
    skip_invalid: bool,
    format_: Format,
    branch: str | None,
    root: Path,
    as_json: bool,
) -> None:
    from skillbank.gateway import learn_recorded

    extra: list[Path] = list(paths)
    invalid = []
    if paths and skip_invalid:
        scan = scan_trajectories(list(paths), format=format_)
        invalid = [str(e) for e in scan.errors]
    with SkillBank(root) as bank:
        done = learn_recorded(
            bank, paths=extra, branch=branch, skip_invalid=skip_invalid, format=format_
        )
        report = done.report
        if as_json:
            data = report.to_json() if report is not None else {"commit": None, "added": []}
            data["recordings"] = [p.name for p in done.recordings]
            data["skipped_recordings"] = list(done.skipped)
            data["invalid_records"] = invalid
            print_json(data)
        else:
            click.echo(
                f"{len(done.recordings)} new recording(s) in {bank.library.state}/recordings"
            )
            for line in done.skipped:
                click.echo(f"skipped recording: {line}", err=True)
            if report is not None:
                render_learn_report(report, make_console())
            else:
                click.echo("nothing to learn")
    if report is not None and report.rejected:
        sys.exit(EXIT_CHECK_FAILED)


def _skill_json(skill: Skill, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": skill.id,
        "description": skill.description,
        "version": str(skill.version),
        "stage": skill.stage,
        "signature": skill.signature.render(),
        "parameters": [
            {"name": p.name, "type": p.annotation, "required": not p.has_default}
            for p in skill.signature.params
        ],
        "returns": skill.signature.returns,
        "tools": list(skill.tools),
        "requires": list(skill.requires),
        "cases": len(skill.cases),
        "content_hash": f"sha256:{skill.content_hash}",
        "deprecated_by": skill.deprecated_by,
        "pinned": skill.pinned,
    }
    if full:
        data["source"] = skill.source
        data["docstring"] = skill.signature.docstring
        data["tasks"] = list(skill.tasks)
        data["notes"] = list(skill.notes)
    return data


@click.command(name="list")
@root_option
@json_option
def list_(root: Path, as_json: bool) -> None:
    """List the skills in the bank; a skill folder that does not load is reported (on
    stderr, or with "broken": true in --json; exit 1) and left out of everything agents are
    offered, while the others keep working.

    Example: skillbank list --json
    """
    bank = SkillBank(root)
    skills, broken = bank.skills(), bank.broken()
    if as_json:
        rows = [_skill_json(s) for s in skills]
        rows += [{"id": b.id, "broken": True, "error": b.error} for b in broken]
        print_json(rows)
    elif not skills and not broken:
        click.echo("no skills yet; learn some with `skillbank learn FILE.jsonl`")
    else:
        if skills:
            render_skills(skills, make_console())
        for b in broken:
            click.echo(f"broken: {b.id}: {b.error}", err=True)
    if broken:  # reported, and a check that failed: fix the folder or remove it
        raise SystemExit(EXIT_CHECK_FAILED)


@click.command(name="show")
@click.argument("skill_id")
@root_option
@json_option
def show(skill_id: str, root: Path, as_json: bool) -> None:
    """Show one skill: signature, stage, tools, provenance and source.

    Example: skillbank show list_orders_by_email
    """
    bank = SkillBank(root)
    skill = bank.get(skill_id)
    patterns = bank.library.patterns(skill)
    alias = {"alias": skill_id} if skill.id != skill_id else {}
    if as_json:
        print_json({**_skill_json(skill, full=True), "patterns": patterns.to_json(), **alias})
        return
    console = make_console()
    if alias:
        console.print(f"[yellow]{skill_id} is an old id of {skill.id} (renamed)[/yellow]")
    console.print(f"[bold]{skill.id}[/bold]  v{skill.version}  {skill.stage}")
    console.print(skill.description)
    if skill.deprecated_by:
        console.print(f"[yellow]deprecated: use {skill.deprecated_by}[/yellow]")
    if skill.pinned:
        console.print(f"stage pinned by review: {skill.pinned}", highlight=False)
    console.print(f"signature: {skill.signature.render()}")
    console.print(f"tools:     {', '.join(skill.tools)}")
    sources = ", ".join(c.trajectory_id for c in skill.cases)
    console.print(f"cases:     {len(skill.cases)} (learned from: {sources})")
    for note in skill.notes:
        console.print(f"data flow: {note}")
    for phrasing in patterns.phrasings:  # how a reflex reads a task (patterns.json)
        console.print(f"asked as:  {phrasing.template} ({phrasing.cases} case(s))", highlight=False)
    console.print("")
    click.echo(skill.source, nl=False)


@click.command(name="history")
@click.argument("skill_id")
@root_option
@json_option
def history(skill_id: str, root: Path, as_json: bool) -> None:
    """List the commits that changed a skill, newest first: version, date, stage, subject.

    Example: skillbank history list_orders_by_email
    """
    entries = SkillBank(root).history(skill_id)
    if as_json:
        print_json([dataclasses.asdict(e) for e in entries])
        return
    if not entries:
        click.echo(f"{skill_id} has no commits yet")
        return
    for e in entries:
        stage = f"{e.stage}, deprecated: use {e.deprecated_by}" if e.deprecated_by else e.stage
        echo_block(f"{e.version}  {e.commit[:12]}  {stage}", f"{e.date}  {e.subject}")


@click.command(name="diff")
@click.argument("skill_id")
@click.argument("a", required=False)
@click.argument("b", required=False)
@root_option
@json_option
def diff(skill_id: str, a: str | None, b: str | None, root: Path, as_json: bool) -> None:
    """Show how a skill changed between A and B, and whether the signature change breaks callers.

    A and B are versions (1.2.0, 1, v1.2.0) or git revisions (a sha, a branch, HEAD~1).
    By default B is the working tree and A the version before it.

    \b
    Example: skillbank diff list_orders_by_email 1.0.0 2.0.0
    """
    change = SkillBank(root).versions.compare(skill_id, a, b)
    if as_json:
        print_json(change.to_json())
    else:
        click.echo(change.render(), nl=False)


@click.command(name="rollback")
@click.argument("skill_id")
@click.argument("version")
@branch_option
@root_option
@json_option
def rollback(skill_id: str, version: str, branch: str | None, root: Path, as_json: bool) -> None:
    """Restore the code of an earlier VERSION of a skill, as a new, higher version.

    The restored skill is validated and replayed first; the commit goes where --branch says.
    Versions never go backwards: the new version is the current one, bumped.

    Example: skillbank rollback list_orders_by_email 1.0.0
    """
    with SkillBank(root) as bank:
        commit = bank.rollback(skill_id, version, branch=branch)
        skill = bank.library.load_at(skill_id, commit)
    new = str(skill.version) if skill else "?"
    if as_json:
        print_json(
            {"skill_id": skill_id, "restored": version, "version": new, **commit_json(commit)}
        )
    else:
        click.echo(
            f"rolled back {skill_id} to v{new} (restores code of {version}): {committed(commit)}"
        )


@click.command(name="deprecate")
@click.argument("old_id")
@click.option("--by", "new_id", required=True, help="The skill that replaces OLD_ID.")
@branch_option
@root_option
@json_option
def deprecate(old_id: str, new_id: str, branch: str | None, root: Path, as_json: bool) -> None:
    """Mark skill OLD_ID as replaced by another; it keeps running, with a warning.

    Skills that require OLD_ID keep working through it until it is removed.

    Example: skillbank deprecate list_orders_by_email --by list_customer_orders
    """
    with SkillBank(root) as bank:
        commit = bank.deprecate(old_id, by=new_id, branch=branch)
        skill = bank.library.load_at(old_id, commit)
    new = str(skill.version) if skill else "?"
    if as_json:
        print_json(
            {"skill_id": old_id, "deprecated_by": new_id, "version": new, **commit_json(commit)}
        )
    else:
        click.echo(f"deprecated {old_id} (v{new}): use {new_id}; {committed(commit)}")


@click.command(name="rename")
@click.argument("old_id")
@click.argument("new_id")
@branch_option
@root_option
@json_option
def rename(old_id: str, new_id: str, branch: str | None, root: Path, as_json: bool) -> None:
    """Give skill OLD_ID the id NEW_ID; OLD_ID stays callable as an alias of it.

    The code is checked again under the new name; the alias (skills/OLD_ID/alias.json) keeps
    every caller of OLD_ID working and is hidden from listings.

    Example: skillbank rename place_order_by_email reorder_last_delivered
    """
    with SkillBank(root) as bank:
        commit = bank.rename(old_id, new_id, branch=branch)
        skill = bank.library.load_at(new_id, commit)
    new = str(skill.version) if skill else "?"
    if as_json:
        print_json({"old_id": old_id, "skill_id": new_id, "version": new, **commit_json(commit)})
    else:
        click.echo(
            f"renamed {old_id} to {new_id} (v{new}); {old_id} stays an alias; {committed(commit)}"
        )
