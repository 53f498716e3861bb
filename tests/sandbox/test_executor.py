"""The Executor protocol: the contract on every backend, asyncio, and a long soak."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

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


def test_run_async_is_served_on_the_event_loop_and_tools_off_it() -> None:
    from sandbox import ExecutionTimeout, Limits

    loop_thread: list[int] = []
    tool_threads: list[int] = []

    def where(i: int) -> int:
        tool_threads.append(threading.get_ident())
        return i

    async def main(sandbox: Sandbox) -> list[Any]:
        loop_thread.append(threading.get_ident())
        # Warm the pool so the calls need no thread to start a worker.
        await asyncio.gather(*(sandbox.run_async("def f():\n    return 0\n", "f", {}, {})
                               for _ in range(2)))  # fmt: skip
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        clock = asyncio.create_task(ticker())
        busy = await sandbox.run_async(
            "def f():\n    n = 0\n    for i in range(3_000_000):\n        n += i\n    return n\n",
            "f", {}, {},
        )  # fmt: skip
        clock.cancel()
        echoed = await sandbox.run_async(
            "def f():\n    return [tools.where(i=i) for i in range(3)]\n", "f", {}, {"where": where}
        )
        hung = await sandbox.run_async(
            "def f():\n    return tools.hang()\n", "f", {}, {"hang": lambda: time.sleep(3)},
            Limits(timeout_s=1.0),
        )  # fmt: skip
        return [busy.value, ticks, echoed.value, hung]

    with Sandbox(max_idle_workers=2) as sandbox:
        busy, ticks, echoed, hung = asyncio.run(main(sandbox))
    assert busy == sum(range(3_000_000))
    assert ticks >= 2, "the event loop was blocked while the worker computed"
    assert echoed == [0, 1, 2]
    assert tool_threads and loop_thread[0] not in tool_threads
    assert type(hung.error) is ExecutionTimeout and hung.error.tool == "hang"


@pytest.mark.parametrize("isolation", ["fresh", "reuse"])
def test_run_async_takes_a_ready_worker_without_a_thread(
    isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_waiting() -> None:
        raise AssertionError("run_async waited for a worker although one was ready")

    with Sandbox(max_idle_workers=1, isolation=isolation) as sandbox:
        pool = sandbox._pool
        assert pool.acquire_idle() is None  # nothing running yet, and it starts nothing
        assert sandbox.run("def f():\n    return 1\n", "f", {}, {}).value == 1
        for _ in range(1000):  # fresh: the template forks one ahead; reuse: the worker is kept
            if pool.pids()["idle"]:
                break
            time.sleep(0.01)
        ready = pool.pids()["idle"]
        assert ready
        monkeypatch.setattr(pool, "acquire", no_waiting)  # the thread hand-off's only path
        pid = "def f():\n    return tools.pid()\n"
        busy = lambda: pool.pids()["busy"][0]  # noqa: E731
        result = asyncio.run(sandbox.run_async(pid, "f", {}, {"pid": busy}))
        assert result.ok, result.error
        assert result.value in ready


@pytest.mark.parametrize("tasks", [12, 64])
def test_run_async_waits_for_forks_on_the_loop(tasks: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # More tasks than workers forked ahead: they wait for the template's next forks on the
    # event loop, served as the template's socket says a worker is there: never in a thread
    # (its path is patched to fail), and not by the periodic look (made 2 s apart here).
    import sandbox.pool

    def no_thread() -> None:
        raise AssertionError("run_async waited for a fork in a thread")

    monkeypatch.setattr(sandbox.pool, "_LOOP_LOOK_AGAIN_S", 2.0)
    monkeypatch.setattr(sandbox.pool, "_LOOP_FORK_WAIT_S", 60.0)
    source = "def f(i: int) -> int:\n    return i * 2\n"

    async def main(box: Sandbox) -> tuple[list[Any], float]:
        started = time.monotonic()
        calls = [box.run_async(source, "f", {"i": i}, {}) for i in range(tasks)]
        results = await asyncio.gather(*calls)
        return [r.value if r.ok else r.error for r in results], time.monotonic() - started

    with Sandbox(max_idle_workers=1) as box:
        assert box.run("def f():\n    return 1\n", "f", {}, {}).value == 1
        monkeypatch.setattr(box._pool, "acquire", no_thread)
        values, took = asyncio.run(main(box))
        assert not box._pool._fork_watches  # the last waiter stopped the watcher
    assert values == [2 * i for i in range(tasks)]
    assert took < 2.0, f"{tasks} calls took {took:.2f} s: the waits were not woken by forks"


def test_a_task_cancelled_while_waiting_for_a_fork_leaves_no_worker() -> None:
    source = (
        "def f() -> int:\n    n = 0\n    for i in range(300_000):\n        n += i\n    return n\n"
    )

    async def main(box: Sandbox) -> list[int]:
        tasks = [asyncio.create_task(box.run_async(source, "f", {}, {})) for _ in range(8)]
        await asyncio.sleep(0.01)
        for task in tasks[4:]:
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        return [r.value for r in done if not isinstance(r, BaseException)]

    with Sandbox(max_idle_workers=1) as box:
        assert box.run("def f():\n    return 1\n", "f", {}, {}).value == 1
        values = asyncio.run(main(box))
        assert values and set(values) == {sum(range(300_000))}
        for _ in range(500):  # cancelled calls' workers are killed and reaped
            if not box._pool.pids()["busy"]:
                break
            time.sleep(0.01)
        assert box._pool.pids()["busy"] == []
        assert box.run("def f():\n    return 7\n", "f", {}, {}).value == 7


def test_run_async_starts_a_new_template_when_the_old_one_died() -> None:
    import signal

    async def main(sandbox: Sandbox) -> list[Any]:
        calls = [sandbox.run_async("def f(i: int) -> int:\n    return i\n", "f", {"i": i}, {})
                 for i in range(4)]  # fmt: skip
        return [r.value if r.ok else r.error for r in await asyncio.gather(*calls)]

    with Sandbox(max_idle_workers=1) as sandbox:
        assert sandbox.run("def f():\n    return 1\n", "f", {}, {}).value == 1
        pool = sandbox._pool
        for _ in range(1000):
            if pool.pids()["idle"]:
                break
            time.sleep(0.01)
        worker = pool.pids()["idle"][0]
        with open(f"/proc/{worker}/stat") as fh:
            stat = fh.read()
        template = int(stat[stat.rindex(")") + 2 :].split()[1])
        os.kill(template, signal.SIGKILL)
        assert asyncio.run(main(sandbox)) == [0, 1, 2, 3]


def test_cancelling_run_async_discards_the_worker() -> None:
    async def main(sandbox: Sandbox) -> int:
        await sandbox.run_async("def f():\n    return 0\n", "f", {}, {})
        task = asyncio.create_task(
            sandbox.run_async("def f():\n    while True:\n        pass\n", "f", {}, {})
        )
        await asyncio.sleep(0.2)
        busy = sandbox._pool.pids()["busy"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for pid in busy:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        return (await sandbox.run_async("def f():\n    return 7\n", "f", {}, {})).value

    with Sandbox(max_idle_workers=1) as sandbox:
        assert asyncio.run(main(sandbox)) == 7


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


def test_tasks_cancelled_as_asyncio_run_exits_leave_no_worker() -> None:
    # No template yet, so each task waits for its worker on a thread; asyncio.run cancels
    # every task at exit, and the workers those threads still get are released, not kept.
    async def main(box: Sandbox) -> None:
        for _ in range(4):
            asyncio.create_task(box.run_async("def f():\n    return 1\n", "f", {}, {}))
        await asyncio.sleep(0)  # the tasks start; main returns while they wait

    with Sandbox(max_idle_workers=1) as box:
        asyncio.run(main(box))
        for _ in range(1000):
            if not box._pool._live:
                break
            time.sleep(0.01)
        assert not box._pool._live and box._pool.pids()["busy"] == []
        assert box.run("def f():\n    return 7\n", "f", {}, {}).value == 7


def test_threads_and_asyncio_tasks_share_one_sandbox() -> None:
    # Threads reading the template's socket take messages the loop's watcher saw: the watcher
    # stops watching until its next look, and every call on both sides still gets a worker.
    source = "def f(i: int) -> int:\n    return i + 1\n"
    thread_values: list[int] = []

    def calls(box: Sandbox) -> None:
        for i in range(40):
            thread_values.append(box.run(source, "f", {"i": i}, {}).value)

    async def main(box: Sandbox) -> list[Any]:
        results = await asyncio.gather(*(box.run_async(source, "f", {"i": i}, {})
                                         for i in range(80)))  # fmt: skip
        return [r.value for r in results]

    with Sandbox(max_idle_workers=1) as box:
        assert box.run(source, "f", {"i": 0}, {}).value == 1
        threads = [threading.Thread(target=calls, args=(box,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        values = asyncio.run(main(box))
        for thread in threads:
            thread.join()
        assert not box._pool._fork_watches
    assert values == [i + 1 for i in range(80)]
    assert sorted(thread_values) == sorted([i + 1 for i in range(40)] * 2)
