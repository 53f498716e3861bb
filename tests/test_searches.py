"""Searches: runs that read a list's elements one by one until one fits learn a loop that
stops at the first element passing a test learned from the runs (#12, item 3)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from skillbank import Outcome, SkillBank, Step, Trajectory


def orders_run(
    tid: str, email: str, cid: str, orders: list[tuple[str, str]], prefix: str = "O-"
) -> Trajectory:
    """Find the customer, list their orders, read them one by one until a pending one,
    cancel it."""
    steps = [
        Step("find_customer", {"email": email}, {"customer_id": cid, "email": email}),
        Step("list_orders", {"customer_id": cid}, {"orders": [{"order_id": o} for o, _ in orders]}),
    ]
    for oid, status in orders:
        steps.append(Step("get_order", {"order_id": oid}, {"order_id": oid, "status": status}))
        if status == "pending":
            target = oid
            break
    result = {"order_id": target, "status": "cancelled"}
    steps.append(Step("cancel_order", {"order_id": target}, result))
    return Trajectory(tid, f"Cancel the pending order of {email}", (), tuple(steps), Outcome(True))


def pending_runs(prefix: str = "O-") -> list[Trajectory]:
    p = prefix
    return [
        orders_run("a", "ann@x.io", "C-1", [(f"{p}1", "delivered"), (f"{p}2", "pending")]),
        orders_run(
            "b",
            "bob@x.io",
            "C-2",
            [(f"{p}7", "shipped"), (f"{p}8", "delivered"), (f"{p}9", "pending")],
        ),
        orders_run("c", "cy@x.io", "C-3", [(f"{p}4", "pending"), (f"{p}5", "delivered")]),
    ]


def test_reading_orders_until_the_pending_one_learns_a_search(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        report = bank.learn(pending_runs())
        (sid,) = report.added
        skill = bank.get(sid)
        assert [p.name for p in skill.signature.params] == ["email"]
        body = skill.source.split('"""')[-1]
        assert 'for order_entry in orders["orders"]:' in body
        assert 'order = tools.get_order(order_id=order_entry["order_id"])' in body
        assert 'if order["status"] == "pending":\n            break\n    else:' in body
        assert 'return tools.cancel_order(order_id=order["order_id"])' in body
        assert "LookupError: If no entry of the list_orders result" in skill.source
        # A new customer whose pending order is fourth: one skill call does it all.
        orders = [("O-31", "delivered"), ("O-32", "shipped"), ("O-33", "delivered")]
        held = orders_run("h", "dee@x.io", "C-9", [*orders, ("O-34", "pending")])
        plan = bank.match(held)
        assert [(s.kind, s.name, s.arguments) for s in plan.steps] == [
            ("skill", sid, {"email": "dee@x.io"})
        ]
        assert plan.steps[0].covers == (0, 7)

        # Run for real: the search stops at the first pending order; with none it raises
        # the declared LookupError, and nothing is cancelled.
        state = {"O-1": "delivered", "O-2": "pending", "O-3": "pending"}
        cancelled: list[str] = []

        def cancel_order(order_id: str) -> dict[str, Any]:
            cancelled.append(order_id)
            return {"order_id": order_id, "status": "cancelled"}

        tools = {
            "find_customer": lambda email: {"customer_id": "C-5", "email": email},
            "list_orders": lambda customer_id: {"orders": [{"order_id": o} for o in state]},
            "get_order": lambda order_id: {"order_id": order_id, "status": state[order_id]},
            "cancel_order": cancel_order,
        }
        result = bank.run(sid, {"email": "eve@x.io"}, tools)
        assert result.ok and result.value == {"order_id": "O-2", "status": "cancelled"}
        state.update({"O-2": "delivered", "O-3": "shipped"})
        failed = bank.run(sid, {"email": "eve@x.io"}, tools)
        assert not failed.ok and failed.error is not None
        assert failed.error_type == "SkillError" and "LookupError" in failed.error
        assert cancelled == ["O-2"]


def item_run(
    tid: str, email: str, cid: str, orders: list[tuple[str, list[str]]], sku: str
) -> Trajectory:
    """Read a customer's orders until one holds the item the task names, then return it."""
    steps = [
        Step("find_customer", {"email": email}, {"customer_id": cid}),
        Step("list_orders", {"customer_id": cid}, {"orders": [{"order_id": o} for o, _ in orders]}),
    ]
    for oid, skus in orders:
        items = [{"sku": s, "quantity": 1} for s in skus]
        steps.append(Step("get_order", {"order_id": oid}, {"order_id": oid, "items": items}))
        if sku in skus:
            break
    args = {"order_id": oid, "sku": sku}
    steps.append(Step("create_return", args, {"return_id": f"R-{oid}", **args}))
    task = f"Return the {sku} that {email} bought"
    return Trajectory(tid, task, (), tuple(steps), Outcome(True))


def test_the_test_may_compare_an_element_of_a_list_with_what_the_user_asked_for(
    tmp_path: Path,
) -> None:
    runs = [
        item_run("a", "ann@x.io", "C-1", [("O-1", ["LAMP"]), ("O-2", ["PEN", "MUG-7"])], "MUG-7"),
        item_run("b", "bob@x.io", "C-2", [("O-5", ["KETTLE-2", "PEN"])], "KETTLE-2"),
        item_run(
            "c",
            "cy@x.io",
            "C-3",
            [("O-6", ["PEN"]), ("O-7", ["LAMP"]), ("O-8", ["TEA-9"])],
            "TEA-9",
        ),  # fmt: skip
    ]
    with SkillBank.init(tmp_path / "bank") as bank:
        (sid,) = bank.learn(runs).added
        skill = bank.get(sid)
        assert sorted(p.name for p in skill.signature.params) == ["email", "sku"]
        assert 'if any(entry["sku"] == sku for entry in order["items"]):' in skill.source
        assert 'tools.create_return(order_id=order["order_id"], sku=sku)' in skill.source
        held = item_run(
            "h", "dee@x.io", "C-9", [("O-20", ["PEN"]), ("O-21", ["LAMP", "BAG-1"])], "BAG-1"
        )
        plan = bank.match(held)
        assert [(s.name, s.arguments) for s in plan.steps] == [
            (sid, {"email": "dee@x.io", "sku": "BAG-1"})
        ]


@settings(max_examples=5, deadline=None)
@given(st.sampled_from(["O-", "ORD", "x-", "Q7_"]))
def test_renaming_the_entities_never_changes_a_search(prefix: str) -> None:
    import tempfile

    sources = []
    for p in ("O-", prefix):
        with tempfile.TemporaryDirectory() as tmp, SkillBank.init(Path(tmp) / "bank") as bank:
            (sid,) = bank.learn(pending_runs(p)).added
            sources.append(bank.get(sid).source.split('"""')[-1])
    assert sources[0] == sources[1]


def test_one_run_never_makes_its_own_element_the_test(tmp_path: Path) -> None:
    # With one run, "the order whose id is O-2" and "the pending order" explain it equally:
    # no constant test is learned from it, and the id stays the caller's.
    with SkillBank.init(tmp_path / "bank") as bank:
        (sid,) = bank.learn(pending_runs()[:1]).added
        assert "break" not in bank.get(sid).source
        assert '"O-2"' not in bank.get(sid).source.split('"""')[-1]


def status_run(
    tid: str, email: str, cid: str, orders: list[tuple[str, str]], want: str
) -> Trajectory:
    """Read a customer's orders until one has the status the task names, cancel it."""
    steps = [
        Step("find_customer", {"email": email}, {"customer_id": cid, "email": email}),
        Step("list_orders", {"customer_id": cid}, {"orders": [{"order_id": o} for o, _ in orders]}),
    ]
    for oid, status in orders:
        steps.append(Step("get_order", {"order_id": oid}, {"order_id": oid, "status": status}))
        if status == want:
            break
    steps.append(Step("cancel_order", {"order_id": oid}, {"order_id": oid, "status": "cancelled"}))
    return Trajectory(tid, f"Cancel the {want} order of {email}", (), tuple(steps), Outcome(True))


def status_runs() -> list[Trajectory]:
    return [
        status_run("a", "ann@x.io", "C-1", [("O-1", "delivered"), ("O-2", "pending")], "pending"),
        status_run(
            "b",
            "bob@x.io",
            "C-2",
            [("O-7", "pending"), ("O-8", "delivered"), ("O-9", "shipped")],
            "shipped",
        ),  # fmt: skip
        status_run("c", "cy@x.io", "C-3", [("O-4", "shipped"), ("O-5", "pending")], "pending"),
    ]


def test_a_value_the_task_names_but_no_call_takes_is_the_tests_parameter(tmp_path: Path) -> None:
    # The runs stop at orders of different statuses, each the one its task asks for: the
    # status is the caller's, tested and never passed to a call; recognition reads it back
    # from the order the run stopped at.
    with SkillBank.init(tmp_path / "bank") as bank:
        (sid,) = bank.learn(status_runs()).added
        skill = bank.get(sid)
        assert [p.name for p in skill.signature.params] == ["email", "status"]
        assert 'if order["status"] == status:\n            break' in skill.source
        assert "status: The `status` of the `get_order` result to stop at" in skill.source
        assert skill.description.startswith("Cancel the given status order of the given email")
        orders = [("O-31", "delivered"), ("O-32", "pending"), ("O-33", "shipped")]
        held = status_run("h", "dee@x.io", "C-9", orders, "shipped")
        plan = bank.match(held)
        assert [(s.kind, s.name, s.arguments) for s in plan.steps] == [
            ("skill", sid, {"email": "dee@x.io", "status": "shipped"})
        ]
        assert plan.steps[0].covers == (0, 6)


def test_a_value_no_task_names_is_never_made_the_tests_parameter(tmp_path: Path) -> None:
    # The same runs with tasks that do not say which status: nothing says the caller chose
    # it, so no search on a status parameter is learned.
    runs = [replace(t, task=f"Cancel an order of {t.steps[0].arguments['email']}")
            for t in status_runs()]  # fmt: skip
    with SkillBank.init(tmp_path / "bank") as bank:
        (sid,) = bank.learn(runs).added
        skill = bank.get(sid)
        assert "status" not in [p.name for p in skill.signature.params]
        assert "break" not in skill.source


def item_status_run(
    tid: str, email: str, cid: str, orders: list[tuple[str, str, str]], item: str, status: str
) -> Trajectory:
    """Read orders until the one holding the item, cancel that item; the task also says the
    order's status."""
    steps = [
        Step("find_customer", {"email": email}, {"customer_id": cid, "email": email}),
        Step(
            "list_orders", {"customer_id": cid}, {"orders": [{"order_id": o} for o, *_ in orders]}
        ),
    ]
    for oid, state, held in orders:
        result = {"order_id": oid, "status": state, "item": held}
        steps.append(Step("get_order", {"order_id": oid}, result))
        if held == item:
            break
    steps.append(Step("cancel_item", {"order_id": oid, "item": item}, {"order_id": oid}))
    task = f"Cancel the {item} in my {status} order, {email}"
    return Trajectory(tid, task, (), tuple(steps), Outcome(True))


def test_a_value_a_later_call_takes_wins_over_one_only_the_task_names() -> None:
    # The item reaches cancel_item; the status is only in the words. The test is the item's:
    # a status test would stop at the first pending order, holding another item.
    from skillbank.compiler import compile_group

    runs = [
        item_status_run("a", "ann@x.io", "C-1", [("O-1", "delivered", "mouse"),
                        ("O-2", "pending", "keyboard")], "keyboard", "pending"),
        item_status_run("b", "bob@x.io", "C-2", [("O-7", "pending", "lamp"),
                        ("O-8", "delivered", "cable"), ("O-9", "processing", "monitor")],
                        "monitor", "processing"),
        item_status_run("c", "cy@x.io", "C-3", [("O-4", "processing", "desk"),
                        ("O-5", "pending", "chair")], "chair", "pending"),
    ]  # fmt: skip
    source = compile_group(runs).source
    assert 'if order["item"] == item:\n            break' in source
    assert "status" not in source.split('"""')[-1]
