"""Fine-tuning data from recorded cases: both kinds, the split, the validator, tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skillbank import SkillBank, load_trajectories
from skillbank.cli import cli
from skillbank.finetune import (
    MIN_TRAINING_EXAMPLES,
    example_tokens,
    export_finetune,
    load_tokenizer,
    split_of,
    validate_examples,
    validate_file,
)
from tests.conftest import EXAMPLE_TRAJECTORIES


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _calls(example: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for m in example["messages"]
        for c in m.get("tool_calls", [])
    ]


# Learns the shop (~2 s) and exports both kinds from it.
def test_both_kinds_pass_the_validator_and_split_by_procedure(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES))
        skills = {s.id: s for s in bank.skills()}
    tokenizer = load_tokenizer()
    assert tokenizer is not None and "o200k_base" in tokenizer.label
    for kind in ("skills", "procedures"):
        out = tmp_path / kind
        report = export_finetune(skills.values(), out, kind=kind)  # type: ignore[arg-type]
        train, validation = _read(out / "train.jsonl"), _read(out / "validation.jsonl")
        assert report.problems == ()
        assert validate_file(out / "train.jsonl", tokenizer=tokenizer) == []
        assert validate_file(out / "validation.jsonl", training=False, tokenizer=tokenizer) == []
        # Split by procedure: every skill on one side, decided by its id alone.
        assert set(report.train_skills) | set(report.validation_skills) == set(skills)
        assert not set(report.train_skills) & set(report.validation_skills)
        assert report.validation_skills and report.train_skills
        assert report.train_examples + report.validation_examples == sum(
            len(s.cases) for s in skills.values()
        )
        assert report.train_tokens == sum(example_tokens(e, tokenizer) for e in train)
        assert report.validation_tokens is not None and report.validation_tokens > 0
        held = set(report.validation_skills)
        for example, side in [(e, "train") for e in train] + [(e, "val") for e in validation]:
            task = example["messages"][0]["content"]
            owner = next(s for s in skills.values() if task in s.tasks)
            assert (owner.id in held) == (side == "val")
            case = next(c for c in owner.cases if c.task == task)
            if kind == "skills":
                # The model calls the skill with the case's arguments, nothing else.
                ((name, args),) = _calls(example)
                assert name == owner.id
                assert {k: v for k, v in args.items() if v is not None} == dict(case.args)
                assert example["tools"][0]["function"]["name"] == owner.id
            else:
                # The model makes the skill's raw calls, answered with the recorded results.
                assert _calls(example) == [(c.tool, dict(c.arguments)) for c in case.calls]
                answers = [m for m in example["messages"] if m["role"] == "tool"]
                assert [json.loads(m["content"]) for m in answers] == [
                    c.result for c in case.calls[:-1]
                ]
        # The same library gives the same bytes.
        before = (out / "train.jsonl").read_bytes()
        export_finetune(skills.values(), out, kind=kind)  # type: ignore[arg-type]
        assert (out / "train.jsonl").read_bytes() == before

    # Only skills at or above the stage: the shop's are associative, so none is autonomous.
    report = export_finetune(skills.values(), tmp_path / "none", min_stage="autonomous")
    assert report.train_examples == 0 and len(report.skipped) == len(skills)
    assert all("below autonomous" in why for _, why in report.skipped)
    assert any("too_few_examples" in p for p in report.problems)


# Learns the messy shop runs (~3 s): some read a tool the skill they teach never calls.
def test_procedures_leave_out_the_reads_the_skill_does_not_make(tmp_path: Path) -> None:
    messy = EXAMPLE_TRAJECTORIES.with_name("shop_messy.jsonl")
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn(load_trajectories([EXAMPLE_TRAJECTORIES, messy]))
        skills = list(bank.skills())
    # The cases keep the detours (replay skips them), so the export has something to drop.
    assert any(c.tool not in s.tool_specs for s in skills for case in s.cases for c in case.calls)
    report = export_finetune(skills, tmp_path / "ft", kind="procedures")
    assert report.problems == ()
    for name in ("train.jsonl", "validation.jsonl"):
        for example in _read(tmp_path / "ft" / name):
            offered = {t["function"]["name"] for t in example["tools"]}
            assert {tool for tool, _ in _calls(example)} <= offered


def test_the_split_depends_on_the_skill_id_only() -> None:
    ids = [f"skill_{n}" for n in range(200)]
    held = [i for i in ids if split_of(i, 0.2) == "validation"]
    assert held == [i for i in ids if split_of(i, 0.2) == "validation"]
    assert 20 < len(held) < 60
    assert all(split_of(i, 0.0) == "train" for i in ids)


def _example(**changes: Any) -> dict[str, Any]:
    example: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    }
                ],
            },  # fmt: skip
            {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
            {"role": "assistant", "content": "It is rainy.", "weight": 1},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    }
    example.update(changes)
    return example


def _message(n: int, **changes: Any) -> dict[str, Any]:
    example = _example()
    example["messages"][n] = {**example["messages"][n], **changes}
    return example


_CALL = _example()["messages"][1]


@pytest.mark.parametrize(
    ("example", "rule"),
    [
        ("not an object", "data_type"),
        (_example(metadata={}), "unrecognized_key"),
        (_example(messages=[]), "missing_messages_list"),
        (_message(0, role="narrator"), "unrecognized_role"),
        (_message(0, mood="calm"), "message_unrecognized_key"),
        (_message(0, content=None), "missing_content"),
        (_message(3, weight=0.5), "invalid_weight"),
        (_message(0, weight=1), "invalid_weight"),
        (
            _message(
                1, tool_calls=[{"id": "call_1", "type": "function", "function": {"name": "x"}}]
            ),
            "invalid_tool_call",
        ),
        (
            _message(
                1,
                tool_calls=[
                    {
                        **_CALL["tool_calls"][0],
                        "function": {"name": "get_weather", "arguments": "[1]"},
                    }
                ],
            ),
            "invalid_tool_call",
        ),
        (_message(2, tool_call_id="call_9"), "unpaired_tool_message"),
        (_example(tools=[{"type": "function", "function": {"name": "other"}}]), "undefined_tool"),
        (_example(tools=[*_example()["tools"], {"type": "retrieval"}]), "invalid_tool"),
        (
            _example(messages=[{"role": "user", "content": "hi"}]),
            "example_missing_assistant_message",
        ),
        (_example(messages=_example()["messages"][:3]), "last_message_not_assistant"),
    ],  # fmt: skip
    ids=lambda value: value if isinstance(value, str) and value.islower() else "",
)
def test_the_validator_names_each_broken_rule(example: Any, rule: str) -> None:
    found = validate_examples([example] * MIN_TRAINING_EXAMPLES)
    assert {p.rule for p in found} == {rule}, found
    assert found[0].line == 1


def test_a_valid_example_passes_and_a_short_or_long_file_does_not() -> None:
    assert validate_examples([_example()] * MIN_TRAINING_EXAMPLES) == []
    assert [p.rule for p in validate_examples([_example()])] == ["too_few_examples"]
    assert validate_examples([_example()], training=False) == []
    tokenizer = load_tokenizer()
    assert tokenizer is not None
    found = validate_examples([_example()], training=False, tokenizer=tokenizer, max_tokens=10)
    assert [p.rule for p in found] == ["too_many_tokens"]


def test_tokens_are_counted_offline_from_the_bundled_bpe_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    tokenizer = load_tokenizer()
    assert tokenizer is not None
    assert "bpe-openai" in tokenizer.label or "cache" in tokenizer.label
    assert tokenizer.count("hello world") == 2


# Learns the shop (~2 s) through the CLI, then exports.
def test_cli_export_finetune(tmp_path: Path) -> None:
    runner = CliRunner()
    root = tmp_path / "bank"
    assert runner.invoke(cli, ["init", str(root)]).exit_code == 0
    learned = runner.invoke(cli, ["learn", str(EXAMPLE_TRAJECTORIES), "--root", str(root)])
    assert learned.exit_code == 0, learned.output
    out = tmp_path / "ft"
    result = runner.invoke(
        cli, ["export", "finetune", str(out), "--kind", "procedures", "--root", str(root), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["kind"] == "procedures" and data["problems"] == []
    assert data["train"]["examples"] == len(_read(out / "train.jsonl"))
    result = runner.invoke(
        cli, ["export", "finetune", str(tmp_path / "none"), "--min-stage", "autonomous",
              "--root", str(root)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "too_few_examples" in result.output
