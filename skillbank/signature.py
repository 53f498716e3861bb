"""Skill signatures as JSON Schema, read from the syntax tree with a closed type vocabulary.

`read_signature` reads a skill's `skillbank.skill.Signature` once per version of its source:
the text of each part for people, and the same signature as JSON Schema for machines (tool
definitions, generated inputs, and `check_arguments`, the one check every call's arguments
pass, against that schema).

A skill is called with JSON arguments and returns JSON, so its annotations say which JSON
values it takes and gives. They are read with libcst (the code is never imported) and mapped:

    str                          {"type": "string"}
    int                          {"type": "integer"}
    float                        {"type": "number"}
    bool                         {"type": "boolean"}
    None                         {"type": "null"}
    list, list[T]                {"type": "array"}, {"type": "array", "items": T}
    dict, dict[str, T]           {"type": "object"}, {"type": "object", "additionalProperties": T}
    Literal["a", 1, True, None]  {"enum": ["a", 1, true, null]}
    Optional[T], T | None,       {"anyOf": [...]}, flattened, without duplicates, in order
      Union[A, B]
    a TypedDict the skill        {"type": "object", "properties": {...}, "required": [...],
      declares                    "additionalProperties": false}

``typing.X`` and bare ``X`` are both accepted, and so are ``List``/``Dict`` for ``list``/``dict``.
A TypedDict is declared at the top of the skill, as ``class Order(TypedDict): ...`` (fields
only, an optional docstring, optional ``total=False``, ``Required[...]``/``NotRequired[...]``
fields, other declared TypedDicts as bases) or as ``Order = TypedDict("Order", {...})``.
Anything else (``Any``, ``set``, ``tuple``, classes, callables, ``object``) is refused with
`UnsupportedType`, whose ``reason`` says what to write instead.

Inside a skill module the reading also checks that an annotation can be evaluated in the
sandbox: without ``from __future__ import annotations`` the typing names must be imported
(``typing`` offers the sandbox's `sandbox.policy.TYPING_NAMES` only, so ``List``/``Dict``
become ``list``/``dict``), and a TypedDict must be declared above the function using it.

`check_arguments` walks the schema itself instead of handing it to a JSON Schema validator:
the vocabulary needs seven keywords, and in one pass the walk says what is wrong in the
annotation's own words with the path inside the argument (``'lines[0].quantity' ... must be
int``), passes ``2.0`` on as ``2``, drops strict-mode nulls, and spares every call the import
of ``jsonschema``. A property test holds it to the verdict of Draft 2020-12 (jsonschema).
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import math
import re
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NewType

from sandbox.policy import TYPING_NAMES
from skillbank.errors import SkillArgumentError, SkillRejected, UnsupportedType
from skillbank.findings import Finding, parse_finding
from skillbank.json_types import ANNOTATIONS, is_json_type, json_type
from skillbank.skill import Param, Signature, SignatureSchema, Skill, ValidatedSkill


class _LazyModule:
    """A module imported when one of its attributes is first read.

    libcst takes longer to import than a short command may run, and only reading a new
    source needs it: checking a call's arguments (``skillbank run``) reads the schema kept
    with the skill. The first read imports it under a lock, so threads that read a source
    at once (a server loading skills) all see the whole module; the standard library's
    ``LazyLoader`` gives them a half-initialised one on Python 3.11.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None
        self._lock = threading.Lock()

    def __getattr__(self, attribute: str) -> Any:
        module = self._module
        if module is None:
            with self._lock:
                if self._module is None:
                    self._module = importlib.import_module(self._name)
                module = self._module
        return getattr(module, attribute)


if TYPE_CHECKING:
    import libcst as cst
else:
    cst = _LazyModule("libcst")

__all__ = [
    "Arguments",
    "SignatureSchema",
    "UnsupportedType",
    "annotation_schema",
    "check_arguments",
    "docstring",
    "public_function",
    "read_signature",
    "rename_function",
    "schema_of",
    "signature_schema",
    "typeddict_schemas",
]

JSONSchema = dict[str, Any]


def rename_function(source: str, old: str, new: str) -> str:
    """``source`` with its top-level function ``old`` renamed ``new``; the rest byte for byte.

    Raises:
        ValueError: the source does not parse, or defines no top-level function ``old``.
    """
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise ValueError(f"the source does not parse: {exc}") from None
    body = list(module.body)
    for i, node in enumerate(body):
        if isinstance(node, cst.FunctionDef) and node.name.value == old:
            body[i] = node.with_changes(name=cst.Name(new))
            return module.with_changes(body=body).code
    raise ValueError(f"the source defines no top-level function {old!r}")


#: What a skill may write, quoted by every refusal.
VOCABULARY = (
    "str, int, float, bool, None, list, list[T], dict, dict[str, T], Literal[...] of str, int, "
    "bool or None values, Optional[T], T | None, Union[...] or a TypedDict the skill declares"
)

_SCALARS: dict[str, str] = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "None": "null",
}
_LISTS = frozenset({"list", "List"})
_DICTS = frozenset({"dict", "Dict"})
#: Typing constructs that only mean something with parameters.
_FORMS: dict[str, str] = {
    "Literal": 'Literal["a", "b"]',
    "Optional": "Optional[str]",
    "Union": "Union[str, int]",
    "Required": "Required[str]",
    "NotRequired": "NotRequired[str]",
}
#: Names spelled ``typing.X`` or bare ``X``.
_TYPING_CONSTRUCTS = frozenset({*_FORMS, "List", "Dict", "TypedDict"})

#: Advice for the types people reach for most often.
_ADVICE: dict[str, str] = {
    "Any": "Any says nothing about the value a caller must pass",
    "object": "object says nothing about the value a caller must pass",
    "tuple": "JSON has no tuples; use list[T]",
    "Tuple": "JSON has no tuples; use list[T]",
    "set": "JSON has no sets; use list[T]",
    "Set": "JSON has no sets; use list[T]",
    "frozenset": "JSON has no sets; use list[T]",
    "FrozenSet": "JSON has no sets; use list[T]",
    "bytes": "JSON has no bytes; use str",
    "bytearray": "JSON has no bytes; use str",
    "complex": "JSON has no complex numbers; use float",
    "Callable": "a skill takes JSON data, not functions",
    "Sequence": "use list[T]",
    "Iterable": "use list[T]",
    "Mapping": "use dict[str, T]",
    "MutableMapping": "use dict[str, T]",
    "Decimal": "JSON numbers are float or int; pass exact amounts as str",
    "datetime": "JSON has no dates; pass an ISO 8601 str",
    "date": "JSON has no dates; pass an ISO 8601 str",
    "TypedDict": "TypedDict declares a type (class Order(TypedDict): ...); annotate with its name",
    "TypeVar": "generic skills are not supported; use a concrete type",
}


class Problem(NamedTuple):
    """A rule broken at a node (`skillbank.validate` turns it into a located finding)."""

    #: The node to point at.
    node: cst.CSTNode
    #: The rule id, e.g. ``SB107``.
    rule: str
    #: What is wrong and what to do instead.
    message: str


class _Refusal(Exception):
    """An annotation node outside the vocabulary; the caller resolves its position."""

    def __init__(self, node: cst.CSTNode, reason: str) -> None:
        super().__init__(reason)
        self.node = node
        self.reason = reason


@dataclass(frozen=True)
class _Context:
    """What an annotation may refer to where it is read."""

    #: Declared TypedDicts usable here, by name.
    typeddicts: Mapping[str, JSONSchema]
    #: TypedDicts declared below this point (an evaluated annotation cannot see them yet).
    later: frozenset[str] = frozenset()
    #: TypedDicts whose declaration was refused.
    broken: frozenset[str] = frozenset()
    #: Typing names imported with ``from typing import``, when the annotation is evaluated
    #: at run time; None when it is not (nothing needs importing then).
    imported: frozenset[str] | None = None
    #: Whether ``import typing`` is present (for ``typing.X`` in evaluated annotations).
    typing_module: bool = False
    #: TypedDicts declared below, already read: an unevaluated (quoted) annotation sees them.
    below: Mapping[str, JSONSchema] = field(default_factory=dict)

    def unevaluated(self) -> _Context:
        """The context inside a quoted annotation: nothing there is evaluated."""
        seen = {**self.typeddicts, **self.below}
        return _Context(seen, self.later - seen.keys(), self.broken, None, True)


@functools.cache
def _empty_module() -> cst.Module:
    return cst.Module(body=[])


def _code(node: cst.CSTNode) -> str:
    return _empty_module().code_for_node(node)


def _dotted(node: cst.CSTNode) -> str | None:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name):
        return f"{node.value.value}.{node.attr.value}"
    return None


def _string_value(node: cst.BaseExpression) -> str | bytes | None:
    """The value of a string literal, or None when it is not one (or cannot be evaluated)."""
    if not isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        return None
    try:
        with warnings.catch_warnings():  # an invalid escape such as "\d" only warns
            warnings.simplefilter("ignore")
            return node.evaluated_value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _refusal(name: str) -> str:
    short = name.rsplit(".", 1)[-1]
    advice = _ADVICE.get(name) or _ADVICE.get(short)
    head = advice or f"{name!r} is not a type a skill can take or return"
    return f"{head} (allowed: {VOCABULARY})"


def _construct(node: cst.CSTNode, name: str, ctx: _Context) -> str | None:
    """The vocabulary word ``name`` spells (``typing.Optional`` -> ``Optional``), or None.

    Raises _Refusal when the word cannot be evaluated in the sandbox where it stands.
    """
    module, _, short = name.rpartition(".")
    if module:
        if module != "typing" or short not in _TYPING_CONSTRUCTS:
            return None
    elif short not in _SCALARS and short not in _LISTS | _DICTS and short not in _FORMS:
        return None
    if ctx.imported is None or short in _SCALARS or short in ("list", "dict"):
        return short
    if short in ("List", "Dict"):
        raise _Refusal(
            node,
            f"{name} is not available in the sandbox; write {short.lower()}[...] instead "
            "(or add `from __future__ import annotations`)",
        )
    if module and not ctx.typing_module:
        raise _Refusal(
            node, f"{name} is used but typing is not imported above; add `import typing`"
        )
    if not module and short not in ctx.imported:
        raise _Refusal(
            node,
            f"{short} is used but not imported above; add `from typing import {short}` at the top",
        )
    return short


def _union(members: Iterable[JSONSchema]) -> JSONSchema:
    flat: dict[str, JSONSchema] = {}
    for member in members:
        parts = member["anyOf"] if list(member) == ["anyOf"] else [member]
        for part in parts:
            flat.setdefault(json.dumps(part, sort_keys=True), part)
    schemas = list(flat.values())
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def _arguments(node: cst.Subscript) -> list[cst.BaseExpression]:
    args: list[cst.BaseExpression] = []
    for element in node.slice:
        if not isinstance(element.slice, cst.Index) or element.slice.star is not None:
            raise _Refusal(element, f"{_code(element)!r} is not a type; use {VOCABULARY}")
        args.append(element.slice.value)
    return args


def _literal_values(node: cst.BaseExpression, ctx: _Context) -> list[Any]:
    text = _string_value(node)
    if isinstance(text, str):
        return [text]
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        raise _Refusal(node, "Literal strings must be plain str literals (no bytes, f-strings)")
    if isinstance(node, cst.Name) and node.value in ("True", "False", "None"):
        return [{"True": True, "False": False, "None": None}[node.value]]
    number = node
    sign = 1
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)):
        number = node.expression
        sign = -1 if isinstance(node.operator, cst.Minus) else 1
    if isinstance(number, cst.Integer):
        try:
            return [sign * int(number.evaluated_value)]
        except (ValueError, SyntaxError):
            raise _Refusal(node, "this integer is too large for a Literal") from None
    if isinstance(node, cst.Subscript):
        base = _dotted(node.value)
        if base is not None and _construct(node.value, base, ctx) == "Literal":
            values: list[Any] = []
            for arg in _arguments(node):
                values += _literal_values(arg, ctx)
            return values
    raise _Refusal(
        node,
        f"{_code(node)!r} cannot be a Literal value; Literal takes str, int, bool and None "
        "literals only",
    )


def _schema(node: cst.BaseExpression, ctx: _Context, *, quoted_ok: bool = True) -> JSONSchema:
    """The JSON Schema of an annotation expression; raises _Refusal outside the vocabulary."""
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        return _quoted(node, ctx) if quoted_ok else _not_a_type(node)
    if isinstance(node, cst.Subscript):
        return _subscript(node, ctx)
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.BitOr):
        return _union([_schema(node.left, ctx), _schema(node.right, ctx)])
    name = _dotted(node)
    if name is None:
        return _not_a_type(node)
    word = _construct(node, name, ctx)
    if word in _SCALARS:
        return {"type": _SCALARS[word]}
    if word in _LISTS:
        return {"type": "array"}
    if word in _DICTS:
        return {"type": "object"}
    if word in _FORMS:
        raise _Refusal(node, f"{name} needs parameters, e.g. {_FORMS[word]}")
    if name in ctx.typeddicts:
        return copy.deepcopy(ctx.typeddicts[name])
    if name in ctx.broken:
        raise _Refusal(node, f"the TypedDict {name!r} was refused (see SB110); fix it first")
    if name in ctx.later:
        raise _Refusal(
            node,
            f"TypedDict {name!r} is declared below this use; move its declaration above",
        )
    raise _Refusal(node, _refusal(name))


def _not_a_type(node: cst.CSTNode) -> JSONSchema:
    raise _Refusal(node, f"{_code(node)!r} is not a type; use {VOCABULARY}")


def _quoted(node: cst.SimpleString | cst.ConcatenatedString, ctx: _Context) -> JSONSchema:
    text = _string_value(node)
    if not isinstance(text, str):
        return _not_a_type(node)
    try:
        inner = cst.parse_expression(text)
    except (cst.ParserSyntaxError, cst.CSTValidationError, ValueError, RecursionError):
        raise _Refusal(node, f"{text!r} is not a type; use {VOCABULARY}") from None
    try:
        return _schema(inner, ctx.unevaluated(), quoted_ok=False)
    except _Refusal as refusal:  # point at the string: the inner nodes are not in the tree
        raise _Refusal(node, f"in {_code(node)}: {refusal.reason}") from None


def _subscript(node: cst.Subscript, ctx: _Context) -> JSONSchema:
    name = _dotted(node.value)
    word = _construct(node.value, name, ctx) if name is not None else None
    if word == "Literal":
        values: dict[str, Any] = {}
        for value in _literal_values(node, ctx):
            values.setdefault(json.dumps(value), value)
        return {"enum": list(values.values())}
    args = _arguments(node)
    if word in _LISTS:
        if len(args) != 1:
            raise _Refusal(node, f"{name} takes one item type, e.g. list[str]")
        return {"type": "array", "items": _schema(args[0], ctx)}
    if word in _DICTS:
        if len(args) != 2:
            raise _Refusal(node, f"{name} takes a key and a value type, e.g. dict[str, int]")
        if _schema(args[0], ctx) != {"type": "string"}:
            raise _Refusal(args[0], "JSON object keys are strings; use dict[str, T]")
        return {"type": "object", "additionalProperties": _schema(args[1], ctx)}
    if word == "Optional":
        if len(args) != 1:
            raise _Refusal(node, "Optional takes one type, e.g. Optional[str]")
        return _union([_schema(args[0], ctx), {"type": "null"}])
    if word == "Union":
        return _union([_schema(arg, ctx) for arg in args])
    if word in ("Required", "NotRequired"):
        raise _Refusal(node, f"{word}[...] may only wrap a whole TypedDict field")
    if word is not None or (name is not None and name in ctx.typeddicts):
        raise _Refusal(node, f"{name} takes no parameters; use {VOCABULARY}")
    if name is None:
        return _not_a_type(node)
    raise _Refusal(node.value, _refusal(name))


def _field(node: cst.BaseExpression, ctx: _Context) -> tuple[JSONSchema, bool | None]:
    """A TypedDict field's schema and its Required/NotRequired marker (None: neither)."""
    if isinstance(node, cst.Subscript):
        name = _dotted(node.value)
        word = _construct(node.value, name, ctx) if name is not None else None
        if word in ("Required", "NotRequired"):
            args = _arguments(node)
            if len(args) != 1:
                raise _Refusal(node, f"{word} takes one type, e.g. {word}[str]")
            return _schema(args[0], ctx), word == "Required"
    return _schema(node, ctx), None


# --------------------------------------------------------------------------- JSON defaults


def _json_literal(node: cst.BaseExpression) -> Any:
    """The JSON value a default's source spells; raises _Refusal when it is not one."""
    text = _string_value(node)
    if isinstance(text, str):
        return text
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)):
        raise _Refusal(node, "bytes and f-strings are not JSON; use a plain str literal")
    if isinstance(node, cst.Name) and node.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.value]
    number, sign = node, 1
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)):
        number = node.expression
        sign = -1 if isinstance(node.operator, cst.Minus) else 1
    if isinstance(number, (cst.Integer, cst.Float)):
        try:
            value = number.evaluated_value
        except (ValueError, SyntaxError):
            raise _Refusal(node, "this number is too large to be a JSON value") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise _Refusal(node, "JSON has no infinity or NaN; use a finite number")
        return sign * value
    if isinstance(node, cst.List):
        items = []
        for element in node.elements:
            if not isinstance(element, cst.Element):
                raise _Refusal(element, "a default list spells out its items (no *unpacking)")
            items.append(_json_literal(element.value))
        return items
    if isinstance(node, cst.Dict):
        mapping: dict[str, Any] = {}
        for item in node.elements:
            if not isinstance(item, cst.DictElement):
                raise _Refusal(item, "a default dict spells out its items (no **unpacking)")
            key = _string_value(item.key)
            if not isinstance(key, str):
                raise _Refusal(item.key, "JSON object keys are strings; use a str literal key")
            mapping[key] = _json_literal(item.value)
        return mapping
    if isinstance(node, cst.Tuple):
        raise _Refusal(node, "JSON has no tuples; use a list literal")
    raise _Refusal(
        node,
        f"{_code(node)!r} is not a JSON literal; a default must be a str, number, True, False, "
        "None, or a list or dict of those, written out",
    )


# ------------------------------------------------------------------- values against schemas

#: Floats up to here are exact integers.
_EXACT = 2**53


class _Misfit(Exception):
    """A value that does not fit its schema: where inside the arguments, and how."""

    def __init__(
        self,
        path: tuple[str | int, ...],
        schema: Mapping[str, Any],
        value: Any,
        kind: Literal["type", "unknown", "missing"] = "type",
        key: str | None = None,
    ) -> None:
        super().__init__(kind)
        #: The keys and indexes leading to the value, from the top of the arguments.
        self.path = path
        #: The schema it missed (the object's, for an unknown or a missing key).
        self.schema = schema
        #: The value.
        self.value = value
        #: "type" (not a value of the schema), "unknown" or "missing" (a key of an object).
        self.kind = kind
        #: The unknown or missing key.
        self.key = key


def _kinds(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type")
    return {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()


def _kind_of(value: object) -> str | None:
    """The JSON Schema type of a scalar (None for anything else)."""
    kind = json_type(value)
    return kind if kind not in ("array", "object") else None


@dataclass(frozen=True)
class _Fit:
    """Fits JSON values to schemas of the vocabulary.

    `value` returns the value as it should be passed on, or raises `_Misfit` for the first
    thing wrong (in an object: unknown keys, then missing ones, then the values in order).
    Keywords other than ``type``, ``enum``, ``anyOf``, ``items``, ``properties``,
    ``required`` and ``additionalProperties`` are annotations here (``default``).
    """

    #: A float with no fractional part fits ``integer`` and becomes an int (JSON Schema
    #: counts 2.0 as an integer, and models send it); a Python default must be exact.
    whole: bool = False
    #: A null for a property that is not required, and cannot be null or defaults to null,
    #: means "not given" (OpenAI strict mode sends one for every optional property).
    nulls: bool = False

    def fits(self, value: Any, schema: Mapping[str, Any]) -> bool:
        try:
            self.value(value, schema, ())
        except _Misfit:
            return False
        return True

    def value(self, value: Any, schema: Any, path: tuple[str | int, ...]) -> Any:
        if not isinstance(schema, Mapping):
            return value  # no schema: any value
        if "anyOf" in schema:
            return self.any_of(value, schema, path)
        if "enum" in schema:
            kind = _kind_of(value)
            for member in schema["enum"]:
                if _kind_of(member) == kind and member == value:
                    return value  # 1 and True are distinct values in JSON
                if self.whole and kind == "number" and _kind_of(member) == "integer":
                    if member == value:
                        return member
            raise _Misfit(path, schema, value)
        kinds = _kinds(schema)
        if not kinds:
            return value
        for kind in sorted(kinds):
            if (
                kind == "integer"
                and self.whole
                and type(value) is float
                and value.is_integer()
                and abs(value) < _EXACT
            ):
                return int(value)
            if not is_json_type(value, kind):
                continue
            if kind == "array":
                items = schema.get("items")
                return [self.value(item, items, (*path, i)) for i, item in enumerate(value)]
            if kind == "object":
                return self.object(value, schema, path)
            return value
        raise _Misfit(path, schema, value)

    def any_of(self, value: Any, schema: Mapping[str, Any], path: tuple[str | int, ...]) -> Any:
        misses: list[tuple[Any, _Misfit]] = []
        for branch in schema["anyOf"]:
            try:
                return self.value(value, branch, path)
            except _Misfit as miss:
                misses.append((branch, miss))
        # A dict (or list) missed the one object (or array) branch: say what is wrong inside.
        kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else ""
        inside = [m for b, m in misses if isinstance(b, Mapping) and kind in _kinds(b)]
        if len(inside) == 1:
            raise inside[0]
        raise _Misfit(path, schema, value)

    def object(
        self, value: dict[Any, Any], schema: Mapping[str, Any], path: tuple[str | int, ...]
    ) -> dict[Any, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        required = required if isinstance(required, list) else []
        extra = schema.get("additionalProperties", True)
        if extra is False:
            unknown = sorted((k for k in value if k not in properties), key=str)
            if unknown:
                raise _Misfit(path, schema, value, "unknown", unknown[0])
        given = {
            k: v
            for k, v in value.items()
            if not (self.nulls and v is None and k in properties and self.omits(k, schema))
        }
        missing = [k for k in required if k not in given]
        if missing:
            raise _Misfit(path, schema, value, "missing", missing[0])
        return {k: self.value(v, properties.get(k, extra), (*path, k)) for k, v in given.items()}

    def omits(self, key: str, schema: Mapping[str, Any]) -> bool:
        """Whether a null for ``key`` of an object means it was left out (strict mode)."""
        prop = schema["properties"][key]
        if key in schema.get("required", ()) or not isinstance(prop, Mapping):
            return False
        return ("default" in prop and prop["default"] is None) or not self.fits(None, prop)


# ------------------------------------------------------------------------- the module level


@dataclass(frozen=True)
class _ModuleInfo:
    """What a module's top level says about how its annotations are evaluated."""

    #: ``from __future__ import annotations`` is present: annotations stay unevaluated.
    future_annotations: bool
    #: Typing names imported with ``from typing import`` -> index of the first such statement.
    imported: Mapping[str, int]
    #: Index of the first ``import typing`` statement, if any.
    typing_at: int | None

    def imported_before(self, index: int) -> frozenset[str]:
        """The typing names a statement at ``index`` of the module body can use."""
        return frozenset(name for name, at in self.imported.items() if at < index)

    def typing_before(self, index: int) -> bool:
        """Whether ``typing`` is imported above the statement at ``index``."""
        return self.typing_at is not None and self.typing_at < index


def _module_info(module: cst.Module) -> _ModuleInfo:
    future = False
    typing_at: int | None = None
    imported: dict[str, int] = {}
    for index, stmt in enumerate(module.body):
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.ImportFrom) and not small.relative and small.module:
                source = _dotted(small.module)
                names = [] if isinstance(small.names, cst.ImportStar) else small.names
                for alias in names:
                    if alias.asname is not None or not isinstance(alias.name, cst.Name):
                        continue
                    if source == "__future__" and alias.name.value == "annotations":
                        future = True
                    elif source == "typing" and alias.name.value in TYPING_NAMES:
                        imported.setdefault(alias.name.value, index)
            elif isinstance(small, cst.Import) and typing_at is None:
                if any(
                    isinstance(alias.name, cst.Name)
                    and alias.name.value == "typing"
                    and alias.asname is None
                    for alias in small.names
                ):
                    typing_at = index
    return _ModuleInfo(future, imported, typing_at)


def _typeddict_call(stmt: cst.CSTNode) -> cst.Call | None:
    """The ``TypedDict(...)`` call of a top-level ``X = TypedDict(...)`` line, if it is one."""
    if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1):
        return None
    small = stmt.body[0]
    if not isinstance(small, cst.Assign) or not isinstance(small.value, cst.Call):
        return None
    return small.value if _dotted(small.value.func) in ("TypedDict", "typing.TypedDict") else None


def declares_typeddict(stmt: cst.CSTNode) -> bool:
    """Whether a top-level statement is a TypedDict declaration (well formed or not).

    `skillbank.validate` leaves these to rule SB110 instead of SB102.
    """
    return isinstance(stmt, cst.ClassDef) or _typeddict_call(stmt) is not None


def _declared_names(module: cst.Module) -> dict[str, int]:
    """Declared TypedDict names -> index of their (first) statement in the module body."""
    names: dict[str, int] = {}
    for index, stmt in enumerate(module.body):
        if isinstance(stmt, cst.ClassDef):
            names.setdefault(stmt.name.value, index)
        elif _typeddict_call(stmt) is not None:
            assert isinstance(stmt, cst.SimpleStatementLine)  # _typeddict_call checked
            small = stmt.body[0]
            assert isinstance(small, cst.Assign)
            target = small.targets[0].target
            if len(small.targets) == 1 and isinstance(target, cst.Name):
                names.setdefault(target.value, index)
    return names


class _Declarations:
    """Reads the TypedDicts a module declares, in order, recording what is wrong with them."""

    def __init__(self, module: cst.Module, info: _ModuleInfo) -> None:
        self.info = info
        self.schemas: dict[str, JSONSchema] = {}
        self.broken: set[str] = set()
        self.problems: list[Problem] = []
        self.names = _declared_names(module)
        for index, stmt in enumerate(module.body):
            if isinstance(stmt, cst.ClassDef):
                self.read(stmt.name.value, self.class_fields(stmt, index), stmt)
            else:
                call = _typeddict_call(stmt)
                if call is not None:
                    assert isinstance(stmt, cst.SimpleStatementLine)
                    small = stmt.body[0]
                    assert isinstance(small, cst.Assign)
                    self.read_call(small, call, index)

    def refuse(self, node: cst.CSTNode, message: str) -> None:
        self.problems.append(Problem(node, "SB110", message))

    def context(self, index: int, *, evaluated: bool) -> _Context:
        """The context of an annotation in the statement at ``index`` of the module body.

        An evaluated annotation sees only the TypedDicts declared above it; an unevaluated
        one (``from __future__ import annotations``) sees every one read so far.
        """
        visible = {
            key: schema
            for key, schema in self.schemas.items()
            if not evaluated or self.names.get(key, index) < index
        }
        return _Context(
            visible,
            later=frozenset(key for key in self.names if key not in visible),
            broken=frozenset(self.broken),
            imported=self.info.imported_before(index) if evaluated else None,
            typing_module=self.info.typing_before(index),
            below={key: s for key, s in self.schemas.items() if key not in visible},
        )

    def read(
        self,
        name: str,
        fields: tuple[list[JSONSchema], bool, list[tuple[str, JSONSchema, bool | None]]] | None,
        node: cst.CSTNode,
    ) -> None:
        if name in self.schemas or name in self.broken:
            self.refuse(node, f"TypedDict {name!r} is declared twice; keep one declaration")
            return
        if fields is None:
            self.broken.add(name)
            return
        bases, total, own = fields
        properties: dict[str, JSONSchema] = {}
        required: list[str] = []
        for base in bases:
            properties.update(copy.deepcopy(base["properties"]))
            required += [key for key in base["required"] if key not in required]
        for key, schema, marker in own:
            properties[key] = schema
            if key in required:
                required.remove(key)
            if marker if marker is not None else total:
                required.append(key)
        self.schemas[name] = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def class_fields(
        self, node: cst.ClassDef, index: int
    ) -> tuple[list[JSONSchema], bool, list[tuple[str, JSONSchema, bool | None]]] | None:
        name = node.name.value
        problems = len(self.problems)
        bases: list[JSONSchema] = []
        others: list[cst.Arg] = []
        for arg in node.bases:
            base = _dotted(arg.value) if not arg.star else None
            if base in ("TypedDict", "typing.TypedDict"):
                self.check_available(arg.value, base, index)
            elif base is not None and base in self.schemas:
                bases.append(self.schemas[base])
            else:
                others.append(arg)
        if len(others) == len(node.bases):
            self.refuse(
                node,
                f"class {name!r} is not a TypedDict; at the top level a skill may declare only "
                f"TypedDicts (class {name}(TypedDict): field: type); use plain dicts otherwise",
            )
            return None
        for arg in others:
            self.refuse(
                arg,
                f"TypedDict {name!r} may derive only from TypedDict or a TypedDict declared "
                f"above; {_code(arg.value)!r} is neither",
            )
        total = self.total(node.keywords, name)
        for decorator in node.decorators:
            self.refuse(decorator, f"TypedDict {name!r} takes no decorators; remove it")
        if node.type_parameters is not None:
            self.refuse(node.type_parameters, f"TypedDict {name!r} cannot be generic")
        ctx = self.context(index, evaluated=not self.info.future_annotations)
        fields: list[tuple[str, JSONSchema, bool | None]] = []
        body = node.body.body
        for position, stmt in enumerate(body):
            smalls: Sequence[cst.CSTNode] = (
                stmt.body if isinstance(stmt, cst.SimpleStatementLine) else [stmt]
            )
            if isinstance(node.body, cst.SimpleStatementSuite):
                smalls = [stmt]
            for small in smalls:
                if position == 0 and _is_docstring_expr(small):
                    continue
                if isinstance(small, cst.Pass) or (
                    isinstance(small, cst.Expr) and isinstance(small.value, cst.Ellipsis)
                ):
                    continue
                if (
                    isinstance(small, cst.AnnAssign)
                    and isinstance(small.target, cst.Name)
                    and small.value is None
                ):
                    self.add_field(
                        fields, small.target.value, small.annotation.annotation, ctx, name
                    )
                    continue
                what = (
                    "a TypedDict field takes no default value"
                    if isinstance(small, cst.AnnAssign) and small.value is not None
                    else "a TypedDict body holds only `name: type` lines and a docstring"
                )
                self.refuse(small, f"{what}; in {name!r}, remove this or move it into a function")
        return None if len(self.problems) > problems else (bases, total, fields)

    def add_field(
        self,
        fields: list[tuple[str, JSONSchema, bool | None]],
        key: str,
        annotation: cst.BaseExpression,
        ctx: _Context,
        owner: str,
    ) -> None:
        try:
            schema, marker = _field(annotation, ctx)
        except _Refusal as refusal:
            self.refuse(refusal.node, f"field {key!r} of TypedDict {owner!r}: {refusal.reason}")
            return
        fields.append((key, schema, marker))

    def total(self, keywords: Sequence[cst.Arg], owner: str) -> bool:
        total = True
        for keyword in keywords:
            value = keyword.value
            if (
                keyword.keyword is not None
                and keyword.keyword.value == "total"
                and isinstance(value, cst.Name)
                and value.value in ("True", "False")
            ):
                total = value.value == "True"
            else:
                self.refuse(
                    keyword,
                    f"TypedDict {owner!r} takes only total=True or total=False; remove "
                    f"{_code(keyword).strip()!r}",
                )
        return total

    def check_available(self, node: cst.CSTNode, name: str, index: int) -> None:
        """Refuse a TypedDict base or call not imported above (it is always evaluated)."""
        if name == "TypedDict" and "TypedDict" not in self.info.imported_before(index):
            self.refuse(
                node,
                "TypedDict is used but not imported above; add `from typing import TypedDict` "
                "at the top",
            )
        elif name == "typing.TypedDict" and not self.info.typing_before(index):
            self.refuse(
                node,
                "typing.TypedDict is used but typing is not imported above; add `import "
                "typing` at the top",
            )

    def read_call(self, assign: cst.Assign, call: cst.Call, index: int) -> None:
        target = assign.targets[0].target if len(assign.targets) == 1 else None
        if not isinstance(target, cst.Name):
            self.refuse(assign, "assign a TypedDict(...) declaration to one plain name")
            return
        name = target.value
        problems = len(self.problems)
        func = _dotted(call.func)
        assert func is not None  # _typeddict_call checked
        self.check_available(call.func, func, index)
        positional = [arg for arg in call.args if arg.keyword is None]
        keywords = [arg for arg in call.args if arg.keyword is not None]
        fields: list[tuple[str, JSONSchema, bool | None]] = []
        total = self.total(keywords, name)
        shape = (
            len(positional) == 2
            and not any(arg.star for arg in positional)
            and _string_value(positional[0].value) == name
            and isinstance(positional[1].value, cst.Dict)
        )
        if not shape:
            self.refuse(
                call,
                f'write the declaration as {name} = TypedDict("{name}", {{"field": type, ...}}) '
                "with a dict literal of fields",
            )
        else:
            mapping = positional[1].value
            assert isinstance(mapping, cst.Dict)
            # The field types of the call form are ordinary expressions: always evaluated.
            ctx = self.context(index, evaluated=True)
            for element in mapping.elements:
                key = _string_value(element.key) if isinstance(element, cst.DictElement) else None
                if not isinstance(key, str) or not isinstance(element, cst.DictElement):
                    self.refuse(element, f"the fields of TypedDict {name!r} need str literal keys")
                    continue
                self.add_field(fields, key, element.value, ctx, name)
        self.read(name, None if len(self.problems) > problems else ([], total, fields), call)


def _is_docstring_expr(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Expr) and isinstance(
        node.value, (cst.SimpleString, cst.ConcatenatedString)
    )


# ---------------------------------------------------------------------------- the signature

_RAISES_HEADER = re.compile(r"^(\s*)Raises:\s*$")
_RAISES_ITEM = re.compile(r"^([A-Za-z_][\w.]*)\s*(?::|$)")


def _docstring_raises(docstring: str) -> tuple[str, ...]:
    """The exception names of a Google-style ``Raises:`` section, sorted."""
    names: set[str] = set()
    lines = docstring.splitlines()
    i = 0
    while i < len(lines):
        header = _RAISES_HEADER.match(lines[i])
        i += 1
        if header is None:
            continue
        base = len(header.group(1))
        item_indent: int | None = None
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= base:
                break
            if item_indent is None:
                item_indent = indent
            item = _RAISES_ITEM.match(line.strip()) if indent == item_indent else None
            if item is not None:
                names.add(item.group(1))
            i += 1
    return tuple(sorted(names))


def docstring(fn: cst.FunctionDef) -> str | None:
    """The function's docstring, None when it has none ("" when libcst cannot evaluate it)."""
    try:
        with warnings.catch_warnings():  # an invalid escape such as "\d" only warns
            warnings.simplefilter("ignore")
            return fn.get_docstring()
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return ""  # one libcst cannot evaluate (a NUL byte)


def public_function(module: cst.Module) -> cst.FunctionDef | None:
    """The first top-level function whose name does not start with an underscore."""
    return next(
        (
            s
            for s in module.body
            if isinstance(s, cst.FunctionDef) and not s.name.value.startswith("_")
        ),
        None,
    )


def check_signature(module: cst.Module) -> tuple[SignatureSchema | None, list[Problem]]:
    """Read the public function's signature and the module's TypedDicts from the tree.

    Returns the schema (None when there is no public function or anything is wrong) and
    the problems: SB104-SB109 for the signature, SB110 for the TypedDict declarations.
    `skillbank.validate.check_source` reports them as findings.
    """
    info = _module_info(module)
    declarations = _Declarations(module, info)
    problems = declarations.problems
    fn = public_function(module)
    if fn is None:
        return None, problems
    index = next(i for i, stmt in enumerate(module.body) if stmt is fn)
    evaluated = not info.future_annotations
    ctx = declarations.context(index, evaluated=evaluated)
    name = fn.name.value
    start = len(problems)
    for param in fn.params.posonly_params:
        problems.append(
            Problem(
                param,
                "SB105",
                f"parameter {param.name.value!r} is positional-only, but a skill is called with "
                "keyword arguments; remove the `/`",
            )
        )
    for star in (fn.params.star_arg, fn.params.star_kwarg):
        if isinstance(star, cst.Param):
            problems.append(
                Problem(star, "SB105", "*args/**kwargs are not allowed; name every parameter")
            )
    properties: dict[str, JSONSchema] = {}
    required: list[str] = []
    for param in (*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params):
        key = param.name.value
        schema: JSONSchema | None = None
        if param.annotation is None:
            problems.append(
                Problem(
                    param,
                    "SB104",
                    f"parameter {key!r} needs a type annotation ({VOCABULARY})",
                )
            )
        else:
            try:
                schema = _schema(param.annotation.annotation, ctx)
            except _Refusal as refusal:
                problems.append(
                    Problem(refusal.node, "SB107", f"parameter {key!r}: {refusal.reason}")
                )
        if param.default is None:
            required.append(key)
        else:
            try:
                value = _json_literal(param.default)
            except _Refusal as refusal:
                problems.append(
                    Problem(
                        refusal.node, "SB109", f"default of parameter {key!r}: {refusal.reason}"
                    )
                )
            else:
                if schema is not None and not _Fit().fits(value, schema):
                    assert param.annotation is not None  # schema was read from it
                    problems.append(
                        Problem(
                            param.default,
                            "SB109",
                            f"the default {_code(param.default)} of parameter {key!r} does not "
                            f"match its annotation {_code(param.annotation.annotation)}; change "
                            "the default, or widen the annotation (e.g. Optional[...] for None)",
                        )
                    )
                elif schema is not None:
                    schema = {**schema, "default": value}
        properties[key] = schema if schema is not None else {}
    returns: JSONSchema | None = None
    if fn.returns is None:
        problems.append(Problem(fn, "SB106", f"function {name!r} needs a return annotation"))
    else:
        try:
            returns = _schema(fn.returns.annotation, ctx)
        except _Refusal as refusal:
            problems.append(Problem(refusal.node, "SB108", f"return type: {refusal.reason}"))
    if len(problems) > start or returns is None:
        return None, problems
    parameters: JSONSchema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return SignatureSchema(
        name, parameters, returns, _docstring_raises(docstring(fn) or "")
    ), problems


# ------------------------------------------------------------------------------ public API


def _located(module: cst.Module, problems: Sequence[Problem]) -> list[Finding]:
    from libcst.metadata import MetadataWrapper, PositionProvider

    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    findings = [
        Finding(p.rule, positions[p.node].start.line, positions[p.node].start.column, p.message)
        for p in problems
    ]
    return sorted(findings, key=lambda f: (f.line, f.col, f.rule))


def _parse(source: str) -> cst.Module:
    try:
        return cst.parse_module(source)
    except (cst.ParserSyntaxError, cst.CSTValidationError, RecursionError, ValueError) as exc:
        raise SkillRejected("<source>", [parse_finding(source, exc)], source) from None


def annotation_schema(
    annotation: str, typeddicts: Mapping[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The JSON Schema of one annotation's source text, e.g. ``"Optional[list[str]]"``.

    Args:
        annotation: The annotation as written.
        typeddicts: Declared TypedDicts the annotation may name, by name (their schemas, as
            `typeddict_schemas` returns them).

    Raises:
        UnsupportedType: The annotation is outside the vocabulary (or is not an expression);
            ``line``/``col`` point into ``annotation``.
    """
    try:
        expression = cst.parse_expression(annotation)
    except (cst.ParserSyntaxError, cst.CSTValidationError, RecursionError, ValueError):
        raise UnsupportedType(
            annotation, f"not a Python expression; write a type: {VOCABULARY}"
        ) from None
    ctx = _Context(dict(typeddicts or {}))
    try:
        return _schema(expression, ctx)
    except _Refusal as refusal:
        from libcst.metadata import MetadataWrapper, PositionProvider

        wrapper = cst.Module(body=[cst.SimpleStatementLine([cst.Expr(expression)])])
        positions = MetadataWrapper(wrapper, unsafe_skip_copy=True).resolve(PositionProvider)
        where = positions[refusal.node].start
        raise UnsupportedType(
            _code(refusal.node), refusal.reason, line=where.line, col=where.column
        ) from None
    except RecursionError:
        raise UnsupportedType(annotation, "the annotation nests too deeply") from None


def typeddict_schemas(source: str) -> dict[str, dict[str, Any]]:
    """The TypedDicts a skill module declares, by name, as JSON Schema (in declaration order).

    Raises:
        SkillRejected: The source does not parse (SB001) or a declaration is refused (SB110).
    """
    module = _parse(source)
    declarations = _Declarations(module, _module_info(module))
    if declarations.problems:
        raise SkillRejected("<source>", _located(module, declarations.problems), source)
    return declarations.schemas


def signature_schema(source: str) -> SignatureSchema:
    """The public function's signature as JSON Schema, read with libcst (never imported).

    Raises:
        SkillRejected: The source does not parse, has no public function, or its signature
            or TypedDicts break rules SB104-SB110; the findings say where and why.
    """
    module = _parse(source)
    try:
        schema, problems = check_signature(module)
    except RecursionError:
        finding = Finding("SB001", 1, 0, "the source nests too deeply to read")
        raise SkillRejected("<source>", [finding], source) from None
    fn = public_function(module)
    if fn is None:
        missing = Finding("SB101", 1, 0, "no public function; define one `def <skill_id>(...)`")
        raise SkillRejected("<source>", [missing, *_located(module, problems)], source)
    if schema is None or problems:
        raise SkillRejected(fn.name.value, _located(module, problems), source)
    return schema


def read_signature(source: str) -> Signature:
    """Read the public function's signature from the syntax tree (the code is never run).

    One parse gives both views: the text of each part, and (in ``schema``) the signature as
    JSON Schema when every annotation is in the vocabulary and the module's TypedDicts are
    well formed (None otherwise; `signature_schema` says why).

    Raises:
        SkillRejected: when the source does not parse or has no public function.
    """
    module = _parse(source)
    fn = public_function(module)
    if fn is None:
        raise SkillRejected("<source>", [Finding("SB101", 1, 0, "no public function")], source)
    try:
        schema, problems = check_signature(module)
    except RecursionError:
        schema, problems = None, []
    code = module.code_for_node
    params = tuple(
        Param(
            name=p.name.value,
            annotation=code(p.annotation.annotation) if p.annotation else "",
            has_default=p.default is not None,
            default=code(p.default) if p.default is not None else None,
        )
        for p in (*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params)
    )
    returns = code(fn.returns.annotation) if fn.returns else ""
    return Signature(
        fn.name.value, params, returns, docstring(fn) or "", None if problems else schema
    )


def schema_of(skill: Skill | ValidatedSkill) -> SignatureSchema:
    """A skill's signature as JSON Schema, as it was read when the skill was loaded.

    Raises:
        SkillRejected: the signature has no JSON Schema (a stored skill passed validation,
            so only a hand-edited or very old one can lack it); the findings say why.
    """
    if skill.signature.schema is not None:
        return skill.signature.schema
    # The error path (or a Signature built by hand): read again, to say where and why.
    source = skill.draft.source if isinstance(skill, ValidatedSkill) else skill.source
    return signature_schema(source)


# ------------------------------------------------------------------------------ arguments

#: A call's arguments as `check_arguments` returned them: checked, ready to run.
Arguments = NewType("Arguments", dict[str, Any])


def check_arguments(
    skill: Skill, args: Mapping[str, Any], *, strict_nulls: bool = False
) -> Arguments:
    """Check a call's arguments against the skill's signature; return them ready to run.

    The one argument check, for every way a skill is called (`skillbank.running.Runner.run`,
    a model's tool call, a reflex, a recognised plan), against the signature's JSON Schema
    as it was read when the skill was loaded (`schema_of`), to any depth. Unknown keys are
    refused at every level, and a bool is never an int. A float with no fractional part is
    an int, as in JSON Schema (models send ``2.0``), and is passed on as one.

    Args:
        skill: The skill called.
        args: The arguments by name.
        strict_nulls: The arguments come from a model's tool call, where strict mode
            (`skillbank.toolspec.strict_schema`) sends ``null`` for every optional
            parameter or TypedDict field it leaves out. Such a ``null`` is dropped, so the
            default applies, when the value cannot be ``null`` or its default is ``null``.

    Returns:
        A new dict; ``args`` is not changed.

    Raises:
        SkillArgumentError: naming the unknown, missing or mistyped argument (with the path
            inside it, e.g. ``'lines[0].quantity'``), what it must be, and the value.
        SkillRejected: the skill's signature has no JSON Schema (see `schema_of`).
    """
    schema = schema_of(skill)
    if not isinstance(args, Mapping):
        raise SkillArgumentError(
            f"arguments for {skill.id!r} must be a JSON object, got {type(args).__name__}"
        )
    missing = [p for p in skill.signature.params if not p.has_default and p.name not in args]
    if len(missing) > 1:  # all of them at once, not one per attempt
        needed = ", ".join(f"{p.name!r} ({p.annotation})" for p in missing)
        raise SkillArgumentError(
            f"{skill.id!r} needs arguments {needed}; its signature is {skill.signature.render()}"
        )
    try:
        return Arguments(
            _Fit(whole=True, nulls=strict_nulls).value(dict(args), schema.parameters, ())
        )
    except _Misfit as miss:
        raise SkillArgumentError(_argument_problem(skill, miss)) from None


def _argument_problem(skill: Skill, miss: _Misfit) -> str:
    annotations = {p.name: p.annotation for p in skill.signature.params}
    properties = miss.schema.get("properties") or {}
    if not miss.path and miss.kind == "unknown":
        return (
            f"{skill.id!r} has no parameter {miss.key!r}; its signature is "
            f"{skill.signature.render()}"
        )
    if not miss.path and miss.kind == "missing":
        assert miss.key is not None  # a missing key is named
        annotation = annotations.get(miss.key) or _type_text(properties.get(miss.key))
        return (
            f"{skill.id!r} needs argument {miss.key!r} ({annotation}); its signature is "
            f"{skill.signature.render()}"
        )
    where = f"argument {_path_text(miss.path)} of {skill.id!r}"
    if miss.kind == "unknown":
        keys = ", ".join(map(repr, properties)) or "none"
        return f"{where} has no key {miss.key!r} (its keys: {keys})"
    if miss.kind == "missing":
        assert miss.key is not None
        return f"{where} needs key {miss.key!r} ({_type_text(properties.get(miss.key))})"
    top = miss.path[0]
    expected = annotations.get(top, "") if len(miss.path) == 1 and isinstance(top, str) else ""
    return f"{where} must be {expected or _type_text(miss.schema)}, got {_shown(miss.value)}"


def _path_text(path: Sequence[str | int]) -> str:
    """``'lines[0].quantity'``: where a value is inside the arguments, quoted."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return f"'{text}'"


def _type_text(schema: Any) -> str:
    """A schema of the vocabulary written back as the annotation it was read from."""
    if not isinstance(schema, Mapping):
        return "any JSON value"
    if isinstance(schema.get("anyOf"), list):
        return " | ".join(_type_text(branch) for branch in schema["anyOf"])
    if isinstance(schema.get("enum"), list):
        return f"Literal[{', '.join(map(repr, schema['enum']))}]"
    texts = []
    for kind in sorted(_kinds(schema)):
        if kind == "array":
            items = schema.get("items")
            texts.append(f"list[{_type_text(items)}]" if isinstance(items, Mapping) else "list")
        elif kind == "object":
            texts.append(_object_text(schema))
        else:
            texts.append(ANNOTATIONS.get(kind, kind))
    return " | ".join(texts) or "any JSON value"


def _object_text(schema: Mapping[str, Any]) -> str:
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        required = schema.get("required", ())
        fields = [
            f"{k!r}: {_type_text(v)}" + ("" if k in required else " (optional)")
            for k, v in properties.items()
        ]
        return "{" + ", ".join(fields) + "}"
    extra = schema.get("additionalProperties")
    return f"dict[str, {_type_text(extra)}]" if isinstance(extra, Mapping) else "dict"


def _shown(value: Any) -> str:
    """A value in a message: its repr (cut short) and its type."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text if value is None else f"{text} ({type(value).__name__})"
