"""What sandboxed skill code may do: the compiler policy, guards, builtins and modules.

This module is the policy and nothing else; :mod:`sandbox.worker` is the machinery that runs
code under it. Everything here executes inside the worker process, which adds OS-level
limits (rlimits, a stripped environment, no inherited file descriptors) on top.

The layers, outermost first:

1. **Compile time** (:func:`compile_skill`). RestrictedPython rewrites the AST and rejects
   names and attributes that start with ``_``, ``exec``-style constructs, async code and so
   on. :class:`SkillTransformer` adds to RestrictedPython's policy: ``import`` must name a
   module in :data:`ALLOWED_MODULES` (or ``typing``, for :data:`TYPING_NAMES` only);
   augmented assignment to an item or an attribute (``d[k] += 1``, ``self.n += 1``) is
   allowed, rewritten through the same guards as a plain assignment (RestrictedPython refuses
   it outright); so is an annotated assignment to a plain name (``name: T = v``, the fields
   of a TypedDict), and a class keeps a literal ``total=`` flag (``class Order(TypedDict,
   total=False)``); and every ``except`` block starts with a call to ``_caught_``, so an
   exhausted limit (``MemoryError``) stays the call's outcome even when the skill catches it.
   Guards that have nothing to refuse are left out (``SkillTransformer.elide_guards``):
   ``x[k]`` reads (``_getitem_`` is plain ``getitem``), iteration and unpacking
   (``_getiter_`` is plain ``iter``), and, for locals that :mod:`sandbox.plain` proves hold
   an exact ``dict``, ``list`` or ``str``, item writes and reads of their public methods.
2. **Run time** (:func:`build_globals`). Every attribute read goes through ``_getattr_``
   (refuses ``_``-names, frame/code introspection and the ``format`` methods that walk
   attributes: ``str.format``, ``UserString.format``, ``string.Formatter``), every write
   through ``_write_`` (only plain containers and objects of classes the skill defined
   itself; the ``setattr``/``delattr`` builtins use the same guard), every in-place operator
   through ``_inplacevar_``, and ``import`` through a hook that hands out read-only views of
   the allowed modules. Names handed to the guards are copied to exact ``str`` first, so a
   ``str`` subclass with a lying ``startswith`` cannot slip past them. A refusal raises
   :class:`PolicyViolation` and is also reported to ``on_violation`` so the worker can fail
   the call even if the skill catches the exception.
3. **Builtins**: RestrictedPython's ``safe_builtins``, ``limited_builtins`` and
   ``utility_builtins`` plus the usual data helpers (``sorted``, ``zip``, ``enumerate``, ...).
   No ``open``, ``eval``, ``exec``, ``compile``, ``type``, ``vars``, ``globals``, ``dir``,
   ``super``, ``format`` or ``input``; ``string`` is a read-only view of the ``string``
   constants, ``capwords`` and ``Template`` (no ``Formatter``).

v1 limitation of the module allow-list: an allowed module is handed out as a read-only view
of its public names (``__all__`` where defined), without the modules it imported itself (so
``json.codecs`` is not reachable) and without the few names that change process-wide state
(``decimal.setcontext``, ``decimal.DefaultContext``, ...). A later hardening step may replace
these views with curated per-module proxies that list each function explicitly.
"""

from __future__ import annotations

import ast
import builtins
import collections
import hashlib
import importlib
import marshal
import operator
import re
import string
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Final

from RestrictedPython.compile import compile_restricted_exec
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    raise_,
    safe_builtins,
    safer_getattr,
)
from RestrictedPython.Limits import limited_builtins
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer
from RestrictedPython.Utilities import utility_builtins

from sandbox.errors import PolicyViolation, ResourceLimitExceeded, ToolError, ToolNotAllowed
from sandbox.plain import (
    PlainType,
    builtins_rebound,
    expression_type,
    function_facts,
    scope_names,
)

__all__ = [
    "ALLOWED_MODULES",
    "DENIED_MODULE_NAMES",
    "SKILL_FILENAME",
    "SKILL_MODULE_NAME",
    "TYPING_NAMES",
    "ModuleView",
    "OutputBuffer",
    "SkillTransformer",
    "build_globals",
    "compile_skill",
    "iter_skill_lines",
]

#: Modules a skill may import. Anything else (including submodules such as ``os.path`` and
#: relative imports) is refused at compile time and again by the runtime import hook.
ALLOWED_MODULES: Final = (
    "json",
    "re",
    "math",
    "datetime",
    "collections",
    "itertools",
    "statistics",
    "decimal",
)

#: The names ``typing`` offers a skill (``from typing import ...`` or ``typing.<name>``): what
#: its annotations and TypedDict declarations need, and nothing else.
TYPING_NAMES: Final = ("Literal", "NotRequired", "Optional", "Required", "TypedDict", "Union")

#: The filename skill code is compiled under; tracebacks use it to find skill lines.
SKILL_FILENAME: Final = "<skill>"

#: The ``__name__`` skill code runs as, and so the ``__module__`` of the classes it defines.
SKILL_MODULE_NAME: Final = "skill"

# ``from __future__ import annotations`` is a compiler directive that also imports
# ``__future__`` at run time; generated skills may start with it, so it is allowed too.
_FUTURE = "__future__"

# ``typing`` is handed out as a view of :data:`TYPING_NAMES` only.
_TYPING = "typing"

#: Public names that would let one call change state another call sees, or that walk
#: attributes from a format string (``string.Formatter``). Reading one is a PolicyViolation;
#: the host's validator refuses them statically from this same table.
DENIED_MODULE_NAMES: Final[dict[str, frozenset[str]]] = {
    "decimal": frozenset({"setcontext", "DefaultContext", "BasicContext", "ExtendedContext"}),
    "re": frozenset({"template", "purge"}),
    "__future__": frozenset({"all_feature_names"}),  # a mutable list
    "string": frozenset({"Formatter"}),
}

# The ``string`` builtin (RestrictedPython offers it) is a view of these names only.
_STRING_NAMES: Final = (
    "ascii_letters", "ascii_lowercase", "ascii_uppercase", "capwords", "digits",
    "hexdigits", "octdigits", "printable", "punctuation", "whitespace", "Template",
)  # fmt: skip

# Classes whose ``format``/``format_map`` methods resolve ``{0.attr}`` fields with the real
# ``getattr`` (``UserString.format`` is ``str.format`` on its ``data``).
_FORMATTING_TYPES: Final = (str, collections.UserString, string.Formatter)
_FORMAT_METHODS: Final = frozenset({"format", "format_map", "vformat", "get_field", "get_value"})

# Public introspection RestrictedPython does not list. ``cls.mro()`` hands out base classes
# the skill was never given: ``re.RegexFlag.mro()`` reaches ``enum.Enum``, whose functional
# API (``Enum("E", [("__del__", f)])``) defines any dunder method, which a class statement
# in a skill may not.
_INTROSPECTION: Final = frozenset({"mro"})

# Modules the C code of allowed modules imports while a skill runs: ``datetime`` needs
# ``time`` (``strftime``, ``today``, ``timetuple``) and ``_strptime`` (``strptime``). An
# ``import`` statement in a skill can never name them (the compiler refuses it first).
_RUNTIME_IMPORTS: Final = frozenset({"time", "_strptime"})

_CACHE_SIZE: Final = 256
# The cache outlives calls (in reuse mode, and in the template that forks workers), so it is
# bounded in the size of the compiled code, not of the source: constant folding turns
# ``'x' * 4096`` (11 characters) into 4 KiB, so 720 KB of source could cache ~245 MB.
_CACHE_CHARS: Final = 4 * 1024 * 1024
_compiled: dict[str, tuple[types.CodeType, int]] = {}


# --------------------------------------------------------------------------- compile time


class SkillTransformer(RestrictingNodeTransformer):
    """RestrictedPython's policy plus the import allow-list, guarded augmented assignment and
    the ``_caught_`` hook at the top of every ``except`` block.

    Errors are recorded as ``"Line 3:5: message"`` (RestrictedPython's own format plus the
    1-based column), so :func:`compile_skill` can point at the exact spot.
    """

    def error(self, node: ast.AST, info: str) -> None:
        """Record a refusal with its line and 1-based column."""
        col = getattr(node, "col_offset", None)
        where = f"{getattr(node, 'lineno', None)}" + ("" if col is None else f":{col + 1}")
        self.errors.append(f"Line {where}: {info}")

    def visit_Import(self, node: ast.Import) -> Any:
        """Allow ``import m`` only for modules in :data:`ALLOWED_MODULES` (and ``typing``)."""
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES and alias.name != _TYPING:
                self.error(node, _import_refusal(alias.name))
        return super().visit_Import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        """Allow ``from m import x`` for allowed modules, ``__future__`` and `TYPING_NAMES`."""
        if node.level:
            self.error(node, "relative imports are not allowed in a skill")
        elif node.module == _TYPING:
            for alias in node.names:
                if alias.name not in TYPING_NAMES:
                    self.error(
                        node,
                        f"typing.{alias.name} is not available in a skill; typing offers only "
                        f"{', '.join(TYPING_NAMES)}",
                    )
        elif node.module not in ALLOWED_MODULES and node.module != _FUTURE:
            self.error(node, _import_refusal(str(node.module)))
        return super().visit_ImportFrom(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        """Allow ``name: T`` and ``name: T = value`` (TypedDict fields, annotated locals).

        RestrictedPython refuses every annotated assignment. With a plain name as the target
        it is an ordinary assignment plus an annotation, and both expressions are rewritten
        through the same guards as any other code. Targets that are attributes or items are
        still refused: write them without the annotation.
        """
        if not isinstance(node.target, ast.Name):
            self.error(
                node,
                "an annotated assignment to an attribute or item is not allowed in a skill; "
                "drop the annotation",
            )
            return node
        return self.node_contents_visit(node)

    #: Leave out the guards that have nothing to refuse (see the methods below). False
    #: compiles with every guard in place, as before issue 13: for audits and for
    #: ``benchmarks/sandbox_bench.py``, which measures both in one run.
    elide_guards: ClassVar[bool] = True

    # ------------------------------------------------------- plain locals (sandbox.plain)

    def visit_Module(self, node: ast.Module) -> Any:
        """Note which constructor builtins the module rebinds, then transform it."""
        self._rebound = builtins_rebound(node)
        self._facts: list[Mapping[str, PlainType]] = [{}]
        return super().visit_Module(node)

    def _now(self) -> Mapping[str, PlainType]:
        facts = getattr(self, "_facts", None)
        return facts[-1] if facts else {}

    def _type_of(self, node: ast.expr) -> PlainType | None:
        if not self.elide_guards:
            return None
        return expression_type(node, self._now(), getattr(self, "_rebound", frozenset()))

    def _in_scope(self, facts: Mapping[str, PlainType], node: ast.AST) -> Any:
        stack = getattr(self, "_facts", None)
        if stack is None:
            stack = self._facts = [{}]
        stack.append(facts)
        try:
            return getattr(super(), f"visit_{type(node).__name__}")(node)
        finally:
            stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        """Transform a function knowing which of its locals are plain dicts, lists or strs."""
        rebound: frozenset[str] = getattr(self, "_rebound", frozenset())
        return self._in_scope(function_facts(node, self._now(), rebound), node)

    def _inner_scope(self, node: ast.AST) -> Any:
        bound = scope_names(node)
        return self._in_scope({k: v for k, v in self._now().items() if k not in bound}, node)

    visit_Lambda = visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = (
        _inner_scope
    )

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        """Leave ``x[k]`` reads native, and writes to a provably plain dict or list local.

        The read guard is plain ``operator.getitem`` (a skill subscripts only its own data,
        tool results and read-only views), so ``_getitem_(x, k)`` only added a call; the
        write guard lets every write to a plain container through.
        """
        if (self.elide_guards and isinstance(node.ctx, ast.Load)) or self._type_of(node.value) in (
            "dict",
            "list",
        ):
            return self.node_contents_visit(node)
        return super().visit_Subscript(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        """Leave reads of public methods of a provably plain dict, list or str native."""
        if isinstance(node.ctx, ast.Load) and _native_method(node.attr, self._type_of(node.value)):
            return self.node_contents_visit(node)
        return super().visit_Attribute(node)

    def guard_iter(self, node: ast.For | ast.comprehension) -> Any:
        """Iterate natively: ``_getiter_`` is plain ``iter`` here, so RestrictedPython's
        ``_getiter_``/``_iter_unpack_sequence_`` wrappers (a generator per loop, a call per
        item unpacked) had nothing to refuse."""
        if not self.elide_guards:
            return super().guard_iter(node)
        return self.node_contents_visit(node)

    def visit_Assign(self, node: ast.Assign) -> Any:
        """Unpack natively (``a, b = pair``), for the same reason as :meth:`guard_iter`."""
        if not self.elide_guards:
            return super().visit_Assign(node)
        return self.node_contents_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        """RestrictedPython's class rewrite, keeping a ``total=True``/``total=False`` keyword.

        RestrictedPython rebuilds every class with ``metaclass=__metaclass__`` and drops its
        other keywords; a TypedDict's ``total`` flag is a literal bool and evaluates nothing.
        """
        total = [
            keyword
            for keyword in node.keywords
            if keyword.arg == "total"
            and isinstance(keyword.value, ast.Constant)
            and isinstance(keyword.value.value, bool)
        ]
        rebuilt = self._in_scope({}, node)  # a class body proves nothing about its names
        if total and isinstance(rebuilt, ast.ClassDef):
            rebuilt.keywords.append(total[-1])
        return rebuilt

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> Any:
        """Start every ``except`` block with ``_caught_()``.

        The hook sees the exception being handled; catching a ``MemoryError`` (the address
        space limit was hit) must not turn an exhausted limit into a successful call.
        """
        handler = super().visit_ExceptHandler(node)
        assert isinstance(handler, ast.ExceptHandler)  # RestrictedPython returns the node
        hook = ast.Expr(value=_call("_caught_"))
        _locate(hook, handler.body[0] if handler.body else handler)
        handler.body.insert(0, hook)
        return handler

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        """Rewrite ``x[k] op= v`` and ``x.a op= v`` through the write and read guards.

        ``obj[key] += v`` becomes::

            _tmpN = obj
            _tmpM = key
            _write_(_tmpN)[_tmpM] = _inplacevar_('+=', _getitem_(_tmpN, _tmpM), v)

        so ``obj`` and ``key`` are evaluated once, as in Python.

        ``name op= v`` is left as it is (its name is still checked). RestrictedPython routes it
        through ``_inplacevar_``, a Python call per ``+=`` that tripled the cost of numeric
        loops; here that guard had nothing to refuse: for immutable values ``x op= y`` is
        ``x = x op y``, the containers with mutating in-place operators are the ones
        ``_write_`` lets a skill change anyway, and classes a skill defines cannot define
        dunder methods.
        """
        target = node.target
        if isinstance(target, ast.Name) or (
            isinstance(target, ast.Subscript) and self._type_of(target.value) in ("dict", "list")
        ):
            # An item of a plain dict or list local: the write guard would pass it, and the
            # in-place guard has nothing to refuse (see above), so the statement stays native.
            return self.node_contents_visit(node)
        op = ast.Constant(_IOPERATOR_SYMBOLS[type(node.op)])
        value = self.visit(node.value)
        if isinstance(target, ast.Subscript):
            obj_name, key_name = self.gen_tmp_name(), self.gen_tmp_name()
            obj = self.visit(target.value)
            key = self.visit(target.slice)
            statements: list[ast.stmt] = [
                _assign(obj_name, obj),
                _assign(key_name, key),
                ast.Assign(
                    targets=[
                        ast.Subscript(
                            value=_call("_write_", _load(obj_name)),
                            slice=_load(key_name),
                            ctx=ast.Store(),
                        )
                    ],
                    value=_call(
                        "_inplacevar_",
                        op,
                        _call("_getitem_", _load(obj_name), _load(key_name)),
                        value,
                    ),
                ),
            ]
        elif isinstance(target, ast.Attribute):
            # Reuse RestrictedPython's attribute-name checks on a read of the same attribute.
            probe = ast.Attribute(value=ast.Constant(None), attr=target.attr, ctx=ast.Load())
            self.visit(ast.copy_location(probe, target))
            obj_name = self.gen_tmp_name()
            obj = self.visit(target.value)
            statements = [
                _assign(obj_name, obj),
                ast.Assign(
                    targets=[
                        ast.Attribute(
                            value=_call("_write_", _load(obj_name)),
                            attr=target.attr,
                            ctx=ast.Store(),
                        )
                    ],
                    value=_call(
                        "_inplacevar_",
                        op,
                        _call("_getattr_", _load(obj_name), ast.Constant(target.attr)),
                        value,
                    ),
                ),
            ]
        else:  # pragma: no cover - the grammar allows only the three target kinds
            self.error(node, "unsupported target for augmented assignment")
            return node
        for statement in statements:
            _locate(statement, node)
        return statements


_IOPERATOR_SYMBOLS: Final[dict[type[ast.operator], str]] = {
    ast.Add: "+=",
    ast.Sub: "-=",
    ast.Mult: "*=",
    ast.MatMult: "@=",
    ast.Div: "/=",
    ast.Mod: "%=",
    ast.Pow: "**=",
    ast.LShift: "<<=",
    ast.RShift: ">>=",
    ast.BitOr: "|=",
    ast.BitXor: "^=",
    ast.BitAnd: "&=",
    ast.FloorDiv: "//=",
}


def _load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_load(func), args=list(args), keywords=[])


def _assign(name: str, value: ast.expr) -> ast.Assign:
    return ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=value)


def _locate(new: ast.AST, old: ast.AST) -> None:
    """Give every node of a generated subtree that has no position the position of ``old``."""
    for child in ast.walk(new):
        for attr in ("lineno", "col_offset", "end_lineno", "end_col_offset"):
            if attr in child._attributes and not hasattr(child, attr):
                setattr(child, attr, getattr(old, attr, None))


_PLAIN_CLASSES: Final[dict[PlainType, type]] = {"dict": dict, "list": list, "str": str}


def _native_method(attr: str, kind: PlainType | None) -> bool:
    """True if reading ``attr`` on an exact ``kind`` object needs no guard: a public method."""
    return kind is not None and (_PLAIN_CLASSES[kind], attr) in _PLAIN_METHODS


def _import_refusal(module: str) -> str:
    return (
        f"import of module {module!r} is not allowed in a skill; "
        f"allowed modules: {', '.join(ALLOWED_MODULES)}"
    )


_RP_LINE = re.compile(r"^Line (\d+|None)(?::(\d+))?: (.*)$", re.DOTALL)


def _parse_restricted_error(text: str) -> tuple[int | None, int | None, str]:
    """Split ``"Line 3: message"`` (or ``"Line 3:5: message"``) into (3, None|5, "message")."""
    match = _RP_LINE.match(text)
    if match is None:
        return None, None, text
    line, col, message = match.groups()
    return (
        None if line == "None" else int(line),
        None if col is None else int(col),
        message,
    )


def _violation(source: str, line: int | None, col: int | None, message: str) -> PolicyViolation:
    lines = source.splitlines()
    text = lines[line - 1] if line is not None and 0 < line <= len(lines) else None
    return PolicyViolation(message, line, col, text)


def compile_skill(source: str, filename: str = SKILL_FILENAME) -> types.CodeType:
    """Compile skill source under the sandbox policy.

    Results are cached by the SHA-256 of the filename and source, so a warm worker compiles
    each skill once (the cache keeps at most 256 entries and 4 MiB of compiled code).

    Args:
        source: The module source text.
        filename: The filename recorded in the code object (tracebacks use it).

    Returns:
        A code object to ``exec`` in a namespace from :func:`build_globals`.

    Raises:
        PolicyViolation: The source does not parse, or uses a construct the policy forbids.
            ``line``/``col`` point at the first problem; the message lists any others.
        TypeError: ``source`` is not a string.
    """
    if not isinstance(source, str):
        raise TypeError(f"skill source must be a str, got {type(source).__name__}")
    digest = hashlib.sha256(
        filename.encode("utf-8", "surrogatepass") + b"\0" + source.encode("utf-8", "surrogatepass")
    ).hexdigest()
    cached = _compiled.get(digest)
    if cached is not None:
        return cached[0]
    code = _compile_uncached(source, filename)
    size = len(marshal.dumps(code))  # bytes of code and constants, after folding
    if size > _CACHE_CHARS:
        return code
    while _compiled and (
        len(_compiled) >= _CACHE_SIZE
        or sum(chars for _, chars in _compiled.values()) + size > _CACHE_CHARS
    ):
        try:  # evict the oldest entry; tolerate a concurrent eviction by another thread
            del _compiled[next(iter(_compiled))]
        except (StopIteration, KeyError, RuntimeError):
            break
    _compiled[digest] = (code, size)
    return code


def _compile_uncached(source: str, filename: str) -> types.CodeType:
    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError as exc:
        raise PolicyViolation(
            f"{type(exc).__name__}: {exc.msg}", exc.lineno, exc.offset, exc.text
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise PolicyViolation(
            f"the skill source cannot be parsed ({type(exc).__name__}: {exc}); "
            "simplify deeply nested expressions"
        ) from None

    try:
        result = compile_restricted_exec(tree, filename, policy=SkillTransformer)
    except SyntaxError as exc:  # raised by compile() itself, e.g. "'return' outside function"
        message = f"{type(exc).__name__}: {exc.msg}"
        raise _violation(source, exc.lineno, exc.offset, message) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise PolicyViolation(
            f"the skill source cannot be compiled ({type(exc).__name__}: {exc}); "
            "simplify deeply nested expressions"
        ) from None
    if result.errors:
        problems = [_parse_restricted_error(error) for error in result.errors]
        line, col, message = problems[0]
        if len(problems) > 1:
            others = "; ".join(f"line {ln}: {msg}" for ln, _, msg in problems[1:6])
            more = f" (+{len(problems) - 6} more)" if len(problems) > 6 else ""
            message += f" [also: {others}{more}]"
        raise _violation(source, line, col, message)
    if result.code is None:  # pragma: no cover - RestrictedPython returns code or errors
        raise PolicyViolation("the skill source could not be compiled")
    return result.code


# ------------------------------------------------------------------------------ run time

_MISSING: Final = object()

_BINARY_OPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+=": operator.add,
    "-=": operator.sub,
    "*=": operator.mul,
    "@=": operator.matmul,
    "/=": operator.truediv,
    "%=": operator.mod,
    "**=": operator.pow,
    "<<=": operator.lshift,
    ">>=": operator.rshift,
    "|=": operator.or_,
    "^=": operator.xor,
    "&=": operator.and_,
    "//=": operator.floordiv,
}

_INPLACE_OPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "@=": operator.imatmul,
    "/=": operator.itruediv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "|=": operator.ior,
    "^=": operator.ixor,
    "&=": operator.iand,
    "//=": operator.ifloordiv,
}


def _writable_types() -> frozenset[type]:
    import collections

    return frozenset(
        {
            dict,
            list,
            set,
            bytearray,
            collections.OrderedDict,
            collections.defaultdict,
            collections.Counter,
            collections.deque,
            collections.ChainMap,
            collections.UserDict,
            collections.UserList,
        }
    )


_WRITABLE_TYPES: Final = _writable_types()


def _is_writable(ob: object) -> bool:
    """True for plain containers and for objects (or classes) the skill defined itself."""
    if type(ob) in _WRITABLE_TYPES:
        return True
    if isinstance(ob, type):
        return getattr(ob, "__module__", None) == SKILL_MODULE_NAME
    return getattr(type(ob), "__module__", None) == SKILL_MODULE_NAME


class ModuleView:
    """A read-only view of an allowed module: its public names, minus submodules.

    Handed to skills instead of the real module object (see the v1 note in the module
    docstring). Attribute reads go through ``_getattr_`` as usual, and ``from m import x``
    (which bypasses ``_getattr_``) can only reach names in the view.
    """

    __slots__ = ("_sandbox_name", "_sandbox_attrs")

    _sandbox_name: str
    _sandbox_attrs: dict[str, Any]

    def __init__(self, name: str, attrs: dict[str, Any]) -> None:
        object.__setattr__(self, "_sandbox_name", name)
        object.__setattr__(self, "_sandbox_attrs", attrs)

    def __getattr__(self, attr: str) -> Any:
        try:
            return self._sandbox_attrs[attr]
        except KeyError:
            raise AttributeError(
                f"module {self._sandbox_name!r} has no attribute {attr!r} available in the sandbox"
            ) from None

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"module {self._sandbox_name!r} is read-only in the sandbox")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"module {self._sandbox_name!r} is read-only in the sandbox")

    def __repr__(self) -> str:
        return f"<module {self._sandbox_name!r} (sandbox view)>"


_module_views: dict[str, ModuleView] = {}


def _module_view(name: str, only: Iterable[str] | None = None) -> ModuleView:
    """The shared read-only view of module ``name`` (``only``: the names it offers)."""
    view = _module_views.get(name)
    if view is None:
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None) if only is None else list(only)
        names: Iterable[str] = (
            exported if exported is not None else (n for n in dir(module) if n[:1] != "_")
        )
        denied = DENIED_MODULE_NAMES.get(name, frozenset())
        attrs = {
            n: getattr(module, n)
            for n in names
            if n[:1] != "_"
            and n not in denied
            and hasattr(module, n)
            and not isinstance(getattr(module, n), types.ModuleType)
        }
        view = _module_views[name] = ModuleView(name, attrs)
    return view


class OutputBuffer:
    """Collects what a skill prints, across all its functions, up to a byte limit.

    RestrictedPython gives every function that prints its own ``_print`` collector
    (``_print_`` is called at the top of each one); all of them write here, so the limit
    and the captured output cover the whole call.
    """

    def __init__(
        self,
        limit_bytes: int,
        on_overflow: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Create an empty buffer.

        Args:
            limit_bytes: Most UTF-8 bytes kept; writing past it raises.
            on_overflow: Called with the error before it is raised (the worker makes it
                sticky so a skill cannot catch its way past the limit).
        """
        self._limit = limit_bytes
        self._size = 0
        self._parts: list[str] = []
        self._on_overflow = on_overflow
        self.overflowed = False
        self.closed = False

    def close(self) -> None:
        """Ignore writes from now on (code still running after its call has ended)."""
        self.closed = True

    def write(self, text: str) -> None:
        """Append ``text``; keep what fits and raise once the limit is passed.

        Raises:
            ResourceLimitExceeded: ``limit="output"``.
            TypeError: ``text`` is not a str.
            ValueError: ``text`` holds a lone surrogate (it cannot be encoded as UTF-8).
        """
        if self.closed:
            return
        if type(text) is not str:
            if not issubclass(type(text), str):
                raise TypeError(f"write() argument must be str, not {type(text).__name__}")
            # A str subclass could lie about its length or encoding; keep the characters.
            text = str.__str__(text)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # What a UTF-8 stdout does too; the host could not carry the text either.
            raise ValueError(
                f"print() got a string with a lone surrogate ({exc.object[exc.start]!r} at "
                f"index {exc.start}), which cannot be encoded as UTF-8; print whole "
                "characters (e.g. text.encode('utf-8', 'replace').decode('utf-8'))"
            ) from None
        if self._size + len(data) <= self._limit and not self.overflowed:
            self._size += len(data)
            self._parts.append(text)
            return
        room = max(self._limit - self._size, 0)
        if room and not self.overflowed:
            self._parts.append(data[:room].decode("utf-8", "ignore"))
            self._size = self._limit
        self.overflowed = True
        error = ResourceLimitExceeded(
            "output",
            f"the skill printed more than Limits.output_bytes={self._limit} bytes; "
            "print less or raise the limit",
        )
        if self._on_overflow is not None:
            self._on_overflow(error)
        raise error

    def text(self) -> str:
        """Return everything printed so far (at most the limit)."""
        return "".join(self._parts)

    def collector(self, _getattr_: Any = None) -> PrintCollector:
        """The ``_print_`` factory for :func:`build_globals`."""
        return _BufferedPrintCollector(self, _getattr_)


class _BufferedPrintCollector(PrintCollector):
    """A PrintCollector that also writes into the call's shared, capped buffer."""

    def __init__(self, buffer: OutputBuffer, _getattr_: Any = None) -> None:
        super().__init__(_getattr_)  # type: ignore[no-untyped-call]
        self._buffer = buffer

    def write(self, text: str) -> None:
        self._buffer.write(text)
        self.txt.append(text)

    def flush(self) -> None:
        """``print(..., flush=True)`` calls this; there is nothing to flush."""


def _exact_name(name: object) -> str:
    """``name`` as an exact ``str``: a subclass could lie in ``startswith`` or ``__eq__``."""
    if type(name) is str:
        return name
    if issubclass(type(name), str):  # type(), not isinstance: __class__ can be faked
        return str.__str__(name)  # a plain copy of the characters
    raise TypeError(f"attribute name must be a str, not {type(name).__name__}")


def _is_formatting(ob: object) -> bool:
    """True for objects (and classes) whose format methods walk attributes."""
    if isinstance(ob, type):
        return issubclass(ob, _FORMATTING_TYPES)
    return isinstance(ob, _FORMATTING_TYPES)


def _attribute_refusal(ob: object, name: str) -> str | None:
    """Why the skill may not read ``ob.<name>``, or None if it may."""
    if name.startswith("_"):
        return (
            f"access to attribute {name!r} is not allowed: names starting with '_' are "
            "private to the sandbox"
        )
    if name in INSPECT_ATTRIBUTES or name in _INTROSPECTION or name.endswith("__roles__"):
        return f"access to attribute {name!r} (interpreter internals) is not allowed"
    if name in _FORMAT_METHODS and _is_formatting(ob):
        owner = ob if isinstance(ob, type) else type(ob)
        return (
            f"{owner.__name__}.{name}() is not allowed in a skill (its format fields can "
            "reach private attributes); use an f-string or the % operator"
        )
    if isinstance(ob, string.Formatter) or (
        isinstance(ob, type) and issubclass(ob, string.Formatter)
    ):
        return "string.Formatter is not allowed in a skill; use an f-string"
    if isinstance(ob, ModuleView) and name in DENIED_MODULE_NAMES.get(ob._sandbox_name, ()):
        return (
            f"{ob._sandbox_name}.{name} is not available in a skill (it changes state other "
            "calls share, or reaches private attributes)"
        )
    return None


class _Guards:
    """The runtime guards of one call, reporting refusals to ``on_violation``."""

    def __init__(self, on_violation: Callable[[BaseException], None] | None) -> None:
        self._on_violation = on_violation

    def refuse(self, message: str) -> PolicyViolation:
        error = PolicyViolation(message)
        if self._on_violation is not None:
            self._on_violation(error)
        return error

    def check_attribute(self, ob: object, name: object) -> str:
        """Return ``name`` (as an exact str) if the skill may read it on ``ob``; else refuse."""
        name = _exact_name(name)
        refusal = _attribute_refusal(ob, name)
        if refusal is not None:
            raise self.refuse(refusal)
        return name

    def getattr(self, ob: object, name: str, default: Any = _MISSING) -> Any:
        """``_getattr_`` and the ``getattr`` builtin: Python's semantics, minus the forbidden."""
        if type(name) is str and (type(ob), name) in _PLAIN_METHODS:
            # Fast path: a public method of a plain data value ("x".upper, [].append). Only
            # an exact str name may take it: a str subclass could fake its hash and equality.
            return getattr(ob, name)
        name = self.check_attribute(ob, name)
        # safer_getattr repeats the checks above; kept as a second, independent line.
        if default is _MISSING:
            # ``raise_`` means "no default": a missing attribute raises AttributeError.
            return safer_getattr(ob, name, raise_)  # type: ignore[no-untyped-call]
        return safer_getattr(ob, name, default)  # type: ignore[no-untyped-call]

    def hasattr(self, ob: object, name: str) -> bool:
        """``hasattr`` that answers False (and records nothing) for names the skill may not read."""
        name = _exact_name(name)
        if _attribute_refusal(ob, name) is not None:
            return False
        try:
            self.getattr(ob, name)
        except AttributeError:
            return False
        return True

    def setattr(self, ob: object, name: str, value: Any) -> None:
        """The ``setattr`` builtin: the same rules as ``ob.name = value`` in skill code."""
        name = self._check_write_name(name)
        setattr(self.write(ob), name, value)

    def delattr(self, ob: object, name: str) -> None:
        """The ``delattr`` builtin: the same rules as ``del ob.name`` in skill code."""
        name = self._check_write_name(name)
        delattr(self.write(ob), name)

    def _check_write_name(self, name: object) -> str:
        name = _exact_name(name)
        if name.startswith("_") or name in INSPECT_ATTRIBUTES or name.endswith("__roles__"):
            raise self.refuse(
                f"writing attribute {name!r} is not allowed: names starting with '_' are "
                "private to the sandbox"
            )
        return name

    def write(self, ob: object) -> Any:
        """``_write_``: plain containers and skill-made objects pass; others refuse writes."""
        if type(ob) in _WRITABLE_TYPES or _is_writable(ob):  # the common case, inlined
            return ob
        return _WriteRefused(self, ob)

    def inplacevar(self, op: str, x: Any, y: Any) -> Any:
        """``_inplacevar_``: ``x op= y`` for the arithmetic, bitwise and sequence operators."""
        if op not in _BINARY_OPS:
            raise self.refuse(f"augmented assignment operator {op!r} is not allowed")
        if type(x) in _IMMUTABLE:  # fast path: for these, x op= y is x = x op y
            return _BINARY_OPS[op](x, y)
        if _is_writable(x):
            return _INPLACE_OPS[op](x, y)
        return _BINARY_OPS[op](x, y)

    def caught(self) -> None:
        """``_caught_``: called first thing in every ``except`` block of skill code.

        Catching the ``MemoryError`` of an exhausted address space does not rescue the call:
        the error is reported (as ``ResourceLimitExceeded(limit="memory")``) all the same.
        """
        handled = sys.exc_info()[1]
        if isinstance(handled, MemoryError) and self._on_violation is not None:
            self._on_violation(handled)

    def import_(
        self,
        name: str,
        globals: object = None,
        locals: object = None,
        fromlist: object = (),
        level: int = 0,
    ) -> ModuleView | None:
        """``__import__``: a read-only view of an allowed module, or a PolicyViolation.

        C code of an allowed module that imports on demand (``PyImport_Import``) calls this
        hook too, because it looks ``__import__`` up in the skill's builtins. For the few
        modules it needs (:data:`_RUNTIME_IMPORTS`) the real module is imported into
        ``sys.modules``, where that C code finds it, and the skill is handed nothing.
        """
        if level != 0:
            raise self.refuse("relative imports are not allowed in a skill")
        name = _exact_name(name)
        if name == _FUTURE or name in ALLOWED_MODULES:
            return _module_view(name)
        if name == _TYPING:
            return _module_view(name, TYPING_NAMES)
        if name in _RUNTIME_IMPORTS:
            importlib.import_module(name)
            return None
        raise self.refuse(_import_refusal(name))


class _WriteRefused:
    """What ``_write_`` returns for an object the skill may not change: every write raises."""

    __slots__ = ("_sandbox_guards", "_sandbox_type")

    _sandbox_guards: _Guards
    _sandbox_type: str

    def __init__(self, guards: _Guards, ob: object) -> None:
        object.__setattr__(self, "_sandbox_guards", guards)
        object.__setattr__(self, "_sandbox_type", type(ob).__name__)

    def _refuse(self, *_: object) -> None:
        raise self._sandbox_guards.refuse(
            f"a skill may not modify a {self._sandbox_type!r} object; only dict, list, set, "
            "the collections containers and instances of classes the skill defines can be "
            "changed (build a new value instead)"
        )

    __setitem__ = __delitem__ = __setattr__ = __delattr__ = _refuse


#: ``_getitem_``: plain subscription (C-level; the policy has nothing to refuse here, since
#: the values a skill can subscript are its own data, tool results and read-only views).
_getitem = operator.getitem

#: Values whose augmented assignment cannot mutate anything: ``x op= y`` is ``x = x op y``.
_IMMUTABLE: Final = frozenset({int, float, complex, bool, str, bytes, tuple, frozenset})

#: (type, name) of every public method of the plain data types a skill handles, minus the
#: format methods that walk attributes. Reading these needs no further checks.
_PLAIN_METHODS: Final = frozenset(
    (typ, name)
    for typ in (str, bytes, int, float, bool, complex, list, tuple, dict, set, frozenset)
    for name in dir(typ)
    if not name.startswith("_") and name not in {"format", "format_map", "mro"}
)


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


def _base_builtins() -> dict[str, Any]:
    allowed: dict[str, Any] = {}
    allowed.update(safe_builtins)
    allowed.update(limited_builtins)
    allowed.update(utility_builtins)
    # utility_builtins' ``random`` is process-wide state and not an allowed module; its
    # ``math`` is replaced by the same read-only view ``import math`` gives, and its
    # ``string`` (which delegates to the real module) by a view of the safe names.
    # ``setattr``/``delattr`` are bound to the call's guards in build_globals.
    for name in ("random", "whrandom", "math", "string", "_getattr_", "setattr", "delattr"):
        allowed.pop(name, None)
    # Skills must not end the worker or pretend to be interrupted.
    for name in ("SystemExit", "KeyboardInterrupt", "GeneratorExit"):
        allowed.pop(name, None)
    # The real data builtins. RestrictedPython's notes worry that some iterate in C past
    # ``_getiter_``; our ``_getiter_`` is plain ``iter`` (no per-object permissions exist
    # here), and memory and CPU are bounded by rlimits, so the limited ``range``/``list``/
    # ``tuple`` (1000 items, no strings) would only get in the way.
    for name in (
        "sorted", "zip", "enumerate", "min", "max", "sum", "any", "all", "list", "dict",
        "set", "frozenset", "tuple", "reversed", "map", "filter", "isinstance", "issubclass",
        "len", "range", "abs", "round", "str", "int", "float", "bool", "iter", "next",
        "divmod", "pow", "repr", "chr", "ord", "callable", "hash", "slice", "bytes",
        "StopIteration", "Exception", "ValueError", "KeyError", "TypeError", "IndexError",
        "LookupError", "ArithmeticError", "ZeroDivisionError", "AttributeError",
        "RuntimeError", "NotImplementedError", "AssertionError", "OverflowError",
        "RecursionError", "UnicodeError", "NameError",
    ):  # fmt: skip
        allowed[name] = getattr(builtins, name)
    allowed["ToolError"] = ToolError
    allowed["ToolNotAllowed"] = ToolNotAllowed
    return allowed


_BASE_BUILTINS: Final = _base_builtins()
#: A copy of :data:`_BASE_BUILTINS` made at import, for the one call of a single-use worker
#: (``build_globals(single_use=True)``). Each worker forked from the template has its own
#: copy-on-write copy of it, which no other call ever sees. Copying the builtins in the
#: worker instead (and freeing the copy after the call) would write to the page of every
#: builtin object (its reference count): about 50 pages copied per call.
_SPARE_BUILTINS: Final = dict(_BASE_BUILTINS)
#: The spare builtins were given to a call (they are never given twice).
_spare_taken = False


def build_globals(
    tools_proxy: object,
    print_collector: Callable[..., Any],
    *,
    on_violation: Callable[[BaseException], None] | None = None,
    single_use: bool = False,
) -> dict[str, Any]:
    """Return a fresh global namespace for one run of skill code.

    Nothing in it is shared mutably with another call: the dict, its builtins dict and
    the guards are new each time, and module views are read-only.

    Args:
        tools_proxy: The object bound to the global ``tools``; the skill calls host tools
            as ``tools.<name>(**kwargs)`` on it.
        print_collector: The ``_print_`` factory, usually :meth:`OutputBuffer.collector`.
        on_violation: Called with each :class:`PolicyViolation` a runtime guard raises,
            before it is raised, and with each ``MemoryError`` an ``except`` block of the
            skill catches (the worker makes both the call's outcome).
        single_use: This process runs no other call (a fresh-mode worker): the builtins
            dict copied at import is used, once, instead of a new copy.

    Returns:
        The globals dict to ``exec`` a :func:`compile_skill` code object in.
    """
    global _spare_taken
    guards = _Guards(on_violation)
    if single_use and not _spare_taken:
        _spare_taken = True
        skill_builtins = _SPARE_BUILTINS
    else:
        skill_builtins = dict(_BASE_BUILTINS)
    skill_builtins["getattr"] = guards.getattr
    skill_builtins["hasattr"] = guards.hasattr
    skill_builtins["setattr"] = guards.setattr
    skill_builtins["delattr"] = guards.delattr
    skill_builtins["__import__"] = guards.import_
    skill_builtins["math"] = _module_view("math")
    skill_builtins["string"] = _module_view("string", _STRING_NAMES)
    return {
        "__builtins__": skill_builtins,
        "__name__": SKILL_MODULE_NAME,
        "__metaclass__": type,
        "_getattr_": guards.getattr,
        "_getitem_": _getitem,
        "_getiter_": iter,
        "_write_": guards.write,
        "_inplacevar_": guards.inplacevar,
        "_caught_": guards.caught,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_print_": print_collector,
        "_apply_": _apply,
        "tools": tools_proxy,
    }


def iter_skill_lines(tb: types.TracebackType | None) -> Iterator[int]:
    """Yield the line numbers of the traceback's frames that run skill code, outermost first."""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == SKILL_FILENAME and tb.tb_lineno is not None:
            yield tb.tb_lineno
        tb = tb.tb_next
