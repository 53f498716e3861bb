"""Generate the bundled shop trajectories, ``trajectories/shop.jsonl`` and ``shop_messy.jsonl``.

Run ``python -m skillbank.examples.generate`` to rewrite the clean file (``--messy`` the messy
one: runs that look around, mistype a lookup and retry, for more customers), or add
``--check`` to exit 1 when it is out of date. Output is byte-for-byte deterministic: the seed
data is fixed, arguments come from a seeded `random.Random` per procedure, and every record
starts from a freshly seeded shop, so replaying any one record's tool calls on a new `Shop`
reproduces its results.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from skillbank.examples.agent import DEMO_ARGS, PROCEDURES, Procedure, run_procedure
from skillbank.examples.shop import Shop

__all__ = [
    "DEMO_ARGS",
    "MESSY_PATH",
    "MESSY_PER_PROCEDURE",
    "MESSY_SEED",
    "TRAJECTORIES_PATH",
    "generate",
    "main",
    "to_jsonl",
]

#: Where `main` writes the records by default (package data, shipped in the wheel).
TRAJECTORIES_PATH: Final = Path(__file__).with_name("trajectories") / "shop.jsonl"
#: Where `main --messy` writes them: 12 messy runs per procedure (seed 11).
MESSY_PATH: Final = Path(__file__).with_name("trajectories") / "shop_messy.jsonl"
MESSY_SEED: Final = 11
MESSY_PER_PROCEDURE: Final = 12

# Draws considered for each record, and the most made before giving up on new arguments.
_BATCH: Final = 24
_MAX_DRAWS: Final = 200


def generate(
    seed: int = 7, per_procedure: int = 6, *, messy: bool = False, crowd: int = 0
) -> list[dict[str, Any]]:
    """Return `per_procedure` successful records for every procedure, in registry order.

    Each record runs on a freshly seeded shop with arguments no other record of the same
    procedure uses, and its task text cycles through the procedure's templates. Record ids
    look like ``shop-order_product-01`` (``shop-messy-order_product-01`` when messy).

    Args:
        seed: Seeds the argument draws; the same seed gives the same records.
        per_procedure: Records per procedure, 1 to 999.
        messy: Runs stray as real agents do (`skillbank.examples.agent.run_procedure`).
        crowd: Extra customers in every shop (`skillbank.examples.shop.crowd_customers`), so
            many records can serve different people; 0 keeps the shop's own eight.

    Returns:
        The records, as `skillbank.examples.agent.run_procedure` makes them.

    Raises:
        ValueError: If `per_procedure` is out of range, or asks for more distinct argument
            sets than a procedure has.
        RuntimeError: If a record fails or mentions a `DEMO_ARGS` value; that is a bug in a
            procedure's argument drawing, not in the caller's input.
    """
    if not 1 <= per_procedure <= 999:
        raise ValueError(f"per_procedure={per_procedure!r} must be between 1 and 999")
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="skillbank-shop-") as tmp:
        db = Path(tmp) / "shop.sqlite"
        seeded = Path(tmp) / "seeded.sqlite"
        Shop.create(seeded, crowd=crowd)
        # Every record starts from this state, and drawing arguments only reads it.
        drawn_from = _Unchanging(seeded)
        reserved = _demo_values(drawn_from)
        for name, procedure in PROCEDURES.items():
            # One random source per procedure, so adding a procedure leaves the others' records
            # unchanged.
            rng = random.Random(f"{seed}:{name}")
            mess = random.Random(f"{seed}:{name}:mess") if messy else None
            prefix = "shop-messy" if messy else "shop"
            used: list[dict[str, Any]] = []
            for index in range(per_procedure):
                shutil.copyfile(seeded, db)  # a fresh copy of the seeded shop
                shop = Shop(db)
                try:
                    args = _new_args(procedure, rng, drawn_from, used)
                except ValueError:
                    if not messy or not used:
                        raise
                    # Few distinct inputs (seven customers): a messy run asks again for one
                    # already served, and strays differently.
                    args = used[index % len(used)]
                used.append(args)
                record = run_procedure(
                    shop,
                    name,
                    args,
                    record_id=f"{prefix}-{name}-{index + 1:02d}",
                    template_index=index % len(procedure.templates),
                    messy=mess,
                )
                if not record["outcome"]["success"]:
                    raise RuntimeError(
                        f"{record['id']} failed with {args}: {record['messages'][-1]['content']}"
                    )
                text = json.dumps(record, ensure_ascii=False)
                leaked = sorted(value for value in reserved if value in text)
                if leaked:
                    raise RuntimeError(f"{record['id']} mentions demo values {leaked}")
                records.append(record)
    return records


def to_jsonl(records: Sequence[dict[str, Any]]) -> str:
    """Return `records` as JSON Lines: sorted keys, UTF-8 text, a newline after each."""
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check``, verify) the trajectories file; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m skillbank.examples.generate",
        description="Generate the bundled shop trajectories.",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument(
        "--per-procedure", type=int, default=6, help="records per procedure (default: 6)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=TRAJECTORIES_PATH,
        help="file to write (default: %(default)s)",
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the file is out of date"
    )
    parser.add_argument(
        "--messy",
        action="store_true",
        help=f"messy runs, {MESSY_PER_PROCEDURE} per procedure, seed {MESSY_SEED}, "
        f"to {MESSY_PATH.name} (unless --seed, --per-procedure, --output are given)",
    )
    options = parser.parse_args(argv)
    if options.messy:
        given = set(argv if argv is not None else sys.argv[1:])
        options.seed = options.seed if "--seed" in given else MESSY_SEED
        if "--per-procedure" not in given:
            options.per_procedure = MESSY_PER_PROCEDURE
        if "--output" not in given:
            options.output = MESSY_PATH
    records = generate(options.seed, options.per_procedure, messy=options.messy)
    text = to_jsonl(records)
    if options.check:
        current = options.output.read_text(encoding="utf-8") if options.output.exists() else None
        if current != text:
            print(f"{options.output} is out of date; run python -m skillbank.examples.generate")
            return 1
        print(f"{options.output} is up to date ({len(records)} records)")
        return 0
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {len(records)} records to {options.output}")
    return 0


class _Unchanging(Shop):
    """A shop only read from: its snapshot is taken once (the draws read it many times)."""

    @functools.cached_property
    def _state(self) -> dict[str, Any]:
        return super().snapshot()

    def snapshot(self) -> dict[str, Any]:
        return self._state


def _new_args(
    procedure: Procedure, rng: random.Random, shop: Shop, used: list[dict[str, Any]]
) -> dict[str, Any]:
    """Draw arguments for `procedure` that are not in `used`, preferring unused values.

    Of a batch of draws, the one sharing the fewest argument values with `used` wins, so the
    records spread over customers, products and reasons instead of repeating the same few.
    """
    seen = {(key, json.dumps(value)) for args in used for key, value in args.items()}
    best: dict[str, Any] | None = None
    best_overlap = 0
    for draw in range(_MAX_DRAWS):
        args = procedure.draw_args(rng, shop)
        if args in used:
            continue
        overlap = sum((key, json.dumps(value)) in seen for key, value in args.items())
        if best is None or overlap < best_overlap:
            best, best_overlap = args, overlap
        if best_overlap == 0 or draw + 1 >= _BATCH:
            return best
    if best is not None:
        return best
    raise ValueError(
        f"found only {len(used)} distinct argument sets for {procedure.name!r}; "
        "ask for fewer records per procedure"
    )


def _demo_values(shop: Shop) -> set[str]:
    """Return the strings the demo arguments stand for: emails, queries and what they name."""
    values: set[str] = set()
    for args in DEMO_ARGS.values():
        if "email" in args:
            values |= {args["email"], shop.find_customer(email=args["email"])["customer_id"]}
        if "query" in args:
            values.add(args["query"])
            values |= {p["sku"] for p in shop.search_products(query=args["query"])["products"]}
    return values


if __name__ == "__main__":
    sys.exit(main())
