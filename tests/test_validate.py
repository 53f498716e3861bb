from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skillbank import SkillRejected, check_source
from skillbank.validate import RULES, Finding, code_shape, read_signature

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
    ("no-return-annotation", body("return {}", "def skill(x: str):"), "SB106", 1, 0),
    ("import-os", "import os\n" + GOOD, "SB201", 1, 7),
    ("import-submodule", "import json.decoder\n" + GOOD, "SB201", 1, 7),
    ("from-import", "from subprocess import run\n" + GOOD, "SB201", 1, 0),
    ("relative-import", "from . import x\n" + GOOD, "SB201", 1, 0),
    ("import-inside", body("import socket\nreturn {}"), "SB201", 3, 11),
    ("eval", body("return eval(x)"), "SB202", 3, 11),
    ("open", body("return open(x).read()"), "SB202", 3, 11),
    ("getattr", body("return getattr(x, 'y')"), "SB202", 3, 11),
    ("dunder-attribute", body("return x.__class__"), "SB203", 3, 13),
    ("private-name", body("_x = 1\nreturn {}"), "SB203", 3, 4),
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
]


@pytest.mark.parametrize(
    ("source", "rule", "line", "col"), [r[1:] for r in RULE_TABLE], ids=[r[0] for r in RULE_TABLE]
)
def test_rule_table(source: str, rule: str, line: int, col: int) -> None:
    findings = check_source(source, tools={"find_customer"}, skill_id="skill")
    assert (rule, line, col) in [(f.rule, f.line, f.col) for f in findings], findings


def test_every_rule_has_a_row() -> None:
    assert {r[2] for r in RULE_TABLE} == set(RULES)


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
