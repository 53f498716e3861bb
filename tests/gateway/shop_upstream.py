"""The example shop's tools as a plain MCP server over streamable HTTP: an upstream for the
gateway's tests, written on the ``mcp`` SDK alone (no skillbank gateway code).

Run: ``python -m tests.gateway.shop_upstream PORT DB TOKEN``; it answers only requests whose
``Authorization`` header is ``Bearer TOKEN``. Results are structured content (the tool's dict)
and its JSON text; a tool that raises answers ``isError`` with the message.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server import Server, ServerRequestContext

from skillbank.examples import TOOL_SPECS, Shop


def build(db: str) -> Server[Any]:
    shop = Shop(db)
    tools = shop.tools()

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        listed = []
        for spec in TOOL_SPECS:
            fn = spec["function"]
            effect = fn.get("x-skillbank-effect")
            hints = {"readOnlyHint": effect == "query"} if effect else None
            listed.append(
                types.Tool(
                    name=fn["name"],
                    description=fn.get("description", ""),
                    input_schema=fn["parameters"],
                    annotations=hints,
                )  # fmt: skip
            )
        return types.ListToolsResult(tools=listed)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            value = tools[params.name](**(params.arguments or {}))
        except Exception as exc:  # noqa: BLE001 - the tool's error, as MCP reports one
            text = f"{type(exc).__name__}: {exc}"
            return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(value))], structured_content=value
        )

    return Server("shop", on_list_tools=list_tools, on_call_tool=call_tool)


def main() -> None:
    port, db, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    app = build(db).streamable_http_app(host="127.0.0.1")

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
