"""Versioning in plain git: semantic versions from the signature diff, learn branches,
history, diff, rollback and deprecation, on real temporary repositories."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skillbank import (
    LibraryError,
    Outcome,
    SkillBank,
    SkillNotFound,
    Step,
    TestedSkill,
    Trajectory,
    parse_version,
    required_bump,
    signature_diff,
)
from skillbank.cli import cli
from skillbank.library import StoredChange, skill_files
from skillbank.signature import read_signature
from skillbank.versioning import Version, bump

# --- helpers ----------------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def lookup(tid: str, k: str, mode: str) -> Trajectory:
    """One run of a procedure whose signature moves as runs arrive (see `versioned`)."""
    step = Step("get", {"k": k, "mode": mode}, {"v": k}, None, "c0")
    return Trajectory(tid, f"Look up {k} in {mode} mode", (), (step,), Outcome(True))


def get(k: str, mode: str) -> dict[str, Any]:
    return {"v": k}


CUSTOMERS = {"ann@x.io": "C-1", "bob@x.io": "C-2", "cy@x.io": "C-3"}
ORDERS = {"C-1": ["O-11", "O-12"], "C-2": ["O-21"], "C-3": ["O-31"]}


def find_customer(email: str) -> dict[str, Any]:
    return {"customer_id": CUSTOMERS[email], "email": email}


def list_orders(customer_id: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "orders": [{"order_id": o} for o in ORDERS[customer_id]]}


def get_order(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "total": 10.5}


SHOP = {"find_customer": find_customer, "list_orders": list_orders, "get_order": get_order}


def history_run(tid: str, email: str) -> Trajectory:
    c = find_customer(email)
    steps = (
        Step("find_customer", {"email": email}, c),
        Step("list_orders", {"customer_id": c["customer_id"]}, list_orders(c["customer_id"])),
    )
    return Trajectory(tid, f"Show the orders of {email}", (), steps, Outcome(True))


def latest_run(tid: str, email: str) -> Trajectory:
    h = history_run(tid, email)
    first = h.steps[1].result["orders"][0]["order_id"]
    steps = (*h.steps, Step("get_order", {"order_id": first}, get_order(first)))
    return Trajectory(tid, f"Open the latest order of {email}", (), steps, Outcome(True))


def orders_run(tid: str, customer_id: str) -> Trajectory:
    step = Step("list_orders", {"customer_id": customer_id}, list_orders(customer_id))
    return Trajectory(tid, f"List the orders of customer {customer_id}", (), (step,), Outcome(True))


@pytest.fixture
def versioned(tmp_path: Path) -> Iterator[SkillBank]:
    """A bank where ``get_skill`` went 1.0.0 -> 1.1.0 (a default appeared) -> 2.0.0 (gone)."""
    with SkillBank.init(tmp_path / "bank") as bank:
        assert bank.learn([lookup("a", "1", "fast")]).versions == {"get_skill": "1.0.0"}
        assert bank.learn([lookup("b", "2", "fast")], branch="current").versions == {
            "get_skill": "1.1.0"
        }
        assert bank.learn([lookup("c", "3", "slow")], branch="current").versions == {
            "get_skill": "2.0.0"
        }
        yield bank


# --- versions and signature diffs --------------------------------------------------------


def sig(params: str, returns: str = "dict", doc: str = "Do it.") -> Any:
    return read_signature(f'def f({params}) -> {returns}:\n    """{doc}"""\n    return {{}}\n')


@pytest.mark.parametrize(
    ("old", "new", "breaking", "said"),
    [
        pytest.param(sig("a: str, status: str"), sig("a: str"), True,
                     "parameter 'status' removed (breaking)", id="removed"),
        pytest.param(sig("a: str, status: str"), sig("a: str, state: str"), True,
                     "parameter 'status' renamed to 'state' (breaking)", id="renamed"),
        pytest.param(sig("a: str"), sig("a: str, limit: int"), True,
                     "parameter 'limit: int' added without a default (breaking)",
                     id="added-required"),
        pytest.param(sig("a: str"), sig("a: str, limit: int = 5"), False,
                     "parameter 'limit: int = 5' added with a default", id="added-default"),
        pytest.param(sig("a: str"), sig("a: int"), True,
                     "parameter 'a' type str -> int (breaking)", id="type-changed"),
        pytest.param(sig("a: str | None"), sig("a: str"), True,
                     "parameter 'a' type str | None -> str (breaking)", id="type-narrowed"),
        pytest.param(sig("a: str"), sig("a: str | None"), False,
                     "parameter 'a' type str -> str | None (widened)", id="widened-pipe"),
        pytest.param(sig("a: str"), sig("a: Optional[str]"), False,
                     "parameter 'a' type str -> Optional[str] (widened)", id="widened-optional"),
        pytest.param(sig("a: str"), sig("a: Union[int, str]"), False,
                     "parameter 'a' type str -> Union[int, str] (widened)", id="widened-union"),
        pytest.param(sig("a: list[str]"), sig("a: list[str | None]"), True,
                     "parameter 'a' type list[str] -> list[str | None] (breaking)",
                     id="inner-type-changed"),
        pytest.param(sig("a: int = 5"), sig("a: int"), True,
                     "parameter 'a' lost its default 5 (breaking)", id="default-removed"),
        pytest.param(sig("a: int = 5"), sig("a: int = 10"), False,
                     "default of parameter 'a' changed 5 -> 10", id="default-changed"),
        pytest.param(sig("a: int"), sig("a: int = 5"), False,
                     "parameter 'a' now has a default 5", id="default-added"),
        pytest.param(sig("a: str"), sig("a: str", returns="list"), True,
                     "return type dict -> list (breaking)", id="return-changed"),
        pytest.param(sig("a: str"), sig("a: str", returns="dict | None"), True,
                     "return type dict -> dict | None (breaking)", id="return-widened"),
        pytest.param(sig("a: str"), sig("a: str", doc="Do it well."), False,
                     "docstring changed", id="docstring"),
        pytest.param(sig("a: str, b: int"), sig("b: int, a: str"), False,
                     "parameters reordered (callers pass arguments by name)", id="reordered"),
    ],
)  # fmt: skip
def test_signature_diff(old: Any, new: Any, breaking: bool, said: str) -> None:
    change = signature_diff(old, new)
    assert change.breaking is breaking
    assert said in change.changes, change.changes


def test_signature_diff_of_equal_signatures_is_empty() -> None:
    change = signature_diff(sig("a: str, b: int = 1"), sig("a: str, b: int = 1"))
    assert change.breaking is False and change.changes == ()


BASE = 'def f(a: str) -> dict:\n    """Get a."""\n    return tools.get(a=a)\n'


@pytest.mark.parametrize(
    ("new", "new_description", "expected"),
    [
        pytest.param(BASE, "Get a.", None, id="identical"),
        pytest.param(BASE.replace("Get a.", "Fetch a."), "Get a.", "patch", id="docstring"),
        pytest.param(BASE, "Fetch a.", "patch", id="description"),
        pytest.param(BASE.replace("a=a", "a=a.strip()"), "Get a.", "minor", id="code"),
        pytest.param(BASE.replace("a: str)", "a: str, n: int = 1)"), "Get a.", "minor",
                     id="default-param"),
        pytest.param(BASE.replace("a: str)", "a: int)"), "Get a.", "major", id="breaking"),
        pytest.param("def f(:\n", "Get a.", "major", id="unreadable"),
    ],
)  # fmt: skip
def test_required_bump(new: str, new_description: str, expected: str | None) -> None:
    assert required_bump(BASE, "Get a.", new, new_description) == expected


@pytest.mark.parametrize(
    ("text", "version"),
    [("1", (1, 0, 0)), ("12", (12, 0, 0)), ("1.2.3", (1, 2, 3)), ("v1.2.0", (1, 2, 0)),
     (" 0.0.1 ", (0, 0, 1))],
)  # fmt: skip
def test_parse_version(text: str, version: tuple[int, int, int]) -> None:
    assert parse_version(text) == version
    assert str(parse_version(text)) == ".".join(map(str, version))


@pytest.mark.parametrize("text", ["", "x", "1.2", "1.2.3.4", "-1", "01", "1.02.0", "1.0.0-rc1"])
def test_parse_version_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH like '1\.2\.0'"):
        parse_version(text)


def test_bump() -> None:
    v = Version(1, 2, 3)
    assert (bump(v, "major"), bump(v, "minor"), bump(v, "patch")) == (
        (2, 0, 0), (1, 3, 0), (1, 2, 4),
    )  # fmt: skip
    assert str(bump(v, "minor")) == "1.3.0"


def test_version_is_one_value_defined_beside_skill() -> None:
    # skill.py holds it (a Skill's field), versioning re-exports the same class.
    import skillbank.skill
    import skillbank.versioning

    assert skillbank.versioning.Version is skillbank.skill.Version is skillbank.Version
    assert skillbank.versioning.parse_version is skillbank.skill.parse_version
    assert Version(1, 2, 0) < Version(1, 10, 0) and Version(2, 0, 0) > (1, 99, 99)


# --- learn branches ----------------------------------------------------------------------


def head_branch(root: Path) -> str:
    return git(root, "symbolic-ref", "--short", "HEAD").strip()


def test_learn_auto_branch_is_made_named_and_never_checked_out(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        first = bank.learn([lookup("a", "1", "fast")])
        base = head_branch(root)
        assert first.branch == base  # a fresh bank: the first commit goes where HEAD is
        runs = [lookup("b", "2", "fast"), lookup("d", "4", "fast")]
        second = bank.learn(runs)
        assert second.commit and second.branch
        digest = hashlib.sha256("\n".join(sorted(r.sha256 for r in runs)).encode()).hexdigest()
        assert re.fullmatch(rf"skillbank/learn-\d{{8}}-\d{{6}}-{digest[:8]}", second.branch)
        # The user stays where they were: HEAD, index and working tree did not move.
        assert head_branch(root) == base
        assert git(root, "rev-parse", "HEAD").strip() == first.commit
        assert git(root, "status", "--porcelain") == ""
        # Agents see the checked-out branch.
        assert bank.get("get_skill").version == Version(1, 0, 0)
        message = git(root, "log", "-1", "--format=%B", second.branch)
        for r in runs:
            assert f"- {r.id} sha256:{r.sha256}" in message
        assert "updated get_skill v1.0.0 -> v1.1.0" in message
        assert "minor: parameter 'mode' now has a default \"fast\"" in message
        assert git(root, "rev-parse", f"{second.commit}~1").strip() == first.commit
        changed = git(root, "show", "--name-only", "--format=", second.commit).split()
        assert changed and all(p.startswith("skills/get_skill/") for p in changed)
        # Checked out, the branch holds exactly what a commit in the working tree would.
        git(root, "switch", "-q", second.branch)
        switched = bank.get("get_skill")
        assert switched.version == Version(1, 1, 0) and len(switched.cases) == 3
        # A learn on a skillbank/ branch continues there (it is checked out).
        third = bank.learn([lookup("c", "3", "slow")])
        assert third.branch == second.branch
        assert git(root, "branch", "--list", "skillbank/*").count("skillbank/") == 1
        assert git(root, "rev-parse", f"{third.commit}~1").strip() == second.commit
        # Nothing to commit: no new branch.
        git(root, "switch", "-q", base)
        assert bank.learn([lookup("a", "1", "fast")]).branch is None
        assert git(root, "branch", "--list", "skillbank/*").count("skillbank/") == 1


def test_learn_keeps_dirty_and_staged_files_of_the_working_tree(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn([lookup("a", "1", "fast")])
        (root / "notes.txt").write_text("v1\n")
        (root / "staged.txt").write_text("s1\n")
        git(root, "add", "notes.txt", "staged.txt")
        git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "notes")
        (root / "notes.txt").write_text("v2, not committed\n")
        (root / "staged.txt").write_text("s2, staged\n")
        git(root, "add", "staged.txt")
        (root / "scratch.txt").write_text("untracked\n")
        before = git(root, "status", "--porcelain")
        index = (root / ".git" / "index").read_bytes()
        report = bank.learn([lookup("b", "2", "fast")])
        assert report.branch and report.branch.startswith("skillbank/learn-")
    assert (root / "notes.txt").read_text() == "v2, not committed\n"
    assert (root / "staged.txt").read_text() == "s2, staged\n"
    assert (root / "scratch.txt").read_text() == "untracked\n"
    assert git(root, "status", "--porcelain") == before
    assert (root / ".git" / "index").read_bytes() == index
    # The commit holds the skill only: nothing of the user's dirty or staged work.
    changed = git(root, "show", "--name-only", "--format=", report.branch).split()
    assert changed and all(p.startswith("skills/get_skill/") for p in changed)
    assert git(root, "show", f"{report.branch}:staged.txt") == "s1\n"


def test_learn_on_current_or_a_named_branch(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn([lookup("a", "1", "fast")])
        base = head_branch(root)
        assert bank.learn([lookup("b", "2", "fast")], branch="current").branch == base
        head = git(root, "rev-parse", "HEAD").strip()
        named = bank.learn([lookup("c", "3", "slow")], branch="team/skills")
        assert named.branch == "team/skills" and head_branch(root) == base
        assert git(root, "rev-parse", "team/skills~1").strip() == head
        # An existing branch that points elsewhere holds other skills than the working tree
        # this learn decided on: refused, nothing changes.
        with pytest.raises(LibraryError, match="'team/skills' exists but points to"):
            bank.learn([lookup("d", "4", "slow")], branch="team/skills")
        assert git(root, "rev-parse", "team/skills").strip() == named.commit
        with pytest.raises(LibraryError, match="not a valid git branch name"):
            bank.learn([lookup("d", "4", "slow")], branch="bad..name")


def test_a_moved_branch_is_refused_not_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn([lookup("a", "1", "fast")])
        target = bank.library.branch_for("team/skills", "learn")
        assert target.new and not target.checked_out
        git(root, "branch", "team/skills")  # another writer made it meanwhile
        tested = bank.check(bank.get("get_skill").as_draft(description="Other words."))
        assert isinstance(tested, TestedSkill)
        change = StoredChange(tested, Version(1, 0, 1), "cognitive", "updated")
        with pytest.raises(LibraryError, match="moved while this change was being written"):
            bank.library.store([change], "doc\n", branch=target)
        assert (
            git(root, "rev-parse", "team/skills").strip() == git(root, "rev-parse", "HEAD").strip()
        )


def test_learn_branch_from_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn([lookup("a", "1", "fast")])
    monkeypatch.setenv("SKILLBANK_BRANCH", "current")
    with SkillBank(root) as bank:
        base = git(root, "symbolic-ref", "--short", "HEAD").strip()
        assert bank.config.branch == "current"
        assert bank.learn([lookup("b", "2", "fast")]).branch == base
    # The key's old name still works, with a warning naming the new one.
    monkeypatch.delenv("SKILLBANK_BRANCH")
    monkeypatch.setenv("SKILLBANK_LEARN_BRANCH", "team/skills")
    with pytest.warns(DeprecationWarning, match="'branch'"), SkillBank(root) as bank:
        assert bank.config.branch == "team/skills"


def test_hooks_run_on_the_checked_out_branch_not_on_review_branches(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn([lookup("a", "1", "fast")])
        base = head_branch(root)
        head = git(root, "rev-parse", "HEAD").strip()
        hook = root / ".git" / "hooks" / "pre-commit"
        hook.write_text("#!/bin/sh\nexit 1\n")
        hook.chmod(0o755)
        with pytest.raises(LibraryError, match="restored"):
            bank.learn([lookup("b", "2", "fast")], branch="current")
        assert git(root, "rev-parse", "HEAD").strip() == head
        assert git(root, "status", "--porcelain") == ""
        # A review branch is written with plumbing (no hook); CI gates its pull request.
        report = bank.learn([lookup("b", "2", "fast")])
        assert report.branch and report.branch.startswith("skillbank/learn-")
    assert head_branch(root) == base and git(root, "rev-parse", "HEAD").strip() == head


# --- reading at a revision, history, diff, rollback ---------------------------------------


def test_load_at_and_ids_at_read_old_revisions(versioned: SkillBank) -> None:
    lib = versioned.library
    (newest, middle, oldest) = lib.history("get_skill")
    old = lib.load_at("get_skill", oldest.commit)
    assert old is not None and old.version == Version(1, 0, 0) and len(old.cases) == 1
    assert old.signature.render() == "get_skill(k: str, mode: str) -> dict"
    assert lib.load_at("get_skill", "HEAD") == versioned.get("get_skill")
    assert lib.load_at("no_such_skill", "HEAD") is None
    assert lib.ids_at(oldest.commit) == ["get_skill"] == lib.ids_at("HEAD")
    with pytest.raises(LibraryError, match="names no commit"):
        lib.load_at("get_skill", "no-such-rev")
    with pytest.raises(LibraryError, match="names no commit"):
        lib.ids_at("--all")


def test_history_diff_rollback_round_trip(versioned: SkillBank) -> None:
    entries = versioned.history("get_skill")
    assert [e.version for e in entries] == ["2.0.0", "1.1.0", "1.0.0"]
    assert entries[-1].stage == "cognitive" and entries[0].stage == "associative"
    assert entries[0].content_hash == versioned.get("get_skill").content_hash
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", entries[0].date)
    assert entries[0].subject == "skillbank learn: update 1 skill(s)"

    text = versioned.diff("get_skill")  # the previous version against the working tree
    assert text.startswith("skillbank diff get_skill: 1.1.0 (")
    assert "needs a major bump; the signature change is BREAKING" in text
    assert "parameter 'mode' lost its default \"fast\" (breaking)" in text
    assert text.index("skills/get_skill/skill.py") < text.index("skills/get_skill/SKILL.md")
    assert '-def get_skill(k: str, mode: str = "fast") -> dict:' in text
    assert "+def get_skill(k: str, mode: str) -> dict:" in text
    same = versioned.diff("get_skill", "v1", "1.0.0")
    assert "(no differences)" in same
    by_rev = versioned.diff("get_skill", entries[1].commit, "HEAD")
    assert by_rev.split("\n", 1)[1] == text.split("\n", 1)[1]

    root = versioned.root
    before = git(root, "rev-parse", "HEAD").strip()
    commit = versioned.rollback("get_skill", "1.1.0", branch="current")
    skill = versioned.get("get_skill")
    old = versioned.library.load_at("get_skill", entries[1].commit)
    assert old is not None
    assert skill.version == Version(2, 1, 0)  # a default comes back: minor, and never backwards
    # The code comes back; the run learned since ("c", slow mode) is still true of the world
    # and the restored code reproduces it, so it stays a case.
    assert skill.source == old.source
    assert [c.trajectory_id for c in skill.cases] == [*(c.trajectory_id for c in old.cases), "c"]
    assert git(root, "rev-parse", f"{commit}~1").strip() == before
    assert git(root, "log", "-1", "--format=%s").strip() == (
        "skillbank rollback get_skill to 2.1.0 (restores code of 1.1.0)"
    )
    assert "Kept 1 case(s) learned after 1.1.0" in git(root, "log", "-1", "--format=%b")
    assert [e.version for e in versioned.history("get_skill")] == [
        "2.1.0", "2.0.0", "1.1.0", "1.0.0",
    ]  # fmt: skip
    assert git(root, "status", "--porcelain") == ""
    # Rolling back to the code it now has is refused; an unknown version is an error.
    with pytest.raises(LibraryError, match="nothing to roll back"):
        versioned.rollback("get_skill", "2.1.0")
    with pytest.raises(LibraryError, match=r"no version 9\.0\.0 .*its versions: 2\.1\.0"):
        versioned.rollback("get_skill", "9")
    with pytest.raises(SkillNotFound):
        versioned.rollback("no_such_skill", "1.0.0")
    assert versioned.rollback("get_skill", "1.0.0", branch="current") and versioned.get(
        "get_skill"
    ).version == Version(3, 0, 0)


def test_rollback_leaves_out_only_the_later_cases_the_old_code_cannot_reproduce(
    tmp_path: Path,
) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn([lookup("a", "1", "fast")])
        first = bank.get("get_skill")
        bank.learn([lookup("b", "2", "fast")], branch="current")
        root = bank.root
        # A later case no version of the code reproduces: it records a call with another key.
        cases = root / "skills" / "get_skill" / "cases.jsonl"
        forged = json.loads(cases.read_text().splitlines()[-1])
        forged.update(trajectory_id="z", trajectory_sha256="0" * 64)
        forged["calls"][0]["arguments"]["k"] = "999"
        cases.write_text(cases.read_text() + json.dumps(forged) + "\n")
        git(root, "-c", "user.name=t", "-c", "user.email=t@x.io", "commit", "-qam", "hand-added")
        bank.rollback("get_skill", str(first.version), branch="current")
        restored = bank.get("get_skill")
    assert restored.source == first.source
    assert [c.trajectory_id for c in restored.cases] == ["a", "b"]
    body = git(root, "log", "-1", "--format=%b")
    assert "Kept 1 case(s) learned after" in body and ": b." in body
    assert "Left out 1 case(s) learned after" in body and ": z." in body


# --- deprecation -------------------------------------------------------------------------


def test_a_deprecated_skill_and_its_callers_keep_running(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn([history_run("h1", "ann@x.io"), history_run("h2", "bob@x.io")])
        runs = [latest_run("l1", "ann@x.io"), latest_run("l2", "cy@x.io")]
        (latest,) = bank.learn(runs, branch="current").added
        assert bank.get(latest).requires == ("list_orders_by_email",)
        runs = [orders_run("o1", "C-1"), orders_run("o2", "C-2")]
        (replacement,) = bank.learn(runs, branch="current").added
        with pytest.raises(SkillNotFound):
            bank.deprecate("list_orders_by_email", by="no_such_skill")
        with pytest.raises(LibraryError, match="circle"):
            bank.deprecate("list_orders_by_email", by="list_orders_by_email")

        commit = bank.deprecate("list_orders_by_email", by=replacement, branch="current")
        old = bank.get("list_orders_by_email")
        assert old.deprecated_by == replacement and old.version == Version(1, 0, 1)
        message = git(bank.root, "log", "-1", "--format=%B")
        assert message.startswith(f"skillbank deprecate list_orders_by_email: use {replacement}")
        assert f"Required by: {latest}" in message
        assert bank.deprecate("list_orders_by_email", by=replacement) == commit  # same commit
        assert bank.history("list_orders_by_email")[0].deprecated_by == replacement
        with pytest.raises(LibraryError, match="circle"):
            bank.deprecate(replacement, by="list_orders_by_email")

        result = bank.run("list_orders_by_email", {"email": "bob@x.io"}, SHOP)
        assert result.ok and result.value["orders"] == [{"order_id": "O-21"}]
        assert result.warning and result.warning.startswith(f"deprecated: use {replacement}")
        assert result.to_json()["warning"] == result.warning
        composed = bank.run(latest, {"email": "bob@x.io"}, SHOP)
        assert composed.ok and composed.value == {"order_id": "O-21", "total": 10.5}
        assert composed.warning is None
        # Learning more runs of it keeps it deprecated (cases only: no version change).
        assert bank.learn([history_run("h3", "cy@x.io")]).versions == {
            "list_orders_by_email": "1.0.1"
        }
        assert bank.get("list_orders_by_email").deprecated_by == replacement
        meta = (bank.root / "skills" / "list_orders_by_email" / "SKILL.md").read_text()
        assert f"  deprecated_by: {replacement}\n" in meta and "**Deprecated:**" in meta


def test_a_renamed_skill_keeps_its_old_id_as_a_hidden_alias(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn([history_run("h1", "ann@x.io"), history_run("h2", "bob@x.io")])
        runs = [latest_run("l1", "ann@x.io"), latest_run("l2", "cy@x.io")]
        (latest,) = bank.learn(runs, branch="current").added
        old = bank.get("list_orders_by_email")
        with pytest.raises(LibraryError, match="not a skill id"):
            bank.rename("list_orders_by_email", "Bad-Name")
        with pytest.raises(LibraryError, match="is taken"):
            bank.rename("list_orders_by_email", latest)
        with pytest.raises(SkillNotFound):
            bank.rename("no_such_skill", "other")

        bank.rename("list_orders_by_email", "customer_orders", branch="current")
        new = bank.get("customer_orders")
        assert new.source == old.source.replace("def list_orders_by_email(", "def customer_orders(")
        assert new.version == Version(1, 1, 0) and new.stage == old.stage
        assert len(new.cases) == len(old.cases)
        message = git(bank.root, "log", "-1", "--format=%B")
        assert message.startswith("skillbank rename list_orders_by_email -> customer_orders")
        assert f"Required as list_orders_by_email by: {latest}" in message
        # Hidden from listings and search; callable everywhere an id is taken.
        assert [s.id for s in bank.skills()] == sorted(["customer_orders", latest])
        assert bank.library.aliases() == {"list_orders_by_email": "customer_orders"}
        assert bank.get("list_orders_by_email").id == "customer_orders"
        result = bank.run("list_orders_by_email", {"email": "bob@x.io"}, SHOP)
        assert result.ok and result.value["orders"] == [{"order_id": "O-21"}]
        called = json.loads(
            bank.call_tool("list_orders_by_email", json.dumps({"email": "bob@x.io"}), SHOP)
        )
        assert called["ok"] is True
        composed = bank.run(latest, {"email": "bob@x.io"}, SHOP)  # requires the old id
        assert composed.ok and composed.value == {"order_id": "O-21", "total": 10.5}
        # An alias is not a skill of its own: it cannot be renamed.
        with pytest.raises(LibraryError, match="already an alias"):
            bank.rename("list_orders_by_email", "third")
        out = CliRunner().invoke(cli, ["gate", "--root", str(bank.root), "--fast"])
        assert out.exit_code == 0, out.output
        assert "SBG304" in out.output  # the caller still names the old id: a warning

        # An alias that names nothing fails the gate, with its path.
        alias = bank.root / "skills" / "list_orders_by_email" / "alias.json"
        alias.write_text('{"alias_of": "gone"}\n')
        out = CliRunner().invoke(cli, ["gate", "--root", str(bank.root), "--fast"])
        assert out.exit_code == 1
        assert "skills/list_orders_by_email/alias.json:1:0: SBG305 [error]" in out.output

        # The CLI says what happened, on a review branch by default.
        alias.write_text('{"alias_of": "customer_orders"}\n')
        git(bank.root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "fix")
        out = CliRunner().invoke(
            cli,
            ["rename", "customer_orders", "orders_of_customer", "--root", str(bank.root), "--json"],
        )
        assert out.exit_code == 0, out.output
        data = json.loads(out.output)
        assert data["skill_id"] == "orders_of_customer" and data["branch"].startswith(
            "skillbank/rename-"
        )
        assert bank.get("customer_orders").id == "customer_orders"  # not merged yet


def test_a_library_with_whole_number_versions_reads_as_semver(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn([lookup("a", "1", "fast")])
        meta = root / "skills" / "get_skill" / "SKILL.md"
        meta.write_text(meta.read_text().replace("version: 1.0.0", "version: '1'"))
        git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "old format")
        skill = bank.get("get_skill")
        assert skill.version == Version(1, 0, 0)
        assert [e.version for e in bank.history("get_skill")] == ["1.0.0", "1.0.0"]
        files = skill_files(skill, version=skill.version, stage=skill.stage)
        assert "  version: 1.0.0\n" in files["SKILL.md"]
        assert bank.learn([lookup("b", "2", "fast")], branch="current").versions == {
            "get_skill": "1.1.0"
        }
        meta.write_text(meta.read_text().replace("version: 1.1.0", "version: '1.5'"))
        with pytest.raises(LibraryError, match=r"metadata.version must be a version like '1.2.0'"):
            bank.get("get_skill")


# --- the commands ------------------------------------------------------------------------


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def test_cli_history_diff_rollback(runner: CliRunner, versioned: SkillBank) -> None:
    root = ["--root", str(versioned.root)]
    result = runner.invoke(cli, ["history", "get_skill", *root, "--json"])
    assert result.exit_code == 0, result.output
    assert [e["version"] for e in json.loads(result.stdout)] == ["2.0.0", "1.1.0", "1.0.0"]
    result = runner.invoke(cli, ["history", "get_skill", *root])
    assert result.exit_code == 0 and "1.1.0" in result.output
    result = runner.invoke(cli, ["diff", "get_skill", *root])
    assert result.exit_code == 0 and "BREAKING" in result.output
    result = runner.invoke(cli, ["diff", "get_skill", "1.0.0", "1.1.0", *root])
    assert result.exit_code == 0 and "now has a default" in result.output
    result = runner.invoke(
        cli, ["rollback", "get_skill", "1.1.0", "--branch", "current", *root, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == "2.1.0"
    result = runner.invoke(cli, ["list", *root, "--json"])
    assert json.loads(result.stdout)[0]["version"] == "2.1.0"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["history", "nope"], "no skill 'nope'"),
        (["diff", "nope"], "no skill 'nope'"),
        (["diff", "get_skill", "7.0.0"], "no version 7.0.0"),
        (["diff", "get_skill", "not-a-rev"], "is not a git revision either"),
        (["rollback", "nope", "1.0.0"], "no skill 'nope'"),
        (["rollback", "get_skill", "4.5.6"], "no version 4.5.6"),
        (["deprecate", "nope", "--by", "get_skill"], "no skill 'nope'"),
        (["deprecate", "get_skill", "--by", "nope"], "no skill 'nope'"),
    ],
)
def test_cli_version_commands_exit_1_on_unknown_skill_or_version(
    runner: CliRunner, versioned: SkillBank, args: list[str], words: str
) -> None:
    result = runner.invoke(cli, [*args, "--root", str(versioned.root)])
    assert result.exit_code == 1, result.output
    assert words in result.output and "Traceback" not in result.output


def test_cli_deprecate_list_and_run_warn(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn([history_run("h1", "ann@x.io"), history_run("h2", "bob@x.io")])
        runs = [orders_run("o1", "C-1"), orders_run("o2", "C-2")]
        (replacement,) = bank.learn(runs, branch="current").added
    at = ["--root", str(root)]
    result = runner.invoke(
        cli,
        ["deprecate", "list_orders_by_email", "--by", replacement, "--branch", "current", *at],
    )
    assert result.exit_code == 0, result.output
    assert f"use {replacement}" in result.output and "v1.0.1" in result.output
    result = runner.invoke(cli, ["list", *at])
    assert f"deprecated: use {replacement}" in result.output
    listed = json.loads(runner.invoke(cli, ["list", *at, "--json"]).stdout)
    assert {s["id"]: s["deprecated_by"] for s in listed} == {
        "list_orders_by_email": replacement, replacement: None,
    }  # fmt: skip
    args = ["run", "list_orders_by_email", "--args", '{"email": "ann@x.io"}', "--json",
            "--tools", "tests.test_versioning:SHOP", *at]  # fmt: skip
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"warning: list_orders_by_email: deprecated: use {replacement}" in result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_cli_learn_says_where_the_commit_went(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "bank"
    runs = tmp_path / "runs.jsonl"

    def record(t: Trajectory) -> str:
        messages: list[dict[str, Any]] = [{"role": "user", "content": t.task}]
        for n, s in enumerate(t.steps):
            call = {"id": f"c{n}", "type": "function",
                    "function": {"name": s.tool, "arguments": json.dumps(s.arguments)}}  # fmt: skip
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": f"c{n}",
                             "content": json.dumps(s.result)})  # fmt: skip
        return json.dumps({"id": t.id, "task": t.task, "messages": messages})

    runs.write_text(record(lookup("a", "1", "fast")) + "\n")
    assert runner.invoke(cli, ["init", str(root)]).exit_code == 0
    result = runner.invoke(cli, ["learn", str(runs), "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "on branch" in result.output
    runs.write_text(record(lookup("b", "2", "fast")) + "\n")
    result = runner.invoke(cli, ["learn", str(runs), "--root", str(root), "--json"])
    first_json = result.stdout
    branch = json.loads(first_json)["branch"]
    assert result.exit_code == 0 and branch.startswith("skillbank/learn-")
    assert json.loads(result.stdout)["checked_out"] is False
    runs.write_text(record(lookup("c", "3", "slow")) + "\n")
    result = runner.invoke(cli, ["learn", str(runs), "--root", str(root)])
    other = next(w for w in result.output.split() if w.startswith("skillbank/learn-"))
    assert other != branch  # each learn from main is its own review branch
    assert f"on branch {other}" in result.output
    assert "your working tree is unchanged" in result.output
    base = git(root, "symbolic-ref", "--short", "HEAD").strip()  # master or main: the real one
    assert json.loads(first_json)["base_branch"] == base
    assert f"  git switch {other}\n  skillbank review --base {base}\n" in result.output
    assert f"  git push -u origin {other}\n" in result.output
    result = runner.invoke(cli, ["learn", str(runs), "--root", str(root), "--branch", "a..b"])
    assert result.exit_code == 1 and "not a valid git branch name" in result.output
