"""What the commands print: the one JSON printer, the tables, and the one error map.

Every command prints JSON with `print_json` and tables on `make_console`. Errors are not
handled by commands: the group hands whatever a command raised to `fail`, which maps it to an
exit code and prints it, as one line on stderr or, under ``--json``, as the envelope on
stdout::

    {"ok": false, "error": {"type": "SkillNotFound", "message": "...", "hint": "..."}}

==============================  ==================  =========
raised                          ``type``            exit code
==============================  ==================  =========
a `SkillbankError`              its class name      1
`GateUsageError`                ``GateUsageError``  2
`click.UsageError` (and kin)    ``UsageError``      2
another `click.ClickException`  ``Error``           1
anything else                   ``InternalError``   3
==============================  ==================  =========

A check that fails (a rejected trajectory, a failed gate, a failed run) is not an error: the
command prints its data and exits 1 itself.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import textwrap
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import click

from skillbank.errors import GateUsageError, SkillbankError, storage_error
from skillbank.progress import quiet

if TYPE_CHECKING:  # only annotations: the command line imports what a command uses
    from rich.console import Console

    from skillbank import LearnReport, RunResult, Skill

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_INTERNAL",
    "EXIT_USAGE",
    "ErrorReport",
    "commit_json",
    "committed",
    "describe_error",
    "echo_block",
    "fail",
    "make_console",
    "print_json",
    "remember_args",
    "remember_json",
    "render_learn_report",
    "render_run",
    "render_skills",
    "say",
]

#: A check failed, or a skillbank error.
EXIT_CHECK_FAILED = 1
#: The command was called wrongly.
EXIT_USAGE = 2
#: A bug: anything skillbank did not raise on purpose.
EXIT_INTERNAL = 3

_INTERNAL_HINT = "set SKILLBANK_DEBUG=1 for the traceback, and please report it"
# Keys in click's context meta (shared by every context of one invocation).
_JSON = "skillbank.json"
_ARGS = "skillbank.args"


def print_json(data: Any) -> None:
    """Print ``data`` as the commands' JSON: indented, keys sorted, non-ASCII kept."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


def make_console() -> Console:
    """A console for tables and markup (no automatic highlighting, long lines kept)."""
    from rich.console import Console  # imported when a command prints a table

    return Console(highlight=False, soft_wrap=True)


# --- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorReport:
    """An error as the CLI reports it."""

    #: The error's kind: a `SkillbankError` class name, ``UsageError`` or ``InternalError``.
    type: str
    #: The one-line message (the same text as without ``--json``).
    message: str
    #: What to do next.
    hint: str
    #: The process's exit code.
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        """The JSON error envelope."""
        return {
            "ok": False,
            "error": {"type": self.type, "message": self.message, "hint": self.hint},
        }


def describe_error(exc: Exception) -> ErrorReport:
    """How ``exc`` is reported: its type, message, hint and exit code (the table above)."""
    if isinstance(exc, SkillbankError):
        code = EXIT_USAGE if isinstance(exc, GateUsageError) else EXIT_CHECK_FAILED
        return ErrorReport(type(exc).__name__, str(exc), exc.hint, code)
    if isinstance(exc, click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else "skillbank"
        hint = f"run `{where} --help` for the usage"
        return ErrorReport("UsageError", exc.format_message(), hint, exc.exit_code)
    if isinstance(exc, click.ClickException):
        hint = "read the message: it names what is wrong and where"
        return ErrorReport("Error", exc.format_message(), hint, exc.exit_code)
    storage = storage_error(exc, "the bank's files")
    if storage is not None:
        # An OS or SQLite error no layer below named (a read-only bank, a full disk) is the
        # environment's problem, not a bug: say which, and what to do.
        return ErrorReport(type(storage).__name__, str(storage), storage.hint, EXIT_CHECK_FAILED)
    message = f"{type(exc).__name__}: {exc}"
    return ErrorReport("InternalError", message, _INTERNAL_HINT, EXIT_INTERNAL)


def fail(ctx: click.Context, exc: Exception) -> NoReturn:
    """Report ``exc``, which a command raised, and exit with its code.

    Called once, by the group's invoke, for every command. Under ``--json`` the envelope goes
    to stdout; otherwise click prints the message on stderr as ``Error: ...`` (with the
    usage for usage errors), and an internal error prints one line and no traceback.
    """
    error = describe_error(exc)
    if error.exit_code == EXIT_INTERNAL and os.environ.get("SKILLBANK_DEBUG"):
        traceback.print_exc()
    if _json_requested(ctx, exc):
        print_json(error.to_json())
        ctx.exit(error.exit_code)
    if isinstance(exc, click.ClickException):
        raise exc
    if isinstance(exc, GateUsageError):
        raise click.UsageError(error.message, ctx=_subcommand_context(ctx)) from None
    if isinstance(exc, SkillbankError):
        raise click.ClickException(error.message) from None
    if error.exit_code != EXIT_INTERNAL:  # a read-only bank, a full disk (`storage_error`)
        raise click.ClickException(f"{error.message} ({error.hint})") from None
    click.echo(f"internal error: {error.message} ({error.hint})", err=True)
    ctx.exit(EXIT_INTERNAL)


def remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """The ``--json`` option's callback: note whether errors are to be reported as JSON, and
    keep progress bars off while the command runs (its output is for a script)."""
    ctx.meta[_JSON] = value
    if value:
        ctx.with_resource(quiet())
    return value


def remember_args(ctx: click.Context, args: Sequence[str]) -> None:
    """Note the command line, for usage errors that come before ``--json`` is read."""
    ctx.meta[_ARGS] = tuple(args)


def _json_requested(ctx: click.Context, exc: Exception) -> bool:
    flag = ctx.meta.get(_JSON)
    if flag is not None:
        return bool(flag)
    # click stopped before reading --json (an unknown option, an option without its value):
    # the flag counts when it is on the command line and the failing command takes it.
    words = tuple(itertools.takewhile(lambda arg: arg != "--", ctx.meta.get(_ARGS, ())))
    failing = exc.ctx if isinstance(exc, click.UsageError) else None
    return (
        "--json" in words
        and failing is not None
        and any(p.name == "as_json" for p in failing.command.params)
    )


def _subcommand_context(ctx: click.Context) -> click.Context:
    # The context of the command the group invoked, so a usage error shows its usage line.
    name = ctx.invoked_subcommand
    group = ctx.command
    command = group.get_command(ctx, name) if name and isinstance(group, click.Group) else None
    return click.Context(command, info_name=name, parent=ctx) if command is not None else ctx


# --- what several commands show -------------------------------------------------------------


def render_learn_report(report: LearnReport, console: Console) -> None:
    """Print what learning did: a table of changed procedures, counts, and the commit."""
    changed = [p for p in report.procedures if p.action != "unchanged"]
    if changed:
        console.print("procedures:")
    for p in changed:
        action = "[red]rejected[/red]" if p.action == "rejected" else p.action
        console.print(f"  {action} {p.skill_id or '(no skill)'}")
        details = list(p.generalised) or ([p.reason[:300]] if p.reason else [])
        if p.action != "rejected":
            counts = f"v{p.version or '-'}, {p.cases} case(s), {len(p.trajectories)} new run(s)"
            details.insert(0, counts)
        for line in details:
            for part in _wrapped(line, console.width, "      "):
                console.print(part, markup=False)
    effects = {e.tool: e for p in report.procedures if p.action != "unchanged" for e in p.effects}
    if effects:
        console.print("tools, by what they do (set query_tools / command_tools to overrule):")
        for effect in sorted(effects.values(), key=lambda e: (e.effect != "command", e.tool)):
            console.print(f"  {effect.tool}: {effect.describe()}")
    if not report.entries:
        say(console, "no trajectories in the input: nothing to learn")
        return
    n_unchanged = sum(1 for e in report.entries if e.action == "unchanged")
    duplicates = (
        f", {len(report.duplicates)} duplicate(s) in the input" if report.duplicates else ""
    )
    say(
        console,
        f"{len(report.entries)} trajectories: {len(report.added)} skill(s) added, "
        f"{len(report.updated)} updated, {n_unchanged} trajectory(ies) already known"
        f"{duplicates}, {len(report.skipped)} skipped, {len(report.rejected)} rejected",
    )
    for e in report.skipped:
        console.print(f"skipped {e.trajectory_id}: {e.reason}")
    for e in report.rejected:
        console.print(f"[red]rejected[/red] {e.trajectory_id}: {e.reason}")
    if report.commit:
        where = f" on branch {report.branch}" if report.branch else " (detached HEAD)"
        say(
            console,
            f"committed {report.commit[:12]}{where} (validated with libcst, replayed in the "
            "sandbox)",
        )
        # Commands to copy: one a line, never wrapped.
        if report.branch and not report.checked_out:
            say(console, "your working tree is unchanged; to review the branch, then open a "
                         "pull request:")  # fmt: skip
            base = report.base_branch or "main"
            for command in (f"git switch {report.branch}", f"skillbank review --base {base}",
                            f"git push -u origin {report.branch}"):  # fmt: skip
                console.print(f"  {command}", markup=False)
        elif report.branch and report.branch not in ("main", "master"):
            say(console, "to open a pull request:")
            for command in (f"git push -u origin {report.branch}", "skillbank review --base main"):
                console.print(f"  {command}", markup=False)
    else:
        console.print("nothing to commit: the library already holds all of this")


def render_skills(skills: Sequence[Skill], console: Console) -> None:
    """Print the skills, readable at any width (80 columns included): the id on its own line
    (never broken: it is what you type next), then version, stage, cases, parameters and
    return type, wrapped under it."""
    for s in skills:
        stage = f"{s.stage}, deprecated: use {s.deprecated_by}" if s.deprecated_by else s.stage
        console.print(s.id, markup=False)
        line = f"v{s.version}, {stage}, {len(s.cases)} case(s): {s.signature.render()[len(s.id) :]}"
        for part in _wrapped(line, console.width, "    "):
            console.print(part, markup=False)


def say(console: Console, text: str) -> None:
    """A sentence, wrapped to the console's width (a command to copy stays whole)."""
    for part in _wrapped(text, console.width, ""):
        console.print(part)


def echo_block(head: str, detail: str, *, err: bool = False) -> None:
    """One item of a listing that reads at any width: ``head`` on its own line (an id, never
    broken), then ``detail`` wrapped under it to the terminal's width."""
    click.echo(head, err=err)
    for part in _wrapped(detail, shutil.get_terminal_size().columns, "    "):
        click.echo(part, err=err)


def _wrapped(text: str, width: int, indent: str) -> list[str]:
    return textwrap.wrap(
        text, width=max(width, 40), initial_indent=indent, subsequent_indent=indent + "  ",
        break_long_words=False, break_on_hyphens=False,
    ) or [indent]  # fmt: skip


def render_run(result: RunResult, console: Console) -> None:
    """Print a run's tool calls (each call, then what it returned), then its value or error."""
    console.print(f"{result.skill_id}: {len(result.tool_calls)} tool call(s)", markup=False)
    width = console.width
    for n, call in enumerate(result.tool_calls, start=1):
        shown = f"error: {call.error}" if call.error else json.dumps(call.result)
        if len(shown) > 160:
            shown = shown[:157] + "..."
        for part in _wrapped(f"{n}. {call.tool} {json.dumps(call.arguments)}", width, "  "):
            console.print(part, markup=False)
        for part in _wrapped(f"-> {shown}", width, "     "):
            console.print(part, markup=False)
    if result.ok:
        console.print(f"returned in {result.duration_s * 1000:.1f} ms:")
        click.echo(json.dumps(result.value, indent=2, ensure_ascii=False))
    else:
        console.print(f"[red]failed[/red] ({result.error_type}): {result.error}")


def committed(commit: str) -> str:
    """``committed <sha> on branch <name>``, saying so when the branch is not checked out."""
    branch = getattr(commit, "branch", None)
    text = f"committed {commit[:12]}" + (f" on branch {branch}" if branch else "")
    if branch and not getattr(commit, "checked_out", True):
        text += (
            f" (not checked out: your working tree is unchanged; `git switch {branch}` to "
            f"see it, `git push -u origin {branch}` to open a pull request)"
        )
    return text


def commit_json(commit: str | None) -> dict[str, Any]:
    """The commit, its branch and whether that branch is checked out, as JSON fields."""
    return {
        "commit": commit or None,
        "branch": getattr(commit, "branch", None),
        "checked_out": getattr(commit, "checked_out", True),
    }
