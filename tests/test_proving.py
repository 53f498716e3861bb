"""Proving: replay, properties on generated data, determinism, and the pytest plugin."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from sandbox import Limits, Sandbox
from skillbank import Outcome, SkillBank, Step, Trajectory
from skillbank.proving import (
    ToolDoubles,
    check_determinism,
    check_properties,
    infer_schema,
    prove,
    prove_skill,
    strategy_for,
)
from skillbank.signature import read_signature
from skillbank.skill import Skill, SkillDraft, TestedSkill, ValidatedSkill
from skillbank.trajectory import load_trajectories
from skillbank.validate import validate
from tests.test_compose import history, latest

REPO = Path(__file__).resolve().parent.parent
SHOP = REPO / "skillbank" / "examples" / "trajectories" / "shop.jsonl"
CANCEL = "cancel_order_by_email"

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Skill], Sandbox]]:
    """The seven shop skills, learned into a temp bank, and a sandbox."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_GLOBAL", str(tmp_path_factory.mktemp("git") / "none"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        with SkillBank.init(tmp_path_factory.mktemp("shop") / "bank") as bank:
            bank.learn(load_trajectories(SHOP))
            yield {s.id: s for s in bank.library.load_all()}, bank.sandbox


def edited(skill: Skill, old: str, new: str) -> Skill:
    assert old in skill.source, skill.source
    source = skill.source.replace(old, new)
    # The signature is read once per version of the source: a new source, a new signature.
    return dataclasses.replace(skill, source=source, signature=read_signature(source))


# --- infer_schema -----------------------------------------------------------------------


def test_infer_schema_reads_required_keys_lengths_closed_sets_and_signs() -> None:
    orders = [
        {"id": "C-1", "orders": [{"status": "pending", "n": 2}, {"status": "sent", "n": 1}]},
        {"id": "C-2", "orders": [{"status": "sent", "n": 3, "note": "x"}]},
        {"id": "C-3", "orders": [{"status": "pending", "n": 1.5}], "vip": True},
    ]
    assert infer_schema(orders) == {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "orders": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "n": {"type": "number", "exclusiveMinimum": 0},
                        "note": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", "sent"]},
                    },
                    "required": ["n", "status"],
                    "additionalProperties": False,
                },
            },
            "vip": {"type": "boolean"},
        },
        "required": ["id", "orders"],
        "additionalProperties": False,
    }
    assert infer_schema([0, 3]) == {"type": "integer", "minimum": 0}
    assert infer_schema([-1, "a"]) == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert infer_schema([[], []]) == {"type": "array", "minItems": 0, "maxItems": 0}
    assert infer_schema([]) == {}


@given(st.lists(JSON_VALUES, min_size=1, max_size=6), st.randoms())
def test_every_observed_value_matches_its_inferred_schema(values: list[Any], rnd: Any) -> None:
    schema = infer_schema(values)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for value in values:
        assert validator.is_valid(value), (value, schema)
    shuffled = list(values)
    rnd.shuffle(shuffled)
    assert infer_schema(shuffled) == schema  # deterministic, whatever the order


@given(st.lists(JSON_VALUES, min_size=1, max_size=4), st.data())
def test_doubles_answer_with_values_valid_for_the_inferred_schema(
    values: list[Any], data: st.DataObject
) -> None:
    schema = infer_schema(values)
    answer = data.draw(strategy_for(schema))
    assert Draft202012Validator(schema).is_valid(answer), (answer, schema)


# --- tool doubles -----------------------------------------------------------------------

PLACE_ORDER = {
    "type": "object",
    "properties": {
        "customer_id": {"type": "string"},
        "sku": {"type": "string"},
        "quantity": {"type": "integer", "minimum": 1},
    },
    "required": ["customer_id", "sku", "quantity"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"customer_id": "C-1", "sku": "S", "quantity": 0}, "argument 'quantity': 0 is less"),
        ({"customer_id": "C-1", "sku": 7, "quantity": 1}, "argument 'sku': 7 is not of type"),
        ({"customer_id": "C-1", "quantity": 1}, "argument 'sku' is required"),
        (
            {"customer_id": "C-1", "sku": "S", "quantity": 1, "rush": True},
            "argument 'rush' is not a parameter",
        ),
    ],
    ids=["minimum", "type", "missing", "extra"],
)
def test_a_double_refuses_arguments_outside_the_tool_schema(
    arguments: dict[str, Any], expected: str
) -> None:
    doubles = ToolDoubles(
        ["place_order"],
        lambda tool, n: {"ok": True},
        {"place_order": Draft202012Validator(PLACE_ORDER)},
    )
    with pytest.raises(ValueError, match="place_order"):
        doubles.tools["place_order"](**arguments)
    assert doubles.problem is not None
    assert doubles.problem.startswith("call 1: place_order(")
    assert expected in doubles.problem
    good = ToolDoubles(
        ["place_order"],
        lambda tool, n: {"n": n},
        {"place_order": Draft202012Validator(PLACE_ORDER)},
    )
    assert good.tools["place_order"](customer_id="C-1", sku="S", quantity=2) == {"n": 0}
    assert good.problem is None


# --- properties and determinism on the shop skills ----------------------------------------


def test_every_shop_skill_proves(shop: tuple[dict[str, Skill], Sandbox]) -> None:
    skills, sandbox = shop
    assert len(skills) == 7
    for skill in skills.values():
        report = prove_skill(skill, sandbox, library=skills, max_examples=10)
        assert report.ok, (skill.id, report.failures())
        assert len(report.cases) == len(skill.cases)
        assert report.properties.examples == report.determinism.examples == 10


def test_prove_skill_takes_a_tested_or_validated_skill(
    shop: tuple[dict[str, Skill], Sandbox],
) -> None:
    skills, sandbox = shop
    skill = skills[CANCEL]
    draft = SkillDraft(skill.id, skill.source, skill.description, skill.tools, skill.cases,
                       skill.tool_specs, skill.requires)  # fmt: skip
    validated = validate(draft)
    assert isinstance(validated, ValidatedSkill)
    tested = prove(validated, sandbox)
    assert isinstance(tested, TestedSkill)
    for stage in (validated, tested):
        report = prove_skill(stage, sandbox, max_examples=5)
        assert report.ok, report.failures()


BROKEN = [
    pytest.param(
        ('orders["orders"][0]', 'orders["orders"][1]'),
        "'declared errors' failed: it raised IndexError (line 19): list index out of range",
        id="undeclared-error",
    ),
    pytest.param(
        ("    return tools.cancel_order(", "    return [reason]\n    tools.cancel_order("),
        "'return type' failed: it returned [\"\"], which does not match the declared return "
        'type {"type":"object"}',
        id="wrong-return-type",
    ),
    pytest.param(
        ("reason=reason)", "reason=reason, note=1)"),
        "'tool arguments' failed: call 3: cancel_order(",
        id="undeclared-tool-argument",
    ),
    pytest.param(
        ("    customer = tools", "    _hidden = 1\n    customer = tools"),
        "'runs cleanly' failed: the run failed with PolicyViolation: line 17:5",
        id="policy-violation",
    ),
]


@pytest.mark.parametrize(("change", "expected"), BROKEN)
def test_a_broken_skill_fails_properties_with_the_shrunk_example(
    shop: tuple[dict[str, Skill], Sandbox], change: tuple[str, str], expected: str
) -> None:
    skills, sandbox = shop
    broken = edited(skills[CANCEL], *change)
    result = check_properties(broken, sandbox, library=skills, max_examples=10)
    assert not result.ok
    assert result.message.startswith("property " + expected), result.message
    # Shrunk: the simplest arguments and answers that still fail, shown as JSON.
    assert 'Falsifying example (shrunk):\n  arguments: {"email":"","reason":""}' in result.message
    if "PolicyViolation" not in expected:  # refused before it ran: no calls to show
        assert '\n  call 1: find_customer {"email":""} -> {' in result.message
    if "tool arguments" in expected:
        assert '\n  call 3: cancel_order {"note":1,"order_id":"","reason":""} -> (refused)' in (
            result.message
        )
    # The same seed gives the same verdict and example.
    assert check_properties(broken, sandbox, library=skills, max_examples=10) == result


def test_an_error_the_docstring_declares_keeps_the_contract(
    shop: tuple[dict[str, Skill], Sandbox],
) -> None:
    skills, sandbox = shop
    skill = edited(skills[CANCEL], 'orders["orders"][0]', 'orders["orders"][1]')
    skill = edited(
        skill,
        "    Returns:",
        "    Raises:\n        IndexError: fewer than two orders.\n\n    Returns:",
    )
    result = check_properties(skill, sandbox, library=skills, max_examples=10)
    assert result.ok, result.message


def test_a_timeout_fails_properties(shop: tuple[dict[str, Skill], Sandbox]) -> None:
    skills, sandbox = shop
    skill = edited(skills["update_email_by_email"], "    customer = tools",
                   "    while True:\n        pass\n    customer = tools")  # fmt: skip
    result = check_properties(skill, sandbox, limits=Limits(timeout_s=0.3, cpu_s=1), max_examples=3)
    assert not result.ok
    assert "'runs cleanly' failed: the run failed with ExecutionTimeout" in result.message


def test_a_skill_that_reads_the_clock_fails_determinism(
    shop: tuple[dict[str, Skill], Sandbox],
) -> None:
    # datetime is an allowed module, and datetime.now() differs between two runs.
    skills, sandbox = shop
    skill = edited(skills[CANCEL], "def ", "import datetime\n\n\ndef ")
    skill = edited(skill, "reason=reason)", "reason=reason + datetime.datetime.now().isoformat())")
    assert check_properties(skill, sandbox, library=skills, max_examples=5).ok
    result = check_determinism(skill, sandbox, library=skills, max_examples=10)
    assert not result.ok
    assert result.message.startswith(
        "property 'determinism' failed: two runs of one example differ: call 3: cancel_order got"
    ), result.message
    assert "Falsifying example (shrunk; the second run got the same answers):" in result.message
    report = prove_skill(skill, sandbox, library=skills, max_examples=5)
    assert not report.ok  # the recorded reasons no longer replay either
    assert [name for name, _ in report.failures()][-1:] == ["determinism"]


# --- composition and selections by key ----------------------------------------------------


def pick_run(tid: str, email: str, orders: list[dict[str, str]], picked: str) -> Trajectory:
    steps = (
        Step("find_customer", {"email": email}, {"customer_id": f"C-{tid}"}),
        Step("list_orders", {"customer_id": f"C-{tid}"}, {"orders": orders}),
        Step("cancel_order", {"order_id": picked}, {"cancelled": picked}),
    )
    return Trajectory(tid, f"Cancel the pending order of {email}", (), steps, Outcome(True))


def test_composed_skills_and_declared_lookup_errors_prove(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn([history("h1", "ann@x.io"), history("h2", "bob@x.io")])
        bank.learn([latest("l1", "ann@x.io"), latest("l2", "cy@x.io")], branch="current")
        bank.learn(branch="current", trajectories=[
            pick_run("p1", "a@x.io", [{"order_id": "O-1", "status": "shipped"},
                                      {"order_id": "O-2", "status": "pending"}], "O-2"),
            pick_run("p2", "b@x.io", [{"order_id": "O-7", "status": "pending"},
                                      {"order_id": "O-8", "status": "pending"}], "O-7"),
        ])  # fmt: skip
        skills = {s.id: s for s in bank.library.load_all()}
        picker = skills[CANCEL]
        assert picker.requires == ("list_orders_by_email",)
        assert "raise LookupError(" in picker.source
        for skill in skills.values():
            report = prove_skill(skill, bank.sandbox, library=skills, max_examples=10)
            assert report.ok, (skill.id, report.failures())
        # With no pending order the compiled selection raises the LookupError it declares.
        result = bank.run(
            CANCEL,
            {"email": "a@x.io"},
            {
                "find_customer": lambda email: {"customer_id": "C-1"},
                "list_orders": lambda customer_id: {"orders": [{"order_id": "O-1", "status": "x"}]},
                "cancel_order": lambda order_id: {},
            },
        )
        assert result.error_type == "SkillError"
        assert 'no entry of the list_orders_by_email result["orders"]' in str(result.error)
        # A required skill missing from the library is reported, not raised.
        alone = check_properties(picker, bank.sandbox, library={})
        assert not alone.ok and "does not hold" in alone.message


def restock_run(tid: str, rows: list[tuple[str, int]]) -> Trajectory:
    steps = tuple(
        Step("restock", {"sku": sku, "quantity": n}, {"sku": sku, "available": n + 1})
        for sku, n in rows
    )
    return Trajectory(tid, f"Restock {rows}", (), steps, Outcome(True))


def test_a_list_of_dicts_parameter_is_drawn_in_the_recorded_shape(tmp_path: Path) -> None:
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn([
            restock_run("a", [("SKU-1", 3), ("SKU-2", 5)]),
            restock_run("b", [("SKU-3", 1)]),
            restock_run("c", [("SKU-4", 2), ("SKU-5", 7), ("SKU-6", 4)]),
        ])  # fmt: skip
        (skill,) = bank.library.load_all()
        assert "items: list[dict]" in skill.source
        # A bare list[dict] would give entries without "sku"; the cases show each has one.
        report = prove_skill(skill, bank.sandbox, max_examples=10)
        assert report.ok, report.failures()


# --- the pytest plugin, run as users run it ---------------------------------------------------


def run_pytest(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKILLBANK_", "PYTEST_"))}
    env["SKILLBANK_PROVE_EXAMPLES"] = "10"
    # Hypothesis keeps its unicode tables under .hypothesis/ of the working directory; share
    # the repository's, or every fresh bank spends a second or two building them again.
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(REPO / ".hypothesis")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "skills", "-v", "-p", "no:cacheprovider"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def shop_bank(tmp_path: Path) -> Path:
    root = tmp_path / "bank"
    with SkillBank.init(root) as bank:
        bank.learn(load_trajectories(SHOP))
    shutil.copy(REPO / "skills" / "conftest.py", root / "skills" / "conftest.py")
    # A folder without SKILL.md is not a skill and is not collected.
    (root / "skills" / "drafts").mkdir()
    (root / "skills" / "drafts" / "skill.py").write_text("this is not python\n")
    return root


def test_pytest_on_a_good_bank_runs_every_check_and_passes(shop_bank: Path) -> None:
    proc = run_pytest(shop_bank)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for item in (
        "validate",
        "replay[shop-cancel_pending_order-01]",
        "replay[shop-cancel_pending_order-06]",
        "properties",
        "determinism",
    ):
        assert f"skills/{CANCEL}/skill.py::{item} PASSED" in proc.stdout, proc.stdout
    assert "63 passed" in proc.stdout
    assert "drafts" not in proc.stdout


def test_pytest_shows_a_replay_mismatch_and_a_shrunk_example(shop_bank: Path) -> None:
    history_py = shop_bank / "skills" / "list_orders_by_email" / "skill.py"
    text = history_py.read_text()
    history_py.write_text(text.replace('customer["customer_id"]', 'customer["email"]'))
    cancel_py = shop_bank / "skills" / CANCEL / "skill.py"
    cancel_py.write_text(cancel_py.read_text().replace('["orders"][0]', '["orders"][1]'))
    proc = run_pytest(shop_bank)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert (
        "case 'shop-order_history-01' ('Show the order history for dmitri@example.com') no "
        'longer replays: call 2: expected list_orders({"customer_id":"C-1004"}), got '
        'list_orders({"customer_id":"dmitri@example.com"})'
    ) in out
    assert "skills/list_orders_by_email/skill.py::properties PASSED" in out
    assert f"FAILED skills/{CANCEL}/skill.py::properties" in out
    assert (
        f"skills/{CANCEL}/skill.py:19: property 'declared errors' failed: it raised IndexError"
    ) in out
    assert 'Falsifying example (shrunk):\n  arguments: {"email":"","reason":""}\n' in out
    assert "Traceback" not in out
