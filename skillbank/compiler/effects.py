"""Effects: whether a tool is a *query* (it reads, and changes nothing) or a *command*.

A procedure is what it changes: its commands, and where their arguments come from. Queries
matter only for what they feed a command, a condition or a loop. So every tool a skill may
call is classified, from three sources in this order:

1. **The bank's configuration** (`skillbank.config.Config.query_tools` and
   ``command_tools``): the bank's owner has the last word.
2. **The tool definition's annotations**, hints from the tool's author: an
   ``x-skillbank-effect`` key (``"query"`` or ``"command"``) in an OpenAI tool definition
   (beside ``name`` in ``function``, or beside ``function``), or MCP's
   ``annotations.readOnlyHint`` (true: a query; false: a command) and
   ``annotations.destructiveHint`` (true: a command).
3. **The tool's name**: a first word that only ever reads (`QUERY_VERBS`: ``get``, ``list``,
   ``find``, ``search``, ``check``, ``calculate``...) makes a query, in snake_case, camelCase
   or kebab-case alike. ``check`` counts as a read (``check_stock``); a tool named so that
   does change state (``check_in``) belongs in ``command_tools``.

Anything else is a **command**: treating a read as a write only keeps a step the skill could
have dropped, while treating a write as a read would drop something the procedure does.
Pure: no I/O, the same inputs give the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from skillbank.trajectory import EFFECT_KEY, ToolSpec

__all__ = [
    "EFFECT_KEY",
    "QUERY_VERBS",
    "Effect",
    "ToolEffect",
    "classify",
    "classify_tools",
]

#: What a tool does to the world.
Effect = Literal["query", "command"]
#: Where a classification came from, strongest first.
Source = Literal["configuration", "annotation", "name", "default"]

#: First words of tool names that only read. Deliberately short: a missing verb makes a
#: command, which is safe; a wrong one would drop a step that changes something.
QUERY_VERBS = frozenset(
    {
        "get", "list", "find", "search", "lookup", "look", "read", "fetch", "show", "view",
        "describe", "query", "count", "check", "calculate", "compute", "estimate", "preview",
        "validate", "verify", "inspect", "browse", "retrieve", "is", "has", "can", "exists",
    }
)  # fmt: skip

_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


@dataclass(frozen=True)
class ToolEffect:
    """A tool's class and where it came from."""

    #: The tool's name.
    tool: str
    #: "query" or "command".
    effect: Effect
    #: Which source decided: "configuration", "annotation", "name" or "default".
    source: Source
    #: The evidence, for a reader: ``"query_tools"``, ``"readOnlyHint: true"``,
    #: ``"name starts with 'get'"``, ``"no hint: a command, to be safe"``.
    why: str

    def describe(self) -> str:
        """``query (name starts with 'get')``: the class and its evidence, for reports."""
        return f"{self.effect} ({self.why})"

    def to_json(self) -> dict[str, str]:
        """The classification as JSON data."""
        return {"tool": self.tool, "effect": self.effect, "source": self.source, "why": self.why}


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name)]


def _from_annotations(spec: ToolSpec) -> tuple[Effect, str] | None:
    declared = spec.extra.get(EFFECT_KEY)
    if declared in ("query", "command"):
        return declared, f"{EFFECT_KEY}: {declared}"
    hints = spec.extra.get("annotations")
    if isinstance(hints, Mapping):
        read_only = hints.get("readOnlyHint")
        destructive = hints.get("destructiveHint")
        if read_only is True:
            return "query", "readOnlyHint: true"
        if destructive is True:
            return "command", "destructiveHint: true"
        if read_only is False:
            return "command", "readOnlyHint: false"
    return None


def classify(
    tool: str,
    spec: ToolSpec | None = None,
    *,
    query_tools: Collection[str] = (),
    command_tools: Collection[str] = (),
) -> ToolEffect:
    """Whether ``tool`` is a query or a command, and why (see the module docstring).

    Args:
        tool: The tool's name.
        spec: Its definition, whose annotations are hints (None: no definition known).
        query_tools: Tools the bank's owner declared queries.
        command_tools: Tools the bank's owner declared commands.
    """
    if tool in command_tools:
        return ToolEffect(tool, "command", "configuration", "command_tools")
    if tool in query_tools:
        return ToolEffect(tool, "query", "configuration", "query_tools")
    hinted = _from_annotations(spec) if spec is not None else None
    if hinted is not None:
        return ToolEffect(tool, hinted[0], "annotation", hinted[1])
    words = _words(tool)
    if words and words[0] in QUERY_VERBS:
        return ToolEffect(tool, "query", "name", f"name starts with {words[0]!r}")
    return ToolEffect(tool, "command", "default", "no hint: a command, to be safe")


def classify_tools(
    tools: Iterable[str],
    specs: Mapping[str, ToolSpec],
    *,
    query_tools: Collection[str] = (),
    command_tools: Collection[str] = (),
) -> dict[str, ToolEffect]:
    """`classify` for each of ``tools`` (sorted by name), with its definition from ``specs``."""
    return {
        name: classify(name, specs.get(name), query_tools=query_tools, command_tools=command_tools)
        for name in sorted(set(tools))
    }
