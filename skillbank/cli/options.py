"""Command-line options the command groups share: ``--root``, ``--json``, ``--branch`` and
``--executor``."""

from __future__ import annotations

from pathlib import Path

import click

from skillbank.cli.output import remember_json

__all__ = ["branch_option", "executor_option", "json_option", "root_option"]

#: ``--root DIR`` (env ``SKILLBANK_ROOT``): the bank every command works on.
root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SKILLBANK_ROOT",
    default=".",
    show_default=True,
    help="The bank's folder (holds skills/). Env: SKILLBANK_ROOT.",
)

#: ``--json``: machine-readable output, errors included. It is read before any other option
#: (eager), so a usage error in a later one is reported as JSON too.
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    is_eager=True,
    callback=remember_json,
    help="Print JSON for scripts.",
)

#: ``--branch``: where a command that changes skills commits.
branch_option = click.option(
    "--branch",
    default=None,
    metavar="auto|current|NAME",
    help="Where the commit goes. auto (the default; configuration key `branch`, env "
    "SKILLBANK_BRANCH): a new skillbank/<command>-... review branch from HEAD, written "
    "without checking it out (your working tree does not change), unless the bank has no "
    "commit yet or the current branch already starts with skillbank/. current: the "
    "checked-out branch. NAME: that branch (created from HEAD if missing; an existing one "
    "must point to HEAD).",
)

#: ``--executor local|ray``: what runs the sandboxed calls (overrides the ``executor`` key).
executor_option = click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="What runs each sandboxed call: local worker processes, or actors on the Ray cluster "
    "at ray_address (SKILLBANK_RAY_ADDRESS; needs pip install 'skillbank[ray]'). Default: "
    "the configuration key `executor` (SKILLBANK_EXECUTOR), else local.",
)
