"""Alternative query paths: runs of one procedure that read a command's argument by different
queries (the customer found by email in some runs, by name and zip in others) learn one skill
whose optional inputs choose the read (#12, item 5)."""

from __future__ import annotations

import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillbank import Outcome, SkillBank, Step, Trajectory
from skillbank.compiler import compile_group
from skillbank.compiler.effects import classify_tools
from skillbank.compiler.grouping import group_procedures
from skillbank.compiler.slicing import skeleton_key, slice_run
from skillbank.errors import CompileError
from skillbank.proving import prove_skill


def by_email(tid: str, email: str, cid: str, street: str) -> Trajectory:
    """Find the customer by email, change their address."""
    return Trajectory(
        tid,
        f"Move {email} to {street}",
        (),
        (
            Step("find_customer_by_email", {"email": email}, {"customer_id": cid, "email": email}),
            Step(
                "update_address",
                {"customer_id": cid, "street": street},
                {"customer_id": cid, "street": street},
            ),
        ),
        Outcome(True),
    )


def by_name(tid: str, name: str, zip_code: str, cid: str, street: str) -> Trajectory:
    """Find the customer by name and zip, change their address."""
    found = {"customer_id": cid, "name": name, "zip": zip_code}
    return Trajectory(
        tid,
        f"Move {name} ({zip_code}) to {street}",
        (),
        (
            Step("find_customer_by_name_zip", {"name": name, "zip": zip_code}, found),
            Step(
                "update_address",
                {"customer_id": cid, "street": street},
                {"customer_id": cid, "street": street},
            ),
        ),
        Outcome(True),
    )


def runs(tag: str = "") -> list[Trajectory]:
    """Two runs of each alternative; ``tag`` renames every entity."""
    t = tag
    return [
        by_email("a", f"ann{t}@x.io", f"C-1{t}", f"1 Main St{t}"),
        by_email("b", f"bob{t}@x.io", f"C-2{t}", f"2 Elm St{t}"),
        by_name("c", f"Cy Young{t}", f"02139{t}", f"C-3{t}", f"3 Oak St{t}"),
        by_name("d", f"Di Ross{t}", f"10001{t}", f"C-4{t}", f"4 Pine St{t}"),
    ]


BODY = textwrap.dedent(
    """\
        if email is not None:
            customer = tools.find_customer_by_email(email=email)
        elif name is not None and zip_ is not None:
            customer = tools.find_customer_by_name_zip(name=name, zip=zip_)
        else:
            raise ValueError('give email, or name and zip_')
        return tools.update_address(customer_id=customer["customer_id"], street=street)
    """
)


def body(source: str) -> str:
    return source.split('"""')[-1].lstrip("\n")


def test_both_alternatives_compile_into_one_choice() -> None:
    draft = compile_group(runs())
    assert body(draft.source) == textwrap.indent(BODY, "    ")
    assert "    street: str,\n    email: str | None = None,\n" in draft.source
    assert "    name: str | None = None,\n    zip_: str | None = None,\n" in draft.source
    assert "ValueError: If the caller gives none of: email; name and zip_." in draft.source
    # A case holds only the inputs its run gave.
    assert [sorted(c.args) for c in draft.cases] == [
        ["email", "street"],
        ["email", "street"],
        ["name", "street", "zip_"],
        ["name", "street", "zip_"],
    ]


def test_the_order_of_the_runs_never_changes_the_choice() -> None:
    assert compile_group(runs()).source == compile_group(runs()[::-1]).source


def test_a_skeleton_modulo_queries_names_no_source_query() -> None:
    effects = classify_tools({"find_customer_by_email", "find_customer_by_name_zip",
                              "update_address"}, {})  # fmt: skip
    email, name = (slice_run(r, effects) for r in runs()[1:3])
    assert skeleton_key(email, effects) != skeleton_key(name, effects)
    assert skeleton_key(email, effects, any_query=True) == skeleton_key(
        name, effects, any_query=True
    )
    assert "<query>" in skeleton_key(email, effects, any_query=True)


def test_a_command_as_the_source_is_never_an_alternative() -> None:
    # The customer id came from a command (a customer created) in one run and from a query
    # in the other: those are different procedures.
    created = Trajectory(
        "e",
        "Add Eve and move her to 5 Bay St",
        (),
        (
            Step("create_customer", {"name": "Eve"}, {"customer_id": "C-5"}),
            Step("update_address", {"customer_id": "C-5", "street": "5 Bay St"}, {"ok": True}),
        ),
        Outcome(True),
    )
    found = runs()[0]
    effects = classify_tools({"create_customer", "find_customer_by_email", "update_address"}, {})
    keys = [skeleton_key(slice_run(r, effects), effects, any_query=True) for r in (created, found)]
    assert keys[0] != keys[1]
    groups = group_procedures(
        [created, found], [0, 1], {},
        {i: skeleton_key(slice_run(r, effects), effects) for i, r in enumerate([created, found])},
        dict(enumerate(keys)),
    )  # fmt: skip
    assert len(groups) == 2


def test_grouping_joins_the_alternatives_as_parts_of_one_procedure() -> None:
    given_runs = runs()
    effects = classify_tools({s.tool for r in given_runs for s in r.steps}, {})
    cuts = [slice_run(r, effects) for r in given_runs]
    groups = group_procedures(
        given_runs, range(4), {},
        {i: skeleton_key(c, effects) for i, c in enumerate(cuts)},
        {i: skeleton_key(c, effects, any_query=True) for i, c in enumerate(cuts)},
    )  # fmt: skip
    assert len(groups) == 1
    assert sorted(groups[0].members) == [0, 1, 2, 3]
    assert groups[0].merged  # a failed merge is learned pattern by pattern


def test_reads_the_caller_cannot_choose_between_are_not_alternatives() -> None:
    # Both reads take an email: which one to make cannot depend on what the caller gives.
    other = [
        Trajectory(
            r.id + "2",
            r.task,
            (),
            (Step("lookup_customer", dict(r.steps[0].arguments), r.steps[0].result), r.steps[1]),
            Outcome(True),
        )
        for r in runs()[:2]
    ]
    with pytest.raises(CompileError, match="cannot be told apart"):
        compile_group([*runs()[:2], *other])


def test_learned_skill_matches_held_out_runs_of_each_alternative_in_one_call(
    tmp_path: Path,
) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        report = bank.learn(runs())
        (sid,) = report.added
        skill = bank.get(sid)
        assert body(skill.source) == textwrap.indent(BODY, "    ")
        proof = prove_skill(skill, bank.sandbox, max_examples=10)
        assert proof.ok, proof.failures()

        held = [
            (by_email("h1", "eve@x.io", "C-9", "9 Bay St"), {"email": "eve@x.io"}),
            (by_name("h2", "Flo Rida", "33101", "C-8", "8 Sea St"),
             {"name": "Flo Rida", "zip_": "33101"}),
        ]  # fmt: skip
        for run, inputs in held:
            plan = bank.match(run)
            assert [(s.kind, s.name, s.arguments) for s in plan.steps] == [
                ("skill", sid, {"street": run.steps[1].arguments["street"], **inputs})
            ]
            assert plan.steps[0].covers == (0, 2)
            # Executed against tools that answer like the run's: the same command is made.
            made: list[tuple[str, dict[str, Any]]] = []

            def update_address(made: list[Any] = made, **arguments: Any) -> Any:
                made.append(("update_address", arguments))
                return dict(arguments)

            found = run.steps[0].result
            tools = {
                "find_customer_by_email": lambda email, found=found: found,
                "find_customer_by_name_zip": lambda name, zip, found=found: found,
                "update_address": update_address,
            }
            done = bank.execute(plan, tools)
            assert done.ok, done.error
            assert made == [("update_address", dict(run.steps[1].arguments))]

        # Neither alternative given: the declared error, and no command is made.
        failed = bank.run(sid, {"street": "1 Main St"}, tools)
        assert not failed.ok and failed.error is not None
        assert "ValueError" in failed.error and "give email, or name and zip_" in failed.error


def test_runs_that_read_by_one_query_are_unchanged() -> None:
    draft = compile_group(runs()[:2])
    assert "| None" not in draft.source and "elif" not in draft.source
    assert body(draft.source) == (
        "    customer_by_email = tools.find_customer_by_email(email=email)\n"
        "    return tools.update_address("
        'customer_id=customer_by_email["customer_id"], street=street)\n'
    )


@settings(max_examples=10, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6))
def test_renaming_the_entities_never_changes_the_code(tag: str) -> None:
    assert body(compile_group(runs(tag)).source) == body(compile_group(runs()).source)


def test_renaming_the_entities_never_changes_the_learned_skill() -> None:
    sources = []
    for tag in ("", "x7"):
        with tempfile.TemporaryDirectory() as tmp, SkillBank.init(Path(tmp) / "bank") as bank:
            (sid,) = bank.learn(runs(tag)).added
            sources.append(body(bank.get(sid).source))
    assert sources[0] == sources[1]


def test_a_new_run_of_either_alternative_joins_the_learned_skill(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        (sid,) = bank.learn(runs()).added
        for run in (
            by_name("e", "Eve Arden", "94110", "C-5", "5 Bay St"),
            by_email("f", "fay@x.io", "C-6", "6 Sea St"),
        ):
            report = bank.learn([run], branch="current")
            assert report.added == [] and report.updated == [sid]
        skill = bank.get(sid)
        assert len(skill.cases) == 6
        assert body(skill.source) == textwrap.indent(BODY, "    ")


def test_runs_of_a_new_alternative_join_a_stored_skill(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        (sid,) = bank.learn(runs()[:2]).added
        assert "| None" not in bank.get(sid).source
        report = bank.learn(runs()[2:], branch="current")
        assert report.added == [] and report.updated == [sid]
        skill = bank.get(sid)
        assert len(skill.cases) == 4
        assert body(skill.source) == textwrap.indent(BODY, "    ")
        assert str(skill.version).startswith("2.")  # email is no longer required


def by_phone(tid: str, phone: str, cid: str, street: str) -> Trajectory:
    """Find the customer by phone, change their address."""
    return Trajectory(
        tid,
        f"Move the customer with phone {phone} to {street}",
        (),
        (
            Step("find_customer_by_phone", {"phone": phone}, {"customer_id": cid}),
            Step(
                "update_address",
                {"customer_id": cid, "street": street},
                {"customer_id": cid, "street": street},
            ),
        ),
        Outcome(True),
    )


def test_three_alternatives_are_one_chain_in_tool_name_order() -> None:
    three = [
        *runs(),
        by_phone("e", "555-0101", "C-7", "7 Ash St"),
        by_phone("f", "555-0199", "C-8", "8 Fir St"),
    ]
    source = compile_group(three).source
    assert source == compile_group(three[::-1]).source
    assert (
        "    elif phone is not None:\n"
        "        customer = tools.find_customer_by_phone(phone=phone)\n"
        "    else:\n"
        "        raise ValueError('give email, or name and zip_, or phone')\n"
    ) in source


def test_the_order_of_the_runs_never_changes_the_learned_skill(tmp_path: Path) -> None:
    sources = []
    for n, order in enumerate((runs(), runs()[::-1])):
        with SkillBank.init(tmp_path / f"bank{n}") as bank:
            (sid,) = bank.learn(order).added
            sources.append(bank.get(sid).source)
    assert sources[0] == sources[1]


def test_reads_that_hold_the_value_at_different_places_are_learned_apart(
    tmp_path: Path,
) -> None:
    # The name-and-zip read gives the id as "id": no one path is read in every run.
    other = [
        Trajectory(
            r.id,
            r.task,
            (),
            (replace(r.steps[0], result={"id": r.steps[1].arguments["customer_id"]}), r.steps[1]),
            Outcome(True),
        )
        for r in runs()[2:]
    ]
    with pytest.raises(CompileError, match="nothing reads what"):
        compile_group([*runs()[:2], *other])
    with SkillBank.init(tmp_path / "bank") as bank:
        report = bank.learn([*runs()[:2], *other])
        assert len(report.added) == 2 and not report.rejected


def by_lookup(tid: str, name: str, zip_code: str, cid: str, street: str) -> Trajectory:
    """Look the customer's id up by name and zip, read the customer, change their address."""
    return Trajectory(
        tid,
        f"Move {name} ({zip_code}) to {street}",
        (),
        (
            Step("lookup_customer_id", {"name": name, "zip": zip_code}, {"customer_id": cid}),
            Step("get_customer", {"customer_id": cid}, {"customer_id": cid, "name": name}),
            Step(
                "update_address",
                {"customer_id": cid, "street": street},
                {"customer_id": cid, "street": street},
            ),
        ),
        Outcome(True),
    )


LOOKUP_BODY = textwrap.dedent(
    """\
        if email is not None:
            customer = tools.find_customer_by_email(email=email)
        elif name is not None and zip_ is not None:
            customer_id = tools.lookup_customer_id(name=name, zip=zip_)
            customer = tools.get_customer(customer_id=customer_id["customer_id"])
        else:
            raise ValueError('give email, or name and zip_')
        return tools.update_address(customer_id=customer["customer_id"], street=street)
    """
)


def lookup_runs() -> list[Trajectory]:
    return [
        by_email("a", "ann@x.io", "C-1", "1 Main St"),
        by_email("b", "bob@x.io", "C-2", "2 Elm St"),
        by_lookup("c", "Cy Young", "02139", "C-3", "3 Oak St"),
        by_lookup("d", "Di Ross", "10001", "C-4", "4 Pine St"),
    ]


@pytest.mark.parametrize("order", [1, -1])
def test_an_alternative_may_take_several_reads_each_reading_the_one_before(
    tmp_path: Path, order: int
) -> None:
    # One run finds the customer by email; another looks their id up by name and zip, then
    # reads them: two ways to one value, of different lengths, in one skill.
    with SkillBank.init(tmp_path / "bank") as bank:
        (sid,) = bank.learn(lookup_runs()[::order]).added
        skill = bank.get(sid)
        assert body(skill.source) == textwrap.indent(LOOKUP_BODY, "    ")
        assert "`find_customer_by_email` or `lookup_customer_id` then `get_customer`" in (
            skill.source
        )
        proof = prove_skill(skill, bank.sandbox, max_examples=10)
        assert proof.ok, proof.failures()
        held = [
            (by_email("h1", "eve@x.io", "C-9", "9 Bay St"), {"email": "eve@x.io"}, 2),
            (by_lookup("h2", "Flo Rida", "33101", "C-8", "8 Sea St"),
             {"name": "Flo Rida", "zip_": "33101"}, 3),
        ]  # fmt: skip
        for run, inputs, calls in held:
            plan = bank.match(run)
            street = run.steps[-1].arguments["street"]
            assert [(s.kind, s.name, s.arguments) for s in plan.steps] == [
                ("skill", sid, {"street": street, **inputs})
            ]
            assert plan.steps[0].covers == (0, calls)


def by_phone_lookup(tid: str, phone: str, cid: str, street: str) -> Trajectory:
    """Look the customer's id up by phone, read the customer, change their address."""
    return Trajectory(
        tid,
        f"Move the customer with phone {phone} to {street}",
        (),
        (
            Step("lookup_customer_id_by_phone", {"phone": phone}, {"customer_id": cid}),
            Step("get_customer", {"customer_id": cid}, {"customer_id": cid, "name": "x"}),
            Step(
                "update_address",
                {"customer_id": cid, "street": street},
                {"customer_id": cid, "street": street},
            ),
        ),
        Outcome(True),
    )


def test_three_ways_of_two_lengths_are_one_set_of_alternatives(tmp_path: Path) -> None:
    # By email (one read), by name and zip or by phone (two reads each, the second shared):
    # the stretches overlap in the longest run, so they are widened to one set of three.
    phones = [by_phone_lookup("e", "555-0101", "C-5", "5 Ash St"),
              by_phone_lookup("f", "555-0102", "C-6", "6 Fir St")]  # fmt: skip
    with SkillBank.init(tmp_path / "bank") as bank:
        (sid,) = bank.learn([*lookup_runs(), *phones]).added
        source = body(bank.get(sid).source)
        assert "elif phone is not None:" in source and "elif name is not None" in source
        assert "if email is not None:" in source
        assert source.count("tools.get_customer(") == 2
        plan = bank.match(by_phone_lookup("h", "555-0199", "C-7", "7 Elm St"))
        assert [(s.name, s.arguments) for s in plan.steps] == [
            (sid, {"street": "7 Elm St", "phone": "555-0199"})
        ]


def by_account(tid: str, email: str, cid: str, street: str, find: bool) -> Trajectory:
    """Read the account by email (first finding the customer, when ``find``), then change
    the address."""
    steps = [Step("find_customer_by_email", {"email": email}, {"customer_id": cid})] if find else []
    steps += [
        Step("get_account", {"email": email}, {"customer_id": cid, "email": email}),
        Step("update_address", {"customer_id": cid, "street": street},
             {"customer_id": cid, "street": street}),
    ]  # fmt: skip
    return Trajectory(tid, f"Move {email} to {street}", (), tuple(steps), Outcome(True))


def test_a_way_that_is_another_with_reads_left_out_is_not_an_alternative() -> None:
    # Looking the id up then reading the customer; finding the customer by email then
    # reading the account; reading the account alone. The last is the second with a read
    # left out, inside the stretch the three differ in: not three ways to one value.
    two_ways = [*lookup_runs()[2:], by_account("e", "eve@x.io", "C-5", "5 Ash St", True),
                by_account("f", "flo@x.io", "C-6", "6 Fir St", True)]  # fmt: skip
    assert "elif" in body(compile_group(two_ways).source)
    left_out = [by_account("g", "gus@x.io", "C-7", "7 Elm St", False),
                by_account("h", "hal@x.io", "C-8", "8 Oak St", False)]  # fmt: skip
    with pytest.raises(CompileError, match="does not follow the same procedure"):
        compile_group([*two_ways, *left_out])
