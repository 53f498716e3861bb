"""Reflexes: task patterns learned from cases, a decision that abstains, and where it runs.

The bank learns the bundled shop trajectories (real git commits); the skills are made
autonomous by review (`SkillBank.promote`), and reflexes run in real worker processes
against a real SQLite shop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from skillbank import SkillBank, load_trajectories
from skillbank.cli import cli
from skillbank.examples.shop import Shop
from skillbank.library import git
from skillbank.patterns import PATTERNS_FILE, kind_of, learn_patterns, render_patterns
from skillbank.reflex import RULES, ReflexIndex
from skillbank.trajectory import Trajectory
from tests.conftest import EXAMPLE_TRAJECTORIES
from tests.fake_openai import FakeOpenAI

HISTORY = "list_orders_by_email"
CANCEL = "cancel_order_by_email"
ORDER = "place_order_by_email_and_query"
RESTOCK = "restock_by_query"
EMAIL = "update_email_by_email"
RETURN = "create_return_issue_refund_by_order_id"


def _trust_all(bank: SkillBank) -> None:
    for skill in bank.skills():
        bank.promote(skill.id, "autonomous", reason="test: trusted", branch="current")


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[SkillBank]:
    with SkillBank.init(tmp_path / "bank") as b:
        b.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
        _trust_all(b)
        yield b


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop.create(tmp_path / "shop.sqlite")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReflexIndex]:
    """The reflex index of the shop's skills, every one autonomous (built once)."""
    root = tmp_path_factory.mktemp("reflex") / "bank"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_GLOBAL", str(root.parent / "no-gitconfig"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        with SkillBank.init(root) as b:
            b.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
            skills = [replace(s, stage="autonomous") for s in b.skills()]
            built = ReflexIndex()
            built.update(skills, b.library.patterns)
            yield built


# --- patterns ---------------------------------------------------------------------------------


def test_patterns_json_is_written_with_the_skill_and_follows_its_cases(tmp_path: Path) -> None:
    trajectories = load_trajectories(EXAMPLE_TRAJECTORIES)
    first = [t for t in trajectories if not t.id.endswith(("-05", "-06"))]
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn(first, branch="current")
        path = bank.library.dir / CANCEL / PATTERNS_FILE
        before = json.loads(path.read_text())
        assert before["arguments"]["status"] == {"constant": "pending"}
        assert before["arguments"]["email"]["kind"] == "email"
        assert before["arguments"]["reason"]["flows_to"] == ["cancel_order.reason"]
        assert "Cancel the newest pending order of {email} because: {reason}" in {
            p["template"] for p in before["phrasings"]
        }
        bank.learn(trajectories, branch="current")
        skill = bank.get(CANCEL)
        text = path.read_text()
        # Rebuilt with the new cases, exactly as the pure function gives it, and committed.
        assert text == render_patterns(
            learn_patterns(skill.id, skill.signature, skill.cases, skill.tool_specs)
        )
        assert sum(p["cases"] for p in json.loads(text)["phrasings"]) == len(skill.cases)
        assert text != path.read_text() or json.loads(text) != before
        assert git(bank.root, "status", "--porcelain").stdout == ""


def test_learning_patterns_finds_kinds_constants_and_unsaid_arguments(bank: SkillBank) -> None:
    skill = bank.get(ORDER)
    case = skill.cases[0]
    odd = [
        replace(case, trajectory_id="x1", task=f"Buy it for {case.args['email']}"),  # unsaid
        replace(case, trajectory_id="x2", task=f"{case.args['email']} {case.args['email']}"),
    ]
    patterns = learn_patterns(skill.id, skill.signature, [*skill.cases, *odd], skill.tool_specs)
    assert dict(patterns.kinds) == {"email": "email", "quantity": "number", "query": "text"}
    unsaid = [p for p in patterns.phrasings if p.unsaid]
    assert [(p.template, p.unsaid) for p in unsaid] == [
        ("Buy it for {email}", ("quantity", "query"))
    ]
    # A value that stands twice gives no phrasing; every other case gives one.
    assert sum(p.cases for p in patterns.phrasings) == len(skill.cases) + 1
    # The same cases in another order give the same file.
    again = learn_patterns(skill.id, skill.signature, [*odd, *reversed(skill.cases)],
                           skill.tool_specs)  # fmt: skip
    assert render_patterns(again) == render_patterns(patterns)


@pytest.mark.parametrize(
    ("value", "kind"),
    [("a@b.co", "email"), (3, "number"), (2.5, "number"), ("2026-01-31", "date"),
     ("docs/a.txt", "path"), ("O-5003", "id"), ("lamp", "word"), ("floor lamp", "text"),
     (True, None), (None, None), ([1], None), ("", None)],
)  # fmt: skip
def test_value_kinds(value: object, kind: str | None) -> None:
    assert kind_of(value) == kind


def test_a_reviewers_edit_of_patterns_json_holds_until_the_cases_change(bank: SkillBank) -> None:
    path = bank.library.dir / HISTORY / PATTERNS_FILE
    data = json.loads(path.read_text())
    data["phrasings"] = [p for p in data["phrasings"] if p["template"].startswith("Show")]
    path.write_text(json.dumps(data))
    assert bank.plan_reflex("Show the order history for zed@example.com").fires
    assert not bank.plan_reflex("Which orders has zed@example.com placed so far?").fires
    # cases.jsonl edited by hand (a case dropped): patterns.json is stale, learned again.
    cases = bank.library.dir / HISTORY / "cases.jsonl"
    cases.write_text("".join(cases.read_text().splitlines(keepends=True)[1:]))
    assert bank.plan_reflex("Which orders has zed@example.com placed so far?").fires


def test_an_older_folder_without_patterns_json_still_reflexes(bank: SkillBank) -> None:
    (bank.library.dir / HISTORY / PATTERNS_FILE).unlink()
    decision = bank.plan_reflex("Show the order history for zed@example.com")
    assert decision.skill_id == HISTORY and decision.args == {"email": "zed@example.com"}


# --- the decision: it fires -------------------------------------------------------------------


FIRES = [
    # learned phrasings, new values
    ("Show the order history for zed@example.com", HISTORY, {"email": "zed@example.com"}),
    ("Order 4 x 'desk lamp' for zed@example.com", ORDER,
     {"email": "zed@example.com", "quantity": 4, "query": "desk lamp"}),
    ("Cancel the newest pending order of zed@example.com because: changed my mind", CANCEL,
     {"email": "zed@example.com", "reason": "changed my mind", "status": "pending"}),
    ("Change the email of zed@example.com to zed.z@mail.test", EMAIL,
     {"email": "zed@example.com", "update_email": "zed.z@mail.test"}),
    # a quoted value is a value: its "not" is no negation
    ("Order O-5001 needs a return for its first item ('not as described'), then issue the "
     "refund", RETURN, {"order_id": "O-5001", "reason": "not as described"}),
    # wordings never seen
    ("Add 40 units of 'mug' to stock", RESTOCK, {"quantity": 40, "query": "mug"}),
    ("Change zed@example.com's email to zed.z@mail.test", EMAIL,
     {"email": "zed@example.com", "update_email": "zed.z@mail.test"}),
    ("Buy 3 units of 'kettle' for zed@example.com", ORDER,
     {"email": "zed@example.com", "quantity": 3, "query": "kettle"}),
    # courtesy asks nothing; a request put to the listener as a question is a request
    ("Could you restock 40 units of 'mug'?", RESTOCK, {"quantity": 40, "query": "mug"}),
    ("Hey, would you be so kind as to restock 40 units of 'mug'?", RESTOCK,
     {"quantity": 40, "query": "mug"}),
    ("I'd appreciate it if you could restock 40 units of 'mug'.", RESTOCK,
     {"quantity": 40, "query": "mug"}),
    ("Alright, just go ahead and restock 40 units of 'mug'.", RESTOCK,
     {"quantity": 40, "query": "mug"}),
    ("Could you change the email of zed@example.com to zed.z@mail.test?", EMAIL,
     {"email": "zed@example.com", "update_email": "zed.z@mail.test"}),
    # a capitalised word the skill knows is no name
    ("Please Restock 40 units of 'mug'", RESTOCK, {"quantity": 40, "query": "mug"}),
    # quoting a value does not change its kind
    ("Show the order history for 'zed@example.com'", HISTORY, {"email": "zed@example.com"}),
]  # fmt: skip


@pytest.mark.parametrize(("task", "skill_id", "args"), FIRES)
def test_it_fires_with_the_arguments_read_off_the_task(
    index: ReflexIndex, task: str, skill_id: str, args: dict[str, object]
) -> None:
    decision = index.plan(task)
    assert decision.fires, decision.reason
    assert (decision.skill_id, dict(decision.args)) == (skill_id, args)
    assert decision.rule is None


@pytest.mark.parametrize("task", [task for task, sid, _ in FIRES if sid != HISTORY])
def test_a_request_that_fires_does_not_fire_as_a_question_about_it(
    index: ReflexIndex, task: str
) -> None:
    # Each skill here changes state: asking whether it was done, or whether we may do it,
    # is no order, however the request itself was worded.
    core = task.rstrip(".?!")
    core = core[0].lower() + core[1:]
    for question in (f"Can we {core}?", f"Did you {core}?", f"{task.rstrip('.?!')}. Is it done?"):
        decision = index.plan(question)
        assert not decision.fires, question


# --- the decision: it abstains ----------------------------------------------------------------

ABSTAINS = [
    ("negation", "Do not show the order history for zed@example.com"),
    ("negation", "Cancel the newest pending order of zed@example.com because: no longer needed"),
    ("condition", "If zed@example.com has a pending order, cancel it because: late"),
    ("condition", "Restock 20 units of 'mug' unless it is sold out"),
    ("scope", "Cancel every pending order of zed@example.com because: moving"),
    ("scope", "Restock all units of 'mug'"),
    ("compound", "Show the order history for zed@example.com and then cancel it"),
    ("compound", "Restock 20 units of 'mug', then order 2 x 'mug' for zed@example.com"),
    ("question", "Has zed@example.com's newest pending order been cancelled?"),
    ("question", "Did we restock 20 units of 'mug'?"),
    ("not_found", "Order 4 x 'desk lamp'"),
    ("found_twice", "Show the order history for zed@example.com, ann@example.com"),
    ("quantity_word", "Restock a few units of 'mug'"),
    ("quantity_word", "Order some 'lamp' for zed@example.com"),
    ("extra_value", "Show the order history for zed@example.com from O-5003"),
    (
        "extra_value",
        "Cancel the newest pending order of zed@example.com because: ann@example.com asked",
    ),
    (
        "compound",
        "Return the first item of order O-5003 and refund it, reason: too small; close it",
    ),
    ("compound", "Order 2 x 'green tea' for alice@example.com and 2 x 'mug' for bob@example.com"),
    # each loosened reading, next to the same words that must still abstain
    ("question", "Can we restock 40 units of 'mug'?"),
    ("question", "Could you confirm that 40 units of 'mug' were restocked?"),
    ("question", "Would you like to restock 40 units of 'mug'?"),
    ("question", "Restock 40 units of 'mug'. Is it restocked?"),
    ("negation", "Could you not restock 40 units of 'mug'?"),
    ("negation", "Alright, don't restock 40 units of 'mug'."),
    ("compound", "Go ahead and restock 40 units of 'mug' and then restock"),
    ("condition", "Restock 40 units of 'mug' if you could"),
    ("condition", "I'd appreciate it if you could restock 40 units of 'mug' if it is sold out"),
    ("condition", "Once restocked, restock 40 units of 'mug'"),
    ("scope", "Could you restock all units of 'mug'?"),
    ("quantity_word", "Could you restock a few units of 'mug'?"),
    ("not_found", "Could you restock units of 'mug'?"),
    ("extra_value", "Restock 40 units of 'mug' for Acme"),  # a name is a value too
    ("extra_value", "Show the order history for zed@example.com, Berlin office"),
    # a request to act, in words the reading skill knows: it only reads
    ("asks_change", "Place the order history for zed@example.com"),
    ("unknown_words", "Delete the order history for zed@example.com"),
    ("missing_words", "Refund order O-5003, reason: arrived damaged"),
    ("no_skill", "What will the weather be in Lisbon tomorrow?"),
    ("empty", "   "),
]


def test_every_rule_has_a_case_here() -> None:
    covered = {rule for rule, _ in ABSTAINS} | {"ambiguous", "not_autonomous", "bad_arguments"}
    assert covered == set(RULES)


@pytest.mark.parametrize(("rule", "task"), ABSTAINS, ids=[f"{r}:{t[:30]}" for r, t in ABSTAINS])
def test_it_abstains_and_says_why(index: ReflexIndex, rule: str, task: str) -> None:
    decision = index.plan(task)
    assert not decision.fires and decision.skill_id is None and not decision.args
    assert decision.rule == rule, decision.reason
    assert decision.reason


@pytest.mark.parametrize(
    ("task", "rule", "also"),
    [
        ("Could you not restock 40 units of 'mug'?", "negation", None),
        ("Restock 40 units of 'mug' if you could", "condition", None),
        # reworded without its "if", the closest skill still would not fit: it says so
        ("Could you check if 40 units of 'mug' were restocked?", "condition", "unknown_words"),
        ("Could you restock all units of 'mug'?", "scope", "not_found"),
    ],
)
def test_a_doubt_word_says_whether_it_is_the_only_reason(
    index: ReflexIndex, task: str, rule: str, also: str | None
) -> None:
    decision = index.plan(task)
    assert (decision.rule, decision.also) == (rule, also), decision.reason
    assert decision.to_json()["also"] == also


def _budget_bank(root: Path, tool: str) -> SkillBank:
    """A bank with one autonomous skill learned from hand-made runs: a budget and a token."""
    from skillbank import Step
    from skillbank.trajectory import Outcome

    def run(tid: str, task: str, token: str, limit: int) -> Trajectory:
        args = {"access_token": token, "budget_limit": limit}
        return Trajectory(tid, task, (), (Step(tool, args, {"ok": True}, None, "c0"),),
                          Outcome(True))  # fmt: skip

    bank = SkillBank.init(root)
    bank.learn([run("b1", "Set a budget of 1500 with token ABC123", "ABC123", 1500),
                run("b2", "Set a budget of 900 with token QRS456", "QRS456", 900)],
               branch="current")  # fmt: skip
    _trust_all(bank)
    return bank


def test_a_value_one_argument_took_is_no_other_arguments(tmp_path: Path) -> None:
    # An id argument may be written as a number, so numbers are its candidates too, but
    # not the number another argument already took.
    with _budget_bank(tmp_path / "bank", "set_budget_limit") as bank:
        decision = bank.plan_reflex("With token XYZ789 set a budget of $2000")
        assert decision.fires, decision.reason
        assert dict(decision.args) == {"access_token": "XYZ789", "budget_limit": 2000}
        # Two numbers for one: still found twice; no token: not found.
        assert bank.plan_reflex("With token XYZ789 set a budget of 2000 or 3000").rule == (
            "found_twice"
        )
        assert bank.plan_reflex("With token 2000 set a budget").rule in {"not_found", "found_twice"}
        # A quoted id is still an id; two of them for one argument are found twice.
        quoted = bank.plan_reflex("With token 'XYZ789' set a budget of 2000")
        assert dict(quoted.args) == {"access_token": "XYZ789", "budget_limit": 2000}
        assert bank.plan_reflex("With token 'XYZ789' or 'ABC999' set a budget of 2000").rule == (
            "found_twice"
        )


def test_a_scope_word_in_the_name_of_the_skills_tool_is_learned(tmp_path: Path) -> None:
    with _budget_bank(tmp_path / "bank", "set_all_budget_limits") as bank:
        # The tool sets all budget limits: "all budget" is what it does, not more.
        decision = bank.plan_reflex("Set all budget limits of 2000 with token XYZ789")
        assert decision.fires, decision.reason
        for task in ("Set every budget of 2000 with token XYZ789",
                     "Set a budget of 2000 with token XYZ789 for all accounts"):  # fmt: skip
            assert bank.plan_reflex(task).rule == "scope", task


def test_two_skills_that_fit_equally_abstain(bank: SkillBank) -> None:
    skills = bank.skills()
    twin = replace(bank.get(HISTORY), id="list_customer_orders", stage="autonomous")
    both = ReflexIndex()
    both.update([*skills, twin], bank.library.patterns)
    decision = both.plan("Show the order history for zed@example.com")
    assert decision.rule == "ambiguous" and decision.closest in {HISTORY, twin.id}


def test_a_skill_not_trusted_yet_does_not_fire(bank: SkillBank) -> None:
    bank.promote(HISTORY, "associative", reason="test: withdrawn", branch="current")
    decision = bank.plan_reflex("Show the order history for zed@example.com")
    assert decision.rule == "not_autonomous" and decision.closest == HISTORY
    assert "associative" in decision.reason


def test_values_a_tool_schema_refuses_abstain(bank: SkillBank) -> None:
    skill = bank.get(ORDER)
    spec = skill.tool_specs["place_order"]
    params = json.loads(json.dumps(dict(spec.parameters)))
    params["properties"]["quantity"]["minimum"] = 1
    specs = {**skill.tool_specs, "place_order": replace(spec, parameters=params)}
    strict = replace(skill, tool_specs=specs)
    checked = ReflexIndex()
    checked.update([strict], bank.library.patterns)
    decision = checked.plan("Order 0 x 'lamp' for zed@example.com")
    assert decision.rule == "bad_arguments" and "place_order" in decision.reason
    assert checked.plan("Order 1 x 'lamp' for zed@example.com").fires


_LOCAL = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
_WORDS = st.lists(st.sampled_from(["oak", "desk", "lamp", "blue", "mug", "tall"]), min_size=1,
                  max_size=3).map(" ".join)  # fmt: skip


@given(local=_LOCAL, quantity=st.integers(min_value=1, max_value=10_000), query=_WORDS)
def test_a_learned_phrasing_gives_back_any_values_put_in_it(
    index: ReflexIndex, local: str, quantity: int, query: str
) -> None:
    email = f"{local}@shop.test"
    for template in ("Order {q} x '{p}' for {e}",
                     "Please buy {q} units of '{p}' for the customer with email {e}"):  # fmt: skip
        decision = index.plan(template.format(q=quantity, p=query, e=email))
        assert decision.skill_id == ORDER, decision.reason
        assert dict(decision.args) == {"email": email, "quantity": quantity, "query": query}


@given(
    task=st.text(max_size=80),
    word=st.sampled_from(sorted({"not", "never", "unless", "if", "every", "all"})),
)
def test_a_negation_condition_or_scope_word_never_fires(
    index: ReflexIndex, task: str, word: str
) -> None:
    # Wherever the word lands outside quotes, in any text, nothing runs.
    for text in (f"{word} {task}", f"{task} {word}", f"Show the order history {word} a@b.co"):
        if "'" in text or '"' in text or "(" in text:
            continue
        assert not index.plan(text).fires, text


@given(
    task=st.one_of(
        st.text(max_size=120),
        st.lists(
            st.sampled_from(["Order", "3", "x", "'lamp'", "for", "a@b.co", "(late)", "because:",
                             "Restock", "units", "of", "O-5003", "?", "and", "Show", "history"]),
            max_size=12,
        ).map(" ".join),
    )
)  # fmt: skip
def test_any_text_gets_a_decision_and_never_fires_on_a_doubt_word(
    index: ReflexIndex, task: str
) -> None:
    decision = index.plan(task)
    assert decision.fires == (decision.rule is None) and decision.reason
    if decision.fires:  # every shop skill takes arguments, all read from the text
        assert decision.skill_id is not None and decision.args
        assert not any(w in task.lower().split() for w in ("not", "if", "every", "all"))


# --- running it -------------------------------------------------------------------------------


def test_reflex_runs_records_its_arguments_and_its_failures_count_against_the_skill(
    bank: SkillBank, shop: Shop
) -> None:
    tools = shop.tools()
    result = bank.reflex("Show the order history for bob@example.com", tools)
    assert result is not None and result.ok and result.skill_id == HISTORY
    row = bank.ledger.outcomes(HISTORY)[-1]
    assert (row.caller, row.args, row.ok) == ("reflex", {"email": "bob@example.com"}, True)
    # An email no customer has: the reflex chose it, so the failure is the skill's.
    failed = bank.reflex("Show the order history for nobody@example.com", tools)
    assert failed is not None and not failed.ok
    assert bank.ledger.outcomes(HISTORY)[-1].blame == "skill"
    assert bank.ledger.counts()[HISTORY] == (1, 1)
    # An abstaining decision runs nothing and records nothing.
    assert bank.reflex("Do not show the order history for bob@example.com", tools) is None
    assert len(bank.ledger.outcomes(HISTORY)) == 2


def test_skillbank_do_runs_a_reflex_or_says_why_not(
    bank: SkillBank, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKILLBANK_SHOP_DB", str(shop.path))
    runner = CliRunner()
    root = ["--root", str(bank.root)]
    task = "Restock 20 units of 'mug'"
    before = shop.snapshot()

    out = runner.invoke(cli, ["do", task, "--dry-run", "--json", *root])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["decision"]["skill_id"] == RESTOCK and data["result"] is None
    assert data["decision"]["args"] == {"quantity": 20, "query": "mug"}
    assert shop.snapshot() == before  # a dry run changes nothing

    out = runner.invoke(cli, ["do", task, "--tools", "skillbank.examples.shop", *root])
    assert out.exit_code == 0, out.output
    assert f'reflex: {RESTOCK}(quantity=20, query="mug")' in out.output
    assert shop.snapshot() != before

    out = runner.invoke(cli, ["do", "Restock a few units of 'mug'", *root])
    assert out.exit_code == 1
    assert "no reflex (quantity_word)" in out.output and f"closest skill: {RESTOCK}" in out.output
    out = runner.invoke(cli, ["do", "Restock a few units of 'mug'", "--json", *root])
    assert out.exit_code == 1 and json.loads(out.output)["decision"]["rule"] == "quantity_word"
    out = runner.invoke(cli, ["do", task, *root])  # it would run, but no tools were named
    assert out.exit_code == 2 and "--tools" in out.output


def test_mcp_skillbank_do(bank: SkillBank, shop: Shop) -> None:
    from skillbank.gateway.server import DO_TOOL, do_task

    assert DO_TOOL["name"] == "skillbank_do"
    ran = json.loads(do_task(bank, "Show the order history for bob@example.com", shop.tools()))
    assert ran["ran"] and ran["result"]["ok"] and ran["decision"]["skill_id"] == HISTORY
    refused = json.loads(do_task(bank, "Show the order history for every customer", shop.tools()))
    assert not refused["ran"] and refused["decision"]["rule"] == "scope"
    assert json.loads(do_task(bank, None, shop.tools()))["decision"]["rule"] == "empty"
    missing = json.loads(do_task(bank, "Show the order history for bob@example.com", {}))
    assert not missing["ran"] and "find_customer" in missing["decision"]["reason"]


# --- promote: trust by review -----------------------------------------------------------------


def test_promote_pins_the_stage_until_unpin_but_failures_still_demote(bank: SkillBank) -> None:
    skill = bank.get(HISTORY)
    assert (skill.stage, skill.pinned) == ("autonomous", "test: trusted")
    head = git(bank.root, "rev-parse", "HEAD").stdout
    # No calls at all: the ledger would say associative, but the pin holds.
    assert bank.update_stages([HISTORY], branch="current") == []
    assert bank.get(HISTORY).stage == "autonomous"
    # Failures demote even a pinned autonomous skill, and lift the pin.
    for _ in range(6):
        bank.ledger.record(HISTORY, ok=False, version=str(skill.version), error="boom")
    (change,) = bank.update_stages([HISTORY], branch="current")
    assert change.old == "autonomous" and change.new != "autonomous"
    assert bank.get(HISTORY).pinned is None
    message = git(bank.root, "log", "-1", "--format=%B").stdout
    assert "pin is lifted" in message
    # A stage commit rewrites the folder through the same function: patterns.json still
    # follows the cases exactly.
    demoted = bank.get(HISTORY)
    assert (bank.library.dir / HISTORY / PATTERNS_FILE).read_text() == render_patterns(
        learn_patterns(demoted.id, demoted.signature, demoted.cases, demoted.tool_specs)
    )
    assert git(bank.root, "rev-parse", "HEAD").stdout != head

    # A pinned cognitive skill stays cognitive however well it does, until --unpin.
    commit = bank.promote(ORDER, "cognitive", reason="writes orders", branch="current")
    assert commit is not None and bank.get(ORDER).stage == "cognitive"
    for _ in range(40):
        bank.ledger.record(ORDER, ok=True, version=str(bank.get(ORDER).version))
    assert bank.update_stages([ORDER], branch="current") == []
    assert bank.promote(ORDER, None, unpin=True, branch="current") is not None
    assert bank.get(ORDER).pinned is None
    assert [c.new for c in bank.update_stages([ORDER], branch="current")] == ["autonomous"]


def test_promote_command_commits_on_a_review_branch_without_moving_head(bank: SkillBank) -> None:
    runner = CliRunner()
    root = ["--root", str(bank.root)]
    head = git(bank.root, "rev-parse", "HEAD").stdout
    branch = git(bank.root, "branch", "--show-current").stdout
    args = ["promote", RESTOCK, "--to", "associative", "--reason", "stock moves money"]
    out = runner.invoke(cli, [*args, "--branch", "auto", "--json", *root])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert (data["old"], data["new"], data["pinned"]) == (
        "autonomous",
        "associative",
        "stock moves money",
    )
    assert data["branch"].startswith("skillbank/promote-") and not data["checked_out"]
    assert git(bank.root, "rev-parse", "HEAD").stdout == head
    assert git(bank.root, "branch", "--show-current").stdout == branch
    assert bank.get(RESTOCK).stage == "autonomous"  # the checked-out branch is unchanged
    body = git(bank.root, "log", "-1", "--format=%B", data["commit"]).stdout
    assert "stock moves money" in body and "--unpin" in body

    out = runner.invoke(cli, ["show", HISTORY, *root])
    assert "stage pinned by review: test: trusted" in out.output
    assert "asked as:  Show the order history for {email} (2 case(s))" in out.output
    shown = json.loads(runner.invoke(cli, ["show", HISTORY, "--json", *root]).output)
    assert shown["patterns"]["arguments"]["email"]["kind"] == "email"
    out = runner.invoke(cli, ["list", "--json", *root])
    assert {r["id"]: r["pinned"] for r in json.loads(out.output)}[HISTORY] == "test: trusted"
    out = runner.invoke(cli, ["promote", RESTOCK, *root])
    assert out.exit_code == 2 and "--to" in out.output
    out = runner.invoke(cli, ["promote", "nope", "--to", "autonomous", *root])
    assert out.exit_code == 1
    assert "Example:" in (cli.commands["promote"].help or "")
    assert "Example:" in (cli.commands["do"].help or "")


def test_learning_more_cases_keeps_a_reviewers_pin(tmp_path: Path) -> None:
    trajectories: list[Trajectory] = load_trajectories(EXAMPLE_TRAJECTORIES)
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn([t for t in trajectories if not t.id.endswith("-06")], branch="current")
        bank.promote(HISTORY, "autonomous", reason="read-only", branch="current")
        before = len(bank.get(HISTORY).cases)
        bank.learn(trajectories, branch="current")
        skill = bank.get(HISTORY)
        assert len(skill.cases) > before
        assert (skill.stage, skill.pinned) == ("autonomous", "read-only")


# --- the agent loop -------------------------------------------------------------------------


def test_the_agent_runs_a_reflex_before_any_model_call(
    bank: SkillBank, shop: Shop, fake_openai: FakeOpenAI
) -> None:
    from skillbank.agent import run
    from skillbank.examples.shop import TOOL_SPECS

    with openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=0) as client:
        done = run("Restock 20 units of 'mug'", client, shop.tools(), bank,
                   tool_specs=TOOL_SPECS, model="m")  # fmt: skip
        assert done.success and done.model_calls == 0 and done.turns == 0
        assert done.skills_used == (RESTOCK,) and fake_openai.requests == []
        assert [s.tool for s in done.trajectory.steps] == ["search_products", "restock"]
        assert bank.ledger.outcomes(RESTOCK)[-1].caller == "reflex"

        # A trap goes to the model, which answers.
        fake_openai.add("I will not do that.")
        trap = run("Do not restock 20 units of 'mug'", client, shop.tools(), bank,
                   tool_specs=TOOL_SPECS, model="m")  # fmt: skip
        assert trap.model_calls == 1 and len(fake_openai.requests) == 1

        # reflex=False always asks the model.
        fake_openai.add("Done.")
        asked = run("Restock 20 units of 'mug'", client, shop.tools(), bank,
                    tool_specs=TOOL_SPECS, model="m", reflex=False)  # fmt: skip
        assert asked.model_calls == 1


def _watchlist_bank(root: Path, tasks: list[str], also: Sequence[str] = ()) -> SkillBank:
    """A bank of autonomous reading skills (no arguments): one learned from ``tasks``
    (``get_watchlist``) and, if ``also`` has tasks, one from those (the watchlist, then a
    stock's details)."""
    from skillbank import Step
    from skillbank.trajectory import Outcome

    def run(tid: str, task: str, tools: Sequence[str]) -> Trajectory:
        steps = tuple(Step(tool, {}, ["NVDA"], None, "c0") for tool in tools)
        return Trajectory(tid, task, (), steps, Outcome(True))

    bank = SkillBank.init(root)
    runs = [run(f"w{i}", task, ["get_watchlist"]) for i, task in enumerate(tasks)]
    runs += [run(f"s{i}", t, ["get_watchlist", "get_stock_info"]) for i, t in enumerate(also)]
    bank.learn(runs, branch="current")
    _trust_all(bank)
    return bank


def test_a_name_one_run_mentioned_in_passing_is_not_a_word_of_the_skill(tmp_path: Path) -> None:
    # One run's task named Zeta Corp in passing; a task that names it asks for something
    # the skill has no argument for (BFCL: "Let's get Zeta Corp on my watchlist" once ran
    # the reading skill, because that run's words held "Zeta" and "Corp").
    tasks = ["Show the stocks on my watchlist",
             "With Zeta Corp's stock now on my radar, show the stocks on my watchlist",
             "Please show the stocks on my watchlist"]  # fmt: skip
    asked = "Show the stocks on my watchlist for Zeta Corp"
    with _watchlist_bank(tmp_path / "once", tasks) as bank:
        assert bank.plan_reflex("Show the stocks on my watchlist, please").fires
        decision = bank.plan_reflex(asked)
        assert decision.rule == "extra_value" and "'Zeta'" in decision.reason, decision.reason
    # Said in two runs' requests, the name is part of how this skill is asked for.
    twice = [*tasks, "Now that Zeta Corp is on there, show the stocks on my watchlist"]
    with _watchlist_bank(tmp_path / "twice", twice) as bank:
        decision = bank.plan_reflex(asked)
        assert decision.fires, decision.reason


def test_a_name_said_in_passing_never_lets_a_rival_fire_alone(tmp_path: Path) -> None:
    # The watchlist skill's one passing mention of Zeta Corp makes it abstain, but it still
    # fits as well as the skill whose requests all name Zeta Corp: together they are too
    # close to call, as before the passing-name rule; that rule must not hand the task to
    # the rival (review of 17c4988).
    tasks = ["Show the stocks on my watchlist",
             "With Zeta Corp's stock now on my radar, show the stocks on my watchlist",
             "Please show the stocks on my watchlist"]  # fmt: skip
    also = ["Zeta Corp is on my radar, show the stocks on my watchlist",
            "Zeta Corp is on my radar: please show the stocks on my watchlist"]  # fmt: skip
    with _watchlist_bank(tmp_path / "bank", tasks, also) as bank:
        decision = bank.plan_reflex("With Zeta Corp on my radar, show the stocks on my watchlist")
        assert decision.rule == "ambiguous", decision.reason
