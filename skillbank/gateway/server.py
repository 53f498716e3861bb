"""The MCP server: a bank's skills as MCP tools, on the official ``mcp`` SDK (``skillbank serve``).

Every ``tools/list`` reads the library, so the list follows it as skills are learned. Only
skills at stage ``associative`` or ``autonomous`` are tools; every skill, cognitive ones too,
is also a resource ``skill://<id>`` holding its SKILL.md. A ``tools/call`` runs the skill in the
sandbox against the host tools the server was given (`SkillBank.call_tool`): the result is the
call's JSON as text, with ``isError`` when it failed, so the model reads the structured error.
Beside the skills, the tool ``skillbank_do(task)`` (`DO_TOOL`, `do_task`) does a task as a reflex:
an autonomous skill run straight from the task's words, or an answer saying why none ran.

While a client is connected, the server checks the library every `WATCH_INTERVAL_S` seconds and
tells the client when the tools or resources it last listed changed: with
``notifications/tools/list_changed`` on handshake-era connections, and on ``subscriptions/listen``
streams at protocol 2026-07-28.

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
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import TYPE_CHECKING, Any

from skillbank.bank import SkillBank
from skillbank.errors import ConfigError, SkillbankError
from skillbank.reflex import ReflexDecision
from skillbank.skill import Skill, Version
from skillbank.toolspec import render_tools, tool_error

if TYPE_CHECKING:
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
# Legacy sessions remembered per server lifespan, to tell them about changes; the oldest is
# forgotten past this (an HTTP server sees many sessions come and go).
_MAX_SESSIONS = 256

logger = logging.getLogger(__name__)

HostTools = Mapping[str, Callable[..., Any]]
_ToolsState = frozenset[tuple[str, Version]]
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


def _tools_state(skills: Iterable[Skill]) -> _ToolsState:
    return frozenset((s.id, s.version) for s in skills if is_tool(s))


def _resources_state(skills: Iterable[Skill]) -> _ResourcesState:
    return frozenset((s.id, s.version, s.stage) for s in skills)


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
    """The `SkillBank.call_tool` error for a skill that exists but is not offered as a tool."""
    if skill.deprecated_by:
        return tool_error(
            "unavailable",
            f"skill {skill.id!r} is deprecated",
            f"call {skill.deprecated_by}, which replaces it",
        )
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


def build_server(
    bank: SkillBank,
    tools: HostTools,
    *,
    name: str = "skillbank",
    watch_interval_s: float = WATCH_INTERVAL_S,
) -> Server[Any]:
    """Build the MCP server for a bank: skills as tools, SKILL.md pages as resources.

    Nothing runs until it is served (`serve_stdio`, `serve_http`, or an in-process client).

    Args:
        bank: The bank whose skills are served; the library is read on every listing.
        tools: The host tools skills call, by name.
        name: The server's name, shown to clients.
        watch_interval_s: Seconds between two looks at the library for changes to announce.

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
            ResourcesListChanged,
            ToolsListChanged,
        )
        from mcp.shared.exceptions import MCPError
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS
    except ImportError as exc:
        raise ImportError(f"the MCP server needs the mcp package: {INSTALL_HINT} ({exc})") from exc

    host_tools = dict(tools)
    bank.sandbox  # noqa: B018 -- create it now, so calls from worker threads share one

    reported: set[str] = set()

    async def library() -> list[Skill]:
        return await anyio.to_thread.run_sync(read_library, bank, reported)

    async def announce(watch: _Watch) -> None:
        skills = await library()
        tools_changed = watch.tools is not None and _tools_state(skills) != watch.tools
        resources_changed = (
            watch.resources is not None and _resources_state(skills) != watch.resources
        )
        # Announce once per change: the next listing resets what "changed" means.
        if tools_changed:
            watch.tools = None
            await watch.bus.publish(ToolsListChanged())
        if resources_changed:
            watch.resources = None
            await watch.bus.publish(ResourcesListChanged())
        if not (tools_changed or resources_changed):
            return
        for key, session in list(watch.sessions.items()):
            try:
                if tools_changed:
                    await session.send_tool_list_changed()
                if resources_changed:
                    await session.send_resource_list_changed()
            except Exception:  # a closed connection; it will not list again
                watch.sessions.pop(key, None)

    @asynccontextmanager
    async def lifespan(_: Server[_Watch]) -> AsyncIterator[_Watch]:
        bus = InMemorySubscriptionBus()
        watch = _Watch(listen=ListenHandler(bus), bus=bus)

        async def watching() -> None:
            while True:
                await anyio.sleep(watch_interval_s)
                if watch.tools is not None or watch.resources is not None:
                    await announce(watch)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watching)
            try:
                yield watch
            finally:
                watch.listen.close()
                tg.cancel_scope.cancel()

    def listed_by(ctx: ServerRequestContext[_Watch]) -> _Watch:
        watch = ctx.lifespan_context
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            watch.remember(ctx.session)
        return watch

    async def list_tools(
        ctx: ServerRequestContext[_Watch], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        skills = await library()
        listed_by(ctx).tools = _tools_state(skills)
        offered = render_tools([s for s in skills if is_tool(s)], "mcp")
        offered.append(DO_TOOL)
        return types.ListToolsResult(tools=[types.Tool.model_validate(t) for t in offered])

    async def call_tool(
        ctx: ServerRequestContext[_Watch], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name == DO_TOOL["name"]:
            task = (params.arguments or {}).get("task")
            done = functools.partial(do_task, bank, task, host_tools)
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
        if skill is not None and not is_tool(skill):
            text = _not_offered(skill)
        else:
            run = functools.partial(
                bank.call_tool,
                params.name,
                json.dumps(params.arguments or {}),
                host_tools,
                caller=_caller(ctx.session),
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
                or NotificationOptions(tools_changed=True, resources_changed=True),
                experimental_capabilities,
                extensions,
            )

    return SkillServer(
        name,
        version=_version(),
        title="skillbank",
        description=f"Skills learned from agent runs, in {bank.root}",
        instructions=_INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_subscriptions_listen=listen,
    )


def _version() -> str:
    try:
        return metadata.version("skillbank")
    except metadata.PackageNotFoundError:
        return ""


# --- transports -----------------------------------------------------------------------------


def serve_stdio(bank: SkillBank, tools: HostTools) -> None:
    """Serve the bank over stdin/stdout until the client closes them."""
    server = build_server(bank, tools)
    import anyio
    from mcp.server.stdio import stdio_server

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)


def serve_http(
    bank: SkillBank, tools: HostTools, host: str, port: int, *, follower: Follower | None = None
) -> None:
    """Serve the bank over streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted.

    On a loopback host the server refuses requests whose Host or Origin header is not local
    (DNS rebinding protection). With a ``follower`` (a replica following the git remote,
    `skillbank.sync`), ``POST /sync`` is a webhook that fetches and fast-forwards now, e.g.
    on a push to the remote; see `sync_endpoint`.
    """
    server = build_server(bank, tools)
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
