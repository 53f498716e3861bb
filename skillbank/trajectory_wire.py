"""The wire shapes of a Chat Completions trajectory record, checked with pydantic.

`skillbank.trajectory` parses records at the edge with these models and turns them into its
plain frozen values at once; nothing else uses them. They live apart so that importing the
values (every command does) does not import pydantic (only parsing a record does).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FunctionCall",
    "FunctionDef",
    "Message",
    "Record",
    "ToolCall",
    "ToolDef",
    "Wire",
    "WireOutcome",
]

JSON = Any  # a value json.loads could return


class Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class FunctionCall(Wire):
    name: str = Field(min_length=1)
    arguments: str


class ToolCall(Wire):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, JSON]] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    is_error: bool = False


class FunctionDef(Wire):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    description: str = ""
    parameters: dict[str, JSON] = Field(default_factory=dict)


class ToolDef(Wire):
    type: Literal["function"] = "function"
    function: FunctionDef


class WireOutcome(Wire):
    success: bool
    detail: str | None = None


class Record(Wire):
    messages: list[Message] = Field(min_length=1)
    tools: list[ToolDef] = Field(default_factory=list)
    id: str | None = Field(default=None, min_length=1)
    task: str | None = Field(default=None, min_length=1)
    outcome: WireOutcome | None = None
