"""Recordings: how calls group into trajectories, redaction, the folder, the cursor, and
learning from them (no servers: the recorder is fed calls as the gateway feeds it)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from skillbank.bank import SkillBank
from skillbank.cli import cli
from skillbank.cli.serve import learned_summary
from skillbank.examples import TOOL_SPECS
from skillbank.gateway import (
    REDACTED,
    Recordings,
    Redactor,
    TaskRecorder,
    learn_recorded,
    recordings_of,
)
from skillbank.gateway.recorder import RECORDED_KEY, retried
from skillbank.ledger import Ledger
from skillbank.trajectory import Step, load_trajectories

TOOLS = {spec["function"]["name"]: spec for spec in TOOL_SPECS}
SECRET = "hunter2-upstream-secret"


def _recorder(tmp_path: Path, *secrets: str, idle_gap_s: float = 600.0) -> TaskRecorder:
    return TaskRecorder(Recordings(tmp_path / "rec"), Redactor(secrets), idle_gap_s=idle_gap_s)


def _call(rec: TaskRecorder, tool: str, result: object = None, error: str | None = None,
          key: str = "s1", **arguments: object) -> None:  # fmt: skip
    rec.record(key, "mcp:test", TOOLS[tool], arguments, result, error)


def _outcomes(rec: TaskRecorder) -> list[tuple[str, str]]:
    out = []
    for path in rec.store.files():
        data = json.loads(path.read_text())
        out.append((data["task"], data[RECORDED_KEY]["outcome"]))
    return out


def test_a_begin_end_pair_is_one_trajectory_with_its_task_and_outcome(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    _call(rec, "find_customer", {"customer_id": "c1"}, email="a@example.com")  # before any task
    message, written = rec.begin("s1", "mcp:test", "order a clock for a@example.com")
    assert "Recording the task" in message and len(written) == 1  # the loose call, written
    _call(rec, "find_customer", {"customer_id": "c1"}, email="a@example.com")
    _call(rec, "place_order", {"order_id": "o1"}, customer_id="c1", sku="CLK", quantity=1)
    _call(rec, "find_customer", key="s2", email="b@example.com")  # another session: apart
    message, (path,) = rec.end("s1", "mcp:test", True, "ordered")
    assert "success" in message
    (trajectory,) = load_trajectories(path)
    assert trajectory.task == "order a clock for a@example.com"
    assert trajectory.outcome.success and trajectory.outcome.detail == "ordered"
    assert [s.tool for s in trajectory.steps] == ["find_customer", "place_order"]
    assert trajectory.steps[1].result == {"order_id": "o1"}
    assert rec.end("s1", "mcp:test", True, None)[1] == []  # nothing open any more
    rec.close_all()
    assert sorted(o for _, o in _outcomes(rec)) == ["success", "success", "success"]


def test_a_task_left_open_is_unknown_and_never_learned(tmp_path: Path, bank: SkillBank) -> None:
    store = recordings_of(bank)
    rec = TaskRecorder(store, Redactor())
    rec.begin("s1", "c", "first task")
    _call(rec, "find_customer", {"customer_id": "c1"}, email="a@example.com")
    message, written = rec.begin("s1", "c", "second task")  # closes the first as unknown
    assert "unknown outcome" in message and len(written) == 1
    _call(rec, "find_customer", {"customer_id": "c1"}, email="a@example.com")
    rec.close("s1")  # the session ended with the second one open
    assert sorted(_outcomes(rec)) == [("first task", "unknown"), ("second task", "unknown")]
    done = learn_recorded(bank, branch="current")
    assert done.report is None and len(done.recordings) == 2
    assert all("never ended" in line for line in done.skipped)
    assert store.pending() == []  # the cursor moved past them
    assert learn_recorded(bank).recordings == ()


def test_a_session_without_tasks_succeeds_when_every_failure_was_retried(tmp_path: Path) -> None:
    ok, bad, err = Step("a", {}, 1), Step("b", {}, 1), Step("a", {}, None, "boom")
    assert retried([ok, err, ok]) and retried([]) and not retried([ok, err, bad])
    rec = _recorder(tmp_path, idle_gap_s=0.0)  # every call is past the gap: one each
    _call(rec, "check_stock", None, "no such sku", sku="X")
    _call(rec, "check_stock", {"stock": 1}, sku="Y")
    rec.close_all()
    assert [o for _, o in _outcomes(rec)] == ["failure", "success"]
    rec = _recorder(tmp_path / "b")
    _call(rec, "check_stock", None, "no such sku", sku="X")
    _call(rec, "check_stock", {"stock": 1}, sku="Y")
    assert rec.close_idle() == []  # not idle yet
    (path,) = rec.close_all()
    (trajectory,) = load_trajectories(path)
    assert (
        trajectory.outcome.success and not json.loads(path.read_text())[RECORDED_KEY]["task_given"]
    )


def test_recordings_are_private_capped_oldest_first_and_learned_ones_go_first(
    tmp_path: Path,
) -> None:
    store = Recordings(tmp_path / "rec", max_bytes=3000)
    paths = [store.write({"id": f"r{n}", "pad": "x" * 900}) for n in range(3)]
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    store.mark_learned([paths[1]])
    assert store.pending() == [paths[0], paths[2]]
    newest = store.write({"id": "r3", "pad": "x" * 900})
    assert store.files() == [paths[0], paths[2], newest]  # the learned one went first
    store.write({"id": "r4", "pad": "x" * 900})
    assert paths[0] not in store.files()  # then the oldest
    assert stat.S_IMODE((store.folder / "learned.txt").stat().st_mode) == 0o600


def test_the_ledger_is_readable_by_the_user_only(tmp_path: Path) -> None:
    ledger = Ledger.in_state_dir(tmp_path / ".skillbank")
    ledger.record("s", ok=True, version="1.0.0", latency_s=0.1)
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("value", "leak"),
    [
        ("key sk-proj-AbCdEfGhIjKlMnOpQrStUv here", "AbCdEfGhIjKlMnOpQrStUv"),
        ("ghp_0123456789abcdefghijABCDEFGHIJ", "0123456789abcdefghij"),
        ("Authorization: Bearer abc.def-ghi_jkl-mnop.qrs", "abc.def-ghi_jkl-mnop"),
        ("https://ann:pa55word@db.example.com/x", "pa55word"),
        ("AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_nature-xyz", "eyJzdWIiOiIxMjM0In0"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "MIIE"),
    ],
    ids=["openai", "github", "bearer", "url-password", "aws", "jwt", "private-key"],
)
def test_values_that_look_like_credentials_are_redacted(value: str, leak: str) -> None:
    redacted = Redactor().text(value)
    assert leak not in redacted and REDACTED in redacted


def test_values_of_keys_named_like_secrets_are_redacted() -> None:
    red = Redactor()
    data = {"password": "plain", "api_key": "k", "user": {"Access-Token": "t"}, "name": "Ann"}
    assert red.value(data) == {
        "password": REDACTED, "api_key": REDACTED, "user": {"Access-Token": REDACTED},
        "name": "Ann",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("value", "leak"),
    [
        ('{"password": "p4ssw0rd-xyz", "user": "bob"}', "p4ssw0rd-xyz"),
        ('{\\"api_key\\": \\"k3y-1234\\"}', "k3y-1234"),
        ("https://api.example.com/v1?api_key=abc123&user=bob", "abc123"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("PASSWORD='hunter 2' next", "hunter 2"),
        ("a: secret=s3cr3t;", "s3cr3t"),
    ],
    ids=["json-text", "escaped-json-text", "query-string", "basic-auth", "quoted", "nested-key"],
)
def test_values_of_keys_named_like_secrets_are_redacted_inside_text(value: str, leak: str) -> None:
    # A tool argument or text result holding JSON or key=value pairs: the key is in the text.
    redacted = Redactor().text(value)
    assert leak not in redacted and REDACTED in redacted
    assert Redactor().text(redacted) == redacted


def test_text_without_secret_keys_is_left_alone() -> None:
    text = 'Commit: 8606\nAuthor: T\ntokens: 5, {"user": "bob", "token": ""}'
    assert Redactor().text(text) == text


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),  # fmt: skip
    max_leaves=8,
)


@given(
    secret=st.text(
        st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=6, max_size=16
    ).filter(lambda s: s.strip() and s not in REDACTED),  # fmt: skip
    before=st.text(max_size=10),
    after=st.text(max_size=10),
    payload=_json,
    task_secret=st.booleans(),
)
def test_an_upstream_secret_never_reaches_a_written_recording_which_loads_back(
    tmp_path_factory: pytest.TempPathFactory,
    secret: str,
    before: str,
    after: str,
    payload: object,
    task_secret: bool,
) -> None:
    rec = _recorder(tmp_path_factory.mktemp("rec"), secret)
    leaky = f"{before}{secret}{after}"
    task = f"do it with {secret}" if task_secret else "do it"
    rec.begin("s1", "mcp:test", task)
    _call(rec, "find_customer", {"echo": leaky, "data": payload}, email=leaky)
    _call(rec, "check_stock", None, f"failed: {leaky}", sku=secret)
    _, (path,) = rec.end("s1", "mcp:test", True, f"done {leaky}")
    text = path.read_text(encoding="utf-8")
    assert secret not in text
    assert not [s for s in _strings(json.loads(text)) if secret in s]
    (trajectory,) = load_trajectories(path)
    assert [s.tool for s in trajectory.steps] == ["find_customer", "check_stock"]


def test_learn_recorded_from_the_command_line(bank: SkillBank) -> None:
    runner = CliRunner()
    usage = runner.invoke(cli, ["learn", "--root", str(bank.root)])
    assert usage.exit_code == 2 and "--recorded" in usage.output
    empty = runner.invoke(cli, ["learn", "--recorded", "--root", str(bank.root)])
    assert empty.exit_code == 0 and "nothing to learn" in empty.output
    rec = TaskRecorder(recordings_of(bank), Redactor())
    for email in ("a@example.com", "b@example.com"):
        rec.begin("s1", "c", f"find the customer {email}")
        _call(rec, "find_customer", {"customer_id": email[0]}, email=email)
        rec.end("s1", "c", True, None)
    done = runner.invoke(
        cli, ["learn", "--recorded", "--branch", "current", "--root", str(bank.root), "--json"]
    )
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert len(data["recordings"]) == 2 and len(data["added"]) == 1
    assert bank.get(data["added"][0]).stage == "associative"


def test_the_gateway_says_which_skills_a_learning_run_added_or_updated(bank: SkillBank) -> None:
    # `serve --learn` learns after each task: the second task updates the skill the first one
    # added (and makes it a tool), which stderr said was "no new skill".
    rec = TaskRecorder(recordings_of(bank), Redactor())
    said: list[str] = []
    for email in ("a@example.com", "b@example.com"):
        rec.begin("s1", "c", f"find the customer {email}")
        _call(rec, "find_customer", {"customer_id": email[0]}, email=email)
        rec.end("s1", "c", True, None)
        report = learn_recorded(bank, branch="current").report
        assert report is not None
        said.append(learned_summary(report))
    (skill,) = bank.skills()
    assert said[0].startswith(f"added {skill.id} v1.0.0 (commit ")
    assert said[1].startswith(f"updated {skill.id} v1.0.0 (commit "), said
    assert skill.stage == "associative"


def test_env_values_are_secrets_when_named_so_or_random_looking_not_configuration() -> None:
    from skillbank.gateway.upstream import UpstreamServer

    env = {
        "LOG_LEVEL": "info",
        "HOME": "/root",
        "GIT_TRIAL_SECRET": "plain-words-here",
        "GITHUB_PERSONAL_ACCESS_TOKEN": "tok-1",
        "OPENAI_API_KEY": "abcd-efgh",
        "UNLABELLED": "k3j4h5g6f7d8s9a0q1w2",
        "REPO": "/srv/repos/a1b2c3d4e5f6g7h8i9",
    }
    server = UpstreamServer("git", command="mcp-server-git", env=env,
                            headers={"Authorization": "Bearer hdr-token-1"})  # fmt: skip
    assert set(server.secrets()) == {
        "plain-words-here", "tok-1", "abcd-efgh", "k3j4h5g6f7d8s9a0q1w2",
        "Bearer hdr-token-1", "hdr-token-1",
    }  # fmt: skip
    # Configuration values stay as they were in what is recorded.
    redactor = Redactor(server.secrets())
    recorded = redactor.value({"repo_path": "/root/x", "message": "add information page"})
    assert recorded == {"repo_path": "/root/x", "message": "add information page"}
    assert (
        redactor.value("token tok-1 and k3j4h5g6f7d8s9a0q1w2") == "token [redacted] and [redacted]"
    )


def test_an_upstream_is_described_without_its_secrets() -> None:
    # What serve says on stderr (and errors say) ends up in clients' logs.
    from skillbank.gateway.upstream import UpstreamServer

    stdio = UpstreamServer(
        "git",
        command="srv",
        args=(
            "--repository",
            "/srv/repo",
            "--api-key",
            "abc",
            "--token=xyz",
            "k3j4h5g6f7d8s9a0q1w2",
        ),
        env={"GIT_TOKEN": "envsecret1"},
    )
    assert (
        stdio.describe() == "git (stdio: srv --repository /srv/repo --api-key *** --token=*** ***)"
    )
    http = UpstreamServer("shop", url="https://u:pw@h.example/mcp?key=zzz&x=1")
    assert http.describe() == "shop (http: https://u:***@h.example/mcp?key=***&x=***)"
