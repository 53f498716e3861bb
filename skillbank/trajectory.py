"""Trajectories: what an agent did, parsed from OpenAI chat messages into plain values.

A trajectory is the task text, the tools the agent had, the ordered tool calls it made (name,
arguments, and the result or error each produced) and the outcome. The compiler turns successful
ones into skills.

Input format: the container OpenAI uses for function-calling fine-tuning data, one object per
line in ``.jsonl`` or one per ``.json`` file (a bare list of messages is accepted too)::

    {"messages": [...chat messages...], "tools": [{"type": "function", "function": {...}}],
     "id": "optional", "task": "optional, else the first user message",
     "outcome": {"success": true, "detail": "optional"}}

Assistant ``tool_calls`` carry ``arguments`` as JSON text; each ``role: "tool"`` message answers
one call by ``tool_call_id``. A tool message may carry our field ``"is_error": true`` to mark a
failed call. Tool results whose content is JSON text are parsed so data flow can see inside them.
Without an ``outcome`` the trajectory counts as successful when no tool call failed
(``Outcome.inferred`` is then true).

OpenAI Responses items are read too: a record with ``input`` (a string, or a list of items)
and/or ``output`` (a list of items) instead of ``messages``::

    {"input": [{"type": "message", "role": "user", "content": "..."},
               {"type": "function_call", "call_id": "c1", "name": "...", "arguments": "{...}"},
               {"type": "function_call_output", "call_id": "c1", "output": "..."}],
     "output": [{"type": "message", "role": "assistant", "content": [...]}],
     "tools": [{"type": "function", "name": "...", "parameters": {...}}], "id": "...", ...}

Calls and outputs pair by ``call_id``; other item types (reasoning, built-in tools) are
skipped; tools may be in either the Responses or the Chat Completions shape. Errors name the
item, e.g. ``input[3].arguments``.

Other formats are read through this one: `skillbank.formats.anthropic` (Anthropic Messages)
and `skillbank.formats.otel` (OpenTelemetry GenAI spans in OTLP JSON, one trajectory per trace)
rewrite their records as Chat Completions records, which are parsed here; ``format="auto"``
tells each file or record's format by its content (`skillbank.formats.detect`), and errors
name the original format's fields.

The shapes are checked with pydantic at this edge; everything after it works on frozen
dataclasses. Every error names the file, the record and the field.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillbank.errors import TrajectoryError
from skillbank.formats import FORMATS, ChatRecord, Format, detect, is_otlp, record_object

if TYPE_CHECKING:
    from sandbox import ToolCall
    from skillbank.trajectory_wire import ToolDef

__all__ = [
    "EFFECT_KEY",
    "Outcome",
    "Step",
    "ToolSpec",
    "Trajectory",
    "TrajectoryScan",
    "canonical_json",
    "load_trajectories",
    "parse_record",
    "scan_trajectories",
]

JSON = Any  # a value json.loads could return


def canonical_json(value: JSON) -> str:
    """Serialise ``value`` deterministically (sorted keys, no spaces, UTF-8 kept)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class ToolSpec:
    """A tool the agent could call: as declared in a trajectory, or as a skill keeps it.

    A skill's tool definitions (`skillbank.skill.Skill.tool_specs`) are these values; the
    Chat Completions dict is their stored form (``tools.json``) and is converted here only:
    `to_openai` writes it, `from_openai` reads it back, and a definition skillbank wrote reads
    back equal and writes the same bytes again.
    """

    #: The function name the model calls.
    name: str
    #: What the tool does, from its definition ("" when absent).
    description: str = ""
    #: The JSON Schema of the tool's arguments (an ``object`` schema; ``{}`` when absent).
    parameters: Mapping[str, JSON] = field(default_factory=dict)
    #: Other keys of a stored definition's ``function`` object (``strict``, MCP
    #: ``annotations``, ``x-...`` hints), kept as found so rewriting ``tools.json`` (a new
    #: stage, a drift update) never drops what someone added by hand; ``{}`` for a tool read
    #: from a trajectory.
    extra: Mapping[str, JSON] = field(default_factory=dict)

    def to_openai(self) -> dict[str, JSON]:
        """Render the definition back in the Chat Completions ``tools`` shape."""
        function: dict[str, JSON] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = dict(self.parameters) or {"type": "object", "properties": {}}
        function |= {k: v for k, v in self.extra.items() if k not in function}
        return {"type": "function", "function": function}

    @classmethod
    def from_openai(cls, data: Mapping[str, JSON]) -> ToolSpec:
        """Read a definition in the Chat Completions shape (what `to_openai` writes).

        Keys of the function object besides name, description and parameters go to `extra`;
        keys beside ``type`` and ``function`` are not kept (Chat Completions has none).

        Raises:
            ValueError: ``data`` is not a Chat Completions function definition with a name;
                the message names the bad part.
        """
        fn = data.get("function") if isinstance(data, Mapping) else None
        if not isinstance(fn, Mapping) or data.get("type", "function") != "function":
            raise ValueError(
                'expected a Chat Completions tool definition {"type": "function", "function": '
                f"{{...}}}}, got {data!r}"
            )
        name, description = fn.get("name"), fn.get("description", "")
        parameters = fn.get("parameters", {})
        if not isinstance(name, str) or not name:
            raise ValueError(f"'function.name' must be a non-empty string, got {name!r}")
        if not isinstance(description, str):
            raise ValueError(f"'function.description' must be a string, got {description!r}")
        if not isinstance(parameters, Mapping):
            raise ValueError(f"'function.parameters' must be an object, got {parameters!r}")
        extra = {k: v for k, v in fn.items() if k not in ("name", "description", "parameters")}
        return cls(name, description, dict(parameters), extra)


@dataclass(frozen=True)
class Step:
    """One tool call and what came back: a step of a trajectory, a call of a recorded case.

    skillbank has this one record of a tool call. A trajectory's steps, a case's calls
    (`skillbank.skill.Case.calls`) and a `skillbank.recording.Recorder`'s calls are all
    `Step` values, and every conversion of a call lives here, on this class:

    - `from_tool_call`: a call a sandboxed run reported (`sandbox.ToolCall`, which stays a
      type of its own: the sandbox never imports skillbank, and it times each call);
    - `as_case_call`: what a recorded case keeps of a call (tool, arguments, result);
    - `to_case_json` / `from_case_json`: a case call as stored in ``cases.jsonl``;
    - `to_chat_messages`: the call as the OpenAI chat messages a trajectory file holds
      (`parse_record` reads them back).

    It keeps the name ``Step`` rather than a new one because ``skillbank.Step`` is public API
    and this module is where the pipeline starts: `skillbank.skill` imports it, so the record
    cannot live there without a cycle.
    """

    #: The tool's name.
    tool: str
    #: The arguments, decoded from the call's JSON text.
    arguments: Mapping[str, JSON]
    #: The result, parsed from JSON when the tool message held JSON text, else the text itself.
    result: JSON = None
    #: The error text when the call failed (the tool message was marked ``is_error``).
    error: str | None = None
    #: The ``tool_call_id`` that paired call and result ("" in a recorded case).
    call_id: str = ""

    @classmethod
    def from_tool_call(cls, call: ToolCall, call_id: str = "") -> Step:
        """The call a sandboxed run reported (its timing is dropped)."""
        return cls(call.tool, dict(call.arguments), call.result, call.error, call_id)

    def as_case_call(self) -> Step:
        """What a recorded case keeps of this call: tool, arguments and result.

        The error and the call id are not stored in ``cases.jsonl``, so they are dropped
        here and a case loads back equal to the one stored.
        """
        return Step(self.tool, dict(self.arguments), self.result)

    def to_case_json(self) -> dict[str, JSON]:
        """The call as stored in a case (``{"tool", "arguments", "result"}``; the writer
        orders the keys)."""
        return {"tool": self.tool, "arguments": dict(self.arguments), "result": self.result}

    @classmethod
    def from_case_json(cls, data: Mapping[str, JSON]) -> Step:
        """Rebuild a case call from `to_case_json` output (raises KeyError/TypeError on bad
        data)."""
        return cls(str(data["tool"]), dict(data["arguments"]), data.get("result"))

    def to_chat_messages(self) -> list[dict[str, JSON]]:
        """The call as OpenAI chat messages: the assistant's tool call, then the tool message
        answering it (``"is_error": true`` when it failed); `parse_record` reads them back."""
        arguments = json.dumps(dict(self.arguments), ensure_ascii=False)
        function = {"name": self.tool, "arguments": arguments}
        answer: dict[str, JSON] = {"role": "tool", "tool_call_id": self.call_id}
        if self.error is not None:
            answer.update(content=self.error, is_error=True)
        else:
            answer["content"] = json.dumps(self.result, ensure_ascii=False)
        return [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": self.call_id, "type": "function", "function": function}],
            },
            answer,
        ]


@dataclass(frozen=True)
class Outcome:
    """Whether the trajectory achieved its task."""

    #: True when the task was achieved.
    success: bool
    #: Free text: why it failed, or the agent's final answer.
    detail: str | None = None
    #: True when no outcome was recorded and success was inferred from the tool results.
    inferred: bool = False


@dataclass(frozen=True)
class Trajectory:
    """A task, the tools available, the tool calls made in order, and the outcome."""

    #: A stable id: the record's ``id`` field, else ``t-`` and the first 12 hex of `sha256`.
    id: str
    #: What the agent was asked to do.
    task: str
    #: The tools offered to the agent.
    tools: tuple[ToolSpec, ...]
    #: The tool calls, in the order they were made.
    steps: tuple[Step, ...]
    #: Whether it worked.
    outcome: Outcome
    #: Where it came from, e.g. ``runs.jsonl:3`` (not part of the hash).
    source: str = ""
    #: The hash recorded when this run was first learned, for a trajectory rebuilt from a
    #: stored case (which keeps only part of the original); "" for a trajectory read as is.
    recorded_sha256: str = ""

    @functools.cached_property
    def sha256(self) -> str:
        """Content hash over task, tools, steps and outcome; the same run hashes the same.

        Computed once per trajectory (the fields are frozen): grouping, sorting and case
        building ask for it many times, and it serialises the whole record.
        """
        if self.recorded_sha256:
            return self.recorded_sha256
        payload = {
            "task": self.task,
            "tools": [[t.name, t.description, t.parameters] for t in self.tools],
            "steps": [[s.tool, s.arguments, s.result, s.error] for s in self.steps],
            "success": self.outcome.success,
        }
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()

    def tool(self, name: str) -> ToolSpec | None:
        """The declared tool called ``name``, or None."""
        return next((t for t in self.tools if t.name == name), None)

    def to_record(self) -> dict[str, JSON]:
        """The trajectory as a Chat Completions record that `parse_record` reads back equal.

        The task is the user message (and ``task`` too when it is not that message's text),
        each step an assistant tool call and its tool message, the outcome's detail the last
        assistant message, and ``outcome`` is written unless it was inferred. The writers of
        other formats (`skillbank.formats`) start from this record.
        """
        messages: list[dict[str, JSON]] = [{"role": "user", "content": self.task}]
        for step in self.steps:
            messages += step.to_chat_messages()
        if self.outcome.detail:
            messages.append({"role": "assistant", "content": self.outcome.detail})
        record: dict[str, JSON] = {"id": self.id}
        if self.task != self.task.strip() or not self.task.strip():
            record["task"] = self.task
        record["messages"] = messages
        record["tools"] = [tool.to_openai() for tool in self.tools]
        if not self.outcome.inferred:
            record["outcome"] = {"success": self.outcome.success}
        return record


def _loc(parts: Iterable[int | str]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _text(content: str | list[dict[str, JSON]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))


def _parse_result(text: str) -> JSON:
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- OpenAI Responses items -------------------------------------------------------------------

#: Item types of the Responses API that carry no tool call of ours (reasoning, built-in tools);
#: they are skipped. Anything else unknown is skipped too: it cannot be a function call.
_RESPONSES_KINDS = ("message", "function_call", "function_call_output")

# How a field of the chat record built from Responses items is named in the items.
_CHAT_TO_ITEM = (
    (re.compile(r"^\.tool_calls\[0\]\.function\."), "."),
    (re.compile(r"^\.tool_calls\[0\]\.id"), ".call_id"),
    (re.compile(r"^\.tool_call_id"), ".call_id"),
)


def _bare_message(exc: TrajectoryError) -> str:
    """The message of a TrajectoryError without its ``source: field:`` prefix."""
    full = str(exc)
    prefix = ": ".join(part for part in (exc.source, exc.field) if part)
    return full[len(prefix) + 2 :] if prefix and full.startswith(prefix + ": ") else full


def _from_responses(
    obj: Mapping[str, JSON], where: str
) -> tuple[dict[str, JSON], Callable[[str], str]]:
    """Rewrite a record of Responses items as a Chat Completions record.

    ``input`` (a string, or a list of items) and then ``output`` (a list of items) are read in
    order: ``message`` items (or bare ``{"role", "content"}`` ones) become chat messages, each
    ``function_call`` an assistant message with one tool call, each ``function_call_output``
    the tool message answering it (paired by ``call_id``). Other items (reasoning, built-in
    tool calls) are skipped. Tools in the Responses shape (``{"type": "function", "name",
    "description", "parameters"}``) are rewritten in the chat shape; built-in tools are skipped.

    Returns:
        The chat record, and a function naming, for a field of the chat record, the item it
        came from (``messages[3].tool_calls[0].function.arguments`` -> ``input[2].arguments``).

    Raises:
        TrajectoryError: naming the item (``input[2]``, ``output[0].call_id``) for an item that
            is not an object, a call without a ``call_id`` or name, arguments that are not a
            JSON object, a duplicate ``call_id``, or a call and an output that do not pair up.
    """

    def fail(message: str, field: str) -> TrajectoryError:
        return TrajectoryError(message, source=where, field=field)

    items: list[tuple[str, JSON]] = []
    raw_input = obj.get("input")
    if isinstance(raw_input, str):
        items.append(("input", {"type": "message", "role": "user", "content": raw_input}))
    elif isinstance(raw_input, list):
        items += [(f"input[{i}]", item) for i, item in enumerate(raw_input)]
    elif raw_input is not None:
        raise fail(
            f"must be a string or a list of Responses items, got {type(raw_input).__name__}",
            "input",
        )
    raw_output = obj.get("output")
    if isinstance(raw_output, list):
        items += [(f"output[{i}]", item) for i, item in enumerate(raw_output)]
    elif raw_output is not None:
        raise fail(f"must be a list of Responses items, got {type(raw_output).__name__}", "output")

    messages: list[dict[str, JSON]] = []
    message_locs: list[str] = []
    calls: dict[str, tuple[str, str]] = {}  # call_id -> (item location, name)
    answered: set[str] = set()
    for loc, item in items:
        if not isinstance(item, dict):
            raise fail(f"a Responses item must be a JSON object, got {item!r}", loc)
        kind = item.get("type", "message" if "role" in item else None)
        if kind not in _RESPONSES_KINDS:
            continue
        if kind == "message":
            messages.append({"role": item.get("role"), "content": item.get("content")})
        elif kind == "function_call":
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
            if not isinstance(call_id, str) or not call_id:
                raise fail(f"a function_call needs a call_id, got {call_id!r}", f"{loc}.call_id")
            if not isinstance(name, str) or not name:
                raise fail(f"a function_call needs a name, got {name!r}", f"{loc}.name")
            if call_id in calls:
                raise fail(
                    f"duplicate call_id {call_id!r} (also used by {calls[call_id][0]})",
                    f"{loc}.call_id",
                )
            if not isinstance(arguments, str):
                raise fail(
                    f"arguments must be JSON text (a string), got {type(arguments).__name__}",
                    f"{loc}.arguments",
                )
            try:
                decoded = json.loads(arguments or "{}")
            except ValueError as exc:
                raise fail(f"arguments are not valid JSON ({exc}): {arguments!r}",
                           f"{loc}.arguments") from None  # fmt: skip
            if not isinstance(decoded, dict):
                raise fail(f"arguments must encode a JSON object, got {decoded!r}",
                           f"{loc}.arguments")  # fmt: skip
            calls[call_id] = (loc, name)
            function = {"name": name, "arguments": arguments}
            messages.append({
                "role": "assistant", "content": None,
                "tool_calls": [{"id": call_id, "type": "function", "function": function}],
            })  # fmt: skip
        else:
            call_id = item.get("call_id")
            if call_id not in calls or call_id in answered:
                again = " (it was already answered)" if call_id in answered else ""
                raise fail(
                    f"no earlier function_call has call_id {call_id!r}{again}", f"{loc}.call_id"
                )
            output = item.get("output")
            if not isinstance(output, (str, list)):
                raise fail(
                    f"a function_call_output needs its output as text, got {output!r}",
                    f"{loc}.output",
                )
            answered.add(call_id)
            messages.append({
                "role": "tool", "tool_call_id": call_id, "content": output,
                "is_error": item.get("is_error", False),
            })  # fmt: skip
        message_locs.append(loc)
    for call_id, (loc, name) in calls.items():
        if call_id not in answered:
            raise fail(
                f"function_call {call_id!r} ({name}) has no function_call_output answering it",
                f"{loc}.call_id",
            )

    tools: list[JSON] = []
    tool_locs: list[tuple[str, bool]] = []  # (where the tool came from, was it flat)
    raw_tools = obj.get("tools", [])
    for i, tool in enumerate(raw_tools if isinstance(raw_tools, list) else []):
        if isinstance(tool, dict) and tool.get("type", "function") != "function":
            continue  # a built-in tool (web search, file search, ...): never a function call
        flat = isinstance(tool, dict) and "function" not in tool and "name" in tool
        if flat:
            function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
            tool = {"type": "function", "function": function}
        tools.append(tool)
        tool_locs.append((f"tools[{i}]", flat))
    chat = {k: v for k, v in obj.items() if k not in ("input", "output", "tools")}
    chat["messages"] = messages
    chat["tools"] = tools if isinstance(raw_tools, list) else raw_tools

    def locate(field: str) -> str:
        found = re.match(r"^(messages|tools)\[(\d+)\](.*)$", field)
        if found is None:
            return "input" if field == "messages" else field
        kind, index, rest = found.group(1), int(found.group(2)), found.group(3)
        if kind == "tools":
            loc, flat = tool_locs[index]
            return loc + (re.sub(r"^\.function\.", ".", rest) if flat else rest)
        for pattern, replacement in _CHAT_TO_ITEM:
            rest = pattern.sub(replacement, rest)
        if messages[index]["role"] == "tool" and rest.startswith(".content"):
            rest = ".output" + rest[len(".content") :]
        return message_locs[index] + rest

    return chat, locate


def parse_record(obj: JSON, source: str = "<memory>", *, format: Format = "auto") -> Trajectory:
    """Parse one record (the fine-tuning container, or a bare message list) into a Trajectory.

    Args:
        obj: The decoded JSON record.
        source: Where it came from, used in error messages (``file:line``).
        format: The record's format (`skillbank.formats`); ``auto`` tells it by its content.
            An OTLP traces request must hold exactly one trace here (`scan_trajectories`
            reads files of many).

    Raises:
        TrajectoryError: naming ``source``, the record id when known, and the bad field.
    """
    if format == "auto":
        return _parse_record(obj, source, detect(obj))
    try:
        return _parse_record(obj, source, format)
    except TrajectoryError as exc:
        found = detect(obj)
        if found == format:
            raise
        # A forced format that does not fit: the field error alone reads like a broken record.
        error = TrajectoryError(
            f"{exc} (read as {format}, as forced by --format/format=; the record looks like "
            f"{found}: drop --format or use --format {found})"
        )
        error.source, error.field = exc.source, exc.field
        raise error from exc


def _parse_record(obj: JSON, source: str, kind: Format) -> Trajectory:
    if kind == "otel":
        from skillbank.formats.otel import read_otlp

        chats = read_otlp([(source, obj)])
        if len(chats) != 1:
            raise TrajectoryError(
                f"expected one trace, found {len(chats)}; read the file with "
                "load_trajectories to get one trajectory per trace",
                source=source,
            )
        return _parse_converted(chats[0])
    if kind == "anthropic":
        from skillbank.formats.anthropic import to_chat

        return _parse_converted(to_chat(obj, source))
    obj, where = record_object(obj, source)
    for key, value in obj.items():
        problem = _check_values(value, str(key))
        if problem:
            field, _, message = problem.partition(": ")
            raise TrajectoryError(message, source=where, field=field)
    if "input" in obj or "output" in obj:
        if "messages" in obj:
            raise TrajectoryError(
                "a record holds either Chat Completions 'messages' or Responses "
                "'input'/'output' items, not both",
                source=where,
                field="messages",
            )
        chat, locate = _from_responses(obj, where)
        try:
            return _parse_chat(chat, source, where)
        except TrajectoryError as exc:
            raise TrajectoryError(
                _bare_message(exc), source=where, field=locate(exc.field)
            ) from None
    return _parse_chat(obj, source, where)


def _parse_converted(chat: ChatRecord) -> Trajectory:
    """Parse a record another format was rewritten into, naming the original's fields."""
    try:
        return _parse_chat(chat.record, chat.source, chat.where)
    except TrajectoryError as exc:
        raise TrajectoryError(
            _bare_message(exc), source=chat.where, field=chat.locate(exc.field)
        ) from None


#: The key of an OpenAI tool definition that declares the tool's effect, ``"query"`` (it only
#: reads) or ``"command"`` (it changes state); see `skillbank.compiler.effects`.
EFFECT_KEY = "x-skillbank-effect"
#: The keys of a tool definition recorded by the gateway naming its upstream server and the
#: tool's name there (`skillbank.gateway.upstream`); kept in a skill's ``tools.json``.
_MCP_KEYS = ("x-mcp-server", "x-mcp-tool")


def _hints(tool: ToolDef) -> dict[str, JSON]:
    """The effect hints a tool definition carries: `EFFECT_KEY` (in ``function`` or beside
    it) and MCP ``annotations``, and the ``x-mcp-server`` / ``x-mcp-tool`` strings a gateway
    recording adds (the upstream server and the tool's name there); nothing else of its extra
    keys is kept."""
    hints: dict[str, JSON] = {}
    for extra in (tool.model_extra or {}, tool.function.model_extra or {}):
        if extra.get(EFFECT_KEY) in ("query", "command"):
            hints[EFFECT_KEY] = extra[EFFECT_KEY]
    function_extra = tool.function.model_extra or {}
    annotations = function_extra.get("annotations")
    if isinstance(annotations, dict):
        hints["annotations"] = annotations
    for key in _MCP_KEYS:
        if isinstance(function_extra.get(key), str):
            hints[key] = function_extra[key]
    return hints


def _parse_chat(obj: dict[str, JSON], source: str, where: str) -> Trajectory:
    """Parse a record in the Chat Completions shape (``messages`` and ``tools``)."""
    # pydantic is imported here, at the edge where it is used, not by every reader of the
    # values below (``skillbank list`` never parses a trajectory).
    from pydantic import ValidationError as PydanticValidationError

    from skillbank.trajectory_wire import Record

    try:
        record = Record.model_validate(obj)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        bad = err.get("input")
        shown = repr(bad) if not isinstance(bad, (dict, list)) else type(bad).__name__
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise TrajectoryError(
            f"{err['msg']}, got {shown}{more}", source=where, field=_loc(err["loc"])
        ) from None

    tools = tuple(
        ToolSpec(t.function.name, t.function.description, t.function.parameters, _hints(t))
        for t in record.tools
    )
    known = {t.name for t in tools}
    pending: dict[str, tuple[int, str, dict[str, JSON], str]] = {}  # id -> (order, name, args, loc)
    done: dict[str, tuple[int, Step]] = {}
    order = 0
    task = record.task
    answer: str | None = None
    for i, msg in enumerate(record.messages):
        if msg.role == "user" and task is None and _text(msg.content).strip():
            task = _text(msg.content).strip()
        elif msg.role == "assistant":
            if msg.tool_calls:
                for j, call in enumerate(msg.tool_calls):
                    loc = f"messages[{i}].tool_calls[{j}]"
                    if tools and call.function.name not in known:
                        raise TrajectoryError(
                            f"call to tool {call.function.name!r}, which is not among the "
                            f"record's tools ({', '.join(sorted(known))})",
                            source=where,
                            field=f"{loc}.function.name",
                        )
                    try:
                        args = json.loads(call.function.arguments or "{}")
                    except ValueError as exc:
                        raise TrajectoryError(
                            f"arguments are not valid JSON ({exc}): {call.function.arguments!r}",
                            source=where,
                            field=f"{loc}.function.arguments",
                        ) from None
                    if not isinstance(args, dict):
                        raise TrajectoryError(
                            f"arguments must encode a JSON object, got {args!r}",
                            source=where,
                            field=f"{loc}.function.arguments",
                        )
                    if call.id in pending or call.id in done:
                        raise TrajectoryError(
                            f"duplicate tool call id {call.id!r}", source=where, field=f"{loc}.id"
                        )
                    pending[call.id] = (order, call.function.name, args, loc)
                    order += 1
            elif _text(msg.content).strip():
                answer = _text(msg.content).strip()
        elif msg.role == "tool":
            loc = f"messages[{i}].tool_call_id"
            if msg.tool_call_id is None:
                raise TrajectoryError(
                    "a tool message needs the tool_call_id of the call it answers",
                    source=where,
                    field=loc,
                )
            if msg.tool_call_id not in pending:
                raise TrajectoryError(
                    f"no earlier assistant tool call has id {msg.tool_call_id!r}"
                    + (" (it was already answered)" if msg.tool_call_id in done else ""),
                    source=where,
                    field=loc,
                )
            position, name, args, _ = pending.pop(msg.tool_call_id)
            text = _text(msg.content)
            done[msg.tool_call_id] = (
                position,
                Step(name, args, None, text or "error", msg.tool_call_id)
                if msg.is_error
                else Step(name, args, _parse_result(text), None, msg.tool_call_id),
            )
    if pending:
        call_id, (_, name, _, loc) = next(iter(pending.items()))
        raise TrajectoryError(
            f"tool call {call_id!r} ({name}) has no tool message answering it",
            source=where,
            field=f"{loc}.id",
        )
    if task is None:
        raise TrajectoryError(
            "no task: add a 'task' field or a user message", source=where, field="task"
        )
    # Calls are ordered as the assistant issued them, not as their results arrived.
    steps = tuple(step for _, step in sorted(done.values(), key=lambda pair: pair[0]))
    if record.outcome is not None:
        outcome = Outcome(record.outcome.success, record.outcome.detail or answer)
    else:
        outcome = Outcome(all(s.error is None for s in steps), answer, inferred=True)
    trajectory = Trajectory(
        id=record.id or "",
        task=task,
        tools=tools,
        steps=steps,
        outcome=outcome,
        source=source,
    )
    if not trajectory.id:
        trajectory = Trajectory(
            f"t-{trajectory.sha256[:12]}", task, tools, steps, outcome, source=source
        )
    return trajectory


@dataclass(frozen=True)
class TrajectoryScan:
    """What reading some trajectory files found: the good records and the errors."""

    #: Records that parsed, in file order.
    trajectories: tuple[Trajectory, ...]
    #: One error per bad record, each naming file, record and field.
    errors: tuple[TrajectoryError, ...]


def _files(paths: Sequence[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl"))
            if not found:
                raise TrajectoryError("the folder holds no .json or .jsonl files", source=str(path))
            yield from found
        elif path.is_file():
            yield path
        else:
            raise TrajectoryError(
                "no such file or folder; pass .jsonl/.json files or folders holding them",
                source=str(path),
            )


def _records(path: Path) -> Iterator[tuple[str, JSON | TrajectoryError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrajectoryError(f"cannot read the file: {exc}", source=str(path)) from None
    if path.suffix == ".jsonl":
        # JSON Lines are separated by "\n" only; str.splitlines() would also split inside
        # strings holding U+2028 and the like, which JSON allows raw.
        for n, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            yield f"{path}:{n}", _decode(line, f"{path}:{n}")
        return
    obj = _decode(text, str(path))
    if isinstance(obj, TrajectoryError):
        yield str(path), obj
        return
    is_message_list = isinstance(obj, list) and all(
        isinstance(m, dict) and "role" in m for m in obj
    )
    if isinstance(obj, list) and not is_message_list:
        for n, item in enumerate(obj):
            yield f"{path}[{n}]", item
    else:
        yield str(path), obj


def _decode(text: str, source: str) -> JSON | TrajectoryError:
    try:
        return json.loads(text)
    except RecursionError:
        return TrajectoryError("the JSON nests too deeply to be a trajectory", source=source)
    except ValueError as exc:
        return TrajectoryError(f"not valid JSON: {exc}", source=source)


#: Deeper JSON than this is refused: no real tool call nests so far, and generated code
#: reading such paths would overflow the parser.
MAX_DEPTH = 64


def _check_values(value: JSON, field: str, depth: int = 0) -> str | None:
    # Returns "field: problem", or None when the value is usable.
    if depth > MAX_DEPTH:
        return f"{field}: nests deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{field}: holds a lone surrogate ({value[:40]!r}), which is not valid Unicode"
    elif isinstance(value, float) and not math.isfinite(value):
        return f"{field}: holds {value!r}, which is not a JSON number"
    elif isinstance(value, dict):
        for key, sub in value.items():
            problem = _check_values(key, f"{field}.<key>", depth + 1) or _check_values(
                sub, f"{field}.{key}", depth + 1
            )
            if problem:
                return problem
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            problem = _check_values(sub, f"{field}[{i}]", depth + 1)
            if problem:
                return problem
    return None


def _otlp_requests(path: Path) -> list[tuple[str, JSON]] | None:
    """The OTLP JSON requests of a file, when it is one (JSON lines, or one JSON object,
    whatever its extension: the Collector's file exporter writes lines to ``*.json``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    first = next((line for line in text.split("\n") if line.strip()), "")
    head = _decode(first, str(path))
    if not is_otlp(head):
        whole = _decode(text, str(path)) if text.lstrip().startswith("{") else None
        return [(str(path), whole)] if is_otlp(whole) else None
    requests: list[tuple[str, JSON]] = []
    for n, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            requests.append((f"{path}:{n}", _decode(line, f"{path}:{n}")))
    return requests


def scan_trajectories(
    paths: str | Path | Sequence[str | Path], *, format: Format = "auto"
) -> TrajectoryScan:
    """Read every record in ``paths``, keeping good records and collecting errors per record.

    Args:
        paths: Files, or folders searched recursively for ``.json``/``.jsonl`` files.
        format: ``auto`` tells each file or record's format by its content
            (`skillbank.formats.detect`); ``openai``, ``anthropic`` or ``otel`` forces one.
            An OTLP JSON file gives one trajectory per trace id, so its "records" are traces.

    Raises:
        TrajectoryError: when a path does not exist or cannot be read at all.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if format not in FORMATS:
        raise TrajectoryError(
            f"unknown trajectory format {format!r}; use one of {', '.join(FORMATS)}"
        )
    good: list[Trajectory] = []
    bad: list[TrajectoryError] = []
    for path in _files(paths):
        requests = _otlp_requests(path) if format in ("auto", "otel") else None
        if requests is not None:
            broken = [obj for _, obj in requests if isinstance(obj, TrajectoryError)]
            if broken:
                bad += broken
                requests = [(s, obj) for s, obj in requests if not isinstance(obj, TrajectoryError)]
            from skillbank.formats.otel import read_otlp_lenient

            try:
                chats = read_otlp_lenient(requests, str(path))
            except TrajectoryError as exc:
                bad.append(exc)
                continue
            for chat in chats:
                if isinstance(chat, TrajectoryError):
                    bad.append(chat)
                    continue
                try:
                    good.append(_parse_converted(chat))
                except TrajectoryError as exc:
                    bad.append(exc)
            continue
        for source, obj in _records(path):
            if isinstance(obj, TrajectoryError):
                bad.append(obj)
                continue
            try:
                good.append(parse_record(obj, source, format=format))
            except TrajectoryError as exc:
                bad.append(exc)
    return TrajectoryScan(tuple(good), tuple(bad))


def load_trajectories(
    paths: str | Path | Sequence[str | Path],
    *,
    skip_invalid: bool = False,
    format: Format = "auto",
) -> list[Trajectory]:
    """Load trajectories from ``.jsonl``/``.json`` files or folders of them.

    Args:
        paths: One path or several; folders are searched recursively.
        skip_invalid: Drop malformed records instead of raising (use `scan_trajectories`
            to see what was dropped).
        format: The files' format, or ``auto`` (see `scan_trajectories`).

    Raises:
        TrajectoryError: for the first malformed record, naming file, record and field.
    """
    scan = scan_trajectories(paths, format=format)
    if scan.errors and not skip_invalid:
        first = scan.errors[0]
        if len(scan.errors) > 1:
            raise TrajectoryError(
                f"{first} (and {len(scan.errors) - 1} more bad record(s); "
                "use skip_invalid=True / --skip-invalid to load the good ones)"
            )
        raise first
    return list(scan.trajectories)
