"""Benchmark how long the ``skillbank`` command takes to start and answer (issue 14, item 16).

Run from the repository root::

    .venv/bin/python benchmarks/cli_bench.py             # about 30 s
    .venv/bin/python benchmarks/cli_bench.py --repeats 5

Each row runs a command as a user would, a fresh process each time, and takes the median
wall-clock time over ``--repeats`` runs. The baseline, measured in the same run and
interleaved with the others so machine noise falls on every row alike, is a bare
``python -c pass`` of the same interpreter: what any Python command costs before it does
anything. The bank is the shop example (7 skills), learned once before timing; ``run`` calls
the shop's ``list_orders_by_email`` against the example shop's tools (its worker
process starts cold, as it does for a user).

Targets: ``--help`` and ``list`` at most 0.25 s, ``run`` at most 0.5 s. The cold ``list``
row empties the signature cache first (``.skillbank/signatures.json``), so it reads every
skill's source with libcst, as the first ``list`` after skills change does. Also printed:
what ``python -X importtime`` counts for each command's imports. A measurement, not a test:
it exits 0 whether the targets are met or not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script, not installed
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from skillbank import SkillBank, load_trajectories  # noqa: E402
from skillbank.examples.shop import SHOP_DB_ENV, Shop  # noqa: E402
from skillbank.progress import progress  # noqa: E402
from skillbank.signature_cache import CACHE_FILE  # noqa: E402

TRAJECTORIES = ROOT / "skillbank" / "examples" / "trajectories" / "shop.jsonl"
PYTHON = sys.executable
SKILLBANK = [PYTHON, "-m", "skillbank"]


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return elapsed


def _import_ms(argv: list[str], env: dict[str, str]) -> float:
    """The total `-X importtime` counts for the command's imports, in milliseconds."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", *argv[1:]], env=env, capture_output=True, text=True
    )
    total = 0
    for line in done.stderr.splitlines():
        # "import time: self | cumulative | name"; top-level modules are not indented.
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and not parts[2][1:2].isspace():
            cumulative = parts[1].strip()
            total += int(cumulative) if cumulative.isdigit() else 0
    return total / 1000


def main(argv: list[str] | None = None) -> int:
    """Measure each command and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="runs of each command")
    options = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="skillbank-cli-bench-"))
    root = tmp / "bank"
    with progress("learning the shop skills", total=None), SkillBank.init(root) as bank:
        bank.learn(load_trajectories(TRAJECTORIES), branch="current")
    Shop.create(tmp / "shop.sqlite")
    env = {**os.environ, SHOP_DB_ENV: str(tmp / "shop.sqlite"), "SKILLBANK_ROOT": str(root)}
    cache = root / ".skillbank" / CACHE_FILE

    def forget_signatures() -> None:
        cache.unlink(missing_ok=True)

    args = '{"email": "bob@example.com"}'
    rows: dict[str, tuple[list[str], float | None, object]] = {
        "python -c pass (baseline)": ([PYTHON, "-c", "pass"], None, None),
        "skillbank --help": ([*SKILLBANK, "--help"], 0.25, None),
        "skillbank list": ([*SKILLBANK, "list"], 0.25, None),
        "skillbank list (cold: no signature cache)": (
            [*SKILLBANK, "list"],
            None,
            forget_signatures,
        ),
        "skillbank run (2 tool calls)": (
            [
                *SKILLBANK,
                "run",
                "list_orders_by_email",
                "--args",
                args,
                "--tools",
                "skillbank.examples.shop:tools",
            ],
            0.5,
            None,
        ),  # fmt: skip
    }
    subprocess.run([*SKILLBANK, "list"], env=env, capture_output=True, check=True)  # warm
    samples: dict[str, list[float]] = {name: [] for name in rows}
    with progress("timing commands", total=options.repeats) as step:
        for _ in range(options.repeats):
            for name, (command, _, before) in rows.items():
                if callable(before):
                    before()
                samples[name].append(_timed(command, env))
            step()
    base = statistics.median(samples["python -c pass (baseline)"])
    table = Table(title=f"skillbank commands, median of {options.repeats} fresh processes")
    for column in ("command", "median", "- baseline", "imports", "target"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for name, (command, target, before) in rows.items():
        if callable(before):
            before()
        median = statistics.median(samples[name])
        verdict = ""
        if target is not None:
            verdict = f"<= {target:g} s: " + ("met" if median <= target else "NOT met")
        table.add_row(
            name,
            f"{median:.3f} s",
            "" if name.startswith("python") else f"{median - base:+.3f} s",
            f"{_import_ms(command, env):.0f} ms",
            verdict,
        )
    table.caption = f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs"
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
