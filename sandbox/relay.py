"""The host's side of one call, apart from I/O: budgets, bounded decoding, and host tools.

:class:`HostCall` is what a backend's I/O loop (:class:`sandbox.pool.WorkerProcess`) consults
for every frame the worker sends. It trusts nothing the worker says: a frame is refused by
its header when it is longer than the call may still send, then checked by
:func:`sandbox.protocol.check` (nesting depth, containers weighed against the tool budget,
Unicode) before ``json.loads`` sees it; tool names are checked against the caller's list
again here; a worker that breaks the protocol is reported as :class:`WorkerCrashed` and the
loop kills it. Every failure, ours included, ends as the call's error, never as an exception
out of ``Sandbox.run``.

Host tools run on helper threads (:class:`ToolRunner`), so the call's deadline holds while
one is running. A host tool is ordinary Python on the host: it cannot be killed. If the
thread serving a call ran the tool itself, a tool that hangs would hold the call past
``Limits.timeout_s`` (the red-team measured 11-14 s for a 5 s limit). Here the I/O loop
hands the tool to a helper and waits with the call's remaining time; at the deadline it
stops waiting, the call's :class:`ExecutionTimeout` names the tool call that was still
running, and the tool's late result is discarded when it finally comes.

Helper threads are reused: one that finishes a tool goes back to an idle list, and a new one
is started only when none is idle (for instance while an earlier tool still hangs). A thread
that finishes while ``max_idle`` others are idle exits. The tool runs in a copy of the
caller's ``contextvars`` context, so context-local state (tracing spans, request ids) is what
the tool would have seen inline.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from sandbox.errors import (
    ExecutionTimeout,
    ResourceLimitExceeded,
    SandboxError,
    ToolError,
    ToolNotAllowed,
    WorkerCrashed,
    error_from_wire,
)
from sandbox.executor import ToolHost
from sandbox.limits import Limits
from sandbox.protocol import (
    CONTAINER_COST,
    FRAME_OUTER,
    HEADER,
    FrameReader,
    WireError,
    encode_frame,
    encode_text,
    loads,
)
from sandbox.result import ToolCall

__all__ = [
    "CallOutcome",
    "CallTimeout",
    "HostCall",
    "InlineRunner",
    "PendingTool",
    "ProtocolBroken",
    "Runner",
    "ToolIOExceeded",
    "ToolOverran",
    "ToolRunner",
    "ToolTask",
    "WorkerGone",
]

_JSON_SEPARATORS: Final = (",", ":")

T = TypeVar("T")


class ToolTask(Generic[T]):
    """One tool call handed to a helper thread; :meth:`wait` for it."""

    __slots__ = ("_done", "_value", "_error", "function", "context", "on_done")

    def __init__(
        self, function: Callable[[], T], on_done: Callable[[], object] | None = None
    ) -> None:
        self.function = function
        #: Called on the helper thread once the function has returned or raised (an asyncio
        #: caller passes ``loop.call_soon_threadsafe`` of its own wake-up here).
        self.on_done = on_done
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
            if self.on_done is not None:
                self.on_done()

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

    def submit(
        self, function: Callable[[], T], on_done: Callable[[], object] | None = None
    ) -> ToolTask[T]:
        """Start ``function`` on a helper thread and return its task (see `ToolTask.on_done`)."""
        task = ToolTask(function, on_done)
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


class InlineRunner:
    """Runs each tool at once on the calling thread: for tools bound to that thread.

    Thread-local state (hypothesis's data while it draws tool answers, an ``sqlite3``
    connection made on that thread) is only there on the caller's thread. The price: the
    call's deadline cannot cut such a tool short, since the thread that would return at the
    deadline is the one running it.
    """

    def submit(
        self, function: Callable[[], T], on_done: Callable[[], object] | None = None
    ) -> ToolTask[T]:
        """Run ``function`` now and return its finished task."""
        task = ToolTask(function, on_done)
        task.run()
        return task


#: What runs host tools: helper threads, or the calling thread itself.
Runner = ToolRunner | InlineRunner


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


# ------------------------------------------------------------------ one call


class CallTimeout(Exception):
    """The call's wall-clock deadline passed (raised by the I/O loop, or by decoding)."""


class WorkerGone(Exception):
    """The worker closed its end of a pipe (it died)."""


class ToolIOExceeded(Exception):
    """The call's tool arguments and results passed Limits.tool_io_bytes."""


class ProtocolBroken(Exception):
    """The worker sent something it should not have."""


@dataclass
class CallOutcome:
    """What one call produced, seen from the host; the backend makes a Result of it."""

    #: The entry function's JSON value (None on error).
    value: Any = None
    #: Why the call failed, or None.
    error: SandboxError | None = None
    #: What the skill printed (empty if the worker died before reporting).
    output: str = ""
    #: Every tool call, in order, including failed ones.
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class PendingTool:
    """A tool call handed to a helper thread."""

    name: str
    #: The decoded arguments (kept for the ToolCall record; the tool gets its own copy).
    arguments: dict[str, Any]
    started: float
    task: ToolTask[str]
    #: 1-based position among the call's tool calls.
    index: int


class ToolOverran(Exception):
    """The call's deadline passed while a host tool was still running."""

    def __init__(self, pending: PendingTool) -> None:
        super().__init__(pending.name)
        self.pending = pending


class HostCall:
    """The host's side of one call's protocol, apart from I/O: budgets, decoding, tools.

    Everything the worker sends is checked here before it is decoded: a frame's length
    against what the call may still send, then (:func:`sandbox.protocol.check`) its nesting
    depth, its weight in containers and its Unicode. A worker that breaks the protocol is not
    trusted further (the caller kills it).
    """

    def __init__(
        self, allowed: Sequence[str], tools: ToolHost, limits: Limits, deadline: float
    ) -> None:
        self.allowed = allowed
        self.tools = tools
        self.limits = limits
        self.deadline = deadline
        self.outcome = CallOutcome()
        #: Tool traffic so far, as :class:`sandbox.protocol.Shape.cost` counts it.
        self.tool_io = 0
        #: The longest a ``done`` frame can be: the value and the printed output (JSON
        #: escapes at most sextuple a byte), plus an error's capped fields and the envelope.
        self.done_cap = 7 * limits.output_bytes + _ERROR_BYTES
        self.tool_envelope = _ENVELOPE_BYTES + max((len(n) for n in allowed), default=0)

    def tool_cap(self) -> int:
        """The most a ``tool`` frame may weigh now: what is left of the call's tool budget."""
        return max(self.limits.tool_io_bytes - self.tool_io, 0) + self.tool_envelope

    def next_payload(self, reader: FrameReader) -> bytes | None:
        try:
            return reader.next_payload(max(self.done_cap, self.tool_cap()))
        except WireError as exc:
            raise ProtocolBroken(str(exc)) from None

    def decode(self, payload: bytes) -> dict[str, Any]:
        """Check and decode one frame from the worker (``tool`` or ``done``)."""
        if payload.startswith(_TOOL_PREFIX):
            cap: int | None = self.tool_cap()
        elif payload.startswith(_DONE_PREFIX):
            cap = None  # the header cap has bounded it already
            if len(payload) > self.done_cap:
                raise ProtocolBroken(f"a {len(payload)}-byte done frame")
        else:
            raise ProtocolBroken(f"a frame that starts {payload[:24]!r}")
        try:
            message, shape = loads(payload, max_cost=cap, outer=FRAME_OUTER, what="frame")
        except WireError as exc:
            if exc.kind == "size":
                raise ToolIOExceeded from None
            raise ProtocolBroken(f"undecodable frame: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolBroken(f"a frame that is a JSON {type(message).__name__}")
        if time.monotonic() >= self.deadline:
            raise CallTimeout  # decoding is part of the call
        if cap is not None:
            self.tool_io += shape.cost
            if self.tool_io > self.limits.tool_io_bytes:
                raise ToolIOExceeded
        return message

    def finish(self, message: Mapping[str, Any]) -> None:
        ok = message.get("ok")
        output = message.get("output")
        if not isinstance(ok, bool) or not isinstance(output, str):
            raise ProtocolBroken("malformed done message")
        outcome = self.outcome
        outcome.output = output
        if ok:
            outcome.value = message.get("value")
            return
        error = message.get("error")
        if not isinstance(error, dict):
            raise ProtocolBroken("done message with ok=false has no error object")
        outcome.error = error_from_wire(error)

    def start_tool(
        self,
        message: Mapping[str, Any],
        runner: Runner,
        on_done: Callable[[], object] | None = None,
    ) -> PendingTool:
        """Check a ``tool`` message and hand the tool to a helper thread."""
        name = message.get("name")
        arguments = message.get("arguments")
        if message.get("op") != "tool":  # a duplicate "op" key can disagree with the prefix
            raise ProtocolBroken(f"unexpected message op={message.get('op')!r}")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise ProtocolBroken("malformed tool message")
        if any(not isinstance(k, str) or k.startswith("_") for k in arguments):
            # The worker refuses private keyword arguments itself; one that sends them is
            # not trusted further.
            raise ProtocolBroken("a tool call with a private (underscore) argument name")
        calls = self.outcome.tool_calls
        if len(calls) >= self.limits.max_tool_calls:
            # The worker enforces this limit itself; one that does not is not trusted further.
            raise ProtocolBroken(
                f"more than Limits.max_tool_calls={self.limits.max_tool_calls} calls"
            )
        # The arguments were checked for depth and Unicode as part of the frame.
        arguments_json = json.dumps(arguments, ensure_ascii=False, separators=_JSON_SEPARATORS)
        tools, allowed = self.tools, self.allowed

        def run_tool() -> str:
            if name not in allowed:
                raise ToolNotAllowed(name, sorted(allowed))
            return tools.call_tool(name, arguments_json)

        task = runner.submit(run_tool, on_done)
        return PendingTool(name, arguments, time.monotonic(), task, len(calls) + 1)

    def tool_reply(self, pending: PendingTool) -> bytes:
        """Record a finished tool call and frame its ``tool_result`` for the worker."""
        name = pending.name
        value: Any = None
        data: bytes | None = None
        error: str | None = None
        error_type = "ToolError"
        try:
            encoded = pending.task.result()
            if not isinstance(encoded, str):
                raise TypeError(f"the tool host returned {type(encoded).__name__}, not JSON text")
            data = encode_text(encoded, f"result of tool {name!r}")
            value, shape = loads(
                data,
                max_cost=max(self.limits.tool_io_bytes - self.tool_io, 0),
                what=f"result of tool {name!r}",
            )
            self.tool_io += shape.cost
        except ToolNotAllowed as exc:
            error, error_type = exc.message, "ToolNotAllowed"
        except ToolError as exc:
            error = exc.message
        except WireError as exc:
            if exc.kind == "size":
                raise ToolIOExceeded from None
            error = f"the tool host returned a value the sandbox cannot carry: {exc}"
        except Exception as exc:  # noqa: BLE001 - a broken tool host must not kill the call
            error = f"{type(exc).__name__}: {exc}"
        duration = time.monotonic() - pending.started
        calls = self.outcome.tool_calls
        if data is not None and error is None:
            calls.append(ToolCall(name, pending.arguments, value, None, duration))
            head = f'{{"op":"tool_result","ok":true,"io":{self.tool_io},"value":'.encode()
            return _frame(head + data + b"}")
        assert error is not None
        error = _whole_characters(error)
        self.tool_io += len(error)
        if self.tool_io > self.limits.tool_io_bytes:
            raise ToolIOExceeded
        calls.append(ToolCall(name, pending.arguments, None, error, duration))
        reply = {
            "op": "tool_result",
            "ok": False,
            "io": self.tool_io,
            "error": error,
            "error_type": error_type,
        }
        return encode_frame(reply)

    def error_for(self, exc: Exception, returncode: int | None) -> SandboxError:
        """The call's error for a failure that ended it (the worker has been killed)."""
        limits = self.limits
        if isinstance(exc, ToolOverran):
            pending = exc.pending
            self.outcome.tool_calls.append(
                ToolCall(
                    pending.name,
                    pending.arguments,
                    None,
                    "still running at the call's deadline; its result is discarded",
                    time.monotonic() - pending.started,
                )
            )
            return ExecutionTimeout(
                f"the skill did not finish within Limits.timeout_s={limits.timeout_s} seconds "
                f"of wall-clock time: tool call #{pending.index}, tools.{pending.name}(), was "
                "still running at the deadline (a host tool cannot be interrupted; whatever it "
                "returns later is discarded). Make the tool faster or raise the limit",
                limits.timeout_s,
                pending.name,
            )
        if isinstance(exc, CallTimeout):
            return ExecutionTimeout(
                f"the skill did not finish within Limits.timeout_s={limits.timeout_s} seconds "
                "of wall-clock time (tool calls included) and was killed; make it do less per "
                "call or raise the limit",
                limits.timeout_s,
            )
        if isinstance(exc, ToolIOExceeded):
            return ResourceLimitExceeded(
                "tool_io",
                f"the skill's tool calls moved more than Limits.tool_io_bytes="
                f"{limits.tool_io_bytes} bytes of arguments and results (each array or object "
                f"counts {CONTAINER_COST} bytes); pass less data through tools per call or "
                "raise the limit",
            )
        if isinstance(exc, ProtocolBroken):
            detail = str(exc)
        else:  # a bug of ours: still a Result, never an exception out of Sandbox.run
            detail = f"the host failed serving it: {type(exc).__name__}: {exc}"
        return WorkerCrashed(
            f"the worker process broke the protocol ({_whole_characters(detail)[:500]}) and was "
            "killed; the next call gets a fresh worker",
            returncode,
        )


#: Room for a frame's own keys, a tool name and an error message around the budgeted data.
_ENVELOPE_BYTES: Final = 64 * 1024
#: Room for an error in a ``done`` frame. The worker caps its text fields (a message 4,000
#: characters, names 200, at most 100 allowed tool names, which a ToolNotAllowed message also
#: lists), and a character is at most 6 bytes of JSON (a ``\u0001`` escape): about 230 KB at
#: worst (measured by the "error-fields-as-big-as-the-worker-allows" security row).
_ERROR_BYTES: Final = 512 * 1024
_TOOL_PREFIX: Final = b'{"op":"tool",'
_DONE_PREFIX: Final = b'{"op":"done",'


def _frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def _whole_characters(text: str) -> str:
    """``text`` with any lone surrogate spelled as an escape, so it can cross as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
