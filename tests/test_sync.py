"""Replicas over one git remote: following merges without a restart (a fetch on an interval,
the ``POST /sync`` webhook of ``serve --http``), and learners writing separate branches.
Real git repositories in temp dirs and real ``skillbank serve`` processes on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from skillbank import SkillBank
from skillbank.config import load_config
from skillbank.errors import ConfigError
from skillbank.library import git
from skillbank.sync import Follower, sync
from tests.conftest import REPO
from tests.servers import free_port

FIRST, SECOND = "list_orders_by_email", "cancel_order_by_email"


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A bare remote holding a bank with one skill, and an author's clone of it."""
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "Ann Author")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "ann@example.com")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    author = tmp_path / "author"
    subprocess.run(["git", "clone", "-q", str(origin), str(author)], check=True,
                   capture_output=True)  # fmt: skip
    git(author, "checkout", "-q", "-b", "main")
    (author / "skills").mkdir()
    _add_skill(author, FIRST)
    git(author, "push", "-q", "-u", "origin", "main")
    yield origin, author


def _add_skill(clone: Path, skill_id: str) -> None:
    """Someone adds a skill and it is merged on main (here: committed there)."""
    shutil.copytree(REPO / "skills" / skill_id, clone / "skills" / skill_id)
    git(clone, "add", "skills")
    git(clone, "commit", "-q", "-m", f"add {skill_id}")


def _replica(origin: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(where)], check=True,
                   capture_output=True)  # fmt: skip
    return where


def test_a_replica_follows_a_merge_without_a_restart(
    remote: tuple[Path, Path], tmp_path: Path
) -> None:
    origin, author = remote
    with SkillBank(_replica(origin, tmp_path / "replica")) as bank:
        assert [s.id for s in bank.skills()] == [FIRST]
        nothing = sync(bank.library)  # the upstream, origin/main
        assert not nothing.updated and nothing.error is None
        _add_skill(author, SECOND)
        git(author, "push", "-q", "origin", "main")
        moved = sync(bank.library, "origin/main")
        assert moved.updated and moved.after != moved.before and moved.error is None
        assert [s.id for s in bank.skills()] == [SECOND, FIRST]  # same object, no restart


def test_a_replica_that_diverged_keeps_serving_and_says_why(
    remote: tuple[Path, Path], tmp_path: Path
) -> None:
    origin, author = remote
    replica = _replica(origin, tmp_path / "replica")
    (replica / "local.txt").write_text("a commit made on the replica itself\n")
    git(replica, "add", "local.txt")
    git(replica, "commit", "-q", "-m", "local")
    _add_skill(author, SECOND)
    git(author, "push", "-q", "origin", "main")
    with SkillBank(replica) as bank:
        result = Follower(bank.library, "origin/main").trigger()
        assert not result.updated and result.error is not None
        assert "cannot fast-forward to origin/main" in result.error
        assert [s.id for s in bank.skills()] == [FIRST]


def test_learners_on_two_replicas_write_separate_branches(
    remote: tuple[Path, Path], tmp_path: Path
) -> None:
    origin, _ = remote
    banks = []
    for name in ("gw-a", "gw-b"):
        root = _replica(origin, tmp_path / name)
        banks.append(SkillBank(root, config=load_config(root, {"replica": name})))
    commits: dict[str, str] = {}

    def promote(bank: SkillBank) -> None:  # the same change, on both replicas at once
        commit = bank.promote(FIRST, "autonomous", reason="reviewed")
        assert commit is not None and commit.branch is not None
        commits[bank.config.replica] = commit.branch

    threads = [threading.Thread(target=promote, args=(b,)) for b in banks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(commits) == ["gw-a", "gw-b"]
    for name, branch in commits.items():
        assert branch.startswith(f"skillbank/{name}/promote-"), branch
    for bank in banks:
        branch = commits[bank.config.replica]
        git(bank.root, "push", "-q", "origin", branch)  # neither push is refused
        bank.close()
    pushed = git(origin, "branch", "--list", "skillbank/*").stdout.split()
    assert sorted(pushed) == sorted(commits.values())


def _post(url: str, body: bytes = b"{}", headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _serve(root: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "skillbank", "serve", "--root", str(root), "--http",
         f"127.0.0.1:{port}"],
        env={**os.environ, **env}, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while _post_or_none(f"http://127.0.0.1:{port}/nothing") is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()  # never leave a server behind
            raise AssertionError(f"the replica did not start: {process.communicate()[1]!r}")
        time.sleep(0.1)
    return process


def _post_or_none(url: str) -> int | None:
    """The HTTP status of a POST to ``url``; None while nothing listens."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, b"", method="POST"), timeout=5):
            return 200
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=20)


@pytest.mark.slow  # two gateway processes (~3 s each to start on a busy machine)
def test_serve_replicas_follow_on_an_interval_and_on_the_webhook(
    remote: tuple[Path, Path], tmp_path: Path
) -> None:
    origin, author = remote
    polling = _replica(origin, tmp_path / "polling")
    hooked = _replica(origin, tmp_path / "hooked")
    port_a, port_b = free_port(), free_port()
    servers: list[subprocess.Popen[bytes]] = []
    try:
        servers.append(_serve(polling, port_a, SKILLBANK_SYNC_INTERVAL_S="0.3",
                              SKILLBANK_SYNC_FROM="origin/main"))  # fmt: skip
        servers.append(_serve(hooked, port_b, SKILLBANK_SYNC_SECRET="s3cret"))
        _add_skill(author, SECOND)
        git(author, "push", "-q", "origin", "main")
        # The polling replica fetches by itself.
        deadline = time.monotonic() + 20
        while not (polling / "skills" / SECOND).is_dir():
            assert time.monotonic() < deadline, "the polling replica did not follow"
            time.sleep(0.1)
        # The other only on the webhook, and only when it is signed with the secret.
        status, said = _post(f"http://127.0.0.1:{port_b}/sync", b"{}")
        assert status == 401 and not (hooked / "skills" / SECOND).exists(), said
        body = b'{"ref": "refs/heads/main"}'
        signature = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        status, said = _post(
            f"http://127.0.0.1:{port_b}/sync", body, {"X-Hub-Signature-256": signature}
        )
        assert status == 200 and said["updated"] is True and said["source"] == "origin/main"
        assert (hooked / "skills" / SECOND / "SKILL.md").is_file()
    finally:
        for server in servers:
            _stop(server)


def test_only_the_configured_updater_commits_stage_changes(
    remote: tuple[Path, Path], tmp_path: Path
) -> None:
    origin, _ = remote
    root = _replica(origin, tmp_path / "gw-b")
    other = load_config(root, {"replica": "gw-b", "stages_updater": "gw-a"})
    with SkillBank(root, config=other) as bank, pytest.raises(ConfigError) as caught:
        bank.update_stages()
    assert "applied by 'gw-a' only" in str(caught.value)
    for overrides in ({"replica": "gw-a", "stages_updater": "gw-a"}, {"stages_updater": "gw-a"}):
        with SkillBank(root, config=load_config(root, overrides)) as bank:
            assert bank.config.applies_stages
            assert bank.update_stages() == []  # a job, or the updater itself: allowed
