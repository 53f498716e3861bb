"""``skillbank export``: skills written out in formats other tools read."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import click

from skillbank import SkillBank
from skillbank.cli.options import json_option, root_option
from skillbank.cli.output import EXIT_CHECK_FAILED, print_json
from skillbank.export import export_agent_skills
from skillbank.finetune import FinetuneKind, export_finetune
from skillbank.skill import STAGES, Stage

__all__ = ["agent_skills", "export", "finetune"]


@click.group(name="export")
def export() -> None:
    """Write skills out in formats other tools read.

    \b
    Example: skillbank export agent-skills dist/skills
             skillbank export finetune dist/ft --kind procedures --min-stage autonomous
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


@export.command(name="finetune")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(["skills", "procedures"]),
    default="skills",
    show_default=True,
    help="skills: the model calls the skill for each recorded task. procedures: the model "
    "makes the skill's raw tool calls itself.",
)
@click.option(
    "--min-stage",
    type=click.Choice(list(STAGES)),
    default="associative",
    show_default=True,
    help="Export only skills at this stage or above.",
)
@click.option(
    "--validation-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="The share of procedures held out for validation (by a hash of the skill id).",
)
@click.option("--system", default=None, help="A system message to start every example with.")
@root_option
@json_option
def finetune(
    out: Path,
    kind: str,
    min_stage: str,
    validation_fraction: float,
    system: str | None,
    root: Path,
    as_json: bool,
) -> None:
    """Write fine-tuning data (OpenAI chat format) to OUT/train.jsonl and OUT/validation.jsonl.

    One example per recorded case of each skill at --min-stage or above. All examples of a
    skill go to the same file, so validation measures procedures never trained on. The
    files are checked against the format's rules (exit 1 if one is broken), and tokens are
    counted with tiktoken's o200k_base when it is installed (pip install
    'skillbank[finetune]').

    Example: skillbank export finetune dist/ft --kind procedures --min-stage autonomous
    """
    bank = SkillBank(root)
    kinds: dict[str, FinetuneKind] = {"skills": "skills", "procedures": "procedures"}
    stages: dict[str, Stage] = {stage: stage for stage in STAGES}
    report = export_finetune(
        bank.skills(),
        out,
        kind=kinds[kind],
        min_stage=stages[min_stage],
        validation_fraction=validation_fraction,
        system=system,
    )
    if as_json:
        print_json(report.to_json())
    else:
        for split, path, skills, examples, tokens in (
            ("train", report.train_path, report.train_skills, report.train_examples,
             report.train_tokens),
            ("validation", report.validation_path, report.validation_skills,
             report.validation_examples, report.validation_tokens),
        ):  # fmt: skip
            counted = f", {tokens} tokens" if tokens is not None else ""
            click.echo(f"{path}: {examples} example(s) from {len(skills)} skill(s){counted}")
            if skills:
                click.echo(
                    textwrap.fill(", ".join(skills), 80, initial_indent=f"  {split}: ",
                                  subsequent_indent="    ", break_on_hyphens=False)
                )  # fmt: skip
        for skill_id, why in report.skipped:
            click.echo(f"skipped {skill_id}: {why}")
        click.echo(f"tokens: {report.tokenizer}")
        for problem in report.problems:
            click.echo(f"format problem: {problem}", err=True)
    if report.problems:
        sys.exit(EXIT_CHECK_FAILED)
