"""Skills as tools for a model: one canonical JSON Schema per skill, rendered three ways.

The canonical schema is the skill's signature as JSON Schema, read from its syntax tree once,
when the skill is loaded (``skill.signature.schema``; the code is never imported). It is
rendered for

- Chat Completions: ``{"type": "function", "function": {"name", "description",
  "parameters", "strict"}}``,
- the Responses API: ``{"type": "function", "name", "description", "parameters", "strict"}``,
- MCP: ``{"name", "description", "inputSchema", "outputSchema"}`` (``outputSchema`` only when
  the return value is an object, as MCP requires).

**Strict mode** (OpenAI structured outputs) is used where the schema allows it. `strict_schema`
makes every object list all its properties in ``required`` with ``additionalProperties:
false``, and turns an optional parameter into a required one that may be ``null``: the model
sends ``null`` for "not given", and the argument check turns that back into an omitted
argument, so the skill's own default applies (`skillbank.signature.check_arguments` with
``strict_nulls``; `decode_arguments` alone). Annotation keywords (``default``, ``title``,
``examples``, ...) are dropped; a skill's defaults are named in the tool's description
instead. A schema cannot be strict, and is sent as it is with ``strict: false``, when:

- it has a free-form object (``dict``, or ``dict[str, T]``: keys not known in advance),
  an array without an item type (``list``), or a value of any type;
- it uses a keyword outside ``type``, ``enum``, ``const``, ``anyOf``, ``items``,
  ``properties``, ``required``, ``additionalProperties`` and ``description`` (``pattern``,
  ``minLength``, ``format``, ``$ref``, ``oneOf``, ...): dropping it would let through values
  the schema refuses;
- ``null`` would be ambiguous: an optional value that may itself be ``null`` but whose
  default is not ``null`` (``Optional[str] = "x"``, or a ``NotRequired[Optional[str]]``
  TypedDict field), or a union of several object (or array) types one of which has optional
  fields, so that the branch a ``null`` belongs to cannot be told;
- it goes over OpenAI's size limits (objects nested more than 10 deep, more than 5000
  properties or 1000 enum values, more than 120,000 characters of names and values).

The other half of the contract is the ``role: "tool"`` message a call gets back
(`skillbank.bank.SkillBank.call_tool`): compact, key-sorted JSON, ``{"ok": true, "value":
...}`` or ``{"ok": false, "error": {"type", "message", "hint", ...}}`` (`tool_result`,
`tool_error`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from skillbank.errors import SkillArgumentError
from skillbank.json_types import JSON_TYPES, json_type
from skillbank.signature import check_arguments, schema_of
from skillbank.skill import Skill, docstring_args

__all__ = [
    "ToolErrorType",
    "ToolFormat",
    "canonical_schema",
    "chat_tool",
    "decode_arguments",
    "mcp_tool",
    "render_tools",
    "responses_tool",
    "strict_schema",
    "tool_description",
    "tool_error",
    "tool_result",
]

JSONSchema = dict[str, Any]

#: The tool-definition formats `render_tools` writes.
ToolFormat = Literal["chat", "responses", "mcp"]

#: The kinds of error a tool call can come back with.
ToolErrorType = Literal[
    "unknown_skill",  # no skill by that name; the hint lists close names
    "invalid_json",  # the arguments are not JSON text
    "invalid_arguments",  # not a JSON object, or not fitting the signature (the hint)
    "missing_tool",  # the host did not provide a tool the skill needs
    "skill_failed",  # the skill ran and failed in the sandbox
    "unavailable",  # the skill cannot be run (a broken library, a missing required skill)
    "internal_error",  # a bug; never expected
]

#: Keywords a strict schema may keep (what this vocabulary needs, and OpenAI accepts).
_STRICT_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "anyOf",
        "items",
        "properties",
        "required",
        "additionalProperties",
        "description",
    }
)
#: Keywords that only annotate: dropped from a strict schema (OpenAI refuses ``default``).
_ANNOTATIONS = frozenset(
    {"default", "title", "examples", "$comment", "$schema", "deprecated", "readOnly", "writeOnly"}
)

#: OpenAI's limits for a strict schema.
MAX_NESTING = 10
MAX_PROPERTIES = 5000
MAX_ENUM_VALUES = 1000
MAX_STRING_CHARS = 120_000


# ----------------------------------------------------------------------- the canonical schema


def canonical_schema(skill: Skill) -> dict[str, Any]:
    """The JSON Schema of a skill's arguments, as read from its source when it was loaded.

    An object schema with every parameter under ``properties``, the ones without a default
    in ``required``, and ``additionalProperties: false``; a parameter with a default carries
    it as ``default``. A fresh copy each call.

    Raises:
        SkillRejected: the source has no readable signature (a stored skill always has one).
    """
    return copy.deepcopy(schema_of(skill).parameters)


def _return_schema(skill: Skill) -> JSONSchema:
    return copy.deepcopy(schema_of(skill).returns)


# ----------------------------------------------------------------------------- strict mode


class _NotStrict(Exception):
    """The schema cannot be made strict without changing what it accepts."""


class _Budget:
    """What a strict schema has used of OpenAI's size limits."""

    def __init__(self) -> None:
        self.properties = 0
        self.enum_values = 0
        self.chars = 0

    def spend(self, *, properties: int = 0, enum_values: int = 0, chars: int = 0) -> None:
        self.properties += properties
        self.enum_values += enum_values
        self.chars += chars
        if (
            self.properties > MAX_PROPERTIES
            or self.enum_values > MAX_ENUM_VALUES
            or self.chars > MAX_STRING_CHARS
        ):
            raise _NotStrict


def _types(schema: Mapping[str, Any]) -> list[str]:
    """The ``type`` keyword as a list (empty when absent)."""
    kind = schema.get("type")
    if kind is None:
        return []
    kinds = [kind] if isinstance(kind, str) else kind
    if not isinstance(kinds, list) or not kinds or not all(k in JSON_TYPES for k in kinds):
        raise _NotStrict
    return list(kinds)


def _admits_null(schema: Mapping[str, Any]) -> bool:
    """Whether ``null`` is a valid value for the schema (of this vocabulary)."""
    if "anyOf" in schema:
        return any(isinstance(b, Mapping) and _admits_null(b) for b in schema["anyOf"])
    if "enum" in schema:
        return any(v is None for v in schema["enum"])
    if "const" in schema:
        return schema["const"] is None
    kind = schema.get("type")
    if kind is None:
        return True  # any value
    return kind == "null" or (isinstance(kind, list) and "null" in kind)


def _containers(schema: Mapping[str, Any]) -> set[str]:
    """Which of "object" and "array" a schema's values may be."""
    if isinstance(schema.get("anyOf"), list):
        return set().union(*(_containers(b) for b in schema["anyOf"] if isinstance(b, Mapping)))
    kind = schema.get("type")
    kinds = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    return kinds & {"object", "array"}


def _has_optional(schema: Any) -> bool:
    """Whether an object anywhere in the schema has a property that is not required."""
    if isinstance(schema, list):
        return any(_has_optional(s) for s in schema)
    if not isinstance(schema, Mapping):
        return False
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and (
        set(properties) - set(schema.get("required", ()))
        or any(_has_optional(p) for p in properties.values())
    ):
        return True
    return any(_has_optional(schema.get(k)) for k in ("items", "anyOf", "additionalProperties"))


def _enum_types(values: list[Any]) -> list[str]:
    kinds = set()
    for value in values:
        kind = json_type(value)
        if kind in (None, "array", "object"):  # fine for JSON Schema, not for strict mode
            raise _NotStrict
        kinds.add(kind)
    return sorted(kinds)


def _nullable(schema: JSONSchema) -> JSONSchema:
    """The schema widened by ``null`` (it does not admit null yet)."""
    kinds = schema.get("type")
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    if "enum" in schema:
        out = {**schema, "enum": [*schema["enum"], None]}
        if kinds is not None:
            out["type"] = [*([kinds] if isinstance(kinds, str) else kinds), "null"]
        return out
    if isinstance(kinds, str) and kinds not in ("object", "array") and "const" not in schema:
        return {**schema, "type": [kinds, "null"]}
    if isinstance(kinds, list) and "const" not in schema and not {"object", "array"} & set(kinds):
        return {**schema, "type": [*kinds, "null"]}
    inner = {k: v for k, v in schema.items() if k != "description"}
    out = {"anyOf": [inner, {"type": "null"}]}
    if "description" in schema:
        out["description"] = schema["description"]
    return out


def _strict(schema: Any, depth: int, budget: _Budget) -> JSONSchema:
    if not isinstance(schema, Mapping) or depth > MAX_NESTING:
        raise _NotStrict
    if set(schema) - _STRICT_KEYWORDS - _ANNOTATIONS:
        raise _NotStrict
    out: JSONSchema = {k: copy.deepcopy(v) for k, v in schema.items() if k in _STRICT_KEYWORDS}
    kinds = _types(schema)
    if not kinds and not {"enum", "const", "anyOf"} & set(schema):
        raise _NotStrict  # any value
    if "description" in schema and not isinstance(schema["description"], str):
        raise _NotStrict
    if "anyOf" in schema:
        branches = schema["anyOf"]
        if not isinstance(branches, list) or not branches:
            raise _NotStrict
        for kind in ("object", "array"):
            holders = [b for b in branches if kind in _containers(b)]
            if len(holders) > 1 and _has_optional(holders):
                raise _NotStrict  # the argument check could not tell which branch a null is in
        out["anyOf"] = [_strict(b, depth, budget) for b in branches]
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise _NotStrict
        budget.spend(
            enum_values=len(values), chars=sum(len(v) for v in values if isinstance(v, str))
        )
        if not kinds:
            found = _enum_types(values)
            out["type"] = found[0] if len(found) == 1 else found
    if "const" in schema:
        value = schema["const"]
        budget.spend(chars=len(value) if isinstance(value, str) else 0)
    if "array" in kinds:
        if not isinstance(schema.get("items"), Mapping):
            raise _NotStrict  # strict mode needs an item type
        out["items"] = _strict(schema["items"], depth + 1, budget)
    elif "items" in schema:
        raise _NotStrict
    if "object" in kinds:
        out.update(_strict_object(schema, depth, budget))
    elif {"properties", "required", "additionalProperties"} & set(schema):
        raise _NotStrict
    return out


def _strict_object(schema: Mapping[str, Any], depth: int, budget: _Budget) -> JSONSchema:
    properties = schema.get("properties")
    if (
        not isinstance(properties, Mapping)
        or schema.get("additionalProperties", False) is not False
    ):
        raise _NotStrict  # free-form keys: strict mode allows only the listed properties
    required = schema.get("required", [])
    if not isinstance(required, list) or set(required) - set(properties):
        raise _NotStrict
    budget.spend(properties=len(properties), chars=sum(len(k) for k in properties))
    converted: JSONSchema = {}
    for name, prop in properties.items():
        strict = _strict(prop, depth + 1, budget)
        if name not in required:
            if _admits_null(prop) and not ("default" in prop and prop["default"] is None):
                raise _NotStrict  # null would mean both "omitted" and "null"
            if not _admits_null(prop):
                strict = _nullable(strict)
        converted[name] = strict
    return {"properties": converted, "required": list(properties), "additionalProperties": False}


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The strict-mode (OpenAI structured outputs) form of an object schema, or None.

    Every object gets all its properties in ``required`` and ``additionalProperties:
    false``; an optional property becomes nullable (``"type": ["string", "null"]``, or an
    added ``{"type": "null"}`` branch); annotations such as ``default`` are dropped; an
    ``enum`` gets the ``type`` of its values. None when the schema cannot be strict without
    changing what it accepts (see the module docstring).
    """
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return None  # strict mode wants an object at the root
    try:
        return _strict(schema, 0, _Budget())
    except (_NotStrict, RecursionError):
        return None


# ---------------------------------------------------------------------------- decoding


def decode_arguments(skill: Skill, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Undo strict mode: a ``null`` sent for an optional parameter (or optional TypedDict
    field) means it was left out, so it is omitted and the default applies.

    A ``null`` is kept where it is a value the parameter takes itself and its default is
    not ``null`` (such schemas are never strict). A model's tool call does not need this:
    `skillbank.signature.check_arguments` with ``strict_nulls=True`` decodes while it
    checks, in one pass. This is the decoding alone, for a host that runs the arguments
    some other way; like the check, it also passes a whole float for an int as an int.
    Arguments that do not fit the signature come back unchanged, for a check to refuse.
    """
    try:
        return dict(check_arguments(skill, arguments, strict_nulls=True))
    except SkillArgumentError:
        return dict(arguments)


# ----------------------------------------------------------------------------- rendering


def tool_description(skill: Skill) -> str:
    """The skill's description and one line per argument (its docstring text, its default).

    Strict mode cannot carry a parameter's default in the schema, so it is named here.
    """
    schema = canonical_schema(skill)
    docs = docstring_args(skill.signature.docstring)
    lines = [" ".join(skill.description.split())]
    args = []
    for name, prop in schema["properties"].items():
        label = name
        if "default" in prop:
            default = json.dumps(prop["default"], ensure_ascii=False, sort_keys=True)
            label = f"{name} (optional, default {default})"
        text = docs.get(name, "")
        if text or label != name:
            args.append(f"- {label}: {text}" if text else f"- {label}")
    if args:
        lines += ["Args:", *args]
    return "\n".join(lines)


def _parameters(skill: Skill) -> tuple[JSONSchema, bool]:
    canonical = canonical_schema(skill)
    strict = strict_schema(canonical)
    return (canonical, False) if strict is None else (strict, True)


def chat_tool(skill: Skill) -> dict[str, Any]:
    """The skill as a Chat Completions tool: ``{"type": "function", "function": {...}}``.

    ``parameters`` is the strict schema with ``strict: true`` when the signature allows it,
    else the canonical schema with ``strict: false``.
    """
    parameters, strict = _parameters(skill)
    return {
        "type": "function",
        "function": {
            "name": skill.id,
            "description": tool_description(skill),
            "parameters": parameters,
            "strict": strict,
        },
    }


def responses_tool(skill: Skill) -> dict[str, Any]:
    """The skill as a Responses API tool (flat): ``{"type": "function", "name", ...}``."""
    parameters, strict = _parameters(skill)
    return {
        "type": "function",
        "name": skill.id,
        "description": tool_description(skill),
        "parameters": parameters,
        "strict": strict,
    }


def mcp_tool(skill: Skill) -> dict[str, Any]:
    """The skill as an MCP tool: ``name``, ``description``, ``inputSchema`` (canonical).

    ``outputSchema`` is there when the return annotation is an object (``dict``, a
    TypedDict), since MCP requires ``"type": "object"`` at its root.
    """
    tool: dict[str, Any] = {
        "name": skill.id,
        "description": tool_description(skill),
        "inputSchema": canonical_schema(skill),
    }
    returns = _return_schema(skill)
    if returns.get("type") == "object":
        tool["outputSchema"] = returns
    return tool


_RENDER = {"chat": chat_tool, "responses": responses_tool, "mcp": mcp_tool}


def render_tools(skills: Iterable[Skill], fmt: ToolFormat) -> list[dict[str, Any]]:
    """Tool definitions for ``skills``, in the order given, in one format.

    Raises:
        ValueError: ``fmt`` is not "chat", "responses" or "mcp".
    """
    render = _RENDER.get(fmt)
    if render is None:
        raise ValueError(f"fmt={fmt!r} is not a tool format; use one of {sorted(_RENDER)}")
    return [render(skill) for skill in skills]


# ------------------------------------------------------------------------------- results


def _dumps(data: Mapping[str, Any]) -> str:
    # Compact and key-sorted: the same result is the same text (prompt caches, tests).
    return json.dumps(
        data, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    )


def tool_result(value: Any, *, warning: str | None = None) -> str:
    """The ``role: "tool"`` message text of a call that worked: ``{"ok": true, "value": ...}``.

    A ``warning`` (e.g. the skill is deprecated) is added when given.

    Raises:
        ValueError: ``value`` is not JSON data (NaN, or a non-JSON type).
    """
    data: dict[str, Any] = {"ok": True, "value": value}
    if warning:
        data["warning"] = warning
    try:
        return _dumps(data)
    except TypeError as exc:
        raise ValueError(f"the result is not JSON data: {exc}") from None


def tool_error(kind: ToolErrorType, message: str, hint: str, **details: Any) -> str:
    """The message text of a call that did not work, for the model to read and act on.

    ``{"ok": false, "error": {"type": kind, "message": ..., "hint": ..., **details}}``.
    """
    return _dumps(
        {"ok": False, "error": {"type": kind, "message": message, "hint": hint, **details}}
    )
