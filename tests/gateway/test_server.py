"""`skillbank serve`: real MCP client sessions against the server, in process, over stdio and
over streamable HTTP, with the example shop's live SQLite database as the host tools."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import anyio
import mcp_types as types
from click.testing import CliRunner
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.shared.subscriptions import ToolsListChanged

from skillbank.bank import SkillBank
from skillbank.cli import cli
from skillbank.errors import ConfigError
from skillbank.examples import DEMO_ARGS, Shop
from skillbank.gateway import build_server, load_host_tools
from skillbank.trajectory import Trajectory

REPO = Path(__file__).resolve().parents[2]
#: Learned when a test runs, while a server is up: one trajectory makes it cognitive (a
#: resource, not a tool); the others make it associative.
LATE = "shop-change_email"
ARGS = {**DEMO_ARGS["order_product"], "quantity": 2}


@pytest.fixture(scope="module")
def bank(
    tmp_path_factory: pytest.TempPathFactory, example_trajectories: list[Trajectory]
) -> Iterator[SkillBank]:
    """The shop's skills, except that the change-email skill has one case only (cognitive)."""
    root = tmp_path_factory.mktemp("mcp") / "bank"
    early = [t for t in example_trajectories if not t.id.startswith(LATE) or t.id.endswith("-01")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_GLOBAL", str(root.parent / "no-gitconfig"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        with SkillBank.init(root) as b:
            report = b.learn(early, branch="current")
            assert not report.rejected
            yield b


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop.create(tmp_path / "shop.sqlite")


def _skill_with(bank: SkillBank, *tools: str) -> str:
    return next(s.id for s in bank.skills() if set(tools) <= set(s.tools))


def _order_skill(bank: SkillBank) -> str:
    return _skill_with(bank, "search_products", "place_order")


def _late_skill(bank: SkillBank) -> str:
    return _skill_with(bank, "update_email")


def _run(test: Callable[[], Awaitable[None]]) -> None:
    anyio.run(test)


def _text(result: types.CallToolResult) -> dict[str, Any]:
    (content,) = result.content
    assert isinstance(content, types.TextContent)
    data: dict[str, Any] = json.loads(content.text)
    return data


def _stock(shop: Shop) -> dict[str, int]:
    return {p["sku"]: p["stock"] for p in shop.snapshot()["products"]}


def _ordered(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {sku: before[sku] - after[sku] for sku in before if after[sku] != before[sku]}


# --- in process ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_lists_callable_skills_as_tools_and_every_skill_as_a_resource(
    bank: SkillBank, shop: Shop, mode: str
) -> None:
    async def test() -> None:
        async with Client(build_server(bank, shop.tools()), mode=mode) as client:
            assert client.server_capabilities.tools is not None
            assert client.server_capabilities.tools.list_changed
            listed = (await client.list_tools()).tools
            resources = (await client.list_resources()).resources
            page = await client.read_resource(f"skill://{_order_skill(bank)}")

        skills = {s.id: s for s in bank.skills()}
        tools = {t.name: t for t in listed}
        assert _late_skill(bank) not in tools  # cognitive: readable, not callable
        dumped = [t.model_dump(by_alias=True, exclude_none=True) for t in listed]
        # The skills, then skillbank's own tool that does a task as a reflex.
        assert dumped[:-1] == bank.tool_specs("mcp") and dumped[-1]["name"] == "skillbank_do"
        order = tools[_order_skill(bank)]
        assert order.input_schema["type"] == "object"
        assert set(order.input_schema["required"]) == {"email", "query", "quantity"}
        assert order.input_schema["properties"]["quantity"]["type"] == "integer"
        assert {str(r.uri) for r in resources} == {f"skill://{i}" for i in skills}
        (contents,) = page.contents
        assert isinstance(contents, types.TextResourceContents)
        skill_md = bank.library.dir / _order_skill(bank) / "SKILL.md"
        assert contents.text == skill_md.read_text(encoding="utf-8")

    _run(test)


def test_cognitive_skills_are_prompts_describing_the_procedure(bank: SkillBank, shop: Shop) -> None:
    async def test() -> None:
        async with Client(build_server(bank, shop.tools())) as client:
            assert client.server_capabilities.prompts is not None
            prompts = {p.name: p for p in (await client.list_prompts()).prompts}
            page = await client.get_prompt(_late_skill(bank))

        assert set(prompts) == {s.id for s in bank.skills() if s.stage == "cognitive"}
        assert _late_skill(bank) in prompts and _order_skill(bank) not in prompts
        (message,) = page.messages
        assert isinstance(message.content, types.TextContent)
        assert "Do its steps yourself" in message.content.text
        assert "update_email" in message.content.text

    _run(test)


def test_a_call_runs_the_skill_against_the_live_shop(bank: SkillBank, shop: Shop) -> None:
    before, before_orders = _stock(shop), shop.snapshot()["orders"]

    async def test() -> None:
        async with Client(build_server(bank, shop.tools())) as client:
            result = await client.call_tool(_order_skill(bank), ARGS)
        assert not result.is_error
        data = _text(result)
        assert data["ok"] is True
        assert data["value"]["status"] == "pending"
        assert result.structured_content == data["value"]

    _run(test)
    assert list(_ordered(before, _stock(shop)).values()) == [2]
    assert len(shop.snapshot()["orders"]) == len(before_orders) + 1


def test_skillbank_do_over_a_client_session_abstains_on_a_skill_not_trusted(
    bank: SkillBank, shop: Shop
) -> None:
    # Every skill here is associative: skillbank_do runs nothing and says why, as data.
    before = shop.snapshot()

    async def test() -> None:
        async with Client(build_server(bank, shop.tools())) as client:
            result = await client.call_tool("skillbank_do", {"task": "Order 2 x 'lamp' for a@b.co"})
        assert not result.is_error
        data = _text(result)
        assert data["ran"] is False and data["result"] is None
        assert data["decision"]["rule"] == "not_autonomous"
        assert data["decision"]["closest"] == _order_skill(bank)
        assert result.structured_content == data

    _run(test)
    assert shop.snapshot() == before


def test_errors_come_back_as_readable_tool_errors(bank: SkillBank, shop: Shop) -> None:
    before = shop.snapshot()

    async def test() -> None:
        async with Client(build_server(bank, shop.tools())) as client:
            bad_type = await client.call_tool(_order_skill(bank), {**ARGS, "quantity": "two"})
            missing = await client.call_tool(_order_skill(bank), {"email": ARGS["email"]})
            unknown = await client.call_tool("no_such_skill", {})
            cognitive = await client.call_tool(
                _late_skill(bank), {"email": "a@example.com", "update_email": "b@example.com"}
            )
        for result in (bad_type, missing, unknown, cognitive):
            assert result.is_error
            error = _text(result)["error"]
            assert _text(result)["ok"] is False
            assert set(error) >= {"type", "message", "hint"}
        assert "quantity" in _text(bad_type)["error"]["message"]
        assert "'two'" in _text(bad_type)["error"]["message"]
        assert "query" in _text(missing)["error"]["message"]
        assert "no_such_skill" in _text(unknown)["error"]["message"]
        assert _text(cognitive)["error"]["type"] == "unavailable"
        assert f"skill://{_late_skill(bank)}" in _text(cognitive)["error"]["hint"]

    _run(test)
    assert shop.snapshot() == before


def test_skills_learned_while_serving_are_listed_and_announced(
    tmp_path: Path, shop: Shop, example_trajectories: list[Trajectory]
) -> None:
    late = [t for t in example_trajectories if t.id.startswith(LATE)]
    early = [t for t in example_trajectories if "order_product" in t.id]
    legacy_heard: list[str] = []

    async def test(bank: SkillBank) -> None:
        heard = anyio.Event()

        async def on_message(message: IncomingMessage) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                legacy_heard.append(message.method)
                heard.set()

        server = build_server(bank, shop.tools(), watch_interval_s=0.05)
        async with (
            Client(server) as modern,
            Client(server, mode="legacy", message_handler=on_message) as legacy,
            modern.listen(tools_list_changed=True) as subscription,
        ):
            before = {t.name for t in (await modern.list_tools()).tools}
            assert {t.name for t in (await legacy.list_tools()).tools} == before
            assert before == {_order_skill(bank), "skillbank_do"}

            report = await anyio.to_thread.run_sync(lambda: bank.learn(late, branch="current"))
            assert report.updated == [_late_skill(bank)]

            with anyio.fail_after(10):
                event = await subscription.__anext__()
                await heard.wait()
            assert isinstance(event, ToolsListChanged)
            after = {t.name for t in (await modern.list_tools()).tools}
            assert after == before | {_late_skill(bank)}
            assert {t.name for t in (await legacy.list_tools()).tools} == after
        assert legacy_heard == ["notifications/tools/list_changed"]

    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn([*early, late[0]], branch="current")
        anyio.run(test, bank)


# --- host tools and the command -------------------------------------------------------------


def test_load_host_tools_takes_a_module_or_module_attr() -> None:
    shop_tools = load_host_tools("skillbank.examples.shop")
    assert "place_order" in shop_tools
    assert load_host_tools("skillbank.examples.shop:tools").keys() == shop_tools.keys()
    with pytest.raises(ConfigError, match="cannot import host tools module 'no_such_mod'"):
        load_host_tools("no_such_mod")
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        load_host_tools("skillbank.examples.shop:nope")
    with pytest.raises(ConfigError, match="mapping of tool name to function, got list"):
        load_host_tools("skillbank.examples.shop:TOOL_SPECS")
    with pytest.raises(ConfigError, match="MODULE or MODULE:ATTR"):
        load_host_tools("not a module")


def test_serve_help_and_usage_errors(bank: SkillBank) -> None:
    runner = CliRunner()
    help_text = runner.invoke(cli, ["serve", "--help"]).output
    assert "Examples:" in help_text and "--http HOST:PORT" in help_text
    assert "--upstream FILE" in help_text
    bad_tools = runner.invoke(cli, ["serve", "--root", str(bank.root), "--tools", "nope_mod"])
    assert bad_tools.exit_code == 2
    assert "cannot import host tools module 'nope_mod'" in bad_tools.output
    bad_http = runner.invoke(cli, ["serve", "--root", str(bank.root), "--http", "localhost"])
    assert bad_http.exit_code == 2 and "HOST:PORT" in bad_http.output
    not_a_bank = runner.invoke(cli, ["serve", "--root", str(bank.root / "skills" / "x")])
    assert not_a_bank.exit_code == 1 and "is not a skill bank" in not_a_bank.output


# --- over stdio and HTTP ------------------------------------------------------------------


def _command(bank: SkillBank, *extra: str) -> list[str]:
    tools = "skillbank.examples.shop"
    return ["-m", "skillbank", "serve", "--root", str(bank.root), "--tools", tools, *extra]


def test_serves_over_stdio(bank: SkillBank, shop: Shop) -> None:
    before = _stock(shop)
    params = StdioServerParameters(
        command=sys.executable,
        args=_command(bank),
        env={"SKILLBANK_SHOP_DB": str(shop.path)},
        cwd=REPO,
    )

    async def test() -> None:
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert _order_skill(bank) in names
            result = await client.call_tool(_order_skill(bank), ARGS)
        assert not result.is_error, result
        assert _text(result)["ok"] is True

    _run(test)
    assert sorted(_ordered(before, _stock(shop)).values()) == [2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout_s} s")


def test_serves_streamable_http(bank: SkillBank, shop: Shop) -> None:
    port = _free_port()
    env = {**os.environ, "SKILLBANK_SHOP_DB": str(shop.path)}
    process = subprocess.Popen(
        [sys.executable, *_command(bank, "--http", f"127.0.0.1:{port}")],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(port, process)

        async def test() -> None:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                names = {t.name for t in (await client.list_tools()).tools}
                assert _order_skill(bank) in names

        _run(test)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr.decode()
    assert f"on http://127.0.0.1:{port}/mcp" in stderr.decode()
