"""Record what an agent written without skillbank does, so skillbank can learn from it.

Wrap the agent's tools (or decorate them) with a `Recorder`; every call is recorded in order
with its arguments and its result or error, and the agent's behaviour does not change (results
and exceptions pass through untouched). At the end, turn the recording into a `Trajectory`
(for `SkillBank.learn`), into OpenAI chat messages, or append it to a ``.jsonl`` file in the
fine-tuning container that ``skillbank learn`` reads::

    recorder = Recorder("Show the order history for ann@example.com", tool_specs=TOOL_SPECS)
    tools = recorder.wrap(shop.tools())          # or @recorder.tool on each function
    my_agent(tools)                              # calls tools["find_customer"](email=...) ...
    recorder.dump("runs.jsonl", success=True)    # then: skillbank learn runs.jsonl

Arguments are recorded by name: positional arguments are named from the function's
signature. Results are kept as JSON data; a value JSON cannot hold is recorded as its ``str``
(a skill learned from it would see that text, so prefer tools that return JSON data).
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from skillbank.trajectory import Step, Trajectory, parse_record

__all__ = ["Recorder"]

JSON = Any
F = TypeVar("F", bound=Callable[..., Any])


def _jsonable(value: JSON) -> JSON:
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


class Recorder:
    """Records the tool calls of one task, in the order they were made.

    Args:
        task: What the agent was asked to do.
        tool_specs: The tools' definitions in the Chat Completions shape (kept in the
            trajectory and the dumped record; optional).
        system: A system prompt to put first in `to_messages` (optional).

    Thread-safe: calls made from several threads are recorded in the order they started.
    """

    def __init__(
        self,
        task: str,
        *,
        tool_specs: Sequence[Mapping[str, JSON]] = (),
        system: str | None = None,
    ) -> None:
        if not task.strip():
            raise ValueError("task must say what the agent was asked to do, got an empty text")
        self.task = task
        self.tool_specs = [dict(spec) for spec in tool_specs]
        self.system = system
        self._calls: list[Step | None] = []
        self._lock = threading.Lock()

    # --- recording -----------------------------------------------------------------------

    @property
    def calls(self) -> tuple[Step, ...]:
        """The calls that have finished, in the order they started.

        Each is a `Step` whose ``result`` is JSON data (None when the call raised), whose
        ``error`` is ``"ExceptionType: message"`` when it raised, and whose ``call_id`` is
        ``call_<n>``, n counting the calls from 1 in the order they started.
        """
        with self._lock:
            return tuple(c for c in self._calls if c is not None)

    def _wrapped(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        try:
            signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none: keyword arguments only
            signature = None

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            arguments = _named(name, signature, args, kwargs)
            with self._lock:
                slot = len(self._calls)
                self._calls.append(None)  # keep the order calls started in
            call_id = f"call_{slot + 1}"
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                recorded = Step(name, arguments, None, error, call_id)
                with self._lock:
                    self._calls[slot] = recorded
                raise
            with self._lock:
                self._calls[slot] = Step(name, arguments, _jsonable(result), None, call_id)
            return result

        return call

    def wrap(self, tools: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
        """The same tools, each recording its calls under its name in ``tools``."""
        return {name: self._wrapped(name, fn) for name, fn in tools.items()}

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(self, fn: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...

    def tool(self, fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
        """Decorate a tool function so its calls are recorded (``@recorder.tool`` or
        ``@recorder.tool(name="find_customer")``; the default name is the function's)."""

        def decorate(f: F) -> F:
            wrapped: F = self._wrapped(name or f.__name__, f)  # type: ignore[assignment]
            return wrapped

        return decorate(fn) if fn is not None else decorate

    # --- output --------------------------------------------------------------------------

    def to_messages(self, answer: str | None = None) -> list[dict[str, JSON]]:
        """The run as OpenAI chat messages: system (if given), user task, one assistant tool
        call and its tool message per call (a failed call's tool message has ``"is_error":
        true``), and ``answer`` as the last assistant message when given."""
        messages: list[dict[str, JSON]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self.task})
        for step in self.calls:
            messages += step.to_chat_messages()
        if answer:
            messages.append({"role": "assistant", "content": answer})
        return messages

    def to_record(
        self, success: bool = True, detail: str = "", id: str | None = None
    ) -> dict[str, JSON]:
        """The run as one fine-tuning record (``messages``, ``tools``, ``task``, ``outcome``),
        the shape `skillbank.trajectory.load_trajectories` reads; ``detail`` is also the last
        assistant message."""
        record: dict[str, JSON] = {}
        if id is not None:
            record["id"] = id
        record["task"] = self.task
        record["messages"] = self.to_messages(detail or None)
        record["tools"] = self._known_specs()
        outcome: dict[str, JSON] = {"success": success}
        if detail:
            outcome["detail"] = detail
        record["outcome"] = outcome
        return record

    def _known_specs(self) -> list[dict[str, JSON]]:
        if not self.tool_specs:
            return []
        # A record's calls must name declared tools; a call to an undeclared one would make
        # the record unreadable, so its spec is added bare rather than the call dropped.
        declared = {str(s.get("function", {}).get("name")) for s in self.tool_specs}
        extra = sorted({c.tool for c in self.calls} - declared)
        bare = [{"type": "function", "function": {"name": n}} for n in extra]
        return [*self.tool_specs, *bare]

    def trajectory(
        self, success: bool = True, detail: str = "", id: str | None = None
    ) -> Trajectory:
        """The run as a `Trajectory` (equal to reading `to_record`'s output back).

        Args:
            success: Whether the task was achieved.
            detail: The final answer, or why it failed.
            id: The trajectory id (default ``t-`` and 12 hex of its content hash).
        """
        return parse_record(self.to_record(success, detail, id), "recorder")

    def dump(
        self,
        path: str | Path,
        success: bool = True,
        detail: str = "",
        id: str | None = None,
    ) -> dict[str, JSON]:
        """Append the run to a ``.jsonl`` file as one record (see `to_record`); return it."""
        record = self.to_record(success, detail, id)
        line = json.dumps(record, ensure_ascii=False, sort_keys=True)
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        return record


def _named(
    tool: str,
    signature: inspect.Signature | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, JSON]:
    """The call's arguments by name, as the model would have passed them."""
    if signature is None:
        if args:
            raise TypeError(f"tool {tool!r} has no readable signature: pass keyword arguments")
        return _jsonable(dict(kwargs))  # type: ignore[no-any-return]
    bound = signature.bind(*args, **kwargs)  # a wrong call fails as the tool itself would
    named: dict[str, Any] = {}
    for key, value in bound.arguments.items():
        kind = signature.parameters[key].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[key] = list(value) if kind is inspect.Parameter.VAR_POSITIONAL else value
    return _jsonable(named)  # type: ignore[no-any-return]
