"""Our pre-commit hooks, run by the real `pre-commit` tool on a temporary skills repository.

``pre-commit try-repo`` installs this repository into a fresh hook environment exactly as a
user's ``.pre-commit-config.yaml`` entry would, then runs the hook on the files given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skillbank import SkillBank, load_trajectories
from tests.conftest import EXAMPLE_TRAJECTORIES, REPO

HISTORY = "list_orders_by_email"


def _pre_commit() -> list[str]:
    exe = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("pre-commit is part of the test dependencies; install '.[test]'")
    return [exe]


def _snapshot_of_this_repo(dest: Path) -> Path:
    """This working tree (tracked and new files, not ignored ones) as a one-commit repo.

    ``try-repo`` reads the hook manifest and installs the package from a commit, so a file
    not committed yet (while developing) would otherwise be missing.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, listed):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
            cwd=dest, check=True, capture_output=True,
        )  # fmt: skip
    return dest


# Slow: pre-commit pip-installs this repository into a fresh hook environment (65-80 s).
@pytest.mark.slow
def test_the_hooks_block_an_unsafe_skill_and_pass_a_good_one(tmp_path: Path) -> None:
    hooks_repo = _snapshot_of_this_repo(tmp_path / "skillbank-src")
    bank_root = tmp_path / "skills-repo"
    bank_root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=bank_root, check=True)
    with SkillBank.init(bank_root) as bank:
        runs = [t for t in load_trajectories(EXAMPLE_TRAJECTORIES) if "order_history" in t.id]
        bank.learn(runs, branch="current")
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "SKILLBANK_PROVE_EXAMPLES": "5",
    }
    skill = bank_root / "skills" / HISTORY / "skill.py"

    def hook(hook_id: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_pre_commit(), "try-repo", str(hooks_repo), hook_id, "--verbose", *args],
            cwd=bank_root, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip

    good = hook("skillbank-validate", "--files", str(skill.relative_to(bank_root)))
    assert good.returncode == 0, good.stdout + good.stderr
    skill.write_text(
        skill.read_text().replace("    customer =", "    import os\n    customer =", 1)
    )
    bad = hook("skillbank-validate", "--files", str(skill.relative_to(bank_root)))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "SB201" in bad.stdout and f"skills/{HISTORY}/skill.py" in bad.stdout
    # The slower hook runs the whole gate before a push; it finds the same problem by
    # running the checks, and passes once the change is undone.
    pushed = hook("skillbank-gate", "--hook-stage", "pre-push", "--all-files")
    assert pushed.returncode == 1 and "SB201" in pushed.stdout, pushed.stdout
    subprocess.run(["git", "checkout", "--", "skills"], cwd=bank_root, check=True)
    pushed = hook("skillbank-gate", "--hook-stage", "pre-push", "--all-files")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
