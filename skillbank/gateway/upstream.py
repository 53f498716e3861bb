"""Upstream MCP servers: the ``{"mcpServers": {...}}`` file, and live clients to each server.

`read_upstreams` reads the file MCP clients (Claude Desktop, Cursor) use: stdio servers
(``command``, ``args``, ``env``, ``cwd``) and HTTP servers (``url``, ``headers``). A bad entry
raises `skillbank.errors.ConfigError` naming the server and the key.

`Upstreams` connects to every server with the official ``mcp`` SDK's `mcp.Client` and holds
the connections open for the gateway's lifetime. Each connection lives in a task of its own
(the SDK's transports must be entered and left by the same task), so a server that dies is
dropped and connected again on the next call, without touching the others. A server that
cannot be started is reported (`Upstreams.problems`) and left out; the gateway keeps serving
and tries it again in the background (after ``retry_s``, then twice as long each time, up to
`RETRY_MAX_S`): when it comes up, its tools join the ones offered (`Upstreams.generation`
counts such changes, so the gateway can announce them) and ``report`` says so.

Every upstream tool is exposed under its own name; when two servers bring the same name, each
clashing tool is exposed as ``<server>__<tool>`` (`Upstreams.renamed` says which). An
`UpstreamTool` keeps the tool's real name, its server and its definition, which the gateway
forwards unchanged (schemas, annotations) and the recordings keep (`UpstreamTool.to_openai`).

Skills reach upstream tools as plain host tools (`Upstreams.host_tools`): synchronous
callables the sandbox's helper threads call, each running the MCP call on the gateway's event
loop with the call timeout. An ``isError`` result raises
`skillbank.errors.UpstreamToolError`, which the skill sees as a ``ToolError``; a result's value
is its structured content when present, else its text, parsed when it is JSON
(`result_value`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from skillbank.errors import ConfigError, UpstreamError, UpstreamToolError

if TYPE_CHECKING:
    import mcp_types as types
    from anyio.abc import TaskGroup
    from anyio.lowlevel import EventLoopToken
    from mcp import Client

__all__ = [
    "CALL_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "MCP_SERVER_KEY",
    "MCP_TOOL_KEY",
    "UpstreamServer",
    "UpstreamTool",
    "UpstreamCall",
    "Upstreams",
    "error_text",
    "read_upstreams",
    "result_value",
]

JSON = Any
#: An async function making one upstream call: ``(exposed name, arguments) -> result``.
UpstreamCall = Callable[[str, Mapping[str, JSON]], Awaitable["types.CallToolResult"]]

#: Seconds one upstream call may take when no other timeout is given.
CALL_TIMEOUT_S = 60.0
#: Seconds a server has to start and list its tools.
CONNECT_TIMEOUT_S = 30.0
#: The key of a recorded tool definition naming the upstream server it came from.
MCP_SERVER_KEY = "x-mcp-server"
#: The key of a recorded tool definition holding the tool's name on its server.
MCP_TOOL_KEY = "x-mcp-tool"

# Seconds the connections have to close when the gateway stops.
_CLOSE_GRACE_S = 5.0
#: Seconds before a server that could not be started is tried again (then doubled each time).
RETRY_S = 5.0
#: The longest wait between two tries of a server that could not be started.
RETRY_MAX_S = 300.0
_STDIO_KEYS = {"command", "args", "env", "cwd"}
_HTTP_KEYS = {"url", "headers"}
# Keys other clients write that say nothing we need (or that we check ourselves).
_IGNORED_KEYS = {"type", "transport", "disabled", "description", "timeout", "autoApprove"}


@dataclass(frozen=True)
class UpstreamServer:
    """One entry of the ``mcpServers`` file."""

    #: The server's key in the file.
    name: str
    #: The program to start (stdio servers).
    command: str | None = None
    #: Its arguments.
    args: tuple[str, ...] = ()
    #: Environment variables set for it (merged over a minimal default environment).
    env: Mapping[str, str] = field(default_factory=dict)
    #: The folder it starts in (None: the gateway's).
    cwd: str | None = None
    #: The streamable HTTP endpoint (HTTP servers).
    url: str | None = None
    #: HTTP headers sent with every request (e.g. ``Authorization``).
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str:
        """``"stdio"`` or ``"http"``."""
        return "http" if self.url is not None else "stdio"

    def secrets(self) -> tuple[str, ...]:
        """The values of its settings kept out of recordings, cases and commits.

        Every ``headers`` value (and the token after an auth scheme word such as ``Bearer``),
        and the ``env`` values that are secrets: under a name that says so (``GITHUB_TOKEN``,
        ``DB_PASSWORD``, ``OPENAI_API_KEY``) or that look random (16 or more characters
        mixing letters and digits, no spaces). Other ``env`` values are configuration
        (``LOG_LEVEL=info``, ``HOME=/root``): replacing them wherever they appear would
        corrupt what is recorded ("add [redacted]rmation page"). Credential-looking values
        are replaced wherever they appear anyway (`skillbank.gateway.recorder.Redactor`).
        """
        found = [v for k, v in self.env.items() if _secret_name(k) or _random_looking(v)]
        for value in self.headers.values():
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                found.append(token)
        return tuple(v for v in found if len(v) >= 4)

    def describe(self) -> str:
        """``git (stdio: mcp-server-git --repository .)`` or ``shop (http: http://...)``.

        Said on stderr and in errors, which clients keep in logs, so secrets are masked as
        ``***``: a URL's password and query values, and an argument that is a secret value
        (`secrets`), random-looking, or the value of an option named like a secret
        (``--api-key X``, ``--token=X``).
        """
        if self.url is not None:
            return f"{self.name} (http: {_masked_url(self.url)})"
        secrets = set(self.secrets())
        shown: list[str] = []
        for i, arg in enumerate(self.args):
            flag, eq, value = arg.partition("=")
            after_flag = i > 0 and self.args[i - 1].startswith("-") and "=" not in self.args[i - 1]
            if arg in secrets or _random_looking(arg):
                shown.append(_MASK)
            elif after_flag and _secret_name(self.args[i - 1].lstrip("-")):
                shown.append(_MASK)
            elif eq and (
                value in secrets or _random_looking(value) or _secret_name(flag.lstrip("-"))
            ):
                shown.append(f"{flag}={_MASK}")
            else:
                shown.append(arg)
        return f"{self.name} (stdio: {' '.join([self.command or '', *shown])})"


# Words of an environment variable's name that say its value is a secret.
_SECRET_WORDS = frozenset(
    {
        "token", "secret", "password", "passwd", "pwd", "pass", "key", "apikey", "auth",
        "credential", "credentials", "cookie", "private", "session", "signature", "pat",
    }
)  # fmt: skip


def _secret_name(name: str) -> bool:
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    return any(w in _SECRET_WORDS for w in words) or "".join(words) in _SECRET_WORDS


_MASK = "***"


def _masked_url(url: str) -> str:
    """``url`` with its password and query values masked."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", f":{_MASK}@", 1)
        query = "&".join(f"{k}={_MASK}" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return _MASK


def _random_looking(value: str) -> bool:
    return (
        len(value) >= 16
        and not any(c.isspace() for c in value)
        and any(c.isalpha() for c in value)
        and any(c.isdigit() for c in value)
        and not value.startswith(("/", "~", "."))  # a path, not a token
        and "://" not in value
    )


def _strings(value: object, where: str, key: str) -> dict[str, str]:
    # The values are secrets (tokens in env and headers): the error names keys and types only.
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: {key!r} must be an object of strings, got {type(value).__name__}"
        )
    wrong = [f"{k!r} ({type(v).__name__})" for k, v in value.items() if not isinstance(v, str)]
    if wrong:
        raise ConfigError(
            f"{where}: {key!r} must be an object of strings; not a string: {', '.join(wrong)}"
        )
    return {str(k): v for k, v in value.items()}


def _server(name: str, entry: object, source: str) -> UpstreamServer:
    where = f"{source}: server {name!r}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be an object with 'command' or 'url', got {entry!r}")
    unknown = sorted(set(entry) - _STDIO_KEYS - _HTTP_KEYS - _IGNORED_KEYS)
    if unknown:
        raise ConfigError(
            f"{where} has unknown key {unknown[0]!r}; a stdio server takes command, args, env, "
            "cwd and an HTTP server url, headers"
        )
    has_command, has_url = "command" in entry, "url" in entry
    if has_command == has_url:
        raise ConfigError(
            f"{where} needs exactly one of 'command' (a stdio server) or 'url' (a streamable "
            "HTTP server)"
        )
    if has_url:
        mixed = sorted(_STDIO_KEYS & set(entry))
        if mixed:
            raise ConfigError(
                f"{where} has 'url' and {mixed[0]!r}; an HTTP server takes url, headers"
            )
        url = entry["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: 'url' must be an http:// or https:// URL, got {url!r}")
        headers = _strings(entry.get("headers", {}), where, "headers")
        return UpstreamServer(name, url=url, headers=headers)
    if "headers" in entry:
        raise ConfigError(f"{where} has 'command' and 'headers'; headers are for HTTP servers")
    command = entry["command"]
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"{where}: 'command' must be a program name, got {command!r}")
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{where}: 'args' must be a list of strings, got {args!r}")
    env = _strings(entry.get("env", {}), where, "env")
    cwd = entry.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise ConfigError(f"{where}: 'cwd' must be a folder path, got {cwd!r}")
    return UpstreamServer(name, command=command, args=tuple(args), env=env, cwd=cwd)


def read_upstreams(path: str | Path) -> tuple[UpstreamServer, ...]:
    """The servers of an ``{"mcpServers": {...}}`` file, in file order.

    Entries with ``"disabled": true`` are skipped.

    Raises:
        ConfigError: the file cannot be read, is not JSON, has no ``mcpServers`` object, or
            an entry is malformed (the message names the server and the key).
    """
    source = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot read the upstream file {source}: {exc.strerror or exc}"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"the upstream file {source} is not valid JSON: {exc}") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(
            f'{source} must hold {{"mcpServers": {{"<name>": {{"command": ...}}}}}}, the file '
            "MCP clients use"
        )
    out = []
    for name, entry in servers.items():
        if not name or "__" in name:
            raise ConfigError(
                f"{source}: server name {name!r} must be non-empty and hold no '__' (it "
                "prefixes tool names on a clash)"
            )
        if isinstance(entry, Mapping) and entry.get("disabled") is True:
            continue
        out.append(_server(name, entry, source))
    return tuple(out)


@dataclass(frozen=True)
class UpstreamTool:
    """A tool an upstream server brings, as the gateway exposes it."""

    #: The name the gateway exposes (the tool's own, or ``<server>__<tool>`` on a clash).
    name: str
    #: The server's name in the upstream file.
    server: str
    #: The tool's MCP definition, as the server listed it (``name`` is the real name).
    definition: types.Tool

    @property
    def real_name(self) -> str:
        """The tool's name on its server."""
        return self.definition.name

    def listed(self) -> types.Tool:
        """The definition the gateway lists: the server's, under the exposed name."""
        return self.definition.model_copy(update={"name": self.name})

    def annotations(self) -> dict[str, JSON]:
        """The MCP annotations in their wire (camelCase) form, ``{}`` when none."""
        if self.definition.annotations is None:
            return {}
        dumped: dict[str, JSON] = self.definition.annotations.model_dump(
            by_alias=True, exclude_none=True
        )
        return dumped

    def to_openai(self) -> dict[str, JSON]:
        """The definition in the Chat Completions shape recordings keep: the input schema as
        parameters, the annotations (which decide query or command), and the real name and
        server (`MCP_TOOL_KEY`, `MCP_SERVER_KEY`)."""
        function: dict[str, JSON] = {"name": self.name}
        if self.definition.description:
            function["description"] = self.definition.description
        function["parameters"] = dict(self.definition.input_schema) or {
            "type": "object",
            "properties": {},
        }
        annotations = self.annotations()
        if annotations:
            function["annotations"] = annotations
        function[MCP_SERVER_KEY] = self.server
        function[MCP_TOOL_KEY] = self.real_name
        return {"type": "function", "function": function}


def result_value(result: types.CallToolResult) -> JSON:
    """What a call returned, as data: the structured content when present, else the text
    content (joined), parsed when it is JSON; non-text content is described by its type."""
    if result.structured_content is not None:
        return result.structured_content
    texts = []
    for block in result.content:
        text = getattr(block, "text", None)
        texts.append(text if isinstance(text, str) else f"<{getattr(block, 'type', 'content')}>")
    text = "\n".join(texts)
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _awaited(
    make: UpstreamCall, name: str, arguments: Mapping[str, JSON]
) -> types.CallToolResult:
    return await make(name, arguments)


def error_text(result: types.CallToolResult) -> str:
    """The text of an ``isError`` result (its text content, joined)."""
    texts = [getattr(b, "text", "") for b in result.content]
    return "\n".join(t for t in texts if isinstance(t, str)) or "the tool reported an error"


@dataclass(eq=False)
class _Link:
    """One server's connection: the client while it is up, and how to stop it."""

    server: UpstreamServer
    client: Client | None = None
    tools: list[types.Tool] = field(default_factory=list)
    error: str | None = None
    stop: Any = None  # anyio.Event: tells the connection's task to close it
    lock: Any = None  # anyio.Lock: one (re)connection at a time


class Upstreams:
    """Live clients to the upstream servers, for one gateway's lifetime (an async context).

    Args:
        servers: The servers, from `read_upstreams`.
        call_timeout_s: Seconds an upstream call may take.
        connect_timeout_s: Seconds a server has to start and list its tools.
        errlog: Where stdio servers' stderr goes.
        retry_s: Seconds before a server that could not be started is tried again (doubled
            after each failed try, up to `RETRY_MAX_S`); None: never.
        report: Where news after the start goes (a server that came up late).
    """

    def __init__(
        self,
        servers: tuple[UpstreamServer, ...] | list[UpstreamServer],
        *,
        call_timeout_s: float = CALL_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        errlog: TextIO | None = None,
        retry_s: float | None = RETRY_S,
        report: Callable[[str], object] | None = None,
    ) -> None:
        self.servers = tuple(servers)
        self.call_timeout_s = call_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.errlog = errlog
        self.retry_s = retry_s
        self.report = report
        #: Counts the changes to `tools` after the start (a server that came up late).
        self.generation = 0
        #: The tools exposed, by exposed name, in server and listing order.
        self.tools: dict[str, UpstreamTool] = {}
        #: What went wrong at start, one line per server that could not be used.
        self.problems: list[str] = []
        #: ``(server, tool, exposed name)`` for each tool renamed because of a clash.
        self.renamed: list[tuple[str, str, str]] = []
        self._links = {s.name: _Link(s) for s in self.servers}
        #: The background tries of servers that could not be started (cancelled at exit).
        self._retries: list[Any] = []
        self._tg: TaskGroup | None = None
        self._token: EventLoopToken | None = None

    def secrets(self) -> tuple[str, ...]:
        """Every server's secret values (`UpstreamServer.secrets`)."""
        return tuple(v for s in self.servers for v in s.secrets())

    async def __aenter__(self) -> Upstreams:
        import anyio
        import anyio.lowlevel

        self._token = anyio.lowlevel.current_token()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for link in self._links.values():
            link.lock = anyio.Lock()
        async with anyio.create_task_group() as starting:
            for link in self._links.values():
                starting.start_soon(self._connect, link)
        later = (
            f"; tried again in {self.retry_s:g} s, then less and less often"
            if self.retry_s is not None
            else ""
        )
        for link in self._links.values():
            if link.error is not None:
                self.problems.append(
                    f"upstream server {link.server.name!r} is left out, its tools not offered: "
                    f"{link.error}{later}"
                )
                if self.retry_s is not None:
                    self._tg.start_soon(self._retry, link, self.retry_s)
        self._expose()
        return self

    async def _retry(self, link: _Link, delay: float) -> None:
        """Try a server that could not be started again, waiting longer after each failed
        try, until it lists its tools; then offer them."""
        import anyio

        waited = 0.0
        with anyio.CancelScope() as scope:
            self._retries.append(scope)
            while True:
                await anyio.sleep(delay)
                waited += delay
                async with link.lock:
                    if link.client is None:
                        await self._connect(link)
                if link.client is not None:
                    break
                delay = min(delay * 2, RETRY_MAX_S)
        if scope.cancel_called:
            return
        added = self._expose_late(link)
        self.generation += 1
        if self.report is not None:
            self.report(
                f"upstream server {link.server.name!r} is up after {waited:g} s: its tools "
                f"are offered ({', '.join(added) or 'none'})"
            )

    def _expose_late(self, link: _Link) -> list[str]:
        """Offer the tools of a server that came up after the start. Names already offered
        keep their tools (clients may have them): a clashing newcomer is exposed as
        ``<server>__<tool>``."""
        tools = dict(self.tools)
        for tool in link.tools:
            name = tool.name
            if name in tools:
                name = f"{link.server.name}__{tool.name}"
                if name in tools:
                    if self.report is not None:
                        self.report(
                            f"upstream tool {tool.name!r} of {link.server.name!r} is not "
                            f"offered: {tool.name!r} and {name!r} are both taken"
                        )
                    continue
                self.renamed.append((link.server.name, tool.name, name))
            tools[name] = UpstreamTool(name, link.server.name, tool)
        added = [name for name in tools if name not in self.tools]
        self.tools = tools  # one assignment: a reader never sees the dict change under it
        return added

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import anyio

        for retry in self._retries:
            retry.cancel()
        for link in self._links.values():
            if link.stop is not None:
                link.stop.set()
        assert self._tg is not None
        # Each connection closes its client (stopping its process); one still starting, or
        # whose server does not let go, is cancelled after a grace period.
        self._tg.cancel_scope.deadline = anyio.current_time() + _CLOSE_GRACE_S
        await self._tg.__aexit__(exc_type, exc, tb)

    def find(self, server: str, real_name: str) -> str | None:
        """The exposed name of ``server``'s tool ``real_name``, None when it brings none."""
        return next(
            (n for n, t in self.tools.items() if t.server == server and t.real_name == real_name),
            None,
        )

    def _expose(self) -> None:
        counts: dict[str, int] = {}
        for link in self._links.values():
            for tool in link.tools:
                counts[tool.name] = counts.get(tool.name, 0) + 1
        for link in self._links.values():
            for tool in link.tools:
                name = tool.name
                if counts[name] > 1:
                    name = f"{link.server.name}__{tool.name}"
                    self.renamed.append((link.server.name, tool.name, name))
                self.tools[name] = UpstreamTool(name, link.server.name, tool)

    def _client(self, server: UpstreamServer, stack: AsyncExitStack) -> Client:
        from mcp import Client, StdioServerParameters

        if server.url is not None:
            if not server.headers:
                return Client(server.url)
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            # The MCP transports' own timeouts: a response stream may stay open a while.
            http = httpx2.AsyncClient(
                headers=dict(server.headers), timeout=httpx2.Timeout(30.0, read=300.0)
            )
            stack.push_async_callback(http.aclose)
            return Client(streamable_http_client(server.url, http_client=http))
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(
            command=server.command or "", args=list(server.args), env=dict(server.env) or None,
            cwd=server.cwd,
        )  # fmt: skip
        return Client(stdio_client(params, errlog=self.errlog or sys.stderr))

    async def _connect(self, link: _Link) -> None:
        """Start the server's connection task; return once it listed its tools or failed."""
        import anyio

        assert self._tg is not None
        ready = anyio.Event()
        link.error = None
        link.stop = anyio.Event()
        attempt = anyio.CancelScope()
        self._tg.start_soon(self._hold, link, ready, link.stop, attempt)
        with anyio.move_on_after(self.connect_timeout_s) as scope:
            await ready.wait()
        if scope.cancelled_caught:
            # Give up on this attempt for good: its client (and the server process it
            # started) is closed, and it can no longer touch the link.
            attempt.cancel()
            link.stop.set()
            link.error = f"did not start within {self.connect_timeout_s:g} s"

    async def _hold(self, link: _Link, ready: Any, stop: Any, attempt: Any) -> None:
        """The connection's task: open the client, list the tools, wait for `stop`. Only
        the link's current attempt (``link.stop is stop``) writes to the link."""
        server = link.server
        try:
            with attempt:
                async with AsyncExitStack() as stack:
                    client = await stack.enter_async_context(self._client(server, stack))
                    tools: list[types.Tool] = []
                    cursor = None
                    while True:
                        page = await client.list_tools(cursor=cursor)
                        tools += page.tools
                        cursor = page.next_cursor
                        if cursor is None:
                            break
                    if link.stop is not stop:
                        return  # given up on while it started
                    if not link.tools:
                        link.tools = tools
                    link.client = client
                    ready.set()
                    await stop.wait()
        except Exception as exc:  # noqa: BLE001 - reported at start or on the next call
            if link.stop is stop:
                link.error = _explain(exc, server)
        finally:
            if link.stop is stop:
                link.client = None
            ready.set()

    async def call(
        self, name: str, arguments: Mapping[str, JSON], *, timeout_s: float | None = None
    ) -> types.CallToolResult:
        """Call the tool exposed as ``name`` with ``arguments`` on its server.

        A server that is down (it died, or never started) is started again first. The call
        may take ``timeout_s`` seconds (default: the call timeout), a skill's call the time
        its sandbox run has.

        Raises:
            UpstreamError: no such tool, the server cannot be reached, it stopped during the
                call, or the call took longer than the call timeout.
        """
        import anyio
        from mcp.shared.exceptions import MCPError
        from mcp_types.jsonrpc import CONNECTION_CLOSED

        tool = self.tools.get(name)
        if tool is None:
            raise UpstreamError(
                f"no upstream tool {name!r}; the upstream servers bring "
                f"{', '.join(self.tools) or 'no tools'}"
            )
        link = self._links[tool.server]
        async with link.lock:
            if link.client is None:
                await self._connect(link)
            client = link.client
        if client is None:
            raise UpstreamError(
                f"upstream server {link.server.describe()} is not running: {link.error}; "
                "check its entry in the upstream file"
            )
        try:
            with anyio.fail_after(timeout_s or self.call_timeout_s):
                return await client.call_tool(tool.real_name, dict(arguments))
        except TimeoutError:
            raise UpstreamError(
                f"upstream tool {name!r} ({link.server.name}) did not answer within "
                f"{timeout_s or self.call_timeout_s:g} s"
            ) from None
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise UpstreamError(f"upstream tool {name!r} ({link.server.name}): {exc}") from None
            dead: Exception = exc
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            dead = exc
        if link.client is client:
            link.stop.set()
            link.client = None
        raise UpstreamError(
            f"upstream server {link.server.name!r} stopped during the call to {name!r} "
            f"({type(dead).__name__}: {dead}); it is started again for the next call"
        )

    def host_tools(self, call: UpstreamCall | None = None) -> dict[str, Callable[..., JSON]]:
        """The upstream tools as synchronous host tools for skills, to be called from a thread
        other than the gateway's event loop (as the sandbox does).

        Args:
            call: What makes a call on the loop (default `call`); the gateway passes one that
                also records it.
        """
        return {name: self._host_tool(name, call or self.call) for name in self.tools}

    def _host_tool(self, name: str, make: UpstreamCall) -> Callable[..., JSON]:
        import anyio.from_thread

        token = self._token

        def call(**arguments: JSON) -> JSON:
            result: types.CallToolResult = anyio.from_thread.run(
                _awaited, make, name, arguments, token=token
            )
            if result.is_error:
                raise UpstreamToolError(error_text(result))
            return result_value(result)

        call.__name__ = name
        return call


def _explain(exc: BaseException, server: UpstreamServer) -> str:
    """One line saying why a server could not be used, with what to check."""
    leaves: list[BaseException] = [exc]
    while len(leaves) == 1 and isinstance(leaves[0], BaseExceptionGroup):
        leaves = list(leaves[0].exceptions)
    first = leaves[0]
    if isinstance(first, FileNotFoundError) and server.command is not None:
        return f"command {server.command!r} not found; install it or give its full path"
    if isinstance(first, PermissionError) and server.command is not None:
        return f"command {server.command!r} cannot be run: {first}"
    text = f"{type(first).__name__}: {first}".strip()
    if server.url is not None:
        return f"cannot connect to {server.url} ({text}); is the server running?"
    return f"the server stopped or did not speak MCP ({text}); run the command by hand to see why"
