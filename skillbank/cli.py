"""The ``skillbank`` command: each command parses input, calls the library and prints.

Exit codes: 0 ok, 1 a check failed (or a skillbank error), 2 usage error, 3 internal error.
"""

from __future__ import annotations

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

from skillbank.bank import LearnReport, RunResult, SkillBank
from skillbank.errors import SkillbankError
from skillbank.library import git
from skillbank.skill import Skill
from skillbank.trajectory import load_trajectories, scan_trajectories

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


_root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SKILLBANK_ROOT",
    default=".",
    show_default=True,
    help="The bank's folder (holds skills/). Env: SKILLBANK_ROOT.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


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
@_json_option
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
        console.print(
            f"committed {report.commit[:12]} (validated with libcst, replayed in the sandbox)"
        )
    else:
        console.print("nothing to commit: the library already holds all of this")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--skip-invalid", is_flag=True, help="Learn from the good records of a file with bad ones."
)
@_root_option
@_json_option
def learn(paths: tuple[Path, ...], skip_invalid: bool, root: Path, as_json: bool) -> None:
    """Learn skills from trajectory files (.jsonl/.json, OpenAI messages with tool_calls).

    Each successful trajectory is compiled, validated, replayed in the sandbox, and stored;
    all changes land in one git commit. Exits 1 when a trajectory was rejected.

    Example: skillbank learn runs/*.jsonl
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
        report = bank.learn(scan.trajectories)
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
        table.add_row(s.id, str(s.version), s.stage, str(len(s.cases)), params)
    return table


@cli.command(name="list")
@_root_option
@_json_option
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
@_root_option
@_json_option
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
    console.print(f"signature: {skill.signature.render()}")
    console.print(f"tools:     {', '.join(skill.tools)}")
    sources = ", ".join(c.trajectory_id for c in skill.cases)
    console.print(f"cases:     {len(skill.cases)} (learned from: {sources})")
    for note in skill.notes:
        console.print(f"data flow: {note}")
    console.print("")
    click.echo(skill.source, nl=False)


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
@_root_option
@_json_option
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
        result = bank.run(skill_id, args, tools)
    if as_json:
        _print_json(result.to_json())
    else:
        _render_run(result, _console())
    if not result.ok:
        sys.exit(EXIT_CHECK_FAILED)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@_root_option
@_json_option
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
        result = bank.run(skill.id, args, shop.tools())
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


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="skillbank")
    raise SystemExit(0)
