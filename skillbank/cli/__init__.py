"""The ``skillbank`` command: each command parses input, calls the library and prints.

The commands live in modules by what they act on:

- `skillbank.cli.library`: init, learn, list, show, history, diff, rollback, deprecate,
  rename
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

import importlib
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from skillbank.cli.output import fail, remember_args

__all__ = ["COMMANDS", "cli", "main"]


class _Commands(dict[str, click.Command]):
    """The group's commands by name, each imported on first use.

    Every name is a key from the start; looking one up imports its module. So ``skillbank
    list`` imports what ``list`` needs, not what ``gate`` or ``serve`` do, and
    ``skillbank --help`` imports no command at all (`_Group.format_commands`).
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending = dict(COMMANDS)

    def _load(self, name: str) -> None:
        where = self._pending.pop(name, None)
        if where is not None:
            module, attr, _ = where
            super().__setitem__(name, getattr(importlib.import_module(module), attr))

    def __getitem__(self, name: str) -> click.Command:
        self._load(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        self._load(name)
        return super().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._pending or super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._pending, *super().keys()}))

    def __len__(self) -> int:
        return len({*self._pending, *super().keys()})

    def keys(self) -> Any:
        return list(self)

    def values(self) -> Any:
        return [self[name] for name in self]

    def items(self) -> Any:
        return [(name, self[name]) for name in self]

    def summary(self, name: str) -> str | None:
        """The first paragraph of a command's help, without importing it when not loaded."""
        where = self._pending.get(name)
        return where[2] if where is not None else None


class _Group(click.Group):
    """Reports whatever a command raised through `skillbank.cli.output.fail`; loads each
    command when it is used (`_Commands`)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        commands = self.commands
        if not isinstance(commands, _Commands):
            return super().format_commands(ctx, formatter)
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            summary = commands.summary(name)
            if summary is None:  # already loaded: ask it
                rows.append((name, commands[name].get_short_help_str(limit)))
            else:
                # click's own shortening, of the same text the command's help starts with
                stand_in = click.Command(name, help=summary)
                rows.append((name, stand_in.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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


#: Every command: the module defining it, its name there, and the first paragraph of its help
#: (for `skillbank --help`, which lists them without importing them; a test keeps it true).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": (
        "skillbank.cli.library",
        "init",
        "Create a skill bank at PATH: skills/, local state, and a git repo if there is none.",
    ),
    "learn": (
        "skillbank.cli.library",
        "learn",
        "Learn skills from trajectory files (.jsonl/.json, OpenAI messages with tool_calls).",
    ),
    "list": (
        "skillbank.cli.library",
        "list_",
        (
            "List the skills in the bank; a skill folder that does not load is reported (on "
            'stderr, or with "broken": true in --json; exit 1) and left out of everything '
            "agents are offered, while the others keep working."
        ),
    ),
    "show": (
        "skillbank.cli.library",
        "show",
        "Show one skill: signature, stage, tools, provenance and source.",
    ),
    "tools": (
        "skillbank.cli.run",
        "tools_",
        "Print the skills as tool definitions for a model, as a JSON list.",
    ),
    "run": (
        "skillbank.cli.run",
        "run",
        "Run a skill in the sandbox with JSON arguments, against host tools.",
    ),
    "do": (
        "skillbank.cli.run",
        "do",
        "Do a task as a reflex: an autonomous skill run from the task's words, no model.",
    ),
    "match": (
        "skillbank.cli.run",
        "match",
        "Show which known skills each trajectory's calls amount to (the shortest plan).",
    ),
    "history": (
        "skillbank.cli.library",
        "history",
        "List the commits that changed a skill, newest first: version, date, stage, subject.",
    ),
    "diff": (
        "skillbank.cli.library",
        "diff",
        (
            "Show how a skill changed between A and B, and whether the signature change "
            "breaks callers."
        ),
    ),
    "rollback": (
        "skillbank.cli.library",
        "rollback",
        "Restore the code of an earlier VERSION of a skill, as a new, higher version.",
    ),
    "deprecate": (
        "skillbank.cli.library",
        "deprecate",
        "Mark skill OLD_ID as replaced by another; it keeps running, with a warning.",
    ),
    "rename": (
        "skillbank.cli.library",
        "rename",
        "Give skill OLD_ID the id NEW_ID; OLD_ID stays callable as an alias of it.",
    ),
    "demo": (
        "skillbank.cli.demo",
        "demo",
        "Run the whole loop on the bundled shop example, offline, in DIRECTORY.",
    ),
    "gate": (
        "skillbank.cli.review",
        "gate",
        "Check skills as CI should before they land; exit 1 when a check fails.",
    ),
    "review": (
        "skillbank.cli.review",
        "review",
        "Write the Markdown body of a pull request for the skill changes since --base.",
    ),
    "serve": (
        "skillbank.cli.serve",
        "serve",
        "Serve the bank's skills to MCP clients (stdio by default).",
    ),
    "export": ("skillbank.cli.export", "export", "Write skills out in formats other tools read."),
    "report": (
        "skillbank.cli.report",
        "report",
        "Write an HTML page and a Markdown summary of the bank's skills and their use.",
    ),
    "search": (
        "skillbank.cli.run",
        "search_",
        "Find the skills that fit a task, best first: relevance x expected success x fit.",
    ),
    "stats": (
        "skillbank.cli.lifecycle",
        "stats",
        (
            "Show how each skill (or SKILL_ID) has done: calls, successes, failures, success "
            "rate, the success posterior (mean and 90% lower bound), mean and p95 latency, "
            "last error, stage."
        ),
    ),
    "stages": (
        "skillbank.cli.lifecycle",
        "stages",
        "Promote and demote skills by their ledger statistics; one commit per change.",
    ),
    "promote": (
        "skillbank.cli.lifecycle",
        "promote",
        "Grant or withdraw a skill's stage by review, as a commit; the stage is pinned.",
    ),
    "prune": (
        "skillbank.cli.lifecycle",
        "prune_",
        "Remove skills that keep failing or are never used (one commit).",
    ),
    "refine": (
        "skillbank.cli.lifecycle",
        "refine_",
        "Guard skills against the failed runs in FAILURES.jsonl (one commit).",
    ),
    "dedup": (
        "skillbank.cli.lifecycle",
        "dedup",
        "Find near-duplicate skills; with --merge, keep one of each pair and deprecate the other.",
    ),
    "drift": (
        "skillbank.cli.lifecycle",
        "drift",
        "Re-prove skills whose tools changed; demote those that fail (one commit).",
    ),
}


cli.commands = _Commands()


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="skillbank")
    raise SystemExit(0)
