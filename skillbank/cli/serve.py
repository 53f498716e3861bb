"""``skillbank serve``: the bank's skills to MCP clients, over stdio or streamable HTTP."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from skillbank import ConfigError, SkillBank, load_config
from skillbank.cli.options import executor_option, root_option
from skillbank.gateway import (
    INSTALL_HINT,
    is_tool,
    load_host_tools,
    read_library,
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
    "--http",
    "http",
    default=None,
    metavar="HOST:PORT",
    help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.",
)
@executor_option
@root_option
def serve(tools_spec: str | None, http: str | None, executor: str | None, root: Path) -> None:
    """Serve the bank's skills to MCP clients (stdio by default).

    Skills at stage associative or autonomous are tools; each call runs in the sandbox
    against the host tools. Every skill's SKILL.md is the resource skill://<id>. The
    list follows the library: skills learned while the server runs appear in it.

    With --http, the server is a replica that follows the git remote: it fetches and
    fast-forwards its checked-out branch every sync_interval_s seconds (configuration; 0:
    never) and on POST /sync (a webhook; HMAC-checked when SKILLBANK_SYNC_SECRET is set),
    so skills merged elsewhere are served without a restart.

    \b
    Example:
      SKILLBANK_SHOP_DB=shop.sqlite skillbank serve --tools skillbank.examples.shop
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
        with SkillBank(root, config=config) as bank:
            skills = read_library(bank)
            needed = sorted({t for s in skills if is_tool(s) for t in s.tools} - set(tools))
            if needed:
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
            if address is None:
                serve_stdio(bank, tools)
            else:
                follower = Follower(bank.library, config.sync_from, config.sync_interval_s)
                follower.start()
                try:
                    serve_http(bank, tools, *address, follower=follower)
                finally:
                    follower.stop()
    except KeyboardInterrupt:
        pass
