"""Slicing: runs cut down to what they changed and what that depended on."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from skillbank.compiler.effects import classify_tools
from skillbank.compiler.slicing import skeleton_key, slice_run
from skillbank.trajectory import Outcome, Step, Trajectory


def run(task: str, *steps: Step) -> Trajectory:
    return Trajectory("t", task, (), tuple(steps), Outcome(True))


def effects_of(*runs: Trajectory) -> dict[str, Any]:
    names = {s.tool for r in runs for s in r.steps}
    return classify_tools(names, {})


def customer(email: str, cid: str) -> Step:
    return Step("find_customer", {"email": email}, {"customer_id": cid, "email": email})


def orders(cid: str, *ids: str) -> Step:
    listed = [{"order_id": o, "status": "pending"} for o in ids]
    return Step("list_orders", {"customer_id": cid}, {"orders": listed})


def order(oid: str, sku: str) -> Step:
    return Step("get_order", {"order_id": oid}, {"order_id": oid, "items": [{"sku": sku}]})


def cancel(oid: str) -> Step:
    return Step("cancel_order", {"order_id": oid}, {"order_id": oid, "status": "cancelled"})


def test_reads_nothing_used_are_dropped_and_the_procedure_keeps_its_sources() -> None:
    # A look at a product and a second customer before the right order: both go.
    explored = run(
        "Cancel the order with the mug for ann@x.io",
        customer("ann@x.io", "C-1"),
        Step("search_products", {"query": "mug"}, {"products": [{"sku": "MUG"}]}),
        orders("C-1", "O-2"),
        customer("bob@x.io", "C-7"),
        order("O-2", "MUG"),
        cancel("O-2"),
    )
    direct = run(
        "Cancel the order with the mug for bob@x.io",
        customer("bob@x.io", "C-7"),
        orders("C-7", "O-9"),
        order("O-9", "MUG"),
        cancel("O-9"),
    )
    effects = effects_of(explored, direct)
    cut = slice_run(explored, effects)
    assert [s.tool for s in cut.steps] == [
        "find_customer",
        "list_orders",
        "get_order",
        "cancel_order",
    ]
    assert cut.dropped == (1, 3)
    assert cut.sources[0] == {"email": None}  # typed by the user
    # The id came from the listing; get_order was given it and only echoes it (it stays as
    # the read of the very order the cancellation acts on).
    assert cut.sources[3] == {"order_id": 2}
    assert skeleton_key(cut, effects) == skeleton_key(slice_run(direct, effects), effects)
    assert skeleton_key(cut, effects) == '[["cancel_order(order_id<-list_orders)"]]'


def test_the_candidates_a_search_read_before_its_element_stay_in_list_order() -> None:
    # The agent read the listed orders one by one until one held the mug: that is a search,
    # and its reads stay, in the order of the list (not of their ids), whatever else it read.
    searched = run(
        "Cancel the order with the mug for ann@x.io",
        customer("ann@x.io", "C-1"),
        orders("C-1", "O-10", "O-9", "O-11"),
        order("O-10", "LAMP"),
        order("O-9", "PEN"),
        order("O-11", "MUG"),
        cancel("O-11"),
    )
    cut = slice_run(searched, effects_of(searched))
    assert cut.dropped == ()
    assert [dict(s.arguments) for s in cut.steps[2:5]] == [
        {"order_id": "O-10"},
        {"order_id": "O-9"},
        {"order_id": "O-11"},
    ]
    # Reads that skip an element of the list are not a search: only the one used stays.
    skipped = run(
        "Cancel the order with the mug for ann@x.io",
        customer("ann@x.io", "C-1"),
        orders("C-1", "O-10", "O-9", "O-11"),
        order("O-9", "PEN"),
        order("O-11", "MUG"),
        cancel("O-11"),
    )
    assert slice_run(skipped, effects_of(skipped)).dropped == (2,)


def test_a_read_only_run_keeps_its_answer_and_what_it_needed() -> None:
    lookup = run(
        "Which orders has ann@x.io placed?",
        customer("ann@x.io", "C-1"),
        Step("search_products", {"query": "mug"}, {"products": []}),
        orders("C-1", "O-1"),
    )
    effects = effects_of(lookup)
    cut = slice_run(lookup, effects)
    assert [s.tool for s in cut.steps] == ["find_customer", "list_orders"]
    assert skeleton_key(cut, effects) == '[["list_orders(customer_id<-find_customer)"]]'


def test_every_command_is_kept_and_repeats_fold() -> None:
    many = run(
        "Cancel O-1 and O-2",
        cancel("O-1"),
        Step("get_order", {"order_id": "O-3"}, {"order_id": "O-3"}),
        cancel("O-2"),
    )
    one = run("Cancel O-5", cancel("O-5"))
    effects = effects_of(many, one)
    cut = slice_run(many, effects)
    assert [s.tool for s in cut.steps] == ["cancel_order", "cancel_order"]
    assert skeleton_key(cut, effects) == skeleton_key(slice_run(one, effects), effects)


def test_failed_calls_are_never_part_of_the_slice() -> None:
    retried = run(
        "Cancel O-1",
        Step("cancel_order", {"order_id": "O1"}, None, error="no such order"),
        cancel("O-1"),
    )
    cut = slice_run(retried, effects_of(retried))
    assert [s.arguments for s in cut.steps] == [{"order_id": "O-1"}]


# --- properties ----------------------------------------------------------------------------

ids = st.from_regex(r"[A-Z]-[0-9]{3,6}", fullmatch=True)


@given(
    email=st.emails(),
    cid=ids,
    oid=ids,
    noise=st.lists(st.tuples(st.sampled_from(["get_weather", "list_news"]), ids), max_size=3),
    at=st.integers(min_value=0, max_value=3),
)
def test_adding_a_query_nothing_uses_never_changes_the_slice(
    email: str, cid: str, oid: str, noise: list[tuple[str, str]], at: int
) -> None:
    base = [customer(email, cid), orders(cid, oid), cancel(oid)]
    taken = {email, cid, oid}
    extra = [
        Step(tool, {"q": f"n{n}"}, {"value": f"zz{value}{n}"})
        for n, (tool, value) in enumerate(noise)
        if value not in taken
    ]
    steps = [*base[:at], *extra, *base[at:]]  # before any call, or after the command
    plain = run(f"Cancel the pending order of {email}", *base)
    noisy = run(f"Cancel the pending order of {email}", *steps)
    effects = effects_of(plain, noisy)
    assert slice_run(noisy, effects).steps == slice_run(plain, effects).steps
    assert skeleton_key(slice_run(noisy, effects), effects) == skeleton_key(
        slice_run(plain, effects), effects
    )


@given(a=st.tuples(st.emails(), ids, ids), b=st.tuples(st.emails(), ids, ids))
def test_renaming_the_entities_never_changes_the_skeleton(
    a: tuple[str, str, str], b: tuple[str, str, str]
) -> None:
    def made(email: str, cid: str, oid: str) -> Trajectory:
        return run(f"Cancel the order of {email}", customer(email, cid), orders(cid, oid),
                   cancel(oid))  # fmt: skip

    if len(set(a)) < 3 or len(set(b)) < 3 or any(x in e for e, *rest in (a, b) for x in rest):
        return  # one value for two entities, or an id the user typed: another procedure
    one, two = made(*a), made(*b)
    effects = effects_of(one, two)
    assert skeleton_key(slice_run(one, effects), effects) == skeleton_key(
        slice_run(two, effects), effects
    )


# --- in learning and recognition ------------------------------------------------------------


def _cancel_run(tid: str, email: str, cid: str, oid: str, *, look: bool) -> Trajectory:
    steps = [customer(email, cid)]
    if look:  # the agent looked at products first: nothing later uses it
        steps.append(Step("search_products", {"query": "tea"}, {"products": [{"sku": "S-T"}]}))
    steps += [orders(cid, oid), cancel(oid)]
    return Trajectory(tid, f"Cancel the pending order of {email}", (), tuple(steps),
                      Outcome(True))  # fmt: skip


def test_runs_that_read_more_join_one_skill_which_covers_a_run_that_reads_more_still(
    tmp_path: Any,
) -> None:
    from skillbank import SkillBank

    runs = [
        _cancel_run("a", "ann@x.io", "C-1", "O-1", look=True),
        _cancel_run("b", "bob@x.io", "C-2", "O-2", look=False),
        _cancel_run("c", "cy@x.io", "C-3", "O-3", look=True),
    ]
    with SkillBank.init(tmp_path / "bank") as bank:
        report = bank.learn(runs)
        (sid,) = report.added
        skill = bank.get(sid)
        assert "search_products" not in skill.tools and len(skill.cases) == 3
        assert [c.tool for c in skill.cases[0].calls] == [
            "find_customer", "list_orders", "cancel_order",
        ]  # fmt: skip
        assert bank.learn(runs).commit is None  # known runs, by their recorded hashes
        plan = bank.match(_cancel_run("d", "dee@x.io", "C-4", "O-4", look=True))
        assert [(s.kind, s.name, s.covers) for s in plan.steps] == [("skill", sid, (0, 4))]
        # A read before the skill's first call, and one after its command, are its too.
        first = _cancel_run("e", "eve@x.io", "C-5", "O-5", look=False)
        looked = Step("search_products", {"query": "mug"}, {"products": []})
        checked = Step("get_order", {"order_id": "O-5"}, {"order_id": "O-5"})
        around = replace(first, steps=(looked, *first.steps, checked))
        plan = bank.match(around)
        assert [(s.kind, s.name, s.covers) for s in plan.steps] == [("skill", sid, (0, 5))]


def test_reads_between_commands_take_one_order_whatever_order_the_run_made_them() -> None:
    # The customer and the product are looked up in either order; the procedure is the same.
    search = Step("search_products", {"query": "mug"}, {"products": [{"sku": "S-1"}]})
    stock = Step("check_stock", {"sku": "S-1"}, {"sku": "S-1", "available": 3})
    who = customer("ann@x.io", "C-1")
    buy = Step("place_order", {"customer_id": "C-1", "sku": "S-1"}, {"order_id": "O-1"})
    task = "Order a mug for ann@x.io"
    first = run(task, who, search, stock, buy)
    second = run(task, search, who, stock, buy)
    effects = effects_of(first)
    a, b = slice_run(first, effects), slice_run(second, effects)
    assert [s.tool for s in a.steps] == [s.tool for s in b.steps]
    assert [s.tool for s in a.steps] == [
        "find_customer", "search_products", "check_stock", "place_order",
    ]  # fmt: skip


def test_a_result_that_echoes_its_argument_is_not_where_the_value_came_from() -> None:
    # The agent looked at the customer's orders after finding the customer; the listing
    # repeats the customer id it was asked for. The order is placed for the customer found.
    buy = Step("place_order", {"customer_id": "C-1", "sku": "S-1"}, {"order_id": "O-1"})
    looked = run("Order S-1 for ann@x.io", customer("ann@x.io", "C-1"), orders("C-1", "O-7"), buy)
    plain = run("Order S-1 for bob@x.io", customer("bob@x.io", "C-2"), replace(buy, arguments={
        "customer_id": "C-2", "sku": "S-1"}))  # fmt: skip
    effects = effects_of(looked)
    cut = slice_run(looked, effects)
    assert cut.sources[-1] == {"customer_id": 0, "sku": None}
    assert skeleton_key(cut, effects) == skeleton_key(slice_run(plain, effects), effects)


def delivered(cid: str, oid: str) -> Step:
    listed = [{"order_id": oid, "status": "delivered"}]
    return Step("list_orders", {"customer_id": cid, "status": "delivered"}, {"orders": listed})


def item(oid: str, sku: str, quantity: int) -> Step:
    items = [{"sku": sku, "quantity": quantity}]
    return Step(
        "get_order", {"order_id": oid}, {"order_id": oid, "status": "delivered", "items": items}
    )


def reorder(cid: str, sku: str, quantity: int) -> Step:
    args = {"customer_id": cid, "sku": sku, "quantity": quantity}
    return Step("place_order", args, {"order_id": "O-99", **args})


def test_a_stray_record_sharing_a_status_or_a_count_is_not_a_source() -> None:
    # The agent first read someone else's delivered order, which also holds "delivered" and
    # a quantity of 1. The status was the agent's own before any result showed it, and the
    # quantity comes from the item that also gave the sku: the stray reads are dropped.
    strayed = run(
        "Order ann@x.io's last delivered item again",
        customer("ann@x.io", "C-1"),
        delivered("C-5", "O-50"),
        item("O-50", "LAMP", 1),
        delivered("C-1", "O-10"),
        item("O-10", "MUG", 1),
        reorder("C-1", "MUG", 1),
    )
    direct = run(
        "Order bob@x.io's last delivered item again",
        customer("bob@x.io", "C-2"),
        delivered("C-2", "O-20"),
        item("O-20", "PEN", 3),
        reorder("C-2", "PEN", 3),
    )
    effects = effects_of(strayed, direct)
    cut = slice_run(strayed, effects)
    assert cut.dropped == (1, 2)
    assert cut.sources[1] == {"customer_id": 0, "status": None}
    assert cut.sources[-1] == {"customer_id": 0, "quantity": 4, "sku": 4}
    assert skeleton_key(cut, effects) == skeleton_key(slice_run(direct, effects), effects)


@given(st.integers(min_value=1, max_value=5), st.sampled_from(["delivered", "pending"]))
def test_a_value_used_before_any_result_held_it_stays_input(count: int, status: str) -> None:
    # Whatever later results happen to repeat it, a value the agent typed first is input.
    listed = [{"order_id": "O-1", "status": status, "count": count}]
    first = Step("list_orders", {"customer_id": "C-1", "status": status}, {"orders": listed})
    again = Step("count_orders", {"status": status, "count": count}, {"n": count})
    cut = slice_run(run("t", first, again), effects_of(run("t", first, again)))
    assert cut.sources[-1]["status"] is None
