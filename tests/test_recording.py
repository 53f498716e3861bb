"""Recording an agent written without skillbank: calls in order, messages, records, learning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skillbank import SkillBank
from skillbank.examples.shop import TOOL_SPECS, Shop
from skillbank.recording import Recorder
from skillbank.trajectory import Step, ToolSpec, load_trajectories, parse_record


def _order_history(tools: Any, email: str) -> Any:
    """A hand-written 'agent': look the customer up, then list their orders."""
    customer = tools["find_customer"](email=email)
    return tools["list_orders"](customer_id=customer["customer_id"])


def test_wrap_records_calls_in_order_and_passes_results_and_errors_through(
    tmp_path: Path,
) -> None:
    shop = Shop.create(tmp_path / "shop.sqlite")
    recorder = Recorder("Show the order history for alice@example.com")
    tools = recorder.wrap(shop.tools())
    assert set(tools) == set(shop.tools())

    orders = _order_history(tools, "alice@example.com")
    assert orders == shop.list_orders(customer_id="C-1001")  # behaviour unchanged
    with pytest.raises(ValueError, match="nobody@example.com") as info:
        tools["find_customer"](email="nobody@example.com")

    calls = recorder.calls
    assert [c.tool for c in calls] == ["find_customer", "list_orders", "find_customer"]
    assert calls[0] == Step(
        "find_customer",
        {"email": "alice@example.com"},
        shop.find_customer(email="alice@example.com"),
        call_id="call_1",
    )
    assert calls[1].arguments == {"customer_id": "C-1001"} and calls[1].result == orders
    assert calls[2].result is None
    assert calls[2].error == f"ValueError: {info.value}"


def test_decorator_names_positional_arguments_and_keeps_the_function() -> None:
    recorder = Recorder("Add things")

    @recorder.tool
    def add(a: int, b: int = 2) -> dict[str, int]:
        """Add two numbers."""
        return {"sum": a + b}

    @recorder.tool(name="concat")
    def join_words(*words: str, sep: str = " ", **extra: str) -> str:
        return sep.join(words) + "".join(extra.values())

    assert add.__name__ == "add" and add.__doc__ == "Add two numbers."
    assert add(1) == {"sum": 3} and add(1, b=5) == {"sum": 6}
    assert join_words("a", "b", sep="-", tail="!") == "a-b!"
    with pytest.raises(TypeError):
        add()  # a wrong call fails as the function would, and is not recorded
    assert [(c.tool, dict(c.arguments), c.result) for c in recorder.calls] == [
        ("add", {"a": 1}, {"sum": 3}),
        ("add", {"a": 1, "b": 5}, {"sum": 6}),
        ("concat", {"words": ["a", "b"], "sep": "-", "tail": "!"}, "a-b!"),
    ]


def test_messages_record_and_trajectory_agree(tmp_path: Path) -> None:
    shop = Shop.create(tmp_path / "shop.sqlite")
    recorder = Recorder(
        "Show the order history for bob@example.com", tool_specs=TOOL_SPECS, system="Be brief."
    )
    tools = recorder.wrap(shop.tools())
    _order_history(tools, "bob@example.com")
    with pytest.raises(ValueError):
        tools["get_order"](order_id="O-0")

    messages = recorder.to_messages(answer="Bob has orders.")
    assert [m["role"] for m in messages] == ["system", "user"] + ["assistant", "tool"] * 3 + [
        "assistant"
    ]
    call = messages[2]["tool_calls"][0]
    assert call["id"] == "call_1" and call["function"]["name"] == "find_customer"
    assert json.loads(call["function"]["arguments"]) == {"email": "bob@example.com"}
    assert messages[-2]["is_error"] is True and messages[-2]["content"].startswith("ValueError")

    t = recorder.trajectory(success=False, detail="could not open O-0", id="rec-1")
    assert t.id == "rec-1" and t.task == "Show the order history for bob@example.com"
    assert not t.outcome.success and t.outcome.detail == "could not open O-0"
    assert t.tools[0] == ToolSpec(
        "find_customer",
        TOOL_SPECS[0]["function"]["description"],
        TOOL_SPECS[0]["function"]["parameters"],
    )
    assert [(s.tool, s.error is None) for s in t.steps] == [
        ("find_customer", True),
        ("list_orders", True),
        ("get_order", False),
    ]
    assert t.steps[1].result == shop.list_orders(customer_id="C-1002")

    # Messages and back: the bare messages parse to the same calls and results.
    again = parse_record({"messages": messages, "tools": TOOL_SPECS})
    assert again.steps == t.steps and again.task == t.task

    # Appended records load back equal, with or without an id.
    path = tmp_path / "runs.jsonl"
    recorder.dump(path, success=False, detail="could not open O-0", id="rec-1")
    recorder.dump(path)
    first, second = load_trajectories(path)
    assert (first.id, first.task, first.tools, first.steps, first.outcome) == (
        t.id,
        t.task,
        t.tools,
        t.steps,
        t.outcome,
    )
    assert second.sha256 == recorder.trajectory().sha256
    assert second.id == recorder.trajectory().id and second.id.startswith("t-")


def test_undeclared_tools_get_a_bare_spec_and_no_specs_means_none() -> None:
    recorder = Recorder("Ping", tool_specs=TOOL_SPECS[:1])
    recorder.wrap({"ping": lambda: {"pong": True}})["ping"]()
    names = [t.name for t in recorder.trajectory().tools]
    assert names == ["find_customer", "ping"]
    bare = Recorder("Ping")
    bare.wrap({"ping": lambda: {"pong": True}})["ping"]()
    assert bare.trajectory().tools == () and bare.to_record()["tools"] == []
    with pytest.raises(ValueError, match="empty"):
        Recorder("  ")


def test_a_recorded_run_is_learned_and_the_skill_runs_on_new_arguments(tmp_path: Path) -> None:
    shop = Shop.create(tmp_path / "shop.sqlite")
    recorder = Recorder("Show the order history for carol@example.com", tool_specs=TOOL_SPECS)
    _order_history(recorder.wrap(shop.tools()), "carol@example.com")
    path = tmp_path / "runs.jsonl"
    recorder.dump(path, detail="Carol has orders.")

    with SkillBank.init(tmp_path / "bank") as bank:
        report = bank.learn(load_trajectories(path), branch="current")
        assert report.added == ["list_orders_by_email"], report.to_json()
        skill = bank.get("list_orders_by_email")
        assert skill.signature.render() == "list_orders_by_email(email: str) -> dict"
        result = bank.run(skill.id, {"email": "dmitri@example.com"}, shop.tools())
        assert result.ok and result.value == shop.list_orders(customer_id="C-1004")
