"""OpenTelemetry GenAI spans (OTLP JSON) as trajectories, and trajectories as such spans.

Input: the OTLP JSON an OpenTelemetry Collector's ``file`` exporter writes, one
``ExportTraceServiceRequest`` per line (``{"resourceSpans": [{"resource": ..., "scopeSpans":
[{"scope": ..., "spans": [...]}]}]}``; a file holding one such object also works). Span ids
are hex strings and attribute values ``AnyValue`` objects (``stringValue``, ``intValue``,
``kvlistValue``, ...), as the OTLP JSON encoding says. Spans follow the GenAI semantic
conventions (1.37 or later, ``gen_ai.*``):

- an ``execute_tool`` span (``gen_ai.operation.name``) is one tool call: ``gen_ai.tool.name``,
  ``gen_ai.tool.call.id``, ``gen_ai.tool.call.arguments`` and ``gen_ai.tool.call.result``
  (structured, or JSON text as the Python SDK records them); an error status (or
  ``error.type``) marks a failed call, its status message the error. An ``execute_tool`` span
  with ``execute_tool`` children (a skill that called tools) is not a step itself: its calls
  are. Steps are ordered by start time;
- chat spans (``chat``, ``generate_content``, ``text_completion``, or any span with
  ``gen_ai.input.messages``) give the task, the first user message's text, and the final
  answer, the text of the last chat span's output. A trace with chat spans and no
  ``execute_tool`` span takes its calls from the last chat span's messages (``tool_call`` and
  ``tool_call_response`` parts paired by id);
- tool definitions come from ``gen_ai.tool.definitions`` where a span carries them (the
  conventions' ``{"type": "function", "name", "description", "parameters"}``, or the Chat
  Completions shape); a tool called but not defined gets a definition inferred from its calls
  (its description from ``gen_ai.tool.description``; each argument typed by its values,
  required when every call passed it).

One trace id is one trajectory, whichever lines and resources its spans are in. Its id is the
trace id (32 hex digits) unless a span carries ``skillbank.trajectory.id``. Three more
``skillbank.*`` attributes, which the writer sets, carry what the conventions have no
attribute for: ``skillbank.task`` (a task that is not the first user message),
``skillbank.outcome.success`` and ``skillbank.outcome.detail``; without them success is
inferred as for OpenAI messages (no tool call failed). A trace with no user message and no
``skillbank.task`` (a skill run traced by `skillbank.tracing`) takes as its task the
outermost ``execute_tool`` span's tool and arguments, ``"<tool> <arguments as JSON>"``.

Errors name the file and line of the span, the record (the trace id) and the field, e.g.
``traces.json:3 (record '5b8e...'): resourceSpans[0].scopeSpans[0].spans[2].attributes
[gen_ai.tool.call.arguments]: ...``.

`to_otlp` writes records (`skillbank.trajectory.Trajectory.to_record`) as such a request:
per trajectory an ``invoke_agent`` root span, a chat span per model turn (full input history,
output message, tool definitions on the first) and an ``execute_tool`` span per call, at
fixed, increasing times, so the same records give the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skillbank.errors import TrajectoryError
from skillbank.formats import ChatRecord
from skillbank.json_types import json_type

__all__ = [
    "CHAT_OPERATIONS",
    "any_value",
    "attributes",
    "lines",
    "read_otlp",
    "read_otlp_lenient",
    "to_otlp",
    "trace_id_for",
]

JSON = Any

#: ``gen_ai.operation.name`` values of inference spans, whose messages give task and answer.
CHAT_OPERATIONS = frozenset({"chat", "generate_content", "text_completion"})
#: Status codes of OTLP JSON meaning an error (the enum's number or its name).
_ERROR_CODES = (2, "2", "STATUS_CODE_ERROR")

#: Where the writer starts its spans (2023-11-14T22:13:20Z) and how far apart they are.
_EPOCH_NS = 1_700_000_000_000_000_000
_TICK_NS = 1_000_000


# --------------------------------------------------------------------------- reading


@dataclass
class _Span:
    """One span, its attributes decoded to JSON values, and where it was read."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start: int
    end: int
    attributes: dict[str, JSON]
    status_code: JSON
    status_message: str
    source: str  # file:line
    path: str  # resourceSpans[i].scopeSpans[j].spans[k]
    order: int
    children: list[_Span] = field(default_factory=list)

    @property
    def operation(self) -> str:
        value = self.attributes.get("gen_ai.operation.name")
        return value if isinstance(value, str) else ""

    def fail(self, record: str, message: str, attribute: str = "") -> TrajectoryError:
        where = f"{self.source} (record {record!r})"
        at = f"{self.path}.attributes[{attribute}]" if attribute else self.path
        return TrajectoryError(message, source=where, field=at)


def _any_value(value: JSON, where: str) -> JSON:
    """An OTLP ``AnyValue`` as a JSON value (bytes as their base64 text)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: an attribute value must be an AnyValue object, got {value!r}")
    if not value:
        return None
    if len(value) != 1:
        raise ValueError(f"{where}: an AnyValue holds one value, got keys {sorted(value)}")
    kind, inner = next(iter(value.items()))
    if kind == "stringValue" and isinstance(inner, str):
        return inner
    if kind == "boolValue" and isinstance(inner, bool):
        return inner
    if kind == "intValue" and not isinstance(inner, bool):
        try:
            return int(inner)  # int64 is a string in OTLP JSON
        except (TypeError, ValueError):
            pass
    elif kind == "doubleValue" and not isinstance(inner, bool):
        try:
            return float(inner)
        except (TypeError, ValueError):
            pass
    elif kind == "bytesValue" and isinstance(inner, str):
        return inner
    elif kind == "arrayValue" and isinstance(inner, Mapping):
        values = inner.get("values", [])
        if isinstance(values, list):
            return [_any_value(v, f"{where}[{i}]") for i, v in enumerate(values)]
    elif kind == "kvlistValue" and isinstance(inner, Mapping):
        values = inner.get("values", [])
        if isinstance(values, list):
            return _key_values(values, where)
    raise ValueError(f"{where}: not a valid AnyValue: {value!r}")


def _key_values(items: Sequence[JSON], where: str) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise ValueError(f"{where}: an attribute must be {{'key': ..., 'value': ...}}")
        out[item["key"]] = _any_value(item.get("value", {}), f"{where}[{item['key']}]")
    return out


def _time(value: JSON) -> int:
    if value is None or isinstance(value, bool):
        return 0
    return int(value)


def _trace_id_at(obj: JSON, loc: Sequence[int | str]) -> str | None:
    """The ``traceId`` of the span a pydantic error location points into, if readable."""
    node = obj
    for step in loc[:6]:  # resourceSpans, i, scopeSpans, j, spans, k
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    found = node.get("traceId") if isinstance(node, Mapping) and len(loc) > 6 else None
    return found.lower() if isinstance(found, str) else None


def _spans(
    requests: Sequence[tuple[str, JSON]], errors: list[TrajectoryError] | None = None
) -> list[_Span]:
    """Every span of the requests, checked with pydantic and decoded.

    Args:
        requests: ``(source, decoded request)`` pairs.
        errors: Where a bad request's error goes, the request skipped; None: raise it.

    Raises:
        TrajectoryError: a request, span or attribute that is not OTLP JSON, naming its line
            (and the trace, when the span's id can be read), unless ``errors`` is given.
    """
    from pydantic import ValidationError as PydanticValidationError

    from skillbank.formats.otel_wire import TracesData

    spans: list[_Span] = []
    for source, obj in requests:
        try:
            data = TracesData.model_validate(obj)
        except PydanticValidationError as exc:
            err = exc.errors()[0]
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            trace_id = _trace_id_at(obj, err["loc"])
            error = TrajectoryError(
                f"not an OTLP JSON traces request: {err['msg']}",
                source=f"{source} (record {trace_id!r})" if trace_id else source,
                field=loc.lstrip("."),
            )
            if errors is None:
                raise error from None
            errors.append(error)
            continue
        for i, resource in enumerate(data.resourceSpans):
            for j, scope in enumerate(resource.scopeSpans):
                for k, span in enumerate(scope.spans):
                    path = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                    try:
                        attributes = _key_values(span.attributes, "attributes")
                    except ValueError as exc:
                        raise TrajectoryError(
                            str(exc), source=f"{source} (record {span.traceId.lower()!r})",
                            field=path,
                        ) from None  # fmt: skip
                    status = span.status
                    spans.append(
                        _Span(
                            trace_id=span.traceId.lower(),
                            span_id=span.spanId.lower(),
                            parent_id=span.parentSpanId.lower(),
                            name=span.name,
                            start=_time(span.startTimeUnixNano),
                            end=_time(span.endTimeUnixNano),
                            attributes=attributes,
                            status_code=status.code if status else 0,
                            status_message=(status.message or "") if status else "",
                            source=source,
                            path=path,
                            order=len(spans),
                        )
                    )
    return spans


def _structured(value: JSON) -> JSON:
    """A content attribute's value: structured as recorded, or decoded from its JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _arguments_text(value: JSON) -> str:
    """Tool-call arguments as the JSON text a chat tool call carries."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _result_text(value: JSON) -> str:
    """A tool result as the text of a chat tool message (JSON text; plain text stays text)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value  # plain text, as the tool gave it
        return value  # already JSON text: parsed back by the chat reader
    return json.dumps(value, ensure_ascii=False)


def _parts_text(parts: JSON) -> str:
    if not isinstance(parts, list):
        return ""
    return "".join(
        str(p.get("content", ""))
        for p in parts
        if isinstance(p, Mapping) and p.get("type") == "text"
    )


def _messages(span: _Span, record: str, attribute: str) -> list[JSON]:
    value = _structured(span.attributes.get(attribute))
    if value is None:
        return []
    if not isinstance(value, list):
        raise span.fail(
            record, f"must be a list of messages, got {type(value).__name__}", attribute
        )
    for n, message in enumerate(value):
        if not isinstance(message, Mapping) or not isinstance(message.get("parts", []), list):
            raise span.fail(
                record, f"message {n} must be an object with 'role' and 'parts'", attribute
            )
    return value


def _tool_definitions(span: _Span, record: str) -> list[dict[str, JSON]]:
    """The span's ``gen_ai.tool.definitions`` as Chat Completions tool definitions."""
    value = _structured(span.attributes.get("gen_ai.tool.definitions"))
    if value is None:
        return []
    if not isinstance(value, list):
        raise span.fail(
            record, f"must be a list of tool definitions, got {value!r}", "gen_ai.tool.definitions"
        )
    out: list[dict[str, JSON]] = []
    for n, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise span.fail(
                record, f"tool definition {n} must be an object", "gen_ai.tool.definitions"
            )
        if item.get("type", "function") != "function":
            continue  # a built-in tool (web search, code interpreter): never a function call
        inner = item.get("function")
        function: Mapping[str, JSON] = inner if isinstance(inner, Mapping) else item
        out.append(
            {
                "type": "function",
                "function": {k: v for k, v in function.items() if k != "type"},
            }
        )
    return out


def _infer_parameters(calls: Sequence[Mapping[str, JSON]]) -> dict[str, JSON]:
    """A JSON Schema for a tool's arguments from the argument objects it was called with."""
    properties: dict[str, JSON] = {}
    for args in calls:
        for key, value in args.items():
            kinds = properties.setdefault(key, [])
            kind = json_type(value) or "string"
            if kind not in kinds:
                kinds.append(kind)
    schema_props: dict[str, JSON] = {}
    for key, kinds in properties.items():
        if kinds == ["integer", "number"] or kinds == ["number", "integer"]:
            kinds = ["number"]
        schema_props[key] = {"type": kinds[0] if len(kinds) == 1 else kinds}
    required = [k for k in properties if all(k in args for args in calls)]
    return {"type": "object", "properties": schema_props, "required": required}


def _decoded_arguments(span: _Span, record: str) -> dict[str, JSON]:
    raw = span.attributes.get("gen_ai.tool.call.arguments")
    value = _structured(raw) if raw is not None else {}
    if isinstance(raw, str) and value is raw:
        raise span.fail(
            record, f"arguments are not valid JSON: {raw!r}", "gen_ai.tool.call.arguments"
        )
    if not isinstance(value, dict):
        raise span.fail(
            record, f"arguments must be a JSON object, got {value!r}", "gen_ai.tool.call.arguments"
        )
    return value


def _failed(span: _Span) -> str | None:
    """The error text of a failed call, None when it succeeded."""
    error_type = span.attributes.get("error.type")
    if span.status_code in _ERROR_CODES or error_type:
        return span.status_message or (str(error_type) if error_type else "") or "error"
    return None


def _trace(spans: list[_Span]) -> ChatRecord:
    """One trace's spans as a Chat Completions record."""
    spans.sort(key=lambda s: (s.start, s.order))
    first = spans[0]
    trace_id = first.trace_id
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        parent = by_id.get(span.parent_id)
        if parent is not None and parent is not span:
            parent.children.append(span)

    def attr(name: str) -> JSON:
        return next((s.attributes[name] for s in spans if name in s.attributes), None)

    given_id = attr("skillbank.trajectory.id")
    rid = given_id if isinstance(given_id, str) and given_id else trace_id
    record_label = rid
    where = f"{first.source} (record {rid!r})"

    tool_spans = [s for s in spans if s.operation == "execute_tool"]
    steps = [s for s in tool_spans if not any(c.operation == "execute_tool" for c in s.children)]
    chats = [
        s
        for s in spans
        if s.operation in CHAT_OPERATIONS or "gen_ai.input.messages" in s.attributes
    ]

    messages: list[dict[str, JSON]] = []
    locations: list[tuple[_Span, dict[str, str]]] = []
    task: str | None = None
    for chat in chats:
        for message in _messages(chat, record_label, "gen_ai.input.messages"):
            if message.get("role") == "user" and _parts_text(message.get("parts")).strip():
                task = _parts_text(message.get("parts")).strip()
                break
        if task is not None:
            messages.append({"role": "user", "content": task})
            locations.append((chat, {"": ".attributes[gen_ai.input.messages]"}))
            break

    tools: list[dict[str, JSON]] = []
    for span in spans:
        for definition in _tool_definitions(span, record_label):
            name = definition["function"].get("name")
            if all(t["function"].get("name") != name for t in tools):
                tools.append(definition)

    calls_by_tool: dict[str, list[dict[str, JSON]]] = {}
    descriptions: dict[str, str] = {}
    if steps:
        for span in steps:
            name = span.attributes.get("gen_ai.tool.name")
            if not isinstance(name, str) or not name:
                raise span.fail(record_label, f"the tool's name is missing, got {name!r}",
                                "gen_ai.tool.name")  # fmt: skip
            call_id = span.attributes.get("gen_ai.tool.call.id")
            call_id = call_id if isinstance(call_id, str) and call_id else f"span_{span.span_id}"
            args = _decoded_arguments(span, record_label)
            calls_by_tool.setdefault(name, []).append(args)
            description = span.attributes.get("gen_ai.tool.description")
            if isinstance(description, str) and description:
                descriptions.setdefault(name, description)
            function = {"name": name, "arguments": _arguments_text(args)}
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": call_id, "type": "function", "function": function}],
                }
            )
            locations.append(
                (
                    span,
                    {
                        ".tool_calls[0].function.name": ".attributes[gen_ai.tool.name]",
                        ".tool_calls[0].function.arguments": (
                            ".attributes[gen_ai.tool.call.arguments]"
                        ),
                        ".tool_calls[0].id": ".attributes[gen_ai.tool.call.id]",
                        "": "",
                    },
                )
            )
            error = _failed(span)
            answer_msg: dict[str, JSON] = {"role": "tool", "tool_call_id": call_id}
            if error is not None:
                answer_msg.update(content=error, is_error=True)
            else:
                answer_msg["content"] = _result_text(span.attributes.get("gen_ai.tool.call.result"))
            messages.append(answer_msg)
            locations.append((span, {"": ".attributes[gen_ai.tool.call.result]"}))
    elif chats:
        last = chats[-1]
        history = _messages(last, record_label, "gen_ai.input.messages")
        history += _messages(last, record_label, "gen_ai.output.messages")[:1]
        seen_user = False
        for message in history:
            role = message.get("role")
            parts = message.get("parts", [])
            if role == "user" and not seen_user and _parts_text(parts).strip():
                seen_user = True  # the task, already the first message
                continue
            for part in parts:
                if not isinstance(part, Mapping):
                    continue
                if part.get("type") == "tool_call":
                    name = part.get("name")
                    call_id = part.get("id") or f"call_{len(messages)}"
                    args = _structured(part.get("arguments"))
                    if isinstance(args, dict) and isinstance(name, str):
                        calls_by_tool.setdefault(name, []).append(args)
                    function = {"name": name, "arguments": _arguments_text(args)}
                    messages.append({"role": "assistant", "content": None, "tool_calls": [
                        {"id": str(call_id).strip(), "type": "function", "function": function}
                    ]})  # fmt: skip
                    locations.append((last, {"": ".attributes[gen_ai.input.messages]"}))
                elif part.get("type") == "tool_call_response":
                    response = part.get("response", part.get("result"))
                    messages.append({"role": "tool", "tool_call_id": str(part.get("id")).strip(),
                                     "content": _result_text(response)})  # fmt: skip
                    locations.append((last, {"": ".attributes[gen_ai.input.messages]"}))

    answer = ""
    if chats:
        outputs = _messages(chats[-1], record_label, "gen_ai.output.messages")
        if outputs:
            answer = _parts_text(outputs[0].get("parts")).strip()
    if answer:
        messages.append({"role": "assistant", "content": answer})
        locations.append((chats[-1], {"": ".attributes[gen_ai.output.messages]"}))

    defined = {t["function"].get("name") for t in tools}
    for name, calls in calls_by_tool.items():
        if name not in defined:
            inferred: dict[str, JSON] = {"name": name}
            if name in descriptions:
                inferred["description"] = descriptions[name]
            inferred["parameters"] = _infer_parameters(calls)
            tools.append({"type": "function", "function": inferred})

    record: dict[str, JSON] = {"id": rid, "messages": messages, "tools": tools}
    given_task = attr("skillbank.task")
    if isinstance(given_task, str) and given_task:
        record["task"] = given_task
    elif task is None and tool_spans:
        tool_ids = {s.span_id for s in tool_spans}
        outer = next(s for s in tool_spans if s.parent_id not in tool_ids)
        name = outer.attributes.get("gen_ai.tool.name", outer.name)
        args = _decoded_arguments(outer, record_label)
        record["task"] = f"{name} {json.dumps(args, ensure_ascii=False, sort_keys=True)}"
    if not messages and isinstance(record.get("task"), str):
        messages.append({"role": "user", "content": record["task"]})  # nothing else happened
        locations.append((first, {"": ""}))
    success = attr("skillbank.outcome.success")
    if isinstance(success, bool):
        outcome: dict[str, JSON] = {"success": success}
        detail = attr("skillbank.outcome.detail")
        if isinstance(detail, str) and detail:
            outcome["detail"] = detail
        record["outcome"] = outcome

    def locate(chat_field: str) -> str:
        found = re.match(r"^messages\[(\d+)\](.*)$", chat_field)
        if found is None:
            if chat_field.startswith("tools"):
                return f"{first.path}.attributes[gen_ai.tool.definitions]"
            return chat_field
        index, rest = int(found.group(1)), found.group(2)
        if index >= len(locations):
            return chat_field
        span, mapping = locations[index]
        for prefix, target in mapping.items():
            if prefix and rest.startswith(prefix):
                return span.path + target + rest[len(prefix) :]
        return span.path + mapping.get("", "")

    return ChatRecord(source=first.source, where=where, record=record, locate=locate)


def read_otlp(requests: Sequence[tuple[str, JSON]], path: str = "") -> list[ChatRecord]:
    """Read OTLP JSON traces requests into one Chat Completions record per trace id.

    Args:
        requests: ``(source, decoded request)`` pairs, ``source`` naming file and line.
        path: The file they came from (for messages).

    Returns:
        One record per trace, in the order each trace's first span was read.

    Raises:
        TrajectoryError: the first malformed request, span or attribute (file, line, record
            and field named).
    """
    traces: dict[str, list[_Span]] = {}
    for span in _spans(requests):
        traces.setdefault(span.trace_id, []).append(span)
    return [_trace(spans) for spans in traces.values()]


def read_otlp_lenient(
    requests: Sequence[tuple[str, JSON]], path: str = ""
) -> list[ChatRecord | TrajectoryError]:
    """`read_otlp`, keeping the good traces: a request (line) or trace that fails comes back
    as its error, and the rest is read."""
    errors: list[TrajectoryError] = []
    traces: dict[str, list[_Span]] = {}
    for span in _spans(requests, errors):
        traces.setdefault(span.trace_id, []).append(span)
    out: list[ChatRecord | TrajectoryError] = list(errors)
    for spans in traces.values():
        try:
            out.append(_trace(spans))
        except TrajectoryError as exc:
            out.append(exc)
    return out


# --------------------------------------------------------------------------- writing


def trace_id_for(trajectory_id: str) -> str:
    """The trace id the writer gives a trajectory: 32 hex digits of its id's sha256."""
    return hashlib.sha256(trajectory_id.encode("utf-8")).hexdigest()[:32]


def _span_id(trace_id: str, n: int) -> str:
    return hashlib.sha256(f"{trace_id}/{n}".encode()).hexdigest()[:16]


def any_value(value: JSON) -> dict[str, JSON]:
    """A JSON value as an OTLP JSON ``AnyValue`` (objects as ``kvlistValue``)."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": attributes(value)}}
    return {"arrayValue": {"values": [any_value(v) for v in value]}}


def attributes(values: Mapping[str, JSON]) -> list[dict[str, JSON]]:
    """Attributes as OTLP JSON key-value pairs, in the mapping's order."""
    return [{"key": k, "value": any_value(v)} for k, v in values.items()]


def _dumps(value: JSON) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _record_spans(record: Mapping[str, JSON]) -> list[dict[str, JSON]]:
    rid = str(record.get("id") or "")
    trace_id = trace_id_for(rid)
    tools = [
        {"type": "function", **dict(t["function"])}
        for t in record.get("tools", [])
        if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)
    ]
    messages = [m for m in record.get("messages", []) if isinstance(m, Mapping)]
    spans: list[dict[str, JSON]] = []
    clock = [_EPOCH_NS]

    def span(
        name: str, attrs: Mapping[str, JSON], parent: str, error: str | None = None
    ) -> dict[str, JSON]:
        start = clock[0]
        clock[0] += _TICK_NS
        out: dict[str, JSON] = {
            "traceId": trace_id,
            "spanId": _span_id(trace_id, len(spans)),
            "parentSpanId": parent,
            "name": name,
            "kind": 3 if name.startswith("chat") else 1,  # CLIENT for inference, else INTERNAL
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + _TICK_NS // 2),
            "attributes": attributes(attrs),
            "status": {"code": 2, "message": error} if error is not None else {},
        }
        spans.append(out)
        return out

    root_attrs: dict[str, JSON] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "skillbank",
        "skillbank.trajectory.id": rid,
    }
    first_user = next(
        (str(m.get("content") or "").strip() for m in messages if m.get("role") == "user"), None
    )
    task = record.get("task")
    if isinstance(task, str) and task != first_user:
        root_attrs["skillbank.task"] = task
    outcome = record.get("outcome")
    answer = ""
    if isinstance(outcome, Mapping):
        root_attrs["skillbank.outcome.success"] = bool(outcome.get("success"))
    root = span("invoke_agent skillbank", root_attrs, "")
    root_id = str(root["spanId"])

    history: list[dict[str, JSON]] = []
    system: list[dict[str, JSON]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        if role in ("system", "developer"):
            system.append({"type": "text", "content": text})
        elif role == "user":
            history.append({"role": "user", "parts": [{"type": "text", "content": text}]})
        elif role == "assistant" and message.get("tool_calls"):
            parts = []
            for call in message["tool_calls"]:
                function = call.get("function", {})
                try:
                    args = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    args = function.get("arguments")
                parts.append(
                    {"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                     "arguments": args}
                )  # fmt: skip
            chat_attrs: dict[str, JSON] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.input.messages": _dumps(history),
                "gen_ai.output.messages": _dumps(
                    [{"role": "assistant", "parts": parts, "finish_reason": "tool_call"}]
                ),
            }
            if system:
                chat_attrs["gen_ai.system_instructions"] = _dumps(system)
            if tools:
                chat_attrs["gen_ai.tool.definitions"] = _dumps(tools)
            span("chat", chat_attrs, root_id)
            history.append({"role": "assistant", "parts": parts})
        elif role == "assistant":
            answer = text
        elif role == "tool":
            call_id = message.get("tool_call_id")
            call = next(
                (
                    c
                    for m in messages
                    for c in (m.get("tool_calls") or [])
                    if isinstance(c, Mapping) and c.get("id") == call_id
                ),
                None,
            )
            function = call.get("function", {}) if call else {}
            try:
                args = json.loads(function.get("arguments") or "{}")
            except ValueError:
                args = function.get("arguments")
            tool_attrs: dict[str, JSON] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": function.get("name"),
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.call.arguments": _dumps(args),
            }
            error = None
            if message.get("is_error"):
                error = text or "error"
                tool_attrs["error.type"] = "ToolError"
                response: JSON = error
            else:
                tool_attrs["gen_ai.tool.call.result"] = text
                try:
                    response = json.loads(text)
                except ValueError:
                    response = text
            span(f"execute_tool {function.get('name')}", tool_attrs, root_id, error)
            history.append(
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": call_id,
                                            "response": response}]}
            )  # fmt: skip
    if answer:
        final_attrs: dict[str, JSON] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.input.messages": _dumps(history),
            "gen_ai.output.messages": _dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": answer}],
                        "finish_reason": "stop",
                    }
                ]
            ),  # fmt: skip
        }
        if system:
            final_attrs["gen_ai.system_instructions"] = _dumps(system)
        if tools and not any(s["name"] == "chat" for s in spans):
            final_attrs["gen_ai.tool.definitions"] = _dumps(tools)
        span("chat", final_attrs, root_id)
    elif tools and not any(s["name"] == "chat" for s in spans):
        root["attributes"] += attributes({"gen_ai.tool.definitions": _dumps(tools)})
    if not any(s["name"] == "chat" for s in spans) and "skillbank.task" not in root_attrs:
        # No chat span holds the user message: the task goes where the reader looks next.
        given = task if isinstance(task, str) else first_user
        if given:
            root["attributes"] += attributes({"skillbank.task": given})
    if isinstance(outcome, Mapping):
        detail = outcome.get("detail")
        if isinstance(detail, str) and detail and detail != answer:
            root["attributes"] += attributes({"skillbank.outcome.detail": detail})
    return spans


def to_otlp(records: Sequence[Mapping[str, JSON]], service: str = "skillbank") -> dict[str, JSON]:
    """Chat Completions records as one OTLP JSON traces request (one trace per record).

    Each record needs an ``id``: its trace id is `trace_id_for` that id, and the id is kept
    in ``skillbank.trajectory.id``, so reading the request back gives the same records.
    """
    spans = [s for record in records for s in _record_spans(record)]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes({"service.name": service})},
                "scopeSpans": [{"scope": {"name": "skillbank"}, "spans": spans}],
            }
        ]
    }


def lines(requests: Sequence[Mapping[str, JSON]]) -> str:
    """Requests as the file exporter writes them: one compact JSON object per line."""
    return "".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in requests
    )
