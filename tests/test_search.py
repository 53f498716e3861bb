"""Tests for skillbank.search: ranking, caching, the ledger weighting and the command."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from skillbank import SkillBank, load_trajectories
from skillbank.cli import cli
from skillbank.search import MISMATCH, SearchIndex, SkillDoc, backend, intent, tokenize

from .conftest import EXAMPLE_TRAJECTORIES

LIST_ORDERS = "list_orders_by_email"


@pytest.fixture(scope="module")
def shop_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("search") / "bank"
    with SkillBank.init(root) as bank:
        bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
    return root


@pytest.fixture
def shop(shop_root: Path, tmp_path: Path) -> SkillBank:
    # Each test gets its own copy: ledgers and caches must not leak between tests.
    root = tmp_path / "copy"
    shutil.copytree(shop_root, root)
    return SkillBank(root)


@pytest.fixture(params=["bm25", "fused"])
def ranking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fused" and backend() == "bm25":
        pytest.skip("wordllama is not installed")
    monkeypatch.setenv("SKILLBANK_SEARCH_EMBEDDINGS", "1" if request.param == "fused" else "0")
    return backend()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I want to see what orders bob@example.com placed", LIST_ORDERS),
        ("List every order of customer farid@example.com from newest to oldest", LIST_ORDERS),
        ("refund the broken item from order O-5015", "create_return_issue_refund_by_order_id"),
        (
            "we got 12 more 'kettle' in, put them on the shelf",
            "restock_by_query",
        ),
        ("alice@example.com has a new address alice@new.test", "update_email_by_email"),
        ("cancel the pending order of carol@example.com", "cancel_order_by_email"),
    ],
)
def test_held_out_wording_finds_the_skill(
    shop: SkillBank, ranking: str, text: str, expected: str
) -> None:
    ids = [h.skill_id for h in shop.search(text)]
    # BM25 alone confused "placed" with place_order; the request's intent now settles it.
    assert ids[0] == expected, ids


def test_empty_query_and_empty_library(shop: SkillBank, bank: SkillBank) -> None:
    assert shop.search("   ") == []
    assert shop.search("order", k=0) == []
    assert bank.search("show the orders of bob@example.com") == []


def test_index_is_cached_and_rebuilt_when_skills_change(
    shop: SkillBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []
    real = SearchIndex.build.__func__  # type: ignore[attr-defined]

    def counting(cls: type[SearchIndex], /, docs: list[SkillDoc], **kw: object) -> SearchIndex:
        builds.append(len(docs))
        return real(cls, docs, **kw)  # type: ignore[no-any-return]

    monkeypatch.setattr(SearchIndex, "build", classmethod(counting))
    shop.search("order history")
    shop.search("restock a product")
    assert builds == [7]
    SkillBank(shop.root).search("order history")  # a new process: read from disk
    assert builds == [7]
    runs = load_trajectories(EXAMPLE_TRAJECTORIES)
    extra = [t for t in runs if "order_history" in t.id][:2]
    renamed = [
        dataclasses.replace(t, id=f"x-{t.id}", steps=t.steps[1:])
        for t in extra  # list_orders without find_customer: the skill changes
    ]
    report = shop.learn(renamed, branch="current")
    assert report.added or report.updated, report
    shop.search("order history")
    assert len(builds) == 2  # the library changed: rebuilt once


def test_failures_drop_a_skill_below_an_equally_relevant_one(shop: SkillBank) -> None:
    text = "order for a customer"
    before = shop.search(text, k=7)
    first, second = before[0], before[1]
    ledger = shop.ledger
    for _ in range(30):
        ledger.record(
            first.skill_id, ok=False, version="1.0.0", latency_s=0.1, error="x", caller="test"
        )
    after = {h.skill_id: h for h in shop.search(text, k=7)}
    assert after[first.skill_id].success == pytest.approx(1 / 32)
    assert after[second.skill_id].score > after[first.skill_id].score
    assert [h.skill_id for h in shop.search(text, k=7)][0] != first.skill_id


def test_thompson_is_repeatable_with_a_seed(shop: SkillBank) -> None:
    ledger = shop.ledger
    ledger.record(LIST_ORDERS, ok=True, version="1.0.0", latency_s=0.1, caller="test")
    one = shop.search("orders of a customer", k=7, thompson=True, seed=3)
    two = shop.search("orders of a customer", k=7, thompson=True, seed=3)
    assert one == two
    means = shop.search("orders of a customer", k=7)
    assert [h.success for h in one] != [h.success for h in means]


def test_deprecated_skills_are_not_returned(shop: SkillBank) -> None:
    shop.deprecate(LIST_ORDERS, by="cancel_order_by_email", branch="current")
    ids = [h.skill_id for h in shop.search("Show the order history for bob@example.com", k=7)]
    assert LIST_ORDERS not in ids and ids


@given(
    text=st.text(alphabet=st.sampled_from("abcdeorstl @.-_0123"), max_size=40),
    k=st.integers(min_value=1, max_value=10),
)
def test_scores_are_bounded_sorted_and_k_respected(shop_root: Path, text: str, k: int) -> None:
    hits = SkillBank(shop_root).search(text, k)
    assert len(hits) <= k
    assert all(0.0 <= h.score <= 1.0 and 0.0 <= h.relevance <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_tokenize_keeps_ids_and_emails_whole() -> None:
    tokens = tokenize("Which orders has bob@example.com placed for O-5003?")
    assert {"bob@example.com", "o-5003", "order", "bob"} <= set(tokens)
    assert "which" not in tokens


def test_command_prints_hits_and_json(shop: SkillBank) -> None:
    runner = CliRunner()
    text = "show the orders of bob@example.com"
    result = runner.invoke(cli, ["search", text, "--root", str(shop.root), "--k", "2"])
    assert result.exit_code == 0, result.output
    assert LIST_ORDERS in result.output.splitlines()[0]
    result = runner.invoke(cli, ["search", text, "--root", str(shop.root), "--json"])
    data = json.loads(result.output)
    assert data["backend"] == backend() and data["hits"][0]["skill_id"] == LIST_ORDERS
    assert "Example:" in runner.invoke(cli, ["search", "--help"]).output


# --- any script ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Straße", "STRASSE"),
        ("Café Müller", "cafe muller"),
        ("ΕΛΛΗΝΙΚΆ", "ελληνικα"),
        ("Заказ", "заказ"),
    ],
)
def test_case_and_accents_fold_in_every_script(one: str, other: str) -> None:
    assert tokenize(one) == tokenize(other)


def test_scripts_without_spaces_are_read_by_characters_and_pairs() -> None:
    tokens = tokenize("注文をキャンセル")
    assert {"注文", "キャ", "セル", "注"} <= set(tokens)
    assert "ください" not in tokenize("ください") and "だ" in tokenize("ください")  # kana kept


@given(st.text(max_size=60))
def test_tokenize_never_fails_and_folds_idempotently(text: str) -> None:
    from skillbank.search import fold

    tokens = tokenize(text)
    assert all(t and t == fold(t) for t in tokens)
    assert fold(fold(text)) == fold(text)


def test_skills_learned_in_other_languages_are_found_by_their_own_words(tmp_path: Path) -> None:
    from skillbank import Outcome, Step, Trajectory

    def run(tid: str, task: str, tool: str) -> Trajectory:
        steps = (Step(tool, {"ref": tid}, {"ok": True}),)
        return Trajectory(tid, task, (), steps, Outcome(True))

    runs = [
        run("ja-1", "注文 A-1 をキャンセルしてください", "cancel_order"),
        run("ja-2", "注文 A-2 をキャンセルしてください", "cancel_order"),
        run("ru-1", "Отправить счёт клиенту R-1", "send_invoice"),
        run("ru-2", "Отправить счёт клиенту R-2", "send_invoice"),
        run("de-1", "Lieferadresse für Kunde D-1 ändern: Hauptstraße", "change_address"),
        run("de-2", "Lieferadresse für Kunde D-2 ändern: Hauptstraße", "change_address"),
    ]
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn(runs)
        for query, tool in [
            ("注文をキャンセル", "cancel_order"),
            ("отправить СЧЁТ", "send_invoice"),
            ("lieferadresse andern hauptstrasse", "change_address"),
        ]:
            (best, *_) = bank.search(query)
            assert tool in best.skill_id, (query, best)


# --- the request's intent against the skill's effect (issue 14, item 5) ----------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Questions read, whatever verb they hold.
        ("what orders did bob@example.com place", "read"),
        ("Which orders has carol@example.com placed so far?", "read"),
        ("did order O-5003 ship", "read"),
        ("Is the red mug in stock?", "read"),
        ("how many orders has elena@example.com placed", "read"),
        ("bob@example.com orders?", "read"),
        # Requests to see.
        ("Show the order history for dmitri@example.com", "read"),
        ("please list the refunds of last week", "read"),
        ("I would like to see my orders", "read"),
        ("can you tell me the status of O-5003", "read"),
        ("Order history for bob@example.com", "read"),  # a noun phrase, not "order ..."
        ("transfer status of account 1001", "read"),
        # Requests to change, however softened.
        ("Place an order for 2 lamps for bob@example.com", "change"),
        ("Can you cancel order O-5003?", "change"),
        ("how do I return the lamp from O-5003", "change"),
        ("please update the email of bob@example.com to rob@example.com", "change"),
        ("Show my orders and cancel the pending one", "change"),
        ("We got 20 more mugs in, add them to stock", "change"),
        ("Restock 'blue mug', it's sold out", "change"),  # a quote, then an apostrophe
        # An apostrophe inside a word quotes nothing ("let's ... I'd" is no quoted value).
        ("Let's cancel order O-5003, I'd rather not wait", "change"),
        ("Let's see what I'd ordered", "read"),
        # Other scripts: a question mark is a question in any of them.
        ("¿Qué pedidos hizo bob@example.com?", "read"),
        ("bob@example.com の注文は？", "read"),
        # No form to read.
        ("bob@example.com orders", None),
        ("", None),
        ("O-5003", None),
    ],
)
def test_intent_reads_the_form_of_the_request(text: str, expected: str | None) -> None:
    assert intent(text) == expected


@given(st.text(max_size=60))
def test_intent_never_fails(text: str) -> None:
    assert intent(text) in ("read", "change", None)


def test_a_question_ranks_the_skill_that_reads_first_by_a_clear_margin(shop: SkillBank) -> None:
    # The README's example: every word of it is in the ordering skill's document too.
    hits = shop.search("what orders did bob@example.com place", k=7)
    assert hits[0].skill_id == LIST_ORDERS and hits[0].effect == "query" and hits[0].fit == 1
    changing = [h for h in hits if h.effect == "command"]
    assert changing and all(h.fit == MISMATCH for h in changing)
    assert hits[0].score >= 2 * max(h.score for h in changing)
    # The same words as an order: the skill that places one comes first.
    (order,) = shop.search("Place an order for bob@example.com", k=1)
    assert order.effect == "command" and "place_order" in order.skill_id and order.fit == 1
    # Without the weighting (a baseline) the trap is sprung: the order skill comes first.
    index = shop.retriever.index()
    (blind,) = index.rank("what orders did bob@example.com place", 1, effects=False)
    assert blind.skill_id != LIST_ORDERS


def test_a_tool_the_bank_calls_a_command_makes_its_skills_commands(shop: SkillBank) -> None:
    assert shop.search("Show the order history for bob@example.com")[0].effect == "query"
    (shop.root / "pyproject.toml").write_text('[tool.skillbank]\ncommand_tools = ["list_orders"]\n')
    reopened = SkillBank(shop.root)  # the effect is part of the cached index's key
    hits = {h.skill_id: h for h in reopened.search("Show the order history for bob@example.com")}
    assert hits[LIST_ORDERS].effect == "command" and hits[LIST_ORDERS].fit == MISMATCH
