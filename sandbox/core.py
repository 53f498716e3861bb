"""The :class:`Sandbox`: run untrusted skill code in warm, isolated worker processes."""

from __future__ import annotations

import json
import keyword
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from sandbox.errors import SandboxError, SkillError, ToolError
from sandbox.limits import Limits
from sandbox.pool import CallOutcome, WorkerPool
from sandbox.protocol import encode_frame
from sandbox.result import Result

__all__ = ["Sandbox"]

# Failures that say nothing bad about the worker itself; anything else retires it.
_REUSABLE_AFTER: frozenset[type[SandboxError]] = frozenset({SkillError, ToolError})


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__}")
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise ValueError(
            f"{what}={name!r} must be a Python identifier that is not a keyword and does not "
            "start with '_' (skills cannot use such names)"
        )
    return name


class Sandbox:
    """Runs skill source in separate, resource-limited worker processes.

    A ``Sandbox`` keeps up to ``max_idle_workers`` started workers between calls and is
    safe to share between threads (each call gets its own worker). Close it with
    :meth:`close` or a ``with`` block; workers are also killed when it is garbage-collected
    and at interpreter exit.

    Example::

        with Sandbox() as sandbox:
            result = sandbox.run(
                "def run(city):\\n    return tools.weather(city=city)['temp']\\n",
                "run",
                {"city": "Oslo"},
                {"weather": lambda city: {"temp": -3}},
            )
        assert result.ok and result.value == -3

    Args:
        limits: Default limits for :meth:`run`; ``Limits()`` if None.
        max_idle_workers: Most idle workers kept warm.
        max_calls_per_worker: Calls after which a worker is replaced by a fresh one.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        max_idle_workers: int = 2,
        max_calls_per_worker: int = 200,
    ) -> None:
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"Sandbox limits must be a sandbox.Limits, got {type(limits).__name__}")
        self.limits = limits if limits is not None else Limits()
        self._pool = WorkerPool(max_idle=max_idle_workers, max_calls=max_calls_per_worker)
        self._finalizer = weakref.finalize(self, self._pool.close)

    def run(
        self,
        source: str,
        entry: str,
        args: Mapping[str, Any],
        tools: Mapping[str, Callable[..., Any]],
        limits: Limits | None = None,
    ) -> Result:
        """Run ``entry(**args)`` from ``source`` in a worker and report what happened.

        The skill reaches host tools only as ``tools.<name>(**kwargs)``; arguments and
        results cross the process boundary as JSON. Failures of the skill (an exception,
        a policy violation, an exceeded limit, a crashed worker) are returned in
        ``Result.error``, not raised.

        Args:
            source: Module source text that defines the function ``entry``.
            entry: Name of the function to call.
            args: Keyword arguments for it; must be JSON-serialisable.
            tools: Host callables the skill may call, by name. Each must accept keyword
                arguments and return JSON-serialisable data.
            limits: Limits for this call; the sandbox's default if None.

        Returns:
            The :class:`Result`.

        Raises:
            TypeError, ValueError: The arguments themselves are wrong (not a skill failure).
            RuntimeError: The sandbox was closed.
        """
        limits = self.limits if limits is None else limits
        if not isinstance(limits, Limits):
            raise TypeError(
                f"Sandbox.run limits must be a sandbox.Limits, got {type(limits).__name__}"
            )
        if not isinstance(source, str):
            raise TypeError(f"Sandbox.run source must be a str, got {type(source).__name__}")
        _check_name("Sandbox.run entry", entry)
        if not isinstance(args, Mapping):
            raise TypeError(f"Sandbox.run args must be a mapping, got {type(args).__name__}")
        for key in args:
            if not isinstance(key, str):
                raise TypeError(f"Sandbox.run args keys must be str, got {key!r}")
        if not isinstance(tools, Mapping):
            raise TypeError(f"Sandbox.run tools must be a mapping, got {type(tools).__name__}")
        for name, function in tools.items():
            _check_name("Sandbox.run tool name", name)
            if not callable(function):
                raise TypeError(f"Sandbox.run tool {name!r} must be callable, got {function!r}")
        try:
            encoded_args = json.dumps(dict(args), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"Sandbox.run args must be JSON-serialisable ({exc}); pass only dict, list, "
                "str, int, float, bool or None values"
            ) from None
        request = encode_frame(
            {
                "op": "run",
                "source": source,
                "entry": entry,
                "args": json.loads(encoded_args),
                "tools": sorted(tools),
                "limits": limits.to_wire(),
            }
        )

        started = time.monotonic()
        deadline = started + limits.timeout_s
        worker = self._pool.acquire()
        outcome: CallOutcome | None = None
        try:
            outcome = worker.execute(request, dict(tools), limits, deadline)
        finally:
            reusable = outcome is not None and (
                outcome.error is None or type(outcome.error) in _REUSABLE_AFTER
            )
            self._pool.release(worker, reusable)
        return Result(
            ok=outcome.error is None,
            value=outcome.value if outcome.error is None else None,
            error=outcome.error,
            tool_calls=tuple(outcome.tool_calls),
            duration_s=time.monotonic() - started,
            output=outcome.output,
        )

    def close(self) -> None:
        """Kill all workers. The sandbox cannot run anything afterwards."""
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
