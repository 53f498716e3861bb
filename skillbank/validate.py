"""Validation: the libcst allow-list policy every skill must pass before it is tested or stored.

The skill's source is parsed, never imported or executed. The policy (v1):

    SB001  the source must parse
    SB101  exactly one public (non-underscore) top-level function, named after the skill id
    SB102  top level holds only imports, functions, a docstring and constant assignments
    SB103  the public function has a docstring
    SB104  every parameter is annotated
    SB105  no ``*args``/``**kwargs`` (a skill's parameters are exactly its tool arguments)
    SB106  the return type is annotated
    SB201  imports only from the allow-list (`ALLOWED_IMPORTS`, the sandbox's modules)
    SB202  no forbidden builtins (eval, exec, open, getattr, globals, ...)
    SB203  no attribute or name starting with an underscore (the dunder walks to host objects)
    SB301  calls only tools the skill declares
    SB302  ``tools`` is used only as ``tools.<name>(...)``: never passed, stored or inspected

Each finding carries the rule id, 1-based line and 0-based column, and renders like a compiler
error with the source line and a caret. The signature is read from the same syntax tree.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Collection
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from sandbox import ALLOWED_MODULES
from skillbank.errors import SkillRejected
from skillbank.skill import Param, Signature, SkillDraft, ValidatedSkill

__all__ = [
    "ALLOWED_IMPORTS",
    "FORBIDDEN_NAMES",
    "RULES",
    "Finding",
    "Rejected",
    "check_source",
    "code_shape",
    "read_signature",
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

#: Rule id -> one-line summary (the table in the module docstring, for reports and tests).
RULES: dict[str, str] = {
    "SB001": "the source must parse",
    "SB101": "exactly one public top-level function, named after the skill id",
    "SB102": "top level holds only imports, functions, a docstring and constants",
    "SB103": "the public function needs a docstring",
    "SB104": "every parameter needs a type annotation",
    "SB105": "no *args or **kwargs",
    "SB106": "the return type needs an annotation",
    "SB201": "imports only from the allow-list",
    "SB202": "no forbidden builtins",
    "SB203": "no names or attributes starting with an underscore",
    "SB301": "calls only declared tools",
    "SB302": "tools is used only as tools.<name>(...)",
}


@dataclass(frozen=True)
class Finding:
    """One policy violation at a place in the source."""

    #: The rule id, e.g. ``SB201``.
    rule: str
    #: 1-based line.
    line: int
    #: 0-based column.
    col: int
    #: What is wrong and what to do instead.
    message: str

    def render(self, source: str = "", path: str = "<skill>") -> str:
        """``path:line:col: RULE message``, then the source line and a caret under the column."""
        head = f"{path}:{self.line}:{self.col}: {self.rule} {self.message}"
        lines = source.splitlines()
        if 1 <= self.line <= len(lines):
            text = lines[self.line - 1]
            return f"{head}\n    {text}\n    {' ' * min(self.col, len(text))}^"
        return head


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


class _Checker(cst.CSTVisitor):
    # Parents come from a stack kept while visiting, and positions are resolved only when
    # there is something to report: libcst's metadata providers cost most of the time.

    def __init__(self, tools: Collection[str] | None) -> None:
        super().__init__()
        self.tools = tools
        self.pending: list[tuple[cst.CSTNode, str, str]] = []
        self.called_tools: set[str] = set()
        self.stack: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.stack.append(node)  # before visit_*, which may ask for its node's parent
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.stack.pop()
        super().on_leave(original_node)

    def parent(self, depth: int = 1) -> cst.CSTNode | None:
        # The node being visited is stack[-1]; its parent is stack[-2], and so on.
        index = -1 - depth
        return self.stack[index] if len(self.stack) >= depth + 1 else None

    def add(self, node: cst.CSTNode, rule: str, message: str) -> None:
        self.pending.append((node, rule, message))

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            name = cst.helpers.get_full_name_for_node(alias.name) or ""
            if name.split(".")[0] not in ALLOWED_IMPORTS or "." in name:
                self.add(
                    alias, "SB201",
                    f"import of {name!r} is not allowed; skills may import only "
                    f"{', '.join(sorted(ALLOWED_IMPORTS))}, and reach everything else "
                    "through declared tools",
                )  # fmt: skip

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        name = cst.helpers.get_full_name_for_node(node.module) if node.module else ""
        if node.relative or not name or name.split(".")[0] not in ALLOWED_IMPORTS or "." in name:
            shown = "." * len(node.relative) + (name or "")
            self.add(
                node, "SB201",
                f"import from {shown!r} is not allowed; skills may import only "
                f"{', '.join(sorted(ALLOWED_IMPORTS))}",
            )  # fmt: skip

    def visit_Name(self, node: cst.Name) -> None:
        parent = self.parent()
        if isinstance(parent, cst.Attribute) and parent.attr is node:
            return  # checked in visit_Attribute
        if isinstance(parent, (cst.ImportAlias, cst.Import, cst.ImportFrom)):
            return
        if isinstance(parent, cst.Arg) and parent.keyword is node:
            return  # a keyword argument's name, e.g. f(tools=1), is not a use of the name
        if node.value in FORBIDDEN_NAMES:
            self.add(
                node, "SB202",
                f"{node.value!r} is not available to skills; work on the JSON data you are "
                "given and call declared tools for anything else",
            )  # fmt: skip
        elif node.value.startswith("_"):
            self.add(
                node, "SB203",
                f"name {node.value!r} starts with an underscore, which the sandbox refuses; "
                "rename it",
            )  # fmt: skip
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
        if isinstance(node.value, cst.Name) and node.value.value == "tools":
            self.called_tools.add(attr)
            if self.tools is not None and attr not in self.tools:
                declared = ", ".join(sorted(self.tools)) or "none"
                self.add(
                    node.attr, "SB301",
                    f"tool {attr!r} is not declared by this skill (declared: {declared}); "
                    "declare it in the skill's metadata or remove the call",
                )  # fmt: skip


def _syntax_finding(source: str, exc: cst.ParserSyntaxError) -> Finding:
    # libcst's native parser sometimes reports the token after the mistake; CPython's own
    # parser (ast.parse only parses, it never runs anything) points at the mistake itself.
    try:
        ast.parse(source)
    except SyntaxError as err:
        line, col = err.lineno or 1, max((err.offset or 1) - 1, 0)
        return Finding("SB001", line, col, f"syntax error: {err.msg}")
    except (ValueError, RecursionError, MemoryError):
        pass
    return Finding("SB001", exc.raw_line, exc.raw_column, f"syntax error: {exc.message}")


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
    except cst.ParserSyntaxError as exc:
        return [_syntax_finding(source, exc)]
    except (cst.CSTValidationError, RecursionError, ValueError) as exc:  # odd names, nesting
        return [Finding("SB001", 1, 0, f"cannot parse the source: {exc}")]
    checker = _Checker(tools)
    try:
        module.visit(checker)
    except RecursionError:
        return [Finding("SB001", 1, 0, "the source nests too deeply to check")]
    pending = checker.pending

    def at(node: cst.CSTNode, rule: str, message: str) -> None:
        pending.append((node, rule, message))

    public: list[cst.FunctionDef] = []
    for i, stmt in enumerate(module.body):
        if isinstance(stmt, cst.FunctionDef):
            if not stmt.name.value.startswith("_"):
                public.append(stmt)
            continue
        if i == 0 and _is_docstring(stmt):
            continue
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
            "only imports, functions, a module docstring and constant assignments may sit at "
            "the top level; move this statement into the function",
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
        if _docstring(fn) is None:
            at(fn, "SB103", f"function {fn.name.value!r} needs a docstring saying what it does")
        for param in (*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params):
            if param.annotation is None:
                at(
                    param, "SB104",
                    f"parameter {param.name.value!r} needs a type annotation "
                    "(str, int, float, bool, list, dict, ...)",
                )  # fmt: skip
        for star in (fn.params.star_arg, fn.params.star_kwarg):
            if isinstance(star, cst.Param):
                at(star, "SB105", "*args/**kwargs are not allowed; name every parameter")
        if fn.returns is None:
            at(fn, "SB106", f"function {fn.name.value!r} needs a return annotation")
    if not pending:
        return fixed
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    findings = fixed
    for node, rule, message in pending:
        where: CodeRange = positions[node]
        findings.append(Finding(rule, where.start.line, where.start.column, message))
    return sorted(findings, key=lambda f: (f.line, f.col, f.rule))


def _docstring(fn: cst.FunctionDef) -> str | None:
    try:
        return fn.get_docstring()
    except (SyntaxError, ValueError):  # a docstring libcst cannot evaluate (e.g. a NUL byte)
        return ""


def _public_function(module: cst.Module) -> cst.FunctionDef | None:
    return next(
        (
            s
            for s in module.body
            if isinstance(s, cst.FunctionDef) and not s.name.value.startswith("_")
        ),
        None,
    )


def read_signature(source: str) -> Signature:
    """Read the public function's signature from the syntax tree (the code is never run).

    Raises:
        SkillRejected: when the source does not parse or has no public function.
    """
    try:
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, cst.CSTValidationError, RecursionError, ValueError):
        raise SkillRejected("<source>", check_source(source), source) from None
    fn = _public_function(module)
    if fn is None:
        raise SkillRejected("<source>", [Finding("SB101", 1, 0, "no public function")], source)
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
    return Signature(fn.name.value, params, returns, _docstring(fn) or "")


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


def validate(draft: SkillDraft) -> ValidatedSkill | Rejected:
    """Check a draft against the policy; a pass carries the signature read from the tree."""
    declared = (*draft.tools, *draft.requires)  # required skills are called like tools
    findings = check_source(draft.source, tools=declared, skill_id=draft.id)
    if findings:
        return Rejected(draft, tuple(findings))
    return ValidatedSkill(draft, read_signature(draft.source))
