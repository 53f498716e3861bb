"""``skillbank export``: skills written out in formats other tools read."""

from __future__ import annotations

from pathlib import Path

import click

from skillbank import SkillBank
from skillbank.cli.options import json_option, root_option
from skillbank.cli.output import print_json
from skillbank.export import export_agent_skills

__all__ = ["agent_skills", "export"]


@click.group(name="export")
def export() -> None:
    """Write skills out in formats other tools read.

    Example: skillbank export agent-skills dist/skills
    """


@export.command(name="agent-skills")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@root_option
@click.option(
    "--skill",
    "skill_ids",
    multiple=True,
    metavar="ID",
    help="Export only this skill (repeatable; default: every skill).",
)
@json_option
def agent_skills(out: Path, root: Path, skill_ids: tuple[str, ...], as_json: bool) -> None:
    """Export skills as Agent Skills folders under OUT, one per skill.

    Each folder holds SKILL.md, scripts/<id>.py (the skill as a plain Python script that
    calls host tools you pass with --tools MODULE:ATTR), and references/ (tools.json,
    cases.jsonl). Names use hyphens for the ids' underscores. The sandbox does not travel
    with the export: review the scripts as code. A re-export rewrites its own folders and
    refuses to touch anything else.

    Example: skillbank export agent-skills dist/skills --skill list_orders_by_email
    """
    bank = SkillBank(root)
    library = bank.skills()
    chosen = [bank.get(i) for i in dict.fromkeys(skill_ids)] if skill_ids else library
    folders = export_agent_skills(chosen, out, dependencies=library)
    if as_json:
        print_json([str(f) for f in folders])
        return
    for folder in folders:
        click.echo(str(folder))
    click.echo(
        f"{len(folders)} skill(s) exported to {out} as Agent Skills; the scripts run without "
        "skillbank's sandbox, so review them as code"
    )
