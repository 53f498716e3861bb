"""Host side of the worker processes: where workers come from, one call's protocol, retiring.

:class:`LocalExecutor`, the default :class:`sandbox.executor.Executor` backend, is this
pool's front door: it turns a request into a ``run`` frame for a pooled worker and decides,
from the outcome, whether the worker may be reused.

Workers are forked by a template process (:mod:`sandbox.forkserver` on this side,
:mod:`sandbox.template` on the other) that has imported everything a skill may use and
confined itself; it forks them ahead of demand, so a call never waits for a fork. Calls from
different threads run in different workers at the same time. The pool has two modes:

- ``isolation="fresh"`` (the default): every call runs in a worker no earlier call has
  touched, which is killed when the call ends. Nothing a call does can reach a later one.
- ``isolation="reuse"`` (opt-in, faster): a worker goes back to the pool after a call that
  ended normally (success, or the skill's own :class:`SkillError` / :class:`ToolError`), for
  up to ``max_calls`` calls, and cleans up after each call (see :mod:`sandbox.worker`);
  after anything else (timeout, crash, exceeded limit, policy violation) it is killed.

The host trusts nothing the worker says: frames are size-capped and type-checked, tool
names are checked against the caller's mapping again here, and a worker that breaks the
protocol is killed and reported as :class:`WorkerCrashed`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sandbox.errors import (
    ExecutionTimeout,
    ResourceLimitExceeded,
    SandboxError,
    SkillError,
    ToolError,
    ToolNotAllowed,
    WorkerCrashed,
    error_from_wire,
)
from sandbox.executor import ExecRequest, ToolHost, result_to_json
from sandbox.forkserver import ForkedWorker, Template, TemplateGone, kill_worker
from sandbox.limits import Limits
from sandbox.protocol import HEADER, decode_payload, encode_frame, encode_raw_frame
from sandbox.result import Result, ToolCall

__all__ = [
    "ISOLATION_MODES",
    "CallOutcome",
    "LocalExecutor",
    "WorkerPool",
    "WorkerProcess",
    "worker_sys_path",
]

#: ``fresh``: one worker per call (the default); ``reuse``: workers serve many calls.
ISOLATION_MODES: Final = ("fresh", "reuse")
#: Optional packages the process layers use (see :mod:`sandbox.confine`), put on the
#: workers' ``sys.path`` when installed.
_HARDENING_PACKAGES: Final = ("pyseccomp", "landlock")
_JSON_SEPARATORS: Final = (",", ":")
#: Frames from a worker larger than this are a protocol error (it may be compromised).
_MIN_FRAME_CAP: Final = 64 * 1024 * 1024
_EXIT_GRACE_S: Final = 2.0
#: Most sources a template is asked to compile ahead (its compile cache holds 256).
_TAUGHT_KEPT: Final = 256
_READ_CHUNK: Final = 64 * 1024  # larger reads cost an mmap/munmap per call
#: Failures that say nothing bad about the worker itself; anything else retires it.
_REUSABLE_AFTER: Final[frozenset[type[SandboxError]]] = frozenset({SkillError, ToolError})


def worker_sys_path() -> list[str]:
    """The directories a worker needs on ``sys.path``: ours and RestrictedPython's.

    Passed explicitly because workers run with ``-I -S`` (no environment variables, no
    site-packages), which works the same from a source checkout and an installed wheel.
    The optional hardening packages (``pyseccomp``, ``landlock``) are added when installed.

    Raises:
        ImportError: RestrictedPython is not installed.
    """
    # The first entry must be the directory holding this package (see forkserver._BOOTSTRAP).
    sandbox_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.find_spec("RestrictedPython")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the sandbox needs RestrictedPython; install it with: "
            "pip install 'RestrictedPython>=9,<10'"
        )
    rp_parent = os.path.dirname(os.path.abspath(list(spec.submodule_search_locations)[0]))
    extra = []
    for name in _HARDENING_PACKAGES:
        found = importlib.util.find_spec(name)
        if found is not None and found.origin:
            origin = os.path.abspath(found.origin)
            levels = 2 if found.submodule_search_locations else 1  # package or module
            for _ in range(levels):
                origin = os.path.dirname(origin)
            extra.append(origin)
    return list(dict.fromkeys([sandbox_parent, rp_parent, *extra]))


class _Timeout(Exception):
    """The call's wall-clock deadline passed."""


class _Gone(Exception):
    """The worker closed its end of a pipe (it died)."""


class _ToolIOExceeded(Exception):
    """The call's tool arguments and results passed Limits.tool_io_bytes."""


class _ProtocolError(Exception):
    """The worker sent something it should not have."""


@dataclass
class CallOutcome:
    """What :meth:`WorkerProcess.execute` observed; :class:`LocalExecutor` makes a Result."""

    #: The entry function's JSON value (None on error).
    value: Any = None
    #: Why the call failed, or None.
    error: SandboxError | None = None
    #: What the skill printed (empty if the worker died before reporting).
    output: str = ""
    #: Every tool call, in order, including failed ones.
    tool_calls: list[ToolCall] = field(default_factory=list)


def _describe_signal(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class WorkerProcess:
    """One worker process and its pipes, seen from the host.

    Only the thread that holds the worker (between :meth:`WorkerPool.acquire` and
    :meth:`WorkerPool.release`) reads, writes or closes its pipes; :meth:`kill` may be
    called from any thread. The worker is a child of the template, which reaps it and tells
    this side how it ended.
    """

    def __init__(self, forked: ForkedWorker, template: Template) -> None:
        """Take over a worker the template forked.

        Args:
            forked: Its pid, pidfd and the host's ends of its pipes.
            template: The template that forked it (it knows how the worker ended).
        """
        self._forked = forked
        #: The template that forked it.
        self.template = template
        self._in_fd = forked.request_fd
        self._out_fd = forked.reply_fd
        os.set_blocking(self._in_fd, False)
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._killed = False
        self._closed = False
        self._returncode: int | None = None
        self._tool_io = 0
        #: Calls started on this worker.
        self.calls = 0

    @property
    def pid(self) -> int:
        """The worker's process id (also its process group id)."""
        return self._forked.pid

    @property
    def returncode(self) -> int | None:
        """How the worker ended, once known: an exit code, or -N for signal N."""
        return self._returncode

    def alive(self) -> bool:
        """True if the process has not exited."""
        with self._lock:
            if self._killed or self._closed:
                return False
        poller = select.poll()
        poller.register(self._forked.pidfd, select.POLLIN)  # readable once it has exited
        return not poller.poll(0)

    def kill(self) -> None:
        """SIGKILL the worker and wait (briefly) until it is reaped. Safe from any thread."""
        with self._lock:
            if self._killed or self._closed:
                return
            self._killed = True
            kill_worker(self._forked)
        self._wait_exit(_EXIT_GRACE_S)

    def close(self) -> None:
        """Kill the worker (without waiting) and release its pipes (owner only)."""
        with self._lock:
            if self._closed:
                return
            if not self._killed:
                kill_worker(self._forked)
            self._killed = self._closed = True
        self._forked.close()

    def _wait_exit(self, timeout: float) -> int | None:
        """Wait until the template reports the worker's end; its returncode, or None."""
        if self._returncode is None:
            status = self.template.exit_status(self.pid, timeout)
            if status is not None:
                self._returncode = os.waitstatus_to_exitcode(status)
        return self._returncode

    # ----------------------------------------------------------------------- one call

    def execute(
        self,
        request: bytes,
        allowed: Sequence[str],
        tools: ToolHost,
        limits: Limits,
        deadline: float,
    ) -> CallOutcome:
        """Send a framed ``run`` request, serve its tool calls, and collect the result.

        Never raises for anything the worker or the skill does; exceptions raised by a host
        tool that are not ``Exception`` subclasses (``KeyboardInterrupt``...) propagate, and
        the caller must then discard this worker.

        Args:
            request: The framed ``run`` message.
            allowed: The names of the tools the skill may use.
            tools: Where tool calls go, as JSON text (see `sandbox.executor.ToolHost`).
            limits: The call's limits.
            deadline: ``time.monotonic()`` value by which the call must finish.

        Returns:
            The outcome; ``error`` is set when the call failed.
        """
        self.calls += 1
        self._tool_io = 0
        outcome = CallOutcome()
        frame_cap = max(_MIN_FRAME_CAP, 4 * limits.output_bytes + (1 << 20))
        try:
            self._send(request, deadline)
            while True:
                message = self._receive(deadline, frame_cap)
                op = message.get("op")
                if op == "tool":
                    self._serve_tool(message, allowed, tools, limits, deadline, outcome.tool_calls)
                elif op == "done":
                    self._finish(message, outcome)
                    return outcome
                else:
                    raise _ProtocolError(f"unexpected message op={op!r}")
        except _Timeout:
            self.kill()
            outcome.error = ExecutionTimeout(
                f"the skill did not finish within Limits.timeout_s={limits.timeout_s} seconds "
                "of wall-clock time (tool calls included) and was killed; make it do less per "
                "call or raise the limit",
                limits.timeout_s,
            )
        except _Gone:
            outcome.error = self._death_error(limits)
        except _ToolIOExceeded:
            self.kill()
            outcome.error = ResourceLimitExceeded(
                "tool_io",
                f"the skill's tool calls moved more than Limits.tool_io_bytes="
                f"{limits.tool_io_bytes} bytes of arguments and results; pass less data "
                "through tools per call or raise the limit",
            )
        except _ProtocolError as exc:
            self.kill()
            outcome.error = WorkerCrashed(
                f"the worker process broke the protocol ({exc}) and was killed; the next call "
                "gets a fresh worker",
                self.returncode,
            )
        return outcome

    def _finish(self, message: Mapping[str, Any], outcome: CallOutcome) -> None:
        ok = message.get("ok")
        output = message.get("output")
        if not isinstance(ok, bool) or not isinstance(output, str):
            raise _ProtocolError("malformed done message")
        outcome.output = output
        if ok:
            outcome.value = message.get("value")
            return
        error = message.get("error")
        if not isinstance(error, dict):
            raise _ProtocolError("done message with ok=false has no error object")
        outcome.error = error_from_wire(error)

    def _serve_tool(
        self,
        message: Mapping[str, Any],
        allowed: Sequence[str],
        tools: ToolHost,
        limits: Limits,
        deadline: float,
        calls: list[ToolCall],
    ) -> None:
        name = message.get("name")
        arguments = message.get("arguments")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise _ProtocolError("malformed tool message")
        if any(not isinstance(k, str) or k.startswith("_") for k in arguments):
            # The worker refuses private keyword arguments itself; one that sends them is
            # not trusted further.
            raise _ProtocolError("a tool call with a private (underscore) argument name")
        if len(calls) >= limits.max_tool_calls:
            # The worker enforces this limit itself; one that does not is not trusted further.
            raise _ProtocolError(f"more than Limits.max_tool_calls={limits.max_tool_calls} calls")
        if time.monotonic() >= deadline:
            raise _Timeout
        arguments_json = json.dumps(arguments, separators=_JSON_SEPARATORS)
        self._tool_io += len(arguments_json)
        if self._tool_io > limits.tool_io_bytes:
            raise _ToolIOExceeded
        recorded = json.loads(arguments_json)  # the tool may mutate its own copy
        encoded: str | None = None
        error: str | None = None
        error_type = "ToolError"
        started = time.monotonic()
        try:
            if name not in allowed:
                raise ToolNotAllowed(name, sorted(allowed))
            encoded = tools.call_tool(name, arguments_json)
            value = json.loads(encoded)
        except ToolNotAllowed as exc:
            error, error_type, encoded = exc.message, "ToolNotAllowed", None
        except ToolError as exc:
            error, encoded = exc.message, None
        except ValueError as exc:  # the tool host answered with something that is not JSON
            error, encoded = f"the tool host returned invalid JSON ({exc})", None
        except Exception as exc:  # noqa: BLE001 - a broken tool host must not kill the call
            error, encoded = f"{type(exc).__name__}: {exc}", None
        duration = time.monotonic() - started
        self._tool_io += len(encoded or "") + len(error or "")
        if self._tool_io > limits.tool_io_bytes:
            raise _ToolIOExceeded
        if encoded is not None:
            calls.append(ToolCall(name, recorded, value, None, duration))
            frame = '{"op":"tool_result","ok":true,"value":' + encoded + "}"
        else:
            calls.append(ToolCall(name, recorded, None, error, duration))
            frame = json.dumps(
                {"op": "tool_result", "ok": False, "error": error, "error_type": error_type}
            )
        self._send(encode_raw_frame(frame), deadline)

    def _death_error(self, limits: Limits) -> SandboxError:
        """Wait for a worker whose pipe closed and explain how it died."""
        if self._wait_exit(_EXIT_GRACE_S) is None:
            self.kill()
        code = self.returncode
        if code == -signal.SIGXCPU:
            return ResourceLimitExceeded(
                "cpu",
                f"the skill used more than Limits.cpu_s={limits.cpu_s} CPU seconds and was "
                "killed (SIGXCPU); make it do less work or raise the limit",
            )
        if code is not None and code < 0:
            how = f"was killed by {_describe_signal(-code)}"
            if code == -signal.SIGKILL:
                how += " (by another process, or the kernel's out-of-memory killer)"
        else:
            how = f"exited with status {code}"
        return WorkerCrashed(
            f"the worker process (pid {self.pid}) {how} during the call; the call's "
            "result is lost and the next call gets a fresh worker",
            code,
        )

    # ------------------------------------------------------------------------ framing

    def _wait(self, fd: int, events: int, deadline: float) -> bool:
        """Wait until ``fd`` is ready; False if the wait ended without it being ready."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout
        poller = select.poll()
        poller.register(fd, events)
        return bool(poller.poll(math.ceil(remaining * 1000)))

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._in_fd, view)
            except BlockingIOError:
                written = 0
            except OSError as exc:  # BrokenPipeError: the worker is gone
                raise _Gone from exc
            view = view[written:]
            if view:
                self._wait(self._in_fd, select.POLLOUT, deadline)

    def _receive(self, deadline: float, frame_cap: int) -> dict[str, Any]:
        buffer = self._buffer
        while True:
            if len(buffer) >= HEADER.size:
                (size,) = HEADER.unpack_from(buffer)
                if size > frame_cap:
                    raise _ProtocolError(f"a {size}-byte frame is over the {frame_cap}-byte cap")
                end = HEADER.size + size
                if len(buffer) >= end:
                    payload = bytes(buffer[HEADER.size : end])
                    del buffer[:end]
                    try:
                        return decode_payload(payload)
                    except ValueError as exc:  # includes JSON and Unicode decode errors
                        raise _ProtocolError(f"undecodable frame: {exc}") from None
            if not self._wait(self._out_fd, select.POLLIN, deadline):
                continue  # woke without data: the next _wait raises _Timeout if it is time
            try:
                chunk = os.read(self._out_fd, _READ_CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _Gone from exc
            if not chunk:
                raise _Gone
            buffer += chunk


class WorkerPool:
    """A thread-safe pool of workers forked by one template process.

    Args:
        max_idle: Workers kept forked ahead of demand (and, in reuse mode, the most idle
            workers kept for reuse).
        max_calls: Reuse mode: calls after which a worker is retired.
        python: Interpreter for the template; defaults to ``sys.executable``.
        isolation: ``"fresh"`` (a new worker per call) or ``"reuse"`` (see the module
            docstring).
        test_hook: For the test harness only (``Sandbox`` and ``LocalExecutor`` never set
            it): workers also accept ``raw`` requests, plain Python without the policy.
        disabled_layers: With ``test_hook`` only: process layers to leave off, so a test can
            show that the next layer holds on its own.
    """

    def __init__(
        self,
        *,
        max_idle: int = 2,
        max_calls: int = 1000,
        python: str | None = None,
        isolation: str = "fresh",
        test_hook: bool = False,
        disabled_layers: Sequence[str] = (),
    ):
        if max_idle < 0:
            raise ValueError(f"max_idle={max_idle!r} must not be negative")
        if max_calls < 1:
            raise ValueError(f"max_calls={max_calls!r} must be at least 1")
        if isolation not in ISOLATION_MODES:
            raise ValueError(
                f"isolation={isolation!r} is not a mode; use 'fresh' (a new process per call, "
                "the default) or 'reuse' (faster; workers serve many calls)"
            )
        if disabled_layers and not test_hook:
            raise ValueError("disabled_layers is for the test harness only (with test_hook)")
        self._sys_path = worker_sys_path()
        self._python = python or sys.executable
        self._max_idle = max_idle
        self._max_calls = max_calls
        self.isolation = isolation
        self._test_hook = test_hook
        self._disabled_layers = tuple(disabled_layers)
        self._lock = threading.Lock()
        self._template: Template | None = None
        self._idle: list[WorkerProcess] = []
        self._live: set[WorkerProcess] = set()
        #: Content hashes of the sources the current template was asked to compile.
        self._taught: set[str] = set()
        self._closed = False

    def _current_template(self, replace: Template | None = None) -> Template:
        """The running template, started on first use (or when ``replace`` died)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this Sandbox is closed; create a new Sandbox to run skills")
            template = self._template
            if template is None or template is replace:
                template = self._template = Template(
                    self._python,
                    self._sys_path,
                    reuse=self.isolation == "reuse",
                    prefork=self._max_idle,
                    test_hook=self._test_hook,
                    disabled_layers=self._disabled_layers,
                )
                self._taught = set()
                stale = replace
            else:
                stale = None
        if stale is not None:
            stale.close()
        return template

    def confinement(self) -> dict[str, str]:
        """Each process layer (:data:`sandbox.confine.LAYERS`): ``"on"``, or why it is off.

        Starts the template if it is not running yet.
        """
        return self._current_template().status()

    def acquire(self) -> WorkerProcess:
        """Return a worker for the caller's exclusive use.

        Raises:
            RuntimeError: The pool was closed, or the template cannot start (the message
                says what it printed).
        """
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("this Sandbox is closed; create a new Sandbox to run skills")
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                break
            if worker.alive():
                return worker
            self._discard(worker)
        template = self._current_template()
        try:
            forked = template.take()
        except TemplateGone as exc:
            if self._closed:
                raise RuntimeError(
                    "this Sandbox is closed; create a new Sandbox to run skills"
                ) from None
            template = self._current_template(replace=template)  # one fresh start
            try:
                forked = template.take()
            except TemplateGone as again:
                raise RuntimeError(f"the sandbox cannot start its workers: {again}") from exc
        worker = WorkerProcess(forked, template)
        with self._lock:
            closed = self._closed
            if not closed:
                self._live.add(worker)
        if closed:
            worker.close()
            raise RuntimeError("this Sandbox is closed; create a new Sandbox to run skills")
        return worker

    def learned(self, content_hash: str, source: str) -> None:
        """A worker compiled and ran ``source`` without crashing: have the template compile it.

        Workers forked afterwards find it compiled. Each source is sent once per template.
        """
        with self._lock:
            template = self._template
            if template is None or content_hash in self._taught:
                return
            if len(self._taught) >= _TAUGHT_KEPT:
                self._taught.clear()
            self._taught.add(content_hash)
        template.teach(source)

    def release(self, worker: WorkerProcess, reusable: bool) -> None:
        """Give a worker back: kept (reuse mode) if ``reusable`` and there is room, else killed.

        A killed worker's replacement is forked now, after its call: another worker forked
        ahead of demand is already waiting for the next caller.
        """
        if self.isolation == "reuse" and reusable and worker.calls < self._max_calls:
            if worker.alive():
                with self._lock:
                    if not self._closed and len(self._idle) < max(self._max_idle, 1):
                        self._idle.append(worker)
                        return
        self._discard(worker)

    def _discard(self, worker: WorkerProcess) -> None:
        worker.close()
        with self._lock:
            self._live.discard(worker)
            template = self._template
        if template is not None and template is worker.template:
            template.replenish()

    def pids(self) -> dict[str, list[int]]:
        """Process ids of the pool's workers, as ``{"idle": [...], "busy": [...]}``.

        Idle workers are the ones forked ahead of demand (and, in reuse mode, those waiting
        for their next call). For diagnostics and tests (e.g. to kill a worker mid-call).
        """
        with self._lock:
            template = self._template
            idle = [worker.pid for worker in self._idle]
            busy = [worker.pid for worker in self._live if worker not in self._idle]
        if template is not None and template.alive():
            idle += template.ready_pids()
        return {"idle": idle, "busy": busy}

    def close(self) -> None:
        """Kill every worker and the template. Calls in progress end with :class:`WorkerCrashed`."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = [worker for worker in self._live if worker not in idle]
            template, self._template = self._template, None
        for worker in idle:
            self._discard(worker)
        for worker in busy:
            worker.kill()  # its owner thread sees EOF, then closes it in release()
        if template is not None:
            template.close()


class LocalExecutor:
    """The default backend: isolated worker processes on this machine, forked ahead of demand.

    Args:
        max_idle_workers: Workers kept forked ahead of demand (reuse mode: also the most
            idle workers kept).
        max_calls_per_worker: Reuse mode: calls after which a worker is replaced.
        isolation: ``"fresh"`` (default): every call in a new process that no earlier call
            touched. ``"reuse"``: faster, workers serve up to ``max_calls_per_worker`` calls
            and clean up between them; choose it only for trusted or single-tenant skills.
    """

    def __init__(
        self,
        *,
        max_idle_workers: int = 2,
        max_calls_per_worker: int = 1000,
        isolation: str = "fresh",
    ) -> None:
        self.pool = WorkerPool(
            max_idle=max_idle_workers, max_calls=max_calls_per_worker, isolation=isolation
        )

    def confinement(self) -> dict[str, str]:
        """Each process layer: ``"on"``, or why it is off (see :mod:`sandbox.confine`)."""
        return self.pool.confinement()

    def execute(self, request_json: str, tools: ToolHost) -> str:
        """Run one request on a pooled worker (see :class:`Executor`)."""
        request = ExecRequest.from_json(request_json)
        return result_to_json(self.run(request, tools))

    def run(self, request: ExecRequest, tools: ToolHost) -> Result:
        """The same as :meth:`execute` without the JSON text around it (used in-process)."""
        frame = encode_frame(
            {
                "op": "run",
                "source": request.source,
                "entry": request.entry,
                "args": dict(request.args),
                "tools": list(request.tools),
                "limits": request.limits.to_wire(),
            }
        )
        started = time.monotonic()
        deadline = started + request.limits.timeout_s
        worker = self.pool.acquire()
        outcome: CallOutcome | None = None
        try:
            outcome = worker.execute(frame, request.tools, tools, request.limits, deadline)
        finally:
            reusable = outcome is not None and (
                outcome.error is None or type(outcome.error) in _REUSABLE_AFTER
            )
            self.pool.release(worker, reusable)
        if reusable:  # it compiled and ran without harm: later workers get it compiled
            self.pool.learned(request.content_hash, request.source)
        return Result(
            ok=outcome.error is None,
            value=outcome.value if outcome.error is None else None,
            error=outcome.error,
            tool_calls=tuple(outcome.tool_calls),
            duration_s=time.monotonic() - started,
            output=outcome.output,
        )

    def close(self) -> None:
        """Kill all workers."""
        self.pool.close()
