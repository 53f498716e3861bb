"""The gateway in front of real MCP servers no one here wrote: ``mcp-server-git`` and
``mcp-server-time`` from PyPI over stdio, and the example shop over streamable HTTP; real client
sessions through it, recordings, learning from them, and skills calling the upstream tools."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import anyio
import mcp_types as types
from click.testing import CliRunner
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage

from skillbank.bank import SkillBank
from skillbank.cli import cli
from skillbank.errors import ConfigError
from skillbank.examples import TOOL_SPECS, Shop
from skillbank.gateway import build_server, learn_recorded, read_upstreams, recordings_of
from skillbank.trajectory import load_trajectories

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRET = "s3cr3t-upstream-t0ken"

GIT = shutil.which("mcp-server-git", path=str(BIN))
TIME = shutil.which("mcp-server-time", path=str(BIN))
needs_servers = pytest.mark.skipif(
    GIT is None or TIME is None,
    reason="pip install mcp-server-git mcp-server-time (the test extra)",
)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Gate Way",
    "GIT_AUTHOR_EMAIL": "gateway@example.com",
    "GIT_COMMITTER_NAME": "Gate Way",
    "GIT_COMMITTER_EMAIL": "gateway@example.com",
    # Fixed dates, so a commit made by a skill and one made by hand have the same hash.
    "GIT_AUTHOR_DATE": "1767225600 +0000",
    "GIT_COMMITTER_DATE": "1767225600 +0000",
}


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    done = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env)  # fmt: skip
    return done.stdout.strip()


def _repo(path: Path, *files: str) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README").write_text("hello\n")
    _git(path, "add", "README")
    _git(path, "commit", "-q", "-m", "init")
    for name in files:
        (path / name).write_text(f"{name}\n")
    return path


def _state(repo: Path) -> dict[str, str]:
    """What a procedure left in a repository: branches, HEAD, the last commit's tree, message,
    author, and the status (the tree hash says the files committed are the same)."""
    return {
        "branches": _git(repo, "branch", "--format=%(refname:short)"),
        "head": _git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
        "tree": _git(repo, "rev-parse", "HEAD^{tree}"),
        "message": _git(repo, "log", "-1", "--format=%s|%an|%ae"),
        "status": _git(repo, "status", "--porcelain"),
    }


def _mcp_json(path: Path, **servers: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    return path


def _git_servers(tmp_path: Path, **more: dict[str, Any]) -> Path:
    return _mcp_json(
        tmp_path / "mcp.json",
        git={"command": GIT, "env": {**GIT_IDENTITY, "GIT_API_TOKEN": SECRET}},
        time={"command": TIME, "args": ["--local-timezone", "UTC"]},
        **more,
    )


def _text(result: types.CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


STEPS = ("git_create_branch", "git_checkout", "git_add", "git_commit")


async def _by_hand(client: Client, repo: Path, branch: str, name: str, message: str) -> None:
    """The procedure, one upstream tool at a time (with a query the skill does not need)."""
    await client.call_tool("get_current_time", {"timezone": "UTC"})
    calls = [
        ("git_create_branch", {"repo_path": str(repo), "branch_name": branch}),
        ("git_checkout", {"repo_path": str(repo), "branch_name": branch}),
        ("git_add", {"repo_path": str(repo), "files": [name]}),
        ("git_commit", {"repo_path": str(repo), "message": message}),
    ]
    for tool, arguments in calls:
        result = await client.call_tool(tool, arguments)
        assert not result.is_error, _text(result)


async def _task(client: Client, repo: Path, branch: str, name: str, message: str) -> None:
    begun = await client.call_tool("skillbank_begin_task", {"task": f"commit {name} on {branch}"})
    assert not begun.is_error
    await _by_hand(client, repo, branch, name, message)
    ended = await client.call_tool("skillbank_end_task", {"success": True, "note": "committed"})
    assert "Ended the task" in _text(ended)


# --- the new user's path, through the CLI ------------------------------------------------


@pytest.mark.slow
@needs_servers
def test_a_client_of_the_gateway_alone_records_two_tasks_and_then_uses_the_skill(
    tmp_path: Path,
) -> None:
    """``skillbank serve --upstream`` over stdio: two recorded tasks of one procedure, then
    ``learn --recorded --branch current`` while the session is open; the skill appears with a
    list-changed notification, passes the gate, and one call of it with new arguments leaves a
    repository exactly as doing it by hand leaves another."""
    root = tmp_path / "bank"
    SkillBank.init(root).close()
    upstream = _git_servers(tmp_path)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "skillbank", "serve", "--root", str(root), "--upstream", str(upstream)],
        env={"GIT_CONFIG_GLOBAL": os.environ["GIT_CONFIG_GLOBAL"], "GIT_CONFIG_NOSYSTEM": "1"},
        cwd=REPO,
    )
    changed = anyio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    learned: dict[str, Any] = {}

    async def test() -> None:
        async with Client(params, mode="legacy", message_handler=on_message) as client:
            assert "skillbank_begin_task" in (client.instructions or "")
            listed = {t.name: t for t in (await client.list_tools()).tools}
            # Upstream tools pass through with their schemas and annotations.
            assert {*STEPS, "get_current_time", "skillbank_begin_task"} <= set(listed)
            assert listed["git_status"].annotations is not None
            assert listed["git_status"].annotations.read_only_hint is True
            assert listed["get_current_time"].output_schema is not None
            now = await client.call_tool("get_current_time", {"timezone": "UTC"})
            assert now.structured_content is not None and "datetime" in now.structured_content
            missing = await client.call_tool("git_status", {"repo_path": str(tmp_path / "no")})
            assert missing.is_error

            await _task(client, _repo(tmp_path / "r1", "one.txt"), "feat-one", "one.txt", "Add one")
            await _task(client, _repo(tmp_path / "r2", "two.txt"), "feat-two", "two.txt", "Add two")

            runner = CliRunner()
            done = await anyio.to_thread.run_sync(
                lambda: runner.invoke(
                    cli,
                    ["learn", "--recorded", "--branch", "current", "--root", str(root), "--json"],
                )  # fmt: skip
            )
            assert done.exit_code == 0, done.output
            learned.update(json.loads(done.output))
            (skill_id,) = learned["added"]
            with anyio.fail_after(20):
                await changed.wait()
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert skill_id in tools

            by_skill = _repo(tmp_path / "r3", "three.txt")
            by_hand = _repo(tmp_path / "r4", "three.txt")
            args = {"repo_path": str(by_skill), "branch_name": "feat-three",
                    "files": ["three.txt"], "message": "Add three"}  # fmt: skip
            ran = await client.call_tool(skill_id, args)
            assert not ran.is_error, _text(ran)
            await _by_hand(client, by_hand, "feat-three", "three.txt", "Add three")
            assert _state(by_skill) == _state(by_hand)
            assert _state(by_skill)["head"] == "feat-three"

    anyio.run(test)

    # Two begin/end tasks became one skill; the session's loose calls and the last by-hand
    # run are recordings of their own, learned later or not at all.
    assert learned["commit"] and len(learned["recordings"]) >= 2
    gate = CliRunner().invoke(cli, ["gate", "--root", str(root)])
    assert gate.exit_code == 0, gate.output
    skill = SkillBank(root).get(learned["added"][0])
    assert set(skill.tools) == set(STEPS)
    for tool in STEPS:  # tools.json keeps the real name and the server
        spec = skill.tool_specs[tool]
        assert spec.extra["x-mcp-server"] == "git" and spec.extra["x-mcp-tool"] == tool
        assert "readOnlyHint" in spec.extra["annotations"]
    # Nothing of the recordings is committed, and no secret reached them.
    tracked = _git(root, "ls-files")
    assert ".skillbank" not in tracked and "recordings" not in tracked
    recordings = recordings_of(SkillBank(root))
    assert stat.S_IMODE(recordings.folder.stat().st_mode) == 0o700
    for path in recordings.files():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert SECRET not in path.read_text(encoding="utf-8")
    assert all(SECRET not in p.read_text() for p in (root / "skills").rglob("*") if p.is_file())


# --- in process: recording rules, errors, restart, HTTP upstream -------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_shop(port: int, shop: Shop) -> subprocess.Popen[bytes]:
    """The example shop as an MCP server over streamable HTTP on 127.0.0.1:``port``, behind
    a token; returns once it accepts connections."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.shop_upstream", str(port), str(shop.path), SECRET],
        cwd=REPO,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    proc.wait(timeout=10)
    pytest.fail("the shop upstream did not start")


@pytest.fixture
def shop_upstream(tmp_path: Path) -> Iterator[tuple[str, Shop]]:
    """The example shop as an MCP server over streamable HTTP on 127.0.0.1, behind a token."""
    shop = Shop.create(tmp_path / "shop.sqlite")
    port = _free_port()
    proc = _start_shop(port, shop)
    try:
        yield f"http://127.0.0.1:{port}/mcp", shop
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _children() -> set[int]:
    """The live child processes of this one."""
    found = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def test_a_start_given_up_on_is_stopped_and_never_takes_the_link_later(tmp_path: Path) -> None:
    # The first start takes longer than the connect timeout (a server that downloads itself
    # on first use); a try after it is quick. The attempt given up on must neither keep its
    # process nor, when it finally answers, replace the working client.
    from skillbank.gateway.upstream import Upstreams, UpstreamServer

    slow = UpstreamServer(
        "slow", command=sys.executable, cwd=str(REPO),
        args=("-m", "tests.gateway.slow_start_upstream", str(tmp_path / "started"), "3"),
    )  # fmt: skip
    news: list[str] = []
    before = _children()

    async def test() -> None:
        with open(os.devnull, "w") as devnull:
            await run(Upstreams([slow], connect_timeout_s=1.5, retry_s=0.2,
                                report=news.append, errlog=devnull))  # fmt: skip

    async def run(ups: Upstreams) -> None:
        async with ups:
            assert ups.problems and "did not start" in ups.problems[0]
            with anyio.fail_after(60):
                while "echo" not in ups.tools:
                    await anyio.sleep(0.1)
            await anyio.sleep(3)  # past the moment the first attempt would have answered
            for n in range(3):
                result = await ups.call("echo", {"text": f"hi {n}"})
                assert not result.is_error and result.structured_content is not None
            assert len(_children() - before) == 1  # the working server, nothing else

    anyio.run(test)
    assert any("'slow' is up after" in n for n in news), news
    assert _children() - before == set()


def test_a_server_that_never_answers_is_tried_again_without_piling_up_processes() -> None:
    # Each try that times out is given up on for good: its process is stopped (the SDK
    # closes its stdin, waits 2 s, then terminates it), so processes do not pile up.
    from skillbank.gateway.upstream import Upstreams, UpstreamServer

    hang = UpstreamServer("hang", command="sleep", args=("1000",))  # never speaks MCP
    before = _children()
    seen: dict[str, set[int]] = {}

    async def test() -> None:
        with open(os.devnull, "w") as devnull:
            await run(Upstreams([hang], connect_timeout_s=0.3, retry_s=0.1, errlog=devnull))

    async def run(ups: Upstreams) -> None:
        async with ups:
            await anyio.sleep(1.0)
            seen["early"] = _children() - before
            await anyio.sleep(6.0)
            seen["late"] = _children() - before
            assert "hang" not in {t.server for t in ups.tools.values()}

    anyio.run(test)
    assert seen["early"], "no try was made"
    assert not seen["early"] & seen["late"], seen  # the early tries' processes are gone
    assert _children() - before == set()


def test_a_server_down_at_start_is_tried_again_and_its_tools_offered_when_it_is_up(
    tmp_path: Path, bank: SkillBank
) -> None:
    # The shop's server is not up when the gateway starts: it is reported, then tried again
    # in the background; once it answers, its tools are offered and clients are told.
    shop = Shop.create(tmp_path / "shop.sqlite")
    port = _free_port()
    upstream = _mcp_json(
        tmp_path / "mcp.json",
        shop={"url": f"http://127.0.0.1:{port}/mcp",
              "headers": {"Authorization": f"Bearer {SECRET}"}},
    )  # fmt: skip
    news: list[str] = []
    server = build_server(bank, {}, upstreams=read_upstreams(upstream), report=news.append,
                          watch_interval_s=0.1, upstream_retry_s=0.2)  # fmt: skip
    changed = anyio.Event()
    procs: list[subprocess.Popen[bytes]] = []

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async def test() -> None:
        async with Client(server, mode="legacy", message_handler=on_message) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "find_customer" not in names and "skillbank_do" in names
            assert any("'shop' is left out" in n and "tried again" in n for n in news), news
            procs.append(await anyio.to_thread.run_sync(_start_shop, port, shop))
            with anyio.fail_after(60):
                await changed.wait()
            names = {t.name for t in (await client.list_tools()).tools}
            assert {spec["function"]["name"] for spec in TOOL_SPECS} <= names
            found = await client.call_tool("find_customer", {"email": "hiro@example.com"})
            assert not found.is_error and found.structured_content is not None

    try:
        anyio.run(test)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    assert any("'shop' is up after" in n and "find_customer" in n for n in news), news


@pytest.mark.slow
@needs_servers
def test_http_and_stdio_upstreams_together_with_clashes_errors_and_a_restart(
    tmp_path: Path, bank: SkillBank, shop_upstream: tuple[str, Shop]
) -> None:
    url, shop = shop_upstream
    flaky = {"command": sys.executable, "args": ["-m", "tests.gateway.flaky_upstream"],
             "cwd": str(REPO)}  # fmt: skip
    upstream = _mcp_json(
        tmp_path / "mcp.json",
        shop={"url": url, "headers": {"Authorization": f"Bearer {SECRET}"}},
        flaky=flaky,
        twin=flaky,  # the same tools again: each clashing name is prefixed by its server
        broken={"command": str(tmp_path / "no-such-server")},
    )
    news: list[str] = []
    server = build_server(bank, {}, upstreams=read_upstreams(upstream),
                          recordings=recordings_of(bank), report=news.append)  # fmt: skip

    async def test() -> None:
        async with Client(server) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"find_customer", "place_order", "flaky__echo", "twin__die"} <= names
            assert "echo" not in names and "skillbank_do" in names
            # Nothing beyond what the upstream file brought, and skillbank's own tools.
            own = {"skillbank_begin_task", "skillbank_end_task", "skillbank_do"}
            shop_tools = {spec["function"]["name"] for spec in TOOL_SPECS}
            flaky = {f"{s}__{t}" for s in ("flaky", "twin") for t in ("echo", "die")}
            assert names == own | shop_tools | flaky
            # A secret-bearing argument and result, then a tool error, forwarded as they are.
            found = await client.call_tool("find_customer", {"email": "hiro@example.com"})
            assert not found.is_error and found.structured_content is not None
            customer = found.structured_content["customer_id"]
            bad = await client.call_tool(
                "place_order", {"customer_id": customer, "sku": "NOPE", "quantity": 1}
            )
            assert bad.is_error and "NOPE" in _text(bad)
            echoed = await client.call_tool("flaky__echo", {"text": f"token={SECRET}"})
            assert echoed.structured_content is not None
            first_pid = echoed.structured_content["pid"]
            died = await client.call_tool("flaky__die", {"text": "x"})
            assert died.is_error and "stopped during the call" in _text(died)
            again = await client.call_tool("flaky__echo", {"text": "back"})
            assert not again.is_error and again.structured_content is not None
            assert again.structured_content["pid"] != first_pid  # started again

    anyio.run(test)
    assert any("'broken'" in n and "not found" in n for n in news), news
    assert any("exposed as 'flaky__echo'" in n for n in news)
    (recorded,) = recordings_of(bank).files()  # one session, no task: one trajectory
    text = recorded.read_text(encoding="utf-8")
    assert SECRET not in text and "[redacted]" in text
    (trajectory,) = load_trajectories(recorded)
    assert trajectory.task.startswith("(an MCP session")
    # place_order failed and was never retried, and flaky__die failed: not a success.
    assert not trajectory.outcome.success
    assert [s.tool for s in trajectory.steps][:2] == ["find_customer", "place_order"]
    assert trajectory.steps[1].error is not None
    assert trajectory.tool("find_customer") is not None


def test_a_bad_upstream_file_names_the_server_and_the_key(tmp_path: Path) -> None:
    cases = [
        ({"mcpServers": {"git": {"args": ["x"]}}}, "server 'git' needs exactly one of"),
        ({"mcpServers": {"git": {"command": "x", "url": "http://a"}}}, "exactly one of"),
        ({"mcpServers": {"git": {"command": "x", "args": "y"}}}, "'args' must be a list"),
        ({"mcpServers": {"git": {"command": "x", "env": {"A": 1}}}}, "'env' must be an object"),
        ({"mcpServers": {"web": {"url": "ftp://a"}}}, "server 'web': 'url' must be an http"),
        ({"mcpServers": {"web": {"url": "http://a", "cwd": "."}}}, "has 'url' and 'cwd'"),
        ({"mcpServers": {"git": {"command": "x", "colour": 1}}}, "unknown key 'colour'"),
        ({"mcpServers": {"a__b": {"command": "x"}}}, "must be non-empty and hold no '__'"),
        ({"servers": {}}, 'must hold {"mcpServers"'),
    ]
    for n, (data, message) in enumerate(cases):
        path = _mcp_json(tmp_path / f"{n}.json", x={})
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("{", r"\{")):
            read_upstreams(path)
    with pytest.raises(ConfigError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        read_upstreams(tmp_path / "bad.json")
    # A value of the wrong type in env or headers is not echoed: it is likely a secret.
    for key in ("env", "headers"):
        entry = {"url": "http://a"} if key == "headers" else {"command": "x"}
        (tmp_path / "secret.json").write_text(
            json.dumps({"mcpServers": {"s": {**entry, key: {"TOKEN": 98765432123}}}})
        )
        with pytest.raises(ConfigError, match=r"not a string: 'TOKEN' \(int\)") as raised:
            read_upstreams(tmp_path / "secret.json")
        assert "98765432123" not in str(raised.value)
    ok = _mcp_json(tmp_path / "ok.json", git={"command": "g", "args": ["-v"]},
                   off={"command": "x", "disabled": True})  # fmt: skip
    (git,) = read_upstreams(ok)
    assert git.args == ("-v",) and git.transport == "stdio"
    usage = CliRunner().invoke(cli, ["serve", "--upstream", str(tmp_path / "0.json")])
    assert usage.exit_code == 2 and "server 'git'" in usage.output


@pytest.mark.slow
@needs_servers
def test_serve_learn_learns_when_a_task_ends_and_announces_the_skill(
    tmp_path: Path, bank: SkillBank
) -> None:
    upstream = _mcp_json(tmp_path / "mcp.json", git={"command": GIT, "env": GIT_IDENTITY})
    learned = anyio.Event()
    changed = anyio.Event()

    def learn() -> None:
        learn_recorded(bank, branch="current")

    server = build_server(
        bank, {}, upstreams=read_upstreams(upstream), recordings=recordings_of(bank),
        learn=learn, watch_interval_s=0.2,
    )  # fmt: skip

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async def test() -> None:
        async with Client(server, mode="legacy", message_handler=on_message) as client:
            before = {t.name for t in (await client.list_tools()).tools}
            await _task(client, _repo(tmp_path / "r1", "a.txt"), "b1", "a.txt", "Add a")
            await _task(client, _repo(tmp_path / "r2", "b.txt"), "b2", "b.txt", "Add b")
            with anyio.fail_after(30):
                await changed.wait()
            after = {t.name for t in (await client.list_tools()).tools}
            (skill_id,) = after - before
            repo = _repo(tmp_path / "r3", "c.txt")
            args = {"repo_path": str(repo), "branch_name": "b3", "files": ["c.txt"],
                    "message": "Add c"}  # fmt: skip
            ran = await client.call_tool(skill_id, args)
            assert not ran.is_error, _text(ran)
            assert _state(repo)["head"] == "b3" and _state(repo)["status"] == ""
            learned.set()

    anyio.run(test)
    assert learned.is_set()


@pytest.mark.slow
def test_a_skill_finds_its_upstream_tool_after_a_clash_renamed_it(
    tmp_path: Path, bank: SkillBank
) -> None:
    flaky = {"command": sys.executable, "args": ["-m", "tests.gateway.flaky_upstream"],
             "cwd": str(REPO)}  # fmt: skip
    alone = read_upstreams(_mcp_json(tmp_path / "alone.json", flaky=flaky))
    clash = read_upstreams(_mcp_json(tmp_path / "clash.json", flaky=flaky, twin=flaky))

    async def record() -> None:
        server = build_server(bank, {}, upstreams=alone, recordings=recordings_of(bank))
        async with Client(server) as client:
            for text in ("first", "second"):
                await client.call_tool("skillbank_begin_task", {"task": f"echo {text}"})
                await client.call_tool("echo", {"text": text})
                await client.call_tool("skillbank_end_task", {"success": True})

    anyio.run(record)
    report = learn_recorded(bank, branch="current").report
    assert report is not None
    (skill_id,) = report.added
    assert bank.get(skill_id).tools == ("echo",)

    async def use() -> None:
        async with Client(build_server(bank, {}, upstreams=clash)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "echo" not in names and {"flaky__echo", "twin__echo", skill_id} <= names
            ran = await client.call_tool(skill_id, {"text": "third"})
            assert not ran.is_error, _text(ran)
            assert "third" in _text(ran)

    anyio.run(use)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_over_http_each_mcp_session_keeps_its_own_task(
    tmp_path: Path, bank: SkillBank, mode: str
) -> None:
    # Handshake-era clients are told apart by their session id; 2026-07-28 clients, which
    # have no session, by the client name and version each request carries.
    flaky = {"command": sys.executable, "args": ["-m", "tests.gateway.flaky_upstream"],
             "cwd": str(REPO)}  # fmt: skip
    upstream = _mcp_json(tmp_path / "mcp.json", flaky=flaky)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "skillbank", "serve", "--root", str(bank.root), "--upstream",
         str(upstream), "--http", f"127.0.0.1:{port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)

        async def test() -> None:
            url = f"http://127.0.0.1:{port}/mcp"
            ann_info = types.Implementation(name="ann-agent", version="1.0")
            bob_info = types.Implementation(name="bob-agent", version="1.0")
            async with (
                Client(url, mode=mode, client_info=ann_info) as ann,
                Client(url, mode=mode, client_info=bob_info) as bob,
            ):
                await ann.call_tool("skillbank_begin_task", {"task": "ann's task"})
                await bob.call_tool("skillbank_begin_task", {"task": "bob's task"})
                for n in range(2):
                    await ann.call_tool("echo", {"text": f"ann {n}"})
                    await bob.call_tool("echo", {"text": f"bob {n}"})
                await bob.call_tool("skillbank_end_task", {"success": False})
                await ann.call_tool("skillbank_end_task", {"success": True})

        anyio.run(test)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr.decode()
    trajectories = {t.task: t for t in load_trajectories(recordings_of(bank).folder)}
    assert set(trajectories) == {"ann's task", "bob's task"}
    for who, success in (("ann", True), ("bob", False)):
        run = trajectories[f"{who}'s task"]
        assert [s.arguments["text"] for s in run.steps] == [f"{who} 0", f"{who} 1"]
        assert run.outcome.success is success
