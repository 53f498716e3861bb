"""Benchmark what `SkillBank.run` adds to a sandbox call (issue 14, item 17).

Run from the repository root::

    .venv/bin/python benchmarks/run_bench.py            # about 15 s
    .venv/bin/python benchmarks/run_bench.py --calls 300 --json run.json

One skill, learned from the bundled shop trajectories, calls two tools (``find_customer``,
then ``list_orders``). Its tools answer from memory (the answers the real shop gave once), so
the tools cost the same microseconds in every row and the rows differ only in what skillbank
does around the sandbox. In the same run, alternating so that machine noise falls on every row
alike, it times:

- the bare sandbox call: `sandbox.Sandbox.run` of the skill's source with its checked
  arguments and granted tools (the floor);
- `SkillBank.run` of the same skill and arguments: loading the skill, checking the arguments,
  the sandbox call, and one ledger row;
- one ledger row alone, on the ledger's warm connection, and the way it was written before
  (a new SQLite connection per row, the only one open on its file, so that closing it merges
  the WAL as it did), to show what the reuse saves.

The target: ``bank.run`` p50 at most the sandbox call's p50 + 0.5 ms. This is a measurement,
not a test: it exits 0 whether the target is met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script, not installed
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from skillbank import SkillBank  # noqa: E402
from skillbank.examples.shop import Shop  # noqa: E402
from skillbank.ledger import Ledger  # noqa: E402
from skillbank.progress import progress  # noqa: E402
from skillbank.running import grant  # noqa: E402
from skillbank.signature import check_arguments  # noqa: E402
from skillbank.trajectory import load_trajectories  # noqa: E402

TRAJECTORIES = ROOT / "skillbank" / "examples" / "trajectories" / "shop.jsonl"
#: The two tools the measured skill calls, in order.
TOOLS = ("find_customer", "list_orders")
#: The target of issue 14, item 17: what `bank.run` may add to the sandbox call at p50.
TARGET_OVERHEAD_MS = 0.5


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _old_style_record(path: Path) -> None:
    """One ledger row as skillbank wrote it before item 17: a connection of its own."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute(
            "INSERT INTO calls (ts, skill_id, version, ok, latency_s, error, caller, blame) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), "bench", "1.0.0", 1, 0.001, None, None, None),
        )
    finally:
        conn.close()


def measure(calls: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each row, measured interleaved in one run."""
    os.environ["SKILLBANK_BRANCH"] = "current"
    tmp = Path(tempfile.mkdtemp(prefix="skillbank-run-bench-"))
    bank = SkillBank.init(tmp / "bank")
    try:
        with progress("learning the shop skills", total=None) as step:
            bank.learn(load_trajectories(TRAJECTORIES), branch="current")
            step()
        skill = next(s for s in bank.skills() if s.tools == TOOLS)
        args: dict[str, Any] = {"email": "bob@example.com"}
        shop = Shop.create(tmp / "shop.sqlite")
        real = shop.tools()
        answers: dict[str, Any] = {}

        def recorded(name: str) -> Callable[..., Any]:
            def tool(**kwargs: Any) -> Any:
                if name not in answers:
                    answers[name] = real[name](**kwargs)
                return answers[name]

            return tool

        tools = {name: recorded(name) for name in TOOLS}
        sandbox, limits = bank.sandbox, bank.limits
        checked = check_arguments(skill, args)

        def bare() -> None:
            granted = grant(skill.tools, skill.requires, tools, {}, sandbox, limits)
            result = sandbox.run(skill.source, skill.id, checked, granted, limits,
                                 skill_id=skill.id)  # fmt: skip
            assert result.ok, result.error

        def banked() -> None:
            assert bank.run(skill.id, args, tools).ok

        ledger = Ledger(tmp / "rows.sqlite")
        ledger.record("bench", ok=True)  # the file exists, in WAL mode, before timing

        def warm_row() -> None:
            ledger.record("bench", ok=True, version="1.0.0", latency_s=0.001)

        # Its own file, with no other connection open: closing the last connection merges
        # the WAL into the file, which the old way paid on every row.
        old_way = Ledger(tmp / "old.sqlite")
        old_way.record("bench", ok=True)
        old_way.close()

        def cold_row() -> None:
            _old_style_record(old_way.path)

        rows: dict[str, Callable[[], None]] = {
            "sandbox call": bare,
            "bank.run": banked,
            "ledger row (warm connection)": warm_row,
            "ledger row (new connection)": cold_row,
        }
        for _ in range(warmup):
            for function in rows.values():
                function()
        samples: dict[str, list[float]] = {name: [] for name in rows}
        with progress("timing", total=calls) as step:
            for _ in range(calls):
                for name, function in rows.items():
                    started = time.perf_counter()
                    function()
                    samples[name].append(time.perf_counter() - started)
                step()
        ledger.close()
        return samples
    finally:
        bank.close()


def table(samples: dict[str, list[float]]) -> Table:
    """The rows, with p50, p90 and each p50 against the sandbox call's."""
    base = statistics.median(samples["sandbox call"])
    out = Table(title="bank.run against the bare sandbox call (same skill, same run)")
    for column in ("what", "p50", "p90", "p50 / sandbox"):
        out.add_column(column, justify="left" if column == "what" else "right")
    for name, values in samples.items():
        p50 = statistics.median(values)
        out.add_row(name, _ms(p50), _ms(_p(values, 0.9)), f"{p50 / base:.2f}x")
    overhead = statistics.median(samples["bank.run"]) - base
    verdict = "met" if overhead * 1000 <= TARGET_OVERHEAD_MS else "missed"
    out.caption = (
        f"bank.run overhead at p50: {_ms(overhead)} (target <= {TARGET_OVERHEAD_MS} ms: "
        f"{verdict}); load average {os.getloadavg()[0]:.2f}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table; exit 0 unless the benchmark itself breaks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per row")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls per row first")
    parser.add_argument("--json", metavar="FILE", help="also write the raw samples to FILE")
    options = parser.parse_args(argv)
    samples = measure(options.calls, options.warmup)
    Console().print(table(samples))
    if options.json:
        Path(options.json).write_text(json.dumps(samples, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
