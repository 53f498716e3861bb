"""A stdio MCP server whose ``die`` tool kills its own process mid-call, on the ``mcp`` SDK
alone: the upstream of the gateway's restart test. ``echo`` answers with its text and the
process id, so a test can see the server was started again."""

from __future__ import annotations

import os
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

_TEXT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


async def list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[
            types.Tool(name="echo", description="Echo the text.", input_schema=_TEXT),
            types.Tool(name="die", description="Exit mid-call.", input_schema=_TEXT),
        ]
    )


async def call_tool(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    if params.name == "die":
        os._exit(3)
    text = str((params.arguments or {}).get("text"))
    value = {"text": text, "pid": os.getpid()}
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=value)


async def main() -> None:
    server = Server("flaky", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
