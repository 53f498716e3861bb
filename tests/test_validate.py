from __future__ import annotations

import ast
import importlib
import io
import json
import textwrap
import tokenize
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skillbank import SkillRejected, check_source
from skillbank.signature import signature_schema
from skillbank.validate import (
    MAX_COMPLEXITY,
    MAX_NESTING,
    MAX_SOURCE_BYTES,
    MAX_STATEMENTS,
    RULES,
    Finding,
    code_shape,
    normalize_source,
    read_signature,
)

SKILLS = sorted((Path(__file__).resolve().parent.parent / "skills").glob("*/skill.py"))

GOOD = '''\
import json

LIMIT = 10


def skill(email: str, n: int = 2) -> dict:
    """Find a customer."""
    found = tools.find_customer(email=email)
    return {"raw": json.dumps(found), "n": n}
'''


def body(code: str, header: str = "def skill(x: str) -> dict:") -> str:
    return header + '\n    """Doc."""\n' + textwrap.indent(textwrap.dedent(code), "    ")


def sig(params: str, returns: str = "dict") -> str:
    """A skill whose signature is ``skill(<params>) -> <returns>`` (line 1, params at col 10)."""
    return body("return {}\n", f"def skill({params}) -> {returns}:")


def nested(depth: int) -> str:
    """A body with ``depth`` nested ifs."""
    ifs = "".join("    " * i + "if x:\n" for i in range(depth))
    return body(ifs + "    " * depth + "pass\nreturn {}")


def either(n: int) -> str:
    """A skill whose cyclomatic complexity is ``n`` (``n - 1`` ors)."""
    return body("return {'v': " + " or ".join(["x"] * n) + "}")


TD = "from typing import TypedDict\n"
METHOD = TD + "class T(TypedDict):\n    x: int\n    def f(self) -> None:\n        pass\n"
TRY_STAR = body("try:\n    pass\nexcept* ValueError:\n    pass\nreturn {}")
MATCH = body("match x:\n    case 'a':\n        pass\nreturn {}")
IMPORTED_BELOW = sig("x: Optional[str]") + "from typing import Optional\n"

#: (id, source, expected rule, line, col)
RULE_TABLE = [
    ("syntax", "def skill(:\n    pass\n", "SB001", 1, 10),
    ("no-public-function", "def _helper() -> None:\n    pass\n", "SB101", 1, 0),
    ("second-public-function", GOOD + "\n\ndef other() -> None:\n    pass\n", "SB101", 12, 0),
    ("wrong-name", GOOD.replace("def skill", "def skil"), "SB101", 6, 4),
    ("top-level-call", GOOD + "\nprint(1)\n", "SB102", 11, 0),
    ("top-level-loop", "for i in []:\n    pass\n" + GOOD, "SB102", 1, 0),
    ("no-docstring", "def skill(x: str) -> dict:\n    return {}\n", "SB103", 1, 0),
    ("unannotated-param", body("return {}", "def skill(x) -> dict:"), "SB104", 1, 10),
    ("star-args", body("return {}", "def skill(*a: str) -> dict:"), "SB105", 1, 10),
    ("positional-only", sig("x: str, /"), "SB105", 1, 10),
    ("no-return-annotation", body("return {}", "def skill(x: str):"), "SB106", 1, 0),
    ("param-any", sig("x: Any"), "SB107", 1, 13),
    ("param-list-of-set", sig("x: list[set]"), "SB107", 1, 18),
    ("param-class", sig("x: Customer"), "SB107", 1, 13),
    ("param-dict-int-keys", sig("x: dict[int, str]"), "SB107", 1, 18),
    ("param-not-imported", sig("x: Optional[str]"), "SB107", 1, 13),
    ("typing-imported-below", IMPORTED_BELOW, "SB107", 1, 13),
    ("return-tuple", sig("x: str", "tuple"), "SB108", 1, 21),
    ("return-any", sig("x: str", "list[Any]"), "SB108", 1, 26),
    ("default-call", sig("x: list = list()"), "SB109", 1, 20),
    ("default-mismatch", sig("x: int = '1'"), "SB109", 1, 19),
    ("default-none-not-optional", sig("x: str = None"), "SB109", 1, 19),
    ("default-tuple", sig("x: list = (1,)"), "SB109", 1, 21),
    ("default-nan", sig("x: float = 1e999"), "SB109", 1, 21),
    ("plain-class", "class Customer:\n    pass\n" + GOOD, "SB110", 1, 0),
    ("typeddict-method", METHOD + GOOD, "SB110", 4, 4),
    ("typeddict-not-imported", "class T(TypedDict):\n    x: int\n" + GOOD, "SB110", 1, 8),
    ("typeddict-call-shape", TD + "T = TypedDict('T', fields)\n" + GOOD, "SB110", 2, 4),
    ("import-os", "import os\n" + GOOD, "SB201", 1, 7),
    ("from-typing-any", "from typing import Any\n" + GOOD, "SB201", 1, 19),
    ("from-typing-list", "from typing import List\n" + GOOD, "SB201", 1, 19),
    ("from-typing-alias", "from typing import Optional as O\n" + GOOD, "SB201", 1, 19),
    ("import-typing-alias", "import typing as t\n" + GOOD, "SB201", 1, 7),
    ("future-other", "from __future__ import generators\n" + GOOD, "SB201", 1, 23),
    ("future-not-first", "import json\nfrom __future__ import annotations\n" + GOOD, "SB201", 2, 0),
    ("import-submodule", "import json.decoder\n" + GOOD, "SB201", 1, 7),
    ("from-import", "from subprocess import run\n" + GOOD, "SB201", 1, 0),
    ("relative-import", "from . import x\n" + GOOD, "SB201", 1, 0),
    ("import-inside", body("import socket\nreturn {}"), "SB201", 3, 11),
    ("eval", body("return eval(x)"), "SB202", 3, 11),
    ("open", body("return open(x).read()"), "SB202", 3, 11),
    ("getattr", body("return getattr(x, 'y')"), "SB202", 3, 11),
    ("dunder-attribute", body("return x.__class__"), "SB203", 3, 13),
    ("private-name", body("_x = 1\nreturn {}"), "SB203", 3, 4),
    ("nonlocal", body("def g() -> None:\n    nonlocal x\nreturn {}"), "SB204", 4, 8),
    ("async-def", "async " + body("return {}"), "SB204", 1, 0),
    ("await", body("return await x"), "SB204", 3, 11),
    ("async-for", body("async for i in x:\n    pass\nreturn {}"), "SB204", 3, 4),
    ("async-with", body("async with x:\n    pass\nreturn {}"), "SB204", 3, 4),
    ("async-comprehension", body("return [i async for i in x]"), "SB204", 3, 13),
    ("except-star", TRY_STAR, "SB204", 3, 4),
    ("match", MATCH, "SB204", 3, 4),
    ("type-statement", "type Name = str\n" + GOOD, "SB204", 1, 0),
    ("type-parameters", body("return {}", "def skill[T](x: str) -> dict:"), "SB204", 1, 9),
    ("star-import", "from json import *\n" + GOOD, "SB204", 1, 17),
    ("annotated-item", body("d = {}\nd['a']: int = 1\nreturn d"), "SB204", 4, 4),
    ("metaclass", body("class A(metaclass=M):\n    pass\nreturn {}"), "SB204", 3, 12),
    ("str-format", body("return {'t': '{0}'.format(x)}"), "SB204", 3, 23),
    ("format-map", body("return {'t': x.format_map({})}"), "SB204", 3, 19),
    ("mro", body("return {'m': x.mro()}"), "SB204", 3, 19),
    ("frame-attribute", body("return {'g': x.gi_frame}"), "SB204", 3, 19),
    ("roles-attribute", body("return {'r': x.a__roles__}"), "SB204", 3, 19),
    ("module-state", "import decimal\n" + body("decimal.setcontext(x)\nreturn {}"), "SB204", 4, 12),
    ("module-state-import", "from re import purge\n" + GOOD, "SB204", 1, 15),
    ("string-formatter", body("return {'f': string.Formatter()}"), "SB204", 3, 24),
    ("builtins-name", body("return {'b': builtins}"), "SB204", 3, 17),
    ("print-bound", body("print = str\nreturn {}"), "SB204", 3, 4),
    ("printed-parameter", sig("printed: str"), "SB204", 1, 10),
    ("undeclared-tool", body("return tools.delete_all()"), "SB301", 3, 17),
    ("tools-passed", body("return len(tools)"), "SB302", 3, 15),
    ("tools-stored", body("t = tools\nreturn t.find_customer(email=x)"), "SB302", 3, 8),
    (
        "tools-attribute-not-called",
        body("f = tools.find_customer\nreturn f(email=x)"),
        "SB302",
        3,
        8,
    ),
    ("too-many-statements", body("x = 1\n" * MAX_STATEMENTS + "return {}"), "SB401", 1, 4),
    ("source-too-large", GOOD + "# " + "x" * MAX_SOURCE_BYTES + "\n", "SB401", 1, 0),
    ("nested-too-deep", nested(MAX_NESTING + 1), "SB402", 3 + MAX_NESTING, 4 * MAX_NESTING + 4),
    ("too-complex", either(MAX_COMPLEXITY + 1), "SB403", 1, 4),
    (
        "typing-attribute-not-handed-in",
        "import typing\n" + body("return typing.cast(dict, x)"),
        "SB204",
        4,
        18,
    ),
]

TYPED_SIG = "x: typing.Optional[list[dict[str, int]]] = None, y: 'typing.Literal[1, -1]' = 1"
FIELDS = TD + "class T(TypedDict):\n    type: str\n    tools: list[str]\n"
CALL_FORM = TD + "T = TypedDict('T', {'a b': int}, total=False)\n"
TYPING_NAMES = "Literal, NotRequired, Optional, Required, TypedDict, Union"

#: Sources the sandbox runs, which no rule may refuse.
ALLOWED = [
    ("future-annotations", "from __future__ import annotations\n" + GOOD),
    ("typing-imports", f"from typing import {TYPING_NAMES}\n" + GOOD),
    ("typed-signature", "import typing\n" + sig(TYPED_SIG, "typing.Union[dict, None]")),
    ("typeddict-fields-named-like-builtins", FIELDS + sig("x: T", "T")),
    ("typeddict-call", CALL_FORM + sig("x: str", "T")),
    ("annotated-local", body("n: int = 1\nreturn {'n': n}")),
    ("lambda-global-yield", body("global LIMIT\nf = lambda y: y\nyield f(x)")),
    ("print-and-printed", body("print(x)\nreturn {'out': printed}")),
    ("tool-called-format", body("return tools.format(x=x)")),
    ("nested-to-the-limit", nested(MAX_NESTING)),
    ("complex-to-the-limit", either(MAX_COMPLEXITY)),
]


@pytest.mark.parametrize("source", [r[1] for r in ALLOWED], ids=[r[0] for r in ALLOWED])
def test_what_the_sandbox_runs_is_not_refused(source: str) -> None:
    tools = {"find_customer", "format"}
    assert check_source(source, tools=tools, skill_id="skill") == []


@pytest.mark.parametrize(
    ("source", "rule", "line", "col"), [r[1:] for r in RULE_TABLE], ids=[r[0] for r in RULE_TABLE]
)
def test_rule_table(source: str, rule: str, line: int, col: int) -> None:
    findings = check_source(source, tools={"find_customer"}, skill_id="skill")
    assert (rule, line, col) in [(f.rule, f.line, f.col) for f in findings], findings


def test_every_rule_has_a_row() -> None:
    assert {r[2] for r in RULE_TABLE} == set(RULES)


def test_the_docstring_table_lists_every_rule() -> None:
    module = importlib.import_module("skillbank.validate")  # the package's `validate` is a function
    assert module.__doc__ is not None
    for rule in RULES:
        assert f"    {rule}  " in module.__doc__, rule


def test_every_message_says_what_to_do() -> None:
    for _, source, rule, line, col in RULE_TABLE:
        findings = check_source(source, tools={"find_customer"}, skill_id="skill")
        (finding,) = [f for f in findings if (f.rule, f.line, f.col) == (rule, line, col)]
        rendered = finding.render(source, path="skill.py")
        assert rendered.startswith(f"skill.py:{line}:{col}: {rule} ")
        assert rendered.splitlines()[-1].strip() == "^"
        assert any(
            word in finding.message
            for word in ("use", "add", "remove", "move", "rename", "name every", "define",
                         "declare", "drop", "choose", "split", "return", "write", "import",
                         "catch", "call", "change", "fix", "prefix", "must", "need", "only")
        ), finding.message  # fmt: skip


@pytest.mark.parametrize("path", SKILLS, ids=[p.parent.name for p in SKILLS])
def test_stored_skills_pass_and_their_signature_schema_reads(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    tools = json.loads((path.parent / "tools.json").read_text(encoding="utf-8"))
    assert check_source(source, tools=set(tools), skill_id=path.parent.name) == []
    schema = signature_schema(source)
    assert schema.name == path.parent.name
    assert [p.name for p in read_signature(source).params] == list(schema.parameters["properties"])
    assert normalize_source(source) == source


def test_good_skill_passes_and_signature_is_read_from_the_tree() -> None:
    assert check_source(GOOD, tools={"find_customer"}, skill_id="skill") == []
    sig = read_signature(GOOD)
    assert sig.render() == "skill(email: str, n: int = 2) -> dict"
    assert sig.docstring == "Find a customer."


def test_finding_renders_path_line_col_source_and_caret() -> None:
    source = "import os\n" + GOOD
    (finding,) = [f for f in check_source(source) if f.rule == "SB201"]
    assert finding.render(source, path="skills/x/skill.py") == (
        "skills/x/skill.py:1:7: SB201 import of 'os' is not allowed; skills may import only "
        "collections, datetime, decimal, itertools, json, math, re, statistics, and reach "
        "everything else through declared tools\n    import os\n           ^"
    )
    error = SkillRejected("x", [finding], source)
    assert "x:1:7: SB201" in str(error) and error.findings == (finding,)


def test_read_signature_rejects_broken_source() -> None:
    with pytest.raises(SkillRejected, match="SB001"):
        read_signature("def (")
    with pytest.raises(SkillRejected, match="SB101"):
        read_signature("x = 1\n")


def test_code_shape_ignores_docstrings_only() -> None:
    other_doc = GOOD.replace("Find a customer.", "Look up someone.")
    assert code_shape(GOOD) == code_shape(other_doc)
    assert code_shape(GOOD) != code_shape(GOOD.replace("n: int = 2", "n: int = 3"))


@given(st.text(max_size=200))
def test_checker_never_crashes_on_arbitrary_text(source: str) -> None:
    findings = check_source(source, tools=set())
    assert all(isinstance(f, Finding) and f.line >= 1 and f.col >= 0 for f in findings)


# --- normalize_source ---------------------------------------------------------------------

#: (id, before, after)
NORMALIZE = [
    ("crlf", "x = 1\r\ny = 2\r\n", "x = 1\ny = 2\n"),
    ("lone-cr", "x = 1\ry = 2\r", "x = 1\ny = 2\n"),
    ("trailing-whitespace", "x = 1  \t\n# note \ny = 2 \n", "x = 1\n# note\ny = 2\n"),
    (
        "string-keeps-its-whitespace",
        'def f():   \n    """Doc.  \n\n    More.\t\n    """  \n    return 1\n',
        'def f():\n    """Doc.  \n\n    More.\t\n    """\n    return 1\n',
    ),
    (
        "tabs-to-four-spaces",
        "def f():\n\tif x:\n\t\treturn g(\n\t\t\t1,\n\t\t)\n\t# done\n\treturn 2\n",
        "def f():\n    if x:\n        return g(\n            1,\n        )\n"
        "    # done\n    return 2\n",
    ),
    (
        "two-space-blocks-become-four",
        "class A:\n  def f(self):\n    return {\n      'a': 1,\n    }\n",
        "class A:\n    def f(self):\n        return {\n          'a': 1,\n        }\n",
    ),
    ("blank-runs", "\n\n\nimport json\n\n\n\n\nx = 1\n\n\n", "import json\n\n\nx = 1\n"),
    ("missing-final-newline", "x = 1", "x = 1\n"),
    ("backslash-continuation-kept", "x = 1 + \\\n    2\n", "x = 1 + \\\n    2\n"),
    ("empty", "", ""),
    ("whitespace-only", "  \n\t\n", ""),
    ("does-not-parse", "def f(:  \r\n", "def f(:  \r\n"),
]


@pytest.mark.parametrize(
    ("before", "after"), [r[1:] for r in NORMALIZE], ids=[r[0] for r in NORMALIZE]
)
def test_normalize_source(before: str, after: str) -> None:
    assert normalize_source(before) == after
    assert normalize_source(after) == after


def _string_rows(source: str) -> tuple[set[int], set[int]]:
    """Rows that start inside a string literal, and rows whose line break is inside one."""
    starts: set[int] = set()
    ends: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and token.end[0] > token.start[0]:
            ends.update(range(token.start[0], token.end[0]))
            starts.update(range(token.start[0] + 1, token.end[0] + 1))
    return starts, ends


_SPACE = st.sampled_from(["", " ", "\t", "  \t "])


@st.composite
def perturbed_skills(draw: st.DrawFn) -> tuple[str, str]:
    """A stored skill and a copy with only its formatting disturbed."""
    source = draw(st.sampled_from(SKILLS)).read_text(encoding="utf-8")
    starts, ends = _string_rows(source)
    tabs = draw(st.booleans())
    out: list[str] = [draw(_SPACE) for _ in range(draw(st.integers(0, 3)))]
    blanks = 0
    for row, line in enumerate(source.split("\n")[:-1], start=1):
        if tabs and row not in starts:  # every indentation, or Python sees them mixed
            body = line.lstrip(" ")
            width = len(line) - len(body)
            line = "\t" * (width // 4) + " " * (width % 4) + body
        if row not in ends:
            line += draw(_SPACE)
        out.append(line)
        blank = not line.strip() and row not in starts and row not in ends
        blanks = blanks + 1 if blank else 0
        if blanks == 2:  # a run already at the limit may grow: it shrinks back
            out += [draw(_SPACE) for _ in range(draw(st.integers(0, 2)))]
    out += [draw(_SPACE) for _ in range(draw(st.integers(0, 3)))]
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return source, newline.join(out) + newline


@given(perturbed_skills())
def test_whitespace_perturbations_of_stored_skills_normalise_back(pair: tuple[str, str]) -> None:
    source, perturbed = pair
    assert ast.dump(ast.parse(perturbed)) == ast.dump(ast.parse(source))
    assert normalize_source(perturbed) == source


_FRAGMENTS = st.sampled_from(
    [
        "def f(x):", "\tif x:", "    return (1,", "\t\t2)", '    """Doc.  ', "  more\t",
        '    """', "x = '''a  ", "b '''", "# note \t", "", "  ", "class A:", "  y = [",
        "\t\t3,", "]", "pass", "        pass", "s = 'a' \\", "    'b'", "\f", "x = 1\r",
    ]
)  # fmt: skip


@given(st.one_of(st.text(max_size=80), st.lists(_FRAGMENTS, max_size=12).map("\n".join)))
def test_normalize_is_idempotent_keeps_the_ast_and_never_raises(source: str) -> None:
    result = normalize_source(source)
    assert normalize_source(result) == result
    try:
        tree = ast.dump(ast.parse(source))
    except (SyntaxError, ValueError):
        assert result == source
    else:
        assert ast.dump(ast.parse(result)) == tree


def test_a_tool_named_like_an_mcp_tool_is_declared_by_its_identifier() -> None:
    # "get-weather" is called as tools.get_weather (sandbox.names); the real name is no
    # attribute, and an identifier no declared tool maps to is still refused.
    source = body("return tools.get_weather(city='Oslo')")
    assert check_source(source, tools={"get-weather"}, skill_id="skill") == []
    findings = check_source(body("return tools.get_wether()"), tools={"get-weather"},
                            skill_id="skill")  # fmt: skip
    assert [f.rule for f in findings] == ["SB301"]
    assert "declared: get_weather" in findings[0].message
