"""Resource limits for one sandboxed call."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """How much one :meth:`sandbox.Sandbox.run` call may use.

    Every field must be positive; the constructor raises ``ValueError`` otherwise. Pass an
    instance to ``Sandbox(limits=...)`` for a default, or to ``Sandbox.run(limits=...)`` for
    one call.
    """

    timeout_s: float = 10.0
    """Wall-clock seconds for the whole call, measured by the host: worker start-up, skill
    code, the host's decoding of what the worker sends, and time spent inside host tools.
    Past it the worker's process group is killed and the call fails with
    :class:`sandbox.ExecutionTimeout`. A host tool still running at the deadline cannot be
    interrupted: the call returns at the deadline anyway, the error's ``tool`` names it, and
    whatever it returns later is discarded."""

    cpu_s: int = 10
    """CPU seconds the worker may spend on this call (``RLIMIT_CPU``, set relative to the CPU
    time the worker had already used). Exceeding it fails the call with
    ``ResourceLimitExceeded(limit="cpu")``."""

    memory_mb: int = 1024
    """Address space of the worker process in MiB (``RLIMIT_AS``). Running out fails the call
    with ``ResourceLimitExceeded(limit="memory")``."""

    output_bytes: int = 1_000_000
    """Cap, in UTF-8 bytes, on what the skill prints and, separately, on its JSON-encoded
    return value. Exceeding either fails the call with
    ``ResourceLimitExceeded(limit="output")``."""

    max_tool_calls: int = 10_000
    """Most tool calls one run may make. The next one fails the call with
    ``ResourceLimitExceeded(limit="tool_calls")``."""

    tool_io_bytes: int = 64_000_000
    """Cap on the JSON bytes of all tool-call arguments and results in one run, which the
    host keeps for ``Result.tool_calls``; each array or object counts 64 bytes more (about
    what it costs decoded). Exceeding it fails the call with
    ``ResourceLimitExceeded(limit="tool_io")``. It bounds host memory per call: a frame is
    weighed before it is decoded."""

    def __post_init__(self) -> None:
        for name in (
            "timeout_s", "cpu_s", "memory_mb", "output_bytes", "max_tool_calls", "tool_io_bytes",
        ):  # fmt: skip
            value = getattr(self, name)
            allowed = (int, float) if name == "timeout_s" else (int,)
            if isinstance(value, bool) or not isinstance(value, allowed):
                kind = "a number" if name == "timeout_s" else "an int"
                raise TypeError(f"Limits.{name}={value!r} must be {kind}")
            if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"Limits.{name}={value!r} must be positive (and finite)")

    def to_wire(self) -> dict[str, Any]:
        """Return the limits as the JSON object sent to the worker."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
