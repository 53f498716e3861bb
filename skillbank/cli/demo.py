"""``skillbank demo``: the whole loop on the bundled shop example, offline."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click

from skillbank import SkillBank, scan_trajectories
from skillbank.cli.output import (
    EXIT_CHECK_FAILED,
    make_console,
    render_learn_report,
    render_run,
    render_skills,
)
from skillbank.library import git

if TYPE_CHECKING:
    from skillbank.trajectory import Trajectory

__all__ = ["demo"]


@click.command(name="demo")
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default="skillbank-demo"
)
def demo(directory: Path) -> None:
    """Run the whole loop on the bundled shop example, offline, in DIRECTORY.

    Learns skills from the bundled trajectories, clean and messy (compile, validate, replay,
    commit), lists them, then runs one on arguments no trajectory used, against a live
    SQLite shop.

    Example: skillbank demo /tmp/shop-demo
    """
    from skillbank.examples import DEMO_ARGS, Shop

    console = make_console()
    folder = resources.files("skillbank.examples") / "trajectories"
    runs: list[Trajectory] = []
    # Clean runs, and messy ones: agents that look around, mistype a lookup and retry.
    for name in ("shop.jsonl", "shop_messy.jsonl"):
        with resources.as_file(folder / name) as path:
            runs += scan_trajectories(path).trajectories
    console.rule("1. learn")
    console.print(
        f"{len(runs)} example trajectories (OpenAI messages) from shop.jsonl and shop_messy.jsonl"
    )
    with SkillBank.init(directory) as bank:
        report = bank.learn(runs)
        render_learn_report(report, console)
        console.rule("2. the library")
        skills = bank.skills()
        render_skills(skills, console)
        log = git(bank.root, "log", "--oneline", "-3", "--", bank.config.skills_dir, check=False)
        console.print("git log:")
        click.echo(log.stdout.rstrip() or "(no commits)")

        console.rule("3. run a learned skill on new arguments")
        skill = next(
            (
                s
                for s in skills
                if any(c.trajectory_id.startswith("shop-order_product") for c in s.cases)
            ),
            None,
        )
        if skill is None:
            raise click.ClickException(
                "the demo's order skill was not learned; see the report above"
            )
        shop = Shop.create(bank.root / "shop.sqlite")
        args = {p.name: DEMO_ARGS["order_product"][p.name] for p in skill.signature.params}
        sku_stock = {p["sku"]: p["stock"] for p in shop.snapshot()["products"]}
        console.print(f"skillbank run {skill.id} --args '{json.dumps(args)}'")
        result = bank.run(skill.id, args, shop.tools(), caller="demo")
        render_run(result, console)
        if not result.ok:
            sys.exit(EXIT_CHECK_FAILED)
        after = {p["sku"]: p["stock"] for p in shop.snapshot()["products"]}
        for sku in sorted(sku_stock):
            if after[sku] != sku_stock[sku]:
                console.print(f"live shop changed: stock of {sku} {sku_stock[sku]} -> {after[sku]}")
        console.print(
            f"\nDone. The skills are committed in {bank.root} (try `git -C {directory} log -p`),"
            f" and `skillbank --help` lists the commands."
        )
