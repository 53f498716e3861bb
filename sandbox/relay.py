"""Host tools run on helper threads, so a call's deadline holds while one is running.

A host tool is ordinary Python on the host: it cannot be killed. If the thread serving a
call ran the tool itself, a tool that hangs would hold the call past ``Limits.timeout_s``
(the red-team measured 11-14 s for a 5 s limit). Here the calling thread hands the tool to a
:class:`ToolRunner` thread and waits for it with the call's remaining time; at the deadline it
stops waiting, reports which tool call was still running, and the tool's late result is
discarded when it finally comes.

Threads are reused: one that finishes a tool goes back to an idle list, and a new one is
started only when none is idle (for instance while an earlier tool still hangs). A thread
that finishes while ``max_idle`` others are idle exits. The tool runs in a copy of the
caller's ``contextvars`` context, so context-local state (tracing spans, request ids) is what
the tool would have seen inline.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["ToolRunner", "ToolTask"]

T = TypeVar("T")


class ToolTask(Generic[T]):
    """One tool call handed to a helper thread; :meth:`wait` for it."""

    __slots__ = ("_done", "_value", "_error", "function", "context")

    def __init__(self, function: Callable[[], T]) -> None:
        self.function = function
        self.context = contextvars.copy_context()
        self._done = threading.Lock()
        self._done.acquire()
        self._value: T | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        """Run the function (on the helper thread) and signal the waiter."""
        try:
            self._value = self.context.run(self.function)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self._error = exc
        finally:
            self._done.release()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True once the function has returned or raised."""
        finished = self._done.acquire(timeout=timeout) if timeout > 0 else self._done.acquire(False)
        if finished:
            self._done.release()
            return True
        return False

    def result(self) -> T:
        """The function's value; re-raises what it raised. Only after :meth:`wait` is True."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class ToolRunner:
    """A small, growing set of helper threads that run host tools.

    Args:
        max_idle: Idle threads kept waiting for the next tool call.
        name: Thread name prefix (shows up in debuggers and thread dumps).
    """

    def __init__(self, max_idle: int = 4, name: str = "sandbox-tool") -> None:
        self._max_idle = max_idle
        self.name = name
        self._lock = threading.Lock()
        self._idle: list[_Helper] = []
        self._closed = False

    def submit(self, function: Callable[[], T]) -> ToolTask[T]:
        """Start ``function`` on a helper thread and return its task."""
        task = ToolTask(function)
        with self._lock:
            helper = self._idle.pop() if self._idle else None
        if helper is None:
            helper = _Helper(self)
        helper.give(task)
        return task

    def _park(self, helper: _Helper) -> bool:
        """A helper finished its task: keep it idle (True) or let it exit (False)."""
        with self._lock:
            if self._closed or len(self._idle) >= self._max_idle:
                return False
            self._idle.append(helper)
            return True

    def close(self) -> None:
        """Let idle helpers exit; a helper still running a tool exits when the tool returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for helper in idle:
            helper.give(None)


class _Helper:
    """One helper thread: waits for a task, runs it, parks itself again."""

    def __init__(self, runner: ToolRunner) -> None:
        self._runner = runner
        self._ready = threading.Condition(threading.Lock())
        self._task: ToolTask[Any] | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name=runner.name, daemon=True)
        self._started = False

    def give(self, task: ToolTask[Any] | None) -> None:
        with self._ready:
            if task is None:
                self._stop = True
            self._task = task
            self._ready.notify()
        if not self._started:
            self._started = True
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._ready:
                while self._task is None and not self._stop:
                    self._ready.wait()
                task, self._task = self._task, None
                if task is None:
                    return  # told to stop
            task.run()
            task = None  # drop the tool's value now: the waiter holds its own reference
            if not self._runner._park(self):
                return
