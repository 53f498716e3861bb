"""Composition: a new procedure that contains a known one calls that skill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skillbank import LibraryError, Outcome, SkillBank, Step, Trajectory
from skillbank.compose import closure, requirement_cycle

CUSTOMERS = {"ann@x.io": "C-1", "bob@x.io": "C-2", "cy@x.io": "C-3"}
ORDERS = {"C-1": ["O-11", "O-12"], "C-2": ["O-21"], "C-3": ["O-31", "O-32"]}


def find_customer(email: str) -> dict[str, Any]:
    return {"customer_id": CUSTOMERS[email], "email": email}


def list_orders(customer_id: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "orders": [{"order_id": o} for o in ORDERS[customer_id]]}


def get_order(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "total": 10.5}


TOOLS = {"find_customer": find_customer, "list_orders": list_orders, "get_order": get_order}


def history(tid: str, email: str) -> Trajectory:
    c = find_customer(email)
    steps = (
        Step("find_customer", {"email": email}, c),
        Step("list_orders", {"customer_id": c["customer_id"]}, list_orders(c["customer_id"])),
    )
    return Trajectory(tid, f"Show the orders of {email}", (), steps, Outcome(True))


def latest(tid: str, email: str) -> Trajectory:
    h = history(tid, email)
    first = h.steps[1].result["orders"][0]["order_id"]
    steps = (*h.steps, Step("get_order", {"order_id": first}, get_order(first)))
    return Trajectory(tid, f"Open the latest order of {email}", (), steps, Outcome(True))


def test_a_procedure_containing_a_known_one_calls_its_skill(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "b") as bank:
        assert bank.learn([history("h1", "ann@x.io"), history("h2", "bob@x.io")]).added == [
            "list_orders_by_email"
        ]
        runs = [latest("l1", "ann@x.io"), latest("l2", "cy@x.io")]
        report = bank.learn(runs, branch="current")
        (sid,) = report.added
        skill = bank.get(sid)
        assert skill.requires == ("list_orders_by_email",)
        assert skill.tools == ("get_order",)
        assert "tools.list_orders_by_email(email=email)" in skill.source
        assert [c.tool for c in skill.cases[0].calls] == [
            "find_customer",
            "list_orders",
            "get_order",
        ]
        # It runs for real: the required skill runs nested against the same host tools.
        result = bank.run(sid, {"email": "bob@x.io"}, TOOLS)
        assert result.ok, result.error
        assert result.value == {"order_id": "O-21", "total": 10.5}
        # Recognition sees the composed skill as one call covering all three raw calls.
        plan = bank.match(latest("l3", "bob@x.io"))
        assert [(s.kind, s.name, s.covers) for s in plan.steps] == [("skill", sid, (0, 3))]
        # Re-learning changes nothing.
        assert bank.learn([latest("l1", "ann@x.io")]).commit is None


def test_requirement_cycles_are_found() -> None:
    graph = {"a": ("b",), "b": ("c",), "c": ("a",), "d": ()}
    assert requirement_cycle(graph) == ["a", "b", "c", "a"]
    assert requirement_cycle({"a": ("b",), "b": ()}) is None
    assert closure("a", {"a": ("b",), "b": ("c",)}) == {"b", "c"}


def test_a_hand_made_cycle_stops_learning_with_a_clear_error(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "b") as bank:
        bank.learn([history("h1", "ann@x.io")])
        meta = tmp_path / "b" / "skills" / "list_orders_by_email" / "SKILL.md"
        meta.write_text(meta.read_text().replace("requires: ''", "requires: list_orders_by_email"))
        with pytest.raises(LibraryError, match="cycle"):
            bank.learn([latest("l1", "ann@x.io")])
