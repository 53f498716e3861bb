"""Queries and commands: every tool classified, from configuration, annotations, or its name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skillbank import Config, SkillBank, load_trajectories, parse_record
from skillbank.compiler.effects import QUERY_VERBS, classify, classify_tools
from skillbank.trajectory import EFFECT_KEY, ToolSpec

from .conftest import EXAMPLE_TRAJECTORIES


@pytest.mark.parametrize(
    ("name", "effect"),
    [
        ("get_order", "query"),
        ("list_all_airports", "query"),
        ("findCustomer", "query"),
        ("search-products", "query"),
        ("check_stock", "query"),
        ("calculate", "query"),
        ("is_available", "query"),
        ("GetUserDetails", "query"),
        ("place_order", "command"),
        ("cancel_reservation", "command"),
        ("update_email", "command"),
        ("restock", "command"),
        ("think", "command"),
        ("getaway_booking", "command"),  # a word, not a prefix: "getaway" is not "get"
        ("", "command"),
    ],
)
def test_names_that_only_read_are_queries_and_the_rest_commands(name: str, effect: str) -> None:
    assert classify(name).effect == effect


def test_the_banks_word_beats_the_tools_annotation_which_beats_its_name() -> None:
    hinted = ToolSpec("get_order", extra={EFFECT_KEY: "command"})
    assert classify("get_order", hinted).describe() == "command (x-skillbank-effect: command)"
    owner = classify("get_order", hinted, query_tools=["get_order"])
    assert (owner.effect, owner.source, owner.why) == ("query", "configuration", "query_tools")
    assert classify("place_order", command_tools={"place_order"}).source == "configuration"
    # MCP annotations: readOnlyHint true is a query; destructiveHint, or readOnlyHint false,
    # a command; no hint at all falls through to the name.
    mcp = {"annotations": {"readOnlyHint": True}}
    assert classify("delete_everything", ToolSpec("x", extra=mcp)).effect == "query"
    for hints in ({"destructiveHint": True}, {"readOnlyHint": False}):
        assert (
            classify("get_order", ToolSpec("x", extra={"annotations": hints})).effect == "command"
        )
    assert classify("get_order", ToolSpec("x", extra={"annotations": {}})).source == "name"


@given(st.from_regex(r"[a-z]{1,10}(_[a-z]{1,8}){0,3}", fullmatch=True))
def test_a_name_without_a_reading_verb_is_a_command(name: str) -> None:
    effect = classify(name)
    first = name.split("_")[0]
    assert effect.effect == ("query" if first in QUERY_VERBS else "command")
    assert effect.source == ("name" if first in QUERY_VERBS else "default")


def test_trajectories_keep_effect_hints_and_nothing_else() -> None:
    record = {
        "messages": [{"role": "user", "content": "Archive order O-1"}],
        "tools": [
            {"type": "function", EFFECT_KEY: "command",
             "function": {"name": "get_archive", "parameters": {}, "strict": True}},
            {"type": "function",
             "function": {"name": "lookup_order", "parameters": {},
                          "annotations": {"readOnlyHint": False}}},
        ],
    }  # fmt: skip
    tools = {t.name: t for t in parse_record(record).tools}
    assert dict(tools["get_archive"].extra) == {EFFECT_KEY: "command"}
    assert dict(tools["lookup_order"].extra) == {"annotations": {"readOnlyHint": False}}
    effects = classify_tools(tools, tools)
    assert [effects[n].effect for n in sorted(tools)] == ["command", "command"]


def test_learning_reports_each_tools_class_and_skill_md_says_it(tmp_path: Path) -> None:
    config = Config(query_tools=("place_order",))  # the owner's word, however odd
    with SkillBank.init(tmp_path / "bank", config=config) as bank:
        report = bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES))
        order = next(p for p in report.procedures if p.skill_id and "place_order" in p.skill_id)
        said = {e.tool: (e.effect, e.source) for e in order.effects}
        assert said["place_order"] == ("query", "configuration")
        assert said["find_customer"] == ("query", "name")
        data = json.loads(json.dumps(report.to_json()))
        procedure = next(p for p in data["procedures"] if p["skill_id"] == order.skill_id)
        assert {"tool": "place_order", "effect": "query", "source": "configuration",
                "why": "query_tools"} in procedure["effects"]  # fmt: skip
        text = (bank.library.dir / str(order.skill_id) / "SKILL.md").read_text()
        assert "- `place_order` (query; query_tools):" in text
        assert "- `find_customer` (query; name starts with 'find'):" in text
