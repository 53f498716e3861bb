"""The ``skillbank`` command: each command parses input, calls the library and prints.

Exit codes: 0 ok, 1 a check failed (or a skillbank error), 2 usage error, 3 internal error.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from skillbank.bank import SkillBank
from skillbank.errors import SkillbankError
from skillbank.export import export_command
from skillbank.gate import GateReport, GateUsageError, load_tool_specs, run_gate
from skillbank.gate_output import dumps_sarif, junit_xml, write_github
from skillbank.learning import LearnReport
from skillbank.library import git
from skillbank.maturity import stages_command, stats_command
from skillbank.mcp_server import serve_command
from skillbank.options import json_option, root_option
from skillbank.report import report_command
from skillbank.review import review as review_changes
from skillbank.running import RunResult
from skillbank.search import search_command
from skillbank.skill import STAGES, Skill
from skillbank.toolspec import ToolFormat
from skillbank.trajectory import load_trajectories, scan_trajectories
from skillbank.upkeep import dedup_command, drift_command, prune_command, refine_command

__all__ = ["cli", "main"]

EXIT_CHECK_FAILED = 1
EXIT_INTERNAL = 3


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


class _Group(click.Group):
    """Turns skillbank errors into one line and exit 1, anything unexpected into exit 3."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SkillbankError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("SKILLBANK_DEBUG"):
                traceback.print_exc()
            click.echo(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set SKILLBANK_DEBUG=1 for the traceback, and please report it)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="skillbank")
def cli() -> None:
    """skillbank: procedural memory for AI agents, kept as tested, versioned code.

    Learn skills from trajectories, check and commit them, and run them in a sandbox.

    \b
    Try it:  skillbank demo
    """


@cli.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path), default=".")
@json_option
def init(path: Path, as_json: bool) -> None:
    """Create a skill bank at PATH: skills/, local state, and a git repo if there is none.

    Example: skillbank init my-skills
    """
    bank = SkillBank.init(path)
    if as_json:
        _print_json({"root": str(bank.root), "skills_dir": str(bank.library.dir)})
    else:
        click.echo(f"skill bank ready at {bank.root} (skills in {bank.library.dir})")


def _render_report(report: LearnReport, bank: SkillBank, console: Console) -> None:
    table = Table(title="procedures", show_lines=False)
    for col in ("skill", "change", "v", "cases", "new runs", "generalised"):
        table.add_column(col, overflow="fold")
    for p in report.procedures:
        if p.action == "unchanged":
            continue
        table.add_row(
            p.skill_id or "-",
            p.action if p.action != "rejected" else "[red]rejected[/red]",
            str(p.version or "-"),
            str(p.cases),
            str(len(p.trajectories)),
            "; ".join(p.generalised) or (p.reason or "")[:200],
        )
    if any(p.action != "unchanged" for p in report.procedures):
        console.print(table)
    n_unchanged = sum(1 for e in report.entries if e.action == "unchanged")
    console.print(
        f"{len(report.entries)} trajectories: {len(report.added)} skill(s) added, "
        f"{len(report.updated)} updated, {n_unchanged} trajectory(ies) already known, "
        f"{len(report.skipped)} skipped, {len(report.rejected)} rejected"
    )
    for e in report.skipped:
        console.print(f"skipped {e.trajectory_id}: {e.reason}")
    for e in report.rejected:
        console.print(f"[red]rejected[/red] {e.trajectory_id}: {e.reason}")
    if report.commit:
        where = f" on branch {report.branch}" if report.branch else " (detached HEAD)"
        console.print(
            f"committed {report.commit[:12]}{where} (validated with libcst, replayed in the "
            "sandbox)"
        )
        if report.branch and report.branch not in ("main", "master"):
            console.print(
                f"to open a pull request: git push -u origin {report.branch}, then "
                "skillbank review --base main"
            )
    else:
        console.print("nothing to commit: the library already holds all of this")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--skip-invalid", is_flag=True, help="Learn from the good records of a file with bad ones."
)
@click.option(
    "--branch",
    default=None,
    metavar="NAME|auto|current",
    help="Where the commit goes. auto (the default; env SKILLBANK_LEARN_BRANCH): a new "
    "skillbank/learn-... branch from HEAD, unless the bank has no commit yet or the current "
    "branch already starts with skillbank/. current: the checked-out branch. NAME: that "
    "branch (created from HEAD if missing; an existing one must point to HEAD).",
)
@root_option
@json_option
def learn(
    paths: tuple[Path, ...], skip_invalid: bool, branch: str | None, root: Path, as_json: bool
) -> None:
    """Learn skills from trajectory files (.jsonl/.json, OpenAI messages with tool_calls).

    Each successful trajectory is compiled, validated, replayed in the sandbox, and stored;
    all changes land in one git commit on a branch (see --branch), ready for a pull request.
    Exits 1 when a trajectory was rejected.

    Example: skillbank learn runs/*.jsonl --branch auto
    """
    scan = scan_trajectories(list(paths))
    if scan.errors and not skip_invalid:
        more = f" (and {len(scan.errors) - 1} more bad record(s))" if len(scan.errors) > 1 else ""
        raise click.ClickException(
            f"{scan.errors[0]}{more}; fix it, or pass --skip-invalid to learn from the good records"
        )
    for err in scan.errors:
        click.echo(f"skipped invalid record: {err}", err=True)
    with SkillBank(root) as bank:
        report = bank.learn(scan.trajectories, branch=branch)
        if as_json:
            data = report.to_json()
            data["invalid_records"] = [str(e) for e in scan.errors]
            _print_json(data)
        else:
            _render_report(report, bank, _console())
    if report.rejected:
        sys.exit(EXIT_CHECK_FAILED)


def _skill_json(skill: Skill, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": skill.id,
        "description": skill.description,
        "version": skill.version,
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
    }
    if full:
        data["source"] = skill.source
        data["docstring"] = skill.signature.docstring
        data["tasks"] = list(skill.tasks)
        data["notes"] = list(skill.notes)
    return data


def _skills_table(skills: list[Skill]) -> Table:
    # The id never wraps (it is what you type next); the signature shows the parameters.
    table = Table()
    table.add_column("skill", no_wrap=True)
    for col in ("v", "stage", "cases"):
        table.add_column(col)
    table.add_column("parameters -> returns", overflow="fold")
    for s in skills:
        params = s.signature.render()[len(s.id) :]
        stage = f"{s.stage}, deprecated: use {s.deprecated_by}" if s.deprecated_by else s.stage
        table.add_row(s.id, s.version, stage, str(len(s.cases)), params)
    return table


@cli.command(name="list")
@root_option
@json_option
def list_(root: Path, as_json: bool) -> None:
    """List the skills in the bank.

    Example: skillbank list --json
    """
    skills = SkillBank(root).skills()
    if as_json:
        _print_json([_skill_json(s) for s in skills])
        return
    if not skills:
        click.echo("no skills yet; learn some with `skillbank learn FILE.jsonl`")
        return
    _console().print(_skills_table(skills))


@cli.command()
@click.argument("skill_id")
@root_option
@json_option
def show(skill_id: str, root: Path, as_json: bool) -> None:
    """Show one skill: signature, stage, tools, provenance and source.

    Example: skillbank show find_customer_list_orders
    """
    skill = SkillBank(root).get(skill_id)
    if as_json:
        _print_json(_skill_json(skill, full=True))
        return
    console = _console()
    console.print(f"[bold]{skill.id}[/bold]  v{skill.version}  {skill.stage}")
    console.print(skill.description)
    if skill.deprecated_by:
        console.print(f"[yellow]deprecated: use {skill.deprecated_by}[/yellow]")
    console.print(f"signature: {skill.signature.render()}")
    console.print(f"tools:     {', '.join(skill.tools)}")
    sources = ", ".join(c.trajectory_id for c in skill.cases)
    console.print(f"cases:     {len(skill.cases)} (learned from: {sources})")
    for note in skill.notes:
        console.print(f"data flow: {note}")
    console.print("")
    click.echo(skill.source, nl=False)


@cli.command(name="tools")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["chat", "responses", "mcp"]),
    default="chat",
    show_default=True,
    help="chat: Chat Completions tools; responses: Responses API tools; mcp: MCP tools.",
)
@click.option(
    "--all-stages", is_flag=True, help="Offer cognitive skills too (learned from few runs)."
)
@root_option
def tools_(fmt: ToolFormat, all_stages: bool, root: Path) -> None:
    """Print the skills as tool definitions for a model, as a JSON list.

    One JSON Schema per skill, read from its signature; strict mode where the schema
    allows it. Deprecated skills are left out, and so are cognitive ones unless
    --all-stages.

    Example: skillbank tools --format responses > tools.json
    """
    stages = STAGES if all_stages else ("associative", "autonomous")
    _print_json(SkillBank(root).tool_specs(fmt, stages=stages))


def load_tools(spec: str) -> Mapping[str, Callable[..., Any]]:
    """Import host tools from ``MODULE:ATTR``: a mapping name -> callable, or a function
    returning one. The current directory is importable, so ``mytools:TOOLS`` finds
    ``./mytools.py``.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"{spec!r} must look like MODULE:ATTR", param_hint="--tools")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="--tools"
        ) from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise click.BadParameter(f"{module_name!r} has no attribute {attr!r}", param_hint="--tools")
    try:
        tools = obj() if callable(obj) and not isinstance(obj, Mapping) else obj
    except Exception as exc:
        raise click.BadParameter(
            f"calling {spec} raised {type(exc).__name__}: {exc}", param_hint="--tools"
        ) from None
    if not isinstance(tools, Mapping) or not all(callable(f) for f in tools.values()):
        raise click.BadParameter(
            f"{spec!r} must be (or return) a mapping of tool name to function", param_hint="--tools"
        )
    return tools


def _render_run(result: RunResult, console: Console) -> None:
    table = Table(title=f"{result.skill_id}: tool calls")
    for col in ("#", "tool", "arguments", "result"):
        table.add_column(col, overflow="fold")
    for n, call in enumerate(result.tool_calls, start=1):
        shown = f"error: {call.error}" if call.error else json.dumps(call.result)
        if len(shown) > 160:
            shown = shown[:157] + "..."
        table.add_row(str(n), call.tool, json.dumps(call.arguments), shown)
    console.print(table)
    if result.ok:
        console.print(f"returned in {result.duration_s * 1000:.1f} ms:")
        click.echo(json.dumps(result.value, indent=2, ensure_ascii=False))
    else:
        console.print(f"[red]failed[/red] ({result.error_type}): {result.error}")


@cli.command()
@click.argument("skill_id")
@click.option(
    "--args", "args_json", default="{}", show_default=True, help="Arguments as a JSON object."
)
@click.option(
    "--tools",
    "tools_spec",
    default=None,
    help="Host tools as MODULE:ATTR (a mapping or a function returning one), "
    "e.g. skillbank.examples.shop:tools.",
)
@root_option
@json_option
def run(skill_id: str, args_json: str, tools_spec: str | None, root: Path, as_json: bool) -> None:
    """Run a skill in the sandbox with JSON arguments, against host tools.

    Exits 1 when the skill fails. Example:

    \b
      SKILLBANK_SHOP_DB=shop.sqlite skillbank run order_product \\
        --args '{"email": "dana@example.com", "query": "lamp", "quantity": 1}' \\
        --tools skillbank.examples.shop:tools
    """
    try:
        args = json.loads(args_json)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--args") from None
    if not isinstance(args, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--args")
    with SkillBank(root) as bank:
        skill = bank.get(skill_id)
        if skill.tools and tools_spec is None:
            raise click.UsageError(
                f"{skill_id!r} calls tools ({', '.join(skill.tools)}); say where they live "
                "with --tools MODULE:ATTR (e.g. --tools skillbank.examples.shop:tools)"
            )
        tools = load_tools(tools_spec) if tools_spec else {}
        result = bank.run(skill_id, args, tools, caller="cli")
    if result.warning:
        click.echo(f"warning: {skill_id}: {result.warning}", err=True)
    if as_json:
        _print_json(result.to_json())
    else:
        _render_run(result, _console())
    if not result.ok:
        sys.exit(EXIT_CHECK_FAILED)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@root_option
@json_option
def match(paths: tuple[Path, ...], root: Path, as_json: bool) -> None:
    """Show which known skills each trajectory's calls amount to (the shortest plan).

    Every skill step was checked by running the skill in the sandbox against the
    trajectory's own results. Example: skillbank match runs.jsonl --json
    """
    trajectories = load_trajectories(list(paths))
    with SkillBank(root) as bank:
        plans = [bank.match(t) for t in trajectories]
    if as_json:
        _print_json([p.to_json() for p in plans])
        return
    table = Table()
    for col in ("trajectory", "calls", "plan", "ratio"):
        table.add_column(col, overflow="fold")
    for plan in plans:
        shown = " -> ".join(
            f"{s.name}({', '.join(f'{k}={json.dumps(v)}' for k, v in s.arguments.items())})"
            if s.kind == "skill"
            else f"[dim]{s.name}[/dim]"
            for s in plan.steps
        )
        table.add_row(plan.trajectory_id, str(plan.raw_calls), shown, f"{plan.call_ratio:.2f}")
    console = _console()
    console.print(table)
    raw = sum(p.raw_calls for p in plans)
    steps = sum(len(p.steps) for p in plans)
    covered = sum(1 for p in plans if len(p.steps) == 1 and p.steps[0].kind == "skill")
    console.print(
        f"{len(plans)} trajectories: {covered} reproduced by one skill call; "
        f"{steps} plan steps for {raw} raw calls (ratio {steps / raw if raw else 1:.2f})"
    )


@cli.command()
@click.argument("skill_id")
@root_option
@json_option
def history(skill_id: str, root: Path, as_json: bool) -> None:
    """List the commits that changed a skill, newest first: version, date, stage, subject.

    Example: skillbank history find_customer_list_orders
    """
    entries = SkillBank(root).history(skill_id)
    if as_json:
        _print_json([dataclasses.asdict(e) for e in entries])
        return
    if not entries:
        click.echo(f"{skill_id} has no commits yet")
        return
    table = Table()
    table.add_column("version", no_wrap=True)
    table.add_column("commit", no_wrap=True)
    for col in ("date", "stage", "subject"):
        table.add_column(col, overflow="fold")
    for e in entries:
        stage = f"{e.stage}, deprecated: use {e.deprecated_by}" if e.deprecated_by else e.stage
        table.add_row(e.version, e.commit[:12], e.date, stage, e.subject)
    _console().print(table)


@cli.command()
@click.argument("skill_id")
@click.argument("a", required=False)
@click.argument("b", required=False)
@root_option
def diff(skill_id: str, a: str | None, b: str | None, root: Path) -> None:
    """Show how a skill changed between A and B, and whether the signature change breaks callers.

    A and B are versions (1.2.0, 1, v1.2.0) or git revisions (a sha, a branch, HEAD~1).
    By default B is the working tree and A the version before it.

    \b
    Example: skillbank diff find_customer_list_orders 1.0.0 2.0.0
    """
    click.echo(SkillBank(root).diff(skill_id, a, b), nl=False)


@cli.command()
@click.argument("skill_id")
@click.argument("version")
@root_option
@json_option
def rollback(skill_id: str, version: str, root: Path, as_json: bool) -> None:
    """Restore the code of an earlier VERSION of a skill, as a new, higher version.

    The restored skill is validated and replayed first; the commit goes on the current
    branch. Versions never go backwards: the new version is the current one, bumped.

    Example: skillbank rollback find_customer_list_orders 1.0.0
    """
    with SkillBank(root) as bank:
        commit = bank.rollback(skill_id, version)
        skill = bank.get(skill_id)
    if as_json:
        _print_json(
            {"skill_id": skill_id, "restored": version, "version": skill.version, "commit": commit}
        )
    else:
        click.echo(
            f"rolled back {skill_id} to v{skill.version} (restores code of {version}): "
            f"committed {commit[:12]}"
        )


@cli.command()
@click.argument("old_id")
@click.option("--by", "new_id", required=True, help="The skill that replaces OLD_ID.")
@root_option
@json_option
def deprecate(old_id: str, new_id: str, root: Path, as_json: bool) -> None:
    """Mark skill OLD_ID as replaced by another; it keeps running, with a warning.

    Skills that require OLD_ID keep working through it until it is removed.

    Example: skillbank deprecate find_customer_list_orders --by list_customer_orders
    """
    with SkillBank(root) as bank:
        commit = bank.deprecate(old_id, by=new_id)
        skill = bank.get(old_id)
    if as_json:
        _print_json(
            {"skill_id": old_id, "deprecated_by": new_id, "version": skill.version,
             "commit": commit}
        )  # fmt: skip
    else:
        click.echo(f"deprecated {old_id} (v{skill.version}): use {new_id}; committed {commit[:12]}")


@cli.command()
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default="skillbank-demo"
)
def demo(directory: Path) -> None:
    """Run the whole loop on the bundled shop example, offline, in DIRECTORY.

    Learns skills from the bundled trajectories (compile, validate, replay, commit), lists
    them, then runs one on arguments no trajectory used, against a live SQLite shop.

    Example: skillbank demo /tmp/shop-demo
    """
    from skillbank.examples import DEMO_ARGS, Shop

    console = _console()
    trajectories = resources.files("skillbank.examples") / "trajectories" / "shop.jsonl"
    with resources.as_file(trajectories) as path:
        scan = scan_trajectories(path)
    console.rule("1. learn")
    console.print(
        f"{len(scan.trajectories)} example trajectories (OpenAI messages) from {trajectories.name}"
    )
    with SkillBank.init(directory) as bank:
        report = bank.learn(scan.trajectories)
        _render_report(report, bank, console)
        console.rule("2. the library")
        skills = bank.skills()
        console.print(_skills_table(skills))
        log = git(bank.root, "log", "--oneline", "-3", "--", bank.config.skills_dir, check=False)
        console.print("git log:")
        click.echo(log.stdout.rstrip() or "(no commits)")

        console.rule("3. run a learned skill on new arguments")
        skill = next(
            (
                s
                for s in skills
                if any(c.trajectory_id.startswith("shop-order_product") for c in s.cases)
            ),
            None,
        )
        if skill is None:
            raise click.ClickException(
                "the demo's order skill was not learned; see the report above"
            )
        shop = Shop.create(bank.root / "shop.sqlite")
        args = {p.name: DEMO_ARGS["order_product"][p.name] for p in skill.signature.params}
        sku_stock = {p["sku"]: p["stock"] for p in shop.snapshot()["products"]}
        console.print(f"skillbank run {skill.id} --args '{json.dumps(args)}'")
        result = bank.run(skill.id, args, shop.tools(), caller="demo")
        _render_run(result, console)
        if not result.ok:
            sys.exit(EXIT_CHECK_FAILED)
        after = {p["sku"]: p["stock"] for p in shop.snapshot()["products"]}
        for sku in sorted(sku_stock):
            if after[sku] != sku_stock[sku]:
                console.print(f"live shop changed: stock of {sku} {sku_stock[sku]} -> {after[sku]}")
        console.print(
            f"\nDone. The skills are committed in {bank.root} (try `git -C {directory} log -p`),"
            f" and `skillbank --help` lists the commands."
        )


# --- review and gate ------------------------------------------------------------------


def _tool_specs(bank: SkillBank, spec: str | None) -> dict[str, dict[str, Any]] | None:
    ref = spec if spec is not None else bank.config.tool_specs
    return load_tool_specs(ref, bank.root) if ref else None


def _render_gate(report: GateReport, console: Console) -> None:
    for finding in report.findings:
        click.echo(finding.render(report.root), err=finding.level == "error")
    if report.skills:
        table = Table(title="gate")
        for col in ("skill", "result", "checks"):
            table.add_column(col, overflow="fold")
        for sid in report.skills:
            mine = [o for o in report.outcomes if o.skill_id == sid]
            failed = [o.check for o in mine if o.status == "failed"]
            ran = [o.check for o in mine if o.status != "skipped"]
            skipped = [o.check for o in mine if o.status == "skipped"]
            detail = f"failed: {', '.join(failed)}" if failed else f"{len(ran)} passed"
            if skipped:
                detail += f"; skipped: {', '.join(skipped)}"
            result = "[red]FAIL[/red]" if failed else "[green]pass[/green]"
            table.add_row(sid, result, detail)
        console.print(table)
    scope = f"changed since {report.base}" if report.base else "in the library"
    if report.ok:
        console.print(f"gate passed: {len(report.skills)} skill(s) {scope}")
    else:
        failed = sorted({f.skill_id for f in report.errors})
        console.print(
            f"[red]gate failed[/red]: {len(report.errors)} finding(s) in "
            f"{', '.join(failed) or 'the library'}"
        )


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--base",
    default=None,
    help="Only check skills changed since this git ref "
    "(its merge base with HEAD), and check their version bumps against it.",
)
@click.option(
    "--fast",
    is_flag=True,
    help="Only the checks that run no code (policy, requires): for a pre-commit hook.",
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a JUnit XML report here.",
)
@click.option(
    "--sarif",
    "sarif_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a SARIF 2.1.0 report here.",
)
@click.option(
    "--tool-specs",
    "tool_specs",
    default=None,
    help="The current tool definitions, "
    "MODULE:ATTR or FILE.json, to check each skill's calls against (default: the "
    "tool_specs setting; empty skips the check).",
)
@click.option(
    "--examples",
    type=click.IntRange(min=0),
    default=None,
    help="Generated examples per skill for the property check "
    "(default: the prove_examples setting).",
)
@root_option
@json_option
def gate(
    paths: tuple[Path, ...],
    base: str | None,
    fast: bool,
    junit_path: Path | None,
    sarif_path: Path | None,
    tool_specs: str | None,
    examples: int | None,
    root: Path,
    as_json: bool,
) -> None:
    """Check skills as CI should before they land; exit 1 when a check fails.

    \b
    Checks: the libcst policy, replay of every recorded case, properties on
    generated inputs, determinism, version bumps (with --base), requires, and
    the tools each skill calls against their current schemas. PATHS (as
    pre-commit passes them) limit the check to the skills holding them.
    Inside GitHub Actions it also writes annotations and a job summary.

    \b
    Examples:
      skillbank gate                                   # every skill
      skillbank gate --base origin/main --junit gate.xml --sarif gate.sarif
    """
    with SkillBank(root) as bank:
        try:
            specs = _tool_specs(bank, tool_specs)
            report = run_gate(
                bank,
                base=base,
                paths=[str(p) for p in paths],
                fast=fast,
                tool_specs=specs,
                max_examples=examples if examples is not None else bank.config.prove_examples,
            )
        except GateUsageError as exc:
            raise click.UsageError(str(exc)) from None
    if junit_path is not None:
        _write_text(junit_path, junit_xml(report))
    if sarif_path is not None:
        _write_text(sarif_path, dumps_sarif(report))
    write_github(report, click.echo)
    if as_json:
        _print_json(report.to_json())
    else:
        _render_gate(report, _console())
    if not report.ok:
        sys.exit(EXIT_CHECK_FAILED)


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None


@cli.command()
@click.option(
    "--base", required=True, help="The git ref the pull request merges into, e.g. origin/main."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the Markdown here instead of printing it.",
)
@click.option(
    "--tool-specs",
    "tool_specs",
    default=None,
    help="The current tool definitions (see `skillbank gate --help`).",
)
@click.option(
    "--examples",
    type=click.IntRange(min=0),
    default=None,
    help="Generated examples per skill for the property check.",
)
@root_option
def review(
    base: str, output: Path | None, tool_specs: str | None, examples: int | None, root: Path
) -> None:
    """Write the Markdown body of a pull request for the skill changes since --base.

    For each added, changed or removed skill: summary, signature diff (breaking or
    not), code diff, tools it reads and writes, check results, the trajectories it
    came from, stage changes and risk flags. Example:

    \b
      skillbank review --base origin/main -o pr.md && gh pr create --body-file pr.md
    """
    with SkillBank(root) as bank:
        try:
            markdown, _ = review_changes(
                bank,
                base,
                tool_specs=_tool_specs(bank, tool_specs),
                max_examples=examples if examples is not None else bank.config.prove_examples,
            )
        except GateUsageError as exc:
            raise click.UsageError(str(exc)) from None
    if output is not None:
        _write_text(output, markdown)
        click.echo(f"review written to {output}")
    else:
        click.echo(markdown, nl=False)


# Commands defined next to what they serve (they import heavy SDKs only when run).
cli.add_command(serve_command)
cli.add_command(export_command)
cli.add_command(report_command)
for _command in (
    search_command,
    stats_command,
    stages_command,
    prune_command,
    refine_command,
    dedup_command,
    drift_command,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="skillbank")
    raise SystemExit(0)
