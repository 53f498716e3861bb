"""The agent loop, with the real ``openai`` client against a scripted server on loopback.

Skills run in a real sandbox against a real SQLite shop; learning makes real git commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from skillbank import SkillBank, load_trajectories
from skillbank.agent import AgentResult, relevant_skills, run
from skillbank.config import Config
from skillbank.examples.shop import TOOL_SPECS, Shop
from tests.conftest import EXAMPLE_TRAJECTORIES
from tests.fake_openai import FakeOpenAI, HTTPError, ToolCall

ORDER_SKILL = "place_order_by_email_and_query"
HISTORY_SKILL = "list_orders_by_email"


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=0) as c:
        yield c


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop.create(tmp_path / "shop.sqlite")


@pytest.fixture
def learned_bank(tmp_path: Path) -> Iterator[SkillBank]:
    """A bank that learned the bundled shop trajectories (every skill associative)."""
    with SkillBank.init(tmp_path / "learned") as bank:
        bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
        yield bank


@pytest.fixture
def fresh_bank(tmp_path: Path) -> Iterator[SkillBank]:
    """An empty bank where one run is enough for a skill to be offered as a tool."""
    with SkillBank.init(tmp_path / "fresh", config=Config(min_cases_associative=1)) as bank:
        yield bank


def tool_names(body: Any) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools", [])]


def last_tool_reply(body: Any) -> Any:
    message = body["messages"][-1]
    assert message["role"] == "tool"
    return json.loads(message["content"])


# --- (a) a model that calls a skill ---------------------------------------------------------


def test_model_calls_a_skill_the_shop_changes_and_the_trajectory_has_the_raw_calls(
    fake_openai: FakeOpenAI, client: openai.OpenAI, shop: Shop, learned_bank: SkillBank
) -> None:
    args = {"email": "hiro@example.com", "query": "wall clock", "quantity": 4}

    def call_the_skill(body: Any) -> Any:
        assert ORDER_SKILL in tool_names(body)  # offered as a tool ...
        assert "place_order" in tool_names(body)  # ... beside the base tools
        return [ToolCall(ORDER_SKILL, args)]

    def finish(body: Any) -> str:
        reply = last_tool_reply(body)
        assert reply["ok"] is True and reply["value"]["status"] == "pending"
        return f"Placed order {reply['value']['order_id']}."

    fake_openai.add(call_the_skill, finish)
    before = shop.list_orders(customer_id="C-1008")["orders"]

    result = run(
        "Order 4 x 'wall clock' for hiro@example.com",
        client,
        shop.tools(),
        learned_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
    )

    assert result.success and result.finished, result.detail
    after = shop.list_orders(customer_id="C-1008")["orders"]
    assert len(after) == len(before) + 1  # the skill ran for real, in the sandbox
    assert result.text.startswith("Placed order O-")
    assert result.skills_used == (ORDER_SKILL,) and ORDER_SKILL in result.skills_offered
    assert (result.turns, result.model_calls) == (2, 2)
    assert result.usage is not None and result.usage.prompt_tokens == 20

    steps = result.trajectory.steps
    assert [s.tool for s in steps] == [
        "find_customer",
        "search_products",
        "check_stock",
        "place_order",
    ]
    assert steps[0].arguments == {"email": "hiro@example.com"}
    assert steps[3].arguments == {
        "customer_id": "C-1008",
        "sku": "SKU-CLOCK-WALL",
        "quantity": 4,
    }
    assert all(s.error is None for s in steps)
    assert [t.name for t in result.trajectory.tools] == [t["function"]["name"] for t in TOOL_SPECS]
    (call,) = result.skill_calls
    assert call.ok and call.arguments == args and call.steps == steps

    # The run of a known procedure becomes one more case of that skill.
    assert result.learned is not None and result.learned.updated == [ORDER_SKILL]
    assert len(learned_bank.get(ORDER_SKILL).cases) == 7

    (row,) = learned_bank.ledger.outcomes(ORDER_SKILL)
    assert row.ok and row.caller == "agent" and row.version == call.version
    assert row.latency_s is not None and row.latency_s > 0


# --- (b) learn from one task, call the skill on the next ------------------------------------


def test_learns_a_skill_from_one_task_and_calls_it_on_the_next(
    fake_openai: FakeOpenAI, client: openai.OpenAI, shop: Shop, fresh_bank: SkillBank
) -> None:
    assert fresh_bank.skills() == []

    def find(body: Any) -> Any:
        assert tool_names(body) == [t["function"]["name"] for t in TOOL_SPECS]  # no skill yet
        return [ToolCall("find_customer", {"email": "alice@example.com"})]

    def list_orders(body: Any) -> Any:
        customer = last_tool_reply(body)["value"]
        return [ToolCall("list_orders", {"customer_id": customer["customer_id"]})]

    fake_openai.add(find, list_orders, "Alice has orders.")
    first = run(
        "Show the order history for alice@example.com",
        client,
        shop.tools(),
        fresh_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
    )
    assert first.success and first.skills_used == () and first.turns == 3
    assert [s.tool for s in first.trajectory.steps] == ["find_customer", "list_orders"]
    assert first.learned is not None and first.learned.added == [HISTORY_SKILL]
    skill = fresh_bank.get(HISTORY_SKILL)
    assert skill.stage == "associative"
    assert skill.signature.render() == f"{HISTORY_SKILL}(email: str) -> dict"

    def call_the_new_skill(body: Any) -> Any:
        assert HISTORY_SKILL in tool_names(body)
        return [ToolCall(HISTORY_SKILL, {"email": "bob@example.com"})]

    def done(body: Any) -> str:
        assert last_tool_reply(body)["value"] == shop.list_orders(customer_id="C-1002")
        return "Bob's orders are listed."

    fake_openai.add(call_the_new_skill, done)
    second = run(
        "Show the order history for bob@example.com",
        client,
        shop.tools(),
        fresh_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
    )
    assert second.success and second.skills_used == (HISTORY_SKILL,)
    assert second.turns == 2  # one call instead of two steps
    assert [s.tool for s in second.trajectory.steps] == ["find_customer", "list_orders"]
    assert second.learned is not None and second.learned.updated == [HISTORY_SKILL]
    assert sorted(c.task for c in fresh_bank.get(HISTORY_SKILL).cases) == [
        "Show the order history for alice@example.com",
        "Show the order history for bob@example.com",
    ]
    assert len(fresh_bank.skills()) == 1


def test_a_cognitive_skill_is_described_in_the_system_prompt_not_offered(
    fake_openai: FakeOpenAI, client: openai.OpenAI, shop: Shop, tmp_path: Path
) -> None:
    history = [t for t in load_trajectories(EXAMPLE_TRAJECTORIES) if "order_history" in t.id]
    with SkillBank.init(tmp_path / "cognitive") as bank:  # min_cases_associative=2
        bank.learn(history[:1], branch="current")
        assert bank.get(HISTORY_SKILL).stage == "cognitive"
        fake_openai.add("Nothing to do.")
        result = run(
            "Show the order history for bob@example.com",
            client,
            shop.tools(),
            bank,
            tool_specs=TOOL_SPECS,
            model="fake-model",
        )
    body = fake_openai.requests[0]
    assert HISTORY_SKILL not in tool_names(body)
    system = body["messages"][0]["content"]
    assert f"## {HISTORY_SKILL}(email: str) -> dict" in system
    assert '1. find_customer({"email": "dmitri@example.com"})' in system
    assert '2. list_orders({"customer_id": "C-1004"})' in system
    assert result.skills_described == (HISTORY_SKILL,) and result.skills_offered == ()
    # It finished, but made no tool call: nothing to learn.
    assert result.success and result.learned is None


# --- (c) failures ---------------------------------------------------------------------------


def test_bad_skill_arguments_then_giving_up_fails_learns_nothing_and_charges_no_skill(
    fake_openai: FakeOpenAI, client: openai.OpenAI, shop: Shop, learned_bank: SkillBank
) -> None:
    def check_error(body: Any) -> str:
        reply = last_tool_reply(body)
        assert reply["ok"] is False and "quantity" in reply["error"]["message"]
        return "I could not place the order."

    fake_openai.add(
        [ToolCall(ORDER_SKILL, {"email": "hiro@example.com", "query": "wall clock",
                                "quantity": "four"})],
        check_error,
    )  # fmt: skip
    before = shop.snapshot()
    commits = len(learned_bank.library.history(ORDER_SKILL))

    result = run(
        "Order four 'wall clock' for hiro@example.com",
        client,
        shop.tools(),
        learned_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
    )

    assert result.finished and not result.success and result.learned is None
    assert result.skills_used == (ORDER_SKILL,)
    assert result.trajectory.steps == () and not result.trajectory.outcome.success
    assert shop.snapshot() == before
    assert len(learned_bank.library.history(ORDER_SKILL)) == commits
    # Arguments that do not fit are the model's mistake, not the skill's: the skill never
    # ran, so SkillBank.run recorded nothing, and the failed task is not charged to it either.
    assert learned_bank.ledger.outcomes(ORDER_SKILL) == []


def test_a_skill_whose_tool_raises_fails_with_its_raw_calls_recorded(
    fake_openai: FakeOpenAI, client: openai.OpenAI, shop: Shop, learned_bank: SkillBank
) -> None:
    def give_up(body: Any) -> str:
        reply = last_tool_reply(body)
        assert reply["ok"] is False and reply["error"]["type"] == "skill_failed"
        return "There is not enough stock."

    args = {"email": "hiro@example.com", "query": "wall clock", "quantity": 999}
    fake_openai.add([ToolCall(ORDER_SKILL, args)], give_up)
    result = run(
        "Order 999 x 'wall clock' for hiro@example.com",
        client,
        shop.tools(),
        learned_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
    )
    assert not result.success and result.learned is None
    steps = result.trajectory.steps
    assert [(s.tool, s.error is None) for s in steps] == [
        ("find_customer", True),
        ("search_products", True),
        ("check_stock", True),
        ("place_order", False),
    ]
    assert steps[-1].error and steps[-1].error.startswith("ValueError: ")
    (row,) = learned_bank.ledger.outcomes(ORDER_SKILL)
    assert not row.ok and row.caller == "agent" and row.error


def test_a_raising_tool_is_reported_to_the_model_and_the_run_fails(
    fake_openai: FakeOpenAI, client: openai.OpenAI, shop: Shop, fresh_bank: SkillBank
) -> None:
    def check_error(body: Any) -> str:
        reply = last_tool_reply(body)
        assert reply == {
            "ok": False,
            "error": {
                "type": "tool_failed",
                "message": reply["error"]["message"],
                "hint": reply["error"]["hint"],
            },
        }
        assert reply["error"]["message"].startswith("ValueError: ")
        return "That customer does not exist."

    fake_openai.add([ToolCall("find_customer", {"email": "nobody@example.com"})], check_error)
    result = run(
        "Show the order history for nobody@example.com",
        client,
        shop.tools(),
        fresh_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
    )
    assert not result.success and result.learned is None and fresh_bank.skills() == []
    (step,) = result.trajectory.steps
    assert step.tool == "find_customer" and step.error and step.error.startswith("ValueError")


def test_a_skill_that_runs_but_the_judge_rejects_is_charged_in_the_ledger(
    fake_openai: FakeOpenAI, client: openai.OpenAI, shop: Shop, learned_bank: SkillBank
) -> None:
    fake_openai.add([ToolCall(HISTORY_SKILL, {"email": "bob@example.com"})], "Done.")
    seen: list[AgentResult] = []

    def judge(result: AgentResult) -> bool:
        seen.append(result)
        return False

    result = run(
        "Show the order history for bob@example.com",
        client,
        shop.tools(),
        learned_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
        judge=judge,
    )
    assert seen and seen[0].success and seen[0].learned is None  # judged before learning
    assert not result.success and result.learned is None
    assert not result.trajectory.outcome.success
    rows = learned_bank.ledger.outcomes(HISTORY_SKILL)
    assert [(r.ok, r.caller) for r in rows] == [(True, "agent"), (False, "agent:outcome")]


def test_unknown_tools_bad_json_max_turns_and_server_errors_end_as_failures(
    fake_openai: FakeOpenAI, client: openai.OpenAI, shop: Shop, fresh_bank: SkillBank
) -> None:
    fake_openai.add(
        [
            ToolCall("drop_tables", {}),
            {"name": "find_customer", "arguments": {}},
            ToolCall("find_customer", '{"email": '),
            ToolCall(HISTORY_SKILL, {"email": "alice@example.com"}),  # not offered: no skill
            ToolCall("odd", {}),
        ],
        [ToolCall("find_customer", {"email": "alice@example.com"})],
    )
    tools = {**shop.tools(), "odd": lambda: {"ratio": float("nan")}}
    result = run(
        "Show the order history for alice@example.com",
        client,
        tools,
        fresh_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
        max_turns=2,
    )
    assert not result.finished and not result.success and "max_turns=2" in result.detail
    replies = [json.loads(m["content"]) for m in result.messages if m["role"] == "tool"]
    assert [r["ok"] or r["error"]["type"] for r in replies] == [
        "unknown_tool",
        "tool_failed",  # a missing keyword argument
        "invalid_json",
        "unknown_tool",
        True,
        True,
    ]
    assert replies[4]["value"] == "{'ratio': nan}"  # not JSON data: sent as text
    assert fresh_bank.skills() == []

    fake_openai.add(HTTPError(500, "the model is down"))
    down = run(
        "Show the order history for alice@example.com",
        client,
        shop.tools(),
        fresh_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
    )
    assert not down.success and down.model_calls == 1 and down.turns == 0
    assert "the model is down" in down.detail

    with pytest.raises(ValueError, match="max_turns"):
        run("x", client, shop.tools(), fresh_bank, tool_specs=TOOL_SPECS, model="m", max_turns=0)


# --- retrieval ------------------------------------------------------------------------------


def test_word_overlap_retrieval_is_ranked_limited_and_filtered(
    learned_bank: SkillBank, shop: Shop
) -> None:
    found = relevant_skills(learned_bank, "Show the order history for hiro@example.com")
    assert found[0].id == HISTORY_SKILL and len(found) == 5
    assert [s.id for s in relevant_skills(learned_bank, "Restock 3 units of 'mug'", k=1)] == [
        "restock_by_query"
    ]
    assert relevant_skills(learned_bank, "What is the weather in Oslo?") == []
    no_stock = {k: v for k, v in shop.tools().items() if k != "restock"}
    assert "restock_by_query" not in [
        s.id for s in relevant_skills(learned_bank, "Restock 3 units of 'mug'", tools=no_stock)
    ]
    assert relevant_skills(learned_bank, "Show the order history", k=0) == []


def test_the_skills_a_run_used_change_stage_at_its_end(
    fake_openai: FakeOpenAI, client: openai.OpenAI, shop: Shop, learned_bank: SkillBank
) -> None:
    ledger = learned_bank.ledger
    for _ in range(27):  # one more success lifts the lower bound over 0.9
        ledger.record(HISTORY_SKILL, ok=True)
    fake_openai.add([ToolCall(HISTORY_SKILL, {"email": "bob@example.com"})], "Here they are.")
    result = run(
        "Show the order history for bob@example.com",
        client,
        shop.tools(),
        learned_bank,
        tool_specs=TOOL_SPECS,
        model="fake-model",
    )
    assert result.success
    assert ledger.counts()[HISTORY_SKILL] == (28, 0)  # the call recorded once, by the bank
    assert learned_bank.get(HISTORY_SKILL).stage == "autonomous"
    (entry, *_) = learned_bank.history(HISTORY_SKILL)
    assert entry.subject.startswith(f"skillbank stage: {HISTORY_SKILL} associative -> autonomous")
