"""Host side of the worker processes: spawning, the I/O of one call, and recycling.

:class:`LocalExecutor`, the default :class:`sandbox.executor.Executor` backend, is this
pool's front door: it turns a request into a ``run`` frame for a pooled worker and decides,
from the outcome, whether the worker may be reused.

A :class:`WorkerPool` keeps a few idle, already-started workers and hands one to each
call, so calls from different threads run in different processes at the same time. A
worker goes back to the pool only after a call that ended normally (success, or the
skill's own :class:`SkillError` / :class:`ToolError`) and only for ``max_calls`` calls;
after anything else (timeout, crash, exceeded limit, policy violation) it is killed and a
later call starts a fresh one.

The host trusts nothing the worker says. The I/O loop here reads and writes frames under the
call's deadline; what each frame may be, and what it means, is decided by
:class:`sandbox.relay.HostCall` (frames refused by their header, checked before they are
decoded, tool calls relayed to helper threads); a worker that breaks the protocol is killed
and reported as :class:`WorkerCrashed`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from sandbox.errors import (
    ResourceLimitExceeded,
    SandboxError,
    SkillError,
    ToolError,
    WorkerCrashed,
)
from sandbox.executor import ExecRequest, ToolHost, result_to_json
from sandbox.limits import Limits
from sandbox.protocol import HEADER, FrameReader, dumps, encode_frame
from sandbox.relay import (
    CallOutcome,
    CallTimeout,
    HostCall,
    InlineRunner,
    Runner,
    ToolOverran,
    ToolRunner,
    WorkerGone,
)
from sandbox.result import Result

__all__ = ["LocalExecutor", "WorkerPool", "WorkerProcess", "worker_sys_path"]

#: Prepends the given directories to sys.path, then runs the worker. The worker needs only
#: the policy half of the package, so the bootstrap registers ``sandbox`` without running its
#: ``__init__`` (which would import this module, subprocess, threading...), which roughly
#: halves worker start-up time.
_BOOTSTRAP: Final = """\
import sys
sys.path[:0] = sys.argv[1:]
package = type(sys)("sandbox")
package.__path__ = [sys.argv[1] + "/sandbox"]
sys.modules["sandbox"] = package
from sandbox.worker import main
main()
"""
_EXIT_GRACE_S: Final = 2.0
_READ_CHUNK: Final = 64 * 1024  # larger reads cost an mmap/munmap per call
#: Failures that say nothing bad about the worker itself; anything else retires it.
_REUSABLE_AFTER: Final[frozenset[type[SandboxError]]] = frozenset({SkillError, ToolError})


def worker_sys_path() -> list[str]:
    """The directories a worker needs on ``sys.path``: ours and RestrictedPython's.

    Passed explicitly because workers run with ``-I -S`` (no environment variables, no
    site-packages), which works the same from a source checkout and an installed wheel.

    Raises:
        ImportError: RestrictedPython is not installed.
    """
    # The first entry must be the directory holding this package (see _BOOTSTRAP).
    sandbox_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.find_spec("RestrictedPython")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the sandbox needs RestrictedPython; install it with: "
            "pip install 'RestrictedPython>=9,<10'"
        )
    rp_parent = os.path.dirname(os.path.abspath(list(spec.submodule_search_locations)[0]))
    return list(dict.fromkeys([sandbox_parent, rp_parent]))


def _describe_signal(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class WorkerProcess:
    """One worker process and its pipes, seen from the host.

    Only the thread that holds the worker (between :meth:`WorkerPool.acquire` and
    :meth:`WorkerPool.release`) reads, writes or closes its pipes; :meth:`kill` may be
    called from any thread.
    """

    def __init__(self, python: str, sys_path: list[str]) -> None:
        """Start the process (it then imports the worker while the first request is sent).

        Args:
            python: The interpreter to run.
            sys_path: Directories to prepend to the worker's ``sys.path``.
        """
        self.workdir = tempfile.mkdtemp(prefix="sandbox-worker-")
        os.chmod(self.workdir, 0o500)  # nothing to write there, even for a skill that escaped
        try:
            self.proc = subprocess.Popen(
                [python, "-I", "-S", "-B", "-c", _BOOTSTRAP, *sys_path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={},
                cwd=self.workdir,
                close_fds=True,
                start_new_session=True,
                bufsize=0,
            )
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in_fd = self.proc.stdin.fileno()
        self._out_fd = self.proc.stdout.fileno()
        os.set_blocking(self._in_fd, False)
        os.set_blocking(self._out_fd, False)  # read only when ready (poll, or the event loop)
        self._reader = FrameReader()
        self._lock = threading.Lock()
        self._reaped = False
        #: Calls started on this worker.
        self.calls = 0

    @property
    def pid(self) -> int:
        """The worker's process id (also its process group id)."""
        return self.proc.pid

    def alive(self) -> bool:
        """True if the process has not exited."""
        with self._lock:
            if self._reaped:
                return False
            if self.proc.poll() is None:
                return True
            self._reaped = True
            return False

    def kill(self) -> None:
        """SIGKILL the worker's whole process group and reap it. Safe from any thread."""
        with self._lock:
            if self._reaped:
                return
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self._reaped = True

    def close(self) -> None:
        """Kill the process and release its pipes and working directory (owner only)."""
        self.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ----------------------------------------------------------------------- one call

    def execute(
        self,
        request: bytes,
        allowed: Sequence[str],
        tools: ToolHost,
        limits: Limits,
        deadline: float,
        runner: Runner,
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
            runner: What runs host tools: helper threads (so the deadline holds), or
                :class:`sandbox.relay.InlineRunner` for the calling thread.

        Returns:
            The outcome; ``error`` is set when the call failed.
        """
        self.calls += 1
        call = HostCall(allowed, tools, limits, deadline)
        try:
            self._send(request, deadline)
            while True:
                message = self._receive(call)
                if message.get("op") == "done":
                    call.finish(message)
                    return call.outcome
                pending = call.start_tool(message, runner)
                if not pending.task.wait(deadline - time.monotonic()):
                    raise ToolOverran(pending)
                self._send(call.tool_reply(pending), deadline)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the call's error
            self._fail(call, exc)
        return call.outcome

    async def execute_async(
        self,
        request: bytes,
        allowed: Sequence[str],
        tools: ToolHost,
        limits: Limits,
        deadline: float,
        runner: Runner,
    ) -> CallOutcome:
        """:meth:`execute` for asyncio: the pipes are watched by the running event loop.

        No thread is involved except the helper a host tool runs on; the loop stays free
        while the worker computes. Cancelling the awaiting task abandons the call (the
        caller must then discard this worker).
        """
        self.calls += 1
        loop = asyncio.get_running_loop()
        call = HostCall(allowed, tools, limits, deadline)
        try:
            await self._send_async(loop, request, deadline)
            while True:
                message = await self._receive_async(loop, call)
                if message.get("op") == "done":
                    call.finish(message)
                    return call.outcome
                woken = loop.create_future()
                pending = call.start_tool(
                    message, runner, functools.partial(_wake_from_thread, loop, woken)
                )
                if not await _until(loop, woken, deadline):
                    raise ToolOverran(pending)
                await self._send_async(loop, call.tool_reply(pending), deadline)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the call's error
            self._fail(call, exc)
        return call.outcome

    async def _send_async(
        self, loop: asyncio.AbstractEventLoop, data: bytes, deadline: float
    ) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._in_fd, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                raise WorkerGone from exc
            ready = loop.create_future()
            loop.add_writer(self._in_fd, _wake, ready)
            try:
                if not await _until(loop, ready, deadline):
                    raise CallTimeout
            finally:
                loop.remove_writer(self._in_fd)

    async def _receive_async(
        self, loop: asyncio.AbstractEventLoop, call: HostCall
    ) -> dict[str, Any]:
        readable = False  # called right after a send: the reply is not there yet
        while True:
            payload = call.next_payload(self._reader)
            if payload is not None:
                return call.decode(payload)
            if not readable:
                ready = loop.create_future()
                loop.add_reader(self._out_fd, _wake, ready)
                try:
                    if not await _until(loop, ready, call.deadline):
                        raise CallTimeout
                finally:
                    loop.remove_reader(self._out_fd)
            try:
                chunk = os.read(self._out_fd, _READ_CHUNK)
            except BlockingIOError:
                readable = False
                continue
            except OSError as exc:
                raise WorkerGone from exc
            if not chunk:
                raise WorkerGone
            readable = True  # a long frame: read on until the pipe is empty
            self._reader.feed(chunk)

    def _fail(self, call: HostCall, exc: Exception) -> None:
        """Make ``exc`` the call's error; kill the worker unless it died by itself."""
        if isinstance(exc, WorkerGone):
            call.outcome.error = self._death_error(call.limits)
            return
        self.kill()
        call.outcome.error = call.error_for(exc, self.proc.returncode)

    def _death_error(self, limits: Limits) -> SandboxError:
        """Wait for a worker whose pipe closed and explain how it died."""
        with self._lock:
            if not self._reaped:
                try:
                    self.proc.wait(timeout=_EXIT_GRACE_S)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    self.proc.wait()
                self._reaped = True
        code = self.proc.returncode
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
            f"the worker process (pid {self.proc.pid}) {how} during the call; the call's "
            "result is lost and the next call gets a fresh worker",
            code,
        )

    # ------------------------------------------------------------------------ framing

    def _wait(self, fd: int, events: int, deadline: float) -> bool:
        """Wait until ``fd`` is ready; False if the wait ended without it being ready."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CallTimeout
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
                raise WorkerGone from exc
            view = view[written:]
            if view:
                self._wait(self._in_fd, select.POLLOUT, deadline)

    def _receive(self, call: HostCall) -> dict[str, Any]:
        """Read the next frame, refusing it by its header before the payload is read."""
        while True:
            payload = call.next_payload(self._reader)
            if payload is not None:
                return call.decode(payload)
            if not self._wait(self._out_fd, select.POLLIN, call.deadline):
                continue  # woke without data: the next _wait raises CallTimeout if it is time
            try:
                chunk = os.read(self._out_fd, _READ_CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise WorkerGone from exc
            if not chunk:
                raise WorkerGone
            self._reader.feed(chunk)


def _wake(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)


def _wake_from_thread(loop: asyncio.AbstractEventLoop, future: asyncio.Future[bool]) -> None:
    """Wake a waiter from a tool's helper thread; a tool that outlived its loop wakes no one."""
    try:
        loop.call_soon_threadsafe(_wake, future)
    except RuntimeError:  # the loop is closed: the call ended at its deadline long ago
        pass


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


async def _until(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[bool], deadline: float
) -> bool:
    """Wait for ``future`` until ``deadline`` (``time.monotonic()``); False if time ran out."""
    timer = loop.call_later(max(deadline - time.monotonic(), 0.0), _expire, future)
    try:
        return await future
    finally:
        timer.cancel()


class WorkerPool:
    """A thread-safe pool of warm workers.

    Args:
        max_idle: Most idle workers kept for reuse.
        max_calls: Calls after which a worker is retired.
        python: Interpreter for the workers; defaults to ``sys.executable``.
    """

    def __init__(self, *, max_idle: int = 2, max_calls: int = 1000, python: str | None = None):
        if max_idle < 0:
            raise ValueError(f"max_idle={max_idle!r} must not be negative")
        if max_calls < 1:
            raise ValueError(f"max_calls={max_calls!r} must be at least 1")
        self._sys_path = worker_sys_path()
        self._python = python or sys.executable
        self._max_idle = max_idle
        self._max_calls = max_calls
        self._lock = threading.Lock()
        self._idle: list[WorkerProcess] = []
        self._live: set[WorkerProcess] = set()
        self._starting = 0
        self._closed = False

    def acquire_idle(self) -> WorkerProcess | None:
        """An idle worker for the caller's exclusive use, or None; never starts one (so an
        event loop may call it).

        Raises:
            RuntimeError: The pool was closed.
        """
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("this Sandbox is closed; create a new Sandbox to run skills")
                worker = self._idle.pop() if self._idle else None
            if worker is None or worker.alive():
                return worker
            self._discard(worker)

    def acquire(self) -> WorkerProcess:
        """Return a worker for the caller's exclusive use, starting one if none is idle.

        Raises:
            RuntimeError: The pool was closed.
        """
        idle = self.acquire_idle()
        if idle is not None:
            return idle
        worker = WorkerProcess(self._python, self._sys_path)
        with self._lock:
            closed = self._closed
            if not closed:
                self._live.add(worker)
        if closed:
            worker.close()
            raise RuntimeError("this Sandbox is closed; create a new Sandbox to run skills")
        return worker

    def release(self, worker: WorkerProcess, reusable: bool) -> None:
        """Give a worker back: keep it warm if ``reusable`` and there is room, else kill it.

        A worker that is killed (retired after ``max_calls``, or after a failure) is replaced
        by one started in the background, so the next caller does not wait for a start-up.
        """
        if reusable and worker.calls < self._max_calls and worker.alive():
            with self._lock:
                if not self._closed and len(self._idle) < self._max_idle:
                    self._idle.append(worker)
                    return
        self._discard(worker)
        self._replenish()

    def _replenish(self) -> None:
        with self._lock:
            if self._closed or len(self._idle) + self._starting >= self._max_idle:
                return
            self._starting += 1
        threading.Thread(target=self._start_idle, name="sandbox-spawn", daemon=True).start()

    def _start_idle(self) -> None:
        try:
            worker: WorkerProcess | None = WorkerProcess(self._python, self._sys_path)
        except Exception:  # noqa: BLE001 - a failed pre-start only means a cold call later
            worker = None
        with self._lock:
            self._starting -= 1
            keep = worker is not None and not self._closed and len(self._idle) < self._max_idle
            if keep and worker is not None:
                self._idle.append(worker)
                self._live.add(worker)
        if worker is not None and not keep:
            worker.close()

    def _discard(self, worker: WorkerProcess) -> None:
        worker.close()
        with self._lock:
            self._live.discard(worker)

    def pids(self) -> dict[str, list[int]]:
        """Process ids of the pool's workers, as ``{"idle": [...], "busy": [...]}``.

        For diagnostics and tests (e.g. to kill a worker in the middle of a call).
        """
        with self._lock:
            idle = [worker.pid for worker in self._idle]
            busy = [worker.pid for worker in self._live if worker not in self._idle]
        return {"idle": idle, "busy": busy}

    def close(self) -> None:
        """Kill every worker. Calls in progress end with :class:`WorkerCrashed`."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = [worker for worker in self._live if worker not in idle]
        for worker in idle:
            self._discard(worker)
        for worker in busy:
            worker.kill()  # its owner thread sees EOF, then closes it in release()


class LocalExecutor:
    """The default backend: warm, isolated worker processes on this machine.

    Args:
        max_idle_workers: Most idle workers kept warm.
        max_calls_per_worker: Calls after which a worker is replaced by a fresh one.
        python: Interpreter for the workers; defaults to ``sys.executable``.
    """

    def __init__(
        self,
        *,
        max_idle_workers: int = 2,
        max_calls_per_worker: int = 1000,
        python: str | None = None,
    ) -> None:
        self.pool = WorkerPool(
            max_idle=max_idle_workers, max_calls=max_calls_per_worker, python=python
        )
        #: Host tools run on these threads, so a call's deadline holds while one runs.
        self.tool_runner = ToolRunner()

    def execute(self, request_json: str, tools: ToolHost) -> str:
        """Run one request on a pooled worker (see :class:`Executor`)."""
        request = ExecRequest.from_json(request_json)
        return result_to_json(self.run(request, tools))

    def run(
        self,
        request: ExecRequest,
        tools: ToolHost,
        *,
        args_json: bytes | None = None,
        inline_tools: bool = False,
    ) -> Result:
        """The same as :meth:`execute` without the JSON text around it (used in-process).

        Args:
            request: The call.
            tools: Where its tool calls go.
            args_json: ``request.args`` already encoded by :func:`sandbox.protocol.dumps`
                (and checked), so they are not encoded twice; :class:`sandbox.Sandbox`
                passes them.
            inline_tools: Call host tools on this thread (see :meth:`sandbox.Sandbox.run`).
        """
        frame = _run_frame(request, args_json)
        started = time.monotonic()
        deadline = started + request.limits.timeout_s
        worker = self.pool.acquire()
        outcome: CallOutcome | None = None
        try:
            runner = _INLINE if inline_tools else self.tool_runner
            outcome = worker.execute(frame, request.tools, tools, request.limits, deadline, runner)
        finally:
            self.pool.release(worker, _reusable(outcome))
        return _result(outcome, started)

    async def run_async(
        self,
        request: ExecRequest,
        tools: ToolHost,
        *,
        args_json: bytes | None = None,
        inline_tools: bool = False,
    ) -> Result:
        """:meth:`run` for asyncio callers, on the running event loop (no thread hand-off).

        A thread is used only to start a worker when none is idle, and for each host tool.
        """
        frame = _run_frame(request, args_json)
        started = time.monotonic()
        deadline = started + request.limits.timeout_s
        worker = self.pool.acquire_idle()
        if worker is None:  # starting a process blocks: not on the loop
            worker = await asyncio.to_thread(self.pool.acquire)
        outcome: CallOutcome | None = None
        try:
            runner = _INLINE if inline_tools else self.tool_runner
            outcome = await worker.execute_async(
                frame, request.tools, tools, request.limits, deadline, runner
            )
        finally:
            self.pool.release(worker, _reusable(outcome))
        return _result(outcome, started)

    def close(self) -> None:
        """Kill all workers."""
        self.pool.close()
        self.tool_runner.close()


_INLINE: Final = InlineRunner()


def _run_frame(request: ExecRequest, args_json: bytes | None) -> bytes:
    head = {
        "op": "run",
        "source": request.source,
        "entry": request.entry,
        "tools": list(request.tools),
        "limits": request.limits.to_wire(),
    }
    if args_json is None:
        return encode_frame({**head, "args": dict(request.args)})
    payload = dumps(head)[:-1] + b',"args":' + args_json + b"}"
    return HEADER.pack(len(payload)) + payload


def _reusable(outcome: CallOutcome | None) -> bool:
    """Whether a worker may serve another call after this outcome (None: abandoned)."""
    return outcome is not None and (outcome.error is None or type(outcome.error) in _REUSABLE_AFTER)


def _result(outcome: CallOutcome | None, started: float) -> Result:
    assert outcome is not None  # only reached when the call was not abandoned
    return Result(
        ok=outcome.error is None,
        value=outcome.value if outcome.error is None else None,
        error=outcome.error,
        tool_calls=tuple(outcome.tool_calls),
        duration_s=time.monotonic() - started,
        output=outcome.output,
    )
