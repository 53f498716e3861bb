"""The worker process that runs skill code.

The host starts it as ``python -I -S -B -c <bootstrap> <sys.path entries...>`` (see
:mod:`sandbox.pool`) with an empty environment, a fresh empty working directory, no
inherited file descriptors besides the two pipes, and its own session (process group), so
the host can kill everything it might start in one ``killpg``.

At start-up the worker:

1. moves the protocol pipes off fds 0 and 1 and points fds 0, 1 and 2 at ``/dev/null``, so
   nothing a skill or a library prints can corrupt the channel;
2. sets the process-wide rlimits: no core files, no file writes (``RLIMIT_FSIZE`` 0), no new
   processes (``RLIMIT_NPROC`` 0; not enforced for root), and restores the default action
   of ``SIGXCPU`` so exceeding the CPU limit kills the process.

Then it serves ``run`` requests one at a time (see :mod:`sandbox.protocol`). Per call it
sets the soft ``RLIMIT_CPU`` (CPU already used + ``cpu_s``, since the worker is reused) and
``RLIMIT_AS``; hard limits stay where they were so the next call can choose differently.
The skill gets fresh globals on every call, so no state carries over between calls.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NoReturn

from sandbox.errors import (
    PolicyViolation,
    ResourceLimitExceeded,
    SandboxError,
    SkillError,
    ToolError,
    ToolNotAllowed,
    error_to_wire,
)
from sandbox.policy import OutputBuffer, build_globals, compile_skill, iter_skill_lines
from sandbox.protocol import encode_raw_frame, read_frame, write_all

__all__ = ["ToolsProxy", "main"]

_MAX_MESSAGE_CHARS: Final = 4000
_JSON_SEPARATORS: Final = (",", ":")
_RETURN_TYPES_HINT: Final = "return only dict, list, str, int, float, bool or None values"


class ToolsProxy:
    """The ``tools`` global inside the sandbox: ``tools.<name>(**kwargs)`` calls a host tool.

    Only the names the host declared resolve; any other name raises :class:`ToolNotAllowed`.
    Its state lives in ``_``-prefixed slots, which skill code cannot read.
    """

    __slots__ = ("_sandbox_names", "_sandbox_call")

    _sandbox_names: frozenset[str]
    _sandbox_call: Callable[[str, dict[str, Any]], Any]

    def __init__(self, names: Iterable[str], call: Callable[[str, dict[str, Any]], Any]) -> None:
        object.__setattr__(self, "_sandbox_names", frozenset(names))
        object.__setattr__(self, "_sandbox_call", call)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name not in self._sandbox_names:
            raise ToolNotAllowed(name, sorted(self._sandbox_names))
        call = self._sandbox_call

        def tool(*args: Any, **kwargs: Any) -> Any:
            if args:
                raise TypeError(
                    f"tools.{name}() takes keyword arguments only; "
                    f"call it as tools.{name}(name=value, ...)"
                )
            return call(name, kwargs)

        tool.__name__ = name
        tool.__qualname__ = f"tools.{name}"
        return tool

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("the tools object is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("the tools object is read-only")

    def __repr__(self) -> str:
        return f"<tools {', '.join(sorted(self._sandbox_names)) or '(none)'}>"


def _host_gone() -> NoReturn:
    # The host closed the pipe or broke the protocol: nobody is waiting for a result, and
    # raising would hand control back to skill code (which may catch anything).
    os._exit(0)


class _Call:
    """State of one ``run`` request: tool relay, counters and the sticky error."""

    def __init__(self, in_fd: int, out_fd: int, request: Mapping[str, Any]) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        limits = request["limits"]
        self.cpu_s = int(limits["cpu_s"])
        self.memory_mb = int(limits["memory_mb"])
        self.output_bytes = int(limits["output_bytes"])
        self.max_tool_calls = int(limits["max_tool_calls"])
        self.tool_names = tuple(str(name) for name in request["tools"])
        self.tool_calls = 0
        #: The first guard refusal or exceeded limit; it decides the outcome even if the
        #: skill catches the exception.
        self.sticky: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        """Record a sticky error (the first one wins)."""
        if self.sticky is None:
            self.sticky = error

    def call_tool(self, name: str, kwargs: dict[str, Any]) -> Any:
        """Relay one tool call to the host and return its JSON result."""
        if self.tool_calls >= self.max_tool_calls:
            error = ResourceLimitExceeded(
                "tool_calls",
                f"the skill made more than Limits.max_tool_calls={self.max_tool_calls} tool "
                "calls; call tools less often (batch the work) or raise the limit",
            )
            self.fail(error)
            raise error
        try:
            arguments = json.dumps(kwargs, allow_nan=False, separators=_JSON_SEPARATORS)
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"arguments to tools.{name}() must be JSON-serialisable ({exc}); pass only "
                "dict, list, str, int, float, bool or None values"
            ) from None
        self.tool_calls += 1
        frame = '{"op":"tool","name":' + json.dumps(name) + ',"arguments":' + arguments + "}"
        try:
            write_all(self.out_fd, encode_raw_frame(frame))
            reply = read_frame(self.in_fd)
        except (OSError, EOFError, ValueError):
            _host_gone()
        if reply.get("op") != "tool_result":
            _host_gone()
        if reply.get("ok") is True:
            return reply.get("value")
        message = str(reply.get("error", "the tool failed"))
        kind = reply.get("error_type")
        if kind == "ToolNotAllowed":
            raise ToolNotAllowed(name, self.tool_names)
        if kind == "ResourceLimitExceeded":
            error = ResourceLimitExceeded("tool_calls", message)
            self.fail(error)
            raise error
        raise ToolError(name, message)


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a broken __str__ must not break reporting
        text = "<the exception's message could not be rendered>"
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "... (truncated)"
    return text


def _last_skill_line(tb: types.TracebackType | None) -> int | None:
    lines = list(iter_skill_lines(tb))
    return lines[-1] if lines else None


def _classify(exc: BaseException, source: str, call: _Call) -> SandboxError:
    """Turn whatever escaped the skill into the error the host reports."""
    line = _last_skill_line(exc.__traceback__)
    if isinstance(exc, PolicyViolation):
        if exc.line is None and line is not None:
            lines = source.splitlines()
            text = lines[line - 1] if 0 < line <= len(lines) else None
            return PolicyViolation(exc.message, line, None, text)
        return exc
    if isinstance(exc, SandboxError):
        return exc
    if isinstance(exc, MemoryError):
        return ResourceLimitExceeded(
            "memory",
            f"the skill ran out of memory (Limits.memory_mb={call.memory_mb} MiB of address "
            "space); use less memory or raise the limit",
        )
    return SkillError(type(exc).__name__, _safe_str(exc), line)


def _encode_value(value: object, call: _Call) -> tuple[str | None, SandboxError | None]:
    try:
        encoded = json.dumps(value, allow_nan=False, separators=_JSON_SEPARATORS)
    except MemoryError:
        return None, ResourceLimitExceeded(
            "memory", f"out of memory serialising the result (Limits.memory_mb={call.memory_mb})"
        )
    except BaseException as exc:  # noqa: BLE001 - anything here means "not JSON"
        return None, SkillError(
            "TypeError",
            f"the skill must return JSON-serialisable data, but its return value is not "
            f"({_safe_str(exc)}); {_RETURN_TYPES_HINT}",
        )
    if len(encoded) > call.output_bytes:
        return None, ResourceLimitExceeded(
            "output",
            f"the skill's result is {len(encoded)} bytes of JSON, more than "
            f"Limits.output_bytes={call.output_bytes}; return less or raise the limit",
        )
    return encoded, None


def _set_soft_limit(kind: int, value: int) -> None:
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, hard))


def _apply_call_limits(call: _Call) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _set_soft_limit(resource.RLIMIT_CPU, math.ceil(used) + call.cpu_s)
    _set_soft_limit(resource.RLIMIT_AS, call.memory_mb * 1024 * 1024)


def _reset_shared_state() -> None:
    # The only process-wide state an allowed module lets a skill change is the current
    # decimal context (e.g. ``getcontext().clear_traps()``); give every call a fresh one.
    decimal = sys.modules.get("decimal")
    if decimal is not None:
        decimal.setcontext(decimal.Context())


def run_request(request: Mapping[str, Any], in_fd: int, out_fd: int) -> str:
    """Run one ``run`` request and return the JSON text of its ``done`` message.

    Args:
        request: The decoded ``run`` message.
        in_fd: Protocol pipe from the host (tool results arrive here).
        out_fd: Protocol pipe to the host (tool requests go here).

    Returns:
        The ``done`` message, serialised.
    """
    call = _Call(in_fd, out_fd, request)
    source = str(request["source"])
    entry = str(request["entry"])
    args = request["args"]
    _apply_call_limits(call)
    _reset_shared_state()
    output = OutputBuffer(call.output_bytes, on_overflow=call.fail)
    namespace: dict[str, Any] = {}
    value: object = None
    error: SandboxError | None = None
    try:
        code = compile_skill(source)
        namespace = build_globals(
            ToolsProxy(call.tool_names, call.call_tool), output.collector, on_violation=call.fail
        )
        exec(code, namespace)
        function = namespace.get(entry)
        if function is None or not callable(function):
            error = SkillError(
                "NameError",
                f"the skill source defines no function {entry!r}; define `def {entry}(...)` "
                "at module level, or pass the name of the function it does define as entry",
            )
        else:
            value = function(**args)
    except BaseException as exc:  # noqa: BLE001 - SystemExit etc. must not end the worker
        error = _classify(exc, source, call)
    if call.sticky is not None:
        error = _classify(call.sticky, source, call)
    encoded = None
    if error is None:
        encoded, error = _encode_value(value, call)
    namespace.clear()  # break function <-> globals cycles now rather than at the next GC
    value = None
    head = {
        "op": "done",
        "ok": error is None,
        "error": None if error is None else error_to_wire(error),
        "output": output.text(),
    }
    text = json.dumps(head, separators=_JSON_SEPARATORS)
    # Splice the already-serialised (and size-checked) value in rather than encode it twice.
    return text[:-1] + ',"value":' + (encoded if encoded is not None else "null") + "}"


def _take_over_stdio() -> tuple[int, int]:
    """Move the protocol pipes to private fds and point 0, 1 and 2 at /dev/null."""
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    return in_fd, out_fd


def _apply_process_limits() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    except (ValueError, OSError):  # pragma: no cover - platform dependent
        pass
    # An ignored SIGXCPU survives exec; make sure exceeding RLIMIT_CPU really kills us.
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)


def main() -> None:
    """Serve ``run`` requests on stdin/stdout until the host closes the pipe."""
    in_fd, out_fd = _take_over_stdio()
    _apply_process_limits()
    while True:
        try:
            request = read_frame(in_fd)
        except (EOFError, OSError):
            return
        except ValueError:
            _host_gone()
        if request.get("op") != "run":
            _host_gone()
        try:
            reply = run_request(request, in_fd, out_fd)
        except MemoryError:
            reply = json.dumps(
                {
                    "op": "done",
                    "ok": False,
                    "value": None,
                    "output": "",
                    "error": error_to_wire(
                        ResourceLimitExceeded("memory", "the worker ran out of memory")
                    ),
                }
            )
        try:
            write_all(out_fd, encode_raw_frame(reply))
        except OSError:
            return


if __name__ == "__main__":
    main()
