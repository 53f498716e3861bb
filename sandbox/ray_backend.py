"""The Ray backend: skill calls run on actors of a Ray cluster; tool calls come back as JSON.

:class:`RayExecutor` is a :class:`sandbox.executor.Executor`. It keeps a few Ray actors, each
holding a warm :class:`sandbox.pool.LocalExecutor` (so every call still runs in a fresh,
confined worker process forked from a warm template, on whichever node holds the actor), and
speaks to them in JSON text only:

- ``start(call_id, request_json)`` hands an actor the request and blocks until the call's
  first *event*: a tool call the skill made (``{"op": "tool", "name", "arguments"}``, the
  arguments as JSON text) or its end (``{"op": "done", "response": <the Executor's JSON
  response>}``);
- ``reply(call_id, reply_json)`` answers a tool call (``{"ok": true, "value": <JSON text>}``
  or ``{"ok": false, "error_type": "ToolError" | "ToolNotAllowed", "message", "allowed"}``)
  and blocks until the next event.

The host tools never move: the caller runs each one here, on a helper thread under the call's
deadline (:class:`sandbox.relay.ToolRunner`), and sends its JSON result back. A call with
``k`` tool calls is ``k + 1`` actor round trips. Nothing but strings crosses: no callable, no
pickled object of ours (Ray moves the strings; the actor class is imported by name on the
node, so ``sandbox`` must be installed there).

**Placement.** A call goes to the actor its source's content hash names (``int(hash[:8], 16)
% actors``), so a skill's calls land on the same warm actor, whose template has compiled the
skill ahead (:meth:`sandbox.pool.WorkerPool.learned`); only when that actor is full does the
call go to the least busy one. Actor ``i`` is placed on the ``i``-th live node (round robin,
node affinity; a node an actor just died on is avoided for a minute) and reserves no CPU:
the work happens in its sandbox workers, which Ray does not schedule.

**Backpressure.** At most ``actors * calls_per_actor`` calls are in flight; further callers
wait for a slot, up to their own ``timeout_s``, and then get :class:`ExecutionTimeout` (the
call never started).

**Timeouts.** The actor's sandbox enforces ``Limits.timeout_s`` as it does locally; the
caller also stops waiting for an actor at the deadline plus a grace period, so a hung or
partitioned actor cannot hold a call forever (it is then replaced, as below).

**Failures.** An actor that dies mid-call (its process killed, its node lost) or does not
answer in time makes that call :class:`WorkerCrashed`; the actor is killed and replaced, and
the next call succeeds on a live one. A worker process that dies inside an actor is handled
by that actor's local sandbox, as on one machine.

**Loopback.** With no address (a private one-machine cluster started in this process) or a
loopback one, Ray is told that this node is ``127.0.0.1`` and kept to it (:func:`keep_loopback`:
Ray would otherwise swap in the machine's routable address and listen there); no dashboard
starts, and usage statistics are off unless the environment says otherwise. A user's cluster address
comes from their configuration (``ray_address``).

``ray`` is an optional dependency, imported when an executor is made; without it the error
names the extra to install (``pip install 'skillbank[ray]'``). Only the standard library and
the rest of ``sandbox`` are imported at module level.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

from sandbox.errors import (
    ExecutionTimeout,
    SandboxError,
    ToolError,
    ToolNotAllowed,
    WorkerCrashed,
)
from sandbox.executor import ExecRequest, ToolHost, result_to_json
from sandbox.relay import ToolRunner
from sandbox.result import Result

__all__ = ["INSTALL_HINT", "RayExecutor", "SandboxActor", "keep_loopback", "placement"]

#: What to install for the Ray backend.
INSTALL_HINT: Final = "pip install 'skillbank[ray]'"
#: Seconds the caller waits for an actor beyond the call's own timeout before giving it up.
GRACE_S: Final = 10.0
_LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")
#: Seconds a node an actor died on is avoided when placing new actors.
_SUSPECT_S: Final = 60.0
_SEPARATORS: Final = (",", ":")


def _import_ray() -> Any:
    # No Ray call may start a cluster of its own behind our back (Ray does, by default, when
    # an API is used while not connected), and no usage statistics leave the machine.
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ImportError(f"the Ray executor needs the ray package: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def keep_loopback(ray: Any) -> Iterator[None]:
    """While Ray starts or joins a cluster, leave a loopback node address as it is.

    Ray (2.60) replaces ``127.0.0.1`` given as the node's address by the machine's routable
    address (``ray._private.services.resolve_ip_for_localhost``) so that other machines could
    reach it; its servers then listen on the network. For a cluster on one machine, and for a
    driver joining one, loopback must stay loopback. When Ray lacks the hook (another
    version), nothing is changed.
    """
    try:
        import ray._private.services as services
    except ImportError:
        yield
        return
    original = getattr(services, "resolve_ip_for_localhost", None)
    if original is None:
        yield
        return

    def resolve(host: str) -> Any:
        return "127.0.0.1" if host in _LOOPBACK else original(host)

    services.resolve_ip_for_localhost = resolve
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = original


def placement(content_hash: str, actors: int) -> int:
    """The actor a skill's calls go to while it has room: fixed by the source's hash."""
    return int(content_hash[:8], 16) % actors


def _failed(error: SandboxError, started: float) -> str:
    """A response for a call that failed outside the skill (no actor, a dead actor)."""
    return result_to_json(
        Result(
            ok=False,
            value=None,
            error=error,
            tool_calls=(),
            duration_s=time.monotonic() - started,
            output="",
        )  # fmt: skip
    )


# ----------------------------------------------------------------------- the actor's side


class _RemoteCall:
    """One call inside an actor: events out to the caller, replies in from it."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.events: queue.Queue[str] = queue.Queue()
        self.replies: queue.Queue[str] = queue.Queue()


class _RelayedTools:
    """The actor's :class:`ToolHost`: each tool call becomes an event; the reply its result."""

    def __init__(self, call: _RemoteCall) -> None:
        self.call = call

    def call_tool(self, name: str, arguments_json: str) -> str:
        self.call.events.put(
            json.dumps(
                {"op": "tool", "name": name, "arguments": arguments_json}, separators=_SEPARATORS
            )  # fmt: skip
        )
        try:
            reply = json.loads(self.call.replies.get(timeout=self.call.timeout_s + GRACE_S))
        except queue.Empty:
            raise ToolError(name, "the caller did not answer the tool call") from None
        if reply.get("ok") is True:
            return str(reply["value"])
        if reply.get("error_type") == "ToolNotAllowed":
            raise ToolNotAllowed(name, list(reply.get("allowed") or []))
        raise ToolError(name, str(reply.get("message", "the tool failed")))


class SandboxActor:
    """The body of one Ray actor: a warm local sandbox, driven by JSON events.

    Made into an actor by :class:`RayExecutor` (``ray.remote(SandboxActor)``); public so that
    Ray can import it by name on any node.

    Args:
        isolation: The local sandbox's isolation (``"fresh"``: a new process per call).
        max_idle_workers: Workers its template keeps forked ahead of demand.
    """

    def __init__(self, isolation: str = "fresh", max_idle_workers: int = 2) -> None:
        from sandbox.pool import LocalExecutor

        self.executor = LocalExecutor(isolation=isolation, max_idle_workers=max_idle_workers)
        self.calls: dict[str, _RemoteCall] = {}
        self.lock = threading.Lock()

    def ready(self) -> str:
        """Start the sandbox's template; answer where this actor runs (JSON: pid, node)."""
        self.executor.confinement()
        node = ""
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - outside Ray (a direct test of the class)
            pass
        return json.dumps({"pid": os.getpid(), "node": node})

    def start(self, call_id: str, request_json: str) -> str:
        """Begin a call; block until its first event (JSON text)."""
        try:
            timeout_s = float(json.loads(request_json)["limits"]["timeout_s"])
        except (ValueError, KeyError, TypeError):
            timeout_s = 60.0
        call = _RemoteCall(timeout_s)
        with self.lock:
            self.calls[call_id] = call
        threading.Thread(
            target=self._run, args=(call, request_json), name=f"ray-call-{call_id[:8]}",
            daemon=True,
        ).start()  # fmt: skip
        return self._next(call_id, call)

    def reply(self, call_id: str, reply_json: str) -> str:
        """Answer the call's pending tool call; block until its next event (JSON text)."""
        with self.lock:
            call = self.calls.get(call_id)
        if call is None:
            return _done(_failed(WorkerCrashed(f"no call {call_id!r} on this actor"), 0.0))
        call.replies.put(reply_json)
        return self._next(call_id, call)

    def _next(self, call_id: str, call: _RemoteCall) -> str:
        try:
            event = call.events.get(timeout=call.timeout_s + GRACE_S)
        except queue.Empty:
            event = _done(_failed(WorkerCrashed("the call produced nothing in time"), 0.0))
        if event.startswith('{"op":"done"'):
            with self.lock:
                self.calls.pop(call_id, None)
        return event

    def _run(self, call: _RemoteCall, request_json: str) -> None:
        started = time.monotonic()
        try:
            response = self.executor.execute(request_json, _RelayedTools(call))
        except Exception as exc:  # noqa: BLE001 - every failure is the call's result
            response = _failed(WorkerCrashed(f"the actor's sandbox failed: {exc}"), started)
        call.events.put(_done(response))


def _done(response: str) -> str:
    return '{"op":"done","response":' + json.dumps(response) + "}"


# ---------------------------------------------------------------------- the caller's side


class _Slot:
    """One actor as the caller sees it: its handle (None: to be made) and calls in flight."""

    def __init__(self) -> None:
        self.handle: Any = None
        self.busy = 0
        #: The node its actor runs on, once known ("" before).
        self.node = ""


class RayExecutor:
    """Runs skill calls on Ray actors, each with a warm local sandbox (see the module docstring).

    Args:
        address: The cluster: ``HOST:PORT`` of a running head, ``"auto"``, or None to start a
            private one-machine cluster in this process (on 127.0.0.1, no dashboard). Ignored
            when Ray is already initialised in this process.
        actors: Actors to keep (0: one per CPU of the cluster, at least 1).
        calls_per_actor: Calls one actor serves at once (each in its own worker process).
        isolation: Each actor's local sandbox isolation (``"fresh"``, the default, or
            ``"reuse"``).
        max_idle_workers: Workers each actor's template keeps forked ahead of demand.
        num_cpus: With ``address=None``: the private cluster's CPUs (default: this machine's).
        connect_timeout_s: How long to wait for the cluster and for the actors to start.

    Raises:
        ImportError: ray is not installed (the message names the extra).
        ConnectionError: the cluster at ``address`` cannot be reached (the message says
            which address and what to check).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        actors: int = 0,
        calls_per_actor: int = 2,
        isolation: str = "fresh",
        max_idle_workers: int = 2,
        num_cpus: int | None = None,
        connect_timeout_s: float = 60.0,
    ) -> None:
        if actors < 0 or calls_per_actor < 1:
            raise ValueError(
                f"actors={actors!r} must be 0 (one per CPU) or more and calls_per_actor="
                f"{calls_per_actor!r} at least 1"
            )
        self._ray = ray = _import_ray()
        self.address = address
        self.isolation = isolation
        self._max_idle = max_idle_workers
        self._per_actor = calls_per_actor
        #: Calls one actor serves at once.
        self.calls_per_actor = calls_per_actor
        self._connect_timeout_s = connect_timeout_s
        self._started_ray = False
        if not ray.is_initialized():
            self._connect(address, num_cpus)
            self._started_ray = True
        if actors == 0:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._slots = [_Slot() for _ in range(actors)]
        #: Nodes an actor died on, until when they are avoided for new actors.
        self._suspect: dict[str, float] = {}
        self._lock = threading.Lock()
        self._free = threading.Semaphore(actors * calls_per_actor)
        self._closed = False
        self.tool_runner = ToolRunner(name="ray-tool")
        self._warm(range(actors))

    # --- connecting ---------------------------------------------------------------------

    def _connect(self, address: str | None, num_cpus: int | None) -> None:
        ray = self._ray
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": "ERROR",
            "configure_logging": True,
        }
        if address is None:
            options.update(
                num_cpus=num_cpus or os.cpu_count() or 1,
                num_gpus=0,
                object_store_memory=100 * 1024 * 1024,
                _node_ip_address="127.0.0.1",
            )
        elif address != "auto":
            host, _, port = address.rpartition(":")
            host = host.strip("[]")
            if not host or not port.isdigit():
                raise ValueError(
                    f"ray_address={address!r} must be HOST:PORT of a Ray head (as `ray start "
                    "--head` prints it), e.g. 127.0.0.1:6379, or 'auto'"
                )
            _check_reachable(host, int(port), self._connect_timeout_s)
            if host in _LOOPBACK:
                options["_node_ip_address"] = "127.0.0.1"
        loopback = "_node_ip_address" in options
        try:
            with keep_loopback(ray) if loopback else contextlib.nullcontext():
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            raise ConnectionError(
                f"cannot join the Ray cluster at {address!r}: {exc}; check that `ray start "
                "--head` runs there and that this machine's Ray version matches the cluster's"
            ) from None

    def _new_actor(self, index: int) -> Any:
        """A new actor for slot ``index``, on the ``index``-th live node (round robin)."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
        # A node an actor just died on may be gone before Ray notices: avoid it for a while.
        now = time.monotonic()
        suspect = {node for node, until in self._suspect.items() if until > now}
        nodes = [n for n in alive if n not in suspect] or alive
        # Hard: Ray's soft affinity falls back to another node whenever the chosen one is
        # not ready that instant, which bunches actors on the head. A node that died by the
        # time the actor is placed makes the actor fail, the slot is made again, and its
        # node is avoided (`_suspect`).
        strategy: Any = (
            NodeAffinitySchedulingStrategy(nodes[index % len(nodes)], soft=False)
            if nodes
            else "DEFAULT"
        )
        remote = ray.remote(SandboxActor).options(
            num_cpus=0,
            max_concurrency=self._per_actor + 2,  # its calls, plus ready() while they run
            scheduling_strategy=strategy,
            max_restarts=0,
        )
        return remote.remote(self.isolation, self._max_idle)

    def _warm(self, indexes: range | list[int]) -> None:
        """Make the actors at ``indexes`` and wait until each has its sandbox started."""
        handles = []
        for i in indexes:
            slot = self._slots[i]
            if slot.handle is None:
                slot.handle = self._new_actor(i)
            handles.append(slot.handle)
        try:
            answers = self._ray.get(
                [h.ready.remote() for h in handles], timeout=self._connect_timeout_s
            )
            for i, answer in zip(indexes, answers, strict=True):
                self._slots[i].node = str(json.loads(answer).get("node", ""))
        except self._ray.exceptions.GetTimeoutError:
            raise ConnectionError(
                f"the Ray cluster at {self.address!r} did not start {len(handles)} sandbox "
                f"actor(s) within {self._connect_timeout_s:.0f} s; check `ray status` for "
                "nodes and resources"
            ) from None

    def actors(self) -> list[dict[str, Any]]:
        """Where each actor runs: ``[{"pid", "node"}]`` in slot order (for diagnostics and
        tests: to kill one mid-call, or to see actors spread over nodes)."""
        with self._lock:
            handles = [slot.handle for slot in self._slots]
        out = []
        for handle in handles:
            if handle is None:
                out.append({"pid": None, "node": None})
                continue
            try:
                out.append(json.loads(self._ray.get(handle.ready.remote(), timeout=30)))
            except Exception:  # noqa: BLE001 - a dead actor
                out.append({"pid": None, "node": None})
        return out

    # --- one call -----------------------------------------------------------------------

    def _place(self, content_hash: str) -> tuple[int, Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError("this RayExecutor is closed; create a new one to run skills")
            index = placement(content_hash, len(self._slots))
            if self._slots[index].busy >= self._per_actor:
                index = min(range(len(self._slots)), key=lambda i: self._slots[i].busy)
            slot = self._slots[index]
            if slot.handle is None:
                slot.handle = self._new_actor(index)
            slot.busy += 1
            return index, slot.handle

    def _release(self, index: int, handle: Any, broken: bool) -> None:
        with self._lock:
            slot = self._slots[index]
            slot.busy -= 1
            if broken and slot.handle is handle:
                slot.handle = None  # the next call placed here makes a new actor
                if slot.node:
                    self._suspect[slot.node] = time.monotonic() + _SUSPECT_S
                slot.node = ""
        if broken:
            try:
                self._ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self._free.release()

    def execute(self, request_json: str, tools: ToolHost) -> str:
        """Run one request on an actor, relaying its tool calls to ``tools`` (see
        :class:`sandbox.executor.Executor`)."""
        request = ExecRequest.from_json(request_json)  # ValueError before anything runs
        started = time.monotonic()
        deadline = started + request.limits.timeout_s
        if not self._free.acquire(timeout=request.limits.timeout_s):
            return _failed(
                ExecutionTimeout(
                    f"every Ray sandbox actor was busy for the call's whole timeout_s="
                    f"{request.limits.timeout_s}; add actors (ray_actors) or calls per actor",
                    request.limits.timeout_s,
                ),
                started,
            )
        waited = time.monotonic() - started
        if waited > 0.01:  # the wait counts against the call's wall-clock limit
            limits = dataclasses.replace(
                request.limits, timeout_s=max(request.limits.timeout_s - waited, 0.01)
            )
            request = dataclasses.replace(request, limits=limits)
            request_json = request.to_json()
        try:
            index, handle = self._place(request.content_hash)
        except BaseException:
            self._free.release()
            raise
        broken = True
        try:
            response, broken = self._converse(handle, request, request_json, tools, deadline,
                                              started)  # fmt: skip
            return response
        finally:
            self._release(index, handle, broken)

    def _converse(
        self,
        handle: Any,
        request: ExecRequest,
        request_json: str,
        tools: ToolHost,
        deadline: float,
        started: float,
    ) -> tuple[str, bool]:
        """The call's events until it is done: (response, whether the actor broke)."""
        ray = self._ray
        call_id = uuid.uuid4().hex
        try:
            text = ray.get(handle.start.remote(call_id, request_json),
                           timeout=max(deadline - time.monotonic(), 0) + GRACE_S)  # fmt: skip
            while True:
                event = json.loads(text)
                if event.get("op") == "done":
                    return str(event["response"]), False
                reply = self._run_tool(event, request, tools, deadline)
                text = ray.get(handle.reply.remote(call_id, reply),
                               timeout=max(deadline - time.monotonic(), 0) + GRACE_S)  # fmt: skip
        except ray.exceptions.GetTimeoutError:
            why = (
                f"the Ray actor did not finish the call within timeout_s="
                f"{request.limits.timeout_s} plus {GRACE_S:.0f} s; it was replaced"
            )
        except ray.exceptions.RayError as exc:  # the actor died, its node, the object...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            why = (
                f"the Ray actor running the call died ({type(exc).__name__}: {first}); the "
                "call's result is lost and the next call gets a live actor"
            )
        except (ValueError, KeyError, TypeError) as exc:
            why = f"the Ray actor broke the protocol ({exc}); it was replaced"
        return _failed(WorkerCrashed(why), started), True

    def _run_tool(
        self, event: dict[str, Any], request: ExecRequest, tools: ToolHost, deadline: float
    ) -> str:
        """Run the tool an event asks for, here, under the deadline; the reply as JSON text."""
        name = str(event.get("name"))
        arguments = str(event.get("arguments"))
        if name not in request.tools:  # the actor checked too; trust nothing that crossed
            return _reply_error("ToolNotAllowed", f"{name!r} was not granted", request.tools)
        call: Callable[[], str] = lambda: tools.call_tool(name, arguments)  # noqa: E731
        task = self.tool_runner.submit(call)
        if not task.wait(deadline - time.monotonic()):
            return _reply_error("ToolError", "the tool did not return before the deadline")
        try:
            value = task.result()
        except ToolNotAllowed as exc:
            return _reply_error("ToolNotAllowed", exc.message, exc.allowed)
        except ToolError as exc:
            return _reply_error("ToolError", exc.message)
        except Exception as exc:  # noqa: BLE001 - a host tool's failure is the skill's to handle
            return _reply_error("ToolError", f"{type(exc).__name__}: {exc}")
        if not isinstance(value, str):
            return _reply_error("ToolError", "the tool host returned something other than JSON")
        return json.dumps({"ok": True, "value": value}, separators=_SEPARATORS)

    def close(self) -> None:
        """Kill the actors (and, if this executor started Ray in this process, shut it down)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = [slot.handle for slot in self._slots if slot.handle is not None]
            for slot in self._slots:
                slot.handle = None
        # Only while connected: some Ray calls start a new local cluster when not.
        for handle in handles if self._ray.is_initialized() else []:
            try:
                self._ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.tool_runner.close()
        if self._started_ray and self._ray.is_initialized():
            self._ray.shutdown()


def _reply_error(kind: str, message: str, allowed: tuple[str, ...] | list[str] = ()) -> str:
    return json.dumps(
        {"ok": False, "error_type": kind, "message": message, "allowed": list(allowed)},
        separators=_SEPARATORS,
    )


def _check_reachable(host: str, port: int, timeout_s: float) -> None:
    """Fail fast, with the address, when nothing listens there (Ray itself waits long)."""
    try:
        with socket.create_connection((host, port), timeout=min(timeout_s, 10.0)):
            return
    except OSError as exc:
        raise ConnectionError(
            f"cannot reach the Ray cluster at {host}:{port} ({exc.strerror or exc}); check "
            "that `ray start --head --port PORT` runs there, that the address in ray_address "
            "(SKILLBANK_RAY_ADDRESS) is right, and that no firewall blocks the port"
        ) from None
