"""The learn → check → keep → run loop on a real git repo, real files and real workers."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skillbank import (
    LibraryError,
    Outcome,
    SkillArgumentError,
    SkillBank,
    SkillNotFound,
    Trajectory,
)
from skillbank.examples import DEMO_ARGS, Shop
from skillbank.library import WRITTEN_FILES, skill_files
from skillbank.review import tool_effects
from skillbank.validate import code_shape
from skillbank.versioning import Version


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def tree_state(root: Path) -> dict[str, bytes]:
    skills = root / "skills"
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(skills.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def learned(
    tmp_path_factory: pytest.TempPathFactory, example_trajectories: list[Trajectory]
) -> Path:
    """A bank that learned every example trajectory (built once for the module)."""
    root = tmp_path_factory.mktemp("learned") / "bank"
    with SkillBank.init(root) as bank:
        report = bank.learn(example_trajectories)
    assert not report.rejected, report.rejected
    return root


def order_skill(bank: SkillBank) -> str:
    return next(
        s.id for s in bank.skills() if s.cases[0].trajectory_id.startswith("shop-order_product")
    )


def test_init_creates_folder_skills_and_git_and_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "new"
    SkillBank.init(root).close()
    assert (root / "skills").is_dir() and (root / ".git").is_dir()
    assert (root / ".skillbank" / ".gitignore").read_text().strip().endswith("*")
    conftest = (root / "skills" / "conftest.py").read_text()
    assert "skillbank.testing" in conftest  # `pytest skills/` runs every skill's checks
    SkillBank.init(root).close()  # again: no error, same repo, nothing overwritten
    # The conftest is committed together with the first skills.
    assert git(root, "status", "--porcelain", "--untracked-files=all") == "?? skills/conftest.py\n"


def test_init_inside_an_existing_repo_reuses_it(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    SkillBank.init(tmp_path / "sub").close()
    assert not (tmp_path / "sub" / ".git").exists()


def test_opening_a_folder_that_is_not_a_bank_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="skillbank init"):
        SkillBank(tmp_path)


def test_learning_the_examples_makes_one_skill_per_procedure_in_one_commit(
    learned: Path, example_trajectories: list[Trajectory]
) -> None:
    bank = SkillBank(learned)
    skills = bank.skills()
    procedures = {t.id.rsplit("-", 1)[0] for t in example_trajectories}
    assert len(skills) == len(procedures) >= 5
    assert sum(len(s.cases) for s in skills) == len(example_trajectories)
    for s in skills:
        assert {p.name for p in (learned / "skills" / s.id).iterdir()} == set(WRITTEN_FILES)
        assert s.version == Version(1, 0, 0) and s.stage == "associative"
        assert len({c.trajectory_id.rsplit("-", 1)[0] for c in s.cases}) == 1  # one procedure
    log = git(learned, "log", "--format=%s%n%b")
    assert log.startswith("skillbank learn: add 7 skill(s)")
    assert "shop-order_product-01 sha256:" in log
    assert git(learned, "status", "--porcelain") == ""


def test_relearning_changes_nothing_and_makes_no_commit(
    learned: Path, example_trajectories: list[Trajectory]
) -> None:
    head = git(learned, "rev-parse", "HEAD")
    with SkillBank(learned) as bank:
        report = bank.learn(example_trajectories)
    assert report.commit is None and report.added == [] and report.updated == []
    assert {e.action for e in report.entries} == {"unchanged"}
    assert git(learned, "rev-parse", "HEAD") == head


def test_stored_skills_load_back_equal_byte_for_byte(learned: Path) -> None:
    bank = SkillBank(learned)
    for skill in bank.skills():
        files = skill_files(skill, version=skill.version, stage=skill.stage)
        for name, text in files.items():
            assert (learned / "skills" / skill.id / name).read_text() == text, (skill.id, name)


def test_keys_added_to_a_stored_tool_definition_survive_a_rewrite(
    learned: Path, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    subprocess.run(["git", "clone", "-q", str(learned), str(root)], check=True)
    sid = order_skill(SkillBank(root))
    path = root / "skills" / sid / "tools.json"
    stored = json.loads(path.read_text())
    stored["place_order"]["function"]["annotations"] = {"readOnlyHint": True}
    text = json.dumps(stored, sort_keys=True, ensure_ascii=False, indent=2) + "\n"
    path.write_text(text)
    skill = SkillBank(root).get(sid)
    assert skill.tool_specs["place_order"].extra == {"annotations": {"readOnlyHint": True}}
    assert skill_files(skill, version=skill.version, stage=skill.stage)["tools.json"] == text
    assert tool_effects(skill)["place_order"] == "reads"  # the hint beats the name's verb


def test_a_new_run_of_a_known_procedure_becomes_a_case_not_a_skill(
    tmp_path: Path, example_trajectories: list[Trajectory]
) -> None:
    orders = [t for t in example_trajectories if t.id.startswith("shop-order_product")]
    with SkillBank.init(tmp_path / "b") as bank:
        first = bank.learn(orders[:1])
        assert len(first.added) == 1 and bank.get(first.added[0]).stage == "cognitive"
        second = bank.learn(orders[1:3], branch="current")
        assert second.added == [] and second.updated == first.added
        skill = bank.get(first.added[0])
        assert len(skill.cases) == 3 and skill.stage == "associative"
        # One run could not show that the sku is read from the search; three runs that
        # all took the first product do, so the signature changed: a major version.
        assert skill.version == Version(2, 0, 0)
        assert [p.name for p in skill.signature.params] == ["email", "query", "quantity"]
    assert git(tmp_path / "b", "rev-list", "--count", "HEAD").strip() == "2"


def test_failed_and_uncompilable_trajectories_are_reported_not_stored(
    tmp_path: Path, example_trajectories: list[Trajectory]
) -> None:
    failed = replace(example_trajectories[0], id="failed", outcome=Outcome(False, "gave up"))
    empty = replace(example_trajectories[0], id="empty", steps=())
    with SkillBank.init(tmp_path / "b") as bank:
        report = bank.learn([failed, empty])
    assert [e.trajectory_id for e in report.skipped] == ["failed"]
    assert "gave up" in report.skipped[0].reason
    assert [e.trajectory_id for e in report.rejected] == ["empty"]
    assert report.commit is None and bank.skills() == []


def test_run_a_learned_skill_on_new_arguments_against_the_live_shop(
    learned: Path, tmp_path: Path
) -> None:
    shop = Shop.create(tmp_path / "shop.sqlite")
    before = shop.snapshot()
    with SkillBank(learned) as bank:
        sid = order_skill(bank)
        result = bank.run(sid, DEMO_ARGS["order_product"], shop.tools())
    assert result.ok, result.error
    assert [c.tool for c in result.tool_calls] == [
        "find_customer", "search_products", "check_stock", "place_order",
    ]  # fmt: skip
    assert result.value["status"] == "pending" and result.value["customer_id"] == "C-1008"
    after = shop.snapshot()
    assert len(after["orders"]) == len(before["orders"]) + 1
    assert result.duration_s > 0


def test_run_reports_a_tool_failure_as_a_value(learned: Path, tmp_path: Path) -> None:
    shop = Shop.create(tmp_path / "shop.sqlite")
    with SkillBank(learned) as bank:
        sid = order_skill(bank)
        args = dict(DEMO_ARGS["order_product"], email="nobody@example.com")
        result = bank.run(sid, args, shop.tools())
    assert not result.ok and result.error_type == "ToolError"
    assert "nobody@example.com" in (result.error or "")
    assert len(result.tool_calls) == 1 and result.tool_calls[0].error


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"email": "a@b.c", "query": "mug"}, "needs argument 'quantity'"),
        ({}, "needs arguments 'email' \\(str\\), 'query' \\(str\\), 'quantity' \\(int\\);"),
        ({"email": "a@b.c", "query": "mug", "quantity": 1, "x": 1}, "no parameter 'x'"),
        ({"email": "a@b.c", "query": "mug", "quantity": "2"}, "must be int"),
        ({"email": "a@b.c", "query": "mug", "quantity": True}, "must be int"),
    ],
)
def test_run_checks_arguments_against_the_signature(
    learned: Path, args: dict[str, Any], match: str
) -> None:
    with SkillBank(learned) as bank, pytest.raises(SkillArgumentError, match=match):
        bank.run(order_skill(bank), args, {})


def test_run_needs_every_declared_tool_and_gets_only_those(learned: Path, tmp_path: Path) -> None:
    tools = Shop.create(tmp_path / "shop.sqlite").tools()
    with SkillBank(learned) as bank:
        sid = order_skill(bank)
        partial = {k: v for k, v in tools.items() if k != "place_order"}
        with pytest.raises(SkillArgumentError, match="place_order"):
            bank.run(sid, DEMO_ARGS["order_product"], partial)
        with pytest.raises(SkillNotFound, match="skillbank list"):
            bank.run("no_such_skill", {}, tools)


def test_a_rejecting_git_hook_leaves_tree_and_index_as_they_were(
    tmp_path: Path, example_trajectories: list[Trajectory]
) -> None:
    root = tmp_path / "b"
    with SkillBank.init(root) as bank:
        bank.learn(example_trajectories[:1])
        before_tree, head = tree_state(root), git(root, "rev-parse", "HEAD")
        hook = root / ".git" / "hooks" / "pre-commit"
        hook.write_text("#!/bin/sh\necho 'policy: no commits today' >&2\nexit 1\n")
        hook.chmod(0o755)
        with pytest.raises(LibraryError, match="no commits today.*restored"):
            bank.learn(example_trajectories[1:8], branch="current")
    assert tree_state(root) == before_tree
    assert git(root, "rev-parse", "HEAD") == head
    assert git(root, "status", "--porcelain") == ""


def test_a_broken_skill_file_is_named_in_the_error(learned: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    subprocess.run(["git", "clone", "-q", str(learned), str(root)], check=True)
    bank = SkillBank(root)
    sid = bank.skills()[0].id
    meta = root / "skills" / sid / "SKILL.md"
    meta.write_text(meta.read_text().replace("stage: associative", "stage: expert"))
    with pytest.raises(LibraryError, match=rf"skills/{sid}/SKILL.md: metadata.stage"):
        bank.get(sid)
    (root / "skills" / sid / "SKILL.md").write_text("no front matter")
    with pytest.raises(LibraryError, match="front matter"):
        bank.get(sid)
    # One broken folder does not take the bank down: the others load, it is reported.
    assert sid not in [s.id for s in bank.skills()] and len(bank.skills()) >= 2
    (broken,) = bank.broken()
    assert broken.id == sid and "front matter" in broken.error
    cases = root / "skills" / bank.library.ids()[1] / "cases.jsonl"
    cases.write_text("{broken\n")
    with pytest.raises(LibraryError, match="cases.jsonl:1"):
        bank.get(bank.library.ids()[1])
    tools = root / "skills" / bank.library.ids()[2] / "tools.json"
    tools.write_text('{"find_customer": {"type": "function", "function": {}}}\n')
    with pytest.raises(LibraryError, match="tools.json: tool 'find_customer': 'function.name'"):
        bank.get(bank.library.ids()[2])


def test_learn_report_json_is_serialisable(learned: Path, example_trajectories: list[Any]) -> None:
    with SkillBank(learned) as bank:
        data = bank.learn(example_trajectories[:2]).to_json()
    assert json.loads(json.dumps(data))["entries"][0]["action"] == "unchanged"


def test_commits_use_the_configured_identity_or_a_fallback(
    tmp_path: Path, example_trajectories: list[Trajectory]
) -> None:
    plain, configured = tmp_path / "plain", tmp_path / "configured"
    with SkillBank.init(plain) as bank:
        bank.learn(example_trajectories[:1])
    fallback = git(plain, "log", "-1", "--format=%an <%ae>").strip()
    assert fallback == "skillbank <skillbank@localhost>"
    SkillBank.init(configured).close()
    git(configured, "config", "user.name", "Ada Reviewer")
    git(configured, "config", "user.email", "ada@example.com")
    with SkillBank(configured) as bank:
        bank.learn(example_trajectories[:1])
    author = git(configured, "log", "-1", "--format=%an <%ae>").strip()
    assert author == "Ada Reviewer <ada@example.com>"


def test_a_bank_in_an_ignored_folder_of_a_repo_gets_its_own_repo(
    tmp_path: Path, example_trajectories: list[Trajectory]
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("demo/\nskills/\n")
    with SkillBank.init(tmp_path / "demo") as bank:
        assert bank.learn(example_trajectories[:1]).commit
    assert (tmp_path / "demo" / ".git").is_dir()
    # A skills folder the enclosing repo ignores, at that repo's root, is refused clearly.
    (tmp_path / "skills").mkdir()
    with SkillBank(tmp_path) as bank, pytest.raises(LibraryError, match="ignored by git"):
        bank.learn(example_trajectories[:1])
    assert list((tmp_path / "skills").iterdir()) == []


def _traj(tid: str, task: str, *steps: tuple[str, dict[str, Any], Any]) -> Trajectory:
    from skillbank import Step

    return Trajectory(
        tid, task, (), tuple(Step(t, a, r, None, f"c{i}") for i, (t, a, r) in enumerate(steps)),
        Outcome(True),
    )  # fmt: skip


def test_line_separator_characters_survive_a_round_trip(tmp_path: Path) -> None:
    odd = "Zoë ✓\u2028next\u0085line\u2029end"
    t = _traj("u1", f"greet {odd}", ("get", {"name": odd}, {"greeting": f"hi {odd}"}))
    with SkillBank.init(tmp_path / "b") as bank:
        assert bank.learn([t]).added == ["get_skill"]
        skill = bank.get("get_skill")
        assert skill.cases[0].args == {"name": odd}
        assert bank.learn([t]).commit is None  # read back equal, so nothing changes
        files = skill_files(skill, version=skill.version, stage=skill.stage)
        for name, text in files.items():
            assert (tmp_path / "b" / "skills" / "get_skill" / name).read_text() == text


def test_one_bad_trajectory_never_stops_the_batch(tmp_path: Path) -> None:
    long_tool = "fetch_the_customer_record_by_primary_email_address_v2_tool"
    first = _traj("a", "x", (long_tool, {"q": "1"}, {"v": 1}))
    clash = _traj("b", "y", (long_tool, {"q": "2", "r": "3"}, {"v": 2}))  # same id, other shape
    # Two tools a skill could not tell apart: both would be tools.set_weather.
    clashing = _traj("c", "z", ("set-weather", {"t": 1}, 1), ("set.weather", {"t": 2}, 2))
    good = _traj("d", "ping", ("ping", {}, "pong"))
    with SkillBank.init(tmp_path / "b") as bank:
        report = bank.learn([first, clash, clashing, good])
    assert sorted(report.added) == sorted(
        ["ping_skill", f"{long_tool}_skill", f"{long_tool}_skill"[:62].rstrip("_") + "_2"]
    )
    (rejected,) = report.rejected
    assert rejected.trajectory_id == "c"
    assert "'set-weather', 'set.weather'" in (rejected.reason or "")
    assert "tools.set_weather(...)" in (rejected.reason or "")


def test_tools_whose_names_are_not_identifiers_are_learned_and_run(tmp_path: Path) -> None:
    # MCP servers name tools "get-weather"; keywords ("class") are tool names too.
    runs = [
        _traj(f"w{i}", f"weather in {city}", ("get-weather", {"city": city}, {"t": i}),
              ("class", {"t": i}, {"ok": True}))
        for i, city in enumerate(["Oslo", "Lima", "Pune"])
    ]  # fmt: skip
    with SkillBank.init(tmp_path / "b") as bank:
        report = bank.learn(runs)
        assert not report.rejected, report.rejected
        (sid,) = report.added
        skill = bank.get(sid)
        assert "tools.get_weather(" in skill.source and "tools.class_(" in skill.source
        assert sorted(skill.tools) == ["class", "get-weather"]
        calls: list[tuple[str, Any]] = []

        def weather(city: str) -> Any:
            calls.append(("get-weather", city))
            return {"t": 7}

        def klass(t: int) -> Any:
            calls.append(("class", t))
            return {"ok": True}

        (param,) = [p.name for p in skill.signature.params]
        result = bank.run(sid, {param: "Rome"}, tools={"get-weather": weather, "class": klass})
        assert result.ok, result.error
        assert calls == [("get-weather", "Rome"), ("class", 7)]


def test_learning_is_independent_of_input_order(
    tmp_path: Path, example_trajectories: list[Trajectory]
) -> None:
    forward, backward = tmp_path / "f", tmp_path / "r"
    with SkillBank.init(forward) as bank:
        bank.learn(example_trajectories)
    with SkillBank.init(backward) as bank:
        half = len(example_trajectories) // 2
        bank.learn(list(reversed(example_trajectories[half:])))
        bank.learn(list(reversed(example_trajectories[:half])), branch="current")
    # The content is the same but for the wording of the docs: a skill keeps the docstring
    # and description it was first learned with (a later run of the same code never rewords
    # them), so learned in two batches it quotes a run of the first batch. The code, cases,
    # tools and tasks are the same; the version counts the changes.
    version = re.compile(rb"\n  version: [0-9.]+\n")

    def content(root: Path) -> dict[str, bytes | str]:
        tree: dict[str, bytes | str] = {}
        with SkillBank(root) as bank:
            docs = {s.id: s.description for s in bank.skills()}
        for key, data in tree_state(root).items():
            if key.endswith("/skill.py"):
                tree[key] = code_shape(data.decode())
            elif key.endswith("/SKILL.md"):
                said = docs[key.split("/")[1]].encode()
                tree[key] = b"\n".join(
                    line for line in version.sub(b"\n", data).split(b"\n")
                    if said not in line and b"content_hash:" not in line
                    and not line.startswith(b"| `")  # parameter docs quote examples
                )  # fmt: skip
            else:
                tree[key] = data
        return tree

    assert content(forward) == content(backward)
    for fresh, stepwise in zip(
        SkillBank(forward).skills(), SkillBank(backward).skills(), strict=True
    ):
        assert fresh.version == Version(1, 0, 0) and stepwise.version >= (1, 0, 0)


def test_duplicate_ids_with_different_content_keep_both_hashes(tmp_path: Path) -> None:
    one = _traj("same", "look up 1", ("get", {"k": "1"}, {"v": 1}))
    two = _traj("same", "look up 2", ("get", {"k": "2"}, {"v": 2}))
    root = tmp_path / "b"
    with SkillBank.init(root) as bank:
        report = bank.learn([two, one])
        skill = bank.get("get_skill")
    assert [c.trajectory_sha256 for c in skill.cases] == sorted([one.sha256, two.sha256])
    message = git(root, "log", "-1", "--format=%B")
    assert one.sha256 in message and two.sha256 in message
    assert report.added == ["get_skill"]


def test_init_honours_environment_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKILLBANK_SKILLS_DIR", "lib")
    SkillBank.init(tmp_path / "envb").close()
    assert (tmp_path / "envb" / "lib").is_dir()
    SkillBank(tmp_path / "envb").close()


_TEXT = st.text(max_size=30)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=10)
@given(task=_TEXT, value=_JSON, result=_JSON)
def test_any_text_survives_store_and_load(task: str, value: Any, result: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp, SkillBank.init(Path(tmp) / "b") as bank:
        t = _traj("p", task, ("get", {"v": value}, {"r": result}))
        report = bank.learn([t])
        if report.rejected:  # e.g. a value the compiler cannot express: reported, not stored
            assert bank.skills() == []
            return
        (skill,) = bank.skills()
        assert skill.cases[0].task == task and skill.cases[0].result == {"r": result}
        files = skill_files(skill, version=skill.version, stage=skill.stage)
        for name, text in files.items():
            assert (Path(tmp) / "b" / "skills" / skill.id / name).read_text() == text


def test_runs_that_leave_a_step_out_are_learned_as_one_skill_with_a_branch(
    tmp_path: Path,
) -> None:
    def run(tid: str, sku: str, available: int) -> Trajectory:
        from skillbank import Step

        steps = [Step("check_stock", {"sku": sku}, {"sku": sku, "available": available})]
        if available == 0:
            steps.append(
                Step("restock", {"sku": sku, "quantity": 10}, {"sku": sku, "available": 10})
            )
        return Trajectory(tid, f"Make sure {sku} is in stock", (), tuple(steps), Outcome(True))

    with SkillBank.init(tmp_path / "b") as bank:
        report = bank.learn([run("a", "S-1", 0), run("b", "S-2", 4), run("c", "S-3", 0)])
        assert report.added == ["restock_by_sku"] and not report.rejected
        skill = bank.get("restock_by_sku")
        assert 'if stock["available"] == 0:' in skill.source and len(skill.cases) == 3
        later = bank.learn([run("d", "S-4", 7)])  # a new run without the step joins the skill
        assert later.updated == ["restock_by_sku"] and later.added == []
        stock = {"S-9": 0}

        def check_stock(sku: str) -> dict[str, Any]:
            return {"sku": sku, "available": stock[sku]}

        def restock(sku: str, quantity: int) -> dict[str, Any]:
            stock[sku] += quantity
            return {"sku": sku, "available": stock[sku]}

        result = bank.run("restock_by_sku", {"sku": "S-9"}, {"check_stock": check_stock,
                                                                  "restock": restock})  # fmt: skip
        assert result.ok and result.value == {"sku": "S-9", "available": 10}


def test_learn_reports_empty_input_and_duplicates_for_what_they_are(
    tmp_path: Path, example_trajectories: list[Trajectory]
) -> None:
    from click.testing import CliRunner

    from skillbank.cli import cli

    with SkillBank.init(tmp_path / "b") as bank:
        empty = bank.learn([])
        assert empty.entries == () and empty.commit is None
        first, second = example_trajectories[0], example_trajectories[6]
        report = bank.learn([first, second, first])
        actions = [e.action for e in report.entries]
        assert actions[2] == "duplicate" and actions[0] in ("added", "updated")
        (dup,) = report.duplicates
        assert dup.skill_id == report.entries[0].skill_id and first.id in (dup.reason or "")
        assert sum(len(s.cases) for s in bank.skills()) == 2  # learned once
    runs = tmp_path / "empty.jsonl"
    runs.write_text("")
    result = CliRunner().invoke(cli, ["learn", str(runs), "--root", str(tmp_path / "b")])
    assert "no trajectories in the input: nothing to learn" in result.output


def test_a_new_run_that_sorts_first_keeps_the_description_and_the_version(
    tmp_path: Path, example_trajectories: list[Trajectory]
) -> None:
    # The docstring quotes one run's task; a new run of the same procedure whose id happens
    # to sort before every recorded one must not reword it (nor bump the version for it).
    with SkillBank.init(tmp_path / "b") as bank:
        bank.learn(example_trajectories, branch="current")
        skill = next(s for s in bank.skills() if s.tools == ("find_customer", "list_orders"))
        model = next(t for t in example_trajectories if t.id == skill.cases[0].trajectory_id)
        email = model.steps[0].arguments["email"]
        first = replace(model, id="000-sorts-first", task=f"Which orders has {email} made?")
        assert first.sha256 != model.sha256
        report = bank.learn([first], branch="current")
        assert [e.action for e in report.entries] == ["updated"]
        after = bank.get(skill.id)
        assert len(after.cases) == len(skill.cases) + 1  # the run is kept, as a case
        assert after.version == skill.version and report.versions[skill.id] == str(skill.version)
        assert (after.description, after.source) == (skill.description, skill.source)


@pytest.mark.slow  # starts a private one-machine Ray cluster (~10 s)
def test_executor_ray_runs_every_call_on_a_private_loopback_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # executor = "ray" without ray_address: the bank starts a one-machine cluster in this
    # process, on 127.0.0.1; the skill's host tools run here and the ledger records the call.
    import os
    import shutil

    from tests.conftest import REPO
    from tests.servers import missing, ray_env

    for key, value in ray_env().items():
        monkeypatch.setenv(key, value)
    # Ray's session folder (logs, sockets) in a short temp dir of this test, removed after.
    ray_tmp = Path(tempfile.mkdtemp(prefix="sbr", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    try:
        import ray
    except ImportError:
        missing("ray is not installed: pip install -e '.[test]'")
    if ray.is_initialized():
        ray.shutdown()
    root = tmp_path / "bank"
    SkillBank.init(root).close()
    shutil.copytree(
        REPO / "skills" / "list_orders_by_email", root / "skills" / "list_orders_by_email"
    )
    monkeypatch.setenv("SKILLBANK_EXECUTOR", "ray")
    monkeypatch.setenv("SKILLBANK_RAY_CALLS_PER_ACTOR", "3")
    seen: list[int] = []

    def find_customer(email: str) -> dict[str, Any]:
        seen.append(os.getpid())
        return {"customer_id": "C-1", "email": email, "name": "Ann"}

    def list_orders(customer_id: str) -> list[dict[str, Any]]:
        seen.append(os.getpid())
        return [{"order_id": "O-1", "customer_id": customer_id}]

    with SkillBank(root) as bank:
        result = bank.run(
            "list_orders_by_email", {"email": "ann@example.com"},
            {"find_customer": find_customer, "list_orders": list_orders},
        )  # fmt: skip
        assert result.ok, result
        assert type(bank.sandbox.executor).__name__ == "RayExecutor"
        assert bank.sandbox.executor.calls_per_actor == 3  # type: ignore[attr-defined]
        address = ray.get_runtime_context().gcs_address
        assert bank.ledger.counts()["list_orders_by_email"].successes == 1
    assert address.startswith("127.0.0.1:"), address
    assert seen == [os.getpid(), os.getpid()]
    assert not ray.is_initialized()  # the bank started Ray, so closing it stopped Ray
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _thread_recording(tools: dict[str, Any], threads: set[int]) -> dict[str, Any]:
    """``tools``, each noting the thread it was called on."""

    def wrap(function: Any) -> Any:
        def tool(**kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return function(**kwargs)

        return tool

    return {name: wrap(function) for name, function in tools.items()}


@pytest.mark.parametrize("inline", [False, True])
def test_sandbox_inline_tools_calls_host_tools_on_the_running_thread(
    learned: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    shop = Shop.create(tmp_path / "shop.sqlite")
    if inline:  # the configuration key, from the environment like any other
        monkeypatch.setenv("SKILLBANK_SANDBOX_INLINE_TOOLS", "true")
    threads: set[int] = set()
    with SkillBank(learned) as bank:
        assert bank.config.sandbox_inline_tools is inline
        result = bank.run(
            order_skill(bank), DEMO_ARGS["order_product"], _thread_recording(shop.tools(), threads)
        )
    assert result.ok, result.error
    assert len(result.tool_calls) == 4
    # Inline: every tool ran on this thread. Otherwise none did: helper threads ran them
    # (so the call's deadline could cut a hanging one short).
    assert (threads == {threading.get_ident()}) is inline
    assert (threading.get_ident() in threads) is inline
