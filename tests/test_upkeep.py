"""Upkeep on real git repos, the real sandbox and a real SQLite ledger."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from skillbank import SkillBank
from skillbank.cli import cli
from skillbank.examples import Shop
from skillbank.library import StoredChange
from skillbank.skill import TestedSkill
from skillbank.trajectory import Outcome, Step, Trajectory
from skillbank.upkeep import (
    check_drift,
    find_duplicates,
    merge_duplicates,
    prune,
    refine,
)
from skillbank.versioning import Version


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(autouse=True)
def _commit_on_the_checked_out_branch(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about what each command changes, so its commits go where the working
    # tree shows them; where a commit goes (review branches) is tested in test_branches.py.
    monkeypatch.setenv("SKILLBANK_BRANCH", "current")


@pytest.fixture
def shop_bank(tmp_path: Path, example_trajectories: list[Trajectory]):
    wanted = ("order_product", "order_history")
    runs = [t for t in example_trajectories if any(w in t.id for w in wanted)]
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn(runs, branch="current")
        yield bank


def order_skill(bank: SkillBank) -> str:
    return next(s.id for s in bank.skills() if s.id == "place_order_by_email_and_query")


def tea_failure(tools, tid: str = "fail-black-tea") -> Trajectory:
    """Ordering black tea: check_stock says 0 left and place_order errors (as the shop does)."""
    return Trajectory(
        tid,
        "Order 3 x 'black tea' for bob@example.com",
        tools,
        (
            Step("find_customer", {"email": "bob@example.com"},
                 {"customer_id": "C-1002", "email": "bob@example.com", "name": "Bob Tanaka",
                  "tier": "silver"}),
            Step("search_products", {"query": "black tea"},
                 {"products": [{"in_stock": False, "name": "Black tea tin", "price": 10.45,
                                "sku": "SKU-TEA-BLK"}], "query": "black tea"}),
            Step("check_stock", {"sku": "SKU-TEA-BLK"}, {"available": 0, "sku": "SKU-TEA-BLK"}),
            Step("place_order", {"customer_id": "C-1002", "quantity": 3, "sku": "SKU-TEA-BLK"},
                 None, error="only 0 of 'SKU-TEA-BLK' in stock, cannot order quantity=3"),
        ),
        Outcome(False, "place_order failed"),
    )  # fmt: skip


# --- refine -----------------------------------------------------------------------------


def test_refine_adds_a_guard_that_passes_the_cases_and_rejects_the_failure(
    shop_bank: SkillBank, example_trajectories: list[Trajectory], tmp_path: Path
) -> None:
    sid = order_skill(shop_bank)
    before = shop_bank.get(sid)
    report = refine(shop_bank.lifecycle, [tea_failure(example_trajectories[0].tools)])
    assert report.refined == [sid]
    (entry,) = report.entries
    assert entry.guard == 'stock["available"] < quantity'
    after = shop_bank.get(sid)
    assert after.version == Version(1, 1, 0) and before.version == Version(1, 0, 0)
    assert "Raises:" in after.signature.docstring and "ValueError" in after.signature.docstring
    assert "fail-black-tea" in git(shop_bank.root, "log", "-1", "--format=%B")
    # The real shop: black tea is refused before any order is placed; a lamp is still ordered.
    shop = Shop.create(tmp_path / "shop.sqlite")
    refused = shop_bank.run(sid, {"email": "bob@example.com", "query": "black tea",
                                  "quantity": 3}, shop.tools())  # fmt: skip
    assert not refused.ok and "ValueError" in (refused.error or "")
    assert [c.tool for c in refused.tool_calls][-1] == "check_stock"
    ok = shop_bank.run(sid, {"email": "bob@example.com", "query": "lamp", "quantity": 1},
                       shop.tools())  # fmt: skip
    assert ok.ok and ok.value["status"] == "pending"


def test_refine_without_a_separating_field_says_so(
    shop_bank: SkillBank, example_trajectories: list[Trajectory]
) -> None:
    sid = order_skill(shop_bank)
    case = shop_bank.get(sid).cases[0]
    # The same answers a success got, yet the order failed: nothing tells them apart.
    steps = list(case.calls)
    steps[-1] = replace(steps[-1], result=None, error="the payment service is down")
    failure = Trajectory("fail-flaky", case.task, example_trajectories[0].tools, tuple(steps),
                         Outcome(False))  # fmt: skip
    head = git(shop_bank.root, "rev-parse", "HEAD")
    report = refine(shop_bank.lifecycle, [failure])
    assert [e.action for e in report.entries] == ["no separating field"]
    assert report.commit is None and git(shop_bank.root, "rev-parse", "HEAD") == head


def test_refine_skips_successes_and_reports_unmatched(
    shop_bank: SkillBank, example_trajectories: list[Trajectory]
) -> None:
    other = Trajectory("odd", "restock", example_trajectories[0].tools,
                       (Step("restock", {"sku": "X", "quantity": 2}, None, error="no"),),
                       Outcome(False))  # fmt: skip
    report = refine(shop_bank.lifecycle, [example_trajectories[0], other])
    assert [e.action for e in report.entries] == ["skipped", "unmatched"]


# --- duplicates -------------------------------------------------------------------------


def _clone(bank: SkillBank, sid: str, new_id: str) -> None:
    """Store a renamed copy of a skill (as an LLM or a reviewer might have written it)."""
    skill = bank.get(sid)
    source = (
        skill.source.replace(sid, new_id)
        .replace("quantity", "count")
        .replace("count=count", "quantity=count")
    )
    cases = tuple(
        replace(c, args={("count" if k == "quantity" else k): v for k, v in c.args.items()})
        for c in skill.cases[:2]
    )
    tested = bank.check(skill.as_draft(id=new_id, source=source, cases=cases), {})
    assert isinstance(tested, TestedSkill), tested
    bank.library.store(
        [StoredChange(tested, Version(1, 0, 0), "associative", "added")], f"add {new_id}\n"
    )


def test_duplicates_are_found_and_merged_and_the_old_id_keeps_working(
    shop_bank: SkillBank, tmp_path: Path
) -> None:
    sid = order_skill(shop_bank)
    _clone(shop_bank, sid, "order_one")
    (pair,) = find_duplicates(shop_bank.lifecycle)
    assert (pair.keep, pair.drop) == (sid, "order_one")
    assert "same code" in pair.reasons and "same tool-call sequences" in pair.reasons
    commit = merge_duplicates(shop_bank.lifecycle, pair)
    assert commit == git(shop_bank.root, "rev-parse", "HEAD")
    assert shop_bank.get("order_one").deprecated_by == sid
    assert find_duplicates(shop_bank.lifecycle) == []
    shop = Shop.create(tmp_path / "shop.sqlite")
    result = shop_bank.run("order_one", {"email": "bob@example.com", "query": "lamp",
                                         "count": 1}, shop.tools())  # fmt: skip
    assert result.ok and result.warning and sid in result.warning


# --- drift ------------------------------------------------------------------------------


def _specs(bank: SkillBank) -> dict[str, dict]:
    return {name: json.loads(json.dumps(spec.to_openai())) for s in bank.skills()
            for name, spec in s.tool_specs.items()}  # fmt: skip


def test_a_breaking_schema_change_demotes_the_skills_using_the_tool(shop_bank: SkillBank) -> None:
    sid = order_skill(shop_bank)
    specs = _specs(shop_bank)
    params = specs["place_order"]["function"]["parameters"]
    params["properties"]["quantity"] = {"type": "string"}
    params["properties"]["currency"] = {"type": "string"}
    params["required"] = [*params["required"], "currency"]
    stage = shop_bank.get(sid).stage
    report = check_drift(shop_bank.lifecycle, specs)
    assert report.changed_tools == ("place_order",)
    assert report.demoted == [sid]
    assert shop_bank.get(sid).stage == {"associative": "cognitive",
                                         "autonomous": "associative"}[stage]  # fmt: skip
    assert report.commit == git(shop_bank.root, "rev-parse", "HEAD")
    assert "demoted" in git(shop_bank.root, "log", "-1", "--format=%B")


def test_a_cosmetic_change_does_not_demote(shop_bank: SkillBank) -> None:
    sid = order_skill(shop_bank)
    head = git(shop_bank.root, "rev-parse", "HEAD")
    specs = _specs(shop_bank)
    specs["place_order"]["function"]["description"] = "Places an order (reworded)."
    assert check_drift(shop_bank.lifecycle, specs).entries == ()
    assert git(shop_bank.root, "rev-parse", "HEAD") == head
    # A reworded parameter description changes the schema: re-proved, passes, patch bump.
    specs["place_order"]["function"]["parameters"]["properties"]["sku"]["description"] = "SKU."
    stage = shop_bank.get(sid).stage
    report = check_drift(shop_bank.lifecycle, specs)
    assert [(e.skill_id, e.action) for e in report.entries] == [(sid, "updated")]
    after = shop_bank.get(sid)
    assert after.stage == stage and after.version == Version(1, 0, 1)
    assert after.tool_specs["place_order"].parameters["properties"]["sku"]["description"] == "SKU."


# --- prune ------------------------------------------------------------------------------


def test_prune_removes_a_failing_skill_and_keeps_a_required_one(shop_bank: SkillBank) -> None:
    sid = order_skill(shop_bank)
    other = next(s.id for s in shop_bank.skills() if s.id != sid)
    ledger = shop_bank.ledger
    for n in range(10):
        ledger.record(sid, ok=n < 2, error=None if n < 2 else "boom")
        ledger.record(other, ok=True)
    dry = prune(shop_bank.lifecycle, dry_run=True)
    assert dry.removed == [sid] and dry.commit is None
    assert (shop_bank.library.dir / sid).exists()
    report = prune(shop_bank.lifecycle)
    assert report.removed == [sid] and "8 of 10" in report.entries[0].reason
    assert not (shop_bank.library.dir / sid).exists()
    assert git(shop_bank.root, "status", "--porcelain") == ""
    assert sid in git(shop_bank.root, "log", "-1", "--format=%B")
    # A required skill is kept even when unused.
    base = shop_bank.get(other)
    caller = shop_bank.check(base.as_draft(id="caller", source=base.source.replace(
        f"def {other}(", "def caller("), requires=(other,)), {other: base})  # fmt: skip
    assert isinstance(caller, TestedSkill), caller
    shop_bank.library.store(
        [StoredChange(caller, Version(1, 0, 0), "cognitive", "added")], "add caller\n"
    )
    later = prune(shop_bank.lifecycle, unused_days=0, now=time.time() + 86400)
    actions = {e.skill_id: e.action for e in later.entries}
    assert actions == {other: "kept", "caller": "removed"}
    assert (shop_bank.library.dir / other).exists()


# --- commands ---------------------------------------------------------------------------


def test_commands_exit_codes(
    shop_bank: SkillBank, example_trajectories: list[Trajectory], tmp_path: Path
) -> None:
    runner = CliRunner()
    root = str(shop_bank.root)
    result = runner.invoke(cli, ["prune", "--dry-run", "--json", "--root", root])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["commit"] is None
    assert runner.invoke(cli, ["dedup", "--root", root]).exit_code == 0
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps(list(_specs(shop_bank).values())))
    assert runner.invoke(cli, ["drift", "--tool-specs", str(specs), "--root", root]).exit_code == 0
    assert runner.invoke(cli, ["prune", "--root", str(tmp_path / "nope")]).exit_code == 1
    failures = tmp_path / "failures.jsonl"
    failures.write_text(json.dumps(_record(tea_failure(example_trajectories[0].tools))) + "\n")
    result = runner.invoke(cli, ["refine", str(failures), "--root", root])
    assert result.exit_code == 0, result.output
    assert "refined" in result.output
    result = runner.invoke(cli, ["refine", str(failures), "--root", root])
    assert result.exit_code == 0 and "unchanged" in result.output  # already guarded
    odd = Trajectory("odd", "restock", example_trajectories[0].tools,
                     (Step("restock", {"sku": "X", "quantity": 2}, None, error="no"),),
                     Outcome(False))  # fmt: skip
    failures.write_text(json.dumps(_record(odd)) + "\n")
    assert runner.invoke(cli, ["refine", str(failures), "--root", root]).exit_code == 1
    assert runner.invoke(cli, ["dedup", "--root", root]).exit_code == 0


def _record(t: Trajectory) -> dict:
    messages: list[dict] = [{"role": "user", "content": t.task}]
    for n, s in enumerate(t.steps):
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"c{n}",
                        "type": "function",
                        "function": {"name": s.tool, "arguments": json.dumps(s.arguments)},
                    }
                ],
            }
        )
        content = s.error if s.error is not None else json.dumps(s.result)
        messages.append(
            {
                "role": "tool",
                "tool_call_id": f"c{n}",
                "content": content,
                **({"is_error": True} if s.error is not None else {}),
            }
        )
    return {"id": t.id, "task": t.task, "messages": messages,
            "tools": [x.to_openai() for x in t.tools],
            "outcome": {"success": t.outcome.success}}  # fmt: skip


def test_prune_never_calls_a_skill_unused_on_a_ledger_that_was_not_watching(
    shop_bank: SkillBank,
) -> None:
    # A fresh clone has no ledger: it cannot tell unused skills from skills used elsewhere.
    later = prune(shop_bank.lifecycle, dry_run=True, now=time.time() + 365 * 86400)
    assert later.entries == ()


def test_a_merge_whose_cases_do_not_replay_on_the_kept_skill_changes_nothing(
    shop_bank: SkillBank,
) -> None:
    from skillbank.errors import LibraryError
    from skillbank.upkeep import DuplicatePair

    ids = [s.id for s in shop_bank.skills()]
    keep, drop = (
        "list_orders_by_email",
        "place_order_by_email_and_query",
    )
    assert keep in ids and drop in ids
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=shop_bank.root, capture_output=True, text=True
    ).stdout
    pair = DuplicatePair(keep, drop, ("same tool-call sequences",), 0.5)
    with pytest.raises(LibraryError, match="is not a duplicate.*nothing was merged"):
        merge_duplicates(shop_bank.lifecycle, pair)
    assert shop_bank.get(drop).deprecated_by is None
    assert (
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=shop_bank.root, capture_output=True, text=True
        ).stdout
        == head
    )
