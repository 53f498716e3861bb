"""The MCP server: a bank's skills as MCP tools, on the official ``mcp`` SDK (``skillbank serve``).

Every ``tools/list`` reads the library, so the list follows it as skills are learned. Only
skills at stage ``associative`` or ``autonomous`` are tools; every skill, cognitive ones too,
is also a resource ``skill://<id>`` holding its SKILL.md. A ``tools/call`` runs the skill in the
sandbox against the host tools the server was given (`SkillBank.call_tool`): the result is the
call's JSON as text, with ``isError`` when it failed, so the model reads the structured error.
Beside the skills, the tool ``skillbank_do(task)`` (`DO_TOOL`, `do_task`) does a task as a reflex:
an autonomous skill run straight from the task's words, or an answer saying why none ran.

Cognitive skills are also MCP prompts: the procedure, for the model to follow with the tools.

With upstream servers (``serve --upstream``) the server is a gateway: their tools are listed
beside the skills under their own names (or ``<server>__<tool>`` on a clash; a skill never takes
an upstream tool's name) and calls to them are forwarded as they are; skills call them as host
tools; every call is recorded (`skillbank.gateway.proxy`, `skillbank.gateway.recorder`), and
``skillbank_begin_task``/``skillbank_end_task`` mark tasks. The upstream clients live as long
as the server's lifespan: the process for stdio and HTTP, one connection in process.

While a client is connected, the server checks the library every `WATCH_INTERVAL_S` seconds and
tells the client when the tools, prompts or resources it last listed changed: with
``notifications/tools/list_changed`` (and its prompt and resource kin) on handshake-era
connections, and on ``subscriptions/listen`` streams at protocol 2026-07-28. The same loop
writes the recorded trajectories of sessions that went idle.

``mcp`` is an optional dependency (``pip install 'skillbank[mcp]'``), imported only when a
server is built, so ``skillbank --help`` stays fast without it.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import TYPE_CHECKING, Any

from skillbank.bank import SkillBank
from skillbank.errors import ConfigError, SkillbankError
from skillbank.gateway.proxy import Proxy
from skillbank.gateway.recorder import IDLE_GAP_S, Recordings, Redactor, TaskRecorder
from skillbank.gateway.tasks import BEGIN_TOOL, END_TOOL, TASK_INSTRUCTIONS
from skillbank.gateway.upstream import CALL_TIMEOUT_S, RETRY_S, Upstreams, UpstreamServer
from skillbank.reflex import ReflexDecision
from skillbank.skill import Skill, Version
from skillbank.toolspec import render_tools, tool_error

if TYPE_CHECKING:
    import mcp_types as types
    from mcp.server import Server, ServerRequestContext
    from mcp.server.session import ServerSession
    from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler

    from skillbank.sync import Follower

__all__ = [
    "CALLABLE_STAGES",
    "DO_TOOL",
    "INSTALL_HINT",
    "SYNC_SECRET_ENV",
    "WATCH_INTERVAL_S",
    "build_server",
    "do_task",
    "is_tool",
    "load_host_tools",
    "read_library",
    "serve_http",
    "serve_stdio",
    "sync_endpoint",
]

#: The stages whose skills are MCP tools; cognitive skills are only readable, as resources.
CALLABLE_STAGES = ("associative", "autonomous")
#: What to run when the ``mcp`` package is missing.
INSTALL_HINT = "pip install 'skillbank[mcp]'"
#: Seconds between two looks at the library while a client is connected.
WATCH_INTERVAL_S = 2.0
#: The URI scheme of the skill resources: ``skill://<id>``.
RESOURCE_SCHEME = "skill://"

_INSTRUCTIONS = (
    "Each tool is a skill: a procedure learned from earlier agent runs, compiled to code and "
    "tested. Calling one runs it in a sandbox against the host's tools. The result is JSON: "
    '{"ok": true, "value": ...} or {"ok": false, "error": {"type", "message", "hint"}}; on an '
    "error, read the hint, fix the arguments and call again. The resource skill://<id> holds a "
    "skill's documentation (SKILL.md), also for skills not yet trusted enough to be tools."
)
_UPSTREAM_INSTRUCTIONS = (
    "The other tools are the upstream MCP servers' own, passed through unchanged. Prompts are "
    "procedures learned but not yet trusted to run: follow their steps with the tools."
)
# Legacy sessions remembered per server lifespan, to tell them about changes; the oldest is
# forgotten past this (an HTTP server sees many sessions come and go).
_MAX_SESSIONS = 256

logger = logging.getLogger(__name__)

HostTools = Mapping[str, Callable[..., Any]]
#: The skills offered as tools, and how many times the upstream tools changed.
_ToolsState = tuple[frozenset[tuple[str, Version]], int]
_ResourcesState = frozenset[tuple[str, Version, str]]


# --- host tools -----------------------------------------------------------------------------


def load_host_tools(spec: str) -> dict[str, Callable[..., Any]]:
    """Import the host tools named by ``MODULE`` or ``MODULE:ATTR``.

    The attribute (``tools`` when only a module is named) is a mapping of tool name to
    function, or a function taking no arguments that returns one. The current directory is
    importable, so ``mytools`` finds ``./mytools.py``.

    Raises:
        ConfigError: the module cannot be imported, has no such attribute, or it is not (and
            does not return) a mapping of names to functions.
    """
    module_name, _, attr = spec.strip().partition(":")
    attr = attr or "tools"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigError(
            f"host tools {spec!r} must look like MODULE or MODULE:ATTR, "
            "e.g. skillbank.examples.shop or mytools:TOOLS"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import host tools module {module_name!r}: {exc}; install it, or run from "
            "the folder that holds it"
        ) from None
    except Exception as exc:
        raise ConfigError(
            f"importing host tools module {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from None
    if not hasattr(module, attr):
        raise ConfigError(
            f"host tools module {module_name!r} has no attribute {attr!r}; name the mapping "
            f"of tools as {module_name}:ATTR"
        )
    obj = getattr(module, attr)
    if callable(obj) and not isinstance(obj, Mapping):
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigError(
                f"calling {module_name}:{attr}() for the host tools raised "
                f"{type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(obj, Mapping):
        raise ConfigError(
            f"{module_name}:{attr} must be (or return) a mapping of tool name to function, "
            f"got {type(obj).__name__}"
        )
    bad = sorted(str(k) for k, v in obj.items() if not isinstance(k, str) or not callable(v))
    if bad:
        raise ConfigError(
            f"{module_name}:{attr} maps {bad[0]!r} to something that is not a function; "
            "every host tool must be callable"
        )
    return dict(obj)


# --- the server -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Watch:
    """One server lifespan's view of the library: what was listed, and who to tell of changes.

    A lifespan is the whole process for stdio and HTTP, and one connection in process.
    """

    #: Serves ``subscriptions/listen`` (2026-07-28) from `bus`.
    listen: ListenHandler
    #: Where change events for listen streams are published.
    bus: InMemorySubscriptionBus
    #: The tools last listed, None before the first ``tools/list``.
    tools: _ToolsState | None = None
    #: The resources last listed, None before the first ``resources/list``.
    resources: _ResourcesState | None = None
    #: Handshake-era sessions that listed something, to send change notifications to.
    sessions: dict[int, ServerSession] = field(default_factory=dict)
    #: Upstream calls and task marks of this lifespan (set as it starts).
    proxy: Proxy = field(default_factory=lambda: Proxy(None, None, {}, skill_timeout_s=10.0))
    #: The cognitive skills last listed as prompts, None before the first ``prompts/list``.
    prompts: frozenset[tuple[str, Version]] | None = None

    def remember(self, session: ServerSession) -> None:
        """Keep a handshake-era session, to tell it when what it listed changes."""
        params = session.client_params
        if params is None:
            return
        # One entry per connection: the per-request session objects share its params.
        self.sessions.pop(id(params), None)
        self.sessions[id(params)] = session
        while len(self.sessions) > _MAX_SESSIONS:
            del self.sessions[next(iter(self.sessions))]


#: The MCP tool that does a task as a reflex (`do_task`): listed beside the skills.
DO_TOOL: dict[str, Any] = {
    "name": "skillbank_do",
    "description": (
        "Do a task with a trusted (autonomous) skill, straight from its words, with no "
        "planning: the skill and its arguments are read off the task text. When no skill "
        "clearly fits, nothing runs and the answer says which skill came closest and why it "
        "abstained; then do the task yourself with the other tools."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {"task": {"type": "string", "description": "The task, in the user's words."}},
        "required": ["task"],
        "additionalProperties": False,
    },
    "annotations": {"destructiveHint": True, "readOnlyHint": False},
}


def do_task(bank: SkillBank, task: object, tools: HostTools) -> str:
    """`skillbank_do`: plan a reflex for ``task`` and run it; the answer as JSON text.

    ``{"ran": bool, "decision": ReflexDecision.to_json(), "result": RunResult.to_json() or
    null}``; never raises (a bad ``task`` is a decision that abstains).
    """
    if not isinstance(task, str) or not task.strip():
        decision = ReflexDecision(
            str(task or ""), None, rule="empty", reason="give the task as text"
        )
    else:
        try:
            decision = bank.plan_reflex(task)
        except SkillbankError as exc:
            decision = ReflexDecision(task, None, rule="no_skill", reason=str(exc))
    result = None
    if decision.skill_id is not None:
        skill = bank.get(decision.skill_id)
        missing = sorted(set(skill.tools) - set(tools))
        if missing:
            decision = replace(
                decision, skill_id=None, rule="no_skill", closest=skill.id,
                reason=f"{skill.id} fits, but this server has no tool {', '.join(missing)}",
            )  # fmt: skip
        else:
            try:
                result = bank.run(skill.id, decision.args, tools, caller="reflex")
            except SkillbankError as exc:
                decision = replace(decision, skill_id=None, rule="bad_arguments",
                                   closest=skill.id, reason=str(exc))  # fmt: skip
    data = {
        "ran": result is not None,
        "decision": decision.to_json(),
        "result": result.to_json() if result is not None else None,
    }
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)


def is_tool(skill: Skill) -> bool:
    """Whether the server offers ``skill`` as a tool (else only as a resource)."""
    # As `SkillBank.tools` offers them: a deprecated skill's replacement is offered instead.
    return skill.stage in CALLABLE_STAGES and not skill.deprecated_by


def _tools_state(skills: Iterable[Skill], upstreams: Upstreams | None) -> _ToolsState:
    offered = frozenset((s.id, s.version) for s in skills if is_tool(s))
    return offered, upstreams.generation if upstreams is not None else 0


def _resources_state(skills: Iterable[Skill]) -> _ResourcesState:
    return frozenset((s.id, s.version, s.stage) for s in skills)


def _is_prompt(skill: Skill) -> bool:
    """Whether the server offers ``skill`` as a prompt: a cognitive skill, not deprecated."""
    return skill.stage == "cognitive" and not skill.deprecated_by


def _prompts_state(skills: Iterable[Skill]) -> frozenset[tuple[str, Version]]:
    return frozenset((s.id, s.version) for s in skills if _is_prompt(s))


def read_library(bank: SkillBank, reported: set[str] | None = None) -> list[Skill]:
    """Every skill that loads, as the server lists them.

    A broken folder (or one being written) is skipped with a warning, once per problem when
    ``reported`` remembers them, instead of failing the list.
    """
    skills = []
    for skill_id in bank.library.ids():
        try:
            skills.append(bank.get(skill_id))
        except SkillbankError as exc:
            if reported is None or str(exc) not in reported:
                logger.warning("skipping skill %s: %s", skill_id, exc)
            if reported is not None:
                reported.add(str(exc))
    return skills


def _not_offered(skill: Skill) -> str:
    """The `SkillBank.call_tool` error for a skill that exists but is too new to be called.

    A deprecated skill, or a renamed one's old id, is not listed but still runs when
    called by name, as `SkillBank.call_tool` runs it (with a warning naming the
    replacement): a client that remembered the name keeps working.
    """
    return tool_error(
        "unavailable",
        f"skill {skill.id!r} is at stage {skill.stage!r}, learned from too few runs to be "
        f"called as a tool (callable stages: {', '.join(CALLABLE_STAGES)})",
        f"read the resource {RESOURCE_SCHEME}{skill.id} and do its steps with the tools directly",
    )


def _caller(session: ServerSession) -> str:
    params = session.client_params
    name = params.client_info.name if params is not None else ""
    return f"mcp:{name}" if name else "mcp"


def _session_key(ctx: ServerRequestContext[Any]) -> str:
    """Which MCP session a request belongs to, for keeping tasks apart.

    Over HTTP, the ``mcp-session-id`` header; on a handshake-era connection, the connection.
    The 2026-07-28 protocol has no sessions: a request is told apart by who sent it, the
    authenticated principal (when the server checks tokens) and the client's name and version
    (which each request carries); with neither (stdio, one client per process) it is the one
    default session.
    """
    from mcp.server.auth.middleware.auth_context import get_access_token
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    headers = getattr(ctx.request, "headers", None)
    if headers is not None and headers.get("mcp-session-id"):
        return f"http:{headers['mcp-session-id']}"
    params = ctx.session.client_params
    if params is None or ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        token = get_access_token()
        principal = f"{token.client_id}/{token.subject or ''}" if token is not None else ""
        info = params.client_info if params is not None else None
        client = f"{info.name}/{info.version}" if info is not None else ""
        if principal or client:
            return json.dumps(["client", principal, client])
        return "default"
    return f"connection:{id(params)}"


def _prompt_text(skill: Skill, page: str) -> str:
    return (
        f"A procedure learned from earlier runs ({skill.id}, v{skill.version}, stage "
        f"{skill.stage}): not yet trusted enough to run as a tool. Do its steps yourself with "
        f"the tools it names ({', '.join(skill.tools) or 'none'}), adapting the arguments to "
        f"the task.\n\n{page}"
    )


def build_server(
    bank: SkillBank,
    tools: HostTools,
    *,
    upstreams: Sequence[UpstreamServer] = (),
    recordings: Recordings | None = None,
    learn: Callable[[], object] | None = None,
    report: Callable[[str], object] | None = None,
    idle_gap_s: float = IDLE_GAP_S,
    call_timeout_s: float = CALL_TIMEOUT_S,
    name: str = "skillbank",
    watch_interval_s: float = WATCH_INTERVAL_S,
    upstream_retry_s: float | None = RETRY_S,
) -> Server[Any]:
    """Build the MCP server for a bank: skills as tools, SKILL.md pages as resources,
    cognitive skills as prompts, and the upstream servers' tools passed through.

    Nothing runs until it is served (`serve_stdio`, `serve_http`, or an in-process client);
    the upstream servers are started when it is, and stopped with it.

    Args:
        bank: The bank whose skills are served; the library is read on every listing.
        tools: The host tools skills call, by name (beside the upstream tools).
        upstreams: The upstream MCP servers (`skillbank.gateway.upstream.read_upstreams`).
        recordings: Where calls are recorded as trajectories (None: nothing is recorded, and
            the task tools are not offered).
        learn: Called on a worker thread when a task ends successfully (``serve --learn``).
        report: Where upstream news goes (problems at start, renamed tools, a server that
            came up late); default: the log.
        idle_gap_s: Seconds without a call that end a session's recorded trajectory.
        call_timeout_s: Seconds an upstream call may take.
        name: The server's name, shown to clients.
        watch_interval_s: Seconds between two looks at the library for changes to announce.
        upstream_retry_s: Seconds before an upstream server that could not be started is
            tried again, doubled after each failed try (None: never); its tools are then
            offered and announced as the library's changes are.

    Raises:
        ImportError: the ``mcp`` package is not installed (the message says how to install it).
    """
    try:
        import anyio
        import mcp_types as types
        from mcp.server import NotificationOptions, Server
        from mcp.server.models import InitializationOptions
        from mcp.server.subscriptions import (
            InMemorySubscriptionBus,
            ListenHandler,
            PromptsListChanged,
            ResourcesListChanged,
            ToolsListChanged,
        )
        from mcp.shared.exceptions import MCPError
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS
    except ImportError as exc:
        raise ImportError(f"the MCP server needs the mcp package: {INSTALL_HINT} ({exc})") from exc

    host_tools = dict(tools)
    servers = tuple(upstreams)
    bank.sandbox  # noqa: B018 -- create it now, so calls from worker threads share one
    redactor = Redactor(v for server in servers for v in server.secrets())
    recorder = (
        TaskRecorder(recordings, redactor, idle_gap_s=idle_gap_s)
        if recordings is not None
        else None
    )
    say = report or logger.warning

    reported: set[str] = set()

    async def library() -> list[Skill]:
        return await anyio.to_thread.run_sync(read_library, bank, reported)

    def offered(skills: Iterable[Skill], watch: _Watch) -> list[Skill]:
        # A skill is never named like an upstream tool: the upstream tool keeps the name.
        taken = watch.proxy.names
        for s in skills:
            if is_tool(s) and s.id in taken and f"shadowed:{s.id}" not in reported:
                reported.add(f"shadowed:{s.id}")
                say(f"skill {s.id!r} is not offered: an upstream tool has its name")
        return [s for s in skills if is_tool(s) and s.id not in taken]

    async def announce(watch: _Watch) -> None:
        skills = await library()
        tools_changed = (
            watch.tools is not None and _tools_state(skills, watch.proxy.upstreams) != watch.tools
        )
        resources_changed = (
            watch.resources is not None and _resources_state(skills) != watch.resources
        )
        prompts_changed = watch.prompts is not None and _prompts_state(skills) != watch.prompts
        # Announce once per change: the next listing resets what "changed" means.
        if tools_changed:
            watch.tools = None
            await watch.bus.publish(ToolsListChanged())
        if resources_changed:
            watch.resources = None
            await watch.bus.publish(ResourcesListChanged())
        if prompts_changed:
            watch.prompts = None
            await watch.bus.publish(PromptsListChanged())
        if not (tools_changed or resources_changed or prompts_changed):
            return
        for key, session in list(watch.sessions.items()):
            try:
                if tools_changed:
                    await session.send_tool_list_changed()
                if resources_changed:
                    await session.send_resource_list_changed()
                if prompts_changed:
                    await session.send_prompt_list_changed()
            except Exception:  # a closed connection; it will not list again
                watch.sessions.pop(key, None)

    @asynccontextmanager
    async def lifespan(_: Server[_Watch]) -> AsyncIterator[_Watch]:
        bus = InMemorySubscriptionBus()
        watch = _Watch(listen=ListenHandler(bus), bus=bus)

        async def watching() -> None:
            while True:
                await anyio.sleep(watch_interval_s)
                if recorder is not None:
                    await anyio.to_thread.run_sync(recorder.close_idle)
                if watch.tools is not None or watch.resources is not None or watch.prompts:
                    await announce(watch)

        async with AsyncExitStack() as stack:
            ups = None
            if servers:
                ups = await stack.enter_async_context(
                    Upstreams(
                        servers, call_timeout_s=call_timeout_s, retry_s=upstream_retry_s, report=say
                    )  # fmt: skip
                )
                for problem in ups.problems:
                    say(problem)
                for server, tool, exposed in ups.renamed:
                    say(f"upstream tool {tool!r} of {server!r} clashes with another server's: "
                        f"exposed as {exposed!r}")  # fmt: skip
            watch.proxy = Proxy(ups, recorder, host_tools, skill_timeout_s=bank.limits.timeout_s,
                                learn=learn, say=say)  # fmt: skip
            async with anyio.create_task_group() as tg:
                watch.proxy.background = tg
                tg.start_soon(watching)
                try:
                    yield watch
                finally:
                    watch.listen.close()
                    tg.cancel_scope.cancel()
                    if recorder is not None:
                        # The sessions end with the server: what they had is written.
                        with anyio.CancelScope(shield=True):
                            await anyio.to_thread.run_sync(recorder.close_all)

    def listed_by(ctx: ServerRequestContext[_Watch]) -> _Watch:
        watch = ctx.lifespan_context
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            watch.remember(ctx.session)
        return watch

    async def list_tools(
        ctx: ServerRequestContext[_Watch], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        skills = await library()
        watch = listed_by(ctx)
        watch.tools = _tools_state(skills, watch.proxy.upstreams)
        listed = [types.Tool.model_validate(t) for t in render_tools(offered(skills, watch), "mcp")]
        if watch.proxy.upstreams is not None:
            listed += [tool.listed() for tool in watch.proxy.upstreams.tools.values()]
        own = [BEGIN_TOOL, END_TOOL, DO_TOOL] if recorder is not None else [DO_TOOL]
        listed += [types.Tool.model_validate(t) for t in own]
        return types.ListToolsResult(tools=listed)

    async def call_tool(
        ctx: ServerRequestContext[_Watch], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        proxy = ctx.lifespan_context.proxy
        arguments = params.arguments or {}
        key, client = _session_key(ctx), _caller(ctx.session)
        if recorder is not None and params.name in (BEGIN_TOOL["name"], END_TOOL["name"]):
            return await proxy.task_tool(key, client, params.name, arguments)
        if params.name in proxy.names:
            return await proxy.forward(key, client, params.name, arguments)
        if params.name == DO_TOOL["name"]:
            task = arguments.get("task")
            done = functools.partial(do_task, bank, task, proxy.host_tools(key, client, None))
            text = await anyio.to_thread.run_sync(done)
            ran = json.loads(text)
            return types.CallToolResult(
                content=[types.TextContent(text=text)],
                structured_content=ran,
                is_error=ran.get("result") is not None and not ran["result"]["ok"],
            )
        try:
            skill: Skill | None = await anyio.to_thread.run_sync(bank.get, params.name)
        except SkillbankError:
            skill = None  # call_tool says what is wrong, in the same shape as any error
        if skill is not None and skill.stage not in CALLABLE_STAGES:
            text = _not_offered(skill)
        else:
            granted = proxy.host_tools(key, client, skill)
            run = functools.partial(
                bank.call_tool, params.name, json.dumps(arguments), granted, caller=client
            )
            text = await anyio.to_thread.run_sync(run)
        result = json.loads(text)
        ok = result.get("ok") is True
        value = result.get("value")
        return types.CallToolResult(
            content=[types.TextContent(text=text)],
            # The value alone, as a tool's outputSchema (the skill's return type) describes it.
            structured_content=value if ok and isinstance(value, dict) else None,
            is_error=not ok,
        )

    async def list_resources(
        ctx: ServerRequestContext[_Watch], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        skills = await library()
        listed_by(ctx).resources = _resources_state(skills)
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=f"{RESOURCE_SCHEME}{s.id}",
                    name=s.id,
                    title=s.id,
                    description=f"{s.description} (v{s.version}, {s.stage})",
                    mime_type="text/markdown",
                )
                for s in skills
            ]
        )

    async def read_resource(
        ctx: ServerRequestContext[_Watch], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        skill_id = uri.removeprefix(RESOURCE_SCHEME)
        try:
            if skill_id == uri:
                raise ConfigError(f"{uri!r} is not a skill resource; skills are skill://<id>")
            files = await anyio.to_thread.run_sync(bank.library.files, skill_id)
        except SkillbankError as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(
                    uri=uri, mime_type="text/markdown", text=files["SKILL.md"]
                )
            ]
        )

    async def list_prompts(
        ctx: ServerRequestContext[_Watch], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        skills = await library()
        listed_by(ctx).prompts = _prompts_state(skills)
        return types.ListPromptsResult(
            prompts=[
                types.Prompt(
                    name=s.id,
                    title=s.id,
                    description=f"A learned procedure, to follow with the tools: {s.description}",
                )
                for s in skills
                if _is_prompt(s)
            ]
        )

    async def get_prompt(
        ctx: ServerRequestContext[_Watch], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        try:
            skill = await anyio.to_thread.run_sync(bank.get, params.name)
            files = await anyio.to_thread.run_sync(bank.library.files, skill.id)
        except SkillbankError as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        text = _prompt_text(skill, files["SKILL.md"])
        return types.GetPromptResult(
            description=skill.description,
            messages=[types.PromptMessage(role="user", content=types.TextContent(text=text))],
        )

    async def listen(
        ctx: ServerRequestContext[_Watch], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        return await ctx.lifespan_context.listen(ctx, params)

    class SkillServer(Server[_Watch]):
        def create_initialization_options(
            self,
            notification_options: NotificationOptions | None = None,
            experimental_capabilities: dict[str, dict[str, Any]] | None = None,
            extensions: dict[str, dict[str, Any]] | None = None,
        ) -> InitializationOptions:
            # Every transport asks with no options; say that lists change, since they do.
            return super().create_initialization_options(
                notification_options
                or NotificationOptions(
                    tools_changed=True, resources_changed=True, prompts_changed=True
                ),
                experimental_capabilities,
                extensions,
            )

    instructions = _INSTRUCTIONS
    if servers:
        instructions += " " + _UPSTREAM_INSTRUCTIONS
    if recorder is not None:
        instructions += " " + TASK_INSTRUCTIONS
    return SkillServer(
        name,
        version=_version(),
        title="skillbank",
        description=f"Skills learned from agent runs, in {bank.root}",
        instructions=instructions,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_subscriptions_listen=listen,
    )


def _version() -> str:
    try:
        return metadata.version("skillbank")
    except metadata.PackageNotFoundError:
        return ""


# --- transports -----------------------------------------------------------------------------


def serve_stdio(bank: SkillBank, tools: HostTools, **options: Any) -> None:
    """Serve the bank over stdin/stdout until the client closes them (``options``: as
    `build_server` takes them)."""
    server = build_server(bank, tools, **options)
    import anyio
    from mcp.server.stdio import stdio_server

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)


def serve_http(
    bank: SkillBank,
    tools: HostTools,
    host: str,
    port: int,
    *,
    follower: Follower | None = None,
    **options: Any,
) -> None:
    """Serve the bank over streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted
    (``options``: as `build_server` takes them).

    On a loopback host the server refuses requests whose Host or Origin header is not local
    (DNS rebinding protection). With a ``follower`` (a replica following the git remote,
    `skillbank.sync`), ``POST /sync`` is a webhook that fetches and fast-forwards now, e.g.
    on a push to the remote; see `sync_endpoint`.
    """
    server = build_server(bank, tools, **options)
    import uvicorn
    from starlette.routing import Route

    app = server.streamable_http_app(host=host)
    if follower is not None:
        app.router.routes.append(Route("/sync", sync_endpoint(follower), methods=["POST"]))
    uvicorn.run(app, host=host, port=port, log_level="warning")


#: The environment variable holding the webhook's shared secret (never configuration).
SYNC_SECRET_ENV = "SKILLBANK_SYNC_SECRET"


def sync_endpoint(follower: Follower) -> Callable[[Any], Any]:
    """The ``POST /sync`` handler: sync now, answer the `skillbank.sync.SyncResult` as JSON.

    When ``SKILLBANK_SYNC_SECRET`` is set, a request must carry the body's HMAC-SHA256 under
    that secret as ``X-Hub-Signature-256: sha256=<hex>`` (what GitHub and Gitea send);
    otherwise it is refused with 401. The answer is 200 when the replica is current, 409 when
    it could not follow (it diverged, or the fetch failed).
    """
    import hashlib
    import hmac

    import anyio
    from starlette.responses import JSONResponse

    async def endpoint(request: Any) -> Any:
        secret = os.environ.get(SYNC_SECRET_ENV, "")
        if secret:
            body = await request.body()
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            given = request.headers.get("x-hub-signature-256", "")
            if not hmac.compare_digest(expected, given):
                return JSONResponse(
                    {"ok": False, "error": "bad or missing X-Hub-Signature-256"}, status_code=401
                )
        result = await anyio.to_thread.run_sync(follower.trigger)
        return JSONResponse(result.to_json(), status_code=200 if result.error is None else 409)

    return endpoint
