"""``skillbank serve``: the bank's skills to MCP clients, over stdio or streamable HTTP."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import click

from skillbank import ConfigError, LearnReport, SkillBank, load_config
from skillbank.cli.options import branch_option, executor_option, root_option
from skillbank.gateway import (
    IDLE_GAP_S,
    INSTALL_HINT,
    RETRY_S,
    is_tool,
    learn_recorded,
    load_host_tools,
    read_library,
    read_upstreams,
    recordings_of,
    serve_http,
    serve_stdio,
)
from skillbank.sync import Follower

__all__ = ["serve"]


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(
            f"{value!r} must look like HOST:PORT, e.g. 127.0.0.1:8765", param_hint="--http"
        )
    return host, int(port)


def learned_summary(report: LearnReport) -> str:
    """What one learning run of the gateway changed, for its stderr: the skills added and the
    skills updated (a new case can make a skill a tool), with their versions and the commit."""

    def named(ids: list[str]) -> str:
        return ", ".join(f"{i} v{report.versions[i]}" if i in report.versions else i for i in ids)

    parts = [f"added {named(report.added)}"] if report.added else []
    if report.updated:
        parts.append(f"updated {named(report.updated)}")
    if not parts:
        return "no skill added or changed"
    return "; ".join(parts) + (f" (commit {report.commit})" if report.commit else "")


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/mcp"


@click.command(name="serve")
@click.option(
    "--tools",
    "tools_spec",
    default=None,
    metavar="MODULE[:ATTR]",
    help="The host tools skills call: a module whose `tools` (or ATTR) is a mapping of name "
    "to function, or a function returning one, e.g. skillbank.examples.shop.",
)
@click.option(
    "--upstream",
    "upstream_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help='Upstream MCP servers, in the {"mcpServers": {...}} file MCP clients use: their '
    "tools are passed through, every call is recorded under .skillbank/recordings/, and "
    "skills call them as host tools.",
)
@click.option(
    "--http",
    "http",
    default=None,
    metavar="HOST:PORT",
    help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.",
)
@click.option(
    "--record/--no-record",
    default=True,
    show_default=True,
    help="Record the calls to upstream tools as trajectories (with --upstream).",
)
@click.option(
    "--learn",
    "learn_on_end",
    is_flag=True,
    help="Learn from the recordings each time a task ends successfully (as `skillbank learn "
    "--recorded`, committing as --branch says).",
)
@click.option(
    "--idle-gap",
    type=click.FloatRange(min=1.0),
    default=IDLE_GAP_S,
    show_default=True,
    metavar="SECONDS",
    help="Without skillbank_begin_task, a session's calls are one trajectory until it is idle "
    "this long.",
)
@click.option(
    "--upstream-retry",
    type=click.FloatRange(min=0.0),
    default=RETRY_S,
    show_default=True,
    metavar="SECONDS",
    help="An upstream server that cannot be started is tried again after this long, then "
    "twice as long each time (up to 5 minutes); its tools are offered once it is up. 0: never.",
)
@branch_option
@executor_option
@root_option
def serve(
    tools_spec: str | None,
    upstream_file: Path | None,
    http: str | None,
    record: bool,
    learn_on_end: bool,
    idle_gap: float,
    upstream_retry: float,
    branch: str | None,
    executor: str | None,
    root: Path,
) -> None:
    """Serve the bank's skills to MCP clients (stdio by default).

    Skills at stage associative or autonomous are tools; each call runs in the sandbox
    against the host tools. Every skill's SKILL.md is the resource skill://<id>; cognitive
    skills are also prompts. The list follows the library: skills learned while the server
    runs appear in it.

    With --upstream, the server is a gateway in front of the MCP servers the file names:
    their tools are offered too, every call to them is recorded, skillbank_begin_task and
    skillbank_end_task mark tasks, and `skillbank learn --recorded` (or --learn) turns the
    recorded tasks into skills.

    With --http, the server is a replica that follows the git remote: it fetches and
    fast-forwards its checked-out branch every sync_interval_s seconds (configuration; 0:
    never) and on POST /sync (a webhook; HMAC-checked when SKILLBANK_SYNC_SECRET is set),
    so skills merged elsewhere are served without a restart.

    \b
    Examples:
      SKILLBANK_SHOP_DB=shop.sqlite skillbank serve --tools skillbank.examples.shop
      skillbank serve --upstream mcp.json --learn --branch current
    """
    if importlib.util.find_spec("mcp") is None:
        raise click.ClickException(f"skillbank serve needs the mcp package: {INSTALL_HINT}")
    address = _host_port(http) if http is not None else None
    try:
        tools = load_host_tools(tools_spec) if tools_spec is not None else {}
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--tools") from None
    config = load_config(root, {"executor": executor})
    try:
        upstreams = read_upstreams(upstream_file) if upstream_file is not None else ()
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--upstream") from None
    if learn_on_end and not (upstream_file is not None and record):
        raise click.BadParameter(
            "--learn learns from what the gateway records: give --upstream FILE (and keep "
            "--record)",
            param_hint="--learn",
        )
    try:
        with SkillBank(root, config=config) as bank:
            skills = read_library(bank)
            needed = sorted({t for s in skills if is_tool(s) for t in s.tools} - set(tools))
            if needed and not upstreams:
                click.echo(
                    f"warning: no host tool {', '.join(needed)}: skills calling them will fail; "
                    "name the module that provides them with --tools MODULE",
                    err=True,
                )
            where = _url(*address) if address else "stdio"
            n_tools = sum(1 for s in skills if is_tool(s))
            click.echo(
                f"skillbank: serving {n_tools} of {len(skills)} skill(s) from {bank.root} on "
                f"{where}",
                err=True,
            )
            recordings = recordings_of(bank) if upstreams and record else None
            if upstreams:
                names = ", ".join(u.describe() for u in upstreams)
                click.echo(f"skillbank: upstream servers: {names}", err=True)
            if recordings is not None:
                click.echo(f"skillbank: recording calls in {recordings.folder}", err=True)

            def learn() -> None:
                done = learn_recorded(bank, branch=branch, store=recordings)
                if done.report is not None:
                    click.echo(f"skillbank: learned from {len(done.recordings)} recording(s): "
                               f"{learned_summary(done.report)}", err=True)  # fmt: skip

            def report(line: str) -> None:
                click.echo(f"skillbank: {line}", err=True)

            options: dict[str, Any] = {
                "upstreams": upstreams,
                "recordings": recordings,
                "learn": learn if learn_on_end else None,
                "report": report,
                "idle_gap_s": idle_gap,
                "upstream_retry_s": upstream_retry or None,
            }
            if address is None:
                serve_stdio(bank, tools, **options)
            else:
                follower = Follower(bank.library, config.sync_from, config.sync_interval_s)
                follower.start()
                try:
                    serve_http(bank, tools, *address, follower=follower, **options)
                finally:
                    follower.stop()
    except KeyboardInterrupt:
        pass
