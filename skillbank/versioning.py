"""Versions of a skill: semantic version numbers decided from what changed, and its history.

A skill's version is ``MAJOR.MINOR.PATCH``, stored as a string in its ``SKILL.md`` metadata.
The bump is decided from the change itself, never chosen by hand:

- **major**: the signature changed in a way that breaks a caller (`signature_diff` says
  which way): a parameter removed or renamed, a new parameter without a default, a
  parameter's type changed (other than widened to a union that still holds the old type), a
  default removed, or the return type changed;
- **minor**: the code changed and every existing call still fits;
- **patch**: only the docstring or the description changed (and a deprecation note);
- **nothing**: only the recorded cases changed.

Versions never go backwards: a rollback writes old code under a new, higher version.
Libraries written before semantic versions stored whole numbers; ``"1"`` reads as ``1.0.0``.

The value, `Version`, and its reader, `parse_version`, are defined in `skillbank.skill` (a
`skillbank.skill.Skill` holds a `Version`, and this module imports that one) and re-exported
here: ``skillbank.versioning.Version`` is the same class.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Literal

from skillbank.errors import SkillRejected
from skillbank.signature import read_signature
from skillbank.skill import Param, Signature, SignatureSchema, Version, parse_version
from skillbank.validate import code_shape

__all__ = [
    "Bump",
    "HistoryEntry",
    "SignatureChange",
    "Version",
    "bump",
    "parse_version",
    "required_bump",
    "signature_change",
    "signature_diff",
]

#: The kinds of version bump, from the most to the least disruptive.
Bump = Literal["major", "minor", "patch"]


def bump(version: Version, kind: Bump) -> Version:
    """The next version after ``version`` for a change of ``kind``."""
    if kind == "major":
        return Version(version.major + 1, 0, 0)
    if kind == "minor":
        return Version(version.major, version.minor + 1, 0)
    return Version(version.major, version.minor, version.patch + 1)


@dataclass(frozen=True)
class SignatureChange:
    """How a skill's signature changed between two versions."""

    #: True when some existing call could fail against the new signature.
    breaking: bool
    #: One sentence per change, in parameter order, e.g. "parameter 'status' removed
    #: (breaking)"; empty when the signatures are the same.
    changes: tuple[str, ...]


def _param_text(p: Param) -> str:
    default = f" = {p.default}" if p.has_default else ""
    return f"{p.name}: {p.annotation}{default}" if p.annotation else f"{p.name}{default}"


def _norm(annotation: str) -> str:
    try:
        return ast.unparse(ast.parse(annotation, mode="eval").body)
    except (SyntaxError, ValueError, RecursionError):
        return " ".join(annotation.split())


def _union_members(annotation: str) -> set[str]:
    """The members of an annotation read as a union: ``str | None`` -> {str, None}."""
    try:
        node: ast.expr = ast.parse(annotation, mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return {" ".join(annotation.split())}
    out: set[str] = set()
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, ast.BinOp) and isinstance(current.op, ast.BitOr):
            todo += [current.left, current.right]
            continue
        if isinstance(current, ast.Subscript):
            head = ast.unparse(current.value)
            inner = current.slice
            if head in ("Optional", "typing.Optional"):
                todo += [inner, ast.Constant(None)]
                continue
            if head in ("Union", "typing.Union"):
                todo += list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]
                continue
        out.add(ast.unparse(current))
    return out


def _widened(old: str, new: str) -> bool:
    return _union_members(old) <= _union_members(new)


def signature_diff(old: Signature, new: Signature) -> SignatureChange:
    """What changed between two signatures, and whether any existing call may break.

    Skills are called with keyword arguments (a JSON object), so parameters are matched by
    name and a new order alone breaks nothing. A parameter that disappears while another with
    the same type and default appears at the same position reads as a rename.
    """
    changes: list[str] = []
    breaking = False
    if old.name != new.name:
        changes.append(f"function renamed {old.name!r} -> {new.name!r} (breaking)")
        breaking = True
    old_params = {p.name: p for p in old.params}
    new_params = {p.name: p for p in new.params}
    removed = [p for p in old.params if p.name not in new_params]
    added = [p for p in new.params if p.name not in old_params]
    renamed: dict[str, Param] = {}
    for p in removed:
        position = old.params.index(p)
        twin = new.params[position] if position < len(new.params) else None
        if (
            twin is not None
            and twin in added
            and _norm(twin.annotation) == _norm(p.annotation)
            and twin.default == p.default
        ):
            renamed[p.name] = twin
    for p in old.params:
        if p.name in renamed:
            changes.append(f"parameter {p.name!r} renamed to {renamed[p.name].name!r} (breaking)")
            breaking = True
            continue
        if p.name not in new_params:
            changes.append(f"parameter {p.name!r} removed (breaking)")
            breaking = True
            continue
        q = new_params[p.name]
        if _norm(p.annotation) != _norm(q.annotation):
            if _widened(p.annotation, q.annotation):
                changes.append(
                    f"parameter {p.name!r} type {p.annotation} -> {q.annotation} (widened)"
                )
            else:
                changes.append(
                    f"parameter {p.name!r} type {p.annotation} -> {q.annotation} (breaking)"
                )
                breaking = True
        if p.has_default and not q.has_default:
            changes.append(f"parameter {p.name!r} lost its default {p.default} (breaking)")
            breaking = True
        elif not p.has_default and q.has_default:
            changes.append(f"parameter {p.name!r} now has a default {q.default}")
        elif p.has_default and p.default != q.default:
            changes.append(f"default of parameter {p.name!r} changed {p.default} -> {q.default}")
    twins = {q.name for q in renamed.values()}
    for q in new.params:
        if q.name in old_params or q.name in twins:
            continue
        if q.has_default:
            changes.append(f"parameter {_param_text(q)!r} added with a default")
        else:
            changes.append(f"parameter {_param_text(q)!r} added without a default (breaking)")
            breaking = True
    kept_old = [p.name for p in old.params if p.name in new_params]
    kept_new = [q.name for q in new.params if q.name in old_params]
    if kept_old != kept_new:
        changes.append("parameters reordered (callers pass arguments by name)")
    if _norm(old.returns) != _norm(new.returns):
        changes.append(f"return type {old.returns or '(none)'} -> {new.returns or '(none)'} "
                       "(breaking)")  # fmt: skip
        breaking = True
    if old.docstring != new.docstring:
        changes.append("docstring changed")
    return SignatureChange(breaking, tuple(changes))


def _schema_change(old: SignatureSchema | None, new: SignatureSchema | None) -> list[str]:
    """Parameters and return whose JSON Schema changed although the annotation text did not
    (a TypedDict the skill declares was edited): each such change breaks callers."""
    if old is None or new is None:
        return []
    found = []
    old_props = old.parameters.get("properties", {})
    new_props = new.parameters.get("properties", {})
    for name in sorted(set(old_props) & set(new_props)):
        if _strip_docs(old_props[name]) != _strip_docs(new_props[name]):
            found.append(f"parameter {name!r} accepts different values (breaking)")
    if _strip_docs(old.returns) != _strip_docs(new.returns):
        found.append("the returned value has a different shape (breaking)")
    return found


def _strip_docs(schema: object) -> object:
    if isinstance(schema, dict):
        return {
            k: _strip_docs(v)
            for k, v in schema.items()
            if k not in ("description", "title", "default")
        }
    if isinstance(schema, list):
        return [_strip_docs(v) for v in schema]
    return schema


def signature_change(old_source: str, new_source: str) -> SignatureChange:
    """`signature_diff` of two sources, plus changes of the declared TypedDicts they use.

    Raises:
        SkillRejected: a source cannot be read.
    """
    old, new = read_signature(old_source), read_signature(new_source)
    change = signature_diff(old, new)
    # Annotation text the diff saw change is already reported; this adds what it could not
    # see (a TypedDict edited in place).
    extra = [] if change.breaking else _schema_change(old.schema, new.schema)
    return SignatureChange(True, (*change.changes, *extra)) if extra else change


def required_bump(
    old_source: str, old_description: str, new_source: str, new_description: str
) -> Bump | None:
    """The bump a change from the old code and description to the new one needs.

    ``"major"`` when the signature change is breaking, ``"minor"`` when the code changed
    compatibly (docstrings aside, see `skillbank.validate.code_shape`), ``"patch"`` when
    only the docstring or description changed, and None when nothing did (a change of the
    recorded cases alone moves no version). Source that cannot be read counts as a
    breaking change.
    """
    if old_source == new_source and old_description == new_description:
        return None
    try:
        change = signature_change(old_source, new_source)
    except SkillRejected:
        return "major"
    if change.breaking:
        return "major"
    if code_shape(old_source) != code_shape(new_source):
        return "minor"
    return "patch"


@dataclass(frozen=True)
class HistoryEntry:
    """One commit that changed a skill, as `skillbank.library.SkillLibrary.history` lists it."""

    #: The commit's full sha.
    commit: str
    #: The committer date, ISO 8601 (``2025-01-31T12:00:00+00:00``).
    date: str
    #: The skill's version in that commit (canonical ``"1.2.0"``).
    version: str
    #: The skill's stage in that commit.
    stage: str
    #: The sha256 of the skill's source in that commit.
    content_hash: str
    #: The commit message's first line.
    subject: str
    #: The skill replacing this one, when it was deprecated in that commit.
    deprecated_by: str | None = None
