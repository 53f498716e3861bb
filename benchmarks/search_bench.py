"""Benchmark skill search: latency at 1k/10k/100k skills against brute force, and recall.

Run from the repository root::

    .venv/bin/python benchmarks/search_bench.py            # full run, a few minutes
    .venv/bin/python benchmarks/search_bench.py --quick    # 1k and 10k skills only, no BFCL

Latency: synthetic libraries of 1,000, 10,000 and 100,000 skills, made by recombining the
documents of the skills learned from the shop example and BFCL (ids, e-mails, numbers,
quoted values and task lines varied per copy). `skillbank.search.SearchIndex.rank` (BM25 via
bm25s, an inverted index, plus the success weighting) is timed per query; index build time is
reported apart. The baseline scores every document with the same BM25 formula in pure Python
(a term-count dict per document, no inverted index), in the same run, on the same queries.

Recall: learn 4 of 6 runs of each shop procedure (learning_bench's split: every third run
held out) and query with the held-out runs' task texts; the right skill is the one learned from
the same procedure. BFCL (``benchmarks/bfcl/data``, as learning_bench uses it): learn the train
part, query with held-out turns whose call pattern was learned (the right skill holds that
pattern). A measurement, not a test: exits 0 whether targets are met or not.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHOP_FILE = ROOT / "skillbank" / "examples" / "trajectories" / "shop.jsonl"
BFCL_DATA = ROOT / "benchmarks" / "bfcl" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from learning_bench import heldout_split  # noqa: E402  (the same shop split)

from skillbank import SkillBank, Trajectory, load_trajectories  # noqa: E402
from skillbank.compiler import pattern_key  # noqa: E402
from skillbank.search import (  # noqa: E402
    SearchIndex,
    SkillDoc,
    backend,
    skill_doc,
    tokenize,
)

TARGET_P50_10K_MS = 2.0
TARGET_RECALL_5 = 0.95
NAMES = "alice bob carol dmitri elena farid grace hiro ines jonas kemal lena mateo nadia".split()
WORDS = (
    "billing shipping invoice ticket refund account profile inventory report calendar meeting "
    "flight hotel booking payment transfer folder file message note vehicle engine tire "
    "stock trade watchlist alert budget receipt coupon voucher subscription device sensor"
).split()

# --------------------------------------------------------------------------- data


def key_of(t: Trajectory) -> str:
    return pattern_key([s for s in t.steps if s.error is None])


def learn(train: list[Trajectory], where: Path) -> tuple[SkillBank, float]:
    bank = SkillBank.init(where)
    started = time.perf_counter()
    bank.learn(train, branch="current")
    return bank, time.perf_counter() - started


def expected_skills(bank: SkillBank, train: list[Trajectory]) -> dict[str, set[str]]:
    """pattern key -> the skills whose recorded cases have that pattern."""
    key_by_id = {t.id: key_of(t) for t in train}
    out: dict[str, set[str]] = defaultdict(set)
    for skill in bank.skills():
        for case in skill.cases:
            if case.trajectory_id in key_by_id:
                out[key_by_id[case.trajectory_id]].add(skill.id)
    return out


# --------------------------------------------------------------------------- recall


def recall(
    bank: SkillBank, queries: Sequence[tuple[str, set[str]]], embeddings: bool
) -> dict[str, float | int | str]:
    os.environ["SKILLBANK_SEARCH_EMBEDDINGS"] = "1" if embeddings else "0"
    at1 = at5 = 0
    for text, right in queries:
        ids = [h.skill_id for h in bank.search(text, 5)]
        at1 += bool(ids[:1] and ids[0] in right)
        at5 += bool(right & set(ids))
    n = len(queries)
    return {"n": n, "at1": at1 / n if n else 0.0, "at5": at5 / n if n else 0.0, "how": backend()}


# --------------------------------------------------------------------------- synthetic docs

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NUMBER = re.compile(r"\b\d+\b")
_QUOTED = re.compile(r"'[^']{1,40}'")


def vary(text: str, rng: random.Random) -> str:
    text = _EMAIL.sub(lambda _: f"{rng.choice(NAMES)}{rng.randrange(100)}@example.com", text)
    text = _NUMBER.sub(lambda _: str(rng.randrange(1, 9999)), text)
    return _QUOTED.sub(lambda _: f"'{rng.choice(WORDS)} {rng.choice(WORDS)}'", text)


def synthetic(templates: Sequence[SkillDoc], n: int, seed: int = 7) -> list[SkillDoc]:
    """``n`` documents recombined from ``templates``: varied ids, values and task lines."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        t = rng.choice(templates)
        lines = t.text.split("\n")
        head, tasks = lines[:-6], lines[-6:]
        other = rng.choice(templates).text.split("\n")[-3:]  # some tasks of another skill
        picked = rng.sample(tasks, k=min(len(tasks), rng.randint(2, 6))) + other[:1]
        sid = f"{t.skill_id}_{rng.choice(WORDS)}_{i}"
        text = "\n".join([sid, *(vary(x, rng) for x in head + picked)])
        summary = vary(t.summary, rng)
        docs.append(SkillDoc(sid, text, summary, "associative", vary(t.description, rng)))
    return docs


class BruteForce:
    """BM25 (bm25s's Lucene variant, same k1/b) scoring every document, no inverted index."""

    def __init__(self, docs: Sequence[SkillDoc], k1: float = 1.5, b: float = 0.75) -> None:
        self.ids = [d.skill_id for d in docs]
        self.tf = [Counter(tokenize(d.text) or [""]) for d in docs]
        self.lengths = [sum(c.values()) for c in self.tf]
        self.avg = sum(self.lengths) / max(1, len(self.lengths))
        df: Counter[str] = Counter()
        for c in self.tf:
            df.update(c.keys())
        n = len(docs)
        self.idf = {t: float(np.log(1 + (n - d + 0.5) / (d + 0.5))) for t, d in df.items()}
        self.k1, self.b = k1, b

    def rank(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        query = [t for t in tokenize(text) if t in self.idf]
        k1, b, avg = self.k1, self.b, self.avg
        scores = []
        for tf, length in zip(self.tf, self.lengths, strict=True):
            norm = k1 * (1 - b + b * length / avg)
            s = 0.0
            for t in query:
                f = tf.get(t)
                if f:
                    s += self.idf[t] * f / (f + norm)
            scores.append(s)
        best = max(scores, default=0.0) or 1.0
        top = sorted(range(len(scores)), key=lambda i: (-scores[i], self.ids[i]))[:k]
        return [(self.ids[i], scores[i] / best * 0.5) for i in top if scores[i] > 0]


def timed(fn: Callable[[str], object], queries: Sequence[str]) -> list[float]:
    out = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - started) * 1000)
    return out


def pcts(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k skills, no BFCL")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, str, str, str]] = []
    tmp = tempfile.TemporaryDirectory(prefix="skillbank-searchbench-")
    base = Path(tmp.name)
    emb_available = "wordllama" in backend()
    modes = [False, True] if emb_available else [False]

    # Recall: shop.
    shop_train, shop_held = heldout_split(load_trajectories(SHOP_FILE))
    shop, _ = learn(shop_train, base / "shop")
    by_key = expected_skills(shop, shop_train)
    queries = [(t.task, by_key.get(key_of(t), set())) for t in shop_held]
    templates = [skill_doc(s) for s in shop.skills()]
    recall_rows: list[tuple[str, dict[str, float | int | str]]] = []
    for emb in modes:
        recall_rows.append(("shop", recall(shop, queries, emb)))

    # Recall: BFCL.
    bfcl_note = ""
    have_bfcl = (BFCL_DATA / "train.jsonl").is_file() and (BFCL_DATA / "heldout.jsonl").is_file()
    if args.quick:
        bfcl_note = "BFCL skipped (--quick)"
    elif not have_bfcl:
        bfcl_note = "BFCL data not found in benchmarks/bfcl/data (run learning_bench.py once)"
    else:
        bfcl_train = load_trajectories(BFCL_DATA / "train.jsonl")
        bfcl_held = load_trajectories(BFCL_DATA / "heldout.jsonl")
        bfcl, learn_s = learn(bfcl_train, base / "bfcl")
        by_key = expected_skills(bfcl, bfcl_train)
        seen = [(t.task, by_key[key_of(t)]) for t in bfcl_held if key_of(t) in by_key]
        bfcl_note = (
            f"BFCL: {len(bfcl.skills())} skills learned from {len(bfcl_train)} train turns in "
            f"{learn_s:.0f} s; {len(seen)} of {len(bfcl_held)} held-out turns have a learned "
            "pattern and are queried (the others have no right answer)"
        )
        for emb in modes:
            recall_rows.append(("BFCL", recall(bfcl, seen, emb)))
        templates += [skill_doc(s) for s in bfcl.skills()]
        queries += [(t.task, set()) for t in bfcl_held]
    os.environ.pop("SKILLBANK_SEARCH_EMBEDDINGS", None)

    # Latency.
    rng = random.Random(11)
    texts = [vary(q, rng) for q, _ in queries if q]
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    for n in sizes:
        docs = synthetic(templates, n)
        started = time.perf_counter()
        index = SearchIndex.build(docs, embeddings=False)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        brute = BruteForce(docs)
        brute_build_s = time.perf_counter() - started
        sample = [rng.choice(texts) for _ in range(300)]
        for q in sample[:20]:  # warm-up
            index.rank(q, 5)
        ours = pcts(timed(functools.partial(index.rank, k=5), sample))
        brute_n = 300 if n <= 1_000 else 60 if n <= 10_000 else 12
        base_ms = pcts(timed(brute.rank, sample[:brute_n]))
        agree = sum(
            index.rank(q, 1)[0].skill_id == brute.rank(q, 1)[0][0]
            for q in sample[:brute_n]
            if brute.rank(q, 1)
        )
        target = f"<= {TARGET_P50_10K_MS:g} ms" if n == 10_000 else ""
        ok = "" if not target else ("met" if ours[0] <= TARGET_P50_10K_MS else "NOT met")
        rows.append(
            (
                f"{n:,} skills, BM25 (bm25s) p50 / p99",
                f"{ours[0]:.3f} / {ours[1]:.3f} ms",
                f"{base_ms[0] / ours[0]:.0f}x / {base_ms[1] / ours[1]:.0f}x faster",
                target,
                ok,
            )
        )
        rows.append(
            (
                f"  brute force p50 / p99 ({brute_n} queries)",
                f"{base_ms[0]:.2f} / {base_ms[1]:.2f} ms",
                f"top-1 agrees {agree}/{brute_n}",
                "",
                "",
            )
        )
        rows.append(
            (
                "  index build (excluded above): bm25s / brute-force dicts",
                f"{build_s:.2f} / {brute_build_s:.2f} s",
                "",
                "",
                "",
            )
        )
        if emb_available:
            started = time.perf_counter()
            fused = SearchIndex.build(docs, embeddings=True)
            fused_build = time.perf_counter() - started
            for q in sample[:20]:
                fused.rank(q, 5)
            f_ms = pcts(timed(functools.partial(fused.rank, k=5), sample[:100]))
            rows.append(
                (
                    "  with wordllama + RRF p50 / p99 (build)",
                    f"{f_ms[0]:.3f} / {f_ms[1]:.3f} ms ({fused_build:.1f} s)",
                    f"{f_ms[0] / ours[0]:.1f}x BM25 alone",
                    target,
                    "" if not target else ("met" if f_ms[0] <= TARGET_P50_10K_MS else "NOT met"),
                )
            )

    # End to end on a real bank (library stat + fingerprint + ledger read + rank).
    e2e = pcts(timed(lambda q: shop.search(q, 5), [rng.choice(texts) for _ in range(200)]))
    rows.append(
        (
            f"end to end `bank.search`, shop bank ({len(templates[:7])} skills), {backend()}",
            f"{e2e[0]:.3f} / {e2e[1]:.3f} ms",
            "",
            "",
            "",
        )
    )
    for name, r in recall_rows:
        for at, goal in (("at1", 0.0), ("at5", TARGET_RECALL_5)):
            value = float(r[at])
            rows.append(
                (
                    f"recall@{at[-1]}, {name} held-out ({r['n']} queries), {r['how']}",
                    f"{value:.3f}",
                    "",
                    f">= {goal:g}" if goal else "",
                    "" if not goal else ("met" if value >= goal else "NOT met"),
                )
            )

    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    head = ("measurement", "measured", "vs baseline", "target", "result")
    print("| " + " | ".join(head) + " |")
    print("| --- | ---: | ---: | ---: | :---: |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if bfcl_note:
        print(bfcl_note)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
