"""How a tool's real name becomes the attribute a skill calls it by, ``tools.<attribute>``.

Tool names come from the agent's world: MCP servers name tools ``get-weather`` or
``files.read``, and neither can be written after ``tools.`` in Python. Skills call every tool
by a valid identifier, and the ``tools`` object inside the sandbox maps that identifier back
to the real name, which is the one the host sees. The rule is the same everywhere (compiler,
validator, sandbox, exported scripts), so it lives here, in the package skill code runs in:

- a name that is already a usable identifier (not a keyword, not starting with ``_``) is its
  own attribute, so existing skills and tools are unchanged;
- otherwise the name is NFKC-normalised (as Python normalises identifiers), every character
  that cannot appear in an identifier becomes ``_``, leading underscores are dropped, ``tool_``
  goes in front of a name that would start with a digit or be empty, and ``_`` after a keyword.

Two tools of one skill may land on the same attribute (``get-weather`` and ``get.weather``);
:func:`attribute_map` then leaves that attribute out and :func:`attribute_clashes` names the
tools, so the compiler can refuse such a group with a clear message instead of guessing.
"""

from __future__ import annotations

import hashlib
import keyword
import re
import unicodedata
from collections.abc import Iterable

__all__ = ["attribute_clashes", "attribute_map", "attribute_name"]

_NOT_WORD = re.compile(r"\W")


def _usable(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def attribute_name(tool: str) -> str:
    """The identifier a skill writes after ``tools.`` to call the tool named ``tool``."""
    if _usable(tool) and unicodedata.normalize("NFKC", tool) == tool:
        return tool
    name = _NOT_WORD.sub("_", unicodedata.normalize("NFKC", tool)).lstrip("_")
    if not name or not (name[0].isidentifier()):
        name = "tool_" + name
    if not name.isidentifier():
        # A word character that cannot continue an identifier (rare); keep it unique.
        digest = hashlib.sha256(tool.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = "tool_" + re.sub(r"[^A-Za-z0-9_]", "_", name) + "_" + digest
    if keyword.iskeyword(name):
        name += "_"
    return name


def attribute_map(tools: Iterable[str]) -> dict[str, str]:
    """Attribute -> real tool name for ``tools``; an attribute two tools share is left out.

    A tool whose real name is itself usable always keeps it, even if another tool's name
    maps onto the same identifier.
    """
    names = list(dict.fromkeys(tools))
    exact = {name: name for name in names if attribute_name(name) == name}
    derived: dict[str, list[str]] = {}
    for name in names:
        attribute = attribute_name(name)
        if attribute != name and attribute not in exact:
            derived.setdefault(attribute, []).append(name)
    mapping = dict(exact)
    mapping.update({attr: owners[0] for attr, owners in derived.items() if len(owners) == 1})
    return mapping


def attribute_clashes(tools: Iterable[str]) -> list[tuple[str, list[str]]]:
    """``(attribute, [tools])`` for every attribute that several of ``tools`` map to."""
    owners: dict[str, list[str]] = {}
    for name in dict.fromkeys(tools):
        owners.setdefault(attribute_name(name), []).append(name)
    return sorted((attr, names) for attr, names in owners.items() if len(names) > 1)
