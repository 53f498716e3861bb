"""Trajectory formats besides OpenAI's, read and written through the Chat Completions record.

skillbank learns from OpenAI chat messages (`skillbank.trajectory`). The other formats are
converted at the edge, record by record, into that same Chat Completions record, which
`skillbank.trajectory` then parses and checks as it always did. So every format yields the
same `skillbank.trajectory.Trajectory` values, with the same checks (declared tools, calls
paired with their results, arguments that are JSON objects) and the same error messages,
relocated to name the field of the original format:

- `skillbank.formats.anthropic`: Anthropic Messages API transcripts (``tool_use`` and
  ``tool_result`` content blocks, tools with ``input_schema``, ``system``);
- `skillbank.formats.otel`: OpenTelemetry GenAI spans in OTLP JSON, as an OpenTelemetry
  Collector's file exporter writes them (``execute_tool`` spans, chat spans with
  ``gen_ai.input.messages``/``gen_ai.output.messages``), one trajectory per trace id.

Why here and not inside ``trajectory.py``: each format is its own module with its own wire
shapes, imported only when a record of that format is read (``skillbank list`` never pays
for pydantic or any format), and the modules never import ``skillbank.trajectory``. They map
dicts to dicts, so ``trajectory`` can dispatch to them without an import cycle, and each
writer (`anthropic.from_chat`, `otel.to_otlp`) takes the record
`skillbank.trajectory.Trajectory.to_record` writes.

`detect` tells a record's format from its content; ``skillbank learn --format`` forces one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from skillbank.errors import TrajectoryError

__all__ = ["FORMATS", "ChatRecord", "Format", "detect", "is_otlp", "record_object"]

JSON = Any

#: A trajectory format ``learn --format`` accepts (``auto``: tell each record by its content).
Format = Literal["auto", "openai", "anthropic", "otel"]
#: The formats, in the order `detect` tries them (OpenAI chat and Responses are one).
FORMATS: tuple[Format, ...] = ("auto", "openai", "anthropic", "otel")

#: Content block types only Anthropic's Messages API has (OpenAI's parts are text, image_url,
#: input_audio, file, refusal).
_ANTHROPIC_BLOCKS = frozenset(
    {
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "document",
        "search_result",
    }
)


def record_object(obj: JSON, source: str) -> tuple[dict[str, JSON], str]:
    """A message record as an object (a bare message list is its ``messages``), and where it
    is, for errors: ``source`` and, when the record has one, its id.

    Raises:
        TrajectoryError: the record is neither an object nor a list.
    """
    if isinstance(obj, list):
        obj = {"messages": obj}
    if not isinstance(obj, dict):
        raise TrajectoryError(
            f"expected a JSON object with 'messages' and 'tools', got {type(obj).__name__}",
            source=source,
        )
    rid = obj.get("id")
    return obj, f"{source} (record {rid!r})" if isinstance(rid, str) else source


@dataclass(frozen=True)
class ChatRecord:
    """A record of another format, rewritten as the Chat Completions record skillbank parses."""

    #: Where it came from, e.g. ``traces.json:3`` (the trajectory's `source`).
    source: str
    #: How errors name the record: the source and the record's id.
    where: str
    #: The Chat Completions record (``messages``, ``tools``, ``id``, ``task``, ``outcome``).
    record: dict[str, JSON]
    #: For a field of ``record`` (``messages[3].tool_calls[0].function.arguments``), the
    #: field of the original it came from (``messages[1].content[0].input``).
    locate: Callable[[str], str]


def is_otlp(obj: JSON) -> bool:
    """Whether a decoded JSON value is an OTLP JSON traces request (``resourceSpans``)."""
    return isinstance(obj, Mapping) and "resourceSpans" in obj


def _is_anthropic_message(message: JSON) -> bool:
    if not isinstance(message, Mapping):
        return False
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(block, Mapping) and block.get("type") in _ANTHROPIC_BLOCKS for block in content
    )


def detect(obj: JSON) -> Format:
    """The format of one decoded record, from its content.

    ``otel`` for an OTLP traces request; ``anthropic`` for a record (or bare message list)
    with Anthropic content blocks (``tool_use``, ``tool_result``, ...), tools with an
    ``input_schema``, or a top-level ``system``; ``openai`` otherwise (Chat Completions or
    Responses). A record of plain text messages reads the same in both message formats.
    """
    if is_otlp(obj):
        return "otel"
    messages = obj if isinstance(obj, list) else None
    if isinstance(obj, Mapping):
        if "system" in obj and "messages" in obj:
            return "anthropic"
        tools = obj.get("tools")
        if isinstance(tools, list) and any(
            isinstance(t, Mapping) and "input_schema" in t for t in tools
        ):
            return "anthropic"
        found = obj.get("messages")
        messages = found if isinstance(found, list) else None
    if messages is not None and any(_is_anthropic_message(m) for m in messages):
        return "anthropic"
    return "openai"
