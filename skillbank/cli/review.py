"""Commands for CI and pull requests: gate (the checks) and review (the pull request body)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from skillbank import SkillBank
from skillbank.cli.options import json_option, root_option
from skillbank.cli.output import EXIT_CHECK_FAILED, echo_block, make_console, print_json
from skillbank.gate import GateReport, load_tool_specs, run_gate
from skillbank.gate_output import dumps_sarif, junit_xml, write_github
from skillbank.review import BODY_LIMIT
from skillbank.review import review as review_changes

__all__ = ["gate", "review"]


def _tool_specs(bank: SkillBank, spec: str | None) -> dict[str, dict[str, Any]] | None:
    ref = spec if spec is not None else bank.config.tool_specs
    return load_tool_specs(ref, bank.root) if ref else None


def _render_gate(report: GateReport, console: Console) -> None:
    for finding in report.findings:
        click.echo(finding.render(report.root), err=finding.level == "error")
    for sid in report.skills:
        mine = [o for o in report.outcomes if o.skill_id == sid]
        failed = [o.check for o in mine if o.status == "failed"]
        ran = [o.check for o in mine if o.status != "skipped"]
        skipped = [o.check for o in mine if o.status == "skipped"]
        detail = f"failed: {', '.join(failed)}" if failed else f"{len(ran)} check(s) passed"
        if skipped:
            detail += f"; skipped: {', '.join(skipped)}"
        echo_block(f"{'FAIL' if failed else 'pass'}  {sid}", detail)
    scope = f"changed since {report.base}" if report.base else "in the library"
    if report.ok:
        console.print(f"gate passed: {len(report.skills)} skill(s) {scope}")
    else:
        failed = sorted({f.skill_id for f in report.errors})
        console.print(
            f"[red]gate failed[/red]: {len(report.errors)} finding(s) in "
            f"{', '.join(failed) or 'the library'}"
        )


@click.command(name="gate")
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
        report = run_gate(
            bank,
            base=base,
            paths=[str(p) for p in paths],
            fast=fast,
            tool_specs=_tool_specs(bank, tool_specs),
            max_examples=examples if examples is not None else bank.config.prove_examples,
        )
    if junit_path is not None:
        _write_text(junit_path, junit_xml(report))
    if sarif_path is not None:
        _write_text(sarif_path, dumps_sarif(report))
    write_github(report, click.echo)
    if as_json:
        print_json(report.to_json())
    else:
        _render_gate(report, make_console())
    if not report.ok:
        sys.exit(EXIT_CHECK_FAILED)


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None


@click.command(name="review")
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
@click.option(
    "--full",
    is_flag=True,
    help="Every skill's section, however long (by default the body stays under GitHub's "
    "65,536-character limit and names the sections it leaves out).",
)
@root_option
def review(
    base: str,
    output: Path | None,
    tool_specs: str | None,
    examples: int | None,
    full: bool,
    root: Path,
) -> None:
    """Write the Markdown body of a pull request for the skill changes since --base.

    For each added, changed or removed skill: summary, signature diff (breaking or
    not), code diff, tools it reads and writes, check results, the trajectories it
    came from, stage changes and risk flags. Example:

    \b
      skillbank review --base origin/main -o pr.md && gh pr create --body-file pr.md
    """
    with SkillBank(root) as bank:
        markdown, _ = review_changes(
            bank,
            base,
            tool_specs=_tool_specs(bank, tool_specs),
            max_examples=examples if examples is not None else bank.config.prove_examples,
            limit=None if full else BODY_LIMIT,
        )
    if output is not None:
        _write_text(output, markdown)
        click.echo(f"review written to {output}")
    else:
        click.echo(markdown, nl=False)
