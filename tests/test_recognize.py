"""Recognition: plans of skill and tool calls that reproduce trajectories."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from sandbox import ToolCall
from skillbank import Outcome, SkillBank, Step, Trajectory, load_trajectories, parse_record
from skillbank.cli import cli
from skillbank.examples import PROCEDURES, Shop, run_procedure
from skillbank.trajectory import canonical_json
from tests.conftest import EXAMPLE_TRAJECTORIES

REPO = Path(__file__).resolve().parent.parent
#: The shop's reads, by their names (`skillbank.compiler.effects`).
READS = ("find_", "list_", "get_", "search_", "check_")


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SkillBank]:
    root = tmp_path_factory.mktemp("recognize") / "bank"
    SkillBank.init(root).close()
    shutil.rmtree(root / "skills")
    shutil.copytree(REPO / "skills", root / "skills")  # the skills learned from the examples
    with SkillBank(root) as b:
        yield b


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "shop.sqlite"
    Shop.create(path)
    return path


def _same_calls(made: tuple[ToolCall, ...], steps: tuple[Step, ...]) -> bool:
    """Whether the sandbox made exactly the trajectory's calls (JSON compared exactly)."""
    ran = [Step.from_tool_call(c).to_case_json() for c in made]
    return canonical_json(ran) == canonical_json([s.to_case_json() for s in steps])


def _recorded(seeded: Path, work: Path, name: str, seed: int) -> tuple[Trajectory, Shop, Shop]:
    """A fresh run of a shop procedure, the shop it ran on, and a copy of its start state."""
    shutil.copyfile(seeded, work / "a.sqlite")
    shutil.copyfile(seeded, work / "b.sqlite")
    recorder, replayer = Shop(work / "a.sqlite"), Shop(work / "b.sqlite")
    args = PROCEDURES[name].draw_args(random.Random(seed), recorder)
    run = parse_record(run_procedure(recorder, name, args, record_id="new"), "generated")
    return run, recorder, replayer


@given(name=st.sampled_from(sorted(PROCEDURES)), seed=st.integers(0, 2**32 - 1))
def test_a_plan_reproduces_its_trajectory_from_the_same_starting_state(
    bank: SkillBank, seeded: Path, tmp_path_factory: pytest.TempPathFactory, name: str, seed: int
) -> None:
    trajectory, recorder, replayer = _recorded(seeded, tmp_path_factory.mktemp("plan"), name, seed)

    plan = bank.match(trajectory)
    assert [s.kind for s in plan.steps] == ["skill"], plan  # a known procedure: one skill call
    result = bank.execute(plan, replayer.tools())
    assert result.ok, result.error
    # The same commands, in order, and so the same state; reads the skill does not need
    # (a check of what was just done) are not repeated.
    commands = tuple(s for s in trajectory.steps if not s.tool.startswith(READS))
    made = tuple(c for c in result.tool_calls if not c.tool.startswith(READS))
    assert _same_calls(made, commands)
    assert replayer.snapshot() == recorder.snapshot()


def test_two_procedures_in_one_trajectory_become_two_skill_calls(
    bank: SkillBank, seeded: Path, tmp_path: Path
) -> None:
    shutil.copyfile(seeded, tmp_path / "a.sqlite")
    shop = Shop(tmp_path / "a.sqlite")
    first = parse_record(
        run_procedure(shop, "change_email", {"email": "bob@example.com",
                                             "new_email": "bob@new.test"}, record_id="x"), "x"
    )  # fmt: skip
    args = PROCEDURES["cancel_pending_order"].draw_args(random.Random(7), shop)
    second = parse_record(run_procedure(shop, "cancel_pending_order", args, record_id="y"), "y")
    both = Trajectory("both", f"{first.task}; then {second.task}", first.tools,
                      first.steps + second.steps, Outcome(True))  # fmt: skip
    plan = bank.match(both)
    n = len(first.steps)
    assert [(s.kind, s.covers) for s in plan.steps] == [
        ("skill", (0, n)), ("skill", (n, len(both.steps))),
    ]  # fmt: skip
    assert plan.steps[0].arguments == {"email": "bob@example.com", "update_email": "bob@new.test"}


def test_a_read_inside_a_skills_span_is_covered_by_it(bank: SkillBank, seeded: Path,
                                                      tmp_path: Path) -> None:  # fmt: skip
    # Commands decide what a plan must reproduce; the order history read before an email
    # change changes nothing, so the change's skill covers it (queries may be skipped).
    shutil.copyfile(seeded, tmp_path / "a.sqlite")
    shop = Shop(tmp_path / "a.sqlite")
    history = parse_record(
        run_procedure(shop, "order_history", {"email": "bob@example.com"}, record_id="x"), "x"
    )
    change = parse_record(
        run_procedure(shop, "change_email", {"email": "bob@example.com",
                                              "new_email": "bob@new.test"}, record_id="y"), "y"
    )  # fmt: skip
    both = Trajectory("both", f"{history.task}; then {change.task}", history.tools,
                      history.steps + change.steps, Outcome(True))  # fmt: skip
    plan = bank.match(both)
    assert [(s.kind, s.covers) for s in plan.steps] == [("skill", (0, 4))]
    assert plan.steps[0].arguments == {"email": "bob@example.com", "update_email": "bob@new.test"}


def test_calls_no_skill_covers_stay_raw(bank: SkillBank) -> None:
    t = Trajectory(
        "raw", "ping twice", (), (Step("ping", {"n": 1}, "pong"), Step("ping", {"n": 2}, "pong")),
        Outcome(True),
    )  # fmt: skip
    plan = bank.match(t)
    assert [(s.kind, s.name) for s in plan.steps] == [("tool", "ping"), ("tool", "ping")]
    assert plan.call_ratio == 1.0
    result = bank.execute(plan, {"ping": lambda n: "pong"})
    assert result.ok and result.values == ("pong", "pong")


def test_a_wrong_guess_is_refused_by_the_sandbox_check(bank: SkillBank) -> None:
    # find_customer then list_orders, but list_orders did NOT use the found customer id:
    # the order-history skill would make a different call, so it must not be matched.
    t = Trajectory(
        "odd", "look", (),
        (Step("find_customer", {"email": "a@b.c"}, {"customer_id": "C-1"}),
         Step("list_orders", {"customer_id": "C-9"}, {"orders": []})),
        Outcome(True),
    )  # fmt: skip
    plan = bank.match(t)
    assert all(s.kind == "tool" for s in plan.steps)


def test_match_command_json(bank: SkillBank) -> None:
    result = CliRunner().invoke(
        cli, ["match", str(EXAMPLE_TRAJECTORIES), "--root", str(bank.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    plans = json.loads(result.output)
    assert len(plans) == 42
    assert all(len(p["steps"]) == 1 and p["steps"][0]["kind"] == "skill" for p in plans)


@given(name=st.sampled_from(sorted(PROCEDURES)), seed=st.integers(0, 2**32 - 1))
def test_reads_a_skill_does_not_make_are_covered_and_the_state_is_reproduced(
    bank: SkillBank, seeded: Path, tmp_path_factory: pytest.TempPathFactory, name: str, seed: int
) -> None:
    # Commands must match exactly; reads inside a skill's span may be extra (an agent
    # looking around): the skill still covers the run, and replays to the same state.
    clean, recorder, replayer = _recorded(seeded, tmp_path_factory.mktemp("reads"), name, seed)
    if len(clean.steps) < 2:
        return
    used = {s.tool for s in clean.steps}
    reads = {
        "search_products": Step(
            "search_products", {"query": "zz"}, {"query": "zz", "products": []}
        ),
        "check_stock": Step("check_stock", {"sku": "SKU-ZZ"}, {"sku": "SKU-ZZ", "available": 0}),
        "get_order": Step("get_order", {"order_id": "O-ZZ"}, {"order_id": "O-ZZ", "items": []}),
    }
    looked = next((step for tool, step in reads.items() if tool not in used), None)
    if looked is None:
        return
    steps = (clean.steps[0], looked, *clean.steps[1:])
    noisy = Trajectory("noisy", clean.task, clean.tools, steps, clean.outcome)
    plan = bank.match(noisy)
    assert [(s.kind, s.covers) for s in plan.steps] == [("skill", (0, len(steps)))], plan
    result = bank.execute(plan, replayer.tools())
    assert result.ok, result.error
    assert replayer.snapshot() == recorder.snapshot()


def test_a_command_the_skill_does_not_make_is_never_covered(bank: SkillBank) -> None:
    (clean,) = [t for t in load_trajectories(EXAMPLE_TRAJECTORIES) if "cancel_pending" in t.id][:1]
    extra = Step("restock", {"sku": "SKU-X", "quantity": 1}, {"sku": "SKU-X", "available": 1})
    steps = (*clean.steps[:-1], extra, clean.steps[-1])
    plan = bank.match(Trajectory("cmd", clean.task, clean.tools, steps, clean.outcome))
    assert ("tool", "restock") in [(s.kind, s.name) for s in plan.steps]
    assert all(not (s.covers[0] <= len(steps) - 2 < s.covers[1]) or s.kind == "tool"
               for s in plan.steps)  # fmt: skip


def test_a_failed_call_is_recorded_never_repeated(
    bank: SkillBank, seeded: Path, tmp_path: Path
) -> None:
    # An agent's lookup failed, then it retried with the right email: the plan is the one
    # skill call, it makes no failed call again, and execution does not stop at it.
    shutil.copyfile(seeded, tmp_path / "a.sqlite")
    shutil.copyfile(seeded, tmp_path / "b.sqlite")
    recorder, replayer = Shop(tmp_path / "a.sqlite"), Shop(tmp_path / "b.sqlite")
    args = {"email": "bob@example.com", "new_email": "bob@retry.test"}
    clean = parse_record(run_procedure(recorder, "change_email", args, record_id="r"), "r")
    failed = Step("find_customer", {"email": "bob@exmaple.com"}, None, error="no such customer")
    retried = Trajectory("retried", clean.task, clean.tools, (failed, *clean.steps), clean.outcome)
    plan = bank.match(retried)
    assert [s.kind for s in plan.steps] == ["skill"] and plan.raw_calls == len(clean.steps)
    result = bank.execute(plan, replayer.tools())
    assert result.ok and all(c.error is None for c in result.tool_calls)
    assert all(c.arguments != failed.arguments for c in result.tool_calls)
    assert replayer.snapshot() == recorder.snapshot()


def test_a_skill_whose_reads_were_dropped_is_found_behind_other_reads(tmp_path: Path) -> None:
    # Learned from one run: the profile read fed nothing the skill keeps (the user typed the
    # id), so the skill is the command alone, while its case still holds the read. A new run
    # that reads more first is still that one skill call.
    def run(tid: str, user: str, amount: int, *reads: Step) -> Trajectory:
        profile = Step("get_user_details", {"user_id": user}, {"user_id": user, "tier": "gold"})
        send = Step("send_certificate", {"user_id": user, "amount": amount}, {"ok": True})
        task = f"Send {user} a certificate of {amount}"
        return Trajectory(tid, task, (), (profile, *reads, send), Outcome(True))

    with SkillBank.init(tmp_path / "b") as bank:
        bank.learn([run("a", "noah_1", 50)], branch="current")
        (skill,) = bank.skills()
        assert skill.tools == ("send_certificate",)
        look = Step("get_reservation_details", {"reservation_id": "R1"}, {"status": None})
        plan = bank.match(run("b", "lia_2", 100, look, look))
    assert [(s.kind, s.name, s.covers) for s in plan.steps] == [("skill", skill.id, (0, 4))]
    assert plan.steps[0].arguments == {"user_id": "lia_2", "amount": 100}
