"""Which locals provably hold a plain dict, list or str (`sandbox.plain`), and what the
compiler leaves native because of it (`sandbox.policy.SkillTransformer`)."""

from __future__ import annotations

import ast
import textwrap

import pytest

from sandbox import PolicyViolation, Sandbox, SkillError
from sandbox.plain import builtins_rebound, function_facts
from sandbox.policy import SkillTransformer


def facts(source: str) -> dict[str, str]:
    module = ast.parse(textwrap.dedent(source))
    function = next(node for node in module.body if isinstance(node, ast.FunctionDef))
    return dict(function_facts(function, {}, builtins_rebound(module)))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "def f():\n    x = []\n    d = {}\n    s = f'{x}'\n",
            {"x": "list", "d": "dict", "s": "str"},
        ),
        ("def f(y):\n    x = []\n    x = y\n", {}),
        ("def f(x):\n    x.append(1)\n", {}),
        ("def f():\n    for x in [[]]:\n        pass\n", {}),
        (
            "def f(y):\n    x = []\n    x += y\n    s = ''\n    s += 'a'\n",
            {"x": "list", "s": "str"},
        ),
        ("def f(y):\n    d = {}\n    d += y\n", {}),
        ("def f(y):\n    d = {}\n    d |= y\n", {"d": "dict"}),
        ("def f(y):\n    s = 'a'\n    s -= y\n", {}),
        ("def f():\n    global x\n    x = []\n", {}),
        ("list = tuple\ndef f():\n    x = list()\n    y = sorted([])\n", {"y": "list"}),
        (
            "def f():\n    x = list()\n    y = dict()\n    z = sorted([])\n",
            {"x": "list", "y": "dict", "z": "list"},
        ),  # fmt: skip
        ("def f(y):\n    x = []\n    [(x := v) for v in y]\n", {}),
        ("def f():\n    x, y = [], {}\n", {}),
        ("def f():\n    x = []\n    del x\n", {}),
        ("def f(c):\n    x = []\n    with c as x:\n        pass\n", {}),
        (
            "def f():\n    x = []\n    try:\n        pass\n"
            "    except Exception as x:\n        pass\n",
            {},
        ),  # fmt: skip
        ("def f():\n    x = []\n    import json as x\n", {}),
        ("def f():\n    x = []\n    def x():\n        pass\n", {}),
        (
            "def f(y):\n    s = 'a'\n    t = s.upper()\n    w = s.split()\n    u = s.format(y)\n",
            {"s": "str", "t": "str", "w": "list"},
        ),  # fmt: skip
        ("def f(y):\n    x = [] if y else {}\n    z = 'a' if y else 'b'\n", {"z": "str"}),
        ("def f(y):\n    s = 'a' * y\n    t = s[1:]\n    u = s[1]\n", {"s": "str", "t": "str"}),
        ("def f():\n    a = b = []\n", {"a": "list", "b": "list"}),
        ("def f(y):\n    t = s\n    s = t + 'x'\n", {}),  # each waits on the other
    ],
)
def test_function_facts(source, expected):
    assert facts(source) == expected


def test_inner_scopes_see_what_they_do_not_rebind():
    module = ast.parse(
        "def f(y):\n    x = []\n    s = ''\n    def g(s):\n        z = {}\n        return x\n"
    )
    outer = module.body[0]
    outer_facts = function_facts(outer, {}, frozenset())
    inner = outer.body[2]
    assert function_facts(inner, outer_facts, frozenset()) == {"x": "list", "z": "dict"}


def transformed(source: str) -> str:
    tree = ast.parse(textwrap.dedent(source))
    transformer = SkillTransformer(errors=[], warnings=[], used_names={})
    tree = transformer.visit(tree)
    assert transformer.errors == []
    return ast.unparse(tree)


def test_guards_are_left_out_only_where_they_have_nothing_to_refuse():
    code = transformed(
        """
        def run(rows, other):
            out = {}
            seen = []
            label = f"{len(rows)} rows"
            for key, value in rows:
                out[key] = value
                out[key] += 1
                seen.append(key)
                other[key] = value
                other.thing = 1
            return label.upper(), label.format(1), other.get(1), out["k"]
        """
    )
    assert "out[key] = value" in code and "out[key] += 1" in code
    assert "seen.append(key)" in code and "label.upper()" in code
    assert "_write_(other)[key] = value" in code and "_write_(other).thing = 1" in code
    assert "_getattr_(label, 'format')" in code and "_getattr_(other, 'get')" in code
    assert "for key, value in rows:" in code and "_getitem_" not in code


@pytest.fixture(scope="module")
def sb():
    with Sandbox(max_idle_workers=1) as shared:
        yield shared


@pytest.mark.parametrize(
    ("source", "error"),
    [
        # Not provably plain (rebound to a module view): the write guard still refuses.
        ("import json\ndef run():\n    d = {}\n    d = json\n    d['x'] = 1\n", PolicyViolation),
        (
            "import json\ndef run():\n    d = {}\n    [(d := json) for _ in [1]]\n    d['x'] = 1\n",
            PolicyViolation,
        ),  # fmt: skip
        (
            "import json\ndef run():\n    d = {}\n    for d in [json]:\n        d['x'] = 1\n",
            PolicyViolation,
        ),  # fmt: skip
        ("import json\ndef run(d=json):\n    d['x'] = 1\n", PolicyViolation),
        # Provably a str: format stays refused however it is reached.
        ("def run():\n    s = '{0.__class__}'\n    return s.format(1)\n", PolicyViolation),
        (
            "def run():\n    s = '{0.__class__}'.upper()\n    return s.format_map({})\n",
            PolicyViolation,
        ),
        # A plain dict written natively behaves exactly like Python.
        ("def run():\n    d = {}\n    d['a'] += 1\n", SkillError),
    ],
    ids=[
        "rebound",
        "walrus",
        "for-target",
        "parameter",
        "str-format",
        "str-format-map",
        "native-keyerror",
    ],  # fmt: skip
)
def test_refusals_survive_the_elisions(sb, source, error):
    result = sb.run(source, "run", {}, {})
    assert type(result.error) is error, result.error
    assert sb.run("def run():\n    return 1\n", "run", {}, {}).value == 1


def test_native_code_computes_the_same(sb):
    source = """
def run(n):
    counts = {}
    words = []
    text = ""
    for i in range(n):
        key = f"k{i % 3}"
        counts[key] = counts.get(key, 0) + 1
        counts[key] += i
        words.append(key.upper())
        text += key
    pairs = sorted(counts.items())
    first, *rest = pairs
    return {"counts": counts, "words": words[:4], "text": text[:6], "first": list(first),
            "rest": len(rest), "split": text.split("k")[:3]}
"""
    namespace: dict = {}
    exec(compile(source, "<native>", "exec"), namespace)
    expected = namespace["run"](10)
    expected["first"] = list(expected["first"])
    assert sb.run(source, "run", {"n": 10}, {}).value == expected


def test_elide_guards_false_puts_every_guard_back():
    class GuardsEverywhere(SkillTransformer):
        elide_guards = False

    tree = ast.parse("def run(rows):\n    out = {}\n    for k, v in rows:\n        out[k] = v[0]\n")
    transformer = GuardsEverywhere(errors=[], warnings=[], used_names={})
    code = ast.unparse(transformer.visit(tree))
    assert "_write_(out)[k] = _getitem_(v, 0)" in code
    assert "_iter_unpack_sequence_(rows" in code
