"""The gateway's side of each upstream call and task: forward, record, hand to skills.

`Proxy` lives for one server lifespan (it holds that lifespan's `Upstreams`). It forwards a
call to its upstream tool and returns the result as it came (content, structured content,
``isError``), turning an `skillbank.errors.UpstreamError` (server down, died, too slow) into a
tool error; it records every call with the session's `TaskRecorder`; it answers the task tools
(`BEGIN_TOOL`, `END_TOOL`) and starts learning when a task ends well; and it builds the host
tools of a skill's run (`Proxy.host_tools`), whose upstream calls go through the same path.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from skillbank.errors import UpstreamError
from skillbank.gateway.recorder import TaskRecorder
from skillbank.gateway.tasks import BEGIN_TOOL
from skillbank.gateway.upstream import (
    MCP_SERVER_KEY,
    MCP_TOOL_KEY,
    Upstreams,
    error_text,
    result_value,
)
from skillbank.skill import Skill

if TYPE_CHECKING:
    import mcp_types as types
    from anyio.abc import TaskGroup

__all__ = ["Proxy"]

JSON = Any


def _text_result(text: str, is_error: bool = False) -> types.CallToolResult:
    import mcp_types as types

    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=is_error)


class Proxy:
    """Upstream calls and task marks of one gateway lifespan.

    Args:
        upstreams: The upstream clients (None: no upstream file).
        recorder: Where calls are recorded (None: nothing is recorded).
        host_tools: The Python host tools given with ``--tools``.
        skill_timeout_s: Seconds a skill's sandbox run has (its upstream calls' timeout).
        learn: Called on a worker thread when a task ends successfully (None: no learning).
        say: Where a failed learning run is reported.
    """

    def __init__(
        self,
        upstreams: Upstreams | None,
        recorder: TaskRecorder | None,
        host_tools: Mapping[str, Callable[..., JSON]],
        *,
        skill_timeout_s: float,
        learn: Callable[[], object] | None = None,
        say: Callable[[str], object] = print,
    ) -> None:
        self.upstreams = upstreams
        self.recorder = recorder
        self.base_tools = dict(host_tools)
        self.skill_timeout_s = skill_timeout_s
        self.learn = learn
        self.say = say
        #: Where learning runs while the server does (set by the lifespan).
        self.background: TaskGroup | None = None
        self._learning = threading.Lock()

    @property
    def names(self) -> frozenset[str]:
        """The upstream tools' exposed names."""
        return frozenset(self.upstreams.tools) if self.upstreams is not None else frozenset()

    async def forward(
        self,
        key: str,
        client: str,
        tool_name: str,
        arguments: Mapping[str, JSON],
        timeout_s: float | None = None,
    ) -> types.CallToolResult:
        """Call an upstream tool, record the call, and return its result as it came."""
        import anyio
        import mcp_types as types

        assert self.upstreams is not None
        tool = self.upstreams.tools[tool_name]
        try:
            got = await self.upstreams.call(tool_name, arguments, timeout_s=timeout_s)
            result = types.CallToolResult(
                content=got.content, structured_content=got.structured_content,
                is_error=got.is_error,
            )  # fmt: skip
        except UpstreamError as exc:
            result = _text_result(str(exc), True)
        if self.recorder is not None:
            error = error_text(result) if result.is_error else None
            value = None if error is not None else result_value(result)
            record = functools.partial(
                self.recorder.record, key, client, tool.to_openai(), dict(arguments), value, error
            )
            await anyio.to_thread.run_sync(record)
        return result

    async def task_tool(
        self, key: str, client: str, tool_name: str, arguments: Mapping[str, JSON]
    ) -> types.CallToolResult:
        """Answer ``skillbank_begin_task`` or ``skillbank_end_task`` for session ``key``."""
        import anyio

        recorder = self.recorder
        assert recorder is not None
        if tool_name == BEGIN_TOOL["name"]:
            task = arguments.get("task")
            if not isinstance(task, str) or not task.strip():
                return _text_result("give the task as text: skillbank_begin_task(task=...)", True)
            message, _ = await anyio.to_thread.run_sync(recorder.begin, key, client, task)
            return _text_result(message)
        success, note = arguments.get("success"), arguments.get("note")
        if not isinstance(success, bool) or not (note is None or isinstance(note, str)):
            return _text_result(
                "skillbank_end_task takes success (true or false) and an optional note (text)",
                True,
            )
        message, written = await anyio.to_thread.run_sync(recorder.end, key, client, success, note)
        if self.learn is not None and success and written and self.background is not None:
            self.background.start_soon(anyio.to_thread.run_sync, self._learn_once)
            message += " Learning from it now; a skill, once learned, appears in the tool list."
        return _text_result(message)

    def _learn_once(self) -> None:
        assert self.learn is not None
        with self._learning:  # one learning run at a time; the next one sees what it kept
            try:
                self.learn()
            except Exception as exc:  # noqa: BLE001 - the gateway keeps serving
                self.say(f"learning from the recordings failed: {type(exc).__name__}: {exc}")

    def host_tools(
        self, key: str, client: str, skill: Skill | None
    ) -> dict[str, Callable[..., JSON]]:
        """The host tools of one skill run: the ``--tools`` ones, and the upstream tools
        (recorded, with the sandbox's timeout). A tool the skill knows by a name no upstream
        exposes now (a clash renamed it) is found by the server and real name its
        ``tools.json`` keeps."""
        ups = self.upstreams
        if ups is None:
            return self.base_tools

        async def call(tool_name: str, arguments: Mapping[str, JSON]) -> types.CallToolResult:
            return await self.forward(key, client, tool_name, arguments, self.skill_timeout_s)

        granted = {**self.base_tools, **ups.host_tools(call)}
        for name, spec in skill.tool_specs.items() if skill is not None else ():
            server, real = spec.extra.get(MCP_SERVER_KEY), spec.extra.get(MCP_TOOL_KEY)
            exposed = ups.find(str(server), str(real)) if server and real else None
            if name not in granted and exposed is not None:
                granted[name] = granted[exposed]
        return granted
