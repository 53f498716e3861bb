"""The worker: the process that runs one skill call (or, in reuse mode, many).

A worker is forked from the template (:mod:`sandbox.template`), which has already imported
everything a skill may use and confined itself; the worker confines itself the rest of the way
(:mod:`sandbox.confine`: its own uid, hard rlimits, seccomp) before :func:`serve` reads its
first request. Its stdio is ``/dev/null``; fds 3 and 4 are its pipes from and to the host.

Per call it sets ``RLIMIT_CPU`` (CPU already used + ``cpu_s``) and ``RLIMIT_AS``. In the
default *fresh* mode the worker serves exactly one call and exits, so the limits are hard
(nothing can raise them again) and nothing needs cleaning up afterwards: the next call runs in
a process no earlier call touched.

In the opt-in *reuse* mode (``Sandbox(isolation="reuse")``) the worker serves calls until the
host retires it, so only the soft limits change per call and the call is *closed* before its
result is sent: the globals are cleared, the ``tools`` proxy and the output buffer stop
working, and a garbage collection runs (still under the call's limits). Skill code can
otherwise outlive its call (a suspended generator in a reference cycle runs its ``finally``
block when the collector finds it), and would then run inside the next call, with that call's
tools and CPU budget. Objects that survive are frozen (``gc.freeze``), so each collection only
looks at what the call itself allocated, and the allowed modules' process-wide caches are
trimmed. That cleanup is a list of known channels; fresh mode needs no list.

Whatever the skill raised is rebuilt as a fresh error of the sandbox's own classes from
validated, size-capped fields before it is encoded: a skill may raise ``ToolError`` (it is
a builtin) or a subclass of it with any object as its message. Its text is made whole
UTF-8 (a lone surrogate is spelled as an escape).

The worker refuses to send what the host would refuse (:mod:`sandbox.protocol`), so the
skill gets a clear error instead of the host killing its worker: a return value or tool
argument nested deeper than ``MAX_DEPTH`` (``TypeError``), a string with a lone surrogate
(``ValueError``; ``print`` too), and tool traffic past ``Limits.tool_io_bytes``, counted
exactly as the host counts it (the host sends its figure with every tool result).
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import select
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NoReturn

from sandbox.errors import (
    LIMIT_KINDS,
    ExecutionTimeout,
    PolicyViolation,
    ResourceLimitExceeded,
    SandboxError,
    SkillError,
    ToolError,
    ToolNotAllowed,
    WorkerCrashed,
    error_to_wire,
)
from sandbox.names import attribute_map
from sandbox.policy import OutputBuffer, build_globals, compile_skill, iter_skill_lines
from sandbox.protocol import (
    FRAME_OUTER,
    HEADER,
    MAX_DEPTH,
    WireError,
    check,
    dumps,
    read_frame,
    write_all,
)

__all__ = ["ToolsProxy", "run_request", "serve"]

_MAX_MESSAGE_CHARS: Final = 4000
#: Most characters of a ``raw`` request's answer (test harness only).
_MAX_RAW_CHARS: Final = 100_000
_MAX_NAME_CHARS: Final = 200
_MAX_ALLOWED_NAMES: Final = 100
_RETURN_TYPES_HINT: Final = "return only dict, list, str, int, float, bool or None values"


class ToolsProxy:
    """The ``tools`` global inside the sandbox: ``tools.<name>(**kwargs)`` calls a host tool.

    Only the names the host declared resolve; any other name raises :class:`ToolNotAllowed`.
    Its state lives in ``_``-prefixed slots, which skill code cannot read.
    """

    __slots__ = ("_sandbox_names", "_sandbox_call")

    #: Attribute -> real tool name (:func:`sandbox.names.attribute_map`): a tool named
    #: ``get-weather`` is called as ``tools.get_weather`` and reaches the host by its name.
    _sandbox_names: dict[str, str]
    _sandbox_call: Callable[[str, dict[str, Any]], Any]

    def __init__(self, names: Iterable[str], call: Callable[[str, dict[str, Any]], Any]) -> None:
        object.__setattr__(self, "_sandbox_names", attribute_map(names))
        object.__setattr__(self, "_sandbox_call", call)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        real = None if name.startswith("_") else self._sandbox_names.get(name)
        if real is None:
            raise ToolNotAllowed(name, sorted(self._sandbox_names))
        call = self._sandbox_call

        def tool(*args: Any, **kwargs: Any) -> Any:
            if args:
                raise TypeError(
                    f"tools.{name}() takes keyword arguments only; "
                    f"call it as tools.{name}(name=value, ...)"
                )
            return call(real, kwargs)

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
        self.tool_io_bytes = int(limits["tool_io_bytes"])
        #: Tool traffic so far, as the host counts it (it sends its figure with each reply).
        self.tool_io = 0
        self.tool_names = tuple(str(name) for name in request["tools"])
        self.tool_calls = 0
        #: The first guard refusal or exceeded limit; it decides the outcome even if the
        #: skill catches the exception.
        self.sticky: BaseException | None = None
        #: Set once the result is decided; code of this call that still runs (a generator's
        #: ``finally`` run by the garbage collector) may no longer call tools.
        self.closed = False

    def fail(self, error: BaseException) -> None:
        """Record a sticky error (the first one wins; none once the call is closed)."""
        if self.sticky is None and not self.closed:
            self.sticky = error

    def call_tool(self, name: str, kwargs: dict[str, Any]) -> Any:
        """Relay one tool call to the host and return its JSON result."""
        if self.closed:
            # Never touch the pipe: the host may already be serving another call.
            raise ToolError(name, "the call this tool belongs to has already ended")
        if self.tool_calls >= self.max_tool_calls:
            error = ResourceLimitExceeded(
                "tool_calls",
                f"the skill made more than Limits.max_tool_calls={self.max_tool_calls} tool "
                "calls; call tools less often (batch the work) or raise the limit",
            )
            self.fail(error)
            raise error
        # str.startswith, not key.startswith: a str subclass key could lie.
        private = [str.__str__(key) for key in kwargs if str.startswith(key, "_")]
        if private:
            refusal = PolicyViolation(
                f"tools.{name}() was called with the argument {private[0]!r}; argument names "
                "starting with '_' are private to the host and cannot be passed by a skill"
            )
            self.fail(refusal)
            raise refusal
        try:
            arguments = dumps(kwargs, what=f"arguments to tools.{name}()")
        except WireError as exc:
            if exc.kind == "encoding":
                raise ValueError(f"{exc}") from None
            raise TypeError(f"{exc}") from None
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"arguments to tools.{name}() must be JSON-serialisable ({exc}); pass only "
                "dict, list, str, int, float, bool or None values"
            ) from None
        payload = b'{"op":"tool","name":' + dumps(name) + b',"arguments":' + arguments + b"}"
        try:
            # The host weighs the frame the same way before it decodes it.
            shape = check(payload, outer=FRAME_OUTER, what=f"arguments to tools.{name}()")
        except WireError as exc:
            raise TypeError(str(exc)) from None
        if self.tool_io + shape.cost > self.tool_io_bytes:
            error = ResourceLimitExceeded(
                "tool_io",
                f"the skill's tool calls moved more than Limits.tool_io_bytes="
                f"{self.tool_io_bytes} bytes of arguments and results (each array or object "
                "counts 64 bytes); pass less data through tools per call or raise the limit",
            )
            self.fail(error)
            raise error
        self.tool_calls += 1
        try:
            write_all(self.out_fd, HEADER.pack(len(payload)) + payload)
            reply = read_frame(self.in_fd, checked=False)
        except (OSError, EOFError, ValueError):
            _host_gone()
        io = reply.get("io")
        if reply.get("op") != "tool_result" or type(io) is not int:
            _host_gone()
        self.tool_io = io
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


def _text(value: object, limit: int = _MAX_MESSAGE_CHARS) -> str | None:
    """An exact, size-capped ``str`` copy of ``value``, or None if it is not a string."""
    if not issubclass(type(value), str):  # type(), not isinstance: __class__ can be faked
        return None
    text = str.__str__(value)  # a str subclass could lie about its length or contents
    text = text if len(text) <= limit else text[:limit] + "... (truncated)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: spell it as an escape so it can cross
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _safe_str(exc: BaseException) -> str:
    try:
        text = _text(str(exc))
    except BaseException:  # noqa: BLE001 - a broken __str__ must not break reporting
        text = None
    return "<the exception's message could not be rendered>" if text is None else text


def _last_skill_line(tb: types.TracebackType | None) -> int | None:
    lines = list(iter_skill_lines(tb))
    return lines[-1] if lines else None


def _field(error: BaseException, name: str) -> object:
    """An attribute of ``error`` as stored on the instance (no class-level property runs)."""
    try:
        return vars(error).get(name)
    except BaseException:  # noqa: BLE001 - whatever the skill built, report something
        return None


def _number(value: object) -> int | None:
    return value if type(value) is int and 0 < value < 1 << 31 else None


def _rebuild(error: SandboxError) -> SandboxError:
    """A fresh error of the sandbox's own class for ``error``, from checked, capped fields.

    A skill can raise ``ToolError`` (a builtin), a subclass of it, or re-raise a sandbox
    error it caught; its fields may then hold any object. Only exact strings and small
    ints are copied, so encoding the result cannot run skill code or fail.
    """
    known = next(
        (cls for cls in type(error).__mro__ if cls.__module__ == SandboxError.__module__),
        SandboxError,
    )
    raw = _field(error, "message")
    message = _text(raw)
    if message is None:
        message = f"<a {type(raw).__name__} object, not a message>"
    if known is PolicyViolation:
        return PolicyViolation(
            message,
            _number(_field(error, "line")),
            _number(_field(error, "col")),
            _text(_field(error, "source_line")),
        )
    if known is ExecutionTimeout:
        return ExecutionTimeout(message)
    if known is ResourceLimitExceeded:
        limit = _text(_field(error, "limit"), _MAX_NAME_CHARS)
        if limit in LIMIT_KINDS and limit != "wall":
            return ResourceLimitExceeded(limit, message)
    if known is ToolNotAllowed:
        names = _field(error, "allowed")
        allowed = (
            [_text(n, _MAX_NAME_CHARS) or "?" for n in names[:_MAX_ALLOWED_NAMES]]
            if isinstance(names, (tuple, list)) and type(names) in (tuple, list)
            else []
        )
        return ToolNotAllowed(_text(_field(error, "tool"), _MAX_NAME_CHARS) or "?", allowed)
    if known is ToolError:
        return ToolError(_text(_field(error, "tool"), _MAX_NAME_CHARS) or "?", message)
    if known is WorkerCrashed:
        return WorkerCrashed(message)
    if known is SkillError:
        exc_type = _text(_field(error, "exc_type"), _MAX_NAME_CHARS) or "Exception"
        return SkillError(exc_type, message, _number(_field(error, "line")))
    # The bare root class, or a ResourceLimitExceeded naming no limit a worker can exceed.
    return SkillError(_text(type(error).__name__, _MAX_NAME_CHARS) or "SandboxError", message)


def _classify(exc: BaseException, source: str, call: _Call) -> SandboxError:
    """Turn whatever escaped the skill into a fresh error the host can be sent."""
    line = _last_skill_line(exc.__traceback__)
    kind = type(exc)  # not isinstance(): a skill-made object can fake its __class__
    if isinstance(exc, SandboxError) and issubclass(kind, SandboxError):
        error = _rebuild(exc)
        if isinstance(error, PolicyViolation) and error.line is None and line is not None:
            lines = source.splitlines()
            text = lines[line - 1] if 0 < line <= len(lines) else None
            return PolicyViolation(error.message, line, None, text)
        return error
    if issubclass(kind, MemoryError):
        return ResourceLimitExceeded(
            "memory",
            f"the skill ran out of memory (Limits.memory_mb={call.memory_mb} MiB of address "
            "space); use less memory or raise the limit",
        )
    name = _text(kind.__name__, _MAX_NAME_CHARS) or "Exception"
    return SkillError(name, _safe_str(exc), line)


def _encode_value(value: object, call: _Call) -> tuple[bytes | None, SandboxError | None]:
    try:
        encoded = dumps(value, what="return value")
        check(encoded, what="return value")  # nesting depth, lone-surrogate escapes
    except MemoryError:
        return None, ResourceLimitExceeded(
            "memory", f"out of memory serialising the result (Limits.memory_mb={call.memory_mb})"
        )
    except WireError as exc:
        kind = "ValueError" if exc.kind == "encoding" else "TypeError"
        return None, SkillError(
            kind,
            f"{exc.message}; "
            f"{_RETURN_TYPES_HINT}, at most {MAX_DEPTH} levels deep, with whole characters",
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


def _set_limit(kind: int, soft: int, hard: int | None, dry_run: bool) -> None:
    """Set ``kind`` to ``soft`` (and ``hard``, if given), never above the current hard limit."""
    _, current = resource.getrlimit(kind)
    if current != resource.RLIM_INFINITY:
        soft = min(soft, current)
        hard = None if hard is None else min(hard, current)
    if not dry_run:
        resource.setrlimit(kind, (soft, current if hard is None else hard))


def _apply_call_limits(
    cpu_s: int, memory_mb: int, hard_too: bool, *, dry_run: bool = False
) -> None:
    """Set the call's CPU and address-space limits (hard as well in a single-use worker).

    ``dry_run`` goes through the same steps without setting anything (see :func:`prewarm`).
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(usage.ru_utime + usage.ru_stime) + cpu_s
    # SIGXCPU at the soft CPU limit is what reports "cpu"; the kernel's SIGKILL a second
    # later, at the hard limit, is the backstop if the signal is blocked.
    _set_limit(resource.RLIMIT_CPU, cpu, cpu + 1 if hard_too else None, dry_run)
    memory = memory_mb * 1024 * 1024
    _set_limit(resource.RLIMIT_AS, memory, memory if hard_too else None, dry_run)


def _reset_shared_state() -> None:
    # The only process-wide setting an allowed module lets a skill change is the current
    # decimal context (e.g. ``getcontext().clear_traps()``); give every call a fresh one.
    decimal = sys.modules.get("decimal")
    if decimal is not None:
        decimal.setcontext(decimal.Context())


def _regex_flag_values() -> frozenset[int]:
    import re

    return frozenset(member.value for member in re.RegexFlag.__members__.values())


#: The values of the named ``re.RegexFlag`` members (the rest of its cache is skill-made).
_REGEX_FLAG_VALUES: Final = _regex_flag_values()
#: Most characters of pattern text ``re``'s compiled-pattern cache may keep between calls.
_RE_CACHE_TEXT_BUDGET: Final = 256 * 1024


def _trim_shared_caches() -> None:
    """Drop what a call left in the allowed modules' process-wide caches.

    These caches are invisible to skills but outlive the call: without a trim, one call
    could fill them (``re.RegexFlag(n)`` keeps a pseudo-member for every ``n``; ``re``
    keeps 512 compiled patterns of any size) and leave the next call on this worker with
    less memory. They reach into private attributes, so each step is skipped quietly on
    a Python whose ``re`` differs.
    """
    re_module = sys.modules.get("re")
    if re_module is None:
        return
    try:
        members = re_module.RegexFlag._value2member_map_
        if len(members) > len(_REGEX_FLAG_VALUES):
            for value in [v for v in members if v not in _REGEX_FLAG_VALUES]:
                del members[value]
    except (AttributeError, TypeError):  # pragma: no cover - another Python's enum
        pass
    try:
        text = sum(len(key[1]) for key in re_module._cache)
        if text > _RE_CACHE_TEXT_BUDGET:
            re_module.purge()
        elif re_module._compile_repl.cache_info().currsize:
            re_module._compile_repl.cache_clear()  # its keys are replacement texts of any size
    except (AttributeError, TypeError, IndexError):  # pragma: no cover - another Python's re
        pass
    typing_module = sys.modules.get("typing")  # Literal[...], Union[...] are lru-cached
    for cleanup in getattr(typing_module, "_cleanups", ()):
        try:
            cleanup()
        except Exception:  # pragma: no cover - another Python's typing  # noqa: BLE001
            pass
    strptime = sys.modules.get("_strptime")  # datetime.strptime's pattern cache
    regex_cache = getattr(strptime, "_regex_cache", None)
    if isinstance(regex_cache, dict) and regex_cache:
        regex_cache.clear()


def _run_skill(
    call: _Call,
    source: str,
    entry: str,
    args: Mapping[str, Any],
    output: OutputBuffer,
    single_use: bool = False,
) -> tuple[bytes | None, SandboxError | None]:
    """Run the skill and encode its value; return (JSON text, None) or (None, error).

    Nothing the skill made survives this function: the globals are cleared and the
    returned error is a fresh object without a traceback. ``single_use``: this process
    serves no other call (see :func:`sandbox.policy.build_globals`).
    """
    namespace: dict[str, Any] = {}
    value: object = None
    error: SandboxError | None = None
    try:
        try:
            code = compile_skill(source)
            namespace = build_globals(
                ToolsProxy(call.tool_names, call.call_tool),
                output.collector,
                on_violation=call.fail,
                single_use=single_use,
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
        encoded = None
        if error is None and call.sticky is None:
            # Encoding may run skill code too (a dict subclass's items()), so the sticky
            # error is checked again afterwards.
            encoded, error = _encode_value(value, call)
        if call.sticky is not None:
            encoded, error = None, _classify(call.sticky, source, call)
        return encoded, error
    finally:
        call.sticky = None  # its traceback holds the skill's frames
        namespace.clear()  # break function <-> globals cycles now rather than at the next GC
        value = None


def _end_call(call: _Call, output: OutputBuffer) -> None:
    """Close the call, then collect its garbage while its limits still apply."""
    call.closed = True
    output.close()
    if gc.collect():  # runs the finalizers of the call's unreachable generators...
        gc.collect()  # ...and frees whatever those finalizers left behind
    _trim_shared_caches()
    gc.freeze()  # the survivors are the worker's caches; later collections skip them


def run_request(
    request: Mapping[str, Any], in_fd: int, out_fd: int, *, reuse: bool = True
) -> bytes:
    """Run one ``run`` request and return the UTF-8 JSON of its ``done`` message.

    Args:
        request: The decoded ``run`` message.
        in_fd: Protocol pipe from the host (tool results arrive here).
        out_fd: Protocol pipe to the host (tool requests go here).
        reuse: The worker serves more calls after this one: close the call and clean up
            after it (see the module docstring). False in a single-use worker, which exits
            right after sending the result, so its limits are set hard instead.

    Returns:
        The ``done`` message, serialised.
    """
    global _active_call
    call = _Call(in_fd, out_fd, request)
    source = str(request["source"])
    entry = str(request["entry"])
    args = request["args"]
    _apply_call_limits(call.cpu_s, call.memory_mb, hard_too=not reuse)
    if reuse:
        _reset_shared_state()
    output = OutputBuffer(call.output_bytes, on_overflow=call.fail)
    _active_call = call
    try:
        encoded, error = _run_skill(call, source, entry, args, output, single_use=not reuse)
    finally:
        _active_call = None
        if reuse:
            _end_call(call, output)
        else:
            call.closed = True  # the process exits before anything else could run
    head = {
        "op": "done",
        "ok": error is None,
        "error": None if error is None else error_to_wire(error),
        "output": output.text(),
    }
    # Splice the already-serialised (and size-checked) value in rather than encode it twice.
    return dumps(head)[:-1] + b',"value":' + (encoded if encoded is not None else b"null") + b"}"


#: The call in progress, for :func:`_on_unraisable`.
_active_call: _Call | None = None


def _on_unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook``: an exception nobody can catch (raised by a finalizer).

    Such exceptions are dropped, except that running out of memory still fails the call
    (a generator's ``finally`` block could otherwise hide an exhausted limit).
    """
    call = _active_call
    if call is not None and isinstance(unraisable.exc_value, MemoryError):
        call.fail(MemoryError("out of memory in a finalizer"))


def _run_raw(request: Mapping[str, Any]) -> bytes:
    """Run plain Python, no policy, in this confined worker (test harness only).

    The answer's ``value`` is ``{"result": <the code's ``result`` variable>}`` or, if the
    code raised, ``{"raised": <class name>, "errno": <errno or None>, "message": ...}``.
    """
    limits = request["limits"]
    _apply_call_limits(int(limits["cpu_s"]), int(limits["memory_mb"]), hard_too=True)
    namespace: dict[str, Any] = {"__name__": "raw"}
    value: dict[str, Any]
    try:
        exec(compile(str(request["source"]), "<raw>", "exec"), namespace)
        value = {"result": namespace.get("result")}
    except BaseException as exc:  # noqa: BLE001 - the test asserts on exactly this
        code = getattr(exc, "errno", None)
        value = {
            "raised": type(exc).__name__,
            "errno": code if type(code) is int else None,
            "message": _safe_str(exc),
        }
    # ASCII JSON (lone surrogates escaped as their code points), whatever the code left there.
    text = json.dumps(value, separators=(",", ":"), default=repr)
    if len(text) > _MAX_RAW_CHARS:
        text = json.dumps({"result": "<answer too long>"})
    return b'{"op":"done","ok":true,"error":null,"output":"","value":' + text.encode() + b"}"


def _out_of_memory_reply() -> bytes:
    return dumps(
        {
            "op": "done",
            "ok": False,
            "value": None,
            "output": "",
            "error": error_to_wire(ResourceLimitExceeded("memory", "the worker ran out of memory")),
        }
    )


#: What a fresh worker runs before its request arrives (see :func:`prewarm`); the template
#: compiles it, so the worker only executes it.
PREWARM_SOURCE: Final = """\
import json
def run(x):
    rows = [{"i": i, "s": f"{i:>3}"} for i in range(3)]
    print(len(rows))
    return {"x": x, "rows": rows, "j": json.loads(json.dumps(rows))}
"""


#: A ``run`` request like the host's (:data:`PREWARM_SOURCE`, default limits) for
#: :func:`prewarm` to decode and run the way a call's request is.
_PREWARM_REQUEST: Final = json.dumps(
    {
        "op": "run",
        "source": PREWARM_SOURCE,
        "entry": "run",
        "tools": [],
        "limits": {
            "timeout_s": 10.0,
            "cpu_s": 10,
            "memory_mb": 1024,
            "output_bytes": 1_000_000,
            "max_tool_calls": 10_000,
            "tool_io_bytes": 64_000_000,
        },
        "args": {"x": 1},
    },
    separators=(",", ":"),
).encode()


def prewarm() -> None:
    """Run :data:`PREWARM_SOURCE` once, outside any call, with no tools and no limits.

    A forked worker shares the template's memory copy-on-write: the first call that runs
    in it pays for copying every page it writes (reference counts included), about a
    millisecond. Running the call's own path once (decode a request, compile, build the
    globals, run, encode the reply; the limits are computed but not set) while the worker
    waits for its request moves that cost off the call. It is the sandbox's own code,
    identical in every worker, and leaves nothing of a call behind (there was no call yet):
    no limits are set and no pipe is used.
    """
    request = json.loads(_PREWARM_REQUEST)  # what read_frame does with a request
    call = _Call(-1, -1, request)
    _apply_call_limits(call.cpu_s, call.memory_mb, hard_too=True, dry_run=True)
    output = OutputBuffer(call.output_bytes, on_overflow=call.fail)
    encoded, error = _run_skill(call, str(request["source"]), "run", request["args"], output)
    head = {"op": "done", "ok": error is None, "error": None, "output": output.text()}
    dumps(head)[:-1] + b',"value":' + (encoded or b"null") + b"}"
    call.closed = True
    output.close()


def _request_waiting(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def serve(in_fd: int, out_fd: int, *, reuse: bool, raw: bool = False, warm: bool = False) -> None:
    """Serve requests from the host: one (fresh mode) or until the pipe closes (reuse).

    Args:
        in_fd: The pipe from the host.
        out_fd: The pipe to the host.
        reuse: Serve calls until the host closes the pipe, cleaning up after each; otherwise
            return after the first.
        raw: Accept ``raw`` requests (plain Python, no policy). Only a template started by
            the test harness sets it; any other worker treats such a request as a broken
            host and exits.
        warm: Run :func:`prewarm` first, unless a request is already waiting (under load
            the fork rate matters more than the first call's page copies).
    """
    sys.unraisablehook = _on_unraisable
    if warm and not _request_waiting(in_fd):
        prewarm()
    while True:
        try:
            request = read_frame(in_fd, checked=False)
        except (EOFError, OSError):
            return
        except ValueError:
            _host_gone()
        op = request.get("op")
        if op == "raw" and raw:
            reply = _run_raw(request)
        elif op == "run":
            try:
                reply = run_request(request, in_fd, out_fd, reuse=reuse)
            except MemoryError:
                reply = _out_of_memory_reply()
            except BaseException:  # noqa: BLE001 - a state we did not plan for: end the worker
                os._exit(70)  # the host reports WorkerCrashed and uses a fresh worker
        else:
            _host_gone()
        try:
            write_all(out_fd, HEADER.pack(len(reply)) + reply)
        except OSError:
            return
        if not reuse:
            return
