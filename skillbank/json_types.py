"""The seven JSON types: which a value is, which Python types hold each, how a skill writes it.

One table for every place that names a JSON value's type: inferring a schema from recorded
results (`skillbank.proving`), fitting arguments to a signature (`skillbank.signature`),
strict tool schemas (`skillbank.toolspec`), annotating compiled parameters
(`skillbank.compiler`) and messages to a model (`skillbank.running`). A leaf: it imports
nothing of skillbank.

A ``bool`` is never an ``integer`` or a ``number`` here, although Python's ``bool`` is an
``int``: JSON keeps them apart, and so must every check of a skill's arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["ANNOTATIONS", "JSON_TYPES", "PYTHON_TYPES", "is_json_type", "json_type"]

#: The JSON Schema type names, in the order schemas list them (``anyOf`` branches).
JSON_TYPES: Final = ("null", "boolean", "integer", "number", "string", "array", "object")

#: The Python values of each type (a ``number`` may be an ``int``: 2 is a number).
PYTHON_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "array": (list,),
    "object": (dict,),
}

#: How a skill's annotation writes each type (the closed vocabulary of `skillbank.signature`).
ANNOTATIONS: Final[Mapping[str, str]] = {
    "null": "None",
    "boolean": "bool",
    "integer": "int",
    "number": "float",
    "string": "str",
    "array": "list",
    "object": "dict",
}


def json_type(value: Any) -> str | None:
    """The JSON type of a value (``"integer"`` for 3, ``"number"`` for 3.0), None if none."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for kind in ("integer", "number", "string", "array", "object"):
        if isinstance(value, PYTHON_TYPES[kind]):
            return kind
    return None


def is_json_type(value: Any, kind: str) -> bool:
    """Whether ``value`` is of JSON type ``kind`` (3 is a number and an integer; True is not)."""
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, PYTHON_TYPES.get(kind, ()))
