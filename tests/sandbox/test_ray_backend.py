"""The Ray backend on real Ray clusters on 127.0.0.1: one node, then two (``ray start --head``
plus ``ray start --address``). The unchanged contract passes on both; an actor or a node dying
mid-call is WorkerCrashed and the next call succeeds.

Slow: each cluster takes several seconds to start, so each class shares one (a driver process
joins one cluster at a time, so the classes run one after the other).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox import Executor, Limits, Sandbox
from sandbox.contract import CONTRACT, RecordingToolHost
from sandbox.executor import ExecRequest
from tests.servers import RayCluster, missing, ray_env

ray_backend = pytest.importorskip("sandbox.ray_backend")
RayExecutor = ray_backend.RayExecutor

pytestmark = pytest.mark.slow

_LONG = Limits(timeout_s=20.0, cpu_s=30, memory_mb=512)


def _cluster(nodes: int) -> RayCluster:
    os.environ.update(ray_env())  # before Ray reads its configuration, at import
    try:
        import ray  # noqa: F401
    except ImportError:
        missing("ray is not installed: pip install -e '.[test]'")
    return RayCluster(nodes=nodes, cpus_per_node=1 if nodes > 1 else 2).start()


def _spin_source(for_actor: int, actors: int) -> str:
    """A skill that never ends, whose source the placement rule sends to actor ``for_actor``."""
    for n in range(10_000):
        source = f"def skill() -> int:\n    n = {n}\n    while True:\n        n += 1\n"
        digest = hashlib.sha256(source.encode()).hexdigest()
        if ray_backend.placement(digest, actors) == for_actor:
            return source
    raise AssertionError("no source hashes to that actor")


def _run(executor: Executor, source: str, limits: Limits = _LONG) -> dict[str, Any]:
    request = ExecRequest.build(source, "skill", {}, [], limits, skill_id="t")
    response: dict[str, Any] = json.loads(
        executor.execute(request.to_json(), RecordingToolHost({}))
    )
    return response


def _crash_mid_call(executor: Executor, source: str, kill: Callable[[], None]) -> dict[str, Any]:
    """Start ``source`` (which spins), ``kill`` once it runs; the call's response."""
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(_run(executor, source)))
    thread.start()
    time.sleep(1.5)  # the call has reached its actor's worker
    kill()
    thread.join(60)
    assert not thread.is_alive(), "the call did not come back after its actor died"
    return out


class _Borrowed:
    """Lends an executor to a Sandbox, which closes its executor when it closes."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def execute(self, request_json: str, tools: Any) -> str:
        return self.inner.execute(request_json, tools)

    def close(self) -> None:
        pass


@pytest.fixture(scope="class")
def one_node() -> Iterator[Any]:
    """An executor with two actors on a one-node cluster, for the class."""
    cluster = _cluster(1)
    made = None
    try:
        made = RayExecutor(cluster.address, actors=2)
        yield made
    finally:
        if made is not None:
            made.close()
        cluster.stop()


@pytest.fixture(scope="class")
def two_nodes() -> Iterator[tuple[RayCluster, Any]]:
    """A two-node cluster and an executor with two actors on it, for the class."""
    os.environ.update(ray_env())  # before Ray reads its configuration, at import
    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster = _cluster(2)
    made = None
    try:
        made = RayExecutor(cluster.address, actors=2)
        yield cluster, made
    finally:
        if made is not None:
            made.close()
        cluster.stop()


class TestOneNode:
    @pytest.fixture
    def executor(self, one_node: Any) -> Any:
        return one_node

    @pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
    def test_the_contract(self, executor: Executor, check: Callable[[Executor], None]) -> None:
        check(executor)

    def test_a_sandbox_over_ray_runs_host_tools_where_they_are(self, executor: Any) -> None:
        here = os.getpid()
        seen: list[int] = []

        def where(x: int) -> int:
            seen.append(os.getpid())
            return x * 2

        with Sandbox(executor=_Borrowed(executor)) as sandbox:
            result = sandbox.run(
                "def skill(x: int) -> int:\n    return tools.where(x=x) + 1\n",
                "skill", {"x": 20}, {"where": where},
            )  # fmt: skip
        assert result.ok and result.value == 41, result
        assert seen == [here]
        actors = executor.actors()
        assert all(a["pid"] != here for a in actors)

    def test_an_actor_killed_mid_call_is_worker_crashed_and_the_next_call_works(
        self, executor: Any
    ) -> None:
        victim = executor.actors()[0]["pid"]
        out = _crash_mid_call(executor, _spin_source(0, 2), lambda: os.kill(victim, signal.SIGKILL))
        assert out["ok"] is False and out["error"]["type"] == "WorkerCrashed", out
        assert "Ray actor" in out["error"]["message"]
        for n in range(4):  # whichever actor each lands on, the replacement included
            after = _run(executor, f"def skill() -> int:\n    return {n}\n")
            assert after["ok"] and after["value"] == n, after
        assert victim not in [a["pid"] for a in executor.actors()]

    def test_callers_beyond_the_actors_wait_and_time_out_if_never_served(self) -> None:
        # Backpressure: one actor, one call at a time; a second caller waits for the slot,
        # and gives up when its own timeout passes without one.
        narrow = RayExecutor(actors=1, calls_per_actor=1)
        try:
            spin = _spin_source(0, 1)
            first: dict[str, Any] = {}
            thread = threading.Thread(
                target=lambda: first.update(_run(narrow, spin, Limits(timeout_s=4.0)))
            )
            thread.start()
            time.sleep(0.5)
            waited = _run(narrow, "def skill() -> int:\n    return 1\n", Limits(timeout_s=1.0))
            thread.join(30)
            assert waited["error"]["type"] == "ExecutionTimeout", waited
            assert "busy" in waited["error"]["message"]
            assert first["error"]["type"] == "ExecutionTimeout"
            assert _run(narrow, "def skill() -> int:\n    return 2\n")["value"] == 2
        finally:
            narrow.close()

    def test_an_unreachable_cluster_says_which_address_and_what_to_check(self) -> None:
        from tests.servers import free_port

        address = f"127.0.0.1:{free_port()}"
        import ray

        ray.shutdown()  # a driver joins one cluster: leave the class's (its last test)
        with pytest.raises(ConnectionError) as caught:
            RayExecutor(address, connect_timeout_s=2)
        assert address in str(caught.value) and "ray start --head" in str(caught.value)


class TestTwoNodes:
    @pytest.fixture
    def executor(self, two_nodes: tuple[RayCluster, Any]) -> Any:
        return two_nodes[1]

    @pytest.fixture
    def cluster(self, two_nodes: tuple[RayCluster, Any]) -> RayCluster:
        return two_nodes[0]

    def test_actors_spread_over_both_nodes(self, executor: Any) -> None:
        nodes = {a["node"] for a in executor.actors()}
        assert len(nodes) == 2, executor.actors()

    @pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
    def test_the_contract(self, executor: Executor, check: Callable[[Executor], None]) -> None:
        check(executor)

    def test_a_node_dying_mid_call_is_worker_crashed_and_the_next_call_works(
        self, executor: Any, cluster: RayCluster
    ) -> None:
        import ray

        head = ray.get_runtime_context().get_node_id()
        actors = executor.actors()
        (index,) = [i for i, a in enumerate(actors) if a["node"] != head]
        out = _crash_mid_call(executor, _spin_source(index, 2), lambda: cluster.kill_node(1))
        assert out["ok"] is False and out["error"]["type"] == "WorkerCrashed", out
        for n in range(3):
            after = _run(executor, f"def skill() -> int:\n    return {n}\n")
            assert after["ok"] and after["value"] == n, after
