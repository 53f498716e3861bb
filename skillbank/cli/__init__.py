"""The ``skillbank`` command: each command parses input, calls the library and prints.

The commands live in modules by what they act on:

- `skillbank.cli.library`: init, learn, list, show, history, diff, rollback, deprecate
- `skillbank.cli.run`: search, tools, run, do, match
- `skillbank.cli.review`: gate, review
- `skillbank.cli.lifecycle`: stats, stages, promote, prune, refine, dedup, drift
- `skillbank.cli.serve`, `skillbank.cli.export`, `skillbank.cli.report`, `skillbank.cli.demo`

`skillbank.cli.output` holds what they share: the one JSON printer, the tables, and the one
map from an error to its exit code and its message (or, under ``--json``, its envelope);
`skillbank.cli.options` the ``--root`` and ``--json`` options. Commands do not catch errors:
the group does, once, in `_Group.invoke`. Only this package imports click.

Exit codes: 0 ok, 1 a check failed (or a skillbank error), 2 usage error, 3 internal error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import click

from skillbank.cli import demo, export, library, lifecycle, report, review, run, serve
from skillbank.cli.output import fail, remember_args

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Reports whatever a command raised through `skillbank.cli.output.fail`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        remember_args(ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            fail(ctx, exc)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="skillbank")
def cli() -> None:
    """skillbank: procedural memory for AI agents, kept as tested, versioned code.

    Learn skills from trajectories, check and commit them, and run them in a sandbox.

    \b
    Try it:  skillbank demo
    """


_COMMANDS: Sequence[click.Command] = (
    library.init,
    library.learn,
    library.list_,
    library.show,
    run.tools_,
    run.run,
    run.do,
    run.match,
    library.history,
    library.diff,
    library.rollback,
    library.deprecate,
    demo.demo,
    review.gate,
    review.review,
    serve.serve,
    export.export,
    report.report,
    run.search_,
    lifecycle.stats,
    lifecycle.stages,
    lifecycle.promote,
    lifecycle.prune_,
    lifecycle.refine_,
    lifecycle.dedup,
    lifecycle.drift,
)
for _command in _COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="skillbank")
    raise SystemExit(0)
