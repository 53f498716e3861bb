"""The Executor protocol: how a skill call reaches whatever runs it, in JSON only.

A backend receives a request as JSON text (skill id, content hash, source, entry point, JSON
arguments, the declared tool names and the limits) and a :class:`ToolHost` through which the
skill's tool calls come back to the caller, again as JSON text. It answers with JSON text (the
value or the error, every tool call, timing and printed output). Nothing is pickled and no
callable crosses the boundary, so a backend may run the skill on another machine (a Ray
cluster, a job queue) without any change to the callers: :class:`sandbox.Sandbox` only speaks
this protocol.

This module holds only the protocol and the types every side shares; it imports no backend.
Backends depend on it, never the reverse: :class:`sandbox.pool.LocalExecutor`, the default,
runs calls on this machine's warm worker pool and lives with that pool, because it is the
pool's front door (it decides which outcomes leave a worker reusable). A remote backend is
one more module beside it. :class:`sandbox.Sandbox` imports the protocol and the default
backend; :mod:`sandbox.contract` holds the checks any backend must pass.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sandbox.errors import ToolError, ToolNotAllowed, error_from_wire, error_to_wire
from sandbox.limits import Limits
from sandbox.protocol import FRAME_OUTER, encode_text, loads
from sandbox.result import Result, ToolCall

__all__ = [
    "ExecRequest",
    "Executor",
    "MappingToolHost",
    "ToolHost",
    "result_from_json",
    "result_to_json",
]

_SEPARATORS = (",", ":")


def _sha256(text: str) -> str:
    if len(text) <= _CACHED_HASH_CHARS:
        return _cached_sha256(text)
    return _hash(text)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


#: Sources up to this size have their hash remembered (a skill is usually run many times).
_CACHED_HASH_CHARS = 64 * 1024
_cached_sha256 = functools.lru_cache(maxsize=256)(_hash)


@dataclass(frozen=True)
class ExecRequest:
    """One skill call, as a backend receives it (use :meth:`to_json` to send it)."""

    skill_id: str
    """The skill's id (for logs, caches and routing; the code runs ``entry``)."""

    content_hash: str
    """sha256 of ``source``: a backend may cache compiled code under it."""

    source: str
    """The skill module's text."""

    entry: str
    """The function to call."""

    args: Mapping[str, Any]
    """Keyword arguments, JSON data."""

    tools: tuple[str, ...]
    """Names of the tools the skill may call (sorted)."""

    limits: Limits
    """Resource limits of the call."""

    @classmethod
    def build(
        cls,
        source: str,
        entry: str,
        args: Mapping[str, Any],
        tools: Sequence[str],
        limits: Limits,
        skill_id: str | None = None,
    ) -> ExecRequest:
        """Make a request, computing the content hash."""
        return cls(skill_id or entry, _sha256(source), source, entry, dict(args),
                   tuple(sorted(tools)), limits)  # fmt: skip

    def to_json(self) -> str:
        """The request as JSON text (raises ValueError/TypeError for non-JSON arguments)."""
        return json.dumps(
            {
                "skill_id": self.skill_id,
                "content_hash": self.content_hash,
                "source": self.source,
                "entry": self.entry,
                "args": dict(self.args),
                "tools": list(self.tools),
                "limits": self.limits.to_wire(),
            },
            allow_nan=False,
            separators=_SEPARATORS,
        )

    @classmethod
    def from_json(cls, text: str) -> ExecRequest:
        """Parse and check a request.

        Raises:
            ValueError: malformed JSON, a missing or mistyped field, or a content hash that
                does not match the source (a backend must never run code it cannot identify).
        """
        try:
            # The request object and its args mapping wrap the values, as a frame does.
            raw = encode_text(text, "execution request")
            data, _ = loads(raw, outer=FRAME_OUTER, what="execution request")
            if not isinstance(data, dict):
                raise TypeError(f"the request must be a JSON object, got {type(data).__name__}")
            request = cls(
                skill_id=_str(data, "skill_id"),
                content_hash=_str(data, "content_hash"),
                source=_str(data, "source"),
                entry=_str(data, "entry"),
                args=_dict(data, "args"),
                tools=tuple(_names(data.get("tools"))),
                limits=Limits(**_dict(data, "limits")),
            )
        except (TypeError, KeyError, AttributeError, ValueError) as exc:
            raise ValueError(f"malformed execution request: {exc}") from None
        if _sha256(request.source) != request.content_hash:
            raise ValueError(
                f"execution request for {request.skill_id!r}: content_hash "
                f"{request.content_hash[:16]}... does not match the source; refusing to run it"
            )
        return request


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object, got {type(value).__name__}")
    return value


def _names(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("tools must be a list of names")
    return value


@runtime_checkable
class ToolHost(Protocol):
    """The caller's side of tool calls: JSON in, JSON out."""

    def call_tool(self, name: str, arguments_json: str) -> str:
        """Run tool ``name`` with the JSON-encoded keyword arguments; return its JSON result.

        Raises:
            ToolError: the tool failed; only the message reaches the skill.
            ToolNotAllowed: there is no such tool.
        """
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs one skill call described by a JSON request; answers with a JSON response.

    The response object has ``ok`` (bool), ``value`` (JSON), ``error`` (an error object as
    :func:`sandbox.errors.error_to_wire` makes it, or null), ``tool_calls`` (a list of
    ``{tool, arguments, result, error, duration_s}``), ``duration_s`` and ``output``.
    Failures of the skill are reported in the response, never raised; a malformed request
    raises ValueError.
    """

    def execute(self, request_json: str, tools: ToolHost) -> str:
        """Run the request, relaying tool calls to ``tools``; return the JSON response."""
        ...

    def close(self) -> None:
        """Release the backend's resources; later calls may raise RuntimeError."""
        ...


class MappingToolHost:
    """A :class:`ToolHost` over plain host callables (name -> function of keyword args)."""

    def __init__(self, tools: Mapping[str, Callable[..., Any]]) -> None:
        self.tools = dict(tools)

    def call_tool(self, name: str, arguments_json: str) -> str:
        """Decode the arguments, call the function, encode its result as JSON."""
        function = self.tools.get(name)
        if function is None:
            raise ToolNotAllowed(name, sorted(self.tools))
        try:
            result = function(**json.loads(arguments_json))
        except Exception as exc:  # noqa: BLE001 - any tool failure is the skill's to handle
            raise ToolError(name, f"{type(exc).__name__}: {exc}") from None
        try:
            return json.dumps(result, allow_nan=False, separators=_SEPARATORS)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ToolError(
                name,
                f"the tool returned a value that is not JSON-serialisable ({exc}); host tools "
                "must return dict, list, str, int, float, bool or None",
            ) from None


def result_to_json(result: Result) -> str:
    """Encode a :class:`Result` as the protocol's JSON response."""
    return json.dumps(
        {
            "ok": result.ok,
            "value": result.value,
            "error": None if result.error is None else error_to_wire(result.error),
            "tool_calls": [
                {
                    "tool": c.tool,
                    "arguments": c.arguments,
                    "result": c.result,
                    "error": c.error,
                    "duration_s": c.duration_s,
                }
                for c in result.tool_calls
            ],
            "duration_s": result.duration_s,
            "output": result.output,
        },
        separators=_SEPARATORS,
    )


def result_from_json(text: str) -> Result:
    """Decode a backend's JSON response; anything malformed becomes a WorkerCrashed result."""
    try:
        data = json.loads(text)
        calls = tuple(
            ToolCall(
                str(c["tool"]),
                dict(c["arguments"]),
                c.get("result"),
                c.get("error"),
                float(c.get("duration_s", 0.0)),
            )  # fmt: skip
            for c in data["tool_calls"]
        )
        error = None if data["error"] is None else error_from_wire(data["error"])
        ok = bool(data["ok"]) and error is None
        return Result(
            ok=ok,
            value=data.get("value") if ok else None,
            error=error,
            tool_calls=calls,
            duration_s=float(data["duration_s"]),
            output=str(data.get("output", "")),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return Result(
            ok=False,
            value=None,
            error=error_from_wire({"type": "?", "message": f"malformed executor response: {exc}"}),
            tool_calls=(),
            duration_s=0.0,
            output="",
        )
