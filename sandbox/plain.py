"""Which local names of a skill function provably hold a plain ``dict``, ``list`` or ``str``.

The compiler (:class:`sandbox.policy.SkillTransformer`) routes item writes through the write
guard and attribute reads through the read guard, a Python-level call each. For a local that
can only ever hold an exact ``dict``, ``list`` or ``str`` those calls have nothing to refuse:
the guard lets every item write to a plain container through, and every public attribute of
these three types (bar ``str.format``/``format_map``, which are kept guarded) is a plain
method. This module finds such locals, so the compiler can leave those operations native.

A name qualifies in a function when it is local there (not ``global``, not a parameter) and
*every* binding of it in the function is an assignment whose value has that type by
construction (:func:`expression_type`): a display or comprehension, a string literal or
f-string, a slice or a ``str`` method of a value already known, ``sorted``/``list``/``dict``
of anything while those builtins are not rebound anywhere in the module, or an augmented
assignment that keeps the type (``+=`` and ``*=`` on a list or str, ``|=`` on a dict). Any
other binding (a ``for`` target, ``with``/``except`` names, unpacking, imports, a nested
``def`` or ``class`` of the same name) disqualifies it. Flow does not matter: since every
binding yields the type, the name holds that type wherever it is bound at all. A skill
cannot change an object's class (``__class__`` is refused) nor define the dunder methods
(``__radd__``...) that could make an operator return another type, so construction decides.

Nested functions, lambdas and comprehensions see the enclosing function's facts for the
names they do not bind themselves (skills cannot use ``nonlocal``, so an inner scope cannot
rebind them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from typing import Final, Literal

__all__ = ["PlainType", "builtins_rebound", "expression_type", "function_facts", "scope_names"]

PlainType = Literal["dict", "list", "str"]

#: ``str`` methods that return an exact ``str`` when called on an exact ``str``.
_STR_TO_STR: Final = frozenset(
    {
        "capitalize", "casefold", "center", "expandtabs", "join", "ljust", "lower", "lstrip",
        "removeprefix", "removesuffix", "replace", "rjust", "rstrip", "strip", "swapcase",
        "title", "upper", "zfill",
    }
)  # fmt: skip
#: ``str`` methods that return a new ``list``.
_STR_TO_LIST: Final = frozenset({"split", "rsplit", "splitlines"})
#: Builtins whose call always makes a new object of one type.
_CONSTRUCTORS: Final[dict[str, PlainType]] = {"sorted": "list", "list": "list", "dict": "dict"}
#: Augmented operators that keep each type (or raise).
_KEEPS_TYPE: Final[dict[PlainType, tuple[type[ast.operator], ...]]] = {
    "list": (ast.Add, ast.Mult),
    "str": (ast.Add, ast.Mult, ast.Mod),
    "dict": (ast.BitOr,),
}


def builtins_rebound(tree: ast.AST) -> frozenset[str]:
    """The constructor builtins (``sorted``, ``list``, ``dict``) a module binds anywhere."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return frozenset(bound) & frozenset(_CONSTRUCTORS)


def expression_type(
    node: ast.expr, facts: Mapping[str, PlainType], rebound: frozenset[str] = frozenset()
) -> PlainType | None:
    """The exact type ``node`` evaluates to by construction, or None if it is not provable."""
    if isinstance(node, ast.Constant):
        return "str" if type(node.value) is str else None
    if isinstance(node, ast.JoinedStr):
        return "str"
    if isinstance(node, (ast.List, ast.ListComp)):
        return "list"
    if isinstance(node, (ast.Dict, ast.DictComp)):
        return "dict"
    if isinstance(node, ast.Name):
        return facts.get(node.id)
    if isinstance(node, ast.IfExp):
        body = expression_type(node.body, facts, rebound)
        return body if body == expression_type(node.orelse, facts, rebound) else None
    if isinstance(node, ast.BinOp):
        left = expression_type(node.left, facts, rebound)
        right = expression_type(node.right, facts, rebound)
        if isinstance(node.op, ast.Add) and left == right and left in ("str", "list"):
            return left
        if isinstance(node.op, ast.Mult) and ("str" in (left, right) or "list" in (left, right)):
            # A sequence repeated by anything is that sequence type, or a TypeError.
            return left if left in ("str", "list") else right
        if isinstance(node.op, ast.Mod) and left == "str":
            return "str"
        return None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        value = expression_type(node.value, facts, rebound)
        return value if value in ("str", "list") else None
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id in _CONSTRUCTORS and func.id not in rebound:
            return _CONSTRUCTORS[func.id]
        if isinstance(func, ast.Attribute) and expression_type(func.value, facts, rebound) == "str":
            if func.attr in _STR_TO_STR:
                return "str"
            if func.attr in _STR_TO_LIST:
                return "list"
    return None


def scope_names(node: ast.AST) -> set[str]:
    """Names a function, lambda or comprehension binds in its own scope (params, targets)."""
    names: set[str] = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        names.update(_parameters(node.args))
        if isinstance(node, ast.Lambda):
            return names
        for child in _own_nodes(node.body):
            names.update(_bound_by(child))
    elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        for generator in node.generators:
            names.update(_target_names(generator.target))
    return names


def function_facts(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    inherited: Mapping[str, PlainType],
    rebound: frozenset[str],
) -> dict[str, PlainType]:
    """The plain-typed names visible in ``node``'s body: its own, and the enclosing ones it
    does not bind itself."""
    bindings: dict[str, list[ast.AST | None]] = {}
    for arg in _parameters(node.args):
        bindings.setdefault(arg, []).append(None)
    for child in _own_nodes(node.body):
        if isinstance(child, ast.Assign):
            for target in child.targets:
                if isinstance(target, ast.Name):
                    bindings.setdefault(target.id, []).append(child.value)
                else:
                    for name in _target_names(target):
                        bindings.setdefault(name, []).append(None)
        elif isinstance(child, (ast.AnnAssign, ast.NamedExpr)) and isinstance(
            child.target, ast.Name
        ):
            if child.value is not None:
                bindings.setdefault(child.target.id, []).append(child.value)
        elif isinstance(child, ast.AugAssign) and isinstance(child.target, ast.Name):
            bindings.setdefault(child.target.id, []).append(child)
        else:
            for name in _bound_by(child):
                bindings.setdefault(name, []).append(None)
    facts = {name: kind for name, kind in inherited.items() if name not in bindings}
    own: dict[str, PlainType] = {}
    changed = True
    while changed:  # monotone: a name gains a type once all its bindings have it
        changed = False
        for name, values in bindings.items():
            if name in own:
                continue
            kind = _common_type(values, {**facts, **own}, rebound)
            if kind is not None:
                own[name] = kind
                changed = True
    return {**facts, **own}


def _common_type(
    values: list[ast.AST | None], facts: Mapping[str, PlainType], rebound: frozenset[str]
) -> PlainType | None:
    plain = [v for v in values if not isinstance(v, ast.AugAssign)]
    if not plain or any(v is None for v in plain):
        return None
    kinds = {expression_type(v, facts, rebound) for v in plain if isinstance(v, ast.expr)}
    if len(kinds) != 1:
        return None
    (kind,) = kinds
    if kind is None:
        return None
    for value in values:
        if isinstance(value, ast.AugAssign) and not isinstance(value.op, _KEEPS_TYPE[kind]):
            return None
    return kind


def _parameters(args: ast.arguments) -> set[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return {arg.arg for arg in every if arg is not None}


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of a function body, not descending into nested scopes' own bindings."""
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # Only the name (and decorators/defaults, evaluated here) belong to this scope.
            stack.extend(node.decorator_list)
            if not isinstance(node, ast.ClassDef):
                stack.extend(d for d in node.args.defaults)
                stack.extend(d for d in node.args.kw_defaults if d is not None)
            continue
        if isinstance(node, ast.Lambda):
            stack.extend(node.args.defaults)
            continue
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            # Comprehension targets are the comprehension's; a walrus inside binds here.
            stack.extend(n for n in ast.walk(node) if isinstance(n, ast.NamedExpr))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _bound_by(node: ast.AST) -> set[str]:
    """Names a single statement or expression node binds in the current scope."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return set(node.names)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    if isinstance(node, ast.ExceptHandler):
        return {node.name} if node.name else set()
    if isinstance(node, (ast.For, ast.AsyncFor)):
        return _target_names(node.target)
    if isinstance(node, ast.withitem) and node.optional_vars is not None:
        return _target_names(node.optional_vars)
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {name for target in targets for name in _target_names(target)}
    if isinstance(node, ast.Delete):
        return {name for target in node.targets for name in _target_names(target)}
    if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
        return {node.name}
    if isinstance(node, ast.MatchMapping) and node.rest:
        return {node.rest}
    return set()


def _target_names(target: ast.AST) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return {name for element in target.elts for name in _target_names(element)}
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()  # an attribute or item target binds no name
