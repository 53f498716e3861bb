"""Errors reported by the sandbox.

Every failure of sandboxed code comes back to the host as an *instance* of one of these
classes, stored in :attr:`sandbox.Result.error` (call :meth:`sandbox.Result.raise_for_error` to
raise it). Misuse of the API itself (bad arguments to :meth:`sandbox.Sandbox.run`, invalid
:class:`sandbox.Limits`) raises ``TypeError`` / ``ValueError`` instead, so a developer mistake
is never confused with a skill that failed.

The tree::

    SandboxError
    ├── PolicyViolation          the code may not do that (compile time or a runtime guard)
    ├── ResourceLimitExceeded    limit in {"cpu", "memory", "wall", "output", "tool_calls"}
    │   └── ExecutionTimeout     limit == "wall": the whole call ran past Limits.timeout_s
    ├── ToolNotAllowed           the skill used a tool that was not handed to it
    ├── ToolError                a host tool raised (or returned something that is not JSON)
    ├── SkillError               the skill's own uncaught exception
    └── WorkerCrashed            the worker process died unexpectedly

Each class passes exactly its constructor arguments to ``Exception.__init__``, so instances
copy and pickle like ordinary exceptions. The worker process sends errors to the host as
plain JSON objects (:func:`error_to_wire` / :func:`error_from_wire`); nothing is ever
unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = [
    "LIMIT_KINDS",
    "ExecutionTimeout",
    "PolicyViolation",
    "ResourceLimitExceeded",
    "SandboxError",
    "SkillError",
    "ToolError",
    "ToolNotAllowed",
    "WorkerCrashed",
    "error_from_wire",
    "error_to_wire",
]

#: The values :attr:`ResourceLimitExceeded.limit` can take.
LIMIT_KINDS: Final = frozenset({"cpu", "memory", "wall", "output", "tool_calls", "tool_io"})


class SandboxError(Exception):
    """Root of every error the sandbox reports; catch this to handle them all.

    Attributes:
        message: A human-readable description, without location prefixes.
    """

    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PolicyViolation(SandboxError):
    """The skill tried something the sandbox policy forbids.

    Raised (reported) when RestrictedPython refuses to compile the source (a syntax error, or a
    forbidden construct such as a name or attribute starting with ``_``, or an ``import`` of a
    module outside :data:`sandbox.ALLOWED_MODULES`), and when a runtime guard refuses
    something the compiler could not see (``getattr(x, "__class__")``, a dynamic import).
    A runtime refusal is sticky: the call fails with this error even if the skill catches it.

    Attributes:
        line: 1-based line in the skill source, or None if unknown.
        col: 1-based column (as editors count) in the skill source, or None if unknown.
        source_line: The offending source line, when known, for the caret display.
    """

    line: int | None
    col: int | None
    source_line: str | None

    def __init__(
        self,
        message: str,
        line: int | None = None,
        col: int | None = None,
        source_line: str | None = None,
    ) -> None:
        Exception.__init__(self, message, line, col, source_line)
        self.message = message
        self.line = line
        self.col = col
        self.source_line = source_line

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        where = f"line {self.line}" if self.col is None else f"line {self.line}:{self.col}"
        text = f"{where}: {self.message}"
        if self.source_line:
            stripped = self.source_line.rstrip()
            text += f"\n    {stripped.lstrip()}"
            if self.col is not None:
                indent = len(stripped) - len(stripped.lstrip())
                text += "\n    " + " " * max(self.col - 1 - indent, 0) + "^"
        return text


class ResourceLimitExceeded(SandboxError):
    """The skill used more of a resource than its :class:`sandbox.Limits` allow.

    Reported when the worker is killed for CPU time (``limit="cpu"``), runs out of address
    space (``"memory"``), prints or returns more than ``Limits.output_bytes`` (``"output"``),
    or calls tools more than ``Limits.max_tool_calls`` times (``"tool_calls"``). The
    wall-clock case has its own subclass, :class:`ExecutionTimeout`. Like a policy refusal,
    an exceeded limit is sticky: catching it inside the skill does not rescue the call.

    Attributes:
        limit: Which limit was exceeded, one of :data:`LIMIT_KINDS`.
    """

    limit: str

    def __init__(self, limit: str, message: str) -> None:
        if limit not in LIMIT_KINDS:
            raise ValueError(
                f"ResourceLimitExceeded limit={limit!r} is not one of {sorted(LIMIT_KINDS)}"
            )
        Exception.__init__(self, limit, message)
        self.message = message
        self.limit = limit


class ExecutionTimeout(ResourceLimitExceeded):
    """The call ran longer than ``Limits.timeout_s`` of wall-clock time.

    Reported by the host, which measures the whole call (worker start, skill code and the
    time spent in host tools) and kills the worker's process group when the deadline passes.
    ``limit`` is always ``"wall"``.

    A host tool cannot be interrupted: if one is still running at the deadline, the call
    returns at the deadline all the same, ``tool`` names it, and whatever it returns later is
    discarded.

    Attributes:
        timeout_s: The deadline that was missed, in seconds, when known.
        tool: The host tool that was still running at the deadline, or None.
    """

    timeout_s: float | None
    tool: str | None

    def __init__(
        self, message: str, timeout_s: float | None = None, tool: str | None = None
    ) -> None:
        Exception.__init__(self, message, timeout_s, tool)
        self.message = message
        self.limit = "wall"
        self.timeout_s = timeout_s
        self.tool = tool


class ToolNotAllowed(SandboxError):
    """The skill used a tool that is not in the ``tools`` mapping given to ``Sandbox.run``.

    Raised inside the skill at ``tools.<name>`` (so a skill may catch it to treat a tool as
    optional); reported as the call's error if the skill does not catch it. A skill fails
    this way when it was compiled against tools the caller did not declare: pass the tool in
    ``tools=`` or fix the skill.

    Attributes:
        tool: The name the skill asked for.
        allowed: The tool names the skill was given.
    """

    tool: str
    allowed: tuple[str, ...]

    def __init__(self, tool: str, allowed: Sequence[str] = ()) -> None:
        allowed = tuple(allowed)
        Exception.__init__(self, tool, allowed)
        self.tool = tool
        self.allowed = allowed
        offered = ", ".join(repr(name) for name in allowed) if allowed else "none"
        self.message = (
            f"tool {tool!r} is not available to this skill (it was given: {offered}); "
            f"pass {tool!r} in the tools mapping of Sandbox.run if the skill should use it"
        )


class ToolError(SandboxError):
    """A host tool called by the skill failed.

    The host catches the tool's exception and sends only its message back; inside the skill
    a *fresh* ``ToolError`` is raised (available there as the builtin ``ToolError``), so no
    host object or traceback ever enters the sandbox. Reported as the call's error when the
    skill does not catch it. A tool that returns a value that is not JSON-serialisable fails
    the same way. Compare :class:`SkillError`, which is the skill's own bug.

    Attributes:
        tool: The tool's name.
    """

    tool: str

    def __init__(self, tool: str, message: str) -> None:
        Exception.__init__(self, tool, message)
        self.tool = tool
        self.message = message

    def __str__(self) -> str:
        return f"tool {self.tool!r} failed: {self.message}"


class SkillError(SandboxError):
    """The skill raised an exception it did not catch.

    Also reported when the skill returns a value that is not JSON-serialisable
    (``exc_type="TypeError"``) and when the source does not define the entry function
    (``exc_type="NameError"``).

    Attributes:
        exc_type: The exception class name inside the sandbox, e.g. ``"ValueError"``.
        line: 1-based line in the skill source where it was raised, or None if unknown.
    """

    exc_type: str
    line: int | None

    def __init__(self, exc_type: str, message: str, line: int | None = None) -> None:
        Exception.__init__(self, exc_type, message, line)
        self.exc_type = exc_type
        self.message = message
        self.line = line

    def __str__(self) -> str:
        text = f"{self.exc_type}: {self.message}" if self.message else self.exc_type
        return text if self.line is None else f"line {self.line}: {text}"


class WorkerCrashed(SandboxError):
    """The worker process died or broke the protocol in the middle of a call.

    Reported when the process is killed by a signal (other than the CPU-limit one), exits,
    segfaults, or sends a malformed frame. The worker is discarded and the next call gets a
    fresh one, so retrying is safe.

    Attributes:
        exitcode: The process's return code as ``subprocess`` reports it (negative for a
            signal), or None if it was still running when the host gave up on it.
    """

    exitcode: int | None

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        Exception.__init__(self, message, exitcode)
        self.message = message
        self.exitcode = exitcode


def error_to_wire(error: SandboxError) -> dict[str, Any]:
    """Encode an error as the JSON object the worker sends in its ``done`` frame.

    Args:
        error: Any :class:`SandboxError`.

    Returns:
        A dict with the keys ``type``, ``message``, ``line``, ``col``, ``limit``, ``tool``
        ``exc_type`` (unused keys are None) and ``allowed`` (a list).
    """
    # A skill may subclass ToolError (say); report the nearest class the host knows.
    known = next(cls for cls in type(error).__mro__ if cls.__module__ == __name__)
    return {
        "type": known.__name__,
        "message": error.message,
        "line": getattr(error, "line", None),
        "col": getattr(error, "col", None),
        "source_line": getattr(error, "source_line", None),
        "limit": getattr(error, "limit", None),
        "tool": getattr(error, "tool", None),
        "exc_type": getattr(error, "exc_type", None),
        "allowed": list(getattr(error, "allowed", ())),
    }


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def error_from_wire(data: Mapping[str, Any]) -> SandboxError:
    """Rebuild an error from a worker's JSON object.

    The worker runs untrusted code, so the object is validated rather than trusted: only
    the classes of this module can come back, and a malformed object becomes a
    :class:`WorkerCrashed` describing the protocol error.

    Args:
        data: An object produced by :func:`error_to_wire` in the worker.

    Returns:
        The error instance.
    """
    kind = data.get("type")
    message = _text(data.get("message"))
    line = _opt_int(data.get("line"))
    if kind == "PolicyViolation":
        source_line = data.get("source_line")
        return PolicyViolation(
            message,
            line,
            _opt_int(data.get("col")),
            source_line if isinstance(source_line, str) else None,
        )
    if kind == "ExecutionTimeout":
        tool = data.get("tool")
        return ExecutionTimeout(message, tool=tool if isinstance(tool, str) else None)
    if kind == "ResourceLimitExceeded" and data.get("limit") in LIMIT_KINDS:
        return ResourceLimitExceeded(str(data["limit"]), message)
    if kind == "ToolNotAllowed":
        allowed = data.get("allowed")
        names = [n for n in allowed if isinstance(n, str)] if isinstance(allowed, list) else []
        return ToolNotAllowed(_text(data.get("tool"), "?"), names)
    if kind == "ToolError":
        return ToolError(_text(data.get("tool"), "?"), message)
    if kind == "SkillError":
        return SkillError(_text(data.get("exc_type"), "Exception"), message, line)
    return WorkerCrashed(f"worker reported an unknown error object {dict(data)!r:.200}")
