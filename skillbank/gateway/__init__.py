"""The gateway: where agents reach a bank's skills over MCP.

`skillbank.gateway.server` builds an MCP server from a bank (`build_server`) and serves it over
stdio or streamable HTTP (`serve_stdio`, `serve_http`): callable skills are tools, every skill's
SKILL.md is a resource, and the lists follow the library as it changes. ``skillbank serve`` is
its command. The ``mcp`` SDK is an optional extra (``pip install 'skillbank[mcp]'``), imported
only when a server is built.
"""

from __future__ import annotations

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

__all__ = [
    "CALLABLE_STAGES",
    "INSTALL_HINT",
    "WATCH_INTERVAL_S",
    "build_server",
    "is_tool",
    "load_host_tools",
    "read_library",
    "serve_http",
    "serve_stdio",
]
