"""Turn BFCL's multi-turn ground truth into skillbank trajectories by executing it.

    .venv/bin/python benchmarks/bfcl/convert.py --out benchmarks/bfcl/data [--limit N]

For every task of the chosen multi-turn categories (default: ``base``) the task's backends are
loaded with its ``initial_config`` and each turn's ground-truth calls are executed in order,
state carrying over from turn to turn (as BFCL's own checker does). Each turn with at least one
call becomes one trajectory in skillbank's format (OpenAI Chat Completions messages with
``tool_calls``), with the real return values. Writes, under ``--out``:

- ``train.jsonl`` / ``heldout.jsonl``: the trajectories, split ~70/30 by a hash of the task's
  scenario number (all turns of a task, and every category's variant of a scenario, together);
- ``tasks.jsonl.gz``: per task the initial config and the resolved calls of every turn, which
  ``env.make_tools`` replays to rebuild the backends at the start of any turn;
- ``summary.json``: counts, skipped turns and why, and the verification results.

Then it verifies: both files load with ``skillbank.load_trajectories``; every written turn (or
``--verify-sample N`` of them) re-executed through ``env.make_tools`` gives the recorded results
and ``state_after``; and BFCL's own executor (``execute_multi_turn_func_call``) run on the raw
ground-truth strings gives the same results (in its ``str``/``json.dumps`` form) and the same
state. Any mismatch exits 1. Installs the pinned ``bfcl-eval`` (``--no-deps``) if missing.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import env as bfcl_env  # noqa: E402  (this folder's env.py)

JSON = Any
SPLIT_SALT = "skillbank-bfcl-split-v1"
FINAL_ANSWER = "Done."

SKIP_REASONS = {
    "base": "no ground-truth calls in this turn",
    "long_context": "no ground-truth calls in this turn",
    "miss_func": "no ground-truth calls: the function this turn needs is withheld until a "
    "later turn (miss_func)",
    "miss_param": "no ground-truth calls: the request lacks a needed parameter (miss_param)",
}


# --- reading BFCL ---------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, JSON]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_category(category: str) -> list[dict[str, JSON]]:
    """BFCL's tasks of one multi-turn category, each with its ``ground_truth`` merged in."""
    data = bfcl_env._bfcl().DATA_DIR
    name = f"BFCL_v4_multi_turn_{category}.json"
    questions = read_jsonl(data / name)
    answers = {a["id"]: a["ground_truth"] for a in read_jsonl(data / "possible_answer" / name)}
    for task in questions:
        task["ground_truth"] = answers[task["id"]]
        if len(task["ground_truth"]) != len(task["question"]):
            raise SystemExit(
                f"{task['id']}: {len(task['question'])} turns but "
                f"{len(task['ground_truth'])} ground-truth turns"
            )
    return questions


def scenario_of(task_id: str) -> int:
    return int(task_id.rsplit("_", 1)[1])


def split_of(scenario: int, train_share: float) -> str:
    digest = hashlib.sha256(f"{SPLIT_SALT}/{scenario}".encode()).digest()
    return "train" if int.from_bytes(digest[:8], "big") / 2**64 < train_share else "heldout"


def fold(tools: list[str]) -> tuple[str, ...]:
    """The call structure with consecutive repeats folded: a,a,b,a -> a,b,a."""
    out: list[str] = []
    for t in tools:
        if not out or out[-1] != t:
            out.append(t)
    return tuple(out)


# --- converting -----------------------------------------------------------------------------


def convert_task(task: dict[str, JSON], category: str, stats: Counter) -> tuple[dict, list[dict]]:
    """Execute one task's ground truth turn by turn; its task record and its trajectories."""
    task_id = task["id"]
    classes = list(task["involved_classes"])
    long_context = category == "long_context"
    backends = bfcl_env.Backends(task["initial_config"], classes, long_context=long_context)
    # miss_func: function name -> the turn its doc is given to the model (absent before it).
    revealed_at = {
        name: int(turn)
        for turn, names in (task.get("missed_function") or {}).items()
        for name in names
    }
    cfg_hash = bfcl_env.config_hash(task["initial_config"])
    task_record = {
        "task_id": task_id,
        "category": category,
        "scenario": scenario_of(task_id),
        "involved_classes": classes,
        "long_context": long_context,
        "initial_config": task["initial_config"],
        "initial_config_hash": cfg_hash,
        "tool_map": backends.tool_map,
        "turns": [],
        "skipped_turns": [],
    }
    trajectories = []
    pending: tuple[int, list[dict]] | None = None  # an unanswered request from a skipped turn
    for turn, (question, ground_truth) in enumerate(
        zip(task["question"], task["ground_truth"], strict=True)
    ):
        calls = [backends.resolve(text) for text in ground_truth]
        steps = []
        for call in calls:
            try:
                steps.append((call, backends.invoke(call), None))
            except bfcl_env.ToolCallError as exc:
                steps.append((call, None, str(exc)))
        task_record["turns"].append([c.to_json() for c in calls])
        prompt = [m for m in question if m.get("role") in ("system", "developer", "user")]
        task_from_turn = turn
        if pending is not None and ground_truth:
            # The request was made in an earlier turn that had no ground truth: miss_func
            # reveals the missing function in a turn without a message, miss_param's next
            # turn supplies the missing value. Both requests belong to this trajectory.
            task_from_turn, earlier = pending
            system = [m for m in prompt if m["role"] != "user"]
            prompt = system + earlier + [m for m in prompt if m["role"] == "user"]
        if not ground_truth:
            stats[f"skipped:{category}"] += 1
            task_record["skipped_turns"].append(turn)
            asked = [m for m in prompt if m["role"] == "user"]
            if asked:
                pending = (pending[0], pending[1] + asked) if pending else (turn, asked)
            continue
        pending = None
        text = "\n".join(
            str(m["content"]).strip()
            for m in prompt
            if m["role"] == "user" and str(m.get("content") or "").strip()
        )
        if not text:
            raise SystemExit(f"{task_id} turn {turn}: ground truth but no user request")
        messages: list[dict[str, JSON]] = [
            {"role": m["role"], "content": m["content"]} for m in prompt
        ]
        for i, (call, result, error) in enumerate(steps, start=1):
            call_id = f"call_{turn}_{i}"
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {
                                "name": call.tool,
                                "arguments": json.dumps(call.arguments),
                            },
                        }
                    ],
                }
            )
            tool_msg: dict[str, JSON] = {"role": "tool", "tool_call_id": call_id}
            if error is None:
                tool_msg["content"] = json.dumps(result, ensure_ascii=False)
                stats["calls"] += 1
                if isinstance(result, dict) and "error" in result:
                    stats["calls_returning_error_field"] += 1
            else:
                tool_msg["content"] = error
                tool_msg["is_error"] = True
                stats["calls"] += 1
                stats["calls_raising"] += 1
            messages.append(tool_msg)
        messages.append({"role": "assistant", "content": FINAL_ANSWER})
        exclude = [n for n, at in revealed_at.items() if at > turn]
        # BFCL data quirk (miss_func_49): a turn's ground truth may call a function that is
        # withheld until a later turn; it is declared anyway, and the turn is noted.
        called_early = sorted({c.method for c in calls} & set(exclude))
        if called_early:
            stats["turns_calling_withheld_function"] += 1
            exclude = [n for n in exclude if n not in called_early]
        used = {c.tool for c in calls}
        tools = bfcl_env.openai_tools(classes, exclude=exclude)
        declared = {t["function"]["name"] for t in tools}
        if not used <= declared:
            raise SystemExit(f"{task_id} turn {turn}: calls undeclared tools {used - declared}")
        bfcl_meta = {
            "task_id": task_id,
            "turn": turn,
            "category": category,
            "scenario": scenario_of(task_id),
            "involved_classes": classes,
            "initial_config_hash": cfg_hash,
            "long_context": long_context,
            "tool_map": {t: backends.tool_map[t] for t in sorted(declared)},
            "ground_truth": list(ground_truth),
            "state_after": backends.snapshot(),
        }
        if task_from_turn != turn:
            bfcl_meta["task_from_turn"] = task_from_turn
        if exclude:
            bfcl_meta["withheld_functions"] = sorted(exclude)
        if called_early:
            bfcl_meta["called_before_revealed"] = called_early
        if task.get("excluded_function"):
            bfcl_meta["excluded_function"] = task["excluded_function"]
        trajectories.append(
            {
                "id": f"{task_id}-t{turn}",
                "task": text,
                "messages": messages,
                "tools": tools,
                "outcome": {"success": True},
                "bfcl": bfcl_meta,
            }
        )
    return task_record, trajectories


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_tasks(path: Path, tasks: list[dict]) -> None:
    # mtime=0 and no file name in the header: the same tasks give the same bytes.
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for task in tasks:
            gz.write((json.dumps(task, ensure_ascii=False) + "\n").encode())


def split_stats(trajectories: list[dict]) -> dict[str, JSON]:
    calls = [m for t in trajectories for m in t["messages"] if m.get("tool_calls")]
    per_turn = [sum(1 for m in t["messages"] if m.get("tool_calls")) for t in trajectories]
    return {
        "tasks": len({t["bfcl"]["task_id"] for t in trajectories}),
        "turns": len(trajectories),
        "calls": len(calls),
        "distinct_tools": len({c["tool_calls"][0]["function"]["name"] for c in calls}),
        "distinct_call_structures_repeats_folded": len({structure(t) for t in trajectories}),
        "calls_per_turn": {
            "min": min(per_turn, default=0),
            "max": max(per_turn, default=0),
            "mean": round(sum(per_turn) / len(per_turn), 3) if per_turn else 0,
        },
    }


def structure(trajectory: dict) -> tuple[str, ...]:
    return fold(
        [
            m["tool_calls"][0]["function"]["name"]
            for m in trajectory["messages"]
            if m.get("tool_calls")
        ]
    )


# --- verifying ------------------------------------------------------------------------------


def verify_load(out: Path, expected: dict[str, int]) -> dict[str, JSON]:
    sys.path.insert(0, str(REPO))
    from skillbank import load_trajectories

    report = {}
    for name, count in expected.items():
        loaded = load_trajectories(out / f"{name}.jsonl")  # raises on any malformed record
        if len(loaded) != count:
            raise SystemExit(f"{name}.jsonl: loaded {len(loaded)} trajectories, wrote {count}")
        if not all(t.outcome.success and t.steps for t in loaded):
            raise SystemExit(f"{name}.jsonl: a trajectory without steps or not successful")
        report[name] = len(loaded)
    return report


def verify_replay(out: Path, trajectories: list[dict], sample: int | None) -> dict[str, JSON]:
    """Re-run turns through env.make_tools: same results, same state after, same state before."""
    chosen = trajectories
    if sample is not None and sample < len(trajectories):
        chosen = random.Random(0).sample(trajectories, sample)
    previous_state = {  # the state after turn t-1 is the state at the start of turn t
        (t["bfcl"]["task_id"], t["bfcl"]["turn"] + 1): t["bfcl"]["state_after"]
        for t in trajectories
    }
    mismatches = []
    for traj in chosen:
        meta = traj["bfcl"]
        tools, snapshot = bfcl_env.make_tools(meta["task_id"], meta["turn"], out)
        before = previous_state.get((meta["task_id"], meta["turn"]))
        if before is not None and snapshot() != before:
            mismatches.append(f"{traj['id']}: start state differs from the previous turn's end")
        results = {m["tool_call_id"]: m for m in traj["messages"] if m["role"] == "tool"}
        for msg in traj["messages"]:
            for call in msg.get("tool_calls") or []:
                fn = call["function"]
                recorded = results[call["id"]]
                try:
                    got = json.dumps(
                        tools[fn["name"]](**json.loads(fn["arguments"])), ensure_ascii=False
                    )
                    ok = not recorded.get("is_error") and got == recorded["content"]
                except bfcl_env.ToolCallError as exc:
                    got = str(exc)
                    ok = bool(recorded.get("is_error")) and got == recorded["content"]
                if not ok:
                    mismatches.append(
                        f"{traj['id']} {call['id']} {fn['name']}: recorded "
                        f"{recorded['content'][:200]!r}, got {got[:200]!r}"
                    )
        if snapshot() != meta["state_after"]:
            mismatches.append(f"{traj['id']}: state after the turn differs")
    return {"turns_checked": len(chosen), "mismatches": mismatches}


def bfcl_form(value: JSON) -> str:
    """Our recorded value in the form BFCL's executor reports it (str / json.dumps / str())."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _literal_numbers(text: str) -> JSON:
    """BFCL's ``str()`` of a result holding ``mpf('1.3')``/``Decimal('1.4')``, as floats."""
    tree = ast.parse(text, mode="eval")

    class Numbers(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            if (
                isinstance(node.func, ast.Name)
                and node.func.id in ("mpf", "Decimal")
                and len(node.args) == 1
                and isinstance(node.args[0], ast.Constant)
            ):
                return ast.Constant(float(node.args[0].value))
            return node

    return ast.literal_eval(Numbers().visit(tree))


def same_number_text(ours: JSON, theirs: str) -> bool:
    """Our float against BFCL's mpf/Decimal text, equal to the digits BFCL printed."""
    try:
        parsed = _literal_numbers(theirs)
    except (ValueError, SyntaxError, TypeError):
        return False

    def close(a: JSON, b: JSON) -> bool:
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        if isinstance(a, float) and isinstance(b, float):
            return a == b
        return a == b

    return close(ours, parsed)


def verify_against_bfcl(tasks: list[dict], trajectories: list[dict]) -> dict[str, JSON]:
    """Run BFCL's own ``execute_multi_turn_func_call`` on the raw ground truth and compare."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import (
        execute_multi_turn_func_call,
    )

    by_turn = {(t["bfcl"]["task_id"], t["bfcl"]["turn"]): t for t in trajectories}
    source = {}
    for cat in {t["category"] for t in tasks}:
        for raw in load_category(cat):
            source[raw["id"]] = raw
    mismatches: list[str] = []
    approximate: list[str] = []
    run = f"skillbank_check_{time.time_ns()}"
    for task in tasks:
        raw = source[task["task_id"]]
        for turn, ground_truth in enumerate(raw["ground_truth"]):
            results, instances = execute_multi_turn_func_call(
                ground_truth,
                raw["initial_config"],
                raw["involved_classes"],
                run,
                raw["id"],
                long_context=task["long_context"],
            )
            traj = by_turn.get((task["task_id"], turn))
            if traj is None:
                continue
            ours = [
                m["content"] if m.get("is_error") else bfcl_form(json.loads(m["content"]))
                for m in traj["messages"]
                if m["role"] == "tool"
            ]
            recorded = [
                None if m.get("is_error") else json.loads(m["content"])
                for m in traj["messages"]
                if m["role"] == "tool"
            ]
            if len(ours) != len(results):
                mismatches.append(f"{traj['id']}: {len(ours)} results vs BFCL {len(results)}")
            for i, (a, b) in enumerate(zip(ours, results, strict=False)):
                if a == b:
                    continue
                if b.replace("Ellipsis", "'Ellipsis'") == a:
                    # long_context's WATCH_LIST_EXTENSION ends with a literal `...`; JSON has
                    # no Ellipsis, so we record str(Ellipsis) == "Ellipsis" there.
                    approximate.append(f"{traj['id']} call {i}: Ellipsis recorded as a string")
                    continue
                if ("mpf(" in b or "Decimal(" in b) and same_number_text(recorded[i], b):
                    approximate.append(f"{traj['id']} call {i}: ours {a!r}, BFCL {b!r}")
                else:
                    mismatches.append(f"{traj['id']} call {i}: ours {a[:150]!r}, BFCL {b[:150]!r}")
            theirs = {
                cls: {
                    k: bfcl_env.jsonify(v) for k, v in vars(inst).items() if not k.startswith("_")
                }
                for cls, inst in instances.items()
            }
            if theirs != traj["bfcl"]["state_after"]:
                mismatches.append(f"{traj['id']}: state differs from BFCL's executor")
    return {
        "tasks_checked": len(tasks),
        "mismatches": mismatches,
        "equal_up_to_json_form": approximate,
    }


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "data", help="output folder")
    ap.add_argument("--limit", type=int, default=None, help="first N tasks of each category")
    ap.add_argument(
        "--categories",
        default="base",
        help=f"comma-separated multi-turn categories ({','.join(bfcl_env.CATEGORIES)});"
        " default: base",
    )
    ap.add_argument("--train-share", type=float, default=0.7)
    ap.add_argument(
        "--verify-sample",
        type=int,
        default=None,
        help="re-execute only N random turns via env.make_tools (default: all)",
    )
    ap.add_argument("--no-verify", action="store_true", help="skip all verification")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    version = bfcl_env.ensure_bfcl()
    categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    for cat in categories:
        if cat not in bfcl_env.CATEGORIES:
            ap.error(f"unknown category {cat!r}; choose from {', '.join(bfcl_env.CATEGORIES)}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    stats: Counter = Counter()
    tasks: list[dict] = []
    split: dict[str, list[dict]] = {"train": [], "heldout": []}
    skipped: list[dict] = []
    for cat in categories:
        raw_tasks = load_category(cat)
        raw_tasks.sort(key=lambda t: scenario_of(t["id"]))
        if args.limit is not None:
            raw_tasks = raw_tasks[: args.limit]
        for raw in raw_tasks:
            record, trajectories = convert_task(raw, cat, stats)
            record["split"] = split_of(record["scenario"], args.train_share)
            tasks.append(record)
            split[record["split"]].extend(trajectories)
            skipped += [
                {"task_id": raw["id"], "turn": t, "reason": SKIP_REASONS[cat]}
                for t in record["skipped_turns"]
            ]
    for name, trajectories in split.items():
        for traj in trajectories:
            traj["bfcl"]["split"] = name
    write_jsonl(out / "train.jsonl", split["train"])
    write_jsonl(out / "heldout.jsonl", split["heldout"])
    write_tasks(out / bfcl_env.TASKS_FILE, tasks)
    convert_seconds = time.perf_counter() - started

    everything = split["train"] + split["heldout"]
    seen = {structure(t) for t in split["train"]}
    summary: dict[str, JSON] = {
        "source": {
            "package": f"bfcl-eval=={version}",
            "categories": [f"multi_turn_{c}" for c in categories],
            "files": [
                f"bfcl_eval/data/BFCL_v4_multi_turn_{c}.json (+ possible_answer/)"
                for c in categories
            ],
            "limit_per_category": args.limit,
        },
        "split": {
            "rule": f"sha256('{SPLIT_SALT}/<scenario number>') < {args.train_share} of 2^64 "
            "-> train; every turn (and category variant) of a scenario stays together",
            "train_share": args.train_share,
        },
        "total": {
            **split_stats(everything),
            "tasks_read": len(tasks),
            "turns_read": len(everything) + len(skipped),
            "calls_raising": stats["calls_raising"],
            "calls_returning_error_field": stats["calls_returning_error_field"],
            "turns_calling_withheld_function": stats["turns_calling_withheld_function"],
        },
        "train": split_stats(split["train"]),
        "heldout": {
            **split_stats(split["heldout"]),
            "turns_whose_call_structure_was_seen_in_train": sum(
                structure(t) in seen for t in split["heldout"]
            ),
        },
        "skipped_turns": {
            "count": len(skipped),
            "by_reason": dict(Counter(s["reason"] for s in skipped)),
            "turns": skipped,
        },
        "convert_seconds": round(convert_seconds, 2),
    }

    failed = False
    if not args.no_verify:
        checks: dict[str, JSON] = {}
        checks["load_trajectories"] = verify_load(
            out, {"train": len(split["train"]), "heldout": len(split["heldout"])}
        )
        checks["replay_via_make_tools"] = verify_replay(out, everything, args.verify_sample)
        checks["bfcl_executor"] = verify_against_bfcl(tasks, everything)
        for name in ("replay_via_make_tools", "bfcl_executor"):
            if checks[name]["mismatches"]:
                failed = True
                print(f"{name}: {len(checks[name]['mismatches'])} mismatch(es)", file=sys.stderr)
                for line in checks[name]["mismatches"][:20]:
                    print("  " + line, file=sys.stderr)
        summary["verification"] = checks
    summary["seconds"] = round(time.perf_counter() - started, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")

    t, tr, ho = summary["total"], summary["train"], summary["heldout"]
    print(
        f"bfcl-eval {version}, {', '.join(summary['source']['categories'])}: "
        f"{t['tasks_read']} tasks, {t['turns']} turns, {t['calls']} calls, "
        f"{t['distinct_tools']} distinct tools; {len(skipped)} turn(s) skipped"
    )
    print(
        f"train: {tr['tasks']} tasks / {tr['turns']} turns; heldout: {ho['tasks']} tasks / "
        f"{ho['turns']} turns ({ho['turns_whose_call_structure_was_seen_in_train']} with a "
        "call structure seen in train)"
    )
    if not args.no_verify:
        v = summary["verification"]
        print(
            f"verified: load_trajectories ok; {v['replay_via_make_tools']['turns_checked']} "
            f"turn(s) replayed via env.make_tools, "
            f"{len(v['replay_via_make_tools']['mismatches'])} mismatch(es); "
            f"BFCL executor on {v['bfcl_executor']['tasks_checked']} task(s), "
            f"{len(v['bfcl_executor']['mismatches'])} mismatch(es)"
        )
    print(
        f"wrote {out}/train.jsonl, heldout.jsonl, {bfcl_env.TASKS_FILE}, summary.json "
        f"in {summary['seconds']} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
