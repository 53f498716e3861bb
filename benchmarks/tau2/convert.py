"""Turn tau2-bench's airline gold actions into skillbank trajectories by executing them.

    .venv/bin/python benchmarks/tau2/convert.py --out benchmarks/tau2/data

For every airline task of tau2's official split (``split_tasks.json``: ``train`` -> learn,
``test`` -> held out), a fresh airline environment is set to the task's start and the task's
gold actions (``evaluation_criteria.actions``) are executed in order through tau2's own
``Environment.get_response``, each tool call recorded with its arguments and the tool message
tau2 returns. Writes, under ``--out``:

- ``annotated/{train,heldout}.jsonl``: the trajectories; each tool definition (tau2's own
  OpenAI schema) carries ``"x-skillbank-effect"``: ``"query"`` for tau2's ``read`` tools,
  ``"command"`` for its ``write`` tools, nothing for ``generic`` ones;
- ``plain/{train,heldout}.jsonl``: the same trajectories without that key, so skillbank falls
  back to its name heuristic;
- ``summary.json``: versions, tool types, counts, and the verification results.

The task text is the user's ``reason_for_call`` followed by ``known_info`` (who the user is):
what the simulated user tells the agent. ``task_instructions`` (how the simulated user should
behave) and ``unknown_info`` are left out.

Success is tau2's own criterion: the database hash after the recorded calls equals the hash of
tau2's gold environment (the gold actions applied as ``EnvironmentEvaluator`` applies them). Then
it verifies: tau2's ``EnvironmentEvaluator.calculate_reward`` replays each recorded trajectory,
checks every recorded result and finds the database equal to the gold one; every trajectory
re-executed through ``env.Pool`` gives the recorded results and hash again; all four files load
with ``skillbank.load_trajectories``. Any mismatch exits 1. Creates ``benchmarks/tau2/.venv``
(tau2 and its dependencies) if missing.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.tau2 import env as tau2_env  # noqa: E402

JSON = Any
FINAL_ANSWER = "Done."
EFFECT_KEY = "x-skillbank-effect"  # skillbank.trajectory.EFFECT_KEY
EFFECT_OF_TYPE = {"read": "query", "write": "command"}  # tau2's generic/think: no annotation
PARTS = {"train": "train", "test": "heldout"}  # tau2's split name -> our file name
VARIANTS = ("annotated", "plain")


def task_text(task: dict[str, JSON]) -> str:
    """What the simulated user asks for: ``reason_for_call``, then ``known_info``."""
    instructions = task["user_scenario"]["instructions"]
    if isinstance(instructions, str):  # tau2 allows free text; airline's are structured
        return instructions.strip()
    parts = [instructions.get("reason_for_call"), instructions.get("known_info")]
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def annotate(tools: list[JSON], types: dict[str, str]) -> list[JSON]:
    """tau2's tool definitions with skillbank's effect key from tau2's read/write type."""
    out = copy.deepcopy(tools)
    for tool in out:
        effect = EFFECT_OF_TYPE.get(types[tool["function"]["name"]])
        if effect is not None:
            tool["function"][EFFECT_KEY] = effect
    return out


def record_task(
    server: tau2_env.Server, task: dict[str, JSON], split: str
) -> tuple[dict[str, JSON], list[str]]:
    """Execute one task's gold actions; the trajectory (tools not yet added) and problems."""
    problems: list[str] = []
    task_id = task["id"]
    actions = (task.get("evaluation_criteria") or {}).get("actions") or []
    server.request("reset", task_id=task_id)
    start_hash = server.request("hash")["hash"]
    text = task_text(task)
    messages: list[dict[str, JSON]] = [{"role": "user", "content": text}]
    errors = 0
    for n, action in enumerate(actions, 1):
        if action.get("requestor", "assistant") != "assistant":
            problems.append(f"task {task_id}: action {n} is the user's ({action['name']})")
        call_id = f"call_{n}"
        answer = server.request("call", tool=action["name"], arguments=action["arguments"])
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": action["name"],
                            "arguments": json.dumps(action["arguments"], ensure_ascii=False),
                        },
                    }
                ],
            }
        )
        tool_message: dict[str, JSON] = {
            "role": "tool",
            "tool_call_id": call_id,
            "content": answer["content"],
        }
        if answer["error"]:
            tool_message["is_error"] = True
            errors += 1
        messages.append(tool_message)
    messages.append({"role": "assistant", "content": FINAL_ANSWER})
    after = server.request("hash")["hash"]
    gold = server.request("gold", task_id=task_id)
    if gold["failed"]:
        problems.append(f"task {task_id}: gold actions failed in tau2's gold env: {gold['failed']}")
    success = after == gold["hash"]
    if not success:
        problems.append(f"task {task_id}: db hash {after[:12]} != gold {gold['hash'][:12]}")
    evaluated = server.request("evaluate", task_id=task_id, messages=messages)
    if evaluated["db_match"] is not True:
        problems.append(f"task {task_id}: tau2's evaluator: db_match={evaluated['db_match']}")
    record = {
        "id": tau2_env.trajectory_id(task_id),
        "task": text,
        "messages": messages,
        "tools": [],
        "outcome": {
            "success": success,
            "detail": "database hash equals tau2's gold hash"
            if success
            else "database hash differs from tau2's gold hash",
        },
        "tau2": {
            "domain": "airline",
            "task_id": task_id,
            "split": split,
            "purpose": (task.get("description") or {}).get("purpose"),
            "gold_actions": len(actions),
            "failed_calls": errors,
            "db_hash_start": start_hash,
            "db_hash_after": after,
            "gold_db_hash": gold["hash"],
            "tau2_evaluator_db_match": evaluated["db_match"],
        },
    }
    return record, problems


def replay(pool: tau2_env.Pool, record: dict[str, JSON]) -> list[str]:
    """Execute a written trajectory again on a fresh environment: results and hash as written."""
    task_id = record["tau2"]["task_id"]
    tools, snapshot = pool.fresh(task_id)
    problems = []
    results = {m["tool_call_id"]: m for m in record["messages"] if m["role"] == "tool"}
    for m in record["messages"]:
        for call in m.get("tool_calls") or []:
            want = results[call["id"]]
            arguments = json.loads(call["function"]["arguments"])
            try:
                got, error = tools[call["function"]["name"]](**arguments), None
            except tau2_env.ToolCallError as exc:
                got, error = None, str(exc)
            if want.get("is_error"):
                if error != want["content"]:
                    problems.append(f"task {task_id} {call['id']}: error {error!r}")
            elif error is not None or got != tau2_env.parse_content(want["content"]):
                problems.append(f"task {task_id} {call['id']}: result differs on replay")
    if snapshot() != record["tau2"]["db_hash_after"]:
        problems.append(f"task {task_id}: db hash differs on replay")
    return problems


def write_jsonl(path: Path, records: list[dict[str, JSON]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "data", help="output folder")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    python = tau2_env.ensure_tau2()
    problems: list[str] = []
    with tau2_env.Server(python) as server:
        info = server.request("info")
        listing = server.request("tasks")
        tasks = {t["id"]: t for t in listing["tasks"]}
        split = listing["split"]
        records: dict[str, list[dict[str, JSON]]] = {part: [] for part in PARTS.values()}
        for tau2_part, part in PARTS.items():
            for task_id in split[tau2_part]:
                record, found = record_task(server, tasks[task_id], part)
                records[part].append(record)
                problems += found

    pool = tau2_env.Pool(size=1, python=python)
    try:
        for part in records.values():
            for record in part:
                problems += replay(pool, record)
    finally:
        pool.close()

    annotated_tools = annotate(info["tools"], info["tool_types"])
    for variant, tools in (("annotated", annotated_tools), ("plain", info["tools"])):
        for part, items in records.items():
            path = args.out / variant / f"{part}.jsonl"
            write_jsonl(path, [{**r, "tools": tools} for r in items])

    from skillbank import load_trajectories

    loaded = {}
    for variant in VARIANTS:
        for part, items in records.items():
            got = load_trajectories(args.out / variant / f"{part}.jsonl")
            loaded[f"{variant}/{part}"] = len(got)
            if len(got) != len(items):
                problems.append(f"{variant}/{part}: {len(got)} loaded of {len(items)}")

    every = [r for part in records.values() for r in part]
    calls = Counter(
        c["function"]["name"]
        for r in every
        for m in r["messages"]
        for c in m.get("tool_calls") or []
    )
    summary = {
        "tau2_version": info["tau2_version"],
        "domain": "airline",
        "split": {part: [r["tau2"]["task_id"] for r in items] for part, items in records.items()},
        "task_text": "reason_for_call, then known_info",
        "tool_types": info["tool_types"],
        "effect_annotations": {
            name: EFFECT_OF_TYPE.get(kind) for name, kind in sorted(info["tool_types"].items())
        },
        "db_hash_initial": info["db_hash"],
        "counts": {
            part: {
                "tasks": len(items),
                "without_gold_actions": sum(r["tau2"]["gold_actions"] == 0 for r in items),
                "calls": sum(r["tau2"]["gold_actions"] for r in items),
                "failed_calls": sum(r["tau2"]["failed_calls"] for r in items),
                "successful": sum(r["outcome"]["success"] for r in items),
            }
            for part, items in records.items()
        },
        "calls_per_tool": dict(sorted(calls.items())),
        "loaded": loaded,
        "problems": problems,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for part, c in summary["counts"].items():
        print(
            f"{part}: {c['tasks']} tasks ({c['without_gold_actions']} without gold actions), "
            f"{c['calls']} calls ({c['failed_calls']} failed), {c['successful']} reach the gold "
            "database hash"
        )
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
