"""``skillbank report``: an HTML page and a Markdown summary of a bank and its use."""

from __future__ import annotations

from pathlib import Path

import click

from skillbank import SkillBank
from skillbank.cli.options import root_option
from skillbank.report import REPORT_DIR, write_report

__all__ = ["report"]


@click.command(name="report")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Output folder (default: <root>/.skillbank/{REPORT_DIR}).",
)
@root_option
def report(out: Path | None, root: Path) -> None:
    """Write an HTML page and a Markdown summary of the bank's skills and their use.

    The page shows skills by stage, success over time, latency, estimated savings and the
    stage history from git, with charts as inline SVG; it needs no network. With matplotlib
    installed (pip install 'skillbank[plot]'), stages.png and latency.png are written too.

    Example: skillbank report --out report/
    """
    try:
        bank = SkillBank(root)
        files = write_report(bank, out or bank.root / bank.config.state_dir / REPORT_DIR)
    except OSError as exc:
        raise click.ClickException(f"cannot write the report: {exc}") from None
    for path in files.paths:
        click.echo(path)
