"""What one sandboxed call produced: :class:`Result` and its :class:`ToolCall` records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.errors import SandboxError

__all__ = ["Result", "ToolCall"]


@dataclass(frozen=True)
class ToolCall:
    """One call the skill made to a host tool, successful or not."""

    tool: str
    """The tool's name, as in the ``tools`` mapping."""

    arguments: dict[str, Any]
    """The keyword arguments, after their round trip through JSON (exactly what the host
    callable received)."""

    result: Any
    """The JSON value the tool returned, or None if it failed."""

    error: str | None
    """The failure message sent back to the skill, or None if the tool succeeded."""

    duration_s: float
    """Seconds the host spent inside the tool callable."""


@dataclass(frozen=True)
class Result:
    """The outcome of :meth:`sandbox.Sandbox.run`.

    A failed skill is an expected outcome, so it is returned here rather than raised; call
    :meth:`raise_for_error` when the caller needs success.
    """

    ok: bool
    """True if the entry function returned a JSON-serialisable value within the limits."""

    value: Any
    """The JSON value the entry function returned; None when ``ok`` is False."""

    error: SandboxError | None
    """Why the call failed (an exception instance, not raised), or None when ``ok``."""

    tool_calls: tuple[ToolCall, ...]
    """Every tool call the skill made, in order, including failed ones."""

    duration_s: float
    """Wall-clock seconds for the whole call, as the host measured it."""

    output: str
    """What the skill printed (capped at ``Limits.output_bytes``; empty if the worker was
    killed before it could report)."""

    def raise_for_error(self) -> None:
        """Raise :attr:`error` if the call failed; do nothing otherwise.

        Raises:
            SandboxError: The subclass that describes the failure.
        """
        if self.error is not None:
            raise self.error
