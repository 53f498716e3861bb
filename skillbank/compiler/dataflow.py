"""Data flow: which argument value was copied from which earlier tool result.

An argument is *data flow* when its value occurs inside the result of an earlier call in the
same trajectory (at any JSON path: nested dicts and lists). Such an argument is compiled to an
expression reading that path, so the skill follows the data on new inputs instead of replaying
a constant.

One refinement on "equal to a value found in an earlier result": a value the user wrote in
the task text is treated as the user's input, not as data flow, even when an earlier result
happens to echo it. "Cancel order O-5003" must give a skill with an ``order_id`` parameter, not
one that cancels whatever order a listing returned first. Trivial values (booleans, None, the
empty string, empty containers) are never data flow: their equality says nothing about origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MISSING",
    "Origin",
    "Path",
    "bound_parts",
    "find_origin",
    "instance_bound",
    "iter_paths",
    "mentioned_in",
    "same_value",
    "value_at",
]

#: What `value_at` returns for a path that does not exist.
MISSING: Any = object()

JSON = Any
#: A path into a JSON value: dict keys and list positions.
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Origin:
    """Where a value was found: the index of the step whose result holds it, and the path."""

    #: Index of the earlier step (0-based) whose result holds the value.
    step: int
    #: Path inside that step's result.
    path: Path
    #: Other places the same value was found (reported to reviewers as ambiguity).
    alternatives: tuple[tuple[int, Path], ...] = ()


def same_value(a: JSON, b: JSON) -> bool:
    """Equal as JSON values, type included (in Python 1 == 1.0 == True)."""
    if type(a) is not type(b):
        return False
    return bool(a == b)


def value_at(value: JSON, path: Path) -> JSON:
    """The sub-value at ``path``, or `MISSING` when the path does not exist."""
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return value


def trivial(value: JSON) -> bool:
    """True for values whose equality says nothing about where they came from."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    return False


def iter_paths(value: JSON, prefix: Path = ()) -> Iterator[tuple[Path, JSON]]:
    """Every (path, sub-value) in ``value``, the value itself first, then depth-first."""
    yield prefix, value
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from iter_paths(sub, (*prefix, str(key)))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            yield from iter_paths(sub, (*prefix, index))


#: A dict key that reads as a field name (``status``, ``shipping-address``, ``zip code``)
#: rather than as data (``1615379700``, ``#W2378156``, ``a1b2-c3``).
_FIELD_NAME = re.compile(r"[^\W\d][\w -]{0,63}")


def _data_key(container: dict[str, JSON], key: str) -> bool:
    """True when ``key`` is a value the dict is indexed by, not a field name.

    A key is data when it does not read as a name (it starts with a digit or a sign, is mostly
    digits, or is long) or when the entry it names holds the key itself as a value
    (``{"1615379700": {"item_id": "1615379700", ...}}``: a collection keyed by its ids).
    """
    if not _FIELD_NAME.fullmatch(key) or sum(c.isdigit() for c in key) * 2 > len(key):
        return True
    entry = container.get(key)
    if isinstance(entry, dict):
        return any(isinstance(v, str) and v == key for v in entry.values())
    return False


def bound_parts(value: JSON, path: Path) -> list[int]:
    """Positions in ``path`` that tie it to one instance of the data.

    A list position (``orders[0]``) or a data key (`_data_key`) says "this element", which
    is only structure when runs with different data agree on it; a field name is structure.
    """
    bound: list[int] = []
    for n, part in enumerate(path):
        if isinstance(part, int) and isinstance(value, list):
            bound.append(n)
        elif isinstance(value, dict) and isinstance(part, str) and _data_key(value, part):
            bound.append(n)
        value = value_at(value, (part,))
        if value is MISSING:
            break
    return bound


def instance_bound(value: JSON, path: Path) -> bool:
    """True when ``path`` into ``value`` passes a list position or a data key."""
    return bool(bound_parts(value, path))


def mentioned_in(value: JSON, text: str) -> bool:
    """True when ``value`` appears in ``text`` as the user would have typed it."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        if len(value) >= 3:
            return value in text
        return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None
    if isinstance(value, (int, float)):
        forms = {str(value)}
        if isinstance(value, float) and value.is_integer():
            forms.add(str(int(value)))
        return any(
            re.search(rf"(?<![\w.]){re.escape(form)}(?!\w|\.\d)", text) is not None
            for form in forms
        )
    return False


def find_origin(value: JSON, results: Sequence[JSON], task: str) -> Origin | None:
    """Find the earlier result ``value`` was copied from, or None if it is the user's input.

    The most recent step wins, then the shortest path, then the first in document order, so
    the choice is deterministic. The other matches are kept as ``alternatives``.

    Args:
        value: An argument value (or part of one).
        results: The results of the earlier steps, oldest first (failed steps as None).
        task: The task text; values written there count as the user's input.
    """
    if trivial(value) or mentioned_in(value, task):
        return None
    found: list[tuple[int, Path]] = []
    for step in range(len(results) - 1, -1, -1):
        hits = [path for path, sub in iter_paths(results[step]) if same_value(sub, value)]
        hits.sort(key=len)  # stable: shortest first, document order within a length
        found += [(step, path) for path in hits]
    if not found:
        return None
    (step, path), *rest = found
    return Origin(step, path, tuple(rest))
