"""Writing skill source text: identifiers, literals, expressions and the function itself.

Everything here is deterministic: the same plan gives the same bytes, so a re-learned skill
shows no diff in ``git``.
"""

from __future__ import annotations

import builtins
import json
import keyword
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.names import attribute_name
from skillbank.compiler.dataflow import Path, mentioned_in

__all__ = [
    "Alt",
    "Call",
    "Cond",
    "FunctionPlan",
    "If",
    "Loop",
    "ParamPlan",
    "Pick",
    "Ref",
    "Until",
    "identifier",
    "literal",
    "plain_sentence",
    "render_function",
    "subscripts",
]

JSON = Any

#: Names a skill may not shadow: the tools object and builtins the sandbox provides.
RESERVED = frozenset({"tools", "self", "cls"}) | frozenset(dir(builtins))


def identifier(raw: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A valid, unreserved snake_case identifier derived from ``raw`` and not in ``taken``."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", raw).strip("_").lower() or "value"
    name = re.sub(r"_+", "_", name)
    if name[0].isdigit():
        name = f"v_{name}"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in RESERVED:
        name = f"{name}_"
    base, n = name, 2
    while name in taken:
        name = f"{base}_{n}"
        n += 1
    return name


def literal(value: JSON) -> str:
    """Python source for a JSON value (JSON string syntax is valid Python string syntax)."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and not math.isfinite(value):
        raise TypeError(f"{value!r} has no JSON literal; skills take finite numbers only")
    if isinstance(value, (int, float, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(str(k))}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


@dataclass(frozen=True)
class Ref:
    """An expression: a parameter, or a path into an earlier call's result."""

    #: The variable the value is read from (a parameter name or a result variable).
    var: str
    #: The path inside it.
    path: Path = ()

    def render(self) -> str:
        """Source text, e.g. ``customer["orders"][0]["order_id"]``."""
        return self.var + "".join(f"[{literal(p)}]" for p in self.path)


@dataclass(frozen=True)
class Pick(Ref):
    """The element of a list in an earlier result that has ``key == value``, then a path.

    The runs took different positions but always the first element whose key field held the
    same value. `render_function` writes the selection as its own statement before the call
    that uses it, so data without such an element fails with a declared ``LookupError``
    instead of a bare ``IndexError``::

        pending_order = next(
            (entry for entry in orders["orders"] if entry["status"] == "pending"), None
        )
        if pending_order is None:
            raise LookupError('no entry of the list_orders result["orders"] has ...')
    """

    #: Path, inside each element, of the field that selects it.
    key: Path = ()
    #: The value that field must hold.
    value: JSON = None
    #: Path inside the selected element.
    rest: Path = ()
    #: The tool whose result holds the list (named in the error message).
    tool: str = ""

    def render(self) -> str:
        """Inline source text of the selection (`render_function` hoists it instead)."""
        picked = f"[entry for entry in {super().render()} if {self.test()}][0]"
        return picked + subscripts(self.rest)

    def test(self) -> str:
        """The condition an element must meet, on the name ``entry``."""
        return f"entry{subscripts(self.key)} == {literal(self.value)}"

    def describe(self) -> str:
        """What is picked, for notes, e.g. ``list_orders result["orders"] (first entry with
        ["status"] == "pending")["order_id"]``."""
        where = f"{self.tool} result" if self.tool else self.var
        return (
            f"{where}{subscripts(self.path)} (first entry with {subscripts(self.key)} == "
            f"{literal(self.value)}){subscripts(self.rest)}"
        )

    def missing(self) -> str:
        """The message of the ``LookupError`` raised when no element matches."""
        where = f"the {self.tool} result" if self.tool else self.var
        return (
            f"no entry of {where}{subscripts(self.path)} has {subscripts(self.key)} == "
            f"{literal(self.value)}"
        )


def subscripts(path: Path) -> str:
    """Source text of a path: ``["orders"][0]``."""
    return "".join(f"[{literal(p)}]" for p in path)


#: An argument value: a literal JSON value, a Ref, or containers mixing both.
Expr = Any


def render_expr(expr: Expr) -> str:
    """Source text for an argument expression."""
    if isinstance(expr, Ref):
        return expr.render()
    if isinstance(expr, list):
        return "[" + ", ".join(render_expr(v) for v in expr) + "]"
    if isinstance(expr, dict):
        return "{" + ", ".join(f"{literal(k)}: {render_expr(v)}" for k, v in expr.items()) + "}"
    return literal(expr)


@dataclass(frozen=True)
class ParamPlan:
    """A parameter to emit."""

    name: str
    annotation: str
    #: What the docstring says about it.
    doc: str
    #: The default value's source text; None when the parameter is required.
    default: str | None = None


@dataclass(frozen=True)
class Call:
    """One ``tools.<name>(...)`` call to emit."""

    tool: str
    #: Keyword arguments, in the recorded order.
    kwargs: tuple[tuple[str, Expr], ...]
    #: The variable its result is bound to, or None when nothing reads it.
    var: str | None


@dataclass(frozen=True)
class Until:
    """What ends a search: the first element whose query result passes this test.

    On the name of the result (``order``), the test is one of::

        order["status"] == "pending"                          # a field equal to a value
        any(entry["sku"] == sku for entry in order["items"])  # some element's field
        query in order["name"]                                # a parameter inside a field
    """

    #: Path in the result to the field tested, or to the list whose elements are tested.
    path: Path
    #: For a list at ``path``: the path of the field inside each element; None: no list.
    inner: Path | None
    #: "eq" (the field equals ``value``) or "in" (``value`` is inside the field).
    op: str
    #: The value: a JSON literal, or a `Ref` to a parameter.
    value: Expr
    #: The message of the ``LookupError`` raised when no element passes.
    missing: str

    def render(self, var: str) -> str:
        """Source text of the test on the result named ``var``."""

        def compare(field: str) -> str:
            if self.op == "in":
                return f"{render_expr(self.value)} in {field}"
            return f"{field} == {render_expr(self.value)}"

        if self.inner is None:
            return compare(var + subscripts(self.path))
        listed = var + subscripts(self.path)
        return f"any({compare('entry' + subscripts(self.inner))} for entry in {listed})"


@dataclass(frozen=True)
class Loop:
    """``for <item> in <over>:`` around calls repeated once per element.

    With ``until`` it is a search: the loop stops at the first element whose last call's
    result passes the test (``break``), and raises a declared ``LookupError`` when none does;
    later calls read that result.
    """

    #: The loop variable.
    item: str
    #: What it iterates: a list parameter or a list inside an earlier result (or, as source
    #: text, ``range(<param>)`` for calls repeated a number of times).
    over: Ref | str
    #: The calls made for each element.
    body: tuple[Call, ...]
    #: When set, the results of the body's last call are appended to this list (returned
    #: when the loop ends the skill).
    collect: str | None = None
    #: For a search: the test that ends it.
    until: Until | None = None


@dataclass(frozen=True)
class Cond:
    """The test of an `If`: a field of an earlier result (or a bool parameter)."""

    #: What is tested.
    ref: Ref
    #: "truthy", "falsy" or "eq".
    op: str = "truthy"
    #: For "eq": the value it must equal.
    value: JSON = None

    def render(self) -> str:
        """Source text of the test."""
        if self.op == "falsy":
            return f"not {self.ref.render()}"
        if self.op == "eq":
            return f"{self.ref.render()} == {literal(self.value)}"
        return self.ref.render()


@dataclass(frozen=True)
class If:
    """Calls made only when a condition holds (steps present in only some runs)."""

    #: The condition.
    test: Cond
    #: The calls.
    body: tuple[Call, ...]
    #: When the `If` ends the skill: the variable returned when the condition does not hold.
    fallback: str | None = None


@dataclass(frozen=True)
class Alt:
    """Alternative reads of one value, chosen by which inputs the caller gives::

        if email is not None:
            customer = tools.find_customer_by_email(email=email)
        elif name is not None and zip_ is not None:
            customer = tools.find_customer_by_name_zip(name=name, zip=zip_)
        else:
            raise ValueError("give email, or name and zip_")

    Every alternative's last call binds the same variable, so what follows reads it whichever
    ran. An alternative may take several calls, each reading the ones before it::

        elif name is not None and zip_ is not None:
            customer_id = tools.lookup_customer_id(name=name, zip=zip_)
            customer = tools.get_customer(customer_id=customer_id["customer_id"])
    """

    #: Per alternative, the parameters that choose it (all given: it runs).
    given: tuple[tuple[str, ...], ...]
    #: The calls of every alternative, in the same order, one after the other (``sizes``
    #: says how many each has); each alternative's last call binds the shared variable.
    body: tuple[Call, ...]
    #: How many calls each alternative has (empty: one each).
    sizes: tuple[int, ...] = ()

    @property
    def branches(self) -> tuple[tuple[Call, ...], ...]:
        """The calls of each alternative."""
        sizes = self.sizes or (1,) * len(self.body)
        out, at = [], 0
        for size in sizes:
            out.append(self.body[at : at + size])
            at += size
        return tuple(out)

    @property
    def var(self) -> str | None:
        """The variable every alternative binds."""
        return self.branches[0][-1].var

    @property
    def missing(self) -> str:
        """The message of the ``ValueError`` raised when the caller gives no alternative."""
        return "give " + ", or ".join(" and ".join(names) for names in self.given)


@dataclass(frozen=True)
class FunctionPlan:
    """Everything needed to write one skill function."""

    name: str
    params: tuple[ParamPlan, ...]
    returns: str
    summary: str
    details: tuple[str, ...]
    calls: tuple[Call | Loop | If | Alt, ...]
    returns_doc: str


def _doc(text: str) -> str:
    # Keep docstrings one physical line per paragraph and unable to close themselves early.
    text = " ".join(text.split())
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    # Control characters would be invisible in a review, and NUL is not even valid source.
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _wrap(text: str, width: int, indent: str) -> list[str]:
    words, lines, line = _doc(text).split(" "), [], ""
    for word in words:
        if line and len(indent) + len(line) + 1 + len(word) > width:
            lines.append(indent + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(indent + line)
    return lines


def _collect_picks(expr: Expr, into: list[Pick]) -> None:
    if isinstance(expr, Pick):
        if expr not in into:
            into.append(expr)
    elif isinstance(expr, list):
        for v in expr:
            _collect_picks(v, into)
    elif isinstance(expr, dict):
        for v in expr.values():
            _collect_picks(v, into)


def _replace_picks(expr: Expr, names: dict[Pick, str]) -> Expr:
    if isinstance(expr, Pick):
        return Ref(names[expr], expr.rest)
    if isinstance(expr, list):
        return [_replace_picks(v, names) for v in expr]
    if isinstance(expr, dict):
        return {k: _replace_picks(v, names) for k, v in expr.items()}
    return expr


def _pick_name(pick: Pick, taken: set[str]) -> str:
    last = next((p for p in reversed(pick.path) if isinstance(p, str)), "entry")
    noun = identifier(last)
    if noun.endswith("ies"):
        noun = noun[:-3] + "y"
    elif noun.endswith("s") and not noun.endswith("ss"):
        noun = noun[:-1]
    word = pick.value if isinstance(pick.value, str) else ""
    prefix = word if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,15}", word) else "picked"
    name = identifier(f"{prefix}_{noun}", taken | {"entry"})
    taken.add(name)
    return name


def _pick_source(pick: Pick, var: str, indent: str) -> list[str]:
    """``var = next(...)`` then a ``LookupError`` when the list holds no such element."""
    listed = pick.var + subscripts(pick.path)
    inner = f"(entry for entry in {listed} if {pick.test()}), None"
    one = f"{indent}{var} = next({inner})"
    out = (
        [one]
        if len(one) <= 99
        else [f"{indent}{var} = next(", f"{indent}    {inner}", f"{indent})"]
    )
    out.append(f"{indent}if {var} is None:")
    error = f"{indent}    raise LookupError({pick.missing()!r})"
    if len(error) <= 99:
        return [*out, error]
    return [
        *out,
        f"{indent}    raise LookupError(",
        f"{indent}        {pick.missing()!r}",
        f"{indent}    )",
    ]


def _call_source(
    call: Call, indent: str, prefix: str, taken: set[str], suffix: str = ""
) -> list[str]:
    # A selection by key becomes statements of its own before the call, so a missing
    # element raises a LookupError that says what was looked for.
    picks: list[Pick] = []
    for _, v in call.kwargs:
        _collect_picks(v, picks)
    names = {pick: _pick_name(pick, taken) for pick in picks}
    head = [line for pick in picks for line in _pick_source(pick, names[pick], indent)]
    kwargs = [(k, _replace_picks(v, names)) for k, v in call.kwargs]
    if all(k.isidentifier() and not keyword.iskeyword(k) for k, _ in kwargs):
        args = [f"{k}={render_expr(v)}" for k, v in kwargs]
    else:
        # An argument named like a keyword ("class") or not an identifier ("first-name")
        # cannot be written as k=v; pass them all through one dict instead.
        args = ["**" + render_expr(dict(kwargs))]
    # A tool named like "get-weather" is called by its identifier; the sandbox maps it back.
    attribute = attribute_name(call.tool)
    one = f"{indent}{prefix}tools.{attribute}({', '.join(args)}){suffix}"
    if len(one) <= 99:
        return [*head, one]
    return (
        head
        + [f"{indent}{prefix}tools.{attribute}("]
        + [f"{indent}    {a}," for a in args]
        + [f"{indent}){suffix}"]
    )


def _plan_names(plan: FunctionPlan) -> set[str]:
    taken = {"tools", "entry"} | {p.name for p in plan.params}
    for stmt in plan.calls:
        if isinstance(stmt, Loop):
            taken |= {stmt.item, stmt.collect or ""}
        if isinstance(stmt, If):
            taken.add(stmt.fallback or "")
        for call in stmt.body if isinstance(stmt, (Loop, If, Alt)) else (stmt,):
            taken.add(call.var or "")
    return taken - {""}


def _plan_picks(plan: FunctionPlan) -> list[Pick]:
    picks: list[Pick] = []
    for stmt in plan.calls:
        for call in stmt.body if isinstance(stmt, (Loop, If, Alt)) else (stmt,):
            for _, v in call.kwargs:
                _collect_picks(v, picks)
    return picks


def _param_source(p: ParamPlan) -> str:
    return f"{p.name}: {p.annotation}" + (f" = {p.default}" if p.default is not None else "")


def render_function(plan: FunctionPlan) -> str:
    """The module source for a skill: one function, its docstring, calls, loops, return."""
    sig = ", ".join(_param_source(p) for p in plan.params)
    head = f"def {plan.name}({sig}) -> {plan.returns}:"
    if len(head) > 99:
        head = (
            f"def {plan.name}(\n"
            + "".join(f"    {_param_source(p)},\n" for p in plan.params)
            + f") -> {plan.returns}:"
        )
    out = [head, f'    """{_doc(plan.summary)}', ""]
    for para in plan.details:
        out += _wrap(para, 99, "    ")
        out.append("")
    if plan.params:
        out.append("    Args:")
        for p in plan.params:
            wrapped = _wrap(f"{p.name}: {p.doc}", 99, "        ")
            out += [wrapped[0]] + ["    " + w for w in wrapped[1:]]
        out.append("")
    out.append("    Returns:")
    out += _wrap(plan.returns_doc, 99, "        ")
    picks = _plan_picks(plan)
    searches = [s.until.missing for s in plan.calls if isinstance(s, Loop) and s.until]
    choices = [s for s in plan.calls if isinstance(s, Alt)]
    if picks or searches or choices:
        out += ["", "    Raises:"]
    if picks or searches:
        missing = ", or if ".join([*(p.missing() for p in picks), *searches])
        wrapped = _wrap(f"LookupError: If {missing}.", 99, "        ")
        out += [wrapped[0]] + ["    " + w for w in wrapped[1:]]
    if choices:
        told = ", or if ".join(
            "the caller gives none of: " + "; ".join(" and ".join(names) for names in s.given)
            for s in choices
        )
        wrapped = _wrap(f"ValueError: If {told}.", 99, "        ")
        out += [wrapped[0]] + ["    " + w for w in wrapped[1:]]
    out.append('    """')
    taken = _plan_names(plan)
    for i, stmt in enumerate(plan.calls):
        last = i == len(plan.calls) - 1
        if isinstance(stmt, If):
            out.append(f"    if {stmt.test.render()}:")
            for j, call in enumerate(stmt.body):
                final = last and j == len(stmt.body) - 1
                prefix = "return " if final else (f"{call.var} = " if call.var else "")
                out += _call_source(call, "        ", prefix, taken)
            if last and stmt.fallback:
                out.append(f"    return {stmt.fallback}")
            continue
        if isinstance(stmt, Alt):
            for j, (names, calls) in enumerate(zip(stmt.given, stmt.branches, strict=True)):
                test = " and ".join(f"{name} is not None" for name in names)
                out.append(f"    {'if' if j == 0 else 'elif'} {test}:")
                for call in calls:
                    out += _call_source(
                        call, "        ", f"{call.var} = " if call.var else "", taken
                    )
            out.append("    else:")
            error = f"        raise ValueError({stmt.missing!r})"
            if len(error) <= 99:
                out.append(error)
            else:
                out.append("        raise ValueError(")
                out += [f"            {piece!r}" for piece in _pieces(stmt.missing, 80)]
                out.append("        )")
            continue
        if isinstance(stmt, Loop):
            if stmt.collect:
                out.append(f"    {stmt.collect} = []")
            over = stmt.over if isinstance(stmt.over, str) else stmt.over.render()
            out.append(f"    for {stmt.item} in {over}:")
            for j, call in enumerate(stmt.body):
                if j == len(stmt.body) - 1 and stmt.collect:
                    out += _call_source(call, "        ", f"{stmt.collect}.append(", taken, ")")
                else:
                    out += _call_source(
                        call, "        ", f"{call.var} = " if call.var else "", taken
                    )
            if stmt.until is not None and stmt.body[-1].var:
                test = f"        if {stmt.until.render(stmt.body[-1].var)}:"
                if len(test) > 99:
                    test = f"        if (\n            {test.strip()[3:-1]}\n        ):"
                out += [test, "            break", "    else:"]
                error = f"        raise LookupError({stmt.until.missing!r})"
                if len(error) <= 99:
                    out.append(error)
                else:  # the message in pieces that fit, one per line
                    out.append("        raise LookupError(")
                    out += [f"            {piece!r}" for piece in _pieces(stmt.until.missing, 80)]
                    out.append("        )")
            if last and stmt.collect:
                out.append(f"    return {stmt.collect}")
            continue
        prefix = "return " if last else (f"{stmt.var} = " if stmt.var else "")
        out += _call_source(stmt, "    ", prefix, taken)
    return "\n".join(out) + "\n"


def _pieces(text: str, width: int) -> list[str]:
    """``text`` cut after spaces into pieces of at most about ``width`` characters, which
    written one after another as string literals read as ``text`` again."""
    pieces: list[str] = []
    for word in re.split(r"(?<= )", text):
        if pieces and len(pieces[-1]) + len(word) <= width:
            pieces[-1] += word
        else:
            pieces.append(word)
    return pieces


def plain_sentence(
    task: str, params: Sequence[tuple[str, JSON]], others: Sequence[tuple[str, JSON]] = ()
) -> str:
    """The task text as a plain sentence about any instance of the procedure.

    Each parameter's value is replaced by "the given <name>" and any other id, email or
    amount the run's calls took from the task by "a <name>" (longest value first), so the
    sentence names no one run's customer, order or amount, and has no ``{placeholder}`` a
    model could misread::

        "Cancel order O-9 of ann@x.io" -> "Cancel order the given order id of an email"

    An article before a value is dropped with it ("the pending order" -> "the given status
    order").

    The elements of a list parameter written in the task become one mention of it
    ("commit a.txt and b.txt" -> "commit the given files").
    """
    out = task
    named = [(value, f"the given {_words(name)}") for name, value in params]
    # A list parameter's elements written in the task ("commit a.txt and b.txt") are its.
    named += [
        (item, f"the given {_words(name)}")
        for name, value in params
        if isinstance(value, list)
        for item in value
    ]
    named += [(value, _article(_words(name))) for name, value in others if _entity(value)]
    done: set[str] = set()
    for value, words in sorted(named, key=lambda vw: -len(str(vw[0]))):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        text = str(value)
        if text in done or not mentioned_in(value, out):
            continue
        done.add(text)
        # An article before the value is the replacement's own ("the pending order" ->
        # "the given status order", not "the the given status order").
        article = r"(?:\b(?:[Tt]he|[Aa]n?)\s+)?"
        if isinstance(value, str) and len(value) >= 3:
            value_re = re.escape(text)
        else:
            value_re = rf"(?<![\w.]){re.escape(text)}(?![\w]|\.\d)"
        out = re.sub(article + value_re, words.replace("\\", r"\\"), out)
    # One mention of a list parameter, not one per element it held in this run.
    for name, value in params:
        if isinstance(value, list):
            words = re.escape(f"the given {_words(name)}")
            out = re.sub(
                rf"{words}(?:(?:,\s*|,?\s+and\s+){words})+", f"the given {_words(name)}", out
            )
    return out


def _entity(value: JSON) -> bool:
    """A value that names one thing (an id, an email, an amount), not a word of the request."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and any(c.isdigit() or c == "@" for c in value)


def _words(name: str) -> str:
    return " ".join(w for w in name.split("_") if w) or name


def _article(words: str) -> str:
    return ("an " if words[:1].lower() in "aeiou" else "a ") + words
