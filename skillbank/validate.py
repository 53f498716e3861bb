"""Validation: the libcst allow-list policy every skill must pass before it is tested or stored.

The skill's source is parsed, never imported or executed. The policy (v2); rule ids are stable:

    SB001  the source must parse
    SB101  exactly one public (non-underscore) top-level function, named after the skill id
    SB102  top level holds only imports, functions, TypedDict declarations, a docstring and
           constant assignments
    SB103  the public function has a docstring
    SB104  every parameter is annotated
    SB105  no ``*args``/``**kwargs`` and no positional-only parameters (a skill is called with
           exactly its arguments, by keyword)
    SB106  the return type is annotated
    SB107  parameter annotations use the type vocabulary (`skillbank.signature`): str, int, float,
           bool, None, list[T], dict[str, T], Literal, Optional/Union/``|``, declared TypedDicts
    SB108  the return annotation uses the type vocabulary
    SB109  a default is a JSON literal that matches its parameter's annotation
    SB110  a top-level class is a plain TypedDict declaration (``name: type`` fields, a
           docstring, ``total=``), as is a top-level ``X = TypedDict("X", {...})``
    SB201  imports only from the allow-list (`ALLOWED_IMPORTS`, the sandbox's modules), plus
           `TYPING_NAMES` from ``typing`` and ``annotations`` from ``__future__``
    SB202  no forbidden builtins (eval, exec, open, getattr, globals, ...)
    SB203  no attribute or name starting with an underscore (the dunder walks to host objects)
    SB204  no construct the sandbox refuses: ``nonlocal``, ``async``/``await``, ``except*``,
           ``match``, ``type`` statements and type parameters, ``from m import *``, annotated
           assignment to an attribute or item, metaclasses, ``str.format``/``format_map``,
           ``mro`` and frame/code attributes, module state (``decimal.setcontext``, ...),
           the reserved names ``builtins``, ``print``/``printed`` as targets, ``*__roles__``
    SB301  calls only tools the skill declares
    SB302  ``tools`` is used only as ``tools.<name>(...)``: never passed, stored or inspected
    SB401  no function over `MAX_STATEMENTS` statements, no source over `MAX_SOURCE_BYTES`
    SB402  blocks nest at most `MAX_NESTING` deep inside a function
    SB403  a function's cyclomatic complexity is at most `MAX_COMPLEXITY`

Each finding carries the rule id, 1-based line and 0-based column, and renders like a compiler
error with the source line and a caret. The signature is read from the same syntax tree.
`normalize_source` formats a skill module canonically for storage.
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
import warnings
from collections.abc import Collection
from dataclasses import dataclass, replace

import libcst as cst
from libcst.metadata import (
    CodeRange,
    ExpressionContext,
    ExpressionContextProvider,
    MetadataWrapper,
    PositionProvider,
)
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from sandbox import ALLOWED_MODULES
from sandbox.names import attribute_map
from sandbox.policy import DENIED_MODULE_NAMES, TYPING_NAMES
from skillbank.errors import SkillRejected
from skillbank.findings import Finding, parse_finding
from skillbank.signature import check_signature, declares_typeddict, docstring, read_signature
from skillbank.skill import SkillDraft, ValidatedSkill

__all__ = [
    "ALLOWED_IMPORTS",
    "FORBIDDEN_NAMES",
    "MAX_COMPLEXITY",
    "MAX_NESTING",
    "MAX_SOURCE_BYTES",
    "MAX_STATEMENTS",
    "RULES",
    "TYPING_NAMES",
    "Rejected",
    "check_source",
    "code_shape",
    "normalize_source",
    "validate",
]

#: Modules a skill may import: exactly those the sandbox hands in.
ALLOWED_IMPORTS: frozenset[str] = frozenset(ALLOWED_MODULES)

#: Builtins that reach outside the sandbox's data-only world or defeat its guards.
FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        "__import__", "breakpoint", "compile", "delattr", "dir", "eval", "exec", "exit",
        "getattr", "globals", "help", "input", "locals", "memoryview", "open", "quit",
        "setattr", "type", "vars", "object", "super", "classmethod", "staticmethod", "property",
    }
)  # fmt: skip

#: Most statements in one function (SB401).
MAX_STATEMENTS = 200
#: Largest skill source, in UTF-8 bytes (SB401).
MAX_SOURCE_BYTES = 64 * 1024
#: Deepest nesting of blocks inside a function (SB402).
MAX_NESTING = 6
#: Highest cyclomatic complexity of a function (SB403).
MAX_COMPLEXITY = 30

#: Rule id -> one-line summary (the table in the module docstring, for reports and tests).
RULES: dict[str, str] = {
    "SB001": "the source must parse",
    "SB101": "exactly one public top-level function, named after the skill id",
    "SB102": "top level holds only imports, functions, TypedDicts, a docstring and constants",
    "SB103": "the public function needs a docstring",
    "SB104": "every parameter needs a type annotation",
    "SB105": "no *args, **kwargs or positional-only parameters",
    "SB106": "the return type needs an annotation",
    "SB107": "parameter annotations use the type vocabulary",
    "SB108": "the return annotation uses the type vocabulary",
    "SB109": "a default is a JSON literal matching its annotation",
    "SB110": "a top-level class is a plain TypedDict declaration",
    "SB201": "imports only from the allow-list",
    "SB202": "no forbidden builtins",
    "SB203": "no names or attributes starting with an underscore",
    "SB204": "no construct the sandbox refuses",
    "SB301": "calls only declared tools",
    "SB302": "tools is used only as tools.<name>(...)",
    "SB401": f"no function over {MAX_STATEMENTS} statements, no source over 64 KiB",
    "SB402": f"blocks nest at most {MAX_NESTING} deep",
    "SB403": f"cyclomatic complexity at most {MAX_COMPLEXITY} per function",
}

# Names RestrictedPython reserves: ``builtins`` may not appear at all, and ``print`` and
# ``printed`` (which it rewrites to its print collector) may not be bound.
_RESERVED_NAMES = frozenset({"builtins"})
_PRINT_NAMES = frozenset({"print", "printed"})
# Attribute reads the sandbox refuses on every object: frames, code, generators, ``mro``.
_INTERNAL_ATTRIBUTES = frozenset(INSPECT_ATTRIBUTES) | {"mro"}
# ``str.format``/``format_map`` resolve ``{0.attr}`` fields with the real getattr.
_FORMAT_ATTRIBUTES = frozenset({"format", "format_map"})
# Module attributes the sandbox refuses (they change state other calls share), including
# ``string.Formatter`` through the ``string`` builtin.
_DENIED_ATTRIBUTES: dict[str, frozenset[str]] = {
    module: names for module, names in DENIED_MODULE_NAMES.items() if module != "__future__"
}
# Nodes that add a path through a function (cyclomatic complexity, SB403).
_BRANCHES = (
    cst.If,  # if and elif
    cst.For,
    cst.While,
    cst.ExceptHandler,
    cst.ExceptStarHandler,
    cst.BooleanOperation,  # each and/or
    cst.CompIf,
    cst.IfExp,
    cst.MatchCase,
)
_BLOCKS = (cst.IndentedBlock, cst.SimpleStatementSuite)
_STATEMENT, _BRANCH, _BLOCK = 1, 2, 4
_KINDS: dict[type, int] = {}  # node class -> the flags above (isinstance per node is slow)


def _kind(cls: type) -> int:
    return (
        (_STATEMENT if issubclass(cls, (cst.BaseSmallStatement, cst.BaseCompoundStatement)) else 0)
        | (_BRANCH if issubclass(cls, _BRANCHES) else 0)
        | (_BLOCK if issubclass(cls, _BLOCKS) else 0)
    )


@dataclass(frozen=True)
class Rejected:
    """A draft that failed validation, with every finding."""

    #: The draft that failed.
    draft: SkillDraft
    #: What is wrong, in source order.
    findings: tuple[Finding, ...]

    def error(self) -> SkillRejected:
        """The exception to raise when the caller needed the skill to pass."""
        return SkillRejected(self.draft.id, self.findings, self.draft.source)


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _is_constant(node: cst.BaseExpression) -> bool:
    if isinstance(node, (cst.SimpleString, cst.Integer, cst.Float, cst.ConcatenatedString)):
        return True
    if isinstance(node, cst.Name):
        return node.value in {"True", "False", "None"}
    if isinstance(node, cst.UnaryOperation):
        return _is_constant(node.expression)
    if isinstance(node, (cst.Tuple, cst.List, cst.Set)):
        return all(_is_constant(e.value) for e in node.elements if isinstance(e, cst.Element))
    if isinstance(node, cst.Dict):
        return all(
            isinstance(e, cst.DictElement) and _is_constant(e.key) and _is_constant(e.value)
            for e in node.elements
        )
    return False


@dataclass
class _Measure:
    """Size and shape of one top-level function, gathered while the checker walks it."""

    fn: cst.FunctionDef
    statements: int = 0
    complexity: int = 1
    #: Blocks open around the current node; the function's own body is 1.
    depth: int = 0
    #: The statement whose block first nests deeper than MAX_NESTING, and how deep.
    too_deep: cst.CSTNode | None = None
    nesting: int = 0


class _Checker(cst.CSTVisitor):
    # Parents come from a stack kept while visiting, and positions are resolved only when
    # there is something to report: libcst's metadata providers cost most of the time.

    def __init__(self, tools: Collection[str] | None) -> None:
        super().__init__()
        self.tools = tools
        #: How each declared tool is written after ``tools.`` (`sandbox.names`).
        self.attributes = attribute_map(tools) if tools is not None else None
        self.pending: list[tuple[cst.CSTNode, str, str]] = []
        self.called_tools: set[str] = set()
        self.stack: list[cst.CSTNode] = []
        #: ``print``/``printed`` names that may be bound (checked with ExpressionContext).
        self.print_names: list[cst.Name] = []
        self.measuring: _Measure | None = None
        self.measured: list[_Measure] = []
        #: ``from __future__`` imports (Python accepts them only at the top of the module).
        self.future_imports: list[cst.ImportFrom] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.stack.append(node)  # before visit_*, which may ask for its node's parent
        measure = self.measuring
        if measure is not None:
            self.measure(measure, node)
        elif isinstance(node, cst.FunctionDef) and len(self.stack) == 2:  # a top-level def
            self.measuring = _Measure(node)
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        measure = self.measuring
        if measure is not None:
            if original_node is measure.fn:
                self.measured.append(measure)
                self.measuring = None
            elif isinstance(original_node, _BLOCKS):
                measure.depth -= 1
        self.stack.pop()
        super().on_leave(original_node)

    def measure(self, measure: _Measure, node: cst.CSTNode) -> None:
        cls = type(node)
        kind = _KINDS.get(cls)
        if kind is None:
            kind = _KINDS[cls] = _kind(cls)
        if not kind:
            return
        if kind & _STATEMENT:
            measure.statements += 1
        if kind & _BRANCH:
            measure.complexity += 1
        if kind & _BLOCK:
            measure.depth += 1
            if measure.depth - 1 > MAX_NESTING and measure.too_deep is None:
                measure.too_deep = self.stack[-2]  # the statement that opens the block
                measure.nesting = measure.depth - 1

    def parent(self, depth: int = 1) -> cst.CSTNode | None:
        # The node being visited is stack[-1]; its parent is stack[-2], and so on.
        index = -1 - depth
        return self.stack[index] if len(self.stack) >= depth + 1 else None

    def add(self, node: cst.CSTNode, rule: str, message: str) -> None:
        self.pending.append((node, rule, message))

    def refuse(self, node: cst.CSTNode, construct: str, advice: str) -> None:
        self.add(node, "SB204", f"{construct} is refused by the sandbox; {advice}")

    # ----------------------------------------------------------------------------- imports

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = cst.helpers.get_full_name_for_node(alias.name) or ""
            if name == "typing":
                if alias.asname is not None:
                    self.add(
                        alias, "SB201",
                        "import typing without an alias (`import typing`): annotations are "
                        "read by their names",
                    )  # fmt: skip
                continue
            if name.split(".")[0] not in ALLOWED_IMPORTS or "." in name:
                self.add(
                    alias, "SB201",
                    f"import of {name!r} is not allowed; skills may import only "
                    f"{', '.join(sorted(ALLOWED_IMPORTS))}, and reach everything else "
                    "through declared tools",
                )  # fmt: skip

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        name = cst.helpers.get_full_name_for_node(node.module) if node.module else ""
        aliases = () if isinstance(node.names, cst.ImportStar) else node.names
        if isinstance(node.names, cst.ImportStar):
            self.refuse(node.names, "`from ... import *`", "import the names you use")
        if not node.relative and name == "__future__":
            self.future_imports.append(node)
            for alias in aliases:
                if cst.helpers.get_full_name_for_node(alias.name) != "annotations":
                    self.add(
                        alias, "SB201",
                        "from __future__ a skill may import only `annotations`",
                    )  # fmt: skip
            return
        if not node.relative and name == "typing":
            for alias in aliases:
                imported = cst.helpers.get_full_name_for_node(alias.name) or ""
                if imported not in TYPING_NAMES or alias.asname is not None:
                    self.add(
                        alias, "SB201",
                        f"`from typing import {_code(alias).strip()}` is not allowed; from "
                        f"typing a skill may import only {', '.join(TYPING_NAMES)}, without "
                        "an alias (write list[...] and dict[...] rather than List and Dict)",
                    )  # fmt: skip
            return
        if node.relative or not name or name.split(".")[0] not in ALLOWED_IMPORTS or "." in name:
            shown = "." * len(node.relative) + (name or "")
            self.add(
                node, "SB201",
                f"import from {shown!r} is not allowed; skills may import only "
                f"{', '.join(sorted(ALLOWED_IMPORTS))}",
            )  # fmt: skip
            return
        for alias in aliases:
            imported = cst.helpers.get_full_name_for_node(alias.name) or ""
            if imported in _DENIED_ATTRIBUTES.get(name or "", ()):
                self.refuse(
                    alias, f"{name}.{imported}",
                    "it changes state other calls share; pass what you need explicitly",
                )  # fmt: skip

    # ------------------------------------------------------------------ names, attributes

    def in_class_body(self) -> bool:
        """Whether the node's parent is an annotated assignment directly in a class body."""
        line = self.parent(2)
        if isinstance(line, cst.SimpleStatementSuite):
            return isinstance(self.parent(3), cst.ClassDef)
        return (
            isinstance(line, cst.SimpleStatementLine)
            and isinstance(self.parent(3), cst.IndentedBlock)
            and isinstance(self.parent(4), cst.ClassDef)
        )

    def visit_Name(self, node: cst.Name) -> None:
        parent = self.parent()
        if isinstance(parent, cst.Attribute) and parent.attr is node:
            return  # checked in visit_Attribute
        if isinstance(parent, (cst.ImportAlias, cst.Import, cst.ImportFrom)):
            return
        if isinstance(parent, cst.Arg) and parent.keyword is node:
            return  # a keyword argument's name, e.g. f(tools=1), is not a use of the name
        if node.value in _PRINT_NAMES and not (
            isinstance(parent, cst.Call) and parent.func is node
        ):
            self.print_names.append(node)
        field = isinstance(parent, cst.AnnAssign) and parent.target is node and self.in_class_body()
        if node.value.startswith("_"):
            self.add(
                node, "SB203",
                f"name {node.value!r} starts with an underscore, which the sandbox refuses; "
                "rename it",
            )  # fmt: skip
        elif field:
            return  # a TypedDict field's name is a key, not a use of a builtin or of tools
        elif node.value in FORBIDDEN_NAMES:
            self.add(
                node, "SB202",
                f"{node.value!r} is not available to skills; work on the JSON data you are "
                "given and call declared tools for anything else",
            )  # fmt: skip
        elif node.value in _RESERVED_NAMES or node.value.endswith("__roles__"):
            self.refuse(node, f"the name {node.value!r}", "it is reserved; choose another name")
        elif node.value == "tools":
            call = (
                self.parent(2)
                if isinstance(parent, cst.Attribute) and parent.value is node
                else None
            )
            ok = isinstance(call, cst.Call) and call.func is parent
            if not ok:
                self.add(
                    node, "SB302",
                    "`tools` may only be used to call a tool, as tools.<name>(...); "
                    "do not pass, store, index or inspect it",
                )  # fmt: skip

    def visit_Attribute(self, node: cst.Attribute) -> None:
        attr = node.attr.value
        if attr.startswith("_"):
            self.add(
                node.attr, "SB203",
                f"attribute {attr!r} starts with an underscore; the sandbox refuses such "
                "attributes because they lead to host objects",
            )  # fmt: skip
            return
        owner = node.value.value if isinstance(node.value, cst.Name) else None
        if owner == "typing" and attr not in TYPING_NAMES:
            self.add(
                node.attr, "SB204",
                f"typing.{attr} is not available in the sandbox, which hands in only "
                f"{', '.join(TYPING_NAMES)} from typing; remove it",
            )  # fmt: skip
            return
        if owner == "tools":
            # tools.get_weather calls the declared tool "get-weather" (`sandbox.names`).
            real = None if self.attributes is None else self.attributes.get(attr)
            self.called_tools.add(real or attr)
            if self.attributes is not None and real is None:
                declared = ", ".join(sorted(self.attributes)) or "none"
                self.add(
                    node.attr, "SB301",
                    f"tool {attr!r} is not declared by this skill (declared: {declared}); "
                    "declare it in the skill's metadata or remove the call",
                )  # fmt: skip
            return
        if attr in _FORMAT_ATTRIBUTES:
            self.refuse(
                node.attr, f".{attr}()",
                "its format fields can reach private attributes; use an f-string or the % "
                "operator",
            )  # fmt: skip
        elif attr in _INTERNAL_ATTRIBUTES or attr.endswith("__roles__"):
            self.refuse(
                node.attr, f"the attribute {attr!r}",
                "it reaches interpreter internals; work on the data instead",
            )  # fmt: skip
        elif owner is not None and attr in _DENIED_ATTRIBUTES.get(owner, ()):
            self.refuse(
                node.attr, f"{owner}.{attr}",
                "it changes state other calls share or reaches private attributes; "
                "pass what you need explicitly (or use an f-string)",
            )  # fmt: skip

    # -------------------------------------------------------------------- statements

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        self.refuse(
            node, "`nonlocal`", "return the new value, or keep it in a dict or list instead"
        )

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if node.asynchronous is not None:
            self.refuse(node, "`async def`", "define a plain function; tool calls are synchronous")
        if node.type_parameters is not None:
            self.refuse(
                node.type_parameters, "a type parameter list", "annotate with concrete types"
            )

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        if len(self.stack) == 2:
            return  # top-level classes are rule SB110's
        for keyword in node.keywords:
            if keyword.keyword is not None and keyword.keyword.value == "metaclass":
                self.refuse(keyword, "a metaclass", "define a plain class")
        if node.type_parameters is not None:
            self.refuse(
                node.type_parameters, "a type parameter list", "annotate with concrete types"
            )

    def visit_Await(self, node: cst.Await) -> None:
        self.refuse(node, "`await`", "call tools directly; they return their result")

    def visit_For(self, node: cst.For) -> None:
        if node.asynchronous is not None:
            self.refuse(node, "`async for`", "use a plain `for` loop")

    def visit_With(self, node: cst.With) -> None:
        if node.asynchronous is not None:
            self.refuse(node, "`async with`", "use a plain `with`")

    def visit_CompFor(self, node: cst.CompFor) -> None:
        if node.asynchronous is not None:
            self.refuse(node, "an async comprehension", "use a plain comprehension")

    def visit_TryStar(self, node: cst.TryStar) -> None:
        self.refuse(node, "`except*`", "catch with a plain `except`")

    def visit_Match(self, node: cst.Match) -> None:
        self.refuse(node, "a `match` statement", "use if/elif")

    def visit_TypeAlias(self, node: cst.TypeAlias) -> None:
        self.refuse(node, "a `type` statement", "write the annotation out")

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if not isinstance(node.target, cst.Name):
            self.refuse(
                node,
                "an annotated assignment to an attribute or item",
                "drop the annotation",
            )


_EMPTY_MODULE = cst.Module(body=[])


def _code(node: cst.CSTNode) -> str:
    return _EMPTY_MODULE.code_for_node(node)


def _bound_print_names(module: cst.Module, names: list[cst.Name]) -> list[cst.Name]:
    """The ``print``/``printed`` names that are bound or deleted, not just read."""
    if not names:
        return []  # resolving expression contexts costs a full pass over the tree
    contexts = MetadataWrapper(module, unsafe_skip_copy=True).resolve(ExpressionContextProvider)
    return [
        name
        for name in names
        if contexts.get(name) in (ExpressionContext.STORE, ExpressionContext.DEL)
    ]


def _leading_future_imports(module: cst.Module) -> list[cst.ImportFrom]:
    """The ``from __future__`` imports where Python accepts them: first, after a docstring."""
    found: list[cst.ImportFrom] = []
    for i, stmt in enumerate(module.body):
        if i == 0 and _is_docstring(stmt):
            continue
        if not isinstance(stmt, cst.SimpleStatementLine):
            break
        futures = [
            s
            for s in stmt.body
            if isinstance(s, cst.ImportFrom)
            and not s.relative
            and s.module is not None
            and cst.helpers.get_full_name_for_node(s.module) == "__future__"
        ]
        found += futures
        if len(futures) < len(stmt.body):
            break
    return found


def check_source(
    source: str, *, tools: Collection[str] | None = None, skill_id: str | None = None
) -> list[Finding]:
    """Check ``source`` against the policy and return every finding (empty when it passes).

    Never raises on bad source: a syntax error is finding SB001.

    Args:
        source: The skill module's text.
        tools: The tools the skill declares; None skips rule SB301.
        skill_id: The expected function name; None skips the name check.
    """
    try:
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, cst.CSTValidationError, RecursionError, ValueError) as exc:
        return [parse_finding(source, exc)]
    checker = _Checker(tools)
    try:
        module.visit(checker)
        _, signature_problems = check_signature(module)
        bound_prints = _bound_print_names(module, checker.print_names)
    except RecursionError:
        return [Finding("SB001", 1, 0, "the source nests too deeply to check")]
    pending = checker.pending

    def at(node: cst.CSTNode, rule: str, message: str) -> None:
        pending.append((node, rule, message))

    for name in bound_prints:
        at(
            name, "SB204",
            f"binding the name {name.value!r} is refused by the sandbox (it is reserved for "
            "its print collector); choose another name",
        )  # fmt: skip
    leading = _leading_future_imports(module)
    for future in checker.future_imports:
        if future not in leading:
            at(
                future, "SB201",
                "`from __future__ import annotations` must be the first statement (after the "
                "module docstring); move it up",
            )  # fmt: skip
    public: list[cst.FunctionDef] = []
    for i, stmt in enumerate(module.body):
        if isinstance(stmt, cst.FunctionDef):
            if not stmt.name.value.startswith("_"):
                public.append(stmt)
            continue
        if i == 0 and _is_docstring(stmt):
            continue
        if declares_typeddict(stmt):
            continue  # rule SB110 (skillbank.signature) checks the declaration
        if isinstance(stmt, cst.SimpleStatementLine) and all(
            isinstance(s, (cst.Import, cst.ImportFrom))
            or (
                isinstance(s, (cst.Assign, cst.AnnAssign))
                and s.value is not None
                and _is_constant(s.value)
            )
            for s in stmt.body
        ):
            continue
        at(
            stmt, "SB102",
            "only imports, functions, TypedDict declarations, a module docstring and constant "
            "assignments may sit at the top level; move this statement into the function",
        )  # fmt: skip
    fixed: list[Finding] = []  # findings with no node to point at
    if not public:
        fixed.append(Finding("SB101", 1, 0, "no public function; define one `def <skill_id>(...)`"))
    for extra in public[1:]:
        at(
            extra, "SB101",
            f"a second public function {extra.name.value!r}; a skill exposes exactly one, so "
            "prefix helpers with an underscore",
        )  # fmt: skip
    if public:
        fn = public[0]
        if skill_id is not None and fn.name.value != skill_id:
            at(
                fn.name, "SB101",
                f"the public function is {fn.name.value!r} but the skill id is {skill_id!r}; "
                "they must be equal",
            )  # fmt: skip
        if docstring(fn) is None:
            at(fn, "SB103", f"function {fn.name.value!r} needs a docstring saying what it does")
    pending += signature_problems
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        fixed.append(
            Finding(
                "SB401",
                1,
                0,
                f"the source is {size} bytes, over the limit of {MAX_SOURCE_BYTES}; a skill "
                "this large does several jobs: split it into smaller skills",
            )  # fmt: skip
        )
    for measure in checker.measured:
        fn_name = measure.fn.name.value
        if measure.statements > MAX_STATEMENTS:
            at(
                measure.fn.name, "SB401",
                f"function {fn_name!r} has {measure.statements} statements, over the limit of "
                f"{MAX_STATEMENTS}; split it into helper functions or smaller skills",
            )  # fmt: skip
        if measure.too_deep is not None:
            at(
                measure.too_deep, "SB402",
                f"this block is nested {measure.nesting} deep in {fn_name!r}, over the limit of "
                f"{MAX_NESTING}; return early, or move the inner part into a helper function",
            )  # fmt: skip
        if measure.complexity > MAX_COMPLEXITY:
            at(
                measure.fn.name, "SB403",
                f"function {fn_name!r} has cyclomatic complexity {measure.complexity}, over the "
                f"limit of {MAX_COMPLEXITY} (each if, elif, for, while, except, and, or, "
                "comprehension if and conditional expression adds one); split it into "
                "helper functions",
            )  # fmt: skip
    if not pending:
        return sorted(fixed, key=lambda f: (f.line, f.col, f.rule))
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    findings = fixed
    for node, rule, message in pending:
        where: CodeRange = positions[node]
        findings.append(Finding(rule, where.start.line, where.start.column, message))
    return sorted(findings, key=lambda f: (f.line, f.col, f.rule))


class _StripDocstrings(cst.CSTTransformer):
    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef:
        body = updated_node.body
        if isinstance(body, cst.IndentedBlock) and body.body and _is_docstring(body.body[0]):
            rest = list(body.body[1:]) or [cst.SimpleStatementLine([cst.Pass()])]
            return updated_node.with_changes(body=body.with_changes(body=rest))
        return updated_node


def code_shape(source: str) -> str:
    """A hash of the code with docstrings removed: equal shapes, same procedure.

    Two runs of one procedure compile to the same code and differ only in the task wording
    the docstring quotes; the shape lets the library see they are one skill.
    """
    try:
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, cst.CSTValidationError, RecursionError, ValueError):
        return hashlib.sha256(source.encode()).hexdigest()
    try:
        stripped = module.visit(_StripDocstrings())
    except RecursionError:
        return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    lines = (line.rstrip() for line in stripped.code.splitlines())
    return hashlib.sha256("\n".join(x for x in lines if x).encode()).hexdigest()


_STRING_TOKENS = frozenset(
    {tokenize.STRING} | {getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
)


def normalize_source(source: str) -> str:
    """The canonical text of a skill module, for storage and review.

    Line endings become ``\\n``; trailing whitespace goes (outside strings: a docstring keeps
    its own); statements are indented four spaces per block and tabs in other indentation
    become four spaces (continuation lines move with their statement); runs of more than two
    blank lines shrink to two; blank lines at the start go; the file ends in exactly one
    newline. The result is idempotent and parses to the same AST. Source that does not parse,
    or that would not keep its AST, comes back unchanged, and nothing is raised.
    """
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    try:
        with warnings.catch_warnings():  # invalid escapes only warn
            warnings.simplefilter("ignore")
            before = ast.dump(ast.parse(source))
            tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (SyntaxError, ValueError, tokenize.TokenError, RecursionError, MemoryError):
        return source
    lines = text.split("\n")
    rows = len(lines) + 2
    ends_in_string = [False] * rows  # the row's line break is inside a string literal
    starts_in_string = [False] * rows  # the row begins inside a string literal
    depth_of: dict[int, int] = {}  # first row of a logical line -> its block depth
    statement_of: dict[int, int] = {}  # continuation row -> first row of its logical line
    depth = 0
    first: int | None = None
    for token in tokens:
        kind, (start, _), (end, _) = token.type, token.start, token.end
        if kind == tokenize.INDENT:
            depth += 1
        elif kind == tokenize.DEDENT:
            depth -= 1
        elif kind == tokenize.NEWLINE:
            if first is not None:
                statement_of.update((row, first) for row in range(first + 1, end + 1))
            first = None
        elif kind not in (tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER) or first is not None:
            if first is None:
                first = start
                depth_of[first] = depth
            if kind in _STRING_TOKENS and end > start:
                for row in range(start, end):
                    ends_in_string[row] = True
                    starts_in_string[row + 1] = True
    shift: dict[int, int] = {}
    out: list[tuple[str, bool]] = []  # (line, may be dropped as a blank line)
    for row, line in enumerate(lines, start=1):
        if not starts_in_string[row]:
            body = line.lstrip(" \t\f")
            old = line[: len(line) - len(body)]
            width = len(old.replace("\t", "    ").replace("\f", ""))
            if row in depth_of:
                indent = "    " * depth_of[row]
                shift[row] = len(indent) - width
            elif row in statement_of:
                indent = " " * max(width + shift.get(statement_of[row], 0), 0)
            else:  # a comment or a blank line
                indent = " " * width
            line = indent + body
        if not ends_in_string[row]:
            line = line.rstrip()
        joined = row > 1 and not ends_in_string[row - 1] and lines[row - 2].endswith("\\")
        blank = not line and not starts_in_string[row] and not ends_in_string[row] and not joined
        out.append((line, blank))
    kept: list[tuple[str, bool]] = []
    run = 0
    for line, blank in out:
        run = run + 1 if blank else 0
        if blank and (not kept or run > 2):
            continue
        kept.append((line, blank))
    while kept and kept[-1][1]:
        kept.pop()
    result = "".join(line + "\n" for line, _ in kept)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            same = ast.dump(ast.parse(result)) == before
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        same = False
    return result if same else source


def validate(draft: SkillDraft) -> ValidatedSkill | Rejected:
    """Check a draft against the policy; a pass carries the signature read from the tree.

    The source is normalised first (`normalize_source`), so what is checked, replayed and
    stored is the canonical text, whoever wrote it (the compiler, the LLM, a reviewer).
    """
    draft = replace(draft, source=normalize_source(draft.source))
    declared = (*draft.tools, *draft.requires)  # required skills are called like tools
    findings = check_source(draft.source, tools=declared, skill_id=draft.id)
    if findings:
        return Rejected(draft, tuple(findings))
    return ValidatedSkill(draft, read_signature(draft.source))
