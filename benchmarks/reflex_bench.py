"""Benchmark reflexes: tasks done from their words alone, judged by the state they leave.

Run from the repository root::

    .venv/bin/python benchmarks/reflex_bench.py            # shop + BFCL, a few minutes
    .venv/bin/python benchmarks/reflex_bench.py --quick    # shop + latency only, ~1 minute
    .venv/bin/python benchmarks/reflex_bench.py --json reflex.json   # also write raw data

The shop (the bundled example): learn from learning_bench's split (every third run of each
procedure held out), make every learned skill autonomous (the reviewer's `promote`; the
ledger would take 28 successful calls each), then ask for tasks with values no trajectory
used, drawn from a shop seeded apart from the bundled records:

- *learned phrasings*: the procedures' own task templates (`skillbank.examples.agent`);
- *unseen phrasings*: `UNSEEN` below, written for this benchmark before it was first run and
  not tuned since: other words, other orders, possessives, quotes moved;
- *traps*: `TRAPS` below, requests a reflex must never run (negations, conditions, "every" and
  "all", compound requests, questions, missing arguments, quantity words, two values where one
  is wanted, a different action in similar words).

Each task's truth is the procedure run by the scripted agent on a fresh shop; a reflex that
fires runs the skill (`SkillBank.run`, ``caller="reflex"``) on another fresh shop, and is
*right* when the two shops' states are equal. Recall is right reflexes over tasks; a fired
reflex whose state differs is *wrong state* (the target is zero, on every set).

BFCL (``benchmarks/bfcl/data``, as learning_bench uses it): learn the train part, make every
skill autonomous, and ask with each held-out turn's text. A turn is *covered* when one learned
skill reproduces it (learning_bench's judge: the plan executed on the turn's starting state
leaves BFCL's backend state equal to the turn's own calls'). Recall counts covered turns done
right by a reflex; wrong state counts every fired reflex, covered or not.

Latency: one decision (`skillbank.reflex.ReflexIndex.plan`: match, extract, check) over a
library of 1,000 skills (the shop's seven plus synthetic copies whose fixed words are
replaced by made-up words), against the same decisions over the seven alone, in the same
run; and `SkillBank.plan_reflex` end to end (it reads the library first).

A measurement, not a test: it exits 0 whether targets are met or missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
for _p in (ROOT, BENCH, BENCH / "bfcl"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from learning_bench import bfcl_dataset, heldout_split, judge, replay_truth  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from skillbank import SkillBank, load_trajectories  # noqa: E402
from skillbank.examples import Shop  # noqa: E402
from skillbank.examples.agent import PROCEDURES  # noqa: E402
from skillbank.reflex import ReflexDecision, ReflexIndex  # noqa: E402
from skillbank.skill import Skill  # noqa: E402
from skillbank.trajectory import canonical_json  # noqa: E402

JSON = Any
SHOP_FILE = ROOT / "skillbank" / "examples" / "trajectories" / "shop.jsonl"

# --------------------------------------------------------------------------- targets (issue 18)

TARGET_LEARNED = 0.90
TARGET_UNSEEN = 0.50
TARGET_BFCL = 0.60
TARGET_P50_MS = 5.0

# --------------------------------------------------------------------------- task sets

#: Wordings no trajectory used, per procedure (written before the first run, never tuned).
UNSEEN: dict[str, tuple[str, ...]] = {
    "order_product": (
        "Place an order of {quantity} '{query}' for {email}",
        "{email} would like {quantity} units of '{query}'",
        "Buy {quantity} x '{query}' for customer {email}",
    ),
    "cancel_pending_order": (
        "Cancel the latest pending order for {email}, reason: '{reason}'",
        "Please cancel {email}'s most recent pending order because: {reason}",
        "The customer {email} asks us to cancel their newest pending order ({reason})",
    ),
    "return_item": (
        "Please return the first item of order {order_id} and refund it ('{reason}')",
        "Customer wants to return the first item of {order_id}, reason: {reason}; refund it",
        "Return the first item from order {order_id} for a refund, reason: {reason}",
    ),
    "restock_product": (
        "Add {quantity} units of '{query}' to stock",
        "Please restock '{query}' with {quantity} units",
        "Restock {quantity} more '{query}'",
    ),
    "order_history": (
        "Show me all orders of {email}",
        "What orders has {email} placed?",
        "List the orders of {email}",
    ),
    "change_email": (
        "Update the email address of {email} to {new_email}",
        "Change {email}'s email to {new_email}",
        "{email} has a new email address: {new_email}",
    ),
    "reorder_last_delivered": (
        "Reorder the first item of the most recent delivered order for {email}",
        "Order the first item of {email}'s latest delivered order again",
        "Customer {email} wants to reorder the first item of their last delivery",
    ),
}

#: Requests a reflex must never run, by why (values filled from a draw of the procedure).
TRAPS: dict[str, tuple[tuple[str, str], ...]] = {
    "negation": (
        (
            "cancel_pending_order",
            "Do not cancel the newest pending order of {email} because: {reason}",
        ),
        ("restock_product", "Don't restock {quantity} units of '{query}'"),
        ("order_product", "Never order {quantity} x '{query}' for {email}"),
        ("change_email", "Change the email of {email} to {new_email}, not before Monday"),
    ),
    "condition": (
        ("restock_product", "Restock {quantity} units of '{query}' unless it is already in stock"),
        ("cancel_pending_order", "If {email} has a pending order, cancel it because: {reason}"),
        ("order_product", "Order {quantity} x '{query}' for {email} only if it is in stock"),
        (
            "return_item",
            "Return the first item of order {order_id} and refund it if it arrived damaged",
        ),
    ),
    "scope": (
        ("cancel_pending_order", "Cancel every pending order of {email} because: {reason}"),
        ("restock_product", "Restock all products by {quantity} units"),
        ("order_history", "Show the order history for every customer"),
        ("return_item", "Return all items of order {order_id} and refund them, reason: {reason}"),
    ),
    "compound": (
        ("order_product", "Order {quantity} x '{query}' for {email} and then cancel it"),
        ("change_email", "Change the email of {email} to {new_email}, then show the order history"),
        ("restock_product", "Restock {quantity} units of '{query}' and also email the supplier"),
        ("order_history", "Show the order history for {email} and cancel the newest pending one"),
    ),
    "question": (
        ("cancel_pending_order", "Did {email} cancel the newest pending order?"),
        ("restock_product", "Has '{query}' been restocked with {quantity} units?"),
        ("return_item", "Can we return the first item of order {order_id} and refund it?"),
        ("change_email", "Is the email of {email} now {new_email}?"),
    ),
    "missing argument": (
        ("order_product", "Order '{query}' for {email}"),
        ("cancel_pending_order", "Cancel the newest pending order of {email}"),
        ("restock_product", "Restock units of '{query}'"),
        ("change_email", "Change the email of {email}"),
    ),
    "quantity word": (
        ("order_product", "Order a few '{query}' for {email}"),
        ("restock_product", "Restock some '{query}'"),
        ("restock_product", "Restock a dozen units of '{query}'"),
        (
            "order_product",
            "Please buy several units of '{query}' for the customer with email {email}",
        ),
    ),
    "two values": (
        ("order_history", "Show the order history for {email} and alice@example.com"),
        ("change_email", "Change the email of {email} to {new_email} or to zed@mail.test"),
        (
            "order_product",
            "Order {quantity} x '{query}' for {email} and 2 x 'mug' for bob@example.com",
        ),
        (
            "return_item",
            "Return the first item of order {order_id} and of O-5001, reason: {reason}",
        ),
    ),
    "other action": (
        ("return_item", "Refund order {order_id}"),
        ("order_history", "Delete the order history for {email}"),
        ("cancel_pending_order", "Cancel the order {order_id} because: {reason}"),
        ("order_product", "Remove {quantity} x '{query}' from the cart of {email}"),
    ),
}

# --------------------------------------------------------------------------- judging


@dataclass
class Outcome:
    """One task: what the reflex decided and whether the state it left is right."""

    set: str
    procedure: str
    task: str
    fired: bool
    right: bool = False
    wrong_state: bool = False
    skill: str | None = None
    rule: str | None = None
    reason: str = ""
    args: dict[str, JSON] = field(default_factory=dict)
    #: Besides a doubt word, the rule the closest skill failed on (`ReflexDecision.also`).
    also: str | None = None
    #: BFCL, fired: whether it called the skill that reproduces the turn with its arguments
    #: (a right state from another call is right by the state, and worth a look).
    same_call: bool | None = None


def _draws(rng: random.Random, tmp: Path, n: int) -> dict[str, list[dict[str, JSON]]]:
    """``n`` argument sets per procedure, drawn from a fresh shop (the scripted agent's way)."""
    out: dict[str, list[dict[str, JSON]]] = {}
    for name, procedure in PROCEDURES.items():
        shop = Shop.create(tmp / f"draw-{name}.sqlite")
        seen: set[str] = set()
        draws: list[dict[str, JSON]] = []
        for _ in range(200):
            args = procedure.draw_args(rng, shop)
            key = canonical_json(args)
            if key not in seen:
                seen.add(key)
                draws.append(args)
            if len(draws) == n:
                break
        out[name] = draws
    return out


def _truth(name: str, args: Mapping[str, JSON], where: Path) -> JSON:
    shop = Shop.create(where)
    PROCEDURES[name].steps(shop.tools(), **args)
    return shop.snapshot()


def _fire(bank: SkillBank, decision: ReflexDecision, where: Path) -> JSON | None:
    shop = Shop.create(where)
    assert decision.skill_id is not None
    result = bank.run(decision.skill_id, decision.args, shop.tools(), caller="reflex")
    return shop.snapshot() if result.ok else None


def _worded(template: str, tasks: Sequence[str]) -> bool:
    """Whether any of ``tasks`` was made from ``template`` (its fields filled in)."""
    parts = re.split(r"\{\w+\}", template)
    rx = re.compile("(.+?)".join(map(re.escape, parts)))
    return any(rx.fullmatch(task) for task in tasks)


def shop_sets(bank: SkillBank, tmp: Path, per: int, trained: Sequence[str]) -> list[Outcome]:
    rng = random.Random(2026)
    draws = _draws(rng, tmp, per)
    counter = iter(range(10**9))
    outcomes: list[Outcome] = []

    def ask(set_name: str, name: str, template: str, args: dict[str, JSON]) -> None:
        task = template.format(**args)
        decision = bank.plan_reflex(task)
        out = Outcome(
            set_name,
            name,
            task,
            decision.fires,
            skill=decision.skill_id,
            rule=decision.rule,
            reason=decision.reason,
            args=dict(decision.args),
        )
        if decision.fires and set_name == "trap":
            out.wrong_state = True  # a trap must never run: not run here, counted wrong
        elif decision.fires:
            truth = _truth(name, args, tmp / f"truth-{next(counter)}.sqlite")
            got = _fire(bank, decision, tmp / f"reflex-{next(counter)}.sqlite")
            same = got is not None and canonical_json(got) == canonical_json(truth)
            out.right, out.wrong_state = same, not same
        outcomes.append(out)

    for name, procedure in PROCEDURES.items():
        # A template no training run was worded by is a phrasing the bank never saw.
        learned = [t for t in procedure.templates if _worded(t, trained)]
        unseen = [*UNSEEN[name], *(t for t in procedure.templates if t not in learned)]
        for i, args in enumerate(draws[name]):
            ask("learned", name, learned[i % len(learned)], args)
            ask("unseen", name, unseen[i % len(unseen)], args)
    # A trap may name a value its procedure does not take (an order id in a cancel request).
    anything = {k: v for d in draws.values() for k, v in d[0].items()}
    for _why, traps in TRAPS.items():
        for name, template in traps:
            ask("trap", name, template, {**anything, **draws[name][0]})
    return outcomes


# --------------------------------------------------------------------------- BFCL


def _said(value: JSON, text: str) -> bool:
    """Whether a scalar argument value is written in the text (case-insensitive; a whole
    float as the integer it is: 1500.0 is written "1500")."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return False
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).lower() in text.lower()


def _coverage(bank: SkillBank, covered: bool, plan: Any, task: str) -> str:
    """``covered, said``: one skill reproduces the turn and the task writes every argument
    of that call the reflex must read (a value the skill's patterns hold as a constant
    needs no reading); ``covered``: the skill reproduces it; ``not covered``."""
    if not covered:
        return "not covered"
    step = plan.steps[0]
    constants = bank.library.patterns(bank.get(step.name)).constants
    read = {k: v for k, v in step.arguments.items() if constants.get(k, ...) != v}
    return "covered, said" if all(_said(v, task) for v in read.values()) else "covered"


#: Rules for a word that changes the request: the decision names such a word over a failure
#: to fit, and says in ``also`` what the closest skill failed on besides.
DOUBTS = frozenset({"negation", "condition", "scope", "compound", "question"})


def blocked_by(o: Outcome) -> str:
    """Why a reflex abstained, the doubt word apart: ``"<rule>"`` when that rule alone
    stopped it, ``"<doubt> + <rule>"`` when a doubt word was found and the closest skill
    would not have fit without it either."""
    return f"{o.rule} + {o.also}" if o.also else str(o.rule)


def bfcl_set(console: Console, quick_n: int | None) -> tuple[list[Outcome], dict[str, JSON]]:
    ds = bfcl_dataset()
    heldout = ds.heldout if quick_n is None else ds.heldout[:quick_n]
    outcomes: list[Outcome] = []
    info: dict[str, JSON] = {}
    with tempfile.TemporaryDirectory(prefix="skillbank-reflexbench-bfcl-") as tmp:
        started = time.perf_counter()
        with SkillBank.init(Path(tmp) / "bank") as bank:
            report = bank.learn(ds.train, branch="current")
            for sid in report.added:
                bank.promote(sid, "autonomous", reason="benchmark", branch="current")
            info["learn_s"] = time.perf_counter() - started
            info["skills"] = len(bank.skills())
            console.print(f"  BFCL: {info['skills']} skills learned, {len(heldout)} held-out turns")
            for t in heldout:
                judged, plan = judge(bank, ds, t, "heldout", set(), set(), None)
                decision = bank.plan_reflex(t.task)
                out = Outcome(
                    "bfcl",
                    _coverage(bank, judged.covered, plan, t.task),
                    t.task,
                    decision.fires,
                    skill=decision.skill_id,
                    rule=decision.rule,
                    reason=decision.reason,
                    args=dict(decision.args),
                    also=decision.also,
                )
                if decision.fires:
                    truth, _problems = replay_truth(t, ds)
                    tools, snapshot = ds.fresh(t)
                    try:
                        result = bank.run(
                            decision.skill_id or "", decision.args, tools, caller="reflex"
                        )
                        same = result.ok and canonical_json(snapshot()) == canonical_json(truth)
                    except Exception:  # noqa: BLE001 - a reflex that cannot run is not right
                        same = False
                    out.right, out.wrong_state = same, not same
                    step = plan.steps[0] if judged.covered else None
                    out.same_call = step is not None and (
                        step.name,
                        canonical_json(dict(step.arguments)),
                    ) == (decision.skill_id, canonical_json(out.args))
                outcomes.append(out)
    return outcomes, info


# --------------------------------------------------------------------------- latency


def _pseudo(word: str, salt: int) -> str:
    digest = hashlib.sha256(f"{salt}:{word.lower()}".encode()).hexdigest()
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    return "".join(
        (consonants if i % 2 == 0 else vowels)[int(digest[i], 16) % (16 if i % 2 == 0 else 5)]
        for i in range(6)
    )


_VALUE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|'[^']*'|\([^)]*\)|[A-Z]-\d+|\d+")


def synthetic(skills: Sequence[Skill], n: int) -> list[Skill]:
    """``n`` skills: copies of ``skills`` whose task words (values aside) are made-up words."""
    out: list[Skill] = []
    for k in range(n):
        base = skills[k % len(skills)]

        def swap(text: str, salt: int = k) -> str:
            parts, last = [], 0
            for m in _VALUE.finditer(text):
                parts.append(
                    re.sub(r"[A-Za-z]+", lambda w: _pseudo(w.group(), salt), text[last : m.start()])
                )
                parts.append(m.group())
                last = m.end()
            parts.append(re.sub(r"[A-Za-z]+", lambda w: _pseudo(w.group(), salt), text[last:]))
            return "".join(parts)

        cases = tuple(replace(c, task=swap(c.task)) for c in base.cases)
        out.append(
            replace(
                base,
                id=f"syn{k:04d}_{base.id}"[:64],
                cases=cases,
                description=swap(base.description),
                stage="autonomous",
            )
        )
    return out


def latency(bank: SkillBank, tasks: Sequence[str], total: int) -> dict[str, JSON]:
    real = [replace(s, stage="autonomous") for s in bank.skills()]
    small = ReflexIndex()
    small.update(real, bank.library.patterns)
    big = ReflexIndex()
    started = time.perf_counter()
    big.update([*real, *synthetic(real, total - len(real))], bank.library.patterns)
    build_s = time.perf_counter() - started

    def timed(fn: Callable[[str], object]) -> list[float]:
        for task in tasks[:20]:
            fn(task)  # warm
        ms = []
        for _ in range(3):
            for task in tasks:
                t0 = time.perf_counter()
                fn(task)
                ms.append((time.perf_counter() - t0) * 1000)
        return ms

    differ = [
        f"{t!r}: {small.plan(t).skill_id} with 7 skills, {big.plan(t).rule or big.plan(t).skill_id}"
        f" with {total}"
        for t in tasks
        if big.plan(t).skill_id != small.plan(t).skill_id
    ]
    same = len(tasks) - len(differ)
    big_ms, small_ms, e2e_ms = timed(big.plan), timed(small.plan), timed(bank.plan_reflex)
    return {
        "skills": total,
        "build_s": build_s,
        "p50_ms": statistics.median(big_ms),
        "p95_ms": statistics.quantiles(big_ms, n=20)[-1],
        "p50_ms_7": statistics.median(small_ms),
        "p50_ms_bank": statistics.median(e2e_ms),
        "same_decisions": f"{same}/{len(tasks)}",
        "differ": differ,
    }


# --------------------------------------------------------------------------- report


def pct(n: int, d: int) -> str:
    return f"{n / d:.0%} ({n}/{d})" if d else "-"


def summarise(outcomes: Sequence[Outcome], set_name: str) -> dict[str, JSON]:
    rows = [o for o in outcomes if o.set == set_name]
    fired = [o for o in rows if o.fired]
    return {
        "tasks": len(rows),
        "fired": len(fired),
        "right": sum(o.right for o in rows),
        "wrong_state": sum(o.wrong_state for o in rows),
        "abstained": Counter(o.rule for o in rows if not o.fired).most_common(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shop and latency only")
    parser.add_argument("--per", type=int, default=12, help="tasks per procedure and set")
    parser.add_argument("--bfcl-limit", type=int, default=None, help="held-out BFCL turns")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw data here")
    args = parser.parse_args(argv)
    console = Console()
    console.print(f"reflex_bench on {platform.python_version()}, {platform.machine()}")

    train, _ = heldout_split(load_trajectories(SHOP_FILE))
    with tempfile.TemporaryDirectory(prefix="skillbank-reflexbench-") as tmp_name:
        tmp = Path(tmp_name)
        with SkillBank.init(tmp / "bank") as bank:
            bank.learn(train, branch="current")
            for skill in bank.skills():
                bank.promote(skill.id, "autonomous", reason="benchmark", branch="current")
            outcomes = shop_sets(bank, tmp, args.per, [t.task for t in train])
            tasks = [o.task for o in outcomes]
            lat = latency(bank, tasks, 1000)
    bfcl: list[Outcome] = []
    bfcl_info: dict[str, JSON] = {}
    if not args.quick:
        bfcl, bfcl_info = bfcl_set(console, args.bfcl_limit)

    table = Table(title="Reflexes (issue 18 targets)")
    for col in ("set", "tasks", "fired", "recall (right state)", "wrong state", "target"):
        table.add_column(col, justify="left" if col == "set" else "right")
    data: dict[str, JSON] = {}
    for name, label, target in (
        ("learned", "shop, learned phrasings", f">= {TARGET_LEARNED:.0%}, 0 wrong"),
        ("unseen", "shop, unseen phrasings", f">= {TARGET_UNSEEN:.0%}, 0 wrong"),
        ("trap", "shop, traps", "0 fired"),
    ):
        s = summarise(outcomes, name)
        data[name] = s
        recall = "-" if name == "trap" else pct(s["right"], s["tasks"])
        table.add_row(
            label, str(s["tasks"]), str(s["fired"]), recall, str(s["wrong_state"]), target
        )
    if bfcl:
        covered = [o for o in bfcl if o.procedure.startswith("covered")]
        said = [o for o in covered if o.procedure == "covered, said"]
        s = summarise(bfcl, "bfcl")
        s["covered"] = len(covered)
        s["covered_right"] = sum(o.right for o in covered)
        data["bfcl"] = {**s, **bfcl_info}
        table.add_row(
            "BFCL held-out, covered",
            str(len(covered)),
            str(sum(o.fired for o in covered)),
            pct(s["covered_right"], len(covered)),
            "",
            f">= {TARGET_BFCL:.0%}",
        )
        s["said"] = len(said)
        s["said_right"] = sum(o.right for o in said)
        table.add_row(
            "BFCL covered, every argument written in the task",
            str(len(said)),
            str(sum(o.fired for o in said)),
            pct(s["said_right"], len(said)),
            "",
            "",
        )
        table.add_row(
            "BFCL held-out, all",
            str(s["tasks"]),
            str(s["fired"]),
            "",
            str(s["wrong_state"]),
            "0 wrong",
        )
    console.print(table)

    lat_table = Table(title="Decision latency (match, extract, check)")
    for col in ("library", "p50 ms", "p95 ms", "ratio to 7 skills", "target"):
        lat_table.add_column(col, justify="right")
    lat_table.add_row(
        "1,000 skills (index)",
        f"{lat['p50_ms']:.3f}",
        f"{lat['p95_ms']:.3f}",
        f"{lat['p50_ms'] / lat['p50_ms_7']:.2f}x",
        f"<= {TARGET_P50_MS} ms",
    )
    lat_table.add_row("7 skills (index)", f"{lat['p50_ms_7']:.3f}", "", "1.00x", "")
    lat_table.add_row(
        "7 skills, bank.plan_reflex",
        f"{lat['p50_ms_bank']:.3f}",
        "",
        f"{lat['p50_ms_bank'] / lat['p50_ms_7']:.2f}x",
        "",
    )
    console.print(lat_table)
    console.print(
        f"1,000-skill index built in {lat['build_s']:.2f} s; decisions equal to the "
        f"7-skill library's on {lat['same_decisions']} tasks"
    )
    data["latency"] = lat
    for line in lat["differ"]:
        console.print(f"  differs at 1,000 skills: {line}", highlight=False)

    other = [o for o in bfcl if o.fired and o.right and not o.same_call]
    for o in other:
        console.print(
            f"BFCL right state from another call than the turn's: {o.task!r} -> {o.skill} {o.args}",
            highlight=False,
        )
    for part in ("covered, said", "covered"):
        missed = [o for o in bfcl if o.procedure == part and not o.fired]
        if not missed:
            continue
        alone = sum(o.rule in DOUBTS and not o.also for o in missed)
        rules = Counter(blocked_by(o) for o in missed).most_common()
        data.setdefault("bfcl_abstained", {})[part] = {"by_rule": rules, "doubt_alone": alone}
        console.print(
            f"BFCL {part} turns{' (every argument written)' if part.endswith('said') else ''}"
            f", abstained by rule (a doubt word + what the closest skill failed on besides): "
            f"{dict(rules)}; stopped by a doubt word alone: {alone}",
            highlight=False,
        )
    misses = [o for o in outcomes if o.set != "trap" and not o.right]
    if misses:
        console.print("[bold]shop tasks not done by a reflex[/]:")
        for o in misses:
            console.print(f"  [{o.set}] {o.task}\n      -> {o.rule}: {o.reason}", highlight=False)
    fired_traps = [o for o in outcomes if o.set == "trap" and o.fired]
    for o in fired_traps:
        console.print(f"[red]trap fired[/]: {o.task} -> {o.skill} {o.args}", highlight=False)
    if args.json:
        data["outcomes"] = [vars(o) for o in [*outcomes, *bfcl]]
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
