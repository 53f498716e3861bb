"""Anthropic Messages API transcripts as trajectories, and trajectories as such transcripts.

A record is what the Messages API takes, plus our optional ``id``, ``task`` and ``outcome``
beside it as for OpenAI messages (a bare list of messages works too)::

    {"system": "You are ...",
     "messages": [
       {"role": "user", "content": "Order 2 x 'mug' for ann@example.com"},
       {"role": "assistant", "content": [
         {"type": "text", "text": "Looking the customer up."},
         {"type": "tool_use", "id": "toolu_01", "name": "find_customer",
          "input": {"email": "ann@example.com"}}]},
       {"role": "user", "content": [
         {"type": "tool_result", "tool_use_id": "toolu_01",
          "content": "{\\"customer_id\\": \\"C-1001\\"}"}]},
       {"role": "assistant", "content": "Done."}],
     "tools": [{"name": "find_customer", "description": "...",
                "input_schema": {"type": "object", "properties": {...}}}],
     "id": "run-17", "outcome": {"success": true}}

A ``tool_use`` block is a call (its ``input`` the arguments object); the ``tool_result`` block
with its id, in a later user message, answers it: its ``content`` (text, or a list of blocks
whose text blocks are joined) is the result, parsed when it is JSON text, and ``is_error:
true`` marks a failed call. ``system`` (text or text blocks) is the system prompt. Text of an
assistant message with no ``tool_use`` is the final answer; text beside a ``tool_use`` is the
model thinking aloud and, as in OpenAI messages, is not. Other blocks (``thinking``, images,
server tools and their results) are skipped, and so are server tools in ``tools`` (they have
a ``type`` and no ``input_schema``).

`to_chat` rewrites a record as the Chat Completions record `skillbank.trajectory` parses, so
an Anthropic transcript and its OpenAI twin give the same trajectory; errors name the
Anthropic field (``messages[1].content[1].input``). `from_chat` writes the other way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from skillbank.errors import TrajectoryError
from skillbank.formats import ChatRecord, record_object

__all__ = ["from_chat", "to_chat"]

JSON = Any

#: Keys of an Anthropic tool definition that are not passed on as hints.
_TOOL_KEYS = ("name", "description", "input_schema", "type", "cache_control")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Message(_Wire):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, JSON]]


class _Text(_Wire):
    type: Literal["text"]
    text: str


class _ToolUse(_Wire):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, JSON]


class _ToolResult(_Wire):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[dict[str, JSON]] | None = None
    is_error: bool = False


class _Tool(_Wire):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    description: str = ""
    input_schema: dict[str, JSON]


class _Record(_Wire):
    messages: list[JSON] = Field(min_length=1)
    tools: list[JSON] = Field(default_factory=list)
    system: str | list[dict[str, JSON]] | None = None


_BLOCKS: dict[str, type[_Wire]] = {"text": _Text, "tool_use": _ToolUse, "tool_result": _ToolResult}


def _check(model: type[_Wire], value: JSON, where: str, loc: str) -> Any:
    try:
        return model.model_validate(value)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        bad = err.get("input")
        shown = repr(bad) if not isinstance(bad, (dict, list)) else type(bad).__name__
        sub = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        raise TrajectoryError(f"{err['msg']}, got {shown}", source=where, field=loc + sub) from None


def _text(content: JSON) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, Mapping) and b.get("type") == "text"
        )
    return ""


def to_chat(obj: JSON, source: str) -> ChatRecord:
    """Rewrite an Anthropic Messages record as a Chat Completions record.

    Raises:
        TrajectoryError: naming ``source``, the record id and the Anthropic field, for a
            message, block or tool that does not have the Messages API's shape.
    """
    obj, where = record_object(obj, source)
    record = _check(_Record, obj, where, "")
    messages: list[dict[str, JSON]] = []
    locs: list[str] = []
    if record.system:
        messages.append({"role": "system", "content": _text(record.system)})
        locs.append("system")
    for i, raw in enumerate(record.messages):
        message = _check(_Message, raw, where, f"messages[{i}]")
        if isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content})
            locs.append(f"messages[{i}].content")
            continue
        blocks = []
        for j, block in enumerate(message.content):
            loc = f"messages[{i}].content[{j}]"
            model = _BLOCKS.get(str(block.get("type"))) if isinstance(block, dict) else None
            if model is not None:
                blocks.append((loc, _check(model, block, where, loc)))
        calls = [(loc, b) for loc, b in blocks if isinstance(b, _ToolUse)]
        if message.role == "assistant":
            if calls:
                for loc, call in calls:
                    function = {"name": call.name, "arguments": json.dumps(call.input)}
                    messages.append({
                        "role": "assistant", "content": None,
                        "tool_calls": [{"id": call.id, "type": "function", "function": function}],
                    })  # fmt: skip
                    locs.append(loc)
            else:
                text = "".join(b.text for _, b in blocks if isinstance(b, _Text))
                messages.append({"role": "assistant", "content": text})
                locs.append(f"messages[{i}].content")
            continue
        for loc, block in blocks:
            if isinstance(block, _ToolResult):
                messages.append({
                    "role": "tool", "tool_call_id": block.tool_use_id,
                    "content": _text(block.content), "is_error": block.is_error,
                })  # fmt: skip
                locs.append(loc)
            elif isinstance(block, _Text):
                messages.append({"role": "user", "content": block.text})
                locs.append(f"{loc}.text")
    tools: list[dict[str, JSON]] = []
    tool_locs: list[str] = []
    for k, raw in enumerate(record.tools):
        if (
            isinstance(raw, dict)
            and raw.get("type") not in (None, "custom")
            and ("input_schema" not in raw)
        ):
            continue  # a server tool (web search, code execution): never a tool_use of ours
        tool = _check(_Tool, raw, where, f"tools[{k}]")
        definition: dict[str, JSON] = {"name": tool.name}
        if tool.description:
            definition["description"] = tool.description
        definition["parameters"] = tool.input_schema
        definition |= {key: v for key, v in raw.items() if key not in _TOOL_KEYS}
        tools.append({"type": "function", "function": definition})
        tool_locs.append(f"tools[{k}]")
    chat = {k: v for k, v in obj.items() if k not in ("messages", "tools", "system")}
    chat["messages"] = messages
    chat["tools"] = tools

    def locate(field: str) -> str:
        found = re.match(r"^(messages|tools)\[(\d+)\](.*)$", field)
        if found is None:
            return field
        kind, index, rest = found.group(1), int(found.group(2)), found.group(3)
        if kind == "tools":
            rest = rest.replace(".function.parameters", ".input_schema").replace(".function", "")
            return tool_locs[index] + rest if index < len(tool_locs) else field
        if index >= len(locs):
            return field
        base = locs[index]
        for chat_part, anthropic_part in (
            (".tool_calls[0].function.arguments", ".input"),
            (".tool_calls[0].function.name", ".name"),
            (".tool_calls[0].id", ".id"),
            (".tool_call_id", ".tool_use_id"),
        ):
            if rest.startswith(chat_part):
                return base + anthropic_part + rest[len(chat_part) :]
        return base

    return ChatRecord(source=source, where=where, record=chat, locate=locate)


def from_chat(record: Mapping[str, JSON]) -> dict[str, JSON]:
    """A Chat Completions record (`skillbank.trajectory.Trajectory.to_record`) as an
    Anthropic Messages record: tool calls as ``tool_use`` blocks, each run of tool messages
    as one user message of ``tool_result`` blocks, system messages as ``system``."""
    out: dict[str, JSON] = {k: record[k] for k in ("id", "task") if k in record}
    system: list[str] = []
    messages: list[dict[str, JSON]] = []
    for message in record.get("messages", []):
        role, content = message.get("role"), message.get("content")
        text = content if isinstance(content, str) else _text(content)
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            messages.append({"role": "user", "content": text})
        elif role == "assistant" and message.get("tool_calls"):
            blocks = []
            for call in message["tool_calls"]:
                function = call["function"]
                blocks.append({"type": "tool_use", "id": call["id"], "name": function["name"],
                               "input": json.loads(function.get("arguments") or "{}")})  # fmt: skip
            if (
                messages
                and messages[-1]["role"] == "assistant"
                and isinstance(messages[-1]["content"], list)
            ):
                messages[-1]["content"] += blocks
            else:
                messages.append({"role": "assistant", "content": blocks})
        elif role == "assistant":
            messages.append({"role": "assistant", "content": text})
        elif role == "tool":
            block: dict[str, JSON] = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": text,
            }
            if message.get("is_error"):
                block["is_error"] = True
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
    if system:
        out["system"] = "\n\n".join(system)
    out["messages"] = messages
    tools = []
    for tool in record.get("tools", []):
        function = tool["function"]
        entry: dict[str, JSON] = {"name": function["name"]}
        if function.get("description"):
            entry["description"] = function["description"]
        entry["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        entry |= {
            k: v for k, v in function.items() if k not in ("name", "description", "parameters")
        }
        tools.append(entry)
    out["tools"] = tools
    if "outcome" in record:
        out["outcome"] = record["outcome"]
    return out
