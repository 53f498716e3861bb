"""Commands that use skills: find them (search), offer them (tools), run them (run, match)."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from skillbank import SkillBank, load_config, load_trajectories
from skillbank.cli.options import executor_option, json_option, root_option
from skillbank.cli.output import (
    EXIT_CHECK_FAILED,
    echo_block,
    make_console,
    print_json,
    render_run,
    say,
)
from skillbank.skill import STAGES
from skillbank.toolspec import ToolFormat

__all__ = ["do", "load_tools", "match", "run", "search_", "tools_"]


@click.command(name="tools")
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
    print_json(SkillBank(root).tool_specs(fmt, stages=stages))


def load_tools(spec: str) -> Mapping[str, Callable[..., Any]]:
    """Import host tools from ``MODULE:ATTR`` or ``MODULE`` (``ATTR`` defaults to ``tools``,
    as for `skillbank do` and `skillbank serve`): a mapping name -> callable, or a function
    returning one. The current directory is importable, so ``mytools:TOOLS`` finds
    ``./mytools.py``.
    """
    module_name, colon, attr = spec.partition(":")
    attr = attr if colon else "tools"
    if not module_name or not attr:
        raise click.BadParameter(
            f"{spec!r} must look like MODULE or MODULE:ATTR", param_hint="--tools"
        )
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


@click.command(name="run")
@click.argument("skill_id")
@click.option(
    "--args", "args_json", default="{}", show_default=True, help="Arguments as a JSON object."
)
@click.option(
    "--tools",
    "tools_spec",
    default=None,
    help="Host tools as MODULE or MODULE:ATTR (a mapping or a function returning one; "
    "ATTR defaults to `tools`), e.g. skillbank.examples.shop.",
)
@click.option(
    "--inline-tools",
    is_flag=True,
    default=None,
    help="Call the host tools on the thread that runs the skill (for tools bound to it, "
    "such as an sqlite3 connection); the timeout then cannot cut a hanging tool short. "
    "Default: the configuration key `sandbox_inline_tools` (SKILLBANK_SANDBOX_INLINE_TOOLS).",
)
@executor_option
@root_option
@json_option
def run(
    skill_id: str,
    args_json: str,
    tools_spec: str | None,
    inline_tools: bool | None,
    executor: str | None,
    root: Path,
    as_json: bool,
) -> None:
    """Run a skill in the sandbox with JSON arguments, against host tools.

    Exits 1 when the skill fails. Example:

    \b
      SKILLBANK_SHOP_DB=shop.sqlite skillbank run \\
        place_order_by_email_and_query \\
        --args '{"email": "dana@example.com", "query": "lamp", "quantity": 1}' \\
        --tools skillbank.examples.shop:tools
    """
    try:
        args = json.loads(args_json)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--args") from None
    if not isinstance(args, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--args")
    overrides = {"executor": executor, "sandbox_inline_tools": inline_tools}
    with SkillBank(root, config=load_config(root, overrides)) as bank:
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
        print_json(result.to_json())
    else:
        render_run(result, make_console())
    if not result.ok:
        sys.exit(EXIT_CHECK_FAILED)


@click.command(name="do")
@click.argument("task")
@click.option(
    "--tools",
    "tools_spec",
    default=None,
    help="Host tools as MODULE or MODULE:ATTR (a mapping, or a function returning one; "
    "ATTR defaults to `tools`), e.g. skillbank.examples.shop.",
)
@click.option("--dry-run", is_flag=True, help="Show the call a reflex would make; run nothing.")
@root_option
@json_option
def do(task: str, tools_spec: str | None, dry_run: bool, root: Path, as_json: bool) -> None:
    """Do a task as a reflex: an autonomous skill run from the task's words, no model.

    The skill and its arguments are read off the task; when anything is uncertain nothing
    runs, and the output names the skill that came closest and why it abstained. Exits 1
    when nothing ran (or the skill failed); with --dry-run, 1 when it would abstain.

    \b
    Example:
      SKILLBANK_SHOP_DB=shop.sqlite skillbank do \\
        "Show the order history for bob@example.com" --tools skillbank.examples.shop
    """
    from skillbank.gateway.server import load_host_tools

    with SkillBank(root) as bank:
        decision = bank.plan_reflex(task)
        result = None
        if decision.skill_id is not None and not dry_run:
            skill = bank.get(decision.skill_id)
            if skill.tools and tools_spec is None:
                raise click.UsageError(
                    f"{skill.id!r} calls tools ({', '.join(skill.tools)}); say where they live "
                    "with --tools MODULE (e.g. --tools skillbank.examples.shop), or add --dry-run"
                )
            tools = load_host_tools(tools_spec) if tools_spec else {}
            result = bank.run(skill.id, decision.args, tools, caller="reflex")
    if as_json:
        print_json({"decision": decision.to_json(), "result": result.to_json() if result else None})
    elif decision.skill_id is None:
        click.echo(f"no reflex ({decision.rule}): {decision.reason}")
        if decision.closest:
            click.echo(f"closest skill: {decision.closest}")
    else:
        call = ", ".join(
            f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in decision.args.items()
        )
        click.echo(f"{'would run' if dry_run else 'reflex'}: {decision.skill_id}({call})")
        click.echo(f"  matched by {decision.reason.partition(' by ')[2]}")
        if result is not None:
            render_run(result, make_console())
    if decision.skill_id is None or (result is not None and not result.ok):
        sys.exit(EXIT_CHECK_FAILED)


@click.command(name="match")
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
        print_json([p.to_json() for p in plans])
        return
    for plan in plans:
        shown = " -> ".join(
            f"{s.name}({', '.join(f'{k}={json.dumps(v)}' for k, v in s.arguments.items())})"
            if s.kind == "skill"
            else f"(tool) {s.name}"
            for s in plan.steps
        )
        echo_block(
            f"{plan.trajectory_id}  {plan.raw_calls} call(s), ratio {plan.call_ratio:.2f}", shown
        )
    console = make_console()
    raw = sum(p.raw_calls for p in plans)
    steps = sum(len(p.steps) for p in plans)
    covered = sum(1 for p in plans if len(p.steps) == 1 and p.steps[0].kind == "skill")
    say(
        console,
        f"{len(plans)} trajectories: {covered} reproduced by one skill call; "
        f"{steps} plan steps for {raw} raw calls (ratio {steps / raw if raw else 1:.2f})",
    )


@click.command(name="search")
@click.argument("text")
@click.option("--k", "k", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many skills to show at most.")  # fmt: skip
@click.option("--thompson", is_flag=True, help="Rank by a sample of each success posterior.")
@click.option("--seed", type=int, default=None, help="Seed for --thompson (repeatable order).")
@json_option
@root_option
def search_(text: str, k: int, thompson: bool, seed: int | None, as_json: bool, root: Path) -> None:
    """Find the skills that fit a task, best first: relevance x expected success x fit.

    fit is 0.25 for a skill whose effect does not suit the request: one that changes
    something, for a question or a request to see; one that only reads, for a request to
    change something.

    Example: skillbank search "show the orders of bob@example.com" --k 3
    """
    from skillbank.search import backend  # numpy: only for the commands that search

    hits = SkillBank(root).search(text, k, thompson=thompson, seed=seed)
    if as_json:
        print_json({"backend": backend(), "hits": [asdict(h) for h in hits]})
        return
    if not hits:
        click.echo("no skill matches; `skillbank list` shows them all")
        return
    for h in hits:
        echo_block(
            f"{h.score:.3f}  {h.skill_id}",
            f"relevance {h.relevance:.2f}, success {h.success:.2f}"
            + (f", fit {h.fit:.2f} ({_EFFECT_WORDS[h.effect]})" if h.fit < 1 else "")
            + f", {h.stage}: {h.description}",
        )
    click.echo(f"({backend()})")


#: How `search_` names a skill's effect when it does not suit the request.
_EFFECT_WORDS = {"query": "only reads", "command": "changes something", "": "unknown"}
