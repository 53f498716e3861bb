"""The :class:`Sandbox`: run untrusted skill code in isolated, confined worker processes."""

from __future__ import annotations

import asyncio
import json
import keyword
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from sandbox.executor import ExecRequest, Executor, MappingToolHost, result_from_json
from sandbox.limits import Limits
from sandbox.pool import LocalExecutor
from sandbox.protocol import MAX_DEPTH, WireError, depth_of, dumps, encode_text
from sandbox.result import Result

__all__ = ["Sandbox"]


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
    """Runs skill source in separate, resource-limited, confined worker processes.

    By default every call runs in a fresh process, forked ahead of demand from a warm
    template, that no earlier call has touched (``isolation="fresh"``);
    ``isolation="reuse"`` keeps workers for many calls instead (faster, but isolation then
    rests on the cleanup between calls). A ``Sandbox`` is safe to share between threads
    (each call gets its own worker). Close it with :meth:`close` or a ``with`` block;
    workers are also killed when it is garbage-collected and at interpreter exit.

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
        executor: The backend; a :class:`LocalExecutor` (built from the arguments below) if
            None.
        max_idle_workers: Workers kept forked ahead of demand (reuse mode: also the most
            idle workers kept).
        max_calls_per_worker: Reuse mode: calls after which a worker is replaced.
        isolation: ``"fresh"`` (the default) or ``"reuse"``; see above.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        executor: Executor | None = None,
        max_idle_workers: int = 2,
        max_calls_per_worker: int = 1000,
        isolation: str = "fresh",
    ) -> None:
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"Sandbox limits must be a sandbox.Limits, got {type(limits).__name__}")
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                "Sandbox executor must implement sandbox.Executor (execute, close), got "
                f"{type(executor).__name__}"
            )
        self.limits = limits if limits is not None else Limits()
        self.executor: Executor = executor or LocalExecutor(
            max_idle_workers=max_idle_workers,
            max_calls_per_worker=max_calls_per_worker,
            isolation=isolation,
        )
        if isinstance(self.executor, LocalExecutor):
            self._pool = self.executor.pool  # for diagnostics and tests (worker pids)
        self._finalizer = weakref.finalize(self, self.executor.close)

    def run(
        self,
        source: str,
        entry: str,
        args: Mapping[str, Any],
        tools: Mapping[str, Callable[..., Any]],
        limits: Limits | None = None,
        *,
        skill_id: str | None = None,
        inline_tools: bool = False,
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
            skill_id: The skill's id, passed on to the executor (for its logs and caches).
            inline_tools: Call host tools on this thread rather than on helper threads, for
                tools bound to it (hypothesis drawing their answers, an ``sqlite3``
                connection made here). The deadline then cannot cut a hanging tool short:
                the call returns when the tool does. Only the default backend honours it.

        Returns:
            The :class:`Result`.

        Raises:
            TypeError, ValueError: The arguments themselves are wrong (not a skill failure):
                not JSON data, nested more than :data:`sandbox.protocol.MAX_DEPTH` levels, or
                holding a string with a lone surrogate (which cannot cross as UTF-8).
            RuntimeError: The sandbox was closed.
        """
        request, data = self._prepare(source, entry, args, tools, limits, skill_id)
        host = MappingToolHost(tools)
        if isinstance(self.executor, LocalExecutor):
            return self.executor.run(request, host, args_json=data, inline_tools=inline_tools)
        return result_from_json(self.executor.execute(request.to_json(), host))

    def _prepare(
        self,
        source: str,
        entry: str,
        args: Mapping[str, Any],
        tools: Mapping[str, Callable[..., Any]],
        limits: Limits | None,
        skill_id: str | None,
    ) -> tuple[ExecRequest, bytes]:
        """Check :meth:`run`'s arguments; return the request and its args as checked JSON."""
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
            # Any non-empty name: skill code calls "get-weather" as tools.get_weather
            # (`sandbox.names`), and the host is called back by the real name.
            if not isinstance(name, str) or not name:
                raise TypeError(f"Sandbox.run tool names must be non-empty str, got {name!r}")
            if not callable(function):
                raise TypeError(f"Sandbox.run tool {name!r} must be callable, got {function!r}")
        encode_text(source, "Sandbox.run source")  # a lone surrogate cannot cross as UTF-8
        for name in tools:
            encode_text(name, "Sandbox.run tool name")
        depth = depth_of(dict(args), MAX_DEPTH + 1)
        if depth > MAX_DEPTH + 1:
            raise WireError(
                "depth",
                f"Sandbox.run args: arrays and objects are nested more than {MAX_DEPTH} levels "
                "deep, which the sandbox does not carry; flatten the data",
            )
        try:
            data = dumps(dict(args), what="Sandbox.run args")
        except WireError:
            raise
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"Sandbox.run args must be JSON-serialisable ({exc}); pass only dict, list, "
                "str, int, float, bool or None values"
            ) from None
        if isinstance(self.executor, LocalExecutor):
            # The worker decodes exactly ``data``, so it sees exactly JSON data.
            return ExecRequest.build(source, entry, args, sorted(tools), limits, skill_id), data
        # One JSON round trip: a remote backend sees exactly JSON data.
        plain_args = json.loads(data)
        return ExecRequest.build(source, entry, plain_args, sorted(tools), limits, skill_id), data

    async def run_async(
        self,
        source: str,
        entry: str,
        args: Mapping[str, Any],
        tools: Mapping[str, Callable[..., Any]],
        limits: Limits | None = None,
        *,
        skill_id: str | None = None,
        inline_tools: bool = False,
    ) -> Result:
        """:meth:`run` for asyncio code; the event loop stays free while the skill runs.

        With the default backend the call is served on the running loop itself (the
        worker's pipes are watched by the loop, no thread hand-off); another backend runs
        in a thread. Host tools are called on helper threads, never on the event loop, so a
        blocking tool does not stall it (an ``async`` tool is not supported: pass a plain
        function, which may use ``asyncio.run_coroutine_threadsafe`` to reach the loop).
        With ``inline_tools`` they run on the event loop's thread and block it while they run.
        """
        request, data = self._prepare(source, entry, args, tools, limits, skill_id)
        host = MappingToolHost(tools)
        if isinstance(self.executor, LocalExecutor):
            return await self.executor.run_async(
                request, host, args_json=data, inline_tools=inline_tools
            )
        return result_from_json(
            await asyncio.to_thread(self.executor.execute, request.to_json(), host)
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
