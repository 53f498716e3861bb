"""Benchmark skillbank past one machine (issue 16, item 4): executors and ledgers.

Run from the repository root (one command; needs the ``ray`` and ``postgres`` extras, which the
``test`` extra includes, and PostgreSQL's server binaries, see ``.ci/servers``)::

    .venv/bin/python benchmarks/scale_bench.py                 # about 3 minutes
    .venv/bin/python benchmarks/scale_bench.py --quick --json scale.json

In one run it measures, every server on 127.0.0.1 (`tests.servers`):

- **throughput** (calls per second, with ``--callers`` threads calling at once) of three
  skills: *trivial* (returns its argument plus one), *tool* (one host tool call relayed back
  to the caller), and *compute* (a loop of some 20 ms of interpreted work on an idle core),
  through the local pool (`sandbox.LocalExecutor`), through Ray on one local node (two
  CPUs) and through Ray on two local nodes (one CPU each), two actors each time;
- **latency** (p50 of sequential calls) of the same skills, so the per-call cost of the Ray
  hop is the Ray p50 minus the local p50, and the cost of one relayed tool call is the tool
  skill's p50 minus the trivial one's;
- **ledger writes per second**: one writer, and ``--writers`` processes at once, on the
  embedded SQLite file and on a PostgreSQL server started for the run (with ``fsync`` on, as
  a real server would be; and with ``synchronous_commit`` off);
- **ledger reads**: every skill's success counts (what search ranking and stages read) over
  a history of ``--history`` rows, from the tallies the ledger keeps against counting every
  row in the same run;
- **git**: one replica sync (`skillbank.sync.sync`: fetch and fast-forward) from a local bare
  remote, with nothing new and with one new commit.

On a machine with two cores, the two "nodes" share those cores: the Ray rows measure the
overhead of the hop and of a second node, not scaling. The machine's load (``uptime``) is
printed beside the figures, since other work on it moves them. This is a measurement, not a
test: it exits 0 whatever the figures are.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script, not installed
    sys.path.insert(0, str(ROOT))

from tests.servers import (  # noqa: E402
    PostgresServer,
    RayCluster,
    find_postgres_bin,
    ray_env,
)

os.environ.update(ray_env())  # before Ray is imported anywhere: no stats, the run's token

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from sandbox import Limits, Sandbox  # noqa: E402

LIMITS = Limits(timeout_s=60.0, cpu_s=60, memory_mb=512)

#: The skills measured: name -> (source, arguments, tools).
SKILLS: dict[str, tuple[str, dict[str, Any], dict[str, Callable[..., Any]]]] = {
    "trivial": ("def skill(n: int) -> int:\n    return n + 1\n", {"n": 41}, {}),
    "tool": (
        "def skill(n: int) -> int:\n    return tools.double(n=n) + 1\n",
        {"n": 20},
        {"double": lambda n: 2 * n},
    ),
    "compute": (
        "def skill(n: int) -> int:\n"
        "    total = 0\n"
        "    for i in range(n):\n"
        "        total = (total + i * i) % 1000003\n"
        "    return total\n",
        {"n": 150_000},
        {},
    ),
}


def _uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def _latencies(sandbox: Sandbox, calls: int) -> dict[str, float]:
    """p50 in ms of each skill over ``calls`` sequential calls, the skills interleaved so that
    the machine's noise falls on each alike."""
    times: dict[str, list[float]] = {skill: [] for skill in SKILLS}
    for n in range(calls):
        for skill, (source, args, tools) in SKILLS.items():
            if skill == "compute" and n % 4:
                continue  # a quarter as many: each takes longer
            started = time.perf_counter()
            result = sandbox.run(source, "skill", args, tools, LIMITS)
            times[skill].append(time.perf_counter() - started)
            if not result.ok:
                raise RuntimeError(f"{skill}: {result.error}")
    return {skill: statistics.median(t) * 1000 for skill, t in times.items()}


def _throughput(sandbox: Sandbox, skill: str, calls: int, callers: int) -> float:
    """Calls per second with ``callers`` threads sharing ``calls`` calls."""
    source, args, tools = SKILLS[skill]
    left = [calls]
    lock = threading.Lock()
    failures: list[str] = []

    def work() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            result = sandbox.run(source, "skill", args, tools, LIMITS)
            if not result.ok:
                failures.append(str(result.error))

    threads = [threading.Thread(target=work) for _ in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{skill}: {len(failures)} failed, e.g. {failures[0]}")
    return calls / elapsed


def _measure(sandbox: Sandbox, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    _latencies(sandbox, 4)  # warm: each actor's template compiles the sources
    p50 = _latencies(sandbox, args.calls)
    out: dict[str, dict[str, float]] = {}
    for skill in SKILLS:
        few = args.calls // 4 if skill == "compute" else args.calls
        out[skill] = {
            "p50_ms": round(p50[skill], 3),
            "calls_per_s": round(_throughput(sandbox, skill, few, args.callers), 1),
        }
    return out


def _ray(nodes: int, args: argparse.Namespace, console: Console) -> dict[str, dict[str, float]]:
    import ray

    from sandbox.ray_backend import RayExecutor

    cluster = RayCluster(nodes=nodes, cpus_per_node=2 if nodes == 1 else 1).start()
    try:
        executor = RayExecutor(cluster.address, actors=2)
        placed = {a["node"] for a in executor.actors()}
        console.print(f"  ray, {nodes} node(s): actors on {len(placed)} node(s)", style="dim")
        with Sandbox(executor=executor) as sandbox:
            return _measure(sandbox, args)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()


_WRITER = textwrap.dedent(
    """
    import sys, time
    kind, where, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if kind == "sqlite":
        from skillbank.ledger import Ledger
        ledger = Ledger(where)
    else:
        from skillbank.ledger_postgres import PostgresLedger
        ledger = PostgresLedger(where)
    ledger.record("warm", ok=True)  # connect and migrate before the clock starts
    while time.time() < start:
        time.sleep(0.001)
    for i in range(n):
        ledger.record("bench", ok=i % 7 != 0, version="1.0.0", latency_s=0.001, caller="bench")
    print(time.time())
    """
)


def _writes(kind: str, where: str, writers: int, rows: int) -> float:
    """Rows per second, ``writers`` processes writing ``rows`` each, started together."""
    start = time.time() + 2.0 + 0.3 * writers
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, kind, where, str(rows), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(writers)
    ]
    ends = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"a {kind} writer failed")
        ends.append(float(out.strip().splitlines()[-1]))
    return writers * rows / (max(ends) - start)


def _counts_read(url: str) -> dict[str, float]:
    """ms of `CallLedger.counts` (what search and stages read) over every row written."""
    from skillbank.ledger_postgres import PostgresLedger

    ledger = PostgresLedger(url)
    rows = int(ledger.stats()["calls"] or 0)
    ledger.counts()
    times = []
    for _ in range(10):
        started = time.perf_counter()
        ledger.counts()
        times.append(time.perf_counter() - started)
    ledger.close()
    return {"rows": rows, "ms": round(statistics.median(times) * 1000, 2)}


def _counts_history(rows: int, skills: int = 1000) -> dict[str, float]:
    """ms of `Ledger.counts` (SQLite) over a long history, ``rows`` calls of ``skills``
    skills, against counting every row (one GROUP BY: how `counts` read before the ledger
    kept tallies), both in this run on the same file."""
    import random
    import sqlite3

    from skillbank.ledger import Ledger

    def median_ms(read: Callable[[], object]) -> float:
        read()
        times = []
        for _ in range(5):
            started = time.perf_counter()
            read()
            times.append(time.perf_counter() - started)
        return round(statistics.median(times) * 1000, 2)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite"
        ledger = Ledger(path)
        ledger.record("s0", ok=True, version="1.0.0")  # creates the schema
        rng = random.Random(7)
        history = [
            (float(n), f"s{rng.randrange(skills)}", "1.0.0", int(rng.random() < 0.9))
            for n in range(rows - 1)
        ]
        conn = sqlite3.connect(path)
        with conn:
            conn.executemany(
                "INSERT INTO calls (ts, skill_id, version, ok) VALUES (?, ?, ?, ?)", history
            )
            # What `record` would have kept, for the rows written around it.
            conn.execute("DELETE FROM tallies")
            conn.execute(
                "INSERT INTO tallies SELECT skill_id, version, sum(ok), sum(1 - ok)"
                " FROM calls GROUP BY skill_id, version"
            )
        every_row = (
            "SELECT skill_id, version, coalesce(sum(ok), 0), coalesce(sum(CASE WHEN ok = 0"
            " AND blame IS NULL THEN 1 ELSE 0 END), 0) FROM calls GROUP BY skill_id, version"
        )
        group_by = median_ms(lambda: conn.execute(every_row).fetchall())
        tallies = median_ms(ledger.counts)
        conn.close()
        ledger.close()
    return {"rows": rows, "skills": skills, "counts_ms": tallies, "group_by_ms": group_by}


def _ledgers(args: argparse.Namespace, console: Console) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ledger.sqlite")
        out["sqlite"] = {
            "1 writer": round(_writes("sqlite", path, 1, args.rows)),
            f"{args.writers} writers": round(_writes("sqlite", path, args.writers, args.rows)),
        }
    folder = find_postgres_bin()
    if folder is None:
        console.print("  no PostgreSQL server binaries: the PostgreSQL row is skipped")
        return out
    server = PostgresServer(folder, fast=False).start()  # fsync on, as a real server
    try:
        url = server.create_database("bench")
        out["postgresql"] = {
            "1 writer": round(_writes("postgres", url, 1, args.rows)),
            f"{args.writers} writers": round(_writes("postgres", url, args.writers, args.rows)),
        }
        # The same, with each row's commit not waiting for its WAL flush (a server setting,
        # or per connection as here): a crash may lose the last rows, never corrupt them.
        relaxed = url + "?options=-c%20synchronous_commit%3Doff"
        out["postgresql, synchronous_commit=off"] = {
            "1 writer": round(_writes("postgres", relaxed, 1, args.rows)),
            f"{args.writers} writers": round(_writes("postgres", relaxed, args.writers, args.rows)),
        }
        out["counts_read"] = _counts_read(url)
    finally:
        server.stop()
    return out


def _git_sync(rounds: int) -> dict[str, float]:
    """ms of one replica sync (`skillbank.sync.sync`): with nothing new, and with one new
    skill merged on the remote (a local bare repository: git's own cost, no network)."""
    from skillbank.library import SkillLibrary, git
    from skillbank.sync import sync

    env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}  # fmt: skip
    os.environ.update(env)
    with tempfile.TemporaryDirectory() as tmp:
        origin, author, replica = (Path(tmp) / n for n in ("origin.git", "author", "replica"))
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
        subprocess.run(["git", "clone", "-q", str(origin), str(author)], check=True,
                       capture_output=True)  # fmt: skip
        git(author, "checkout", "-q", "-b", "main")
        subprocess.run(["cp", "-r", str(ROOT / "skills"), str(author / "skills")], check=True)
        git(author, "add", "skills")
        git(author, "commit", "-q", "-m", "skills")
        git(author, "push", "-q", "-u", "origin", "main")
        subprocess.run(["git", "clone", "-q", str(origin), str(replica)], check=True,
                       capture_output=True)  # fmt: skip
        library = SkillLibrary(replica)
        idle, moved = [], []
        for n in range(rounds):
            started = time.perf_counter()
            sync(library)
            idle.append(time.perf_counter() - started)
            (author / "skills" / "list_orders_by_email" / "bench.txt").write_text(f"{n}\n")
            git(author, "add", "skills")
            git(author, "commit", "-q", "-m", f"change {n}")
            git(author, "push", "-q", "origin", "main")
            started = time.perf_counter()
            result = sync(library)
            moved.append(time.perf_counter() - started)
            assert result.updated, result
    return {
        "nothing new, ms": round(statistics.median(idle) * 1000, 1),
        "one commit, ms": round(statistics.median(moved) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables (and write JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per throughput row")
    parser.add_argument("--callers", type=int, default=4, help="threads calling at once")
    parser.add_argument("--rows", type=int, default=2000, help="ledger rows per writer")
    parser.add_argument("--writers", type=int, default=4, help="ledger writer processes")
    parser.add_argument(
        "--history", type=int, default=1_000_000, help="ledger rows `counts` reads over"
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls and rows (~1 min)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rows, args.history = 60, 500, 100_000
    console = Console(width=120)
    load_before = _uptime()
    console.print(f"load before: {load_before}")
    figures: dict[str, Any] = {"cores": os.cpu_count(), "load_before": load_before}
    console.print("local pool ...")
    with Sandbox() as sandbox:
        figures["local"] = _measure(sandbox, args)
    for nodes in (1, 2):
        console.print(f"ray, {nodes} node(s) ...")
        figures[f"ray_{nodes}_node"] = _ray(nodes, args, console)
    console.print("ledgers ...")
    figures["ledger_writes_per_s"] = _ledgers(args, console)
    console.print(f"ledger counts over {args.history:,} rows ...")
    figures["counts_history"] = _counts_history(args.history)
    console.print("git sync ...")
    figures["git_sync"] = _git_sync(5 if args.quick else 15)
    figures["load_after"] = _uptime()

    table = Table(title=f"skill calls ({args.callers} callers; {os.cpu_count()} cores)")
    table.add_column("executor")
    for skill in SKILLS:
        table.add_column(f"{skill} calls/s", justify="right")
        table.add_column(f"{skill} p50 ms", justify="right")
    for key, label in (("local", "local pool"), ("ray_1_node", "Ray, 1 node"),
                       ("ray_2_node", "Ray, 2 nodes")):  # fmt: skip
        row = figures[key]
        cells = []
        for skill in SKILLS:
            cells += [f"{row[skill]['calls_per_s']:.1f}", f"{row[skill]['p50_ms']:.2f}"]
        table.add_row(label, *cells)
    console.print(table)
    local, one = figures["local"], figures["ray_1_node"]
    hop = one["trivial"]["p50_ms"] - local["trivial"]["p50_ms"]
    relay_local = local["tool"]["p50_ms"] - local["trivial"]["p50_ms"]
    relay_ray = one["tool"]["p50_ms"] - one["trivial"]["p50_ms"]
    figures["ray_hop_ms"] = round(hop, 3)
    figures["tool_relay_ms"] = {"local": round(relay_local, 3), "ray": round(relay_ray, 3)}
    console.print(
        f"the Ray hop: +{hop:.2f} ms per call (p50); one relayed tool call: "
        f"+{relay_local:.2f} ms locally, +{relay_ray:.2f} ms through Ray"
    )
    ledger = Table(title="ledger writes per second")
    ledger.add_column("ledger")
    columns = ["1 writer", f"{args.writers} writers"]
    for column in columns:
        ledger.add_column(column, justify="right")
    counts = figures["ledger_writes_per_s"].pop("counts_read", None)
    for name, row in figures["ledger_writes_per_s"].items():
        ledger.add_row(name, *(f"{row[c]:,}" for c in columns))
    console.print(ledger)
    if counts is not None:
        figures["postgres_counts_read"] = counts
        console.print(
            f"reading every skill's counts (PostgreSQL, its tallies): "
            f"{counts['ms']:.1f} ms with {counts['rows']:,} rows written"
        )
    history = figures["counts_history"]
    console.print(
        f"reading every skill's counts (SQLite, {history['rows']:,} rows of "
        f"{history['skills']:,} skills): {history['counts_ms']:.2f} ms from the tallies, "
        f"{history['group_by_ms']:.0f} ms counting every row "
        f"({history['group_by_ms'] / max(history['counts_ms'], 1e-3):,.0f}x)"
    )
    sync_ms = figures["git_sync"]
    console.print(
        f"one replica sync (git fetch + fast-forward, local remote): "
        f"{sync_ms['nothing new, ms']:.0f} ms with nothing new, "
        f"{sync_ms['one commit, ms']:.0f} ms to take one commit"
    )
    console.print(f"load after: {figures['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
