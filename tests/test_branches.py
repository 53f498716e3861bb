"""Where commits go: every command that changes skills, on a review branch or in place.

With ``--branch auto`` (the default once a bank has commits) a command commits to a new
``skillbank/<verb>-...`` branch written with git plumbing: HEAD, the index and the working
tree never change, and agents keep being offered the checked-out branch. The tests here
check that contract for each verb besides ``learn`` (whose branch tests are in
test_versioning.py), against real git repositories.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from skillbank import SkillBank, TestedSkill, Trajectory
from skillbank.cli import cli
from skillbank.library import Commit, StoredChange
from skillbank.upkeep import find_duplicates, merge_duplicates, prune
from skillbank.versioning import Version


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def snapshot(root: Path) -> tuple[str, str, str, bytes]:
    """HEAD's branch and commit, the status, and the index's bytes: all a user could see."""
    return (
        git(root, "symbolic-ref", "--short", "HEAD"),
        git(root, "rev-parse", "HEAD"),
        git(root, "status", "--porcelain"),
        (root / ".git" / "index").read_bytes(),
    )


@pytest.fixture
def bank(tmp_path: Path, example_trajectories: list[Trajectory]):
    wanted = ("order_product", "order_history")
    runs = [t for t in example_trajectories if any(w in t.id for w in wanted)]
    with SkillBank.init(tmp_path / "bank") as b:
        b.learn(runs)  # a fresh bank: the first commit goes where HEAD is
        yield b


def order_skill(bank: SkillBank) -> str:
    return next(s.id for s in bank.skills() if s.id == "place_order_by_email_and_query")


def test_stages_commit_on_a_review_branch_and_leave_the_tree_alone(bank: SkillBank) -> None:
    sid = order_skill(bank)
    for _ in range(40):
        bank.ledger.record(sid, ok=True)
    before = snapshot(bank.root)
    changes = bank.update_stages()
    assert changes and all(isinstance(c.commit, Commit) for c in changes)
    branch = changes[0].commit.branch  # type: ignore[attr-defined]
    assert branch and branch.startswith("skillbank/stages-")
    assert all(c.commit.branch == branch for c in changes)  # type: ignore[attr-defined]
    assert snapshot(bank.root) == before
    assert bank.get(sid).stage == "associative"  # what agents see: the checked-out branch
    promoted = bank.library.load_at(sid, branch)
    assert promoted is not None and promoted.stage == "autonomous"
    # One commit per change, stacked on the one branch.
    assert int(git(bank.root, "rev-list", "--count", f"HEAD..{branch}")) == len(changes)


def test_dedup_puts_its_two_commits_on_one_branch(bank: SkillBank) -> None:
    sid = order_skill(bank)
    skill = bank.get(sid)
    source = skill.source.replace(sid, "order_one")
    # A run the kept skill has not seen: merging moves it over (the first commit).
    extra = replace(skill.cases[0], trajectory_id="another-run", trajectory_sha256="ab" * 32)
    tested = bank.check(skill.as_draft(id="order_one", source=source, cases=(extra,)))
    assert isinstance(tested, TestedSkill), tested
    bank.library.store(
        [StoredChange(tested, Version(1, 0, 0), "associative", "added")], "add order_one\n"
    )
    git(bank.root, "switch", "-q", "-c", "work")
    before = snapshot(bank.root)
    (pair,) = find_duplicates(bank.lifecycle)
    commit = merge_duplicates(bank.lifecycle, pair)
    assert isinstance(commit, Commit) and commit.branch and not commit.checked_out
    assert snapshot(bank.root) == before
    dropped = bank.library.load_at(pair.drop, commit)
    assert dropped is not None and dropped.deprecated_by == pair.keep
    log = git(bank.root, "log", "--format=%s", f"HEAD..{commit.branch}").splitlines()
    assert [line.split()[1].rstrip(":") for line in log] == ["deprecate", "dedup"]


def test_prune_removes_on_a_review_branch_without_touching_the_folder(bank: SkillBank) -> None:
    sid = order_skill(bank)
    for n in range(10):
        bank.ledger.record(sid, ok=n < 2, error=None if n < 2 else "boom")
    before = snapshot(bank.root)
    report = prune(bank.lifecycle)
    assert report.removed == [sid] and isinstance(report.commit, Commit)
    assert snapshot(bank.root) == before
    assert (bank.library.dir / sid / "skill.py").is_file()  # still here, in the working tree
    assert sid not in bank.library.ids_at(report.commit)  # gone on the branch
    assert sid in bank.library.ids_at("HEAD")


def test_rollback_and_deprecate_name_their_branch_in_the_cli(bank: SkillBank) -> None:
    sid = order_skill(bank)
    other = next(s.id for s in bank.skills() if s.id != sid)
    runner = CliRunner()
    root = ["--root", str(bank.root)]
    result = runner.invoke(cli, ["deprecate", sid, "--by", other, *root])
    assert result.exit_code == 0, result.output
    assert "on branch skillbank/deprecate-" in result.output
    assert "your working tree is unchanged" in result.output
    result = runner.invoke(cli, ["deprecate", sid, "--by", other, "--json", *root])
    data = __import__("json").loads(result.stdout)
    assert data["checked_out"] is False and data["branch"].startswith("skillbank/deprecate-")
    assert data["version"] == "1.0.1"  # read from the commit, not the unchanged working tree
    assert bank.get(sid).deprecated_by is None
    # In place, with --branch current.
    result = runner.invoke(cli, ["deprecate", sid, "--by", other, "--branch", "current", *root])
    assert result.exit_code == 0, result.output
    assert bank.get(sid).deprecated_by == other


def test_a_named_branch_takes_the_commits_of_several_commands(bank: SkillBank) -> None:
    sid = order_skill(bank)
    other = next(s.id for s in bank.skills() if s.id != sid)
    first = bank.deprecate(sid, by=other, branch="skillbank/upkeep")
    assert first.branch == "skillbank/upkeep" and not first.checked_out
    # The named branch now points past HEAD: a second command refuses to stack a change
    # decided on the working tree onto it, and says how to go on.
    for _ in range(40):
        bank.ledger.record(other, ok=True)
    with pytest.raises(Exception, match="exists but points to"):
        bank.update_stages(branch="skillbank/upkeep")
    git(bank.root, "switch", "-q", "skillbank/upkeep")
    (change,) = bank.update_stages([other])  # checked out: continues there (auto)
    assert replace(change).commit.branch == "skillbank/upkeep"  # type: ignore[attr-defined]
    assert change.commit.checked_out  # type: ignore[attr-defined]
