"""The Executor protocol: the contract on every backend, asyncio, and a long soak."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Callable, Iterator

import pytest

from sandbox import (
    ExecRequest,
    Executor,
    LocalExecutor,
    Sandbox,
    ToolError,
    ToolHost,
    ToolNotAllowed,
)
from sandbox.contract import CONTRACT


class RelayExecutor:
    """A stand-in for a remote backend: only text crosses, through queues, to another thread.

    It shows the protocol is enough to move execution elsewhere: the "remote" side holds its
    own LocalExecutor and reaches the caller's tools by sending JSON text back.
    """

    Channel = queue.Queue[tuple[str, str]]

    def __init__(self) -> None:
        self.inbox: queue.Queue[tuple[str, RelayExecutor.Channel, RelayExecutor.Channel] | None]
        self.inbox = queue.Queue()
        self.remote = LocalExecutor()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while (job := self.inbox.get()) is not None:
            threading.Thread(target=self._run_remotely, args=job, daemon=True).start()

    def _run_remotely(self, request_json: str, up: Channel, down: Channel) -> None:
        class RemoteTools:
            def call_tool(self, name: str, arguments_json: str) -> str:
                up.put(("tool", json.dumps([name, arguments_json])))
                kind, text = down.get()
                if kind == "error":
                    raise ToolError(name, text)
                return text

        try:
            up.put(("done", self.remote.execute(request_json, RemoteTools())))
        except ValueError as exc:
            up.put(("refused", str(exc)))

    def execute(self, request_json: str, tools: ToolHost) -> str:
        up: RelayExecutor.Channel = queue.Queue()
        down: RelayExecutor.Channel = queue.Queue()
        self.inbox.put((request_json, up, down))
        while True:
            kind, text = up.get(timeout=60)
            if kind == "done":
                return text
            if kind == "refused":
                raise ValueError(text)
            name, arguments_json = json.loads(text)
            try:
                down.put(("ok", tools.call_tool(name, arguments_json)))
            except (ToolError, ToolNotAllowed) as exc:
                down.put(("error", exc.message))

    def close(self) -> None:
        self.inbox.put(None)
        self.remote.close()


BACKENDS: dict[str, Callable[[], Executor]] = {"local": LocalExecutor, "relay": RelayExecutor}


@pytest.fixture(params=sorted(BACKENDS), scope="module")
def backend(request: pytest.FixtureRequest) -> Iterator[Executor]:
    made = BACKENDS[request.param]()
    yield made
    made.close()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_backend_passes_the_contract(backend: Executor, check: Callable[[Executor], None]) -> None:
    check(backend)


def test_backends_satisfy_the_protocol_type() -> None:
    for factory in BACKENDS.values():
        made = factory()
        try:
            assert isinstance(made, Executor)
        finally:
            made.close()


def test_sandbox_runs_through_any_executor() -> None:
    relay = RelayExecutor()
    with Sandbox(executor=relay) as sandbox:
        result = sandbox.run(
            "def skill(x: int) -> int:\n    return tools.double(x=x) + 1\n",
            "skill",
            {"x": 20},
            {"double": lambda x: 2 * x},
        )
    assert result.ok and result.value == 41
    assert [(c.tool, c.arguments, c.result) for c in result.tool_calls] == [
        ("double", {"x": 20}, 40)
    ]


def test_request_round_trips_and_rejects_junk() -> None:
    from sandbox import Limits

    request = ExecRequest.build("def f() -> int:\n    return 1\n", "f", {"a": [1]}, ["t"], Limits())
    assert ExecRequest.from_json(request.to_json()) == request
    for junk in (
        "",
        "[]",
        '{"skill_id": 1}',
        json.dumps({**json.loads(request.to_json()), "tools": "t"}),
    ):
        with pytest.raises(ValueError):
            ExecRequest.from_json(junk)


def test_concurrent_calls_from_asyncio() -> None:
    async def main(sandbox: Sandbox) -> list[int]:
        calls = [
            sandbox.run_async(
                "def f(n: int) -> int:\n    return tools.sq(n=n)\n",
                "f",
                {"n": n},
                {"sq": lambda n: n * n},
            )  # fmt: skip
            for n in range(8)
        ]
        return [r.value for r in await asyncio.gather(*calls)]

    with Sandbox() as sandbox:
        assert asyncio.run(main(sandbox)) == [n * n for n in range(8)]


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize(
    ("isolation", "warm_up", "calls"),
    # Fresh mode forks a process per call, so it gets fewer calls in the same time.
    [("reuse", 1000, 10_000), ("fresh", 300, 1500)],
)
def test_host_memory_stays_flat_over_many_calls(isolation: str, warm_up: int, calls: int) -> None:
    source = "def f(i: int) -> dict:\n    return {'i': tools.echo(v=i)}\n"
    tools = {"echo": lambda v: v}
    with Sandbox(max_calls_per_worker=500, isolation=isolation) as sandbox:
        for i in range(warm_up):  # warm up: allocator pools, caches, worker recycling
            assert sandbox.run(source, "f", {"i": i}, tools).ok
        before = _rss_kib()
        for i in range(calls):
            result = sandbox.run(source, "f", {"i": i}, tools)
            assert result.ok and result.value == {"i": i}
        grown = _rss_kib() - before
    assert grown < 8 * 1024, f"host RSS grew by {grown} KiB over {calls} calls"
