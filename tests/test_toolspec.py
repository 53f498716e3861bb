"""Skills as tools: the schemas (snapshots, strict-mode rules) and dispatch (`call_tool`)."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from skillbank import (
    SkillBank,
    canonical_schema,
    chat_tool,
    decode_arguments,
    load_trajectories,
    mcp_tool,
    render_tools,
    responses_tool,
    strict_schema,
)
from skillbank.cli import cli
from skillbank.examples.agent import DEMO_ARGS
from skillbank.examples.shop import Shop
from skillbank.library import SkillLibrary
from skillbank.proving import strategy_for as values_of  # hypothesis-jsonschema cannot do objects
from skillbank.signature import read_signature
from skillbank.skill import STAGES, Skill
from tests.conftest import EXAMPLE_TRAJECTORIES, REPO

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
# Read at import: the autouse fixture in conftest.py clears SKILLBANK_* before each test.
UPDATE_SNAPSHOTS = os.environ.get("SKILLBANK_UPDATE_SNAPSHOTS") == "1"
FORMATS = ("chat", "responses", "mcp")

#: Keywords a strict schema may hold.
STRICT_KEYWORDS = {
    "type",
    "enum",
    "const",
    "anyOf",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "description",
}


def make_skill(
    source: str, description: str = "Does a thing.", tools: tuple[str, ...] = ()
) -> Skill:
    source = textwrap.dedent(source).lstrip()
    signature = read_signature(source)
    return Skill(
        id=signature.name,
        description=description,
        version="1.0.0",
        stage="associative",
        source=source,
        signature=signature,
        tools=tools,
        requires=(),
        cases=(),
    )


TYPED = make_skill(
    '''
    from typing import Literal, NotRequired, Optional, TypedDict


    class Line(TypedDict):
        sku: str
        quantity: int
        gift: NotRequired[bool]


    class Address(TypedDict, total=False):
        street: str
        city: str


    def ship_order(
        lines: list[Line],
        mode: Literal["air", "sea"],
        address: Optional[Address] = None,
        note: Optional[str] = None,
        priority: Literal[1, 2, 3] = 2,
        tags: list[str] = [],
    ) -> Line:
        """Ship the lines of an order.

        Args:
            lines: What to ship; each line is
                a sku and a quantity.
            mode: How to ship.
            note (str): A note for the courier.

        Returns:
            The first line.
        """
        return tools.ship(lines=lines, mode=mode)
    ''',
    "Ship an order.",
    ("ship",),
)

FREE_FORM = make_skill(
    '''
    def tag_items(labels: dict, limit: int = 3) -> list:
        """Tag items.

        Args:
            labels: Labels by item id.
        """
        return tools.tag(labels=labels, limit=limit)
    '''
)

#: Signatures that cannot be strict, and why.
NOT_STRICT = {
    "a free-form dict": "def f(labels: dict) -> dict:\n    return labels\n",
    "a dict of free keys": "def f(counts: dict[str, int]) -> dict:\n    return counts\n",
    "a list of anything": "def f(items: list) -> dict:\n    return {}\n",
    "null that is not the default": (
        "from typing import Optional\n\n\n"
        "def f(status: Optional[str] = 'open') -> dict:\n    return {}\n"
    ),
    "a nullable optional field": (
        "from typing import NotRequired, Optional, TypedDict\n\n\n"
        "class A(TypedDict):\n    x: NotRequired[Optional[str]]\n\n\n"
        "def f(a: A) -> dict:\n    return {}\n"
    ),
    "a union of objects with optional fields": (
        "from typing import NotRequired, TypedDict, Union\n\n\n"
        "class A(TypedDict):\n    x: NotRequired[str]\n\n\n"
        "class B(TypedDict):\n    y: str\n\n\n"
        "def f(a: Union[A, B]) -> dict:\n    return {}\n"
    ),
}


def repo_skills() -> list[Skill]:
    return SkillLibrary(REPO).load_all()


def all_skills() -> list[Skill]:
    extra = [make_skill(src) for src in NOT_STRICT.values()]
    return [*repo_skills(), TYPED, FREE_FORM, *extra]


# -- snapshots --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_rendered_tools_match_the_snapshot(fmt: Any) -> None:
    skills = repo_skills()
    assert len(skills) == 7
    text = json.dumps(render_tools(skills, fmt), indent=2, sort_keys=True, ensure_ascii=False)
    path = SNAPSHOTS / f"{fmt}.json"
    if UPDATE_SNAPSHOTS:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text + "\n", (
        f"{path.name} is out of date; review the change, then rewrite it with "
        "SKILLBANK_UPDATE_SNAPSHOTS=1 pytest tests/test_toolspec.py"
    )


def test_the_formats_share_one_schema() -> None:
    for skill in repo_skills():
        chat, responses, mcp = chat_tool(skill), responses_tool(skill), mcp_tool(skill)
        assert chat["function"] == {k: v for k, v in responses.items() if k != "type"}
        assert chat["function"]["strict"] is True
        assert chat["function"]["parameters"] == strict_schema(canonical_schema(skill))
        assert mcp["inputSchema"] == canonical_schema(skill)
        assert mcp["outputSchema"] == {"type": "object"}  # they all return dict
        assert mcp["description"] == chat["function"]["description"]


# -- strict mode ------------------------------------------------------------------------------


def assert_strict(schema: Any, where: str = "parameters") -> None:
    """OpenAI strict mode's rules, walked through the whole schema."""
    assert isinstance(schema, dict), where
    assert set(schema) <= STRICT_KEYWORDS, f"{where}: {sorted(set(schema) - STRICT_KEYWORDS)}"
    assert {"type", "enum", "const", "anyOf"} & set(schema), f"{where}: any value"
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    for i, branch in enumerate(schema.get("anyOf", [])):
        assert_strict(branch, f"{where}.anyOf[{i}]")
    if "array" in kinds:
        assert_strict(schema.get("items"), f"{where}.items")
    if "object" in kinds:
        properties = schema.get("properties")
        assert isinstance(properties, dict), f"{where}: an object without properties"
        assert schema.get("additionalProperties") is False, where
        assert schema.get("required") == list(properties), f"{where}: not all required"
        for name, prop in properties.items():
            assert_strict(prop, f"{where}.{name}")


def test_every_strict_schema_follows_the_strict_rules() -> None:
    strict = [s for s in all_skills() if chat_tool(s)["function"]["strict"]]
    assert len(strict) == 8  # the repository's 7 and TYPED
    for skill in strict:
        assert_strict(chat_tool(skill)["function"]["parameters"], skill.id)
        assert_strict(responses_tool(skill)["parameters"], skill.id)


def test_every_rendered_schema_is_a_valid_json_schema() -> None:
    pytest.importorskip("mcp")
    from mcp.types import Tool

    for skill in all_skills():
        Draft202012Validator.check_schema(chat_tool(skill)["function"]["parameters"])
        Draft202012Validator.check_schema(responses_tool(skill)["parameters"])
        tool = mcp_tool(skill)
        Draft202012Validator.check_schema(tool["inputSchema"])
        if "outputSchema" in tool:
            Draft202012Validator.check_schema(tool["outputSchema"])
            assert tool["outputSchema"]["type"] == "object"
        assert Tool.model_validate(tool).model_dump(by_alias=True, exclude_none=True) == tool


@pytest.mark.parametrize("why", sorted(NOT_STRICT))
def test_a_schema_that_cannot_be_strict_renders_strict_false(why: str) -> None:
    skill = make_skill(NOT_STRICT[why])
    assert strict_schema(canonical_schema(skill)) is None
    for tool in (chat_tool(skill)["function"], responses_tool(skill)):
        assert tool["strict"] is False
        assert tool["parameters"] == canonical_schema(skill)  # as it is, defaults included


def test_free_form_dict_param_is_not_strict_and_keeps_its_default() -> None:
    function = chat_tool(FREE_FORM)["function"]
    assert function["strict"] is False
    assert function["parameters"] == {
        "type": "object",
        "properties": {"labels": {"type": "object"}, "limit": {"type": "integer", "default": 3}},
        "required": ["labels"],
        "additionalProperties": False,
    }
    assert "outputSchema" not in mcp_tool(FREE_FORM)  # returns a list, not an object
    assert function["description"] == (
        "Does a thing.\nArgs:\n- labels: Labels by item id.\n- limit (optional, default 3)"
    )


def test_literal_optional_and_typeddict_params_render_strict() -> None:
    line = {
        "type": "object",
        "properties": {
            "sku": {"type": "string"},
            "quantity": {"type": "integer"},
            "gift": {"type": ["boolean", "null"]},
        },
        "required": ["sku", "quantity", "gift"],
        "additionalProperties": False,
    }
    address = {
        "type": "object",
        "properties": {
            "street": {"type": ["string", "null"]},
            "city": {"type": ["string", "null"]},
        },
        "required": ["street", "city"],
        "additionalProperties": False,
    }
    function = chat_tool(TYPED)["function"]
    assert function["strict"] is True
    assert function["parameters"] == {
        "type": "object",
        "properties": {
            "lines": {"type": "array", "items": line},
            "mode": {"enum": ["air", "sea"], "type": "string"},
            "address": {"anyOf": [address, {"type": "null"}]},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "priority": {"enum": [1, 2, 3, None], "type": ["integer", "null"]},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        },
        "required": ["lines", "mode", "address", "note", "priority", "tags"],
        "additionalProperties": False,
    }
    assert function["description"] == (
        "Ship an order.\nArgs:\n"
        "- lines: What to ship; each line is a sku and a quantity.\n"
        "- mode: How to ship.\n"
        "- address (optional, default null)\n"
        "- note (optional, default null): A note for the courier.\n"
        "- priority (optional, default 2)\n"
        "- tags (optional, default [])"
    )
    canonical = mcp_tool(TYPED)
    assert canonical["inputSchema"]["properties"]["priority"] == {"enum": [1, 2, 3], "default": 2}
    assert canonical["outputSchema"]["required"] == ["sku", "quantity"]


def test_strict_schema_refuses_keywords_it_cannot_keep_and_drops_annotations() -> None:
    base = {"type": "object", "required": ["a"], "additionalProperties": False}
    loose = {**base, "properties": {"a": {"type": "string", "pattern": "^x"}}}
    assert strict_schema(loose) is None
    annotated = {**base, "properties": {"a": {"type": "string", "title": "A", "examples": ["x"]}}}
    assert strict_schema(annotated) == {**base, "properties": {"a": {"type": "string"}}}
    assert strict_schema({"anyOf": [base]}) is None  # the root must be an object
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(12):
        deep = {"type": "object", "properties": {"a": deep}, "required": ["a"]}
    assert strict_schema(deep) is None


def strict_form(value: Any, schema: dict[str, Any]) -> Any:
    """What a model in strict mode sends for ``value``: every property, absent ones null."""
    if "anyOf" in schema:
        kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else ""
        fits = [b for b in schema["anyOf"] if b.get("type") == kind]
        return strict_form(value, fits[0]) if len(fits) == 1 else value
    if isinstance(value, list) and "items" in schema:
        return [strict_form(v, schema["items"]) for v in value]
    if isinstance(value, dict) and "properties" in schema:
        return {
            k: strict_form(value[k], p) if k in value else None
            for k, p in schema["properties"].items()
        }
    return value


@pytest.mark.parametrize("skill", [*repo_skills(), TYPED], ids=lambda s: s.id)
@given(data=st.data())
def test_strict_arguments_validate_and_decode_back(skill: Skill, data: st.DataObject) -> None:
    canonical = canonical_schema(skill)
    strict = strict_schema(canonical)
    assert strict is not None
    args = data.draw(values_of(canonical), label="arguments")
    sent = strict_form(args, canonical)
    Draft202012Validator(strict).validate(sent)
    # A null given for an optional parameter whose default is null comes back omitted.
    expected = {k: v for k, v in args.items() if v is not None or k in canonical["required"]}
    assert decode_arguments(skill, sent) == expected
    assert decode_arguments(skill, args) == expected  # non-strict arguments pass through


def test_decode_keeps_a_null_that_is_a_value() -> None:
    skill = make_skill(NOT_STRICT["null that is not the default"])
    assert decode_arguments(skill, {"status": None}) == {"status": None}
    assert decode_arguments(FREE_FORM, {"labels": {"a": None}, "limit": None}) == {
        "labels": {"a": None}
    }


# -- dispatch ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SkillBank]:
    root = tmp_path_factory.mktemp("toolspec") / "bank"
    with SkillBank.init(root) as bank:
        report = bank.learn(load_trajectories(EXAMPLE_TRAJECTORIES), branch="current")
        assert len(report.added) == 7 and not report.rejected
        yield bank


@pytest.fixture(scope="module")
def shop_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return Shop.create(tmp_path_factory.mktemp("shop") / "shop.sqlite").tools()


HISTORY = "list_orders_by_email"
CANCEL = "cancel_order_by_email"
#: Learned from one run: which order it cancelled was that run's choice, so the order id is
#: the caller's and the skill is named for its one command.
CANCEL_ONE = "cancel_order_skill"


def call(bank: SkillBank, name: str, arguments: Any, tools: Any) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    out = bank.call_tool(name, text, tools)
    data = json.loads(out)
    assert out == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return data


def error_of(data: dict[str, Any], kind: str) -> dict[str, Any]:
    assert data["ok"] is False, data
    error = data["error"]
    assert error["type"] == kind, error
    assert error["message"] and error["hint"], error
    return error


def test_call_tool_returns_the_value(learned: SkillBank, shop_tools: dict[str, Any]) -> None:
    data = call(learned, HISTORY, {"email": "alice@example.com"}, shop_tools)
    assert data["ok"] is True and "warning" not in data
    assert data["value"]["customer_id"] == "C-1001" and data["value"]["orders"]


def test_call_tool_turns_strict_nulls_into_defaults(
    learned: SkillBank, shop_tools: dict[str, Any]
) -> None:
    args = {"email": "bob@example.com", "reason": "changed my mind", "status": None}
    data = call(learned, CANCEL, args, shop_tools)
    assert data["ok"] is True, data
    assert data["value"]["status"] == "cancelled"


def test_unknown_skill_names_close_ones(learned: SkillBank, shop_tools: dict[str, Any]) -> None:
    error = error_of(call(learned, "find_customer_list_order", {}, shop_tools), "unknown_skill")
    assert HISTORY in error["hint"]
    error = error_of(call(learned, "../../etc/passwd", {}, shop_tools), "unknown_skill")
    assert HISTORY in error["hint"]  # nothing close: it lists the skills


@pytest.mark.parametrize(
    ("arguments", "kind"),
    [
        ('{"email": ', "invalid_json"),
        ("NaN", "invalid_json"),
        ("[" * 100_000, "invalid_json"),
        ('["alice@example.com"]', "invalid_arguments"),
        ('"alice@example.com"', "invalid_arguments"),
        ("{}", "invalid_arguments"),
        ('{"email": 3}', "invalid_arguments"),
        ('{"email": null}', "invalid_arguments"),
        ('{"mail": "alice@example.com"}', "invalid_arguments"),
    ],
)
def test_bad_arguments_come_back_with_the_signature(
    learned: SkillBank, shop_tools: dict[str, Any], arguments: str, kind: str
) -> None:
    error = error_of(call(learned, HISTORY, arguments, shop_tools), kind)
    assert f"{HISTORY}(email: str) -> dict" in error["hint"]


def test_arguments_are_checked_deep_against_the_schema(
    learned: SkillBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A skill with nested arguments: they are checked before anything runs (no tool given).
    monkeypatch.setattr(learned.library, "load", lambda name: TYPED)
    args = {"lines": [{"sku": "S-1", "quantity": "2"}], "mode": "air"}
    error = error_of(call(learned, TYPED.id, args, {}), "invalid_arguments")
    assert "lines[0].quantity" in error["message"]
    assert error["hint"] == TYPED.signature.render()
    args = {"lines": [], "mode": "rail"}
    error = error_of(call(learned, TYPED.id, args, {}), "invalid_arguments")
    assert "'rail'" in error["message"]
    args = {"lines": [], "mode": "sea", "address": None, "note": None, "priority": None}
    assert error_of(call(learned, TYPED.id, args, {}), "missing_tool")  # the arguments fit


def test_a_whole_float_reaches_the_skill_as_an_int(learned: SkillBank, tmp_path: Path) -> None:
    # The shop refuses quantity=4.0; the one argument check passes it on as 4.
    tools = Shop.create(tmp_path / "shop.sqlite").tools()
    order = "place_order_by_email_and_query"
    args = {**DEMO_ARGS["order_product"], "quantity": 4.0}
    data = call(learned, order, args, tools)
    assert data["ok"] is True, data
    error = error_of(call(learned, order, {**args, "quantity": True}, tools), "invalid_arguments")
    assert error["message"] == f"argument 'quantity' of {order!r} must be int, got True (bool)"


def test_a_signature_outside_the_vocabulary_is_unavailable(
    learned: SkillBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hand-edited skill whose annotation has no JSON Schema: its arguments cannot be checked.
    loose = make_skill("def loose(a: Any) -> dict:\n    return {}\n")
    assert loose.signature.schema is None
    monkeypatch.setattr(learned.library, "load", lambda name: loose)
    error = error_of(call(learned, "loose", {"a": 1}, {}), "unavailable")
    assert "SB107 parameter 'a': Any says nothing" in error["message"]


def test_missing_host_tool(learned: SkillBank, shop_tools: dict[str, Any]) -> None:
    tools = {k: v for k, v in shop_tools.items() if k != "list_orders"}
    error = error_of(call(learned, HISTORY, {"email": "alice@example.com"}, tools), "missing_tool")
    assert error["message"].endswith("host tool(s) list_orders, which this host does not provide")


def test_a_failed_skill_reports_its_error_and_calls(
    learned: SkillBank, shop_tools: dict[str, Any]
) -> None:
    data = call(learned, HISTORY, {"email": "nobody@example.com"}, shop_tools)
    error = error_of(data, "skill_failed")
    assert error["error_type"] == "ToolError" and error["tool_calls"] == 1
    assert "nobody@example.com" in error["message"] and "find_customer" in error["hint"]


def test_unavailable_and_internal_errors_are_results(
    learned: SkillBank, shop_tools: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from skillbank import LibraryError

    def broken_library(*args: Any, **kwargs: Any) -> Any:
        raise LibraryError("skills/x: SKILL.md is broken")

    monkeypatch.setattr(learned.runner, "run_checked", broken_library)
    data = call(learned, HISTORY, {"email": "alice@example.com"}, shop_tools)
    assert "SKILL.md is broken" in error_of(data, "unavailable")["message"]

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(learned.runner, "get", bug)
    assert "boom" in error_of(call(learned, HISTORY, {}, shop_tools), "internal_error")["message"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(
    name=st.sampled_from([HISTORY, CANCEL, "nope"]) | st.text(max_size=20),
    arguments=st.text() | json_values.map(json.dumps),
)
def test_call_tool_never_raises(
    learned: SkillBank, shop_tools: dict[str, Any], name: str, arguments: str
) -> None:
    data = json.loads(learned.call_tool(name, arguments, shop_tools))
    assert data["ok"] is True or set(data["error"]) >= {"type", "message", "hint"}


# -- stages, deprecation, the CLI -------------------------------------------------------------


@pytest.fixture
def small_bank(tmp_path: Path) -> Iterator[SkillBank]:
    """A bank with two cognitive skills (one run each), the first deprecated by the second."""
    wanted = {"shop-order_history-01", "shop-cancel_pending_order-01"}
    runs = [t for t in load_trajectories(EXAMPLE_TRAJECTORIES) if t.id in wanted]
    assert len(runs) == 2
    with SkillBank.init(tmp_path / "bank") as bank:
        bank.learn(runs, branch="current")
        assert [s.stage for s in bank.skills()] == ["cognitive", "cognitive"]
        bank.deprecate(HISTORY, by=CANCEL_ONE, branch="current")
        yield bank


def test_tool_specs_offer_callable_stages_and_skip_deprecated(small_bank: SkillBank) -> None:
    assert small_bank.tool_specs() == []  # cognitive skills are not offered by default
    offered = small_bank.tool_specs("responses", stages=STAGES)
    assert [t["name"] for t in offered] == [CANCEL_ONE]
    assert small_bank.tool_specs("mcp", stages=STAGES)[0]["name"] == CANCEL_ONE
    with pytest.raises(ValueError, match="not a tool format"):
        small_bank.tool_specs("xml", stages=STAGES)  # type: ignore[arg-type]


def test_a_deprecated_skill_still_answers_with_a_warning(
    small_bank: SkillBank, tmp_path: Path
) -> None:
    tools = Shop.create(tmp_path / "shop.sqlite").tools()
    # Cognitive skills are described procedures, never run as tools.
    data = call(small_bank, CANCEL_ONE, {"order_id": "O-5001", "reason": "no need"}, tools)
    assert data["ok"] is False and data["error"]["type"] == "unavailable"
    for sid in (HISTORY, CANCEL_ONE):  # once callable, the deprecated one still answers
        md = small_bank.library.dir / sid / "SKILL.md"
        md.write_text(md.read_text().replace("stage: cognitive", "stage: associative"))
    data = call(small_bank, HISTORY, {"email": "alice@example.com"}, tools)
    assert data["ok"] is True and CANCEL_ONE in data["warning"]


def test_cli_tools_prints_the_json_list(
    learned: SkillBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    root = str(learned.root)
    result = runner.invoke(cli, ["tools", "--root", root], catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.output) == learned.tool_specs("chat")
    for fmt in FORMATS:
        args = ["tools", "--format", fmt, "--all-stages", "--root", root]
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert json.loads(result.output) == render_tools(learned.skills(), fmt)  # type: ignore[arg-type]
    # This repository's own skills print exactly the snapshot.
    result = runner.invoke(cli, ["tools", "--root", str(REPO)], catch_exceptions=False)
    assert result.output == (SNAPSHOTS / "chat.json").read_text(encoding="utf-8")
    result = runner.invoke(cli, ["tools", "--format", "xml", "--root", root])
    assert result.exit_code == 2
