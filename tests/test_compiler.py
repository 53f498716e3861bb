from __future__ import annotations

import ast
import textwrap
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skillbank import CompileError, Outcome, Step, ToolSpec, Trajectory, check_source
from skillbank.compiler import compile_group, compile_trajectory, skill_id_for
from skillbank.compiler.dataflow import bound_parts, find_origin, mentioned_in
from skillbank.compiler.emit import identifier, literal
from skillbank.signature import read_signature


def traj(task: str, *steps: tuple[str, dict[str, Any], Any], success: bool = True) -> Trajectory:
    specs = tuple(ToolSpec(name) for name in dict.fromkeys(s[0] for s in steps))
    return Trajectory(
        id="t1",
        task=task,
        tools=specs,
        steps=tuple(
            Step(tool, args, result, None, f"c{i}") for i, (tool, args, result) in enumerate(steps)
        ),
        outcome=Outcome(success),
    )


def cancel_run(tid: str, email: str, customer: str, order: str, reason: str) -> Trajectory:
    return replace(
        traj(
            f"Cancel the pending order of {email}, reason: {reason}",
            ("find_customer", {"email": email}, {"customer_id": customer, "name": "Ann"}),
            (
                "list_orders",
                {"customer_id": customer, "status": "pending"},
                {"orders": [{"order_id": order}, {"order_id": order + "0"}]},
            ),
            (
                "cancel_order",
                {"order_id": order, "reason": reason},
                {"order_id": order, "status": "cancelled"},
            ),
        ),
        id=tid,
    )


def test_straight_line_skill_with_data_flow_and_parameters() -> None:
    runs = [
        cancel_run("t1", "ann@example.com", "C-7", "O-9", "too slow"),
        cancel_run("t2", "bob@example.com", "C-8", "O-4", "wrong size"),
    ]
    draft = compile_group(runs)
    assert draft.source == textwrap.dedent(
        """\
        def cancel_order_by_email(email: str, reason: str, status: str = "pending") -> dict:
            \"\"\"Cancel the pending order of the given email, reason: the given reason.

            Calls `find_customer`, then `list_orders`, then `cancel_order`.

            Args:
                email: Passed to `find_customer` as `email` (e.g. "ann@example.com").
                reason: Passed to `cancel_order` as `reason` (e.g. "too slow").
                status: Passed to `list_orders` as `status` (e.g. "pending").

            Returns:
                The result of `cancel_order`.
            \"\"\"
            customer = tools.find_customer(email=email)
            orders = tools.list_orders(customer_id=customer["customer_id"], status=status)
            return tools.cancel_order(order_id=orders["orders"][0]["order_id"], reason=reason)
        """
    )
    assert draft.id == "cancel_order_by_email"
    assert draft.tools == ("cancel_order", "find_customer", "list_orders")
    case = draft.cases[0]
    assert case.args == {"email": "ann@example.com", "status": "pending", "reason": "too slow"}
    assert case.result == {"order_id": "O-9", "status": "cancelled"}
    assert [c.tool for c in case.calls] == ["find_customer", "list_orders", "cancel_order"]
    assert 'list_orders(customer_id) <- find_customer result["customer_id"]' in draft.notes
    assert check_source(draft.source, tools=draft.tools, skill_id=draft.id) == []


def test_one_run_cannot_make_a_list_position_structure() -> None:
    # Which order it cancelled is that run's choice: the skill takes the order id, and the
    # listing it no longer needs goes (its call stays in the case, as a skippable read).
    draft = compile_trajectory(cancel_run("t1", "ann@example.com", "C-7", "O-9", "too slow"))
    # Named for its one command (never like the tool itself); the sentence names no instance.
    assert "def cancel_order_skill(order_id: str, reason: str)" in draft.source
    assert "Cancel the pending order of an email, reason: the given reason." in draft.source
    assert "return tools.cancel_order(order_id=order_id, reason=reason)" in draft.source
    assert draft.tools == ("cancel_order",)
    assert [c.tool for c in draft.cases[0].calls] == [
        "find_customer", "list_orders", "cancel_order",
    ]  # fmt: skip
    assert draft.notes == (
        'cancel_order(order_id) is the caller\'s: it also appears at list_orders result["orders"]'
        '[0]["order_id"], but one run cannot show it is read from there',
    )


def test_runs_that_took_the_same_element_do_not_make_its_position_structure() -> None:
    # Two runs, one order: agreeing on [0] says nothing when the value is the same.
    runs = [
        cancel_run("t1", "ann@example.com", "C-7", "O-9", "too slow"),
        cancel_run("t2", "ann@example.com", "C-7", "O-9", "wrong size"),
    ]
    draft = compile_group(runs)
    assert "order_id=order_id" in draft.source
    assert "runs that all used one value" in draft.notes[0]


def test_a_key_that_is_data_is_never_a_path_from_one_run() -> None:
    variants = {"1615379700": {"item_id": "1615379700", "color": "blue"}}
    t = traj(
        "Exchange my lamp for the blue one",
        ("get_product_details", {"product_id": "P-1"}, {"variants": variants}),
        ("exchange_item", {"new_item_id": "1615379700"}, {"ok": True}),
    )
    draft = compile_trajectory(t)
    assert "1615379700" not in draft.source.split('"""')[-1]  # not in the code
    assert "new_item_id=new_item_id" in draft.source
    assert bound_parts({"variants": variants}, ("variants", "1615379700", "item_id")) == [1]
    assert bound_parts({"a": {"status": {"x": 1}}}, ("a", "status", "x")) == []


def test_a_short_value_one_run_found_in_a_result_stays_the_callers() -> None:
    # Description length: `count` is one field, but 3 is shorter still; a long id is not.
    t = traj(
        "Restock it",
        ("check_stock", {"sku": "S-1"}, {"count": 3, "supplier": "acme-supplies-ltd"}),
        ("restock", {"quantity": 3, "supplier": "acme-supplies-ltd"}, {"ok": True}),
    )
    source = compile_trajectory(t).source
    assert "quantity=quantity" in source
    assert 'supplier=stock["supplier"]' in source


def test_values_typed_in_every_run_become_defaults_only_when_other_inputs_vary() -> None:
    def run(tid: str, email: str, status: str) -> Trajectory:
        return replace(
            traj(
                f"Show the {status} orders of {email}",
                ("list_orders", {"email": email, "status": status}, {"orders": []}),
            ),
            id=tid,
        )

    # Different customers, always "pending": the procedure's own value, a default.
    varied = compile_group([run("a", "ann@x.io", "pending"), run("b", "bob@x.io", "pending")])
    assert 'status: str = "pending"' in varied.source and "email: str," in varied.source
    # Every run about one customer: nothing the user typed becomes a default.
    same = compile_group([run("a", "ann@x.io", "pending"), run("b", "ann@x.io", "pending")])
    assert "email: str, status: str" in same.source and "=" not in same.source.split(")")[0]


def test_value_written_in_the_task_is_a_parameter_not_data_flow() -> None:
    t = traj(
        "Cancel order O-9",
        ("list_orders", {"customer_id": "C-1"}, {"orders": [{"order_id": "O-9"}]}),
        ("cancel_order", {"order_id": "O-9"}, {"ok": True}),
    )
    source = compile_trajectory(t).source
    assert "tools.cancel_order(order_id=order_id)" in source
    # The listing fed nothing the procedure did, so it is not part of it.
    assert "list_orders" not in source.split('"""')[-1] and "customer_id" not in source


def test_nested_argument_mixes_data_flow_and_parameters() -> None:
    def run(tid: str, sku: str, qty: int) -> Trajectory:
        return replace(
            traj(
                f"Buy {qty} of the cheapest mug",
                ("search", {"q": "mug"}, {"hits": [{"sku": sku, "price": 9.5}]}),
                (
                    "buy",
                    {"items": [{"sku": sku, "qty": qty}], "gift": False, "note": None},
                    {"id": "B-1"},
                ),
            ),
            id=tid,
        )

    source = compile_group([run("a", "SKU-1", 2), run("b", "SKU-2", 3)]).source
    # Without a tool schema, keyword arguments are written in name order.
    expected = 'gift=gift, items=[{"sku": search["hits"][0]["sku"], "qty": qty}], note=None)'
    assert f"return tools.buy({expected}" in source
    sig = read_signature(source)
    assert [(p.name, p.annotation, p.default) for p in sig.params] == [
        ("qty", "int", None),
        ("q", "str", '"mug"'),
        ("gift", "bool", "False"),
    ]
    assert "note=None" in source


def test_same_value_same_name_is_one_parameter_and_collisions_are_suffixed() -> None:
    t = traj(
        "copy a to b",
        ("read", {"path": "a"}, {"text": "hello"}),
        ("write", {"path": "b", "text": "hello"}, {"ok": True}),
        ("read", {"path": "b"}, {"text": "hello"}),
    )
    sig = read_signature(compile_trajectory(t).source)
    assert [p.name for p in sig.params] == ["path", "write_path"]


def test_schema_types_annotate_parameters() -> None:
    spec = ToolSpec(
        "pay", parameters={"type": "object", "properties": {"amount": {"type": "number"}}}
    )
    t = Trajectory(
        "t", "pay 3", (spec,), (Step("pay", {"amount": 3}, {"ok": True}),), Outcome(True)
    )
    assert "amount: float" in compile_trajectory(t).source


def test_failed_steps_are_left_out_and_failures_refused() -> None:
    t = Trajectory(
        "t",
        "look up x",
        (),
        (Step("get", {"k": "x"}, None, "timeout"), Step("get", {"k": "x"}, {"v": 1})),
        Outcome(True),
    )
    draft = compile_trajectory(t)
    assert len(draft.cases[0].calls) == 1 and draft.id == "get_skill"
    with pytest.raises(CompileError, match="did not succeed"):
        compile_trajectory(traj("x", ("get", {}, 1), success=False))
    with pytest.raises(CompileError, match="no successful tool call"):
        compile_trajectory(Trajectory("t", "x", (), (), Outcome(True)))
    with pytest.raises(CompileError, match="no JSON literal|finite"):
        compile_trajectory(traj("x", ("get", {"v": float("nan")}, 1)))


def test_names() -> None:
    assert skill_id_for(["a", "a", "b"]) == "a_b"
    assert skill_id_for(["get"]) == "get_skill"
    # Commands of one namespace say it once; a name is never cut down to nothing.
    git = ["git_create_branch", "git_checkout", "git_add", "git_commit"]
    assert skill_id_for(git) == "git_create_branch_checkout_add_commit"
    flights = ["update_reservation_flights", "update_reservation_passengers"]
    assert skill_id_for(flights) == "update_reservation_flights_passengers"
    assert skill_id_for(["add_contact", "send_message"]) == "add_contact_send_message"
    assert len(skill_id_for([f"tool_number_{i}" for i in range(9)])) <= 64
    assert identifier("class") == "class_"
    assert identifier("tools") == "tools_"
    assert identifier("2fa code") == "v_2fa_code"
    assert identifier("x", {"x", "x_2"}) == "x_3"


def test_dataflow_rules() -> None:
    assert find_origin("C-7", [{"a": {"b": ["C-7"]}}], "task").path == ("a", "b", 0)
    assert find_origin(True, [{"a": True}], "task") is None  # trivial values never flow
    assert find_origin(1, [{"a": 1.0}], "task") is None  # types must match too
    late = find_origin("x1", [{"a": "x1"}, {"deep": {"a": "x1"}}, {"b": 2}], "t")
    assert late.step == 1 and late.alternatives == ((0, ("a",)),)
    assert mentioned_in(3, "order 3 mugs") and not mentioned_in(3, "order 13 mugs")
    assert not mentioned_in(3, "version 3.5") and mentioned_in(2.0, "pay 2 now")


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(JSON_VALUES)
def test_literal_round_trips_any_json_value(value: Any) -> None:
    assert ast.literal_eval(literal(value)) == value


STEP = st.tuples(
    st.sampled_from(["get_a", "get_b", "put_c"]),
    st.dictionaries(
        st.sampled_from(["id", "name", "n", "class", "tools"]), JSON_VALUES, max_size=3
    ),
    JSON_VALUES,
)


@given(st.text(max_size=40), st.lists(STEP, min_size=1, max_size=5))
def test_any_successful_trajectory_compiles_to_valid_deterministic_source(
    task: str, steps: list[tuple[str, dict[str, Any], Any]]
) -> None:
    t = traj(task, *steps)
    first, second = compile_trajectory(t), compile_trajectory(t)
    assert first.source == second.source  # byte for byte
    assert check_source(first.source, tools=first.tools, skill_id=first.id) == []
    sig = read_signature(first.source)
    assert set(first.cases[0].args) == {p.name for p in sig.params}


def test_compiled_source_does_not_depend_on_the_hash_seed(tmp_path: Any) -> None:
    import subprocess
    import sys

    script = (
        "from skillbank import load_trajectories, compile_trajectory\n"
        "from tests.conftest import EXAMPLE_TRAJECTORIES\n"
        "ts = load_trajectories(EXAMPLE_TRAJECTORIES)\n"
        "print(''.join(compile_trajectory(t).source for t in ts))\n"
    )
    outputs = set()
    for seed in ("1", "2", "12345"):
        env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True,
            cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent),
        )  # fmt: skip
        outputs.add(proc.stdout)
    assert len(outputs) == 1


@given(st.text(max_size=40), st.lists(STEP, min_size=1, max_size=5))
def test_anti_unifying_a_trajectory_with_itself_gives_its_straight_line_skill(
    task: str, steps: list[tuple[str, dict[str, Any], Any]]
) -> None:
    from dataclasses import replace

    from skillbank.compiler import compile_group

    t = traj(task, *steps)
    alone = compile_trajectory(t)
    assert compile_group([t, replace(t, id="t0-copy")], name=alone.id).source == alone.source


def _run(tid: str, email: str, customer: str, orders: list[str], reason: str) -> Trajectory:
    steps: list[tuple[str, dict[str, Any], Any]] = [
        ("find_customer", {"email": email}, {"customer_id": customer}),
        ("list_orders", {"customer_id": customer}, {"orders": [{"order_id": o} for o in orders]}),
    ]
    steps += [("cancel_order", {"order_id": o, "reason": reason}, {"cancelled": o}) for o in orders]
    t = traj(f"Cancel every order of {email} because {reason}", *steps)
    return Trajectory(tid, t.task, t.tools, t.steps, t.outcome)


RUNS = st.lists(
    st.tuples(
        st.sampled_from(["ann@x.io", "bob@x.io", "cy@x.io"]),
        st.integers(1, 4),
        st.sampled_from(["late", "damaged"]),
    ),
    min_size=1,
    max_size=4,
)


@given(RUNS, st.randoms(use_true_random=False))
def test_learning_is_order_independent_and_loops_over_the_listed_items(
    runs: list[tuple[str, int, str]], rnd: Any
) -> None:
    from skillbank.compiler import compile_group

    trajectories = [
        _run(f"r{n}", email, f"C-{n}", [f"O-{n}{k}" for k in range(count)], reason)
        for n, (email, count, reason) in enumerate(runs)
    ]
    first = compile_group(trajectories)
    shuffled = list(trajectories)
    rnd.shuffle(shuffled)
    assert compile_group(shuffled).source == first.source
    assert check_source(first.source, tools=first.tools, skill_id=first.id) == []
    if any(count > 1 for _, count, _ in runs):
        assert 'for order in orders["orders"]:' in first.source
    for case, t in zip(
        first.cases, sorted(trajectories, key=lambda t: (t.id, t.sha256)), strict=True
    ):
        assert [c.tool for c in case.calls] == [s.tool for s in t.steps]


#: The end of the skill compiled from runs that picked the first pending order: the selection
#: is a statement of its own, and a list without such an entry raises the declared LookupError.
PICKED_BY_KEY = """\
    Raises:
        LookupError: If no entry of the list_orders result["orders"] has ["status"] == "pending".
    \"\"\"
    customer = tools.find_customer(email=email)
    orders = tools.list_orders(customer_id=customer["customer_id"])
    pending_order = next(
        (entry for entry in orders["orders"] if entry["status"] == "pending"), None
    )
    if pending_order is None:
        raise LookupError(
            'no entry of the list_orders result["orders"] has ["status"] == "pending"'
        )
    return tools.cancel_order(order_id=pending_order["order_id"])
"""


def test_an_element_picked_by_key_at_different_positions_becomes_a_selection() -> None:
    from skillbank.compiler import compile_group

    def run(tid: str, email: str, orders: list[dict[str, str]], picked: str) -> Trajectory:
        t = traj(
            f"Cancel the pending order of {email}",
            ("find_customer", {"email": email}, {"customer_id": f"C-{tid}"}),
            ("list_orders", {"customer_id": f"C-{tid}"}, {"orders": orders}),
            ("cancel_order", {"order_id": picked}, {"cancelled": picked}),
        )
        return Trajectory(tid, t.task, t.tools, t.steps, t.outcome)

    a = run("1", "a@x.io", [{"order_id": "O-1", "status": "shipped"},
                            {"order_id": "O-2", "status": "pending"}], "O-2")  # fmt: skip
    b = run("2", "b@x.io", [{"order_id": "O-7", "status": "pending"},
                            {"order_id": "O-8", "status": "pending"}], "O-7")  # fmt: skip
    draft = compile_group([a, b])
    body = draft.source[draft.source.index("    Raises:") :]
    assert body == PICKED_BY_KEY, draft.source
    assert check_source(draft.source, tools=draft.tools, skill_id=draft.id) == []
    assert any("pending" in n for n in draft.notes)


def _stock_run(tid: str, sku: str, available: int, restocked: bool) -> Trajectory:
    steps: list[tuple[str, dict[str, Any], Any]] = [
        ("check_stock", {"sku": sku}, {"sku": sku, "available": available})
    ]
    if restocked:
        steps.append(("restock", {"sku": sku, "quantity": 10}, {"sku": sku, "available": 10}))
    t = traj(f"Make sure {sku} is in stock", *steps)
    return Trajectory(tid, t.task, t.tools, t.steps, t.outcome)


def test_steps_only_some_runs_made_branch_on_the_result_field_that_differs() -> None:
    from skillbank.compiler import compile_group

    runs = [
        _stock_run("a", "SKU-1", 0, True),
        _stock_run("b", "SKU-2", 5, False),
        _stock_run("c", "SKU-3", 0, True),
        _stock_run("d", "SKU-4", 3, False),
    ]
    draft = compile_group(runs)
    body = draft.source.split('"""')[-1]
    assert body == (
        "\n"
        "    stock = tools.check_stock(sku=sku)\n"
        '    if stock["available"] == 0:\n'
        "        return tools.restock(quantity=quantity, sku=sku)\n"
        "    return stock\n"
    )
    assert check_source(draft.source, tools=draft.tools, skill_id=draft.id) == []
    assert [c.result for c in draft.cases][:2] == [
        {"sku": "SKU-1", "available": 10},
        {"sku": "SKU-2", "available": 5},
    ]


def test_steps_no_result_explains_become_a_flag() -> None:
    from skillbank.compiler import compile_group

    def run(tid: str, sku: str, notify: bool) -> Trajectory:
        steps: list[tuple[str, dict[str, Any], Any]] = [("check_stock", {"sku": sku}, {"n": 1})]
        if notify:
            steps.append(("notify", {"sku": sku}, {"ok": True}))
        steps.append(("log", {"sku": sku}, {"logged": True}))
        t = traj(f"check {sku}", *steps)
        return Trajectory(tid, t.task, t.tools, t.steps, t.outcome)

    draft = compile_group([run("a", "S1", True), run("b", "S2", False)])
    assert "if do_notify:\n        tools.notify(sku=sku)\n" in draft.source
    assert [c.args["do_notify"] for c in draft.cases] == [True, False]


def _t(tid: str, task: str, *steps: tuple[str, dict[str, Any], Any]) -> Trajectory:
    t = traj(task, *steps)
    return Trajectory(tid, t.task, t.tools, t.steps, t.outcome)


def test_data_flow_after_a_loop_reads_the_right_call() -> None:
    from skillbank.compiler import compile_group

    def run(tid: str, n: int) -> Trajectory:
        orders = [{"order_id": f"O-{tid}{i}"} for i in range(n)]
        steps: list[tuple[str, dict[str, Any], Any]] = [
            (
                "find_customer",
                {"email": f"{tid}@x.io"},
                {"customer_id": f"C-{tid}", "orders": orders},
            )
        ]
        steps += [("cancel_order", {"order_id": o["order_id"]}, {"ok": True}) for o in orders]
        steps.append(("get_profile", {"customer_id": f"C-{tid}"}, {"address_id": f"A-{tid}"}))
        steps.append(("send_letter", {"address_id": f"A-{tid}"}, {"sent": True}))
        return _t(tid, f"Cancel all orders of {tid}@x.io and write", *steps)

    source = compile_group([run("a", 1), run("b", 2), run("c", 3)]).source
    assert 'tools.send_letter(address_id=profile["address_id"])' in source


def test_loop_columns_stay_apart_and_walks_fall_back_to_a_list_parameter() -> None:
    from skillbank.compiler import compile_group

    def pairs(tid: str, n: int) -> Trajectory:
        steps: list[tuple[str, dict[str, Any], Any]] = []
        for i in range(n):
            steps += [
                ("get", {"id": f"x{tid}{i}"}, {"v": i}),
                ("put", {"id": f"y{tid}{i}"}, {"ok": 1}),
            ]
        return _t(tid, "copy", *steps)

    draft = compile_group([pairs("a", 2), pairs("b", 3)])
    assert 'tools.get(id=item["get_id"])' in draft.source
    assert 'tools.put(id=item["put_id"])' in draft.source

    def reasons(tid: str, why: list[str]) -> Trajectory:
        orders = [{"order_id": f"O-{tid}{i}"} for i in range(len(why))]
        steps: list[tuple[str, dict[str, Any], Any]] = [
            ("list_orders", {"customer_id": f"C-{tid}"}, {"orders": orders})
        ]
        steps += [("cancel_order", {"order_id": o["order_id"], "reason": w}, {"ok": 1})
                  for o, w in zip(orders, why, strict=True)]  # fmt: skip
        return _t(tid, "cancel each with its reason", *steps)

    draft = compile_group([reasons("a", ["late", "lost"]), reasons("b", ["broken"])])
    assert 'tools.cancel_order(order_id=item["order_id"], reason=item["reason"])' in draft.source
    assert check_source(draft.source, tools=draft.tools, skill_id=draft.id) == []


def test_calls_in_one_conditional_read_each_other() -> None:
    from skillbank.compiler import compile_group

    def run(tid: str, available: int) -> Trajectory:
        steps: list[tuple[str, dict[str, Any], Any]] = [
            ("check", {"sku": f"S{tid}"}, {"available": available, "loc": f"L{tid}"})
        ]
        if available == 0:
            steps += [
                ("restock", {"sku": f"S{tid}"}, {"restock_id": f"R{tid}"}),
                ("confirm", {"restock_id": f"R{tid}"}, {"ok": True}),
            ]
        steps.append(("ship", {"loc": f"L{tid}"}, {"shipped": True}))
        return _t(tid, f"ship S{tid}", *steps)

    source = compile_group([run("a", 0), run("b", 2), run("c", 0), run("d", 5)]).source
    assert (
        '    if check["available"] == 0:\n'
        "        restock = tools.restock(sku=sku)\n"
        '        tools.confirm(restock_id=restock["restock_id"])\n'
        '    return tools.ship(loc=check["loc"])\n'
    ) in source


def test_runs_that_agree_on_a_path_read_it_even_for_short_values() -> None:
    # Four reorders of what an order held: small quantities, some repeated, always found at
    # the same place. Stating the path once is shorter than asking for each run's quantity.
    def run(tid: str, order: str, quantity: int) -> Trajectory:
        held = {"order_id": order, "items": [{"sku": "S-1", "quantity": quantity}]}
        return replace(
            traj(
                f"Reorder what {order} held",
                ("get_order", {"order_id": order}, held),
                ("place_order", {"sku": "S-1", "quantity": quantity}, {"ok": True}),
            ),
            id=tid,
        )

    runs = [run("a", "O-A", 3), run("b", "O-B", 1), run("c", "O-C", 1), run("d", "O-D", 4)]
    source = compile_group(runs).source
    assert 'quantity=order["items"][0]["quantity"]' in source
    # Two runs with one value each say less than the values themselves.
    assert "quantity=quantity" in compile_group(runs[1:3]).source


def test_a_docstring_is_a_plain_sentence_about_any_instance() -> None:
    from skillbank.compiler.emit import plain_sentence

    said = plain_sentence(
        "Cancel order O-9 of ann@x.io", [("order_id", "O-9")], [("email", "ann@x.io")]
    )
    assert said == "Cancel order the given order id of an email"
    # A list parameter's elements written in the task are one mention of it.
    said = plain_sentence(
        "Create branch feat-x and commit a.txt, b.txt and c.txt on it",
        [("branch_name", "feat-x"), ("files", ["a.txt", "b.txt", "c.txt"])],
    )
    assert said == "Create branch the given branch name and commit the given files on it"
