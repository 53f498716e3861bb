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

The host trusts nothing the worker says. The I/O loop here reads and writes frames under the
call's deadline; what each frame may be, and what it means, is decided by
:class:`sandbox.relay.HostCall` (frames refused by their header, checked before they are
decoded, tool calls relayed to helper threads); a worker that breaks the protocol is killed
and reported as :class:`WorkerCrashed`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import functools
import importlib.util
import math
import os
import select
import signal
import sys
import threading
import time
from collections import deque
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
from sandbox.forkserver import ForkedWorker, Template, TemplateGone, kill_worker
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

__all__ = [
    "ISOLATION_MODES",
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
_EXIT_GRACE_S: Final = 2.0
#: Most sources a template is asked to compile ahead (its compile cache holds 256).
_TAUGHT_KEPT: Final = 256
_READ_CHUNK: Final = 64 * 1024  # larger reads cost an mmap/munmap per call
#: A pipe's default capacity; a longer request grows the worker's request pipe (up to
#: :data:`_PIPE_MAX`), so it crosses in a write or two instead of a wake-up of each side per
#: 64 KiB (on a loaded machine each wake-up can wait a time slice).
_PIPE_DEFAULT: Final = 64 * 1024
#: The largest pipe an unprivileged process may ask for by default (``fs.pipe-max-size``).
_PIPE_MAX: Final = 1024 * 1024
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
        # Both are non-blocking (the template made them so): read and written only when
        # ready (poll, or the event loop).
        self._reader = FrameReader()
        self._pipe_grown = False
        self._lock = threading.Lock()
        self._killed = False
        self._closed = False
        self._returncode: int | None = None
        #: Calls started on this worker.
        self.calls = 0
        #: When the pool handed it out (``time.monotonic()``).
        self.taken_at = time.monotonic()

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
        self._grow_pipe(len(data))
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
        call.outcome.error = call.error_for(exc, self.returncode)

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
            raise CallTimeout
        poller = select.poll()
        poller.register(fd, events)
        return bool(poller.poll(math.ceil(remaining * 1000)))

    def _grow_pipe(self, size: int) -> None:
        """Let the request pipe hold ``size`` bytes (as far as the system allows)."""
        if size > _PIPE_DEFAULT and not self._pipe_grown:
            self._pipe_grown = True
            try:
                fcntl.fcntl(self._in_fd, fcntl.F_SETPIPE_SZ, min(size, _PIPE_MAX))
            except (OSError, AttributeError):  # over fs.pipe-max-size, or not Linux
                pass

    def _send(self, data: bytes, deadline: float) -> None:
        self._grow_pipe(len(data))
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


#: How long a loop's tasks wait for a fork, with none forked for them meanwhile, before
#: they hand the wait to threads (whose path restarts a template that stopped forking).
_LOOP_FORK_WAIT_S: Final = 1.0
#: How often a loop's fork watcher looks for a worker even if the template's socket stayed
#: quiet (a thread waiting in ``Template.take`` may have read the message first).
_LOOP_LOOK_AGAIN_S: Final = 0.005


class _ForkWatch:
    """The tasks of one event loop waiting for forks of one template, served oldest first by
    one watcher of the template's socket: one descriptor and one timer on the loop however
    many tasks wait, and each message read once (not once per waiting task).

    Used on its loop's thread only (but :meth:`abandon`); the pool's lock guards the pool's
    map of watchers.
    """

    def __init__(
        self, pool: WorkerPool, template: Template, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.pool = pool
        self.template = template
        self.loop = loop
        self.waiters: deque[asyncio.Future[WorkerProcess | None]] = deque()
        self._fd: int | None = None
        self._armed = False  # the loop watches ``_fd``
        self._timer: asyncio.TimerHandle | None = None
        self._progress = 0.0  # loop time of the last worker handed out (or of the start)

    def waiting(self) -> bool:
        """True while a task waits here (a new task then queues behind it)."""
        return any(not waiter.done() for waiter in self.waiters)

    async def take(self) -> WorkerProcess | None:
        """The next worker the template forks, or None: the caller then waits in a thread
        (the template died or was replaced, or no worker came for :data:`_LOOP_FORK_WAIT_S`).

        Raises:
            NotImplementedError: The loop cannot watch file descriptors.
            TemplateGone: The template was closed.
            RuntimeError: The pool was closed.
        """
        if self._fd is None:
            try:
                self._start()
            except BaseException:
                self._forget()
                raise
        waiter: asyncio.Future[WorkerProcess | None] = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed a worker just as the task was cancelled: nobody will run it.
            worker = _held(waiter)
            if worker is not None:
                self.pool.release(worker, reusable=False)
            raise
        finally:
            self._stop_if_idle()

    def _start(self) -> None:
        fd = self.template.watch_fd()
        try:
            self.loop.add_reader(fd, self._on_readable)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._armed = fd, True
        self._progress = self.loop.time()
        self._timer = self.loop.call_later(_LOOP_LOOK_AGAIN_S, self._tick)

    def _on_readable(self) -> None:
        if not self._serve() and self.waiters and self._fd is not None:
            # Readable, yet nothing came of it: a thread is reading the socket (its
            # message is not ours to take). The watch is level-triggered, so it would fire
            # on every pass of the loop until that thread runs: look again on the next tick.
            self.loop.remove_reader(self._fd)
            self._armed = False

    def _tick(self) -> None:
        self._timer = None
        self._serve()
        if self._fd is None:
            return
        if self.waiters and self.loop.time() - self._progress >= _LOOP_FORK_WAIT_S:
            self._settle_all(None)  # the template forks nothing: threads take over
            self._stop_if_idle()
            return
        if not self._armed:
            self.loop.add_reader(self._fd, self._on_readable)
            self._armed = True
        self._timer = self.loop.call_later(_LOOP_LOOK_AGAIN_S, self._tick)

    def _serve(self) -> bool:
        """Hand the workers forked so far to the waiting tasks, oldest first; True if any."""
        served = False
        while self.waiters:
            waiter = self.waiters[0]
            if waiter.done():  # cancelled
                self.waiters.popleft()
                continue
            with self.pool._lock:
                current = self.pool._template
            try:
                worker = self.pool.acquire_idle() if current is self.template else None
            except RuntimeError as exc:  # the pool was closed
                self._settle_all(exc)
                break
            except Exception:  # noqa: BLE001 - a loop callback must not strand its waiters
                self._settle_all(None)  # the thread path reports what is wrong
                break
            if worker is None:
                if current is not self.template or not self.template.alive():
                    self._settle_all(None)  # gone: a thread starts (or finds) the next one
                break
            self.waiters.popleft()
            waiter.set_result(worker)
            served = True
            self._progress = self.loop.time()
        self._stop_if_idle()
        return served

    def _settle_all(self, outcome: WorkerProcess | None | Exception) -> None:
        while self.waiters:
            _settle(self.waiters.popleft(), outcome)

    def _stop_if_idle(self) -> None:
        while self.waiters and self.waiters[0].done():
            self.waiters.popleft()
        if self.waiters or self._fd is None:
            return
        if self._armed:
            self.loop.remove_reader(self._fd)
        self._close()
        self._forget()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._armed = None, False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _forget(self) -> None:
        with self.pool._lock:
            if self.pool._fork_watches.get(self.loop) is self:
                del self.pool._fork_watches[self.loop]

    def abandon(self) -> None:
        """Release what the watcher of a loop closed while its tasks waited still holds
        (from another loop's thread: the closed loop never runs its callbacks again)."""
        self._close()
        for waiter in self.waiters:
            worker = _held(waiter)
            if worker is not None:  # handed out, never run
                self.pool._discard(worker)
        self.waiters.clear()


def _held(
    future: asyncio.Future[WorkerProcess | None] | concurrent.futures.Future[WorkerProcess],
) -> WorkerProcess | None:
    """The worker a settled future holds (None if it holds none, failed or was cancelled)."""
    if not future.done() or future.cancelled() or future.exception() is not None:
        return None
    return future.result()


def _settle(
    future: asyncio.Future[WorkerProcess | None], outcome: WorkerProcess | None | Exception
) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


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
        #: Per event loop, the watcher its tasks wait for forks with (`acquire_async`).
        self._fork_watches: dict[asyncio.AbstractEventLoop, _ForkWatch] = {}

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

    def acquire_idle(self) -> WorkerProcess | None:
        """A worker for the caller's exclusive use if one is ready now, else None.

        Never waits for a fork or starts a template (so an event loop may call it): in reuse
        mode an idle worker, otherwise one the running template has already forked.

        Raises:
            RuntimeError: The pool was closed.
        """
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("this Sandbox is closed; create a new Sandbox to run skills")
                worker = self._idle.pop() if self._idle else None
                template = self._template
            if worker is None:
                break
            if worker.alive():
                return worker
            self._discard(worker)
        if template is None or not template.alive():
            return None
        try:
            forked = template.take_ready()
        except TemplateGone:
            return None  # acquire() starts a new template
        return None if forked is None else self._adopt(forked, template)

    async def acquire_async(self) -> WorkerProcess:
        """:meth:`acquire` for an event loop: a fork on its way is awaited on the loop. One
        watcher per loop (:class:`_ForkWatch`) watches the template's socket and hands the
        workers it forks to the loop's waiting tasks in the order they came, so no thread
        waits and the host spends about a third less CPU per call when calls come back to back.

        A thread still waits when no template runs yet (starting one blocks), when the loop
        cannot watch descriptors, when the template died, and when no worker came for the
        loop's tasks for :data:`_LOOP_FORK_WAIT_S` (the blocking path restarts a template that
        stopped forking). A task cancelled meanwhile leaves no worker behind.

        Raises:
            RuntimeError: As :meth:`acquire`.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            closed = [lp for lp in self._fork_watches if lp.is_closed()]
            stale = [self._fork_watches.pop(lp) for lp in closed]
            watch = self._fork_watches.get(loop)
        for left in stale:  # a loop closed while its tasks waited (without cancelling them)
            left.abandon()
        if watch is None or not watch.waiting():  # else queue behind the tasks waiting
            ready = self.acquire_idle()
            if ready is not None:
                return ready
        with self._lock:
            template = self._template
        if template is not None and template.alive():
            with self._lock:
                watch = self._fork_watches.get(loop)
                if watch is None or watch.template is not template:
                    watch = self._fork_watches[loop] = _ForkWatch(self, template, loop)
            try:
                worker = await watch.take()
            except (NotImplementedError, TemplateGone):  # no add_reader; closed meanwhile
                worker = None
            if worker is not None:
                return worker
        return await self._acquire_in_thread(loop)

    async def _acquire_in_thread(self, loop: asyncio.AbstractEventLoop) -> WorkerProcess:
        """:meth:`acquire` on a thread of the loop's executor. The result is held in a future
        this pool owns, so a worker the thread gets after the awaiting task was cancelled
        (or ``asyncio.run`` cancelled everything at exit) is released, not lost."""
        taken: concurrent.futures.Future[WorkerProcess] = concurrent.futures.Future()

        def wait_in_thread() -> None:
            if not taken.set_running_or_notify_cancel():
                return  # cancelled before the thread began: take nothing
            try:
                taken.set_result(self.acquire())
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                taken.set_exception(exc)

        loop.run_in_executor(None, wait_in_thread)
        try:
            return await asyncio.wrap_future(taken, loop=loop)
        except asyncio.CancelledError:
            taken.add_done_callback(self._release_unclaimed)
            raise

    def _release_unclaimed(self, taken: concurrent.futures.Future[WorkerProcess]) -> None:
        worker = _held(taken)
        if worker is not None:
            self.release(worker, reusable=False)

    def acquire(self) -> WorkerProcess:
        """Return a worker for the caller's exclusive use, waiting for a fork if none is ready.

        Raises:
            RuntimeError: The pool was closed, or the template cannot start (the message
                says what it printed).
        """
        ready = self.acquire_idle()
        if ready is not None:
            return ready
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
        return self._adopt(forked, template)

    def _adopt(self, forked: ForkedWorker, template: Template) -> WorkerProcess:
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
            template.replenish(busy_s=time.monotonic() - worker.taken_at)

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
        python: Interpreter for the template (and so the workers); defaults to
            ``sys.executable``.
    """

    def __init__(
        self,
        *,
        max_idle_workers: int = 2,
        max_calls_per_worker: int = 1000,
        isolation: str = "fresh",
        python: str | None = None,
    ) -> None:
        self.pool = WorkerPool(
            max_idle=max_idle_workers,
            max_calls=max_calls_per_worker,
            python=python,
            isolation=isolation,
        )
        #: Host tools run on these threads, so a call's deadline holds while one runs.
        self.tool_runner = ToolRunner()

    def confinement(self) -> dict[str, str]:
        """Each process layer: ``"on"``, or why it is off (see :mod:`sandbox.confine`)."""
        return self.pool.confinement()

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
            if outcome is None:  # abandoned mid-call: the worker is dead and reaped on return
                worker.kill()
            self.pool.release(worker, _reusable(outcome))
        self._learn(request, outcome)
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

        A thread is used for each host tool, and to wait for a worker only in the cases
        :meth:`WorkerPool.acquire_async` lists (starting the template, most often).
        """
        frame = _run_frame(request, args_json)
        started = time.monotonic()
        deadline = started + request.limits.timeout_s
        worker = await self.pool.acquire_async()
        outcome: CallOutcome | None = None
        try:
            runner = _INLINE if inline_tools else self.tool_runner
            outcome = await worker.execute_async(
                frame, request.tools, tools, request.limits, deadline, runner
            )
        finally:
            if outcome is None:  # abandoned mid-call: the worker is dead and reaped on return
                worker.kill()
            self.pool.release(worker, _reusable(outcome))
        self._learn(request, outcome)
        return _result(outcome, started)

    def _learn(self, request: ExecRequest, outcome: CallOutcome | None) -> None:
        if _reusable(outcome):  # it compiled and ran without harm: later workers get it compiled
            self.pool.learned(request.content_hash, request.source)

    def close(self) -> None:
        """Kill all workers."""
        self.pool.close()
        self.tool_runner.close()


_INLINE: Final = InlineRunner()


def _run_frame(request: ExecRequest, args_json: bytes | None) -> bytes:
    if args_json is None:
        head = _frame_head(request.source, request.entry, request.tools, request.limits)
        return encode_frame({**head, "args": dict(request.args)})
    if len(request.source) <= _CACHED_SOURCE_CHARS:
        prefix = _cached_frame_prefix(request.source, request.entry, request.tools, request.limits)
    else:
        prefix = _frame_prefix(request.source, request.entry, request.tools, request.limits)
    payload = prefix + args_json + b"}"
    return HEADER.pack(len(payload)) + payload


def _frame_head(source: str, entry: str, tools: tuple[str, ...], limits: Limits) -> dict[str, Any]:
    return {
        "op": "run",
        "source": source,
        "entry": entry,
        "tools": list(tools),
        "limits": limits.to_wire(),
    }


def _frame_prefix(source: str, entry: str, tools: tuple[str, ...], limits: Limits) -> bytes:
    """A ``run`` frame's JSON up to its arguments (``{..., "args":``)."""
    return dumps(_frame_head(source, entry, tools, limits))[:-1] + b',"args":'


#: The same skill is usually called again and again: its frame prefix (the source as JSON,
#: the limits) is encoded once. Only for sources up to this size, so the cache stays small.
_CACHED_SOURCE_CHARS: Final = 64 * 1024
_cached_frame_prefix: Final = functools.lru_cache(maxsize=64)(_frame_prefix)


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
