"""The gateway: where agents reach a bank's skills, and their own MCP servers, over MCP.

`skillbank.gateway.server` builds an MCP server from a bank (`build_server`) and serves it over
stdio or streamable HTTP (`serve_stdio`, `serve_http`): callable skills are tools, every skill's
SKILL.md is a resource, cognitive skills are prompts, and the lists follow the library as it
changes. With upstream servers (`skillbank.gateway.upstream`: the ``mcpServers`` file, live
clients) it is a gateway: their tools pass through, skills call them as host tools, and every
call is recorded (`skillbank.gateway.recorder`) as trajectories that `learn_recorded`
(`skillbank.gateway.tasks`) learns from. ``skillbank serve`` is its command. The ``mcp`` SDK is
an optional extra (``pip install 'skillbank[mcp]'``), imported only when a server is built.
"""

from __future__ import annotations

from skillbank.gateway.recorder import (
    IDLE_GAP_S,
    REDACTED,
    Recordings,
    Redactor,
    TaskRecorder,
)
from skillbank.gateway.server import (
    CALLABLE_STAGES,
    INSTALL_HINT,
    WATCH_INTERVAL_S,
    build_server,
    is_tool,
    load_host_tools,
    read_library,
    serve_http,
    serve_stdio,
)
from skillbank.gateway.tasks import RecordedLearning, learn_recorded, recordings_of
from skillbank.gateway.upstream import RETRY_S, Upstreams, UpstreamServer, read_upstreams

__all__ = [
    "CALLABLE_STAGES",
    "IDLE_GAP_S",
    "INSTALL_HINT",
    "REDACTED",
    "RETRY_S",
    "WATCH_INTERVAL_S",
    "RecordedLearning",
    "Recordings",
    "Redactor",
    "TaskRecorder",
    "UpstreamServer",
    "Upstreams",
    "build_server",
    "is_tool",
    "learn_recorded",
    "load_host_tools",
    "read_library",
    "read_upstreams",
    "recordings_of",
    "serve_http",
    "serve_stdio",
]
