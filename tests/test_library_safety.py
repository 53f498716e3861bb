"""The library survives concurrent writers and a full disk: nothing is lost or corrupted.

Real processes learn into one real git repository at the same time; a file-size limit
(RLIMIT_FSIZE, what a full disk looks like to a writer: EFBIG on write) makes writes fail
part-way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from skillbank import SkillBank, load_trajectories
from tests.conftest import EXAMPLE_TRAJECTORIES as TRAJECTORIES

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from skillbank import SkillBank, load_trajectories
    root, first, last, branch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    runs = load_trajectories(sys.argv[5])[first:last]
    with SkillBank(root) as bank:
        report = bank.learn(runs, branch=branch)
    print(json.dumps({"added": report.added, "updated": report.updated}))
    """
)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def _learner(root: Path, first: int, last: int, branch: str = "current") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(root), str(first), str(last), branch, str(TRAJECTORIES)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_learns_at_once_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    SkillBank.init(root).close()
    # Two halves of the example runs, learned by two processes started together, and a
    # third process learning everything again (all three contend for the same lock).
    procs = [_learner(root, 0, 21), _learner(root, 21, 42), _learner(root, 0, 42)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outs.append(json.loads(out))
    with SkillBank(root) as bank:
        skills = {s.id: s for s in bank.skills()}
    # What one process learning everything at once produces.
    with SkillBank.init(tmp_path / "reference") as ref_bank:
        ref_bank.learn(load_trajectories(TRAJECTORIES), branch="current")
        expected = {s.id: s for s in ref_bank.skills()}
    assert set(skills) == set(expected)
    for sid, skill in skills.items():
        # Every run learned by any process is a case of its skill: nothing was overwritten.
        assert {c.trajectory_id for c in skill.cases} == {
            c.trajectory_id for c in expected[sid].cases
        }
    assert _git(root, "status", "--porcelain") == ""
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=root, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    # Each process that changed something made exactly one commit.
    commits = _git(root, "log", "--format=%s").splitlines()
    changed = sum(1 for o in outs if o["added"] or o["updated"])
    assert len(commits) == changed


def _limited_learn(root: Path, limit: int) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from skillbank import SkillBank, load_trajectories
        from skillbank.errors import LibraryError
        with SkillBank({str(root)!r}) as bank:
            try:
                bank.learn(load_trajectories({str(TRAJECTORIES)!r}), branch="current")
            except LibraryError as exc:
                print(type(exc).__name__ + ":", exc)
                sys.exit(1)
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "skills").rglob("*"))
        if p.is_file()
    }


def test_a_full_disk_part_way_leaves_library_and_history_as_they_were(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn(load_trajectories(TRAJECTORIES)[:6], branch="current")
    before, head = _tree(root), _git(root, "rev-parse", "HEAD")
    # Large enough for Python and small files, too small for the bigger skill files.
    proc = _limited_learn(root, 6000)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # Its own type, not a generic library error: the user is told to free space.
    assert "DiskFull:" in proc.stdout
    assert "nothing was changed" in proc.stdout or "restored" in proc.stdout, proc.stdout
    assert _tree(root) == before
    assert _git(root, "rev-parse", "HEAD") == head
    assert _git(root, "status", "--porcelain", "--", "skills") == ""
    assert not list((root / "skills").rglob("*.tmp")), "temporary files were left behind"
    # And the library still works: a learn without the limit succeeds.
    with SkillBank(root) as bank:
        report = bank.learn(load_trajectories(TRAJECTORIES), branch="current")
    assert report.commit is not None
    assert os.path.isdir(root / "skills")


def test_one_broken_skill_folder_leaves_the_rest_working(tmp_path: Path) -> None:
    import json as _json

    from click.testing import CliRunner

    from skillbank.cli import cli
    from skillbank.examples import Shop

    runs = load_trajectories(TRAJECTORIES)
    history = [t for t in runs if "order_history" in t.id]
    others = [t for t in runs if "order_history" not in t.id]
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn(others)
        ids = [s.id for s in bank.skills()]
        syntax, cases = ids[0], ids[1]
        (root / "skills" / syntax / "skill.py").write_text("def broken(:\n")
        (root / "skills" / cases / "cases.jsonl").unlink()
        assert sorted(b.id for b in bank.broken()) == sorted([syntax, cases])
        alive = [s.id for s in bank.skills()]
        assert syntax not in alive and cases not in alive and len(alive) == len(ids) - 2
        offered = [t["function"]["name"] for t in bank.tool_specs(stages=("cognitive",
                   "associative", "autonomous"))]  # fmt: skip
        assert syntax not in offered and cases not in offered
        assert bank.search("cancel my pending order") is not None
        # Learning unrelated runs works, and writes no new skill over a broken folder.
        report = bank.learn(history, branch="current")
        assert report.added and not {syntax, cases} & set(report.added)
        # An agent calling the broken skill is told it is unavailable, not that skillbank
        # has a bug; the others still run.
        tools = Shop.create(tmp_path / "shop.sqlite").tools()
        answer = _json.loads(bank.call_tool(syntax, "{}", tools))
        assert answer["error"]["type"] == "unavailable" and syntax in answer["error"]["message"]
    runner = CliRunner()
    result = runner.invoke(cli, ["list", "--root", str(root)])
    assert result.exit_code == 1
    assert f"broken: {syntax}:" in result.output and f"broken: {cases}:" in result.output
    assert report.added[0] in result.output
    rows = _json.loads(runner.invoke(cli, ["list", "--json", "--root", str(root)]).stdout)
    assert {r["id"] for r in rows if r.get("broken")} == {syntax, cases}


def test_a_batch_of_two_thousand_runs_learns_in_one_commit(tmp_path: Path) -> None:
    # The commit message names 200 trajectories and counts the rest; message and paths go
    # to git through a file and stdin, so no batch meets the command line's length limit.
    from skillbank import Outcome, Step, Trajectory
    from skillbank.learning import MESSAGE_TRAJECTORIES

    runs = [
        Trajectory(
            f"run-{i:05d}",
            f"Set K{i} to {i}",
            (),
            (Step(f"set_value_{i % 20}", {"key": f"K{i}", "value": i}, {"ok": True}),),
            Outcome(True),
        )
        for i in range(2000)
    ]
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        report = bank.learn(runs)
        assert report.commit and len(report.added) == 20 and not report.rejected
        cases = sum(len(s.cases) for s in bank.skills())
    assert cases == 2000
    message = subprocess.run(
        ["git", "log", "-1", "--format=%B"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert message.count(" sha256:") == MESSAGE_TRAJECTORIES
    assert f"and {2000 - MESSAGE_TRAJECTORIES} more" in message
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert status.strip() in ("", "?? .skillbank/")
